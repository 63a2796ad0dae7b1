//! Small batches answered directly through on-demand Converse, in the format of a job's output.
//!
//! batch-submit only registers such a batch (its records at [`direct_input_key`]) and hands it
//! to the work queue; batch-status answers it ([`answer_direct`]): a run claims the batch with a
//! lease (a conditional registry write), answers the records not yet answered, writing each
//! answer as its own checkpoint ([`answer_key`]) as soon as it comes, starts a record only while
//! the invocation has time left for it, and merges the answers once every record has one. A run
//! that ran out of time releases the batch for the next; a redelivered message or a retried run
//! finds the checkpoints and never asks the model again for an answered record.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use tokio::time::Instant;

use domain::batch::{Batch, BatchRecord, BatchStatus, BatchSummary, Lease, ResultLine};
use domain::conversation::{Conversation, InferenceConfig, Message, SystemBlock};
use domain::ports::{BatchRegistry, ModelInvoker, ObjectStore};
use domain::routing::{Route, Target};

use super::*;

/// A Converse body (already validated) as the conversation the model port takes.
pub(crate) fn conversation_of(input: &Value) -> Conversation {
    let field = |name: &str| input.get(name).cloned().unwrap_or(Value::Null);
    Conversation {
        system: serde_json::from_value::<Vec<SystemBlock>>(field("system")).unwrap_or_default(),
        messages: serde_json::from_value::<Vec<Message>>(field("messages")).unwrap_or_default(),
        inference_config: serde_json::from_value::<InferenceConfig>(field("inferenceConfig"))
            .unwrap_or_default(),
        additional_model_request_fields: input.get("additionalModelRequestFields").cloned(),
        tool_config: None,
    }
}

/// Writes a direct batch's records where its runs read them.
pub async fn write_direct_input<S: ObjectStore>(
    store: &S,
    batch_id: &str,
    records: &[BatchRecord],
) -> Result<(), BatchError> {
    store
        .put(&direct_input_key(batch_id), jsonl(records))
        .await?;
    Ok(())
}

/// One run (a Lambda invocation) that answers direct batches: its id, which names its lease,
/// and the deadline by which it must have stopped.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub id: String,
    pub deadline: Instant,
}

/// What a run leaves for the write-back after its last call: checkpoints, release, re-queue.
const WRITE_BACK: Duration = Duration::from_secs(3);
/// The longest a Lambda invocation lasts: the run of an event without a context.
const LONGEST_INVOCATION: Duration = Duration::from_secs(900);

impl Invocation {
    /// From Lambda's context: its request id and deadline (epoch milliseconds). A deadline
    /// already past as the invocation starts is no deadline Lambda would give (`cargo lambda
    /// watch` sends a fixed 600000, early 1970): the run then takes the longest Lambda allows.
    pub fn of_lambda(request_id: &str, deadline_epoch_ms: u64) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let remaining = match u128::from(deadline_epoch_ms).checked_sub(now_ms) {
            Some(left) if left > 0 => {
                Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX))
                    .min(LONGEST_INVOCATION)
            }
            _ => {
                tracing::warn!(
                    deadline_epoch_ms,
                    "the invocation's deadline has passed as it starts; taking Lambda's longest"
                );
                LONGEST_INVOCATION
            }
        };
        Self {
            id: request_id.to_owned(),
            deadline: Instant::now() + remaining,
        }
    }

    /// A run with `remaining` before its deadline and an id of its own.
    pub fn lasting(remaining: Duration) -> Self {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        Self {
            id: format!(
                "run-{}-{}",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            ),
            deadline: Instant::now() + remaining,
        }
    }

    /// A run as long as Lambda allows (an event handled outside Lambda's runtime, a test).
    pub fn longest() -> Self {
        Self::lasting(LONGEST_INVOCATION)
    }

    /// The time left before its deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// How a run of [`answer_direct`] left its batch.
#[derive(Debug)]
pub enum DirectRun {
    /// Every record answered (or the batch stopped): its results merged, its end written with
    /// the announcement pending. Also a batch that had ended before the run.
    Ended(Batch),
    /// The run's time ran out first: what it answered is kept, the batch released for the next.
    OutOfTime(Batch),
    /// Another run holds the batch's lease; this run did nothing.
    Held(Batch),
}

/// Answers what is left of a direct batch within `run`'s time, never a record twice: see the
/// module's documentation. A model's refusal or failure is the record's answer (a failed result
/// line, as a job reports it); only a call the deadline cut leaves its record for the next run.
pub async fn answer_direct<M, S, R>(
    model: &M,
    store: &S,
    registry: &R,
    batch_id: &str,
    settings: &BatchSettings,
    run: &Invocation,
    now_epoch: i64,
) -> Result<DirectRun, BatchError>
where
    M: ModelInvoker,
    S: ObjectStore,
    R: BatchRegistry,
{
    let lease = Lease {
        holder: run.id.clone(),
        until: now_epoch
            .saturating_add(i64::try_from(run.remaining().as_secs()).unwrap_or(i64::MAX))
            .saturating_add(1),
    };
    let claimed = update_batch(registry, batch_id, now_epoch, |mut batch| {
        let lease = lease.clone();
        async move {
            let taken = batch
                .lease
                .as_ref()
                .is_some_and(|held| held.excludes(&lease.holder, now_epoch));
            if !batch.direct || taken {
                return Ok((batch, false));
            }
            batch.lease = Some(lease);
            if batch.status == BatchStatus::Queued {
                batch.status = BatchStatus::InProgress;
            }
            Ok((batch, true))
        }
    })
    .await?;
    if claimed.status.is_final() {
        return Ok(DirectRun::Ended(claimed));
    }
    if claimed.lease.as_ref().map(|held| &held.holder) != Some(&run.id) {
        return Ok(DirectRun::Held(claimed));
    }
    let records = read_direct_records(store, batch_id).await?;
    let mut answered = answered_positions(store, batch_id).await?;
    let stopping = claimed.status == BatchStatus::Stopping;
    if !stopping {
        answer_missing(
            model,
            store,
            &claimed,
            &records,
            &mut answered,
            settings,
            run,
        )
        .await?;
    }
    let complete = (0..records.len()).all(|position| answered.contains(&position));
    if complete || stopping {
        let (key, summary) = merge_answers(store, &claimed, &records, settings).await?;
        let ended = update_batch(registry, batch_id, now_epoch, |mut batch| {
            let (key, summary) = (key.clone(), summary.clone());
            async move {
                batch.status = if complete {
                    status_of(&summary)
                } else {
                    BatchStatus::Stopped
                };
                batch.results_key = Some(key);
                batch.summary = Some(summary);
                batch.lease = None;
                batch.announcement = Some(domain::batch::Announcement::Pending);
                Ok((batch, true))
            }
        })
        .await?;
        return Ok(DirectRun::Ended(ended));
    }
    let holder = run.id.clone();
    let released = update_batch(registry, batch_id, now_epoch, |mut batch| {
        let ours = batch.lease.as_ref().map(|held| &held.holder) == Some(&holder);
        if ours {
            batch.lease = None;
        }
        async move { Ok((batch, ours)) }
    })
    .await?;
    tracing::info!(
        batch_id,
        answered = answered.len(),
        records = records.len(),
        seconds_left = run.remaining().as_secs(),
        "direct batch out of time; the next run answers the rest"
    );
    Ok(DirectRun::OutOfTime(released))
}

/// Answers the unanswered records a few at a time, each group started only while the run has
/// [`BatchSettings::direct_call_seconds`] left, each call cut before the run's deadline.
async fn answer_missing<M: ModelInvoker, S: ObjectStore>(
    model: &M,
    store: &S,
    batch: &Batch,
    records: &[BatchRecord],
    answered: &mut BTreeSet<usize>,
    settings: &BatchSettings,
    run: &Invocation,
) -> Result<(), BatchError> {
    let target = Target {
        latency: None,
        guardrail: None,
        service_tier: None,
        invoke_id: batch.model_id.clone(),
        route: Route::OnDemand,
        model: batch.model_id.clone(),
    };
    let missing: Vec<usize> = (0..records.len())
        .filter(|position| !answered.contains(position))
        .collect();
    let call_time = Duration::from_secs(settings.direct_call_seconds);
    let cut = run.deadline.checked_sub(WRITE_BACK).unwrap_or(run.deadline);
    for group in missing.chunks(settings.direct_concurrency.max(1)) {
        if Instant::now() + call_time + WRITE_BACK > run.deadline {
            break;
        }
        let calls = group.iter().map(|&position| {
            let record = &records[position];
            let target = &target;
            async move {
                let conversation = conversation_of(&record.model_input);
                let call = model.converse(target, &conversation, None);
                let line = match tokio::time::timeout_at(cut, call).await {
                    Err(_) => return Ok::<_, BatchError>(None),
                    Ok(Ok(answer)) => ResultLine {
                        record_id: record.record_id.clone(),
                        text: Some(answer.text()),
                        stop_reason: Some(answer.stop_reason),
                        usage: Some(answer.usage),
                        error: None,
                    },
                    Ok(Err(error)) => ResultLine::failed(
                        record.record_id.clone(),
                        error.kind.as_str(),
                        error.message,
                    ),
                };
                let body = serde_json::to_vec(&line).unwrap_or_default();
                store
                    .put(&answer_key(&batch.batch_id, position), body)
                    .await?;
                Ok(Some(position))
            }
        });
        let mut cut_short = false;
        for outcome in join_all(calls).await {
            match outcome? {
                Some(position) => {
                    answered.insert(position);
                }
                None => cut_short = true,
            }
        }
        if cut_short {
            break;
        }
    }
    Ok(())
}

/// The records of a direct batch, in their order.
async fn read_direct_records<S: ObjectStore>(
    store: &S,
    batch_id: &str,
) -> Result<Vec<BatchRecord>, BatchError> {
    let key = direct_input_key(batch_id);
    let body = store
        .get(&key)
        .await?
        .ok_or_else(|| BatchError::NotFound(key.clone()))?;
    Ok(body
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// The positions of the records a run has answered already.
async fn answered_positions<S: ObjectStore>(
    store: &S,
    batch_id: &str,
) -> Result<BTreeSet<usize>, BatchError> {
    let prefix = answers_prefix(batch_id);
    Ok(store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|key| {
            key.strip_prefix(&prefix)?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect())
}

/// Writes the answers as `results.jsonl` in input order, a record with no answer (its batch
/// stopped first) reported as not processed, and adds them up at the on-demand price.
async fn merge_answers<S: ObjectStore>(
    store: &S,
    batch: &Batch,
    records: &[BatchRecord],
    settings: &BatchSettings,
) -> Result<(String, BatchSummary), BatchError> {
    let mut summary = BatchSummary::default();
    let mut out = Vec::new();
    for (position, record) in records.iter().enumerate() {
        let answer = store
            .get(&answer_key(&batch.batch_id, position))
            .await?
            .and_then(|body| serde_json::from_slice::<ResultLine>(&body).ok());
        let line = answer.unwrap_or_else(|| {
            ResultLine::failed(
                record.record_id.clone(),
                "NotProcessed",
                "the batch was stopped before this record was answered",
            )
        });
        add_to_summary(&mut summary, &line, &batch.model_id, settings, true);
        if let Ok(json) = serde_json::to_vec(&line) {
            out.extend_from_slice(&json);
            out.push(b'\n');
        }
    }
    let key = results_key(&batch.batch_id);
    store.put(&key, out).await?;
    Ok((key, summary))
}

fn status_of(summary: &BatchSummary) -> BatchStatus {
    if summary.failed == 0 {
        BatchStatus::Completed
    } else if summary.succeeded == 0 {
        BatchStatus::Failed
    } else {
        BatchStatus::PartiallyCompleted
    }
}
