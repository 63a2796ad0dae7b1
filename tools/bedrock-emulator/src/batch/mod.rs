//! Bedrock's batch inference control plane (service `bedrock`, REST-JSON):
//! `CreateModelInvocationJob` (`POST /model-invocation-job`), `GetModelInvocationJob`
//! (`GET /model-invocation-job/{jobIdentifier}`), `ListModelInvocationJobs`
//! (`GET /model-invocation-jobs`) and `StopModelInvocationJob`
//! (`POST /model-invocation-job/{jobIdentifier}/stop`). Each job runs its lifecycle in a
//! background task (see [`run`]) and every state change is an EventBridge-shaped event.

pub mod job;
pub mod run;
pub mod storage;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::AbortHandle;

use crate::error::BedrockError;
use crate::state::{BatchSettings, EmulatorState};
use job::{check_create, full_match, Accepted, CreateRequest, Job, Status};

/// The account and region jobs and events belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub region: String,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            account: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    jobs: BTreeMap<String, Job>,
    tasks: HashMap<String, AbortHandle>,
    seq: u64,
}

/// Every job, by id, with the task that runs it.
#[derive(Debug, Default)]
pub struct Jobs {
    inner: Mutex<Registry>,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every job and stops their tasks.
    pub fn clear(&self) {
        let mut registry = self.lock();
        for (_, task) in registry.tasks.drain() {
            task.abort();
        }
        registry.jobs.clear();
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().jobs.get(id).cloned()
    }

    /// How many jobs are in each status.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for job in self.lock().jobs.values() {
            *counts.entry(job.status.as_str()).or_default() += 1;
        }
        counts
    }
}

/// Twelve lowercase alphanumerics, as Bedrock's job ids.
fn new_job_id(seq: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let digest = Sha256::digest(format!("{seq}:{nanos}:{}", std::process::id()));
    digest
        .iter()
        .take(12)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// A UUID-shaped id derived from a seed (event ids).
pub(crate) fn uuid_from(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

impl EmulatorState {
    /// The EventBridge event for a job's current state ("Batch Inference Job State Change").
    fn job_event(&self, job: &Job) -> Value {
        let identity = &self.identity;
        let counts = job.counts.unwrap_or_default();
        let now = Utc::now();
        json!({
            "version": "0",
            "id": uuid_from(&format!("{}:{}:{}", job.arn, job.status.as_str(), now.timestamp_nanos_opt().unwrap_or_default())),
            "detail-type": "Batch Inference Job State Change",
            "source": "aws.bedrock",
            "account": identity.account,
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": identity.region,
            "resources": [job.arn],
            "detail": {
                "version": "0.0",
                "accountId": identity.account,
                "batchJobName": job.request.job_name,
                "batchJobArn": job.arn,
                "batchModelId": job.request.model_id,
                "status": job.status.as_str(),
                "failureMessage": if job.status == Status::Failed { job.message.clone().unwrap_or_default() } else { String::new() },
                "processedRecordCount": counts.processed,
                "successRecordCount": counts.success,
                "errorRecordCount": counts.error,
            },
        })
    }

    fn publish_job_event(&self, settings: &BatchSettings, job: &Job) {
        if settings.events_enabled {
            self.events
                .publish(settings.event_target.as_deref(), self.job_event(job));
        }
    }

    /// Changes a job under the registry's lock; a change of status is published as an event
    /// (under the same lock, so a job's events are in the order of its changes). `None` when
    /// the job is gone (reset).
    pub(crate) fn update_job(&self, id: &str, change: impl FnOnce(&mut Job)) -> Option<Job> {
        let settings = self.config().batch;
        let mut registry = self.jobs.lock();
        let job = registry.jobs.get_mut(id)?;
        let before = job.status;
        change(job);
        let now = Utc::now();
        job.last_modified_time = now;
        if job.status.is_ended() && job.end_time.is_none() {
            job.end_time = Some(now);
        }
        let job = job.clone();
        if job.status != before {
            self.publish_job_event(&settings, &job);
        }
        Some(job)
    }

    /// Registers a job, or finds the one an earlier request with the same token created.
    /// `Ok((job, true))` for a new job.
    fn create_job(&self, accepted: Accepted) -> Result<(Job, bool), BedrockError> {
        let settings = self.config().batch;
        let mut registry = self.jobs.lock();
        if let Some(token) = &accepted.client_request_token {
            let earlier = registry
                .jobs
                .values()
                .find(|j| j.request.client_request_token.as_ref() == Some(token));
            if let Some(job) = earlier {
                return Ok((job.clone(), false));
            }
        }
        if registry
            .jobs
            .values()
            .any(|j| j.request.job_name == accepted.job_name && j.status.is_active())
        {
            return Err(BedrockError::conflict(format!(
                "A batch inference job with the name {} already exists and has not ended. Use a different jobName, or wait for that job to end.",
                accepted.job_name
            )));
        }
        let active = registry
            .jobs
            .values()
            .filter(|j| j.request.model_id == accepted.model_id && j.status.is_active())
            .count();
        let quota = settings.batch_concurrent_job_quota;
        if active >= usize::try_from(quota).unwrap_or(usize::MAX) {
            return Err(BedrockError::service_quota_exceeded(format!(
                "You have reached the quota of {quota} concurrent batch inference jobs for model {}: {active} are submitted or in progress. Wait for a job to end or stop one, then try again.",
                accepted.model_id
            )));
        }
        registry.seq += 1;
        let seq = registry.seq;
        let mut id = new_job_id(seq);
        while registry.jobs.contains_key(&id) {
            id = new_job_id(seq ^ u64::from(id.as_bytes()[0]));
        }
        let now = Utc::now();
        let job = Job {
            arn: format!(
                "arn:aws:bedrock:{}:{}:model-invocation-job/{id}",
                self.identity.region, self.identity.account
            ),
            id: id.clone(),
            seq,
            status: Status::Submitted,
            message: None,
            submit_time: now,
            last_modified_time: now,
            end_time: None,
            expiration_time: now + Duration::hours(accepted.timeout_hours),
            counts: None,
            request: accepted,
        };
        registry.jobs.insert(id, job.clone());
        self.publish_job_event(&settings, &job);
        Ok((job, true))
    }

    fn remember_task(&self, id: &str, task: AbortHandle) {
        let mut registry = self.jobs.lock();
        if registry.jobs.contains_key(id) {
            registry.tasks.insert(id.to_owned(), task);
        } else {
            task.abort();
        }
    }

    /// The job a `jobIdentifier` (id or ARN) names.
    fn find_job(&self, identifier: &str) -> Result<Job, BedrockError> {
        if !full_match(job::JOB_IDENTIFIER_PATTERN, identifier) {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{identifier}' at 'jobIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {}",
                job::JOB_IDENTIFIER_PATTERN
            )));
        }
        let id = identifier.rsplit('/').next().unwrap_or(identifier);
        self.jobs
            .get(id)
            .filter(|job| !identifier.starts_with("arn:") || job.arn == identifier)
            .ok_or_else(|| {
                BedrockError::resource_not_found(format!(
                    "The specified batch inference job {identifier} could not be found."
                ))
            })
    }
}

pub async fn create(
    State(state): State<Arc<EmulatorState>>,
    body: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| BedrockError::validation(format!("Malformed request body: {e}")))?;
    let accepted = check_create(&state.catalog, request)?;
    let (job, created) = state.create_job(accepted)?;
    if created {
        tracing::info!(job_arn = %job.arn, model_id = %job.request.model_id, "batch inference job submitted");
        let task = tokio::spawn(run::run(state.clone(), job.id.clone()));
        state.remember_task(&job.id, task.abort_handle());
    }
    Ok(Json(json!({ "jobArn": job.arn })))
}

pub async fn get(
    State(state): State<Arc<EmulatorState>>,
    Path(identifier): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    Ok(Json(state.find_job(&identifier)?.describe()))
}

pub async fn stop(
    State(state): State<Arc<EmulatorState>>,
    Path(identifier): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    let job = state.find_job(&identifier)?;
    let mut refused = None;
    state.update_job(&job.id, |job| match job.status {
        Status::Stopping => {}
        status if status.is_active() => job.status = Status::Stopping,
        status => refused = Some(status),
    });
    if let Some(status) = refused {
        return Err(BedrockError::validation(format!(
            "The batch inference job {} cannot be stopped: its status is {}.",
            job.arn,
            status.as_str()
        )));
    }
    Ok(Json(json!({})))
}

/// `ListModelInvocationJobs`' query, checked.
#[derive(Debug, Default)]
struct ListQuery {
    status: Option<Status>,
    name_contains: Option<String>,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    ascending: bool,
    max_results: usize,
    /// The creation order (`seq`) of the last job of the previous page.
    after_seq: Option<u64>,
}

const DEFAULT_MAX_RESULTS: usize = 1000;

fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Some(time.with_timezone(&Utc));
    }
    // Epoch seconds, possibly fractional.
    let seconds: f64 = value.parse().ok()?;
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
}

fn list_query(params: &HashMap<String, String>) -> Result<ListQuery, BedrockError> {
    let invalid = |value: &str, name: &str, constraint: &str| {
        BedrockError::validation(format!(
            "1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: Member must {constraint}"
        ))
    };
    let mut query = ListQuery {
        max_results: DEFAULT_MAX_RESULTS,
        ..ListQuery::default()
    };
    if let Some(value) = params.get("statusEquals") {
        let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
        query.status = Some(Status::parse(value).ok_or_else(|| {
            invalid(
                value,
                "statusEquals",
                &format!("satisfy enum value set: [{}]", names.join(", ")),
            )
        })?);
    }
    if let Some(value) = params.get("nameContains") {
        if value.is_empty() || value.chars().count() > 63 {
            return Err(invalid(
                value,
                "nameContains",
                "have length between 1 and 63",
            ));
        }
        if !full_match(job::JOB_NAME_PATTERN, value) {
            return Err(invalid(
                value,
                "nameContains",
                &format!(
                    "satisfy regular expression pattern: {}",
                    job::JOB_NAME_PATTERN
                ),
            ));
        }
        query.name_contains = Some(value.clone());
    }
    for (name, slot) in [
        ("submitTimeAfter", &mut query.after),
        ("submitTimeBefore", &mut query.before),
    ] {
        if let Some(value) = params.get(name) {
            *slot = Some(
                parse_time(value)
                    .ok_or_else(|| invalid(value, name, "be an ISO-8601 timestamp"))?,
            );
        }
    }
    if let Some(value) = params.get("sortBy") {
        if value != "CreationTime" {
            return Err(invalid(
                value,
                "sortBy",
                "satisfy enum value set: [CreationTime]",
            ));
        }
    }
    if let Some(value) = params.get("sortOrder") {
        query.ascending = match value.as_str() {
            "Ascending" => true,
            "Descending" => false,
            _ => {
                return Err(invalid(
                    value,
                    "sortOrder",
                    "satisfy enum value set: [Ascending, Descending]",
                ))
            }
        };
    }
    if let Some(value) = params.get("maxResults") {
        let n: i64 = value
            .parse()
            .map_err(|_| invalid(value, "maxResults", "be an integer"))?;
        if n < 1 {
            return Err(invalid(
                value,
                "maxResults",
                "have value greater than or equal to 1",
            ));
        }
        if n > 1000 {
            return Err(invalid(
                value,
                "maxResults",
                "have value less than or equal to 1000",
            ));
        }
        query.max_results = usize::try_from(n).unwrap_or(DEFAULT_MAX_RESULTS);
    }
    if let Some(value) = params.get("nextToken") {
        let seq = value
            .strip_prefix("page-after-")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| BedrockError::validation("The provided pagination token is invalid."))?;
        query.after_seq = Some(seq);
    }
    Ok(query)
}

pub async fn list(
    State(state): State<Arc<EmulatorState>>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, BedrockError> {
    let Query(params) =
        params.map_err(|e| BedrockError::validation(format!("Malformed query string: {e}")))?;
    let query = list_query(&params)?;
    let mut jobs: Vec<Job> = state
        .jobs
        .lock()
        .jobs
        .values()
        .filter(|j| query.status.is_none_or(|s| j.status == s))
        .filter(|j| {
            query
                .name_contains
                .as_deref()
                .is_none_or(|n| j.request.job_name.contains(n))
        })
        .filter(|j| query.after.is_none_or(|t| j.submit_time > t))
        .filter(|j| query.before.is_none_or(|t| j.submit_time < t))
        .cloned()
        .collect();
    jobs.sort_by_key(|j| j.seq);
    if !query.ascending {
        jobs.reverse();
    }
    if let Some(after) = query.after_seq {
        jobs.retain(|j| {
            if query.ascending {
                j.seq > after
            } else {
                j.seq < after
            }
        });
    }
    let more = jobs.len() > query.max_results;
    jobs.truncate(query.max_results);
    let mut answer = json!({
        "invocationJobSummaries": jobs.iter().map(Job::describe).collect::<Vec<_>>(),
    });
    if more {
        if let Some(last) = jobs.last() {
            answer["nextToken"] = json!(format!("page-after-{}", last.seq));
        }
    }
    Ok(Json(answer))
}

/// `GET /_emulator/events`: the most recent job-state events, oldest first.
pub async fn events(State(state): State<Arc<EmulatorState>>) -> Json<Value> {
    Json(json!({ "events": state.events.recent() }))
}

/// For `/_emulator/stats`: jobs by status.
pub fn stats(state: &EmulatorState) -> Value {
    json!(state.jobs.counts())
}
