//! Bedrock's batch inference control plane (service `bedrock`, REST-JSON):
//! `CreateModelInvocationJob` (`POST /model-invocation-job`), `GetModelInvocationJob`
//! (`GET /model-invocation-job/{jobIdentifier}`), `ListModelInvocationJobs`
//! (`GET /model-invocation-jobs`) and `StopModelInvocationJob`
//! (`POST /model-invocation-job/{jobIdentifier}/stop`). Each job runs its lifecycle in a
//! background task (see [`run`]) and every state change is an EventBridge-shaped event.

pub mod job;
pub mod run;
pub mod settings;
pub mod storage;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::AbortHandle;

use crate::checks::{full_match, status_equals, ListPage, ListSpec};
use crate::error::BedrockError;
use crate::events::Events;
pub use crate::identity::Identity;
use crate::ids::new_id;
use crate::runtime::RuntimeState;
use job::{check_create, Accepted, CreateRequest, Job, Status};
pub use settings::{BatchPatch, BatchSettings};
use storage::{S3Storage, Storage};

/// The batch service's state: its settings, every job and its events, where jobs read and
/// write, and the runtime that answers their records.
#[derive(Debug)]
pub struct BatchState {
    /// Answers the records (and names the models jobs may use).
    pub runtime: Arc<RuntimeState>,
    /// The account and region of job ARNs and events.
    pub identity: Identity,
    /// What `/_emulator/reset` returns to.
    initial: BatchSettings,
    settings: Mutex<BatchSettings>,
    /// Batch inference jobs.
    pub jobs: Jobs,
    /// Job-state events, kept and delivered.
    pub events: Events,
    /// Where batch jobs read and write (S3, or memory in tests).
    pub storage: Arc<dyn Storage>,
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

impl BatchState {
    /// Jobs over S3 (reached as any SDK reaches it, from the environment).
    pub fn new(runtime: Arc<RuntimeState>, settings: BatchSettings, identity: Identity) -> Self {
        Self {
            runtime,
            identity,
            settings: Mutex::new(settings.clone()),
            initial: settings,
            jobs: Jobs::default(),
            events: Events::default(),
            storage: Arc::new(S3Storage::default()),
        }
    }

    /// The same state with jobs reading and writing elsewhere than S3.
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    fn lock_settings(&self) -> MutexGuard<'_, BatchSettings> {
        // Settings are replaced in one step: they stay consistent if a holder panicked.
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings in effect.
    pub fn settings(&self) -> BatchSettings {
        self.lock_settings().clone()
    }

    /// The settings the service started with (and returns to on reset).
    pub fn initial_settings(&self) -> &BatchSettings {
        &self.initial
    }

    /// The settings in effect with a patch applied, or why the result is refused; nothing
    /// changes.
    pub fn patched(&self, patch: &BatchPatch) -> Result<BatchSettings, String> {
        self.lock_settings().patched(patch)
    }

    /// Puts settings (checked by [`Self::patched`]) in effect.
    pub fn set_settings(&self, settings: BatchSettings) {
        *self.lock_settings() = settings;
    }

    /// Applies a patch: the settings now in effect, or why the result is refused.
    pub fn apply(&self, patch: &BatchPatch) -> Result<BatchSettings, String> {
        let mut settings = self.lock_settings();
        let next = settings.patched(patch)?;
        *settings = next.clone();
        Ok(next)
    }

    /// Back to the initial settings, with no job (their tasks stopped) and no event.
    pub fn reset(&self) {
        self.set_settings(self.initial.clone());
        self.jobs.clear();
        self.events.clear();
    }

    /// For `/_emulator/stats`: jobs by status.
    pub fn stats(&self) -> Value {
        json!(self.jobs.counts())
    }

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
        let settings = self.settings();
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
        let settings = self.settings();
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
        let id = new_id("", seq, |id| registry.jobs.contains_key(id));
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
    State(state): State<Arc<BatchState>>,
    body: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| BedrockError::validation(format!("Malformed request body: {e}")))?;
    let accepted = check_create(&state.runtime.catalog, request)?;
    let (job, created) = state.create_job(accepted)?;
    if created {
        tracing::info!(job_arn = %job.arn, model_id = %job.request.model_id, "batch inference job submitted");
        let task = tokio::spawn(run::run(state.clone(), job.id.clone()));
        state.remember_task(&job.id, task.abort_handle());
    }
    Ok(Json(json!({ "jobArn": job.arn })))
}

pub async fn get(
    State(state): State<Arc<BatchState>>,
    Path(identifier): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    Ok(Json(state.find_job(&identifier)?.describe()))
}

pub async fn stop(
    State(state): State<Arc<BatchState>>,
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

/// How `ListModelInvocationJobs` names its filters and page tokens.
const LIST_SPEC: ListSpec = ListSpec {
    name_pattern: job::JOB_NAME_PATTERN,
    time_params: ("submitTimeAfter", "submitTimeBefore"),
    token_prefix: "page-after-",
};

pub async fn list(
    State(state): State<Arc<BatchState>>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, BedrockError> {
    let Query(params) =
        params.map_err(|e| BedrockError::validation(format!("Malformed query string: {e}")))?;
    let names = Status::ALL.map(Status::as_str);
    let status = status_equals(&params, &names, Status::parse)?;
    let page = ListPage::parse(&params, &LIST_SPEC)?;
    let mut jobs: Vec<Job> = state
        .jobs
        .lock()
        .jobs
        .values()
        .filter(|j| status.is_none_or(|s| j.status == s))
        .filter(|j| page.admits(&j.request.job_name, j.submit_time))
        .cloned()
        .collect();
    jobs.sort_by_key(|j| j.seq);
    Ok(Json(page.answer(
        "invocationJobSummaries",
        jobs,
        |j| j.seq,
        Job::describe,
    )))
}

/// `GET /_emulator/events`: the most recent job-state events, oldest first.
pub async fn events(State(state): State<Arc<BatchState>>) -> Json<Value> {
    Json(json!({ "events": state.events.recent() }))
}

#[cfg(test)]
mod tests;
