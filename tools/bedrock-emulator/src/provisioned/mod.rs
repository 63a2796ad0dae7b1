//! Bedrock's Provisioned Throughput control plane (service `bedrock`, REST-JSON), and the
//! capacity the runtime serves through it.
//!
//! Operations, in the shapes of botocore's `bedrock` model (2023-04-20):
//! `CreateProvisionedModelThroughput` (`POST /provisioned-model-throughput` → 201
//! `{provisionedModelArn}`), `GetProvisionedModelThroughput`, `UpdateProvisionedModelThroughput`
//! (`PATCH`) and `DeleteProvisionedModelThroughput` (`GET|PATCH|DELETE
//! /provisioned-model-throughput/{provisionedModelId}`, by name or ARN),
//! `ListProvisionedModelThroughputs` (`GET /provisioned-model-throughputs`), and the tagging
//! operations for Provisioned Throughput ARNs (`POST /listTagsForResource`, `/tagResource`,
//! `/untagResource`).
//!
//! Lifecycle: `Creating` for `provisioned.createMs`, then `InService` (or `Failed`, with
//! `failureMessage`, when its name, model id or base model is listed in `provisioned.failOn`);
//! an update is `Updating` for `provisioned.updateMs`, then `InService`. Statuses advance when
//! they are read, from the system clock, so no task runs per Provisioned Throughput. Committed
//! capacity (`OneMonth`, `SixMonths`) carries `commitmentExpirationTime` (creation + 1 or 6
//! calendar months) and refuses deletion before it, judged against `provisioned.now` when set
//! (otherwise the system clock). No-commitment capacity is bounded by
//! `provisioned.noCommitmentUnitQuota` model units (the sum over the no-commitment Provisioned
//! Throughputs that exist and have not failed).
//!
//! Runtime: a call (Converse, ConverseStream, InvokeModel) naming a Provisioned Throughput ARN
//! is served while it is `InService` or `Updating` (Bedrock keeps serving during an update), as
//! its base model (that model's output limit); an ARN the registry does not hold (never created,
//! or deleted) is a `ResourceNotFoundException`, and one `Creating` or `Failed` a
//! `ModelNotReadyException`. Each has a capacity of `modelUnits` × the tokens per minute per
//! model unit of its base model (`provisioned.tokensPerMinuteByModel`, else
//! `provisioned.tokensPerMinute`), over a sliding window of the last 60 seconds: a call whose
//! input and output tokens do not fit beside the tokens of the calls served in that window is a
//! `ThrottlingException` (and consumes nothing). Faults configured for the ARN under `models`
//! still apply, after the status check and before the capacity check.
//!
//! Config (`POST /_emulator/config`, under `"provisioned"`; absent fields keep their value):
//! `createMs` (default 1000, 0: `InService` at once), `updateMs` (default 1000), `failOn` (names
//! or model ids whose creation fails; default none), `failureMessage`, `noCommitmentUnitQuota`
//! (default 10), `tokensPerMinute` (per model unit, default 100000), `tokensPerMinuteByModel`
//! (base model id → tokens per minute per model unit; `null` removes an entry), `now` (an
//! ISO-8601 time the commitment check uses as the present, `null`: the system clock).

mod check;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::batch::job::timestamp;
use crate::checks::{full_match, invalid, parse_time, status_equals, ListPage, ListSpec};
use crate::error::BedrockError;
use crate::fault::Fault;
use crate::ids::new_id;
use crate::state::EmulatorState;
use check::{
    body, check_create, check_identifier, check_tags_request, check_update, Accepted,
    CreateRequest, TagsRequest, UpdateRequest, MAX_TAGS_PER_RESOURCE, MODEL_ARN_PATTERN,
    NAME_PATTERN,
};
pub use check::{Commitment, Tag};

/// The window a Provisioned Throughput's tokens per minute are counted over.
pub const CAPACITY_WINDOW: StdDuration = StdDuration::from_secs(60);

const DEFAULT_FAILURE_MESSAGE: &str =
    "Provisioned Throughput creation failed: capacity for the requested model units is not available. Try again later or with fewer model units.";

/// Provisioned Throughput settings, global only (`"provisioned"` in `/_emulator/config`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedSettings {
    /// How long a new Provisioned Throughput stays `Creating`, in milliseconds.
    pub create_ms: u64,
    /// How long an updated one stays `Updating`, in milliseconds.
    pub update_ms: u64,
    /// Names, model ids (as sent) or base model ids whose creation ends `Failed`.
    pub fail_on: Vec<String>,
    /// The `failureMessage` of those.
    pub failure_message: String,
    /// Model units the no-commitment Provisioned Throughputs may hold together.
    pub no_commitment_unit_quota: u32,
    /// Tokens (input + output) per minute per model unit, for base models not in the table.
    pub tokens_per_minute: u64,
    /// Tokens per minute per model unit, by base model id.
    pub tokens_per_minute_by_model: BTreeMap<String, u64>,
    /// The present for the commitment check; `None`: the system clock.
    #[serde(serialize_with = "serialize_time")]
    pub now: Option<DateTime<Utc>>,
}

impl Default for ProvisionedSettings {
    fn default() -> Self {
        Self {
            create_ms: 1000,
            update_ms: 1000,
            fail_on: Vec::new(),
            failure_message: DEFAULT_FAILURE_MESSAGE.to_owned(),
            no_commitment_unit_quota: 10,
            tokens_per_minute: 100_000,
            tokens_per_minute_by_model: BTreeMap::new(),
            now: None,
        }
    }
}

fn serialize_time<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    time.map(timestamp).serialize(serializer)
}

/// A partial update of [`ProvisionedSettings`]; an unknown field is refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionedPatch {
    pub create_ms: Option<u64>,
    pub update_ms: Option<u64>,
    pub fail_on: Option<Vec<String>>,
    pub failure_message: Option<String>,
    pub no_commitment_unit_quota: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_minute_by_model: BTreeMap<String, Option<u64>>,
    #[serde(default, deserialize_with = "crate::state::set_or_clear")]
    pub now: Option<Option<String>>,
}

impl ProvisionedSettings {
    /// These settings with a patch applied, or why the patch is refused.
    pub fn patched(&self, patch: &ProvisionedPatch) -> Result<ProvisionedSettings, String> {
        let mut next = self.clone();
        if let Some(v) = patch.create_ms {
            next.create_ms = v;
        }
        if let Some(v) = patch.update_ms {
            next.update_ms = v;
        }
        if let Some(v) = &patch.fail_on {
            next.fail_on.clone_from(v);
        }
        if let Some(v) = &patch.failure_message {
            if v.is_empty() {
                return Err("provisioned.failureMessage must not be empty".to_owned());
            }
            next.failure_message.clone_from(v);
        }
        if let Some(v) = patch.no_commitment_unit_quota {
            next.no_commitment_unit_quota = v;
        }
        if let Some(v) = patch.tokens_per_minute {
            next.tokens_per_minute = v;
        }
        for (model, tokens) in &patch.tokens_per_minute_by_model {
            match tokens {
                Some(tokens) => {
                    next.tokens_per_minute_by_model
                        .insert(model.clone(), *tokens);
                }
                None => {
                    next.tokens_per_minute_by_model.remove(model);
                }
            }
        }
        if let Some(now) = &patch.now {
            next.now = match now {
                Some(text) => Some(parse_time(text).ok_or_else(|| {
                    format!("provisioned.now must be an ISO-8601 time such as 2026-01-31T09:00:00Z, got {text:?}")
                })?),
                None => None,
            };
        }
        Ok(next)
    }

    /// The present, as the commitment check sees it.
    pub fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }

    /// Tokens per minute per model unit of a Provisioned Throughput's model.
    pub fn tokens_per_unit(&self, pt: &Provisioned) -> u64 {
        [pt.base_model.as_str(), pt.model_id.as_str()]
            .iter()
            .find_map(|id| self.tokens_per_minute_by_model.get(*id).copied())
            .unwrap_or(self.tokens_per_minute)
    }

    /// A Provisioned Throughput's tokens per minute.
    pub fn capacity(&self, pt: &Provisioned) -> u64 {
        self.tokens_per_unit(pt)
            .saturating_mul(u64::from(pt.model_units))
    }

    fn fails(&self, accepted: &Accepted, base_model: &str) -> bool {
        self.fail_on.iter().any(|listed| {
            listed == &accepted.name || listed == &accepted.model_id || listed == base_model
        })
    }
}

/// `ProvisionedModelStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    InService,
    Updating,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Creating,
        Status::InService,
        Status::Updating,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "Creating",
            Status::InService => "InService",
            Status::Updating => "Updating",
            Status::Failed => "Failed",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether runtime calls are served (Bedrock serves during an update).
    pub fn serves(self) -> bool {
        matches!(self, Status::InService | Status::Updating)
    }
}

/// Where a Provisioned Throughput is in its life; timed phases end when they are read.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Creating {
        until: DateTime<Utc>,
        failure: Option<String>,
    },
    Updating {
        until: DateTime<Utc>,
    },
    InService,
    Failed {
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub id: String,
    pub arn: String,
    /// Creation order, for sorting and pagination.
    pub seq: u64,
    pub name: String,
    pub model_units: u32,
    /// The model as sent on create.
    pub model_id: String,
    /// The catalog's id of the model it serves.
    pub base_model: String,
    pub model_arn: String,
    pub desired_model_arn: String,
    pub foundation_model_arn: String,
    pub commitment: Option<Commitment>,
    pub commitment_expiration_time: Option<DateTime<Utc>>,
    pub creation_time: DateTime<Utc>,
    pub last_modified_time: DateTime<Utc>,
    pub client_request_token: Option<String>,
    pub tags: Vec<Tag>,
    phase: Phase,
}

impl Provisioned {
    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Creating { .. } => Status::Creating,
            Phase::Updating { .. } => Status::Updating,
            Phase::InService => Status::InService,
            Phase::Failed { .. } => Status::Failed,
        }
    }

    pub fn failure_message(&self) -> Option<&str> {
        match &self.phase {
            Phase::Failed { message } => Some(message),
            _ => None,
        }
    }

    /// Ends a timed phase whose time has come; its end is the last modification.
    fn settle(&mut self, now: DateTime<Utc>) {
        match &self.phase {
            Phase::Creating { until, failure } if *until <= now => {
                self.last_modified_time = *until;
                self.phase = match failure {
                    Some(message) => Phase::Failed {
                        message: message.clone(),
                    },
                    None => Phase::InService,
                };
            }
            Phase::Updating { until } if *until <= now => {
                self.last_modified_time = *until;
                self.model_arn.clone_from(&self.desired_model_arn);
                self.phase = Phase::InService;
            }
            _ => {}
        }
    }

    /// `ProvisionedModelSummary`.
    pub fn summary(&self) -> Value {
        let mut out = Map::new();
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        put("provisionedModelName", json!(self.name));
        put("provisionedModelArn", json!(self.arn));
        put("modelArn", json!(self.model_arn));
        put("desiredModelArn", json!(self.desired_model_arn));
        put("foundationModelArn", json!(self.foundation_model_arn));
        put("modelUnits", json!(self.model_units));
        put("desiredModelUnits", json!(self.model_units));
        put("status", json!(self.status().as_str()));
        if let Some(commitment) = self.commitment {
            put("commitmentDuration", json!(commitment.as_str()));
        }
        if let Some(expiration) = self.commitment_expiration_time {
            put("commitmentExpirationTime", json!(timestamp(expiration)));
        }
        put("creationTime", json!(timestamp(self.creation_time)));
        put(
            "lastModifiedTime",
            json!(timestamp(self.last_modified_time)),
        );
        Value::Object(out)
    }

    /// `GetProvisionedModelThroughput`'s answer: the summary and `failureMessage`.
    pub fn describe(&self) -> Value {
        let mut out = self.summary();
        if let Some(message) = self.failure_message() {
            out["failureMessage"] = json!(message);
        }
        out
    }
}

/// The tokens of the calls served in the last [`CAPACITY_WINDOW`].
#[derive(Debug, Default)]
struct Window {
    calls: VecDeque<(Instant, u64)>,
    total: u64,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while let Some(&(at, tokens)) = self.calls.front() {
            if now.saturating_duration_since(at) < CAPACITY_WINDOW {
                break;
            }
            self.calls.pop_front();
            self.total = self.total.saturating_sub(tokens);
        }
    }

    fn push(&mut self, now: Instant, tokens: u64) {
        self.calls.push_back((now, tokens));
        self.total = self.total.saturating_add(tokens);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// By id.
    pts: BTreeMap<String, Provisioned>,
    seq: u64,
    /// By ARN.
    windows: HashMap<String, Window>,
    /// Calls refused for capacity, by ARN.
    capacity_throttled: HashMap<String, u64>,
}

impl Inner {
    fn by_arn(&self, arn: &str) -> Option<&Provisioned> {
        self.pts.values().find(|pt| pt.arn == arn)
    }

    /// A name, an id or an ARN.
    fn find(&self, identifier: &str) -> Option<&Provisioned> {
        if identifier.starts_with("arn:") {
            return self.by_arn(identifier);
        }
        self.pts
            .values()
            .find(|pt| pt.name == identifier)
            .or_else(|| self.pts.get(identifier))
    }
}

/// Every Provisioned Throughput that exists, with its capacity window.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    /// The registry, every timed phase that has ended settled.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        for pt in inner.pts.values_mut() {
            pt.settle(now);
        }
        inner
    }

    /// Forgets every Provisioned Throughput.
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = Inner::default();
    }

    /// A Provisioned Throughput by name, id or ARN.
    pub fn find(&self, identifier: &str) -> Option<Provisioned> {
        self.lock().find(identifier).cloned()
    }

    /// Every Provisioned Throughput, in creation order.
    pub fn all(&self) -> Vec<Provisioned> {
        let mut all: Vec<_> = self.lock().pts.values().cloned().collect();
        all.sort_by_key(|pt| pt.seq);
        all
    }
}

/// Whether a model identifier is a Provisioned Throughput ARN (held or not).
pub fn is_provisioned_arn(model_id: &str) -> bool {
    model_id.starts_with("arn:") && model_id.contains(":provisioned-model/")
}

fn invalid_model() -> BedrockError {
    BedrockError::validation("The provided model identifier is invalid.")
}

fn not_found(identifier: &str) -> BedrockError {
    BedrockError::resource_not_found(format!(
        "The specified Provisioned Throughput {identifier} could not be found."
    ))
}

/// A runtime call naming a Provisioned Throughput ARN the registry does not hold.
fn runtime_not_found() -> BedrockError {
    BedrockError::resource_not_found(
        "Could not resolve the foundation model from the provided model identifier.",
    )
}

fn not_ready(arn: &str, status: Status) -> BedrockError {
    BedrockError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ModelNotReadyException",
        format!(
            "The provisioned model {arn} is not ready to serve inference requests: its status is {}. Try again when it is InService.",
            status.as_str()
        ),
    )
}

fn too_many_tokens() -> BedrockError {
    BedrockError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ThrottlingException",
        "Too many tokens, please wait before trying again.",
    )
}

fn too_many_tags(arn: &str, count: usize) -> BedrockError {
    BedrockError::new(
        StatusCode::BAD_REQUEST,
        "TooManyTagsException",
        format!(
            "The request would leave {count} tags on {arn}; a resource can have at most {MAX_TAGS_PER_RESOURCE} tags."
        ),
    )
}

impl EmulatorState {
    /// `arn:aws:bedrock:REGION::foundation-model/ID` for a model id; an ARN as it is.
    fn model_arn(&self, model_id: &str) -> String {
        if model_id.starts_with("arn:") {
            model_id.to_owned()
        } else {
            format!(
                "arn:aws:bedrock:{}::foundation-model/{model_id}",
                self.identity.region
            )
        }
    }

    /// Registers a Provisioned Throughput, or finds the one an earlier request with the same
    /// token created.
    pub fn create_provisioned(&self, accepted: Accepted) -> Result<Provisioned, BedrockError> {
        let settings = self.config().provisioned;
        let mut inner = self.provisioned.lock();
        if let Some(token) = &accepted.client_request_token {
            let earlier = inner
                .pts
                .values()
                .find(|pt| pt.client_request_token.as_ref() == Some(token));
            if let Some(pt) = earlier {
                return Ok(pt.clone());
            }
        }
        let base_model = self
            .catalog
            .provisionable(&accepted.model_id)
            .ok_or_else(invalid_model)?;
        if inner.pts.values().any(|pt| pt.name == accepted.name) {
            return Err(BedrockError::conflict(format!(
                "A Provisioned Throughput with the name {} already exists. Use a different provisionedModelName.",
                accepted.name
            )));
        }
        if accepted.tags.len() > MAX_TAGS_PER_RESOURCE {
            return Err(too_many_tags(&accepted.name, accepted.tags.len()));
        }
        if accepted.commitment.is_none() {
            let used: u64 = inner
                .pts
                .values()
                .filter(|pt| pt.commitment.is_none() && pt.status() != Status::Failed)
                .map(|pt| u64::from(pt.model_units))
                .sum();
            let quota = settings.no_commitment_unit_quota;
            if used + u64::from(accepted.model_units) > u64::from(quota) {
                return Err(BedrockError::service_quota_exceeded(format!(
                    "You have exceeded the quota of {quota} model units for no-commitment Provisioned Throughput: {used} are in use and {} were requested. Delete a no-commitment Provisioned Throughput, request fewer model units, or request a quota increase.",
                    accepted.model_units
                )));
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        let id = new_id("pt:", seq, |id| inner.pts.contains_key(id));
        // Milliseconds, as reported, so that a reported time filters as it reads.
        let now = now_millis();
        let failure = settings
            .fails(&accepted, &base_model)
            .then(|| settings.failure_message.clone());
        let model_arn = self.model_arn(&accepted.model_id);
        let mut pt = Provisioned {
            arn: format!(
                "arn:aws:bedrock:{}:{}:provisioned-model/{id}",
                self.identity.region, self.identity.account
            ),
            id: id.clone(),
            seq,
            name: accepted.name,
            model_units: accepted.model_units,
            model_id: accepted.model_id,
            base_model,
            desired_model_arn: model_arn.clone(),
            foundation_model_arn: model_arn.clone(),
            model_arn,
            commitment: accepted.commitment,
            commitment_expiration_time: accepted
                .commitment
                .and_then(|c| now.checked_add_months(Months::new(c.months()))),
            creation_time: now,
            last_modified_time: now,
            client_request_token: accepted.client_request_token,
            tags: accepted.tags,
            phase: Phase::Creating {
                until: now + duration_ms(settings.create_ms),
                failure,
            },
        };
        pt.settle(now);
        inner.pts.insert(id, pt.clone());
        Ok(pt)
    }

    /// The Provisioned Throughput a `provisionedModelId` (name or ARN) names.
    pub fn find_provisioned(&self, identifier: &str) -> Result<Provisioned, BedrockError> {
        check_identifier(identifier)?;
        self.provisioned
            .find(identifier)
            .ok_or_else(|| not_found(identifier))
    }

    /// Renames a Provisioned Throughput or (re)associates its model; either makes it
    /// `Updating` for `updateMs`.
    pub fn update_provisioned(
        &self,
        identifier: &str,
        request: &UpdateRequest,
    ) -> Result<Provisioned, BedrockError> {
        check_update(identifier, request)?;
        let settings = self.config().provisioned;
        let desired_model_arn = match &request.desired_model_id {
            Some(model) => {
                self.catalog
                    .provisionable(model)
                    .ok_or_else(invalid_model)?;
                Some(self.model_arn(model))
            }
            None => None,
        };
        let mut inner = self.provisioned.lock();
        let pt = inner
            .find(identifier)
            .ok_or_else(|| not_found(identifier))?;
        let (id, arn, status) = (pt.id.clone(), pt.arn.clone(), pt.status());
        if status != Status::InService {
            return Err(BedrockError::validation(format!(
                "The Provisioned Throughput {arn} cannot be updated: its status is {}. Try again when it is InService.",
                status.as_str()
            )));
        }
        if let Some(desired) = &desired_model_arn {
            if *desired != pt.model_arn {
                return Err(BedrockError::validation(format!(
                    "You can't change the model of a Provisioned Throughput associated with a base model: {arn} serves {}.",
                    pt.model_arn
                )));
            }
        }
        let rename = request
            .desired_provisioned_model_name
            .as_ref()
            .filter(|name| **name != pt.name);
        if let Some(name) = rename {
            if inner.pts.values().any(|other| other.name == *name) {
                return Err(BedrockError::conflict(format!(
                    "A Provisioned Throughput with the name {name} already exists. Use a different desiredProvisionedModelName."
                )));
            }
        }
        let changes = rename.is_some() || desired_model_arn.is_some();
        let rename = rename.cloned();
        let Some(pt) = inner.pts.get_mut(&id) else {
            return Err(not_found(identifier));
        };
        if changes {
            let now = now_millis();
            if let Some(name) = rename {
                pt.name = name;
            }
            if let Some(desired) = desired_model_arn {
                pt.desired_model_arn = desired;
            }
            pt.last_modified_time = now;
            pt.phase = Phase::Updating {
                until: now + duration_ms(settings.update_ms),
            };
            pt.settle(now);
        }
        Ok(pt.clone())
    }

    /// Deletes a Provisioned Throughput, unless it is changing or its commitment runs.
    pub fn delete_provisioned(&self, identifier: &str) -> Result<Provisioned, BedrockError> {
        check_identifier(identifier)?;
        let settings = self.config().provisioned;
        let mut inner = self.provisioned.lock();
        let pt = inner
            .find(identifier)
            .cloned()
            .ok_or_else(|| not_found(identifier))?;
        let status = pt.status();
        if matches!(status, Status::Creating | Status::Updating) {
            return Err(BedrockError::conflict(format!(
                "The Provisioned Throughput {} cannot be deleted while its status is {}. Try again when it is InService or Failed.",
                pt.arn,
                status.as_str()
            )));
        }
        if let (Some(commitment), Some(expiration), true) = (
            pt.commitment,
            pt.commitment_expiration_time,
            status != Status::Failed,
        ) {
            if settings.now() < expiration {
                return Err(BedrockError::validation(format!(
                    "You can't delete a Provisioned Throughput with commitment before the commitment term is complete: the {} commitment of {} ends at {}.",
                    commitment.as_str(),
                    pt.arn,
                    timestamp(expiration)
                )));
            }
        }
        inner.pts.remove(&pt.id);
        inner.windows.remove(&pt.arn);
        inner.capacity_throttled.remove(&pt.arn);
        Ok(pt)
    }

    /// The output-token limit of a model identifier: a Provisioned Throughput ARN by the
    /// registry (its base model's limit), anything else by the catalog.
    pub fn max_output_tokens(&self, model_id: &str) -> Result<u32, BedrockError> {
        if !is_provisioned_arn(model_id) {
            return self.catalog.max_output_tokens(model_id);
        }
        let base = self
            .provisioned
            .lock()
            .by_arn(model_id)
            .map(|pt| pt.base_model.clone());
        base.and_then(|base| self.catalog.provisioned_limit(&base))
            .ok_or_else(runtime_not_found)
    }

    /// Admits a runtime call by its model identifier's Provisioned Throughput status:
    /// `Ok(None)` for anything but a Provisioned Throughput ARN, `Ok(Some(arn))` for one that
    /// serves; an unknown ARN or one not ready is answered (and counted) here.
    pub fn provisioned_gate(&self, model_id: &str) -> Result<Option<String>, BedrockError> {
        if !is_provisioned_arn(model_id) {
            return Ok(None);
        }
        let status = self
            .provisioned
            .lock()
            .by_arn(model_id)
            .map(|pt| pt.status());
        let (fault, error) = match status {
            Some(status) if status.serves() => return Ok(Some(model_id.to_owned())),
            Some(status) => (Fault::ModelNotReady, not_ready(model_id, status)),
            None => (Fault::ResourceNotFound, runtime_not_found()),
        };
        self.record_fault(model_id, fault, true);
        Err(error)
    }

    /// Takes a call's tokens from its Provisioned Throughput's capacity, or answers (and
    /// counts) a `ThrottlingException` when they do not fit in the last minute's.
    pub fn charge_provisioned(&self, arn: &str, tokens: u64) -> Result<(), BedrockError> {
        let settings = self.config().provisioned;
        let now = Instant::now();
        let mut inner = self.provisioned.lock();
        let Some(capacity) = inner.by_arn(arn).map(|pt| settings.capacity(pt)) else {
            // Deleted since it was admitted: the call was admitted with the capacity it had.
            return Ok(());
        };
        let window = inner.windows.entry(arn.to_owned()).or_default();
        window.prune(now);
        if window.total.saturating_add(tokens) > capacity {
            *inner.capacity_throttled.entry(arn.to_owned()).or_default() += 1;
            drop(inner);
            self.record_fault(arn, Fault::Throttling, false);
            return Err(too_many_tokens());
        }
        window.push(now, tokens);
        Ok(())
    }

    /// The tags of a resource the tagging operations name (Provisioned Throughputs only).
    fn tagged(&self, arn: &str) -> Result<Provisioned, BedrockError> {
        self.provisioned.lock().by_arn(arn).cloned().ok_or_else(|| {
            BedrockError::resource_not_found(format!(
                "The specified resource {arn} could not be found."
            ))
        })
    }

    fn retag(&self, arn: &str, change: impl FnOnce(&mut Vec<Tag>)) -> Result<(), BedrockError> {
        let mut inner = self.provisioned.lock();
        let pt = inner
            .pts
            .values_mut()
            .find(|pt| pt.arn == arn)
            .ok_or_else(|| {
                BedrockError::resource_not_found(format!(
                    "The specified resource {arn} could not be found."
                ))
            })?;
        let mut tags = pt.tags.clone();
        change(&mut tags);
        if tags.len() > MAX_TAGS_PER_RESOURCE {
            return Err(too_many_tags(arn, tags.len()));
        }
        pt.tags = tags;
        Ok(())
    }
}

/// The system clock, to the millisecond.
fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn duration_ms(ms: u64) -> Duration {
    Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

pub async fn create(
    State(state): State<Arc<EmulatorState>>,
    bytes: Bytes,
) -> Result<Response, BedrockError> {
    let request: CreateRequest = body(&bytes)?;
    let accepted = check_create(request)?;
    let pt = state.create_provisioned(accepted)?;
    tracing::info!(arn = %pt.arn, name = %pt.name, model_id = %pt.model_id, units = pt.model_units, "provisioned throughput created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "provisionedModelArn": pt.arn })),
    )
        .into_response())
}

pub async fn get(
    State(state): State<Arc<EmulatorState>>,
    Path(identifier): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    Ok(Json(state.find_provisioned(&identifier)?.describe()))
}

pub async fn update(
    State(state): State<Arc<EmulatorState>>,
    Path(identifier): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: UpdateRequest = body(&bytes)?;
    state.update_provisioned(&identifier, &request)?;
    Ok(Json(json!({})))
}

pub async fn delete(
    State(state): State<Arc<EmulatorState>>,
    Path(identifier): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    let pt = state.delete_provisioned(&identifier)?;
    tracing::info!(arn = %pt.arn, name = %pt.name, "provisioned throughput deleted");
    Ok(Json(json!({})))
}

/// How `ListProvisionedModelThroughputs` names its filters and page tokens.
const LIST_SPEC: ListSpec = ListSpec {
    name_pattern: NAME_PATTERN,
    time_params: ("creationTimeAfter", "creationTimeBefore"),
    token_prefix: "pt-after-",
};

/// `modelArnEquals`, checked.
fn model_arn_equals(params: &HashMap<String, String>) -> Result<Option<String>, BedrockError> {
    let Some(value) = params.get("modelArnEquals") else {
        return Ok(None);
    };
    let length = value.chars().count();
    if !(20..=1011).contains(&length) {
        return Err(invalid(
            value,
            "modelArnEquals",
            "have length between 20 and 1011",
        ));
    }
    if !full_match(MODEL_ARN_PATTERN, value) {
        return Err(invalid(
            value,
            "modelArnEquals",
            &format!("satisfy regular expression pattern: {MODEL_ARN_PATTERN}"),
        ));
    }
    Ok(Some(value.clone()))
}

pub async fn list(
    State(state): State<Arc<EmulatorState>>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, BedrockError> {
    let Query(params) =
        params.map_err(|e| BedrockError::validation(format!("Malformed query string: {e}")))?;
    let names = Status::ALL.map(Status::as_str);
    let status = status_equals(&params, &names, Status::parse)?;
    let model_arn = model_arn_equals(&params)?;
    let page = ListPage::parse(&params, &LIST_SPEC)?;
    let pts: Vec<Provisioned> = state
        .provisioned
        .all()
        .into_iter()
        .filter(|pt| status.is_none_or(|s| pt.status() == s))
        .filter(|pt| model_arn.as_ref().is_none_or(|a| pt.model_arn == *a))
        .filter(|pt| page.admits(&pt.name, pt.creation_time))
        .collect();
    Ok(Json(page.answer(
        "provisionedModelSummaries",
        pts,
        |pt| pt.seq,
        Provisioned::summary,
    )))
}

fn tags_json(tags: &[Tag]) -> Value {
    json!(tags
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value}))
        .collect::<Vec<_>>())
}

/// `ListTagsForResource` (`POST /listTagsForResource`).
pub async fn list_tags(
    State(state): State<Arc<EmulatorState>>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: TagsRequest = body(&bytes)?;
    let (arn, _, _) = check_tags_request(&request, false, false)?;
    let pt = state.tagged(&arn)?;
    Ok(Json(json!({ "tags": tags_json(&pt.tags) })))
}

/// `TagResource` (`POST /tagResource`): a key already there takes the new value.
pub async fn tag(
    State(state): State<Arc<EmulatorState>>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: TagsRequest = body(&bytes)?;
    let (arn, new_tags, _) = check_tags_request(&request, true, false)?;
    state.retag(&arn, |tags| {
        for tag in new_tags {
            match tags.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value,
                None => tags.push(tag),
            }
        }
    })?;
    Ok(Json(json!({})))
}

/// `UntagResource` (`POST /untagResource`): keys not there are ignored.
pub async fn untag(
    State(state): State<Arc<EmulatorState>>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: TagsRequest = body(&bytes)?;
    let (arn, _, keys) = check_tags_request(&request, false, true)?;
    state.retag(&arn, |tags| tags.retain(|t| !keys.contains(&t.key)))?;
    Ok(Json(json!({})))
}

/// For `/_emulator/stats`: each Provisioned Throughput by ARN, with its capacity and use.
pub fn stats(state: &EmulatorState) -> Value {
    let settings = state.config().provisioned;
    let models = state.stats();
    let now = Instant::now();
    let mut inner = state.provisioned.lock();
    let pts: Vec<Provisioned> = inner.pts.values().cloned().collect();
    let mut out = Map::new();
    for pt in pts {
        let used = inner.windows.get_mut(&pt.arn).map_or(0, |window| {
            window.prune(now);
            window.total
        });
        let calls = models.get(&pt.arn);
        out.insert(
            pt.arn.clone(),
            json!({
                "provisionedModelName": pt.name,
                "status": pt.status().as_str(),
                "modelId": pt.model_id,
                "baseModelId": pt.base_model,
                "modelUnits": pt.model_units,
                "commitmentDuration": pt.commitment.map(Commitment::as_str),
                "tokensPerMinute": settings.capacity(&pt),
                "tokensLastMinute": used,
                "calls": calls.map_or(0, |s| s.calls),
                "served": calls.map_or(0, |s| s.served),
                "capacityThrottled": inner.capacity_throttled.get(&pt.arn).copied().unwrap_or(0),
            }),
        );
    }
    Value::Object(out)
}
