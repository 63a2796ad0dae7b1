//! A job's lifecycle, one background task per job, one `batchStepMs` per state:
//! `Submitted → Validating → Scheduled → InProgress → Completed | PartiallyCompleted | Failed`,
//! or, once stopped, `Stopping → Stopped`.
//!
//! Validating reads the input (one `.jsonl` object or every `.jsonl` under a prefix) and checks
//! each line and the record count. InProgress answers the records in four slices, each after a
//! step plus `batchRecordMs` per record of the slice (see [`in_progress_duration`]), then
//! writes `{output}/{jobId}/{input file}.out` (lines in a shuffled order, as Bedrock's are not
//! in input order) and `{output}/{jobId}/manifest.json.out`. A job stopped in InProgress writes
//! the lines of the records answered so far and the manifest of those.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::job::{Counts, InvocationType, Job, Status};
use super::storage::{read_input, InputFile, S3Location};
use super::{BatchSettings, BatchState};
use crate::converse;
use crate::error::BedrockError;
use crate::invoke;
use crate::runtime::RuntimeState;

/// InProgress answers the records in this many slices, one step each.
const SLICES: usize = 4;

/// One input line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub record_id: String,
    pub model_input: Value,
}

/// One input file's records.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFile {
    pub name: String,
    pub records: Vec<Record>,
}

/// Parses the input files as Bedrock validates them: each non-blank line one JSON object with
/// a `modelInput` object and an optional string `recordId` (one is made up when absent).
pub fn parse_input(files: Vec<InputFile>) -> Result<Vec<RecordFile>, String> {
    let mut generated = 0u64;
    files
        .into_iter()
        .map(|file| {
            let mut records = Vec::new();
            for (n, line) in file.body.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let shape = "Each line must be a JSON object: {\"recordId\": \"...\", \"modelInput\": {...}}.";
                let value: Value = serde_json::from_str(line).map_err(|e| {
                    format!(
                        "Invalid JSON on line {} of {}: {e}. {shape}",
                        n + 1,
                        file.name
                    )
                })?;
                let model_input = value
                    .get("modelInput")
                    .filter(|v| v.is_object())
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "Line {} of {} has no modelInput object. {shape}",
                            n + 1,
                            file.name
                        )
                    })?;
                let record_id = match value.get("recordId") {
                    None | Some(Value::Null) => {
                        generated += 1;
                        format!("RECORD{generated:05}")
                    }
                    Some(Value::String(id)) => id.clone(),
                    Some(_) => {
                        return Err(format!(
                            "The recordId on line {} of {} is not a string. {shape}",
                            n + 1,
                            file.name
                        ))
                    }
                };
                records.push(Record {
                    record_id,
                    model_input,
                });
            }
            Ok(RecordFile {
                name: file.name,
                records,
            })
        })
        .collect()
}

/// The record-count limits of a job.
pub fn check_count(total: u64, min: u64, max: u64) -> Result<(), String> {
    if total < min {
        return Err(format!(
            "The input holds {total} records, fewer than the minimum of {min} records per batch inference job. Add records and submit a new job."
        ));
    }
    if total > max {
        return Err(format!(
            "The input holds {total} records, more than the maximum of {max} records per batch inference job. Split the input across jobs."
        ));
    }
    Ok(())
}

/// The answer to one record's `modelInput`, with its input and output tokens.
pub fn answer(
    state: &RuntimeState,
    model_id: &str,
    invocation_type: InvocationType,
    model_input: &Value,
) -> Result<(Value, u64, u64), BedrockError> {
    match invocation_type {
        InvocationType::Converse => {
            let checked = converse::check_value(state, model_id, model_input.clone())?;
            let tokens = (
                u64::from(checked.input_tokens),
                u64::from(checked.answer.output_tokens),
            );
            Ok((converse::output(&checked, 0), tokens.0, tokens.1))
        }
        InvocationType::InvokeModel => {
            let (dialect, checked) = invoke::check_body(state, model_id, model_input)?;
            let tokens = (
                u64::from(checked.input_tokens),
                u64::from(checked.answer.output_tokens),
            );
            Ok((
                invoke::response_body(&dialect, model_id, &checked),
                tokens.0,
                tokens.1,
            ))
        }
    }
}

/// The message of a record failed by `batchRecordErrorRate`.
pub const INJECTED_RECORD_ERROR: &str =
    "The model could not process this record. (Injected by the emulator's batchRecordErrorRate.)";

/// Error-diffusion over the records: a rate r fails exactly r of them, evenly spread.
struct Spreader {
    rate: f64,
    acc: f64,
}

impl Spreader {
    fn fires(&mut self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        self.acc += self.rate;
        if self.acc >= 1.0 - 1e-9 {
            self.acc -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The output line of one record, and whether it succeeded, with its tokens.
fn process(
    state: &BatchState,
    job: &Job,
    record: &Record,
    inject: bool,
) -> (Value, Option<(u64, u64)>) {
    let error = |code: u16, message: &str| {
        json!({
            "recordId": record.record_id,
            "modelInput": record.model_input,
            "error": {"errorCode": code, "errorMessage": message},
        })
    };
    if inject {
        return (error(400, INJECTED_RECORD_ERROR), None);
    }
    let request = &job.request;
    match answer(
        &state.runtime,
        &request.model_id,
        request.invocation_type,
        &record.model_input,
    ) {
        Ok((output, input_tokens, output_tokens)) => (
            json!({
                "recordId": record.record_id,
                "modelInput": record.model_input,
                "modelOutput": output,
            }),
            Some((input_tokens, output_tokens)),
        ),
        Err(e) => (error(e.status.as_u16(), &e.message), None),
    }
}

/// A deterministic shuffle of a file's lines (Bedrock does not keep the input order).
fn shuffle(job_id: &str, lines: &mut [(usize, Value)]) {
    let key = |index: usize| {
        let digest = Sha256::digest(format!("{job_id}:{index}"));
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(bytes)
    };
    let original: Vec<usize> = lines.iter().map(|(i, _)| *i).collect();
    lines.sort_by_key(|(i, _)| key(*i));
    if lines.len() > 1 && lines.iter().map(|(i, _)| *i).eq(original.iter().copied()) {
        lines.rotate_left(1);
    }
}

fn manifest(counts: &Counts) -> Value {
    json!({
        "totalRecordCount": counts.total,
        "processedRecordCount": counts.processed,
        "successRecordCount": counts.success,
        "errorRecordCount": counts.error,
        "inputTokenCount": counts.input_tokens,
        "outputTokenCount": counts.output_tokens,
    })
}

/// Writes each file's lines and the manifest under `{output}/{jobId}/`.
async fn write_output(
    state: &BatchState,
    job: &Job,
    outputs: Vec<(String, Vec<(usize, Value)>)>,
    counts: &Counts,
) -> Result<(), String> {
    let uri = &job.request.output_uri;
    let location = S3Location::parse(uri).ok_or_else(|| format!("Invalid output URI {uri}"))?;
    let failed = |e: String| format!("Unable to write the output to {uri}: {e}");
    for (name, mut lines) in outputs {
        shuffle(&job.id, &mut lines);
        let mut body = String::new();
        for (_, line) in &lines {
            body.push_str(&line.to_string());
            body.push('\n');
        }
        let key = location.child(&format!("{}/{name}.out", job.id));
        state
            .storage
            .put(&location.bucket, &key, body)
            .await
            .map_err(failed)?;
    }
    let key = location.child(&format!("{}/manifest.json.out", job.id));
    state
        .storage
        .put(&location.bucket, &key, manifest(counts).to_string())
        .await
        .map_err(failed)
}

/// How many records each InProgress slice holds (the last may hold fewer).
fn slice_len(total: usize) -> usize {
    total.div_ceil(SLICES).max(1)
}

/// How long InProgress waits before answering a slice of `records` records: one `batchStepMs`
/// plus `batchRecordMs` per record.
pub fn slice_duration(settings: &BatchSettings, records: usize) -> Duration {
    let per_records = settings
        .batch_record_ms
        .saturating_mul(u64::try_from(records).unwrap_or(u64::MAX));
    Duration::from_millis(settings.batch_step_ms.saturating_add(per_records))
}

/// How long a job of `total` records spends InProgress under `settings` (unchanged while it
/// runs): a [`slice_duration`] for each of its slices, so `batchStepMs` per slice plus
/// `batchRecordMs` per record (150 records at `batchRecordMs` 10: 1.5 s more).
pub fn in_progress_duration(settings: &BatchSettings, total: usize) -> Duration {
    let per_slice = slice_len(total);
    (0..total)
        .step_by(per_slice)
        .map(|start| slice_duration(settings, per_slice.min(total - start)))
        .fold(Duration::ZERO, Duration::saturating_add)
}

/// Waits `length` of the settings in effect, re-reading them as it waits so that a change at
/// run time applies to the wait already under way.
async fn wait(state: &BatchState, length: impl Fn(&BatchSettings) -> Duration) {
    let started = Instant::now();
    loop {
        let length = length(&state.settings());
        let Some(left) = length
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return;
        };
        tokio::time::sleep(left.min(RECHECK)).await;
    }
}

/// Waits one `batchStepMs`, as `wait` waits.
async fn step(state: &BatchState) {
    wait(state, |settings| {
        Duration::from_millis(settings.batch_step_ms)
    })
    .await;
}

/// How often a waiting job re-reads `batchStepMs` and `batchRecordMs`.
const RECHECK: Duration = Duration::from_millis(20);

/// Moves an active job to `next`, or a stopping one to Stopped. `false` when the job does not
/// go on (stopped, ended or gone).
fn advance(state: &BatchState, id: &str, next: Status) -> bool {
    let mut moved = false;
    state.update_job(id, |job| {
        if job.status == Status::Stopping {
            job.status = Status::Stopped;
        } else if job.status.is_active() {
            job.status = next;
            moved = true;
        }
    });
    moved
}

/// Ends an active job with a status and message (a stopping one ends Stopped).
fn finish(state: &BatchState, id: &str, status: Status, message: Option<String>) {
    state.update_job(id, |job| {
        if job.status == Status::Stopping {
            job.status = Status::Stopped;
        } else if job.status.is_active() {
            job.status = status;
            job.message = message;
        }
    });
}

fn status_of(state: &BatchState, id: &str) -> Option<Status> {
    state.jobs.get(id).map(|j| j.status)
}

/// Runs a job from Submitted to its end.
pub async fn run(state: Arc<BatchState>, id: String) {
    let Some(job) = state.jobs.get(&id) else {
        return;
    };
    step(&state).await;
    if !advance(&state, &id, Status::Validating) {
        return;
    }
    let input = match S3Location::parse(&job.request.input_uri) {
        Some(location) => read_input(state.storage.as_ref(), &location).await,
        None => Err(format!("Invalid input URI {}", job.request.input_uri)),
    };
    step(&state).await;
    let settings = state.settings();
    let files = input.and_then(parse_input).and_then(|files| {
        let total = files.iter().map(|f| f.records.len() as u64).sum();
        check_count(
            total,
            settings.batch_min_records,
            settings.batch_max_records,
        )
        .map(|()| files)
    });
    let files = match files {
        Ok(files) => files,
        Err(message) => {
            tracing::info!(job_id = %id, %message, "batch inference job failed validation");
            finish(&state, &id, Status::Failed, Some(message));
            return;
        }
    };
    let mut counts = Counts {
        total: files.iter().map(|f| f.records.len() as u64).sum(),
        ..Counts::default()
    };
    state.update_job(&id, |job| job.counts = Some(counts));
    if !advance(&state, &id, Status::Scheduled) {
        return;
    }
    step(&state).await;
    if !advance(&state, &id, Status::InProgress) {
        return;
    }

    let mut spreader = Spreader {
        rate: state.settings().batch_record_error_rate,
        acc: 0.0,
    };
    let mut outputs: Vec<(String, Vec<(usize, Value)>)> =
        files.iter().map(|f| (f.name.clone(), Vec::new())).collect();
    let all: Vec<(usize, usize, &Record)> = files
        .iter()
        .enumerate()
        .flat_map(|(f, file)| file.records.iter().enumerate().map(move |(i, r)| (f, i, r)))
        .collect();
    for slice in all.chunks(slice_len(all.len())) {
        wait(&state, |settings| slice_duration(settings, slice.len())).await;
        match status_of(&state, &id) {
            Some(Status::InProgress) => {}
            Some(Status::Stopping) => {
                if counts.processed > 0 {
                    if let Err(message) = write_output(&state, &job, outputs, &counts).await {
                        tracing::warn!(job_id = %id, %message, "partial output of a stopped job not written");
                    }
                }
                finish(&state, &id, Status::Stopped, None);
                return;
            }
            _ => return,
        }
        for &(file, index, record) in slice {
            let (line, tokens) = process(&state, &job, record, spreader.fires());
            counts.processed += 1;
            match tokens {
                Some((input, output)) => {
                    counts.success += 1;
                    counts.input_tokens += input;
                    counts.output_tokens += output;
                }
                None => counts.error += 1,
            }
            if let Some((_, lines)) = outputs.get_mut(file) {
                lines.push((index, line));
            }
        }
        state.update_job(&id, |job| job.counts = Some(counts));
    }

    let (status, message) = match write_output(&state, &job, outputs, &counts).await {
        Err(message) => (Status::Failed, Some(message)),
        Ok(()) if counts.error == 0 => (Status::Completed, None),
        Ok(()) if counts.success == 0 => (
            Status::Failed,
            Some(format!(
                "All {} records failed; the output holds the error of each.",
                counts.total
            )),
        ),
        Ok(()) => (
            Status::PartiallyCompleted,
            Some(format!(
                "{} of {} records failed; the output holds the error of each.",
                counts.error, counts.total
            )),
        ),
    };
    tracing::info!(job_id = %id, status = status.as_str(), processed = counts.processed, errors = counts.error, "batch inference job ended");
    finish(&state, &id, status, message);
}
