//! Where a batch's objects live and what its jobs are called: input, output and results keys,
//! job names, batch ids.

use sha2::{Digest, Sha256};

use domain::batch::{BatchRecord, JobEntry, JOB_QUEUED};

/// Where things live in the batch bucket. Job inputs are not under `batch-input/`, the upload
/// prefix, so writing them never triggers batch-submit again.
pub fn job_input_key(batch_id: &str, index: usize) -> String {
    format!("batch-jobs/{batch_id}/part-{index:04}.jsonl")
}

/// A direct batch's records, as its run reads them (no job is made of them).
pub fn direct_input_key(batch_id: &str) -> String {
    format!("batch-jobs/{batch_id}/direct.jsonl")
}

/// Where a direct batch's answers are kept, one object a record, until they are merged.
pub fn answers_prefix(batch_id: &str) -> String {
    format!("batch-direct/{batch_id}/")
}

/// The answer to the record at `position` (from 0) of a direct batch: its checkpoint.
pub fn answer_key(batch_id: &str, position: usize) -> String {
    format!("batch-direct/{batch_id}/{position:05}.json")
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

pub(crate) fn jsonl(records: &[BatchRecord]) -> Vec<u8> {
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
