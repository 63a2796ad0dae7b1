//! Batch orchestration over the ports: writing job inputs, submitting jobs within the quota,
//! following them, and merging their output into one `results.jsonl` in input order. Shared
//! by batch-submit and batch-status; no AWS SDK type appears here.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, Env};
use domain::batch::{
    job_has_ended, job_sizes, Announcement, Batch, BatchRecord, BatchStatus, BatchSummary,
    JobEntry, RecordCollector, ResultLine, JOB_QUEUED,
};
use domain::conversation::{Conversation, InferenceConfig, Message, TextBlock};
use domain::error::{EventError, JobError, RegistryError, StoreError};
use domain::ports::{
    BatchJobs, BatchRegistry, Clock, EventPublisher, JobRequest, ModelInvoker, ObjectStore,
};
use domain::pricing::PriceTable;
use domain::routing::{Route, Target};

/// What to do with a batch under the per-job minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmallPolicy {
    /// Answer it through on-demand Converse, results in the same format as a job's.
    Direct,
    Reject,
}

impl std::str::FromStr for SmallPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Self::Direct),
            "reject" => Ok(Self::Reject),
            other => Err(format!("{other:?} is not direct or reject")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// The service role Bedrock assumes to read inputs and write outputs.
    pub role_arn: String,
    pub min_records: usize,
    pub max_records: usize,
    pub timeout_hours: i32,
    pub small_policy: SmallPolicy,
    pub direct_concurrency: usize,
    pub prices: PriceTable,
    /// Batch price as a share of on-demand.
    pub price_factor: f64,
}

impl BatchSettings {
    /// From the variables both batch functions read; every failure names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let min_records = env.parse_or("BATCH_MIN_RECORDS", 100usize)?;
        let max_records = env.parse_or("BATCH_MAX_RECORDS", 50_000usize)?;
        if max_records == 0 || max_records < min_records {
            return Err(ConfigError::new(
                "BATCH_MAX_RECORDS",
                format!("{max_records} must be at least 1 and at least BATCH_MIN_RECORDS ({min_records})"),
            ));
        }
        let timeout_hours = env.parse_or("BATCH_TIMEOUT_HOURS", 24i32)?;
        if !(24..=168).contains(&timeout_hours) {
            return Err(ConfigError::new(
                "BATCH_TIMEOUT_HOURS",
                format!("{timeout_hours} is outside Bedrock's 24 to 168 hours"),
            ));
        }
        let price_factor = env.parse_or("BATCH_PRICE_FACTOR", 0.5f64)?;
        if !(0.0..=1.0).contains(&price_factor) {
            return Err(ConfigError::new(
                "BATCH_PRICE_FACTOR",
                format!("{price_factor} is not a share between 0 and 1"),
            ));
        }
        Ok(Self {
            role_arn: env.required("BATCH_ROLE_ARN")?,
            min_records,
            max_records,
            timeout_hours,
            small_policy: env.parse_or("BATCH_SMALL_POLICY", SmallPolicy::Direct)?,
            direct_concurrency: env.parse_or("BATCH_DIRECT_CONCURRENCY", 4usize)?.max(1),
            prices: PriceTable::with_overrides("MODEL_PRICES", env.get("MODEL_PRICES"))?,
            price_factor,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Jobs(#[from] JobError),
    /// Announcing a batch's end failed (its state is written; a later run announces it).
    #[error(transparent)]
    Events(#[from] EventError),
    #[error("no batch {0}")]
    NotFound(String),
}

/// Where things live in the batch bucket. Job inputs are not under `batch-input/`, the upload
/// prefix, so writing them never triggers batch-submit again.
pub fn job_input_key(batch_id: &str, index: usize) -> String {
    format!("batch-jobs/{batch_id}/part-{index:04}.jsonl")
}

pub fn output_prefix(batch_id: &str) -> String {
    format!("batch-output/{batch_id}/")
}

pub fn results_key(batch_id: &str) -> String {
    format!("batch-results/{batch_id}/results.jsonl")
}

/// Jobs are named `b{batchId}-{n}`, so an event names its batch.
pub fn job_name(batch_id: &str, index: usize) -> String {
    format!("b{batch_id}-{index}")
}

pub fn batch_id_of_job(job_name: &str) -> Option<&str> {
    job_name
        .strip_prefix('b')?
        .rsplit_once('-')
        .map(|(id, _)| id)
}

/// A stable id from what identifies the input (the request's hash, or bucket, key and ETag).
pub fn batch_id_for(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..10])
}

fn jsonl(records: &[BatchRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 128);
    for record in records {
        if let Ok(line) = serde_json::to_vec(record) {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out
}

/// A job not yet submitted, for the input at `job_input_key(batch_id, index)`.
pub fn queued_job(batch_id: &str, index: usize, records: usize) -> JobEntry {
    JobEntry {
        name: job_name(batch_id, index),
        arn: None,
        status: JOB_QUEUED.to_owned(),
        input_key: job_input_key(batch_id, index),
        record_count: records as u64,
        processed: 0,
        succeeded: 0,
        failed: 0,
        message: None,
    }
}

/// How much of an object [`LineReader`] reads at a time.
pub const READ_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// Reads an object's lines a chunk at a time: memory holds one chunk and one line, whatever
/// the object's size.
pub struct LineReader<'a, S> {
    store: &'a S,
    key: &'a str,
    size: u64,
    offset: u64,
    carry: Vec<u8>,
    line: usize,
}

impl<'a, S: ObjectStore> LineReader<'a, S> {
    pub fn new(store: &'a S, key: &'a str, size: u64) -> Self {
        Self {
            store,
            key,
            size,
            offset: 0,
            carry: Vec::new(),
            line: 0,
        }
    }

    /// The complete lines of the next chunk, numbered from 1; `None` at the end.
    pub async fn next_lines(&mut self) -> Result<Option<Vec<(usize, Vec<u8>)>>, StoreError> {
        if self.offset >= self.size && self.carry.is_empty() {
            return Ok(None);
        }
        if self.offset < self.size {
            let end = self.offset.saturating_add(READ_CHUNK_BYTES).min(self.size);
            let bytes = self.store.get_range(self.key, self.offset, end).await?;
            // A shorter answer (the object changed) still moves on: the read always ends.
            self.offset = end;
            self.carry.extend_from_slice(&bytes);
        }
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(at) = self.carry[start..].iter().position(|b| *b == b'\n') {
            self.line += 1;
            lines.push((self.line, self.carry[start..start + at].to_vec()));
            start += at + 1;
        }
        self.carry.drain(..start);
        if self.offset >= self.size && !self.carry.is_empty() {
            self.line += 1;
            lines.push((self.line, std::mem::take(&mut self.carry)));
        }
        Ok(Some(lines))
    }
}

/// A line of an upload as a record, or why it is not one.
pub fn parse_line(line: &[u8]) -> Option<Result<Value, String>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(serde_json::from_slice::<Value>(line).map_err(|e| format!("not JSON: {e}")))
}

/// Writes an upload's records as job inputs, split as [`job_sizes`] splits `count`, reading
/// the upload again a chunk at a time. The upload was checked whole before: every line is
/// valid, so ids come out as the check assigned them.
pub async fn prepare_jobs_from_upload<S: ObjectStore>(
    store: &S,
    batch: &mut Batch,
    key: &str,
    size: u64,
    count: usize,
    max_records: usize,
) -> Result<(), BatchError> {
    let sizes = job_sizes(count, max_records);
    let mut collector = RecordCollector::default();
    let mut part = Vec::new();
    let mut in_part = 0;
    let mut reader = LineReader::new(store, key, size);
    while let Some(lines) = reader.next_lines().await? {
        for (number, line) in lines {
            let Some(record) = parse_line(&line).and_then(|v| collector.add(number, v)) else {
                continue;
            };
            if let Ok(json) = serde_json::to_vec(&record) {
                part.extend_from_slice(&json);
                part.push(b'\n');
            }
            in_part += 1;
            let index = batch.jobs.len();
            if Some(&in_part) == sizes.get(index) {
                store
                    .put(
                        &job_input_key(&batch.batch_id, index),
                        std::mem::take(&mut part),
                    )
                    .await?;
                batch.jobs.push(queued_job(&batch.batch_id, index, in_part));
                in_part = 0;
            }
        }
    }
    Ok(())
}

/// A new batch of jobs, each job's input written, nothing submitted yet.
pub async fn prepare_jobs<S: ObjectStore>(
    store: &S,
    batch: &mut Batch,
    records: &[BatchRecord],
    max_records: usize,
) -> Result<(), BatchError> {
    let mut start = 0;
    for (index, size) in job_sizes(records.len(), max_records)
        .into_iter()
        .enumerate()
    {
        let chunk = &records[start..start + size];
        start += size;
        store
            .put(&job_input_key(&batch.batch_id, index), jsonl(chunk))
            .await?;
        batch.jobs.push(queued_job(&batch.batch_id, index, size));
    }
    Ok(())
}

/// Submits queued jobs in order until the quota says wait. A job refused outright fails; one
/// that met a quota or a passing fault stays queued for the next run.
pub async fn submit_queued<J: BatchJobs, S: ObjectStore>(
    jobs: &J,
    store: &S,
    batch: &mut Batch,
    settings: &BatchSettings,
) {
    let output_uri = store.uri(&output_prefix(&batch.batch_id));
    for job in batch.jobs.iter_mut().filter(|j| j.status == JOB_QUEUED) {
        let request = JobRequest {
            name: job.name.clone(),
            model_id: batch.model_id.clone(),
            role_arn: settings.role_arn.clone(),
            input_uri: store.uri(&job.input_key),
            output_uri: output_uri.clone(),
            client_request_token: job.name.clone(),
            timeout_hours: settings.timeout_hours,
        };
        match jobs.create(&request).await {
            Ok(arn) => {
                job.arn = Some(arn);
                job.status = "Submitted".to_owned();
            }
            Err(JobError::Refused(message)) => {
                tracing::warn!(job = job.name, %message, "batch job refused");
                job.status = "Failed".to_owned();
                job.message = Some(message);
            }
            Err(error) => {
                tracing::info!(job = job.name, %error, "batch job stays queued");
                break;
            }
        }
    }
}

/// Brings every unended job's state up to date from Bedrock.
pub async fn poll_jobs<J: BatchJobs>(jobs: &J, batch: &mut Batch) {
    for job in batch.jobs.iter_mut() {
        let Some(arn) = job.arn.clone().filter(|_| !job_has_ended(&job.status)) else {
            continue;
        };
        match jobs.get(&arn).await {
            Ok(state) => {
                job.status = state.status;
                job.message = state.message;
                job.processed = state.processed;
                job.succeeded = state.succeeded;
                job.failed = state.failed;
            }
            Err(error) => tracing::warn!(job = job.name, %error, "could not read batch job"),
        }
    }
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = Value> + '_ {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice(l).ok())
}

/// Joins each job's output to its input by `recordId` and writes one `results.jsonl`, every
/// input record once, in input order; a record without output is an error line.
pub async fn merge_results<S: ObjectStore>(
    store: &S,
    batch: &Batch,
    settings: &BatchSettings,
) -> Result<(String, BatchSummary), BatchError> {
    let mut out = Vec::new();
    let mut summary = BatchSummary::default();
    for job in &batch.jobs {
        let mut outputs: HashMap<String, ResultLine> = HashMap::new();
        if let Some(job_id) = job.job_id() {
            let prefix = format!("{}{job_id}/", output_prefix(&batch.batch_id));
            for key in store.list(&prefix).await? {
                if !key.ends_with(".jsonl.out") {
                    continue;
                }
                let bytes = store.get(&key).await?.unwrap_or_default();
                for line in lines(&bytes).filter_map(|l| ResultLine::from_output_line(&l)) {
                    outputs.insert(line.record_id.clone(), line);
                }
            }
        }
        let input = store.get(&job.input_key).await?.unwrap_or_default();
        for record in lines(&input) {
            let Some(id) = record.get("recordId").and_then(Value::as_str) else {
                continue;
            };
            let line = outputs.remove(id).unwrap_or_else(|| {
                let why = job.message.clone().unwrap_or_else(|| {
                    format!(
                        "the job ended {} before this record was answered",
                        job.status
                    )
                });
                ResultLine::failed(id.to_owned(), "NotProcessed", why)
            });
            add_to_summary(&mut summary, &line, &batch.model_id, settings, batch.direct);
            if let Ok(json) = serde_json::to_vec(&line) {
                out.extend_from_slice(&json);
                out.push(b'\n');
            }
        }
    }
    let key = results_key(&batch.batch_id);
    store.put(&key, out).await?;
    Ok((key, summary))
}

fn add_to_summary(
    summary: &mut BatchSummary,
    line: &ResultLine,
    model_id: &str,
    settings: &BatchSettings,
    direct: bool,
) {
    summary.total += 1;
    if line.error.is_some() {
        summary.failed += 1;
        return;
    }
    summary.succeeded += 1;
    if let Some(usage) = line.usage {
        summary.input_tokens += u64::from(usage.input_tokens);
        summary.output_tokens += u64::from(usage.output_tokens);
        let on_demand = settings.prices.cost(model_id, &usage).unwrap_or(0.0);
        summary.on_demand_cost_usd += on_demand;
        summary.cost_usd += if direct {
            on_demand
        } else {
            on_demand * settings.price_factor
        };
    }
}

/// One follow-up of a batch: poll its jobs, submit queued ones, and merge once all ended.
pub async fn advance<J: BatchJobs, S: ObjectStore>(
    jobs: &J,
    store: &S,
    batch: &mut Batch,
    settings: &BatchSettings,
) -> Result<(), BatchError> {
    if batch.status.is_final() {
        return Ok(());
    }
    poll_jobs(jobs, batch).await;
    submit_queued(jobs, store, batch, settings).await;
    if batch.all_jobs_ended() && batch.results_key.is_none() {
        let (key, summary) = merge_results(store, batch, settings).await?;
        batch.results_key = Some(key);
        batch.summary = Some(summary);
    }
    batch.status = if batch.results_key.is_some() || !batch.all_jobs_ended() {
        batch.status_from_jobs()
    } else {
        BatchStatus::InProgress
    };
    Ok(())
}

/// Reads an unfinished batch, lets `change` change it (answering whether it did), and writes
/// it back over the version it read; again, from a fresh read, when another writer got there
/// first. A finished batch is returned as it is.
async fn update_batch<R, F, Fut>(
    registry: &R,
    batch_id: &str,
    now_epoch: i64,
    mut change: F,
) -> Result<Batch, BatchError>
where
    R: BatchRegistry,
    F: FnMut(Batch) -> Fut,
    Fut: std::future::Future<Output = Result<(Batch, bool), BatchError>>,
{
    for _ in 0..3 {
        let batch = registry
            .get(batch_id)
            .await?
            .ok_or_else(|| BatchError::NotFound(batch_id.to_owned()))?;
        if batch.status.is_final() {
            return Ok(batch);
        }
        let (mut batch, changed) = change(batch).await?;
        if !changed {
            return Ok(batch);
        }
        batch.version += 1;
        batch.updated_at = now_epoch;
        match registry.update(&batch).await {
            Ok(()) => return Ok(batch),
            Err(RegistryError::Conflict) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(RegistryError::Conflict.into())
}

/// Advances a batch and writes it back. The run that ends a batch writes its final state (its
/// merged results, in the same conditional write as ever) with its announcement pending, and
/// only then announces it ([`announce`]); a batch that ended earlier with its announcement still
/// pending is announced again. A failed announcement is logged naming the service and left
/// pending for the next run: it never fails the refresh, nor holds the results back.
pub async fn refresh<J: BatchJobs, S: ObjectStore, R: BatchRegistry, E: EventPublisher>(
    jobs: &J,
    store: &S,
    registry: &R,
    events: &E,
    batch_id: &str,
    settings: &BatchSettings,
    now_epoch: i64,
) -> Result<Batch, BatchError> {
    let batch = write_advanced(jobs, store, registry, batch_id, settings, now_epoch).await?;
    Ok(announce_or_log(registry, events, batch).await.0)
}

/// Advances an unfinished batch and writes it back; the write that ends it records its
/// announcement as pending. A finished batch is returned as it is.
async fn write_advanced<J: BatchJobs, S: ObjectStore, R: BatchRegistry>(
    jobs: &J,
    store: &S,
    registry: &R,
    batch_id: &str,
    settings: &BatchSettings,
    now_epoch: i64,
) -> Result<Batch, BatchError> {
    update_batch(registry, batch_id, now_epoch, |mut batch| async move {
        let before = batch.clone();
        advance(jobs, store, &mut batch, settings).await?;
        if batch.status.is_final() {
            batch.announcement = Some(Announcement::Pending);
        }
        let changed = batch != before;
        Ok((batch, changed))
    })
    .await
}

/// [`announce`], its failure logged: the batch as it now stands, and whether EventBridge itself
/// failed (not the registry).
async fn announce_or_log<R: BatchRegistry, E: EventPublisher>(
    registry: &R,
    events: &E,
    batch: Batch,
) -> (Batch, bool) {
    match announce(registry, events, &batch).await {
        Ok(announced) => (announced, false),
        Err(error) => {
            tracing::warn!(
                batch_id = batch.batch_id,
                %error,
                "batch end announcement still pending; the next run of batch-status tries again"
            );
            (batch, matches!(error, BatchError::Events(_)))
        }
    }
}

/// Publishes the end of a batch whose announcement is pending, then records it as announced: a
/// conditional write over the version read, again from a fresh read when another writer got
/// there first (a batch another run has announced meanwhile is left as it is). Any other batch
/// is returned as it is. On an error the announcement stays pending; an event published whose
/// record then failed is published again by the next run (at least once, as EventBridge
/// subscribers expect).
pub async fn announce<R: BatchRegistry, E: EventPublisher>(
    registry: &R,
    events: &E,
    batch: &Batch,
) -> Result<Batch, BatchError> {
    if !batch.announcement_pending() {
        return Ok(batch.clone());
    }
    events.batch_ended(batch).await?;
    let mut current = batch.clone();
    for _ in 0..3 {
        if !current.announcement_pending() {
            return Ok(current);
        }
        current.announcement = Some(Announcement::Announced);
        current.version += 1;
        // `updated_at` stays the end: metrics-publisher counts a batch in the period of its end
        // by it, and the registry's retention runs from it.
        match registry.update(&current).await {
            Ok(()) => return Ok(current),
            Err(RegistryError::Conflict) => {
                current = registry
                    .get(&batch.batch_id)
                    .await?
                    .ok_or_else(|| BatchError::NotFound(batch.batch_id.clone()))?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(RegistryError::Conflict.into())
}

/// What one run of the schedule did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Batches brought up to date (each advanced and written without error).
    pub advanced: usize,
    /// Of those, batches ended whose announcement is still pending after this run.
    pub unannounced: usize,
    /// Batches whose refresh failed: logged, and tried again by the next run.
    pub failed: usize,
}

/// The schedule's run: advances every open batch ([`Batch::is_open`]: not yet ended, or ended
/// with its announcement pending) and announces the ends still pending, so a missed event never
/// leaves a batch stuck and a failed announcement is retried by every run for as long as the
/// registry keeps the batch. Once EventBridge fails in a run, the run announces nothing more
/// (the rest waits for the next run): an outage costs one failed call a run, not one a batch.
pub async fn sweep<J, S, R, E, C>(
    jobs: &J,
    store: &S,
    registry: &R,
    events: &E,
    clock: &C,
    settings: &BatchSettings,
) -> Result<Sweep, BatchError>
where
    J: BatchJobs,
    S: ObjectStore,
    R: BatchRegistry,
    E: EventPublisher,
    C: Clock,
{
    let mut sweep = Sweep::default();
    let mut eventbridge_failed = false;
    for open in registry.unfinished().await? {
        let batch_id = open.batch_id.as_str();
        let now = clock.now().timestamp();
        let mut batch = match write_advanced(jobs, store, registry, batch_id, settings, now).await {
            Ok(batch) => batch,
            Err(error) => {
                sweep.failed += 1;
                tracing::warn!(batch_id, %error, "batch not advanced; the next run tries again");
                continue;
            }
        };
        if batch.announcement_pending() && !eventbridge_failed {
            let (announced, failed) = announce_or_log(registry, events, batch).await;
            batch = announced;
            eventbridge_failed |= failed;
        }
        sweep.advanced += 1;
        if batch.announcement_pending() {
            sweep.unannounced += 1;
        }
        tracing::info!(batch_id, status = ?batch.status, announcement = ?batch.announcement, "batch advanced");
    }
    Ok(sweep)
}

/// Stops a batch: queued jobs never start, running ones are asked to stop. The schedule and
/// events then follow them to `Stopped` and merge what was answered.
pub async fn stop_batch<J: BatchJobs, R: BatchRegistry>(
    jobs: &J,
    registry: &R,
    batch_id: &str,
    now_epoch: i64,
) -> Result<Batch, BatchError> {
    update_batch(registry, batch_id, now_epoch, |mut batch| async move {
        for job in batch.jobs.iter_mut().filter(|j| !job_has_ended(&j.status)) {
            match job.arn.as_deref() {
                None => job.status = "Stopped".to_owned(),
                Some(arn) => match jobs.stop(arn).await {
                    Ok(()) => job.status = "Stopping".to_owned(),
                    // Ended meanwhile: the next poll reads how.
                    Err(error) => tracing::info!(job = job.name, %error, "job not stopped"),
                },
            }
        }
        // Jobs that never started end at once; their batch still waits for the next run to
        // merge what was answered (every record, `NotProcessed`) and announce its end.
        batch.status = if batch.all_jobs_ended() {
            BatchStatus::Stopping
        } else {
            batch.status_from_jobs()
        };
        Ok((batch, true))
    })
    .await
}

/// A Converse body (already validated) as the conversation the model port takes.
fn conversation_of(input: &Value) -> Conversation {
    let field = |name: &str| input.get(name).cloned().unwrap_or(Value::Null);
    Conversation {
        system: serde_json::from_value::<Vec<TextBlock>>(field("system")).unwrap_or_default(),
        messages: serde_json::from_value::<Vec<Message>>(field("messages")).unwrap_or_default(),
        inference_config: serde_json::from_value::<InferenceConfig>(field("inferenceConfig"))
            .unwrap_or_default(),
        additional_model_request_fields: input.get("additionalModelRequestFields").cloned(),
        tool_config: None,
    }
}

/// Answers a small batch through on-demand Converse, a few records at a time, and writes its
/// results in the same format and order a job's merge would.
pub async fn answer_directly<M: ModelInvoker, S: ObjectStore>(
    model: &M,
    store: &S,
    batch: &mut Batch,
    records: &[BatchRecord],
    settings: &BatchSettings,
) -> Result<(), BatchError> {
    let target = Target {
        invoke_id: batch.model_id.clone(),
        route: Route::OnDemand,
        model: batch.model_id.clone(),
    };
    // Owned records: a stream of borrowed ones makes the future not provably `Send`.
    let answers: Vec<ResultLine> = stream::iter(records.to_vec())
        .map(|record: BatchRecord| {
            let target = &target;
            async move {
                let conversation = conversation_of(&record.model_input);
                match model.converse(target, &conversation, None).await {
                    Ok(answer) => ResultLine {
                        record_id: record.record_id,
                        text: Some(answer.text()),
                        stop_reason: Some(answer.stop_reason),
                        usage: Some(answer.usage),
                        error: None,
                    },
                    Err(error) => {
                        ResultLine::failed(record.record_id, error.kind.as_str(), error.message)
                    }
                }
            }
        })
        .buffered(settings.direct_concurrency.max(1))
        .collect()
        .await;
    let mut summary = BatchSummary::default();
    let mut out = Vec::new();
    for line in &answers {
        add_to_summary(&mut summary, line, &batch.model_id, settings, true);
        if let Ok(json) = serde_json::to_vec(line) {
            out.extend_from_slice(&json);
            out.push(b'\n');
        }
    }
    let key = results_key(&batch.batch_id);
    store.put(&key, out).await?;
    batch.status = if summary.failed == 0 {
        BatchStatus::Completed
    } else if summary.succeeded == 0 {
        BatchStatus::Failed
    } else {
        BatchStatus::PartiallyCompleted
    };
    batch.results_key = Some(key);
    batch.summary = Some(summary);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_variable_they_refuse() {
        let env = |pairs: &[(&'static str, &'static str)]| {
            Env::from_pairs(
                pairs
                    .iter()
                    .copied()
                    .chain([("BATCH_ROLE_ARN", "arn:aws:iam::1:role/r")]),
            )
        };
        let settings = BatchSettings::from_env(&env(&[])).unwrap();
        assert_eq!((settings.min_records, settings.max_records), (100, 50_000));
        assert_eq!(settings.small_policy, SmallPolicy::Direct);
        for (name, value) in [
            ("BATCH_MAX_RECORDS", "10"),
            ("BATCH_TIMEOUT_HOURS", "12"),
            ("BATCH_SMALL_POLICY", "drop"),
            ("BATCH_PRICE_FACTOR", "2"),
            ("BATCH_MIN_RECORDS", "many"),
        ] {
            let err = BatchSettings::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(err.variable, name);
        }
        assert_eq!(
            BatchSettings::from_env(&Env::default())
                .unwrap_err()
                .variable,
            "BATCH_ROLE_ARN"
        );
    }

    #[test]
    fn job_names_name_their_batch() {
        let name = job_name("0a1b2c", 3);
        assert_eq!(name, "b0a1b2c-3");
        assert_eq!(batch_id_of_job(&name), Some("0a1b2c"));
        assert_eq!(batch_id_of_job("other"), None);
        assert_ne!(batch_id_for(&[b"ab", b"c"]), batch_id_for(&[b"a", b"bc"]));
        assert_eq!(batch_id_for(&[b"x"]).len(), 20);
    }

    /// The batch flow over in-memory ports: a registry that writes conditionally as DynamoDB
    /// does, a bucket, jobs that have all completed, and a publisher that can fail.
    mod announcing {
        use std::collections::{BTreeMap, HashMap};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use chrono::{TimeZone, Utc};
        use serde_json::json;

        use super::*;
        use crate::adapters::clock::ManualClock;
        use domain::ports::{JobState, ObjectInfo};

        const T0: i64 = 1_780_000_000;

        #[derive(Default, Clone)]
        struct Bucket(Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

        impl ObjectStore for Bucket {
            async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
                self.0.lock().unwrap().insert(key.to_owned(), body);
                Ok(())
            }
            async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
                Ok(self.0.lock().unwrap().get(key).cloned())
            }
            async fn info(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
                Ok(self.0.lock().unwrap().get(key).map(|b| ObjectInfo {
                    size: b.len() as u64,
                    ..ObjectInfo::default()
                }))
            }
            async fn get_range(
                &self,
                key: &str,
                start: u64,
                end: u64,
            ) -> Result<Vec<u8>, StoreError> {
                let objects = self.0.lock().unwrap();
                let bytes = objects.get(key).cloned().unwrap_or_default();
                let end = (end as usize).min(bytes.len());
                Ok(bytes[(start as usize).min(end)..end].to_vec())
            }
            async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
                let objects = self.0.lock().unwrap();
                Ok(objects
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect())
            }
            fn uri(&self, key: &str) -> String {
                format!("s3://batch-bucket/{key}")
            }
            async fn presign_get(&self, key: &str, _: Duration) -> Result<String, StoreError> {
                Ok(format!("https://batch-bucket/{key}?X-Amz-Signature=x"))
            }
        }

        /// Batches by id, each write conditional on the version, every write kept in order.
        #[derive(Default, Clone)]
        struct Registry {
            batches: Arc<Mutex<HashMap<String, Batch>>>,
            writes: Arc<Mutex<Vec<Batch>>>,
        }

        impl Registry {
            fn stored(&self, batch_id: &str) -> Batch {
                self.batches.lock().unwrap()[batch_id].clone()
            }
            fn writes(&self) -> Vec<Batch> {
                self.writes.lock().unwrap().clone()
            }
        }

        impl BatchRegistry for Registry {
            async fn create(&self, batch: &Batch) -> Result<bool, RegistryError> {
                let mut batches = self.batches.lock().unwrap();
                if batches.contains_key(&batch.batch_id) {
                    return Ok(false);
                }
                batches.insert(batch.batch_id.clone(), batch.clone());
                Ok(true)
            }
            async fn get(&self, batch_id: &str) -> Result<Option<Batch>, RegistryError> {
                Ok(self.batches.lock().unwrap().get(batch_id).cloned())
            }
            async fn update(&self, batch: &Batch) -> Result<(), RegistryError> {
                let mut batches = self.batches.lock().unwrap();
                let stored = batches.get(&batch.batch_id).map(|b| b.version);
                if stored != Some(batch.version - 1) {
                    return Err(RegistryError::Conflict);
                }
                batches.insert(batch.batch_id.clone(), batch.clone());
                self.writes.lock().unwrap().push(batch.clone());
                Ok(())
            }
            /// As the DynamoDB registry's scan: not ended, or ended and not yet announced.
            async fn unfinished(&self) -> Result<Vec<Batch>, RegistryError> {
                let batches = self.batches.lock().unwrap();
                Ok(batches.values().filter(|b| b.is_open()).cloned().collect())
            }
            async fn recent(
                &self,
                _: usize,
                _: Option<&str>,
            ) -> Result<(Vec<Batch>, Option<String>), RegistryError> {
                Ok((
                    self.batches.lock().unwrap().values().cloned().collect(),
                    None,
                ))
            }
        }

        /// Bedrock's jobs, every one of them completed.
        struct Completed;

        impl BatchJobs for Completed {
            async fn create(&self, _: &JobRequest) -> Result<String, JobError> {
                Err(JobError::Failed("no job is created here".into()))
            }
            async fn get(&self, _: &str) -> Result<JobState, JobError> {
                Ok(JobState {
                    status: "Completed".into(),
                    message: None,
                    processed: 3,
                    succeeded: 3,
                    failed: 0,
                })
            }
            async fn stop(&self, _: &str) -> Result<(), JobError> {
                Ok(())
            }
        }

        /// EventBridge: refuses the first `failures` calls as the SDK's dispatch failure does,
        /// then publishes. Every call checks that the batch's end is already written.
        struct Bus {
            registry: Registry,
            failures: Mutex<usize>,
            calls: Mutex<usize>,
            published: Mutex<Vec<Value>>,
        }

        impl Bus {
            fn failing(registry: &Registry, failures: usize) -> Self {
                Self {
                    registry: registry.clone(),
                    failures: Mutex::new(failures),
                    calls: Mutex::new(0),
                    published: Mutex::new(Vec::new()),
                }
            }
            fn calls(&self) -> usize {
                *self.calls.lock().unwrap()
            }
            fn published(&self) -> Vec<Value> {
                self.published.lock().unwrap().clone()
            }
        }

        impl EventPublisher for Bus {
            async fn batch_ended(&self, batch: &Batch) -> Result<(), EventError> {
                *self.calls.lock().unwrap() += 1;
                let stored = self.registry.stored(&batch.batch_id);
                assert!(
                    stored.status.is_final() && stored.results_key.is_some(),
                    "announced before its end was written: {stored:?}"
                );
                let mut failures = self.failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(EventError::Call("dispatch failure".into()));
                }
                self.published.lock().unwrap().push(json!({
                    "batchId": batch.batch_id, "status": batch.status, "resultsKey": batch.results_key,
                }));
                Ok(())
            }
        }

        fn settings() -> BatchSettings {
            BatchSettings::from_env(&Env::from_pairs([(
                "BATCH_ROLE_ARN",
                "arn:aws:iam::123456789012:role/r",
            )]))
            .unwrap()
        }

        fn records() -> Vec<BatchRecord> {
            (0..3)
                .map(|i| BatchRecord {
                    record_id: format!("r{i}"),
                    model_input: json!({"messages": [{"role": "user", "content": [{"text": "q"}]}]}),
                })
                .collect()
        }

        /// A registered batch of one job that Bedrock has finished, its output written out of
        /// order; `submitted` false leaves the job queued (never started).
        async fn registered(bucket: &Bucket, registry: &Registry, submitted: bool) -> Batch {
            registered_as("0a1b2c", bucket, registry, submitted).await
        }

        async fn registered_as(
            batch_id: &str,
            bucket: &Bucket,
            registry: &Registry,
            submitted: bool,
        ) -> Batch {
            let mut batch: Batch = serde_json::from_value(json!({
                "batchId": batch_id, "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
                "source": "api", "status": "InProgress", "jobs": [], "recordCount": 3,
                "createdAt": T0 - 600, "updatedAt": T0 - 600, "version": 1
            }))
            .unwrap();
            prepare_jobs(bucket, &mut batch, &records(), 100)
                .await
                .unwrap();
            if submitted {
                let job = &mut batch.jobs[0];
                job.arn = Some(format!(
                    "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{}",
                    job.name
                ));
                job.status = "InProgress".into();
                let out: Vec<String> = ["r2", "r0", "r1"]
                    .iter()
                    .map(|id| {
                        json!({"recordId": id, "modelInput": {}, "modelOutput": {
                            "output": {"message": {"role": "assistant", "content": [{"text": format!("answer {id}")}]}},
                            "stopReason": "end_turn",
                            "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}}})
                        .to_string()
                    })
                    .collect();
                let key = format!(
                    "{}{}/part-0000.jsonl.out",
                    output_prefix(&batch.batch_id),
                    batch.jobs[0].job_id().unwrap()
                );
                bucket.put(&key, out.join("\n").into_bytes()).await.unwrap();
            } else {
                batch.status = BatchStatus::Queued;
            }
            assert!(registry.create(&batch).await.unwrap());
            batch
        }

        async fn results(bucket: &Bucket, batch: &Batch) -> Vec<Value> {
            let bytes = bucket
                .get(batch.results_key.as_deref().unwrap())
                .await
                .unwrap()
                .unwrap();
            lines(&bytes).collect()
        }

        #[tokio::test]
        async fn a_failed_announcement_leaves_the_batch_ended_readable_and_pending() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            registered(&bucket, &registry, true).await;
            let bus = Bus::failing(&registry, 1);

            let batch = refresh(
                &Completed,
                &bucket,
                &registry,
                &bus,
                "0a1b2c",
                &settings(),
                T0,
            )
            .await
            .expect("a failed announcement does not fail the refresh");

            assert_eq!(batch.status, BatchStatus::Completed);
            assert_eq!(batch.announcement, Some(Announcement::Pending));
            assert_eq!(
                registry.stored("0a1b2c"),
                batch,
                "the final state is written"
            );
            let writes = registry.writes();
            assert_eq!(
                writes.len(),
                1,
                "one write: the end, with its announcement pending"
            );
            assert!(writes[0].status.is_final() && writes[0].announcement_pending());
            let lines = results(&bucket, &batch).await;
            let ids: Vec<&str> = lines
                .iter()
                .map(|l| l["recordId"].as_str().unwrap())
                .collect();
            assert_eq!(ids, ["r0", "r1", "r2"], "merged, in input order");
            assert_eq!(lines[1]["text"], "answer r1");
            assert_eq!(batch.summary.as_ref().map(|s| s.succeeded), Some(3));
            assert_eq!((bus.calls(), bus.published().len()), (1, 0));
        }

        #[tokio::test]
        async fn the_next_refresh_announces_a_pending_end_once() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            registered(&bucket, &registry, true).await;
            let bus = Bus::failing(&registry, 1);
            let ended = refresh(
                &Completed,
                &bucket,
                &registry,
                &bus,
                "0a1b2c",
                &settings(),
                T0,
            )
            .await
            .unwrap();
            assert!(ended.announcement_pending());

            // A later run (a job event or the schedule) publishes it and records it.
            let later = T0 + 300;
            let announced = refresh(
                &Completed,
                &bucket,
                &registry,
                &bus,
                "0a1b2c",
                &settings(),
                later,
            )
            .await
            .unwrap();
            assert_eq!(announced.announcement, Some(Announcement::Announced));
            assert_eq!(registry.stored("0a1b2c"), announced);
            assert_eq!(announced.version, ended.version + 1, "a conditional write");
            assert_eq!(
                announced.updated_at, ended.updated_at,
                "recording the announcement leaves the end where it was"
            );
            assert_eq!(announced.results_key, ended.results_key);
            let published = bus.published();
            assert_eq!(published.len(), 1);
            assert_eq!(published[0]["status"], "Completed");
            assert_eq!(published[0]["resultsKey"], json!(ended.results_key));

            // Announced once: later runs publish nothing and write nothing.
            let writes = registry.writes().len();
            refresh(
                &Completed,
                &bucket,
                &registry,
                &bus,
                "0a1b2c",
                &settings(),
                later + 300,
            )
            .await
            .unwrap();
            assert_eq!((bus.calls(), bus.published().len()), (2, 1));
            assert_eq!(registry.writes().len(), writes);
        }

        #[tokio::test]
        async fn the_schedule_retries_a_pending_announcement_once_a_run_until_it_goes_out() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            registered(&bucket, &registry, true).await;
            let bus = Bus::failing(&registry, 2);
            let clock = ManualClock::at(Utc.timestamp_opt(T0, 0).unwrap());
            let settings = settings();
            let run = || sweep(&Completed, &bucket, &registry, &bus, &clock, &settings);

            let first = run().await.unwrap();
            assert_eq!(
                first,
                Sweep {
                    advanced: 1,
                    unannounced: 1,
                    failed: 0
                },
                "ended and merged; EventBridge refused"
            );
            assert!(registry.stored("0a1b2c").status.is_final());
            let writes = registry.writes().len();
            clock.advance(chrono::Duration::minutes(5));
            let second = run().await.unwrap();
            assert_eq!(
                second,
                Sweep {
                    advanced: 1,
                    unannounced: 1,
                    failed: 0
                }
            );
            assert_eq!(
                registry.writes().len(),
                writes,
                "a failed try writes nothing"
            );
            clock.advance(chrono::Duration::minutes(5));
            let third = run().await.unwrap();
            assert_eq!(
                third,
                Sweep {
                    advanced: 1,
                    unannounced: 0,
                    failed: 0
                }
            );
            assert_eq!(
                registry.stored("0a1b2c").announcement,
                Some(Announcement::Announced)
            );
            assert_eq!(
                run().await.unwrap(),
                Sweep::default(),
                "nothing left to follow"
            );
            assert_eq!((bus.calls(), bus.published().len()), (3, 1));
        }

        #[tokio::test]
        async fn a_run_stops_announcing_at_eventbridges_first_failure() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            for id in ["0a1b2c", "3d4e5f"] {
                registered_as(id, &bucket, &registry, true).await;
            }
            let bus = Bus::failing(&registry, 1);
            let clock = ManualClock::at(Utc.timestamp_opt(T0, 0).unwrap());
            let settings = settings();
            let run = || sweep(&Completed, &bucket, &registry, &bus, &clock, &settings);

            let down = run().await.unwrap();
            assert_eq!(
                down,
                Sweep {
                    advanced: 2,
                    unannounced: 2,
                    failed: 0
                },
                "both ended and merged"
            );
            assert_eq!(bus.calls(), 1, "one failed call, not one a batch");
            for id in ["0a1b2c", "3d4e5f"] {
                let stored = registry.stored(id);
                assert!(
                    stored.status.is_final() && stored.announcement_pending(),
                    "{id}"
                );
            }
            let up = run().await.unwrap();
            assert_eq!(
                up,
                Sweep {
                    advanced: 2,
                    unannounced: 0,
                    failed: 0
                }
            );
            assert_eq!((bus.calls(), bus.published().len()), (3, 2));
        }

        #[tokio::test]
        async fn an_announcement_failure_names_eventbridge() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            registered(&bucket, &registry, true).await;
            let bus = Bus::failing(&registry, 2);
            let ended = refresh(
                &Completed,
                &bucket,
                &registry,
                &bus,
                "0a1b2c",
                &settings(),
                T0,
            )
            .await
            .unwrap();
            let error = announce(&registry, &bus, &ended).await.unwrap_err();
            assert!(matches!(error, BatchError::Events(_)), "{error:?}");
            assert_eq!(error.to_string(), "EventBridge PutEvents: dispatch failure");
            // Not the bucket's failure, which reads like this:
            assert_eq!(
                BatchError::from(StoreError("dispatch failure".into())).to_string(),
                "object store: dispatch failure"
            );
            assert!(registry.stored("0a1b2c").announcement_pending());
        }

        #[tokio::test]
        async fn a_batch_another_run_announced_meanwhile_is_recorded_once() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            registered(&bucket, &registry, true).await;
            let bus = Bus::failing(&registry, 1);
            let ended = refresh(
                &Completed,
                &bucket,
                &registry,
                &bus,
                "0a1b2c",
                &settings(),
                T0,
            )
            .await
            .unwrap();
            let announced = announce(&registry, &bus, &ended).await.unwrap();
            assert_eq!(announced.announcement, Some(Announcement::Announced));
            let writes = registry.writes().len();
            // A run that read the batch before: it publishes again (at least once), but finds
            // the record written and writes nothing.
            let stale = announce(&registry, &bus, &ended).await.unwrap();
            assert_eq!(stale, announced);
            assert_eq!(registry.writes().len(), writes);
            assert_eq!(bus.published().len(), 2);
        }

        #[tokio::test]
        async fn an_item_written_before_announcements_were_recorded_is_not_announced_again() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            let old: Batch = serde_json::from_value(json!({
                "batchId": "old", "modelId": "m", "source": "api", "status": "Completed",
                "jobs": [], "recordCount": 1, "resultsKey": "batch-results/old/results.jsonl",
                "createdAt": 1, "updatedAt": 2, "version": 3
            }))
            .unwrap();
            registry.create(&old).await.unwrap();
            let bus = Bus::failing(&registry, 0);
            let read = refresh(&Completed, &bucket, &registry, &bus, "old", &settings(), T0)
                .await
                .unwrap();
            assert_eq!(read, old);
            let clock = ManualClock::at(Utc.timestamp_opt(T0, 0).unwrap());
            let run = sweep(&Completed, &bucket, &registry, &bus, &clock, &settings())
                .await
                .unwrap();
            assert_eq!(run, Sweep::default());
            assert_eq!(bus.calls(), 0);
        }

        #[tokio::test]
        async fn a_stopped_batch_whose_jobs_never_started_is_merged_and_announced() {
            let (bucket, registry) = (Bucket::default(), Registry::default());
            registered(&bucket, &registry, false).await;
            let stopped = stop_batch(&Completed, &registry, "0a1b2c", T0)
                .await
                .unwrap();
            assert_eq!(
                stopped.status,
                BatchStatus::Stopping,
                "not ended before its results are written"
            );
            let bus = Bus::failing(&registry, 0);
            let batch = refresh(
                &Completed,
                &bucket,
                &registry,
                &bus,
                "0a1b2c",
                &settings(),
                T0 + 60,
            )
            .await
            .unwrap();
            assert_eq!(batch.status, BatchStatus::Stopped);
            assert_eq!(batch.announcement, Some(Announcement::Announced));
            let lines = results(&bucket, &batch).await;
            assert_eq!(lines.len(), 3);
            assert!(lines.iter().all(|l| l["error"]["code"] == "NotProcessed"));
            assert_eq!(bus.published().len(), 1);
        }
    }
}
