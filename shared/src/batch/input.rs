//! A batch's records into job inputs: from the API's records or an uploaded JSONL object, read
//! in bounded chunks, split into jobs within Bedrock's per-job limits.

use serde_json::Value;

use domain::batch::{job_sizes, Batch, BatchRecord, RecordCollector};
use domain::error::StoreError;
use domain::ports::{ObjectStore, ObjectVersion};

use super::*;

/// How much of an object [`LineReader`] reads at a time.
pub const READ_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// Reads an object's lines a chunk at a time: memory holds one chunk and one line, whatever
/// the object's size. With [`LineReader::with_max_line`], a longer line is handed out cut to
/// one byte over the limit (so its reader sees it is too long) and the rest of it skipped.
pub struct LineReader<'a, S> {
    store: &'a S,
    key: &'a str,
    size: u64,
    offset: u64,
    carry: Vec<u8>,
    line: usize,
    max_line: usize,
    /// Inside an over-long line already handed out: drop bytes up to its end.
    skipping: bool,
    /// The version read, when one is pinned.
    version: Option<&'a ObjectVersion>,
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
            max_line: usize::MAX - 1,
            skipping: false,
            version: None,
        }
    }

    /// Reads `version` of the object (when given) whatever is written over it meanwhile.
    pub fn at_version(mut self, version: Option<&'a ObjectVersion>) -> Self {
        self.version = version;
        self
    }

    /// Holds no line longer than `max_line` bytes (plus one).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line.min(usize::MAX - 1);
        self
    }

    /// The complete lines of the next chunk, numbered from 1; `None` at the end.
    pub async fn next_lines(&mut self) -> Result<Option<Vec<(usize, Vec<u8>)>>, StoreError> {
        if self.offset >= self.size && self.carry.is_empty() {
            return Ok(None);
        }
        if self.offset < self.size {
            let end = self.offset.saturating_add(READ_CHUNK_BYTES).min(self.size);
            let bytes = match self.version {
                Some(version) => {
                    self.store
                        .get_range_at(self.key, version, self.offset, end)
                        .await?
                }
                None => self.store.get_range(self.key, self.offset, end).await?,
            };
            // A shorter answer (the object changed) still moves on: the read always ends.
            self.offset = end;
            self.carry.extend_from_slice(&bytes);
        }
        let mut lines = Vec::new();
        if self.skipping {
            match self.carry.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    self.carry.drain(..=at);
                    self.skipping = false;
                }
                None => {
                    self.carry.clear();
                    return Ok(Some(lines));
                }
            }
        }
        let mut start = 0;
        while let Some(at) = self.carry[start..].iter().position(|b| *b == b'\n') {
            self.line += 1;
            let end = start + at.min(self.max_line + 1);
            lines.push((self.line, self.carry[start..end].to_vec()));
            start += at + 1;
        }
        self.carry.drain(..start);
        if self.carry.len() > self.max_line {
            // A line longer than the limit with its end not yet read: hand out its head, skip
            // the rest as it comes.
            self.line += 1;
            self.carry.truncate(self.max_line + 1);
            lines.push((self.line, std::mem::take(&mut self.carry)));
            self.skipping = true;
        } else if self.offset >= self.size && !self.carry.is_empty() {
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
    version: Option<&ObjectVersion>,
    size: u64,
    count: usize,
    max_records: usize,
) -> Result<(), BatchError> {
    let sizes = job_sizes(count, max_records);
    let mut collector = RecordCollector::default();
    let mut part = Vec::new();
    let mut in_part = 0;
    let mut reader = LineReader::new(store, key, size).at_version(version);
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
