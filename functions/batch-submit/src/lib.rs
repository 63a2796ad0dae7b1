//! batch-submit: `POST /v1/batches` turns records into Bedrock batch-inference jobs (half the
//! on-demand price), or registers a batch under the per-job minimum for batch-status to answer
//! through on-demand Converse (handed to the work queue at once).

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};

use aws_lambda_events::event::s3::S3Event;
use domain::batch::{Batch, BatchRecord, BatchStatus, RecordCollector, RecordProblem, Rejection};
use domain::error::StoreError;
use domain::ports::{
    BatchBudgets, BatchJobs, BatchQueue, BatchRegistry, Clock, ObjectStore, ObjectVersion,
};
use shared::api::ApiError;
use shared::batch::{
    batch_id_for, hold_budget, parse_line, prepare_jobs, prepare_jobs_from_upload, submit_queued,
    write_direct_input, BatchError, BatchSettings, LineReader, NoBudgets, NoQueue, SmallPolicy,
};
use shared::http::{caller_principal, gateway_response, json_response, request_id, JsonAnswer};

/// The function with its adapters, built once per instance.
pub struct SubmitApp<S, R, J, C, Q = NoQueue, B = NoBudgets> {
    pub settings: BatchSettings,
    /// The model of an upload whose object names none (`BATCH_DEFAULT_MODEL`).
    pub default_model: Option<String>,
    pub store: S,
    pub registry: R,
    pub jobs: J,
    pub clock: C,
    /// Where a small batch is handed to batch-status to be answered (`BATCH_WORK_QUEUE_URL`);
    /// without one, batch-status's schedule finds it.
    pub queue: Option<Q>,
    /// Tenants' budgets, which their uploads count against (`TENANT_KEYS_TABLE_NAME` and
    /// `SPEND_TABLE_NAME`); none, and tenants' batches run unbudgeted.
    pub budgets: Option<B>,
}

impl<S, R, J, C, Q, B> SubmitApp<S, R, J, C, Q, B>
where
    S: ObjectStore,
    R: BatchRegistry,
    J: BatchJobs,
    C: Clock,
    Q: BatchQueue,
    B: BatchBudgets,
{
    /// One function for both triggers: S3 uploads and API Gateway requests.
    pub async fn on_event(&self, event: Value) -> Result<Value, BatchError> {
        if event
            .pointer("/Records/0/eventSource")
            .and_then(Value::as_str)
            == Some("aws:s3")
        {
            let s3: S3Event = serde_json::from_value(event)
                .map_err(|e| BatchError::Store(StoreError(format!("unreadable S3 event: {e}"))))?;
            let batches = self.on_s3(s3).await?;
            let started: Vec<Value> = batches
                .iter()
                .map(|b| json!({"batchId": b.batch_id, "status": b.status}))
                .collect();
            return Ok(json!({ "batches": started }));
        }
        let response = match lambda_http::request::from_str(&event.to_string()) {
            Ok(request) => self.handle(request).await,
            Err(error) => {
                let refused = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    format!("not an API Gateway request or an S3 event: {error}"),
                );
                json_response(refused.status, &refused.body("unknown"))
            }
        };
        Ok(gateway_response(&response))
    }
}

/// `BATCH_DEFAULT_MODEL`, which must be a model batches may run on.
pub fn default_model(
    env: &shared::config::Env,
    settings: &BatchSettings,
) -> Result<Option<String>, shared::config::ConfigError> {
    match env.get("BATCH_DEFAULT_MODEL") {
        Some(model) if !settings.allowed_models.contains(model) => Err(shared::config::ConfigError::new(
            "BATCH_DEFAULT_MODEL",
            format!(
                "{model:?} is not a model batches may run on ({:?}); add it to ALLOWED_MODELS or name a tier model",
                settings.allowed_models
            ),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// A request that passed validation.
struct Submission {
    model_id: String,
    name: Option<String>,
    /// Makes the same records a new batch on purpose (a resubmission after Failed or Stopped).
    client_token: Option<String>,
    records: Vec<BatchRecord>,
    collector: RecordCollector,
}

impl<S, R, J, C, Q, B> SubmitApp<S, R, J, C, Q, B>
where
    S: ObjectStore,
    R: BatchRegistry,
    J: BatchJobs,
    C: Clock,
    Q: BatchQueue,
    B: BatchBudgets,
{
    /// Answers every request with a response, never an error (API Gateway would make it a 502).
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        match self.submit(&request).await {
            Ok(batch) => json_response(StatusCode::ACCEPTED, &accepted(&batch)),
            Err((error, extra)) => {
                tracing::warn!(
                    request_id,
                    status = error.status.as_u16(),
                    code = error.code,
                    cause = error.cause.as_deref().unwrap_or("none"),
                    "batch refused"
                );
                let mut answer = JsonAnswer::error(&error, &request_id);
                if let (Some(target), Some(extra)) = (answer.body["error"].as_object_mut(), extra) {
                    target.extend(extra);
                }
                answer.response()
            }
        }
    }

    async fn submit(&self, request: &Request) -> Result<Batch, Refusal> {
        let owner = caller_principal(request)
            .or_else(|| self.settings.local_caller.clone())
            .ok_or_else(|| (missing_identity(), None))?
            .to_string();
        let Submission {
            model_id,
            name,
            client_token,
            records,
            collector,
        } = parse(request).map_err(|e| (e, None))?;
        if !collector.rejection.is_empty() {
            return Err(rejected(&collector.rejection));
        }
        if !self.settings.allowed_models.contains(&model_id) {
            return Err((
                invalid(
                    "modelId",
                    &format!(
                        "{model_id:?} is not enabled here; use one of {:?}",
                        self.settings.allowed_models
                    ),
                ),
                None,
            ));
        }
        if records.len() > self.settings.max_batch_records {
            return Err((
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "TooManyRecords",
                    format!(
                        "{} records is more than the {} a batch may hold (BATCH_MAX_BATCH_RECORDS); split them into several batches",
                        records.len(),
                        self.settings.max_batch_records
                    ),
                ),
                None,
            ));
        }
        if records.len() < self.settings.min_records
            && self.settings.small_policy == SmallPolicy::Reject
        {
            return Err((too_few(records.len(), self.settings.min_records), None));
        }
        let canonical = serde_json::to_vec(&records).unwrap_or_default();
        // The owner is part of the id: the same records from two callers are two batches.
        let batch_id = batch_id_for(&[
            owner.as_bytes(),
            model_id.as_bytes(),
            name.as_deref().unwrap_or("").as_bytes(),
            client_token.as_deref().unwrap_or("").as_bytes(),
            &canonical,
        ]);
        let batch = self.new_batch(
            batch_id,
            owner,
            model_id,
            name,
            "api".to_owned(),
            records.len(),
        );
        self.start(batch, &records).await.map_err(unavailable)
    }

    fn new_batch(
        &self,
        batch_id: String,
        owner: String,
        model_id: String,
        name: Option<String>,
        source: String,
        count: usize,
    ) -> Batch {
        let mut batch = Batch::queued(
            batch_id,
            owner,
            model_id,
            source,
            count as u64,
            self.clock.now().timestamp(),
        );
        batch.name = name;
        batch.direct = count < self.settings.min_records;
        batch
    }

    /// Starts a valid batch once: registered for batch-status to answer when small, else job
    /// inputs written, registered, and jobs submitted within the quota. A batch already
    /// registered (a retried request, a redelivered event) is returned as it is.
    async fn start(&self, mut batch: Batch, records: &[BatchRecord]) -> Result<Batch, BatchError> {
        if let Some(existing) = self.registry.get(&batch.batch_id).await? {
            return Ok(existing);
        }
        if batch.direct {
            return self.register_direct(batch, records).await;
        }
        prepare_jobs(&self.store, &mut batch, records, self.settings.max_records).await?;
        self.register_and_submit(batch).await
    }

    /// Registers a small batch, its records written first, and hands it to batch-status, which
    /// answers it in runs of its own: nothing here waits for the model.
    async fn register_direct(
        &self,
        batch: Batch,
        records: &[BatchRecord],
    ) -> Result<Batch, BatchError> {
        write_direct_input(&self.store, &batch.batch_id, records).await?;
        if !self.registry.create(&batch).await? {
            // Registered by another instance meanwhile, which hands it out.
            return self
                .registry
                .get(&batch.batch_id)
                .await?
                .ok_or_else(|| BatchError::NotFound(batch.batch_id.clone()));
        }
        if let Some(queue) = &self.queue {
            // Registered, the batch is safe: the schedule hands out what the queue refused.
            match queue.enqueue(std::slice::from_ref(&batch.batch_id)).await {
                Ok(refused) if refused.is_empty() => {}
                Ok(_) => tracing::warn!(
                    batch_id = batch.batch_id,
                    "small batch not queued; batch-status's schedule hands it out"
                ),
                Err(error) => tracing::warn!(
                    batch_id = batch.batch_id,
                    %error,
                    "small batch not queued; batch-status's schedule hands it out"
                ),
            }
        }
        Ok(batch)
    }

    /// Registers a batch whose job inputs are written, then submits its jobs within the quota.
    async fn register_and_submit(&self, mut batch: Batch) -> Result<Batch, BatchError> {
        if !self.registry.create(&batch).await? {
            // Another instance registered the same batch meanwhile: it submits the jobs.
            return self
                .registry
                .get(&batch.batch_id)
                .await?
                .ok_or_else(|| BatchError::NotFound(batch.batch_id.clone()));
        }
        submit_queued(&self.jobs, &self.store, &mut batch, &self.settings).await;
        batch.status = batch.status_from_jobs();
        batch.version += 1;
        // The schedule submits whatever this write leaves queued, so a lost race loses nothing.
        if let Err(error) = self.registry.update(&batch).await {
            tracing::warn!(%error, batch_id = batch.batch_id, "batch registered, its job states not yet");
        }
        Ok(batch)
    }

    /// An S3 `ObjectCreated` event: each `batch-input/*.jsonl` object becomes a batch, once.
    /// An error is returned only for what is worth a retry (the event is then redelivered).
    pub async fn on_s3(&self, event: S3Event) -> Result<Vec<Batch>, BatchError> {
        let mut batches = Vec::new();
        for record in event.records {
            let Some(key) = record.s3.object.key.as_deref().map(object_key) else {
                continue;
            };
            if !key.starts_with(UPLOAD_PREFIX) || !key.ends_with(".jsonl") {
                tracing::info!(key, "not a batch upload (batch-input/*.jsonl); ignored");
                continue;
            }
            let Some(owner) = upload_owner(&key) else {
                // Never "anyone's": an upload outside a tenant's prefix is nobody's batch.
                tracing::warn!(
                    key,
                    "batch upload outside batch-input/tenant/{{tenant}}/ or batch-input/role/{{account}}/{{role}}/: no owner, ignored; upload under an owner's prefix"
                );
                continue;
            };
            let bucket = record.s3.bucket.name.unwrap_or_default();
            // The version the event is about: read at it, an overwrite changes nothing here
            // (the overwrite's own event makes its own batch).
            let object = &record.s3.object;
            let version = match (&object.version_id, &object.e_tag) {
                (Some(id), _) if !id.is_empty() => Some(ObjectVersion::Id(id.clone())),
                (_, Some(etag)) if !etag.is_empty() => Some(ObjectVersion::ETag(etag.clone())),
                _ => None,
            };
            let named = match &version {
                Some(ObjectVersion::Id(v) | ObjectVersion::ETag(v)) => v.as_str(),
                None => "",
            };
            let batch_id = batch_id_for(&[bucket.as_bytes(), key.as_bytes(), named.as_bytes()]);
            match self.upload(batch_id, owner, &key, version.as_ref()).await {
                Ok(batch) => batches.push(batch),
                // Deleted (or, unversioned, overwritten) before the event arrived: nothing of
                // this version to read, nothing to retry.
                Err(BatchError::NotFound(_)) => {
                    tracing::info!(key, "uploaded object gone or replaced; ignored");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(batches)
    }

    /// Checks the whole upload first, a chunk at a time, keeping only ids; nothing is written
    /// unless every line is valid. Then the job inputs are written in a second read. Memory
    /// holds a chunk, the ids and one job's input, whatever the file's size.
    async fn upload(
        &self,
        batch_id: String,
        owner: String,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<Batch, BatchError> {
        if let Some(existing) = self.registry.get(&batch_id).await? {
            tracing::info!(
                batch_id,
                "upload already a batch; redelivered event ignored"
            );
            return Ok(existing);
        }
        let info = match version {
            Some(version) => self.store.info_at(key, version).await?,
            None => self.store.info(key).await?,
        };
        let Some(info) = info else {
            return Err(BatchError::NotFound(key.to_owned()));
        };
        let model_id = info
            .metadata
            .get("model-id")
            .cloned()
            .or_else(|| self.default_model.clone());
        let source = self.store.uri(key);
        let name = key.rsplit('/').next().map(str::to_owned);
        let limits = &self.settings;
        let mut checker = RecordCollector::default();
        if info.size > limits.max_upload_bytes {
            checker.rejection.add(RecordProblem {
                position: 0,
                record_id: None,
                reason: format!(
                    "the upload is {} bytes; at most {} (BATCH_MAX_UPLOAD_BYTES): split it into several uploads",
                    info.size, limits.max_upload_bytes
                ),
            });
            return self
                .reject(batch_id, owner, String::new(), name, source, checker)
                .await;
        }
        let mut reader = LineReader::new(&self.store, key, info.size)
            .with_max_line(limits.max_line_bytes)
            .at_version(version);
        'read: while let Some(lines) = reader.next_lines().await? {
            for (number, line) in lines {
                if line.len() > limits.max_line_bytes {
                    checker.add(
                        number,
                        Err(format!(
                            "the line is over {} bytes (BATCH_MAX_LINE_BYTES)",
                            limits.max_line_bytes
                        )),
                    );
                } else if let Some(value) = parse_line(&line) {
                    checker.add(number, value);
                }
                if checker.accepted + checker.rejection.problem_count > limits.max_batch_records {
                    checker.rejection.add(RecordProblem {
                        position: number,
                        record_id: None,
                        reason: format!(
                            "more than {} records (BATCH_MAX_BATCH_RECORDS); split the upload",
                            limits.max_batch_records
                        ),
                    });
                    break 'read;
                }
            }
        }
        if checker.accepted == 0 && checker.rejection.is_empty() {
            checker.rejection.add(RecordProblem {
                position: 0,
                record_id: None,
                reason: "the upload holds no records: one JSON record a line".to_owned(),
            });
        }
        let Some(model_id) = model_id else {
            checker.rejection.add(RecordProblem {
                position: 0,
                record_id: None,
                reason: "no model: set the object's x-amz-meta-model-id or BATCH_DEFAULT_MODEL"
                    .to_owned(),
            });
            return self
                .reject(batch_id, owner, String::new(), name, source, checker)
                .await;
        };
        let count = checker.accepted;
        if checker.rejection.is_empty()
            && count < self.settings.min_records
            && self.settings.small_policy == SmallPolicy::Reject
        {
            checker.rejection.add(RecordProblem {
                position: 0,
                record_id: None,
                reason: too_few(count, self.settings.min_records).message,
            });
        }
        if checker.rejection.is_empty() && !self.settings.allowed_models.contains(&model_id) {
            checker.rejection.add(RecordProblem {
                position: 0,
                record_id: None,
                reason: format!(
                    "model {model_id:?} is not enabled here; name one of {:?} in x-amz-meta-model-id",
                    self.settings.allowed_models
                ),
            });
        }
        if !checker.rejection.is_empty() {
            return self
                .reject(batch_id, owner, model_id, name, source, checker)
                .await;
        }
        let mut batch = self.new_batch(batch_id, owner, model_id, name, source, count);
        // A tenant's upload counts against its budget before anything runs.
        let estimate = checker.estimate(self.settings.reserve_max_tokens);
        if let Some(reason) = hold_budget(
            self.budgets.as_ref(),
            &mut batch,
            estimate,
            &self.settings,
            self.clock.now(),
        )
        .await?
        {
            checker.rejection.add(RecordProblem {
                position: 0,
                record_id: None,
                reason,
            });
            let Batch {
                batch_id,
                owner,
                model_id,
                name,
                source,
                ..
            } = batch;
            return self
                .reject(batch_id, owner, model_id, name, source, checker)
                .await;
        }
        if batch.direct {
            let records = self.read_small_upload(key, version, info.size).await?;
            return self.start(batch, &records).await;
        }
        prepare_jobs_from_upload(
            &self.store,
            &mut batch,
            key,
            version,
            info.size,
            count,
            self.settings.max_records,
        )
        .await?;
        self.register_and_submit(batch).await
    }

    /// An upload under the per-job minimum, whole: it is small by definition.
    async fn read_small_upload(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
        size: u64,
    ) -> Result<Vec<BatchRecord>, BatchError> {
        let mut collector = RecordCollector::default();
        let mut records = Vec::new();
        let mut reader = LineReader::new(&self.store, key, size).at_version(version);
        while let Some(lines) = reader.next_lines().await? {
            records.extend(lines.into_iter().filter_map(|(number, line)| {
                parse_line(&line).and_then(|v| collector.add(number, v))
            }));
        }
        Ok(records)
    }

    /// A refused upload is a `Rejected` batch carrying the report, readable like any batch.
    async fn reject(
        &self,
        batch_id: String,
        owner: String,
        model_id: String,
        name: Option<String>,
        source: String,
        collector: RecordCollector,
    ) -> Result<Batch, BatchError> {
        let count = collector.accepted + collector.rejection.problem_count;
        let mut batch = self.new_batch(batch_id, owner, model_id, name, source, count);
        batch.status = BatchStatus::Rejected;
        batch.direct = false;
        tracing::warn!(
            batch_id = batch.batch_id,
            problems = collector.rejection.problem_count,
            "upload rejected; nothing submitted"
        );
        batch.rejection = Some(collector.rejection);
        self.registry.create(&batch).await?;
        Ok(batch)
    }
}

pub use domain::batch::{upload_owner, UPLOAD_PREFIX};

fn missing_identity() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "MissingCallerIdentity",
        "the request carries no IAM or JWT (iss and sub) identity, and every batch belongs to its caller; call through the authorized API",
    )
}

/// S3 event keys are URL-encoded, with `+` for spaces.
fn object_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

fn too_few(count: usize, min: usize) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "TooFewRecords",
        format!("{count} records is under Bedrock's minimum of {min} for a batch job, and BATCH_SMALL_POLICY is reject; send more records or use /v1/invoke"),
    )
}

/// A refused request: the error, and fields to add to its body.
type Refusal = (ApiError, Option<Map<String, Value>>);

fn unavailable(error: BatchError) -> Refusal {
    let mut api = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "BatchUnavailable",
        "The batch could not be stored or submitted; retry: the same request never makes a second batch.",
    )
    .retry_after(5);
    api.cause = Some(error.to_string());
    (api, None)
}

fn rejected(rejection: &Rejection) -> Refusal {
    let listed: Vec<String> = rejection
        .problems
        .iter()
        .take(3)
        .map(|p| format!("records[{}]: {}", p.position, p.reason))
        .collect();
    let error = ApiError::new(
        StatusCode::BAD_REQUEST,
        "InvalidRecords",
        format!(
            "{} record(s) are invalid, so nothing was submitted ({}); see problems",
            rejection.problem_count,
            listed.join("; ")
        ),
    );
    let mut extra = Map::new();
    extra.insert("problems".into(), json!(rejection.problems));
    extra.insert("problemCount".into(), json!(rejection.problem_count));
    (error, Some(extra))
}

fn invalid(field: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ValidationError",
        format!("{field}: {reason}"),
    )
}

fn parse(request: &Request) -> Result<Submission, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{} is not allowed; send POST /v1/batches", request.method()),
        ));
    }
    let body: Value = serde_json::from_slice(request.body().as_ref()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidJson",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut body) = body else {
        return Err(invalid(
            "body",
            "must be a JSON object with modelId and records",
        ));
    };
    if let Some(extra) = body
        .keys()
        .find(|k| !["modelId", "records", "name", "clientToken"].contains(&k.as_str()))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "UnknownField",
            format!("{extra}: unknown field; expected modelId, records, name, clientToken"),
        ));
    }
    let model_id = match body.remove("modelId") {
        Some(Value::String(id)) if !id.trim().is_empty() => id,
        _ => {
            return Err(invalid(
                "modelId",
                "is required: the model id or inference profile the batch runs on",
            ))
        }
    };
    let name = match body.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err(invalid("name", "must be a string")),
    };
    let client_token = match body.remove("clientToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if is_client_token(&token) => Some(token),
        Some(_) => {
            return Err(invalid(
                "clientToken",
                "must be 1 to 64 letters, digits, '-' or '_'; send a new one to submit the same records again",
            ))
        }
    };
    let Some(Value::Array(records)) = body.remove("records") else {
        return Err(invalid("records", "is required: an array of records"));
    };
    if records.is_empty() {
        return Err(invalid("records", "must hold at least one record"));
    }
    let mut collector = RecordCollector::default();
    let records = records
        .into_iter()
        .enumerate()
        .filter_map(|(index, record)| collector.add(index, Ok(record)))
        .collect();
    Ok(Submission {
        model_id,
        name,
        client_token,
        records,
        collector,
    })
}

fn is_client_token(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn accepted(batch: &Batch) -> Value {
    json!({
        "batchId": batch.batch_id,
        "status": batch.status,
        "recordCount": batch.record_count,
        "direct": batch.direct,
        "jobs": batch.jobs.iter().map(|j| json!({
            "name": j.name, "jobArn": j.arn, "status": j.status, "recordCount": j.record_count,
        })).collect::<Vec<_>>(),
    })
}
