//! batch-status: one function for four triggers. EventBridge's `Batch Inference Job State
//! Change` events, the work queue and a schedule advance batches (poll jobs, submit queued ones,
//! merge results when all ended, then announce the end on EventBridge; answer a small batch
//! through on-demand Converse, record by record, within the invocation's time), so a missed event
//! never leaves a batch stuck and a failed announcement is retried; API Gateway's
//! `GET /v1/batches/{batchId}` reads them.

use http::StatusCode;
use lambda_http::{Request, RequestExt};
use serde_json::{json, Value};

use aws_lambda_events::event::sqs::SqsEvent;
use domain::batch::{queued_batch_id, Batch};
use domain::ports::{
    BatchBudgets, BatchJobs, BatchQueue, BatchRegistry, Clock, DeferredStore, EventPublisher,
    ModelInvoker, ObjectStore,
};
use shared::api::ApiError;
use shared::batch::{
    announce, answer_direct, batch_id_of_job, fan_out, refresh, settle_budget, stop_batch, sweep,
    BatchError, BatchSettings, DirectRun, FanOut, Invocation, NoBudgets, NoQueue, Sweep,
};
use shared::deferred::{DeferredSettings, NoDeferred, Scheduler};
use shared::http::{answer_gateway_event, caller_principal, request_id, JsonAnswer};

/// What started an invocation.
#[derive(Debug, PartialEq)]
pub enum Trigger {
    Schedule,
    JobStateChange {
        job_name: String,
    },
    Http,
    /// Messages of the queue the schedule fans batches out to, a batch each.
    Queue,
    Unknown,
}

pub fn trigger_of(event: &Value) -> Trigger {
    if event.get("requestContext").is_some() {
        return Trigger::Http;
    }
    if event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        == Some("aws:sqs")
    {
        return Trigger::Queue;
    }
    match event.get("detail-type").and_then(Value::as_str) {
        Some("Scheduled Event") => Trigger::Schedule,
        Some("Batch Inference Job State Change") => event
            .pointer("/detail/batchJobName")
            .and_then(Value::as_str)
            .map_or(Trigger::Unknown, |name| Trigger::JobStateChange {
                job_name: name.to_owned(),
            }),
        _ => Trigger::Unknown,
    }
}

pub struct StatusApp<S, R, J, C, E, M, Q = NoQueue, B = NoBudgets, D = NoDeferred> {
    pub settings: BatchSettings,
    pub store: S,
    pub registry: R,
    pub jobs: J,
    pub clock: C,
    /// Announces each batch's end.
    pub events: E,
    /// Answers small batches (on-demand Converse).
    pub model: M,
    /// Where the schedule fans batches out (`BATCH_WORK_QUEUE_URL`); without one, the schedule
    /// advances every batch itself.
    pub queue: Option<Q>,
    /// Where a tenant batch's budget hold is settled once it ended (`SPEND_TABLE_NAME`).
    pub budgets: Option<B>,
    /// Deferred requests, which each schedule run places (`DEFERRED_TABLE_NAME`).
    pub deferred: Option<Deferred<D>>,
}

/// The deferred requests the schedule places, and how.
pub struct Deferred<D> {
    pub store: D,
    pub settings: DeferredSettings,
    /// The CloudWatch namespace of the placement metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl<S, R, J, C, E, M, Q, B, D> StatusApp<S, R, J, C, E, M, Q, B, D>
where
    S: ObjectStore,
    R: BatchRegistry,
    J: BatchJobs,
    C: Clock,
    E: EventPublisher,
    M: ModelInvoker,
    Q: BatchQueue,
    B: BatchBudgets,
    D: DeferredStore,
{
    /// [`Self::on_invocation`] for an event handled outside Lambda's runtime: as long a run as
    /// Lambda allows.
    pub async fn on_event(&self, event: Value) -> Result<Value, BatchError> {
        self.on_invocation(event, &Invocation::longest()).await
    }

    /// Handles any of the triggers within `run`'s time. An HTTP request always gets a response;
    /// an event that fails is an error, so EventBridge retries it (and then its dead-letter
    /// queue).
    pub async fn on_invocation(&self, event: Value, run: &Invocation) -> Result<Value, BatchError> {
        match trigger_of(&event) {
            Trigger::Http => Ok(self.on_http(&event).await),
            Trigger::Schedule if self.queue.is_some() => {
                let fanned = self.fan_out().await?;
                let mut answer = json!({"queued": fanned.queued, "notQueued": fanned.not_queued});
                if let Some(deferred) = self.place_deferred(run).await? {
                    answer["deferred"] = deferred;
                }
                Ok(answer)
            }
            Trigger::Queue => Ok(self.on_queue(event, run).await),
            Trigger::Schedule => {
                let sweep = self.on_schedule(run).await?;
                let mut answer = json!({
                    "advanced": sweep.advanced,
                    "announcementsPending": sweep.unannounced,
                    "failed": sweep.failed,
                });
                if let Some(deferred) = self.place_deferred(run).await? {
                    answer["deferred"] = deferred;
                }
                Ok(answer)
            }
            Trigger::JobStateChange { job_name } => {
                self.on_job_change(&job_name, run).await?;
                Ok(json!({"ok": true}))
            }
            Trigger::Unknown => {
                tracing::warn!("event of an unknown shape ignored");
                Ok(json!({"ignored": true}))
            }
        }
    }

    /// Advances every unfinished batch and announces every end still pending; a batch that
    /// fails is logged and left for next time. Small batches are answered first, within `run`.
    pub async fn on_schedule(&self, run: &Invocation) -> Result<Sweep, BatchError> {
        for open in self.registry.unfinished().await? {
            if open.direct && !open.status.is_final() {
                if let Err(error) = self.advance(&open.batch_id, run).await {
                    tracing::warn!(batch_id = open.batch_id, %error, "small batch not answered; the next run tries again");
                }
            }
        }
        let done = sweep(
            &self.jobs,
            &self.store,
            &self.registry,
            &self.events,
            &self.clock,
            self.budgets.as_ref(),
            &self.settings,
        )
        .await?;
        if done.unannounced > 0 {
            tracing::warn!(
                batches = done.unannounced,
                "batch end announcements still pending; the next run tries again"
            );
        }
        Ok(done)
    }

    /// One run of the deferred requests' placement (see `shared::deferred`), its metrics on
    /// stdout as EMF; `None` when the deployment has no deferred requests.
    pub async fn place_deferred(&self, run: &Invocation) -> Result<Option<Value>, BatchError> {
        let Some(deferred) = &self.deferred else {
            return Ok(None);
        };
        let scheduler = Scheduler {
            deferred: &deferred.store,
            model: &self.model,
            store: &self.store,
            registry: &self.registry,
            jobs: &self.jobs,
            budgets: self.budgets.as_ref(),
            batch: &self.settings,
            settings: &deferred.settings,
        };
        let now = self.clock.now();
        let placed = scheduler.run(now.timestamp(), run).await?;
        if !placed.held {
            for document in placed.emf(&deferred.metrics_namespace, now.timestamp_millis()) {
                shared::adapters::emf::EmfStdout::write_line(&document.to_string());
            }
        }
        Ok(Some(placed.summary()))
    }

    /// Hands every open batch to the queue, a message each.
    pub async fn fan_out(&self) -> Result<FanOut, BatchError> {
        let Some(queue) = &self.queue else {
            return Ok(FanOut::default());
        };
        let fanned = fan_out(&self.registry, queue).await?;
        tracing::info!(
            queued = fanned.queued,
            not_queued = fanned.not_queued,
            "open batches handed out"
        );
        Ok(fanned)
    }

    /// Advances the batch of each message; the messages of batches that failed are reported
    /// (`batchItemFailures`), so SQS delivers only those again, and its redrive policy moves a
    /// batch that keeps failing to the dead-letter queue.
    pub async fn on_queue(&self, event: Value, run: &Invocation) -> Value {
        let records = match serde_json::from_value::<SqsEvent>(event) {
            Ok(event) => event.records,
            Err(error) => {
                tracing::error!(%error, "an SQS event of an unknown shape; nothing advanced");
                return json!({"batchItemFailures": []});
            }
        };
        let mut failures = Vec::new();
        for message in records {
            let id = message.message_id.clone().unwrap_or_default();
            let batch_id = message.body.as_deref().and_then(queued_batch_id);
            let Some(batch_id) = batch_id else {
                // Retrying a message that names no batch would never help.
                tracing::warn!(message_id = id, "a queued message names no batch; dropped");
                continue;
            };
            match self.advance(&batch_id, run).await {
                Ok(_) | Err(BatchError::NotFound(_)) => {}
                Err(error) => {
                    tracing::warn!(batch_id, %error, "batch not advanced; SQS delivers it again");
                    failures.push(json!({ "itemIdentifier": id }));
                }
            }
        }
        json!({ "batchItemFailures": failures })
    }

    pub async fn on_job_change(&self, job_name: &str, run: &Invocation) -> Result<(), BatchError> {
        let Some(batch_id) = batch_id_of_job(job_name) else {
            tracing::info!(job_name, "a job this toolkit did not create; ignored");
            return Ok(());
        };
        match self.advance(batch_id, run).await {
            Err(BatchError::NotFound(_)) => {
                tracing::info!(job_name, "no batch for the job; ignored");
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Brings a batch up to date: a small one answered (what `run`'s time allows), a batch of
    /// jobs followed; its end announced and its budget hold settled.
    pub async fn advance(&self, batch_id: &str, run: &Invocation) -> Result<Batch, BatchError> {
        let now = self.clock.now().timestamp();
        let current = self
            .registry
            .get(batch_id)
            .await?
            .ok_or_else(|| BatchError::NotFound(batch_id.to_owned()))?;
        if current.direct && !current.status.is_final() {
            return self.answer_small(batch_id, run).await;
        }
        let batch = refresh(
            &self.jobs,
            &self.store,
            &self.registry,
            &self.events,
            batch_id,
            &self.settings,
            now,
        )
        .await?;
        let batch = settle_budget(&self.registry, self.budgets.as_ref(), batch).await;
        tracing::info!(batch_id, status = ?batch.status, announcement = ?batch.announcement, "batch advanced");
        Ok(batch)
    }

    /// Answers a small batch within `run`; a run out of time hands the batch on to the queue at
    /// once (the schedule otherwise), a batch another run answers is left to it.
    async fn answer_small(&self, batch_id: &str, run: &Invocation) -> Result<Batch, BatchError> {
        let now = self.clock.now().timestamp();
        let outcome = answer_direct(
            &self.model,
            &self.store,
            &self.registry,
            batch_id,
            &self.settings,
            run,
            now,
        )
        .await?;
        let batch = match outcome {
            DirectRun::Ended(batch) => {
                let batch = match announce(&self.registry, &self.events, &batch).await {
                    Ok(announced) => announced,
                    Err(error) => {
                        tracing::warn!(batch_id, %error, "batch end announcement still pending; the next run of batch-status tries again");
                        batch
                    }
                };
                settle_budget(&self.registry, self.budgets.as_ref(), batch).await
            }
            DirectRun::OutOfTime(batch) => {
                if let Some(queue) = &self.queue {
                    let refused = queue.enqueue(std::slice::from_ref(&batch.batch_id)).await?;
                    if !refused.is_empty() {
                        tracing::warn!(
                            batch_id,
                            "small batch not queued again; the schedule hands it out"
                        );
                    }
                }
                batch
            }
            DirectRun::Held(batch) => {
                tracing::info!(batch_id, "small batch answered by another run; left to it");
                batch
            }
        };
        tracing::info!(batch_id, status = ?batch.status, "small batch advanced");
        Ok(batch)
    }

    async fn on_http(&self, event: &Value) -> Value {
        answer_gateway_event(event, |request| async move { self.answer(&request).await }).await
    }

    /// `GET /v1/batches` (recent batches), `GET /v1/batches/{batchId}`, `DELETE` of it (stops
    /// its jobs), and `GET /v1/batches/{batchId}/results` (a presigned URL).
    pub async fn answer(&self, request: &Request) -> JsonAnswer {
        let request_id = request_id(request);
        match self.route(request).await {
            Ok(body) => JsonAnswer::new(StatusCode::OK, body),
            Err(error) => {
                if error.status.is_server_error() {
                    tracing::warn!(
                        request_id,
                        code = error.code,
                        cause = error.cause.as_deref().unwrap_or("none"),
                        "batch request failed"
                    );
                }
                JsonAnswer::error(&error, &request_id)
            }
        }
    }

    async fn route(&self, request: &Request) -> Result<Value, ApiError> {
        let path = request.uri().path().trim_end_matches('/');
        let rest = path
            .split_once("/v1/batches")
            // One separator only: `/v1/batches//results` names an empty id, not the results.
            .map(|(_, rest)| rest.strip_prefix('/').unwrap_or(rest))
            .ok_or_else(|| not_found(path))?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let method = request.method();
        if let [batch_id, ..] = parts.as_slice() {
            check_batch_id(batch_id)?;
        }
        let owner = caller_principal(request)
            .or_else(|| self.settings.local_caller.clone())
            .ok_or_else(missing_identity)?
            .to_string();
        match (method.as_str(), parts.as_slice()) {
            ("GET", []) => self.list(request, &owner).await,
            ("GET", [batch_id]) => Ok(describe(&self.batch(batch_id, &owner).await?, &self.store)),
            ("DELETE", [batch_id]) => {
                // Whose it is is checked before anything is stopped.
                self.batch(batch_id, &owner).await?;
                let now = self.clock.now().timestamp();
                let batch = stop_batch(&self.jobs, &self.registry, batch_id, now)
                    .await
                    .map_err(|e| batch_error(batch_id, e))?;
                Ok(describe(&batch, &self.store))
            }
            ("GET", [batch_id, "results"]) => self.results_url(batch_id, &owner).await,
            (_, [] | [_] | [_, "results"]) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{method} is not allowed on {path}"),
            )),
            _ => Err(not_found(path)),
        }
    }

    /// The caller's batch: another owner's answers exactly as one that does not exist, so ids
    /// cannot be probed.
    async fn batch(&self, batch_id: &str, owner: &str) -> Result<Batch, ApiError> {
        self.registry
            .get(batch_id)
            .await
            .map_err(|e| batch_error(batch_id, e.into()))?
            .filter(|batch| batch.owner == owner)
            .ok_or_else(|| batch_error(batch_id, BatchError::NotFound(batch_id.to_owned())))
    }

    async fn list(&self, request: &Request, owner: &str) -> Result<Value, ApiError> {
        let query = request.query_string_parameters();
        let limit = match query.first("limit") {
            None => 20,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "ValidationError",
                        format!("limit: {raw:?} is not a number from 1 to 100"),
                    )
                })?,
        };
        let token = query.first("nextToken");
        if token.is_some_and(|t| t.parse::<usize>().is_err()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "nextToken: not a token this API gave; start without it",
            ));
        }
        let (batches, next) = self
            .registry
            .recent(owner, limit, token)
            .await
            .map_err(|e| batch_error("", e.into()))?;
        let items: Vec<Value> = batches.iter().map(|b| describe(b, &self.store)).collect();
        Ok(json!({"batches": items, "nextToken": next}))
    }

    async fn results_url(&self, batch_id: &str, owner: &str) -> Result<Value, ApiError> {
        let batch = self.batch(batch_id, owner).await?;
        let Some(key) = batch.results_key.as_deref() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ResultsNotReady",
                format!(
                    "batch {batch_id} is {:?}: results are written when every job has ended",
                    batch.status
                ),
            ));
        };
        let url = self
            .store
            .presign_get(key, RESULTS_URL_TTL)
            .await
            .map_err(|e| batch_error(batch_id, e.into()))?;
        Ok(
            json!({"url": url, "expiresInSeconds": RESULTS_URL_TTL.as_secs(), "results": self.store.uri(key)}),
        )
    }
}

/// How long a results URL works.
pub const RESULTS_URL_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Longest batch id accepted: those this toolkit makes are 20 hexadecimal digits.
const MAX_BATCH_ID: usize = 64;

/// An id that cannot name a batch is the caller's mistake (400), found before the registry is
/// asked (which would refuse an empty or oversized key as a fault of its own).
fn check_batch_id(batch_id: &str) -> Result<(), ApiError> {
    let well_formed = !batch_id.is_empty()
        && batch_id.len() <= MAX_BATCH_ID
        && batch_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if well_formed {
        return Ok(());
    }
    let shown: String = batch_id.chars().take(MAX_BATCH_ID).collect();
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "ValidationError",
        format!(
            "batchId: {shown:?} is not a batch id (letters, digits, '-' or '_', 1 to {MAX_BATCH_ID} of them); use the batchId POST /v1/batches answered"
        ),
    ))
}

fn missing_identity() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "MissingCallerIdentity",
        "the request carries no IAM or JWT (iss and sub) identity, and a batch is shown only to its owner; call through the authorized API",
    )
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{path}: no such route; see GET /v1/batches, GET|DELETE /v1/batches/{{batchId}}, GET /v1/batches/{{batchId}}/results"),
    )
}

fn batch_error(batch_id: &str, error: BatchError) -> ApiError {
    let service = match &error {
        BatchError::NotFound(_) => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "BatchNotFound",
                format!("no batch {batch_id:?}; batches are kept 30 days"),
            )
        }
        BatchError::Store(_) => "The batch bucket",
        BatchError::Registry(_) => "The batch registry",
        BatchError::Jobs(_) => "Bedrock's batch API",
        BatchError::Events(_) => "EventBridge",
        BatchError::Queue(_) => "The batch queue",
        BatchError::Budget(_) => "The spend table",
    };
    let mut api = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "BatchUnavailable",
        format!("{service} did not answer; retry."),
    )
    .retry_after(5);
    api.cause = Some(error.to_string());
    api
}

/// A batch as `GET /v1/batches/{batchId}` shows it.
pub fn describe<S: ObjectStore>(batch: &Batch, store: &S) -> Value {
    let sum = |f: fn(&domain::batch::JobEntry) -> u64| batch.jobs.iter().map(f).sum::<u64>();
    let (processed, succeeded, failed) = match &batch.summary {
        Some(s) => (s.total, s.succeeded, s.failed),
        None => (
            sum(|j| j.processed),
            sum(|j| j.succeeded),
            sum(|j| j.failed),
        ),
    };
    json!({
        "batchId": batch.batch_id,
        "name": batch.name,
        "status": batch.status,
        "modelId": batch.model_id,
        "source": batch.source,
        "direct": batch.direct,
        "records": {"total": batch.record_count, "processed": processed, "succeeded": succeeded, "failed": failed},
        "tokens": batch.summary.as_ref().map(|s| json!({"input": s.input_tokens, "output": s.output_tokens})),
        "costUsd": batch.summary.as_ref().map(|s| s.cost_usd),
        "onDemandCostUsd": batch.summary.as_ref().map(|s| s.on_demand_cost_usd),
        "jobs": batch.jobs.iter().map(|j| json!({
            "name": j.name, "jobArn": j.arn, "status": j.status, "recordCount": j.record_count,
            "processed": j.processed, "succeeded": j.succeeded, "failed": j.failed, "message": j.message,
        })).collect::<Vec<_>>(),
        "rejection": batch.rejection,
        "results": batch.results_key.as_deref().map(|k| store.uri(k)),
        "announcement": batch.announcement,
        "createdAt": batch.created_at,
        "updatedAt": batch.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template's EventBridge Scheduler schedule (`ScheduleV2`) sends its `Input` as the
    /// event: it must be what this function takes for its schedule, or the poll does nothing.
    #[test]
    fn the_templates_poll_schedule_input_is_a_schedule_run() {
        let template = include_str!("../../../infra/template.yaml");
        let input = template
            .split("Type: ScheduleV2")
            .nth(1)
            .and_then(|block| block.lines().find_map(|l| l.trim().strip_prefix("Input: ")))
            .expect("the ScheduleV2 event has an Input");
        let event: Value = serde_json::from_str(input.trim_matches('\'')).unwrap();
        assert_eq!(trigger_of(&event), Trigger::Schedule);
    }

    #[test]
    fn events_are_told_apart() {
        assert_eq!(
            trigger_of(&json!({"detail-type": "Scheduled Event", "source": "aws.events"})),
            Trigger::Schedule
        );
        assert_eq!(
            trigger_of(
                &json!({"detail-type": "Batch Inference Job State Change", "source": "aws.bedrock", "detail": {"batchJobName": "babc-0", "status": "Completed"}})
            ),
            Trigger::JobStateChange {
                job_name: "babc-0".into()
            }
        );
        assert_eq!(
            trigger_of(&json!({"version": "2.0", "requestContext": {}})),
            Trigger::Http
        );
        assert_eq!(trigger_of(&json!({"hello": 1})), Trigger::Unknown);
    }

    #[test]
    fn the_events_aws_delivers_are_told_apart() {
        use test_support::events::{
            batch_job_state_change, s3_object_created, scheduled_event, ApiEvent,
        };
        assert_eq!(trigger_of(&scheduled_event()), Trigger::Schedule);
        assert_eq!(
            trigger_of(&batch_job_state_change("babc-0", "Failed")),
            Trigger::JobStateChange {
                job_name: "babc-0".into()
            }
        );
        assert_eq!(
            trigger_of(&ApiEvent::http("GET", "/v1/batches").json()),
            Trigger::Http
        );
        assert_eq!(
            trigger_of(&ApiEvent::rest("GET", "/v1/batches").json()),
            Trigger::Http
        );
        assert_eq!(
            trigger_of(&s3_object_created("b", "batch-input/q.jsonl", 1, "e")),
            Trigger::Unknown
        );
    }

    #[test]
    fn an_unavailable_service_is_named_in_the_answer() {
        use domain::error::{EventError, RegistryError, StoreError};
        let events = batch_error("b1", EventError::Call("dispatch failure".into()).into());
        assert_eq!(events.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            events.message.starts_with("EventBridge"),
            "{}",
            events.message
        );
        assert_eq!(
            events.cause.as_deref(),
            Some("EventBridge PutEvents: dispatch failure")
        );
        let registry = batch_error("b1", RegistryError::Unavailable("down".into()).into());
        assert!(
            registry.message.starts_with("The batch registry"),
            "{}",
            registry.message
        );
        let store = batch_error("b1", StoreError("dispatch failure".into()).into());
        assert!(
            store.message.starts_with("The batch bucket"),
            "{}",
            store.message
        );
        assert_eq!(
            batch_error("b1", BatchError::NotFound("b1".into())).status,
            StatusCode::NOT_FOUND
        );
    }
}
