//! Batch orchestration over the ports: writing job inputs, submitting jobs within the quota,
//! following them, and merging their output into one `results.jsonl` in input order. Shared
//! by batch-submit and batch-status; no AWS SDK type appears here.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, Env};
use crate::domain::batch::{
    job_has_ended, job_sizes, Batch, BatchRecord, BatchStatus, BatchSummary, JobEntry,
    RecordCollector, ResultLine, JOB_QUEUED,
};
use crate::domain::conversation::{Conversation, InferenceConfig, Message, TextBlock};
use crate::domain::error::{JobError, RegistryError, StoreError};
use crate::domain::pricing::PriceTable;
use crate::domain::routing::{Route, Target};
use crate::ports::{
    BatchJobs, BatchRegistry, EventPublisher, JobRequest, ModelInvoker, ObjectStore,
};

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

/// Advances a batch and writes it back; announces its end when this run ended it.
pub async fn refresh<J: BatchJobs, S: ObjectStore, R: BatchRegistry, E: EventPublisher>(
    jobs: &J,
    store: &S,
    registry: &R,
    events: &E,
    batch_id: &str,
    settings: &BatchSettings,
    now_epoch: i64,
) -> Result<Batch, BatchError> {
    update_batch(registry, batch_id, now_epoch, |mut batch| async move {
        let before = batch.clone();
        advance(jobs, store, &mut batch, settings).await?;
        let changed = batch != before;
        if changed && batch.status.is_final() {
            // Announced before the final state is written: if the write fails, the next run
            // merges and announces again (at least once, as EventBridge consumers expect).
            events.batch_ended(&batch).await?;
        }
        Ok((batch, changed))
    })
    .await
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
        batch.status = batch.status_from_jobs();
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
}
