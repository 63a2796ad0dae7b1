//! Merging the jobs' output into one `results.jsonl` in input order, by record id, in memory
//! that does not grow with the batch.
//!
//! One job at a time, reading every object a range at a time ([`MERGE_READ_BYTES`]):
//!
//! 1. The job's input gives each record its position, found by its id, and the length of the
//!    line it would have as `NotProcessed` (what the merge keeps: 12 bytes a record).
//! 2. The job's output files (Bedrock writes them in no particular order) give each answered
//!    record the length of its line in `results.jsonl`.
//! 3. The lengths cut the job's records into windows that fill the part being written
//!    ([`ObjectWriter`]): for each window the output files are read again and each answer is
//!    written at its record's offset in the part itself, the input's next records supply the
//!    ids of those never answered. A full part is sent (a multipart upload); the next window
//!    starts.
//!
//! Memory: one part of [`MIN_PART_BYTES`](domain::ports::MIN_PART_BYTES), a read range or two, and one job's positions
//! (a job holds at most `BATCH_MAX_RECORDS` records); the output files are read once more per
//! part the job's results fill.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Deserialize;
use serde_json::Value;

use domain::batch::{Batch, BatchSummary, JobEntry, ResultLine};
use domain::conversation::Usage;
use domain::error::StoreError;
use domain::ports::ObjectStore;

use super::*;

/// How much of an object the merge reads at a time.
pub const MERGE_READ_BYTES: u64 = 1024 * 1024;

#[cfg(test)]
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = Value> + '_ {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice(l).ok())
}

/// Joins each job's output to its input by `recordId` and writes one `results.jsonl`, every
/// input record once, in input order; a record without output is an error line
/// (`NotProcessed`). Written as a multipart upload, part by part: a merge that fails leaves
/// no `results.jsonl` (and no parts) behind.
pub async fn merge_results<S: ObjectStore>(
    store: &S,
    batch: &Batch,
    settings: &BatchSettings,
) -> Result<(String, BatchSummary), BatchError> {
    let key = results_key(&batch.batch_id);
    let mut writer = ObjectWriter::new(store, key.clone());
    let mut summary = BatchSummary::default();
    for job in &batch.jobs {
        let merged = merge_job(store, batch, job, settings, &mut writer, &mut summary).await;
        if let Err(error) = merged {
            writer.abort().await;
            return Err(error);
        }
    }
    writer.finish().await?;
    Ok((key, summary))
}

async fn merge_job<S: ObjectStore>(
    store: &S,
    batch: &Batch,
    job: &JobEntry,
    settings: &BatchSettings,
    writer: &mut ObjectWriter<'_, S>,
    summary: &mut BatchSummary,
) -> Result<(), BatchError> {
    let why = job.message.clone().unwrap_or_else(|| {
        format!(
            "the job ended {} before this record was answered",
            job.status
        )
    });
    let input = Object::at(store, &job.input_key).await?;
    let mut outputs = Vec::new();
    if let Some(job_id) = job.job_id() {
        let prefix = format!("{}{job_id}/", output_prefix(&batch.batch_id));
        for key in store.list(&prefix).await? {
            if key.ends_with(".jsonl.out") {
                outputs.push(Object::at(store, &key).await?);
            }
        }
    }
    let expected = usize::try_from(job.record_count).unwrap_or(0);
    let mut index = match JobIndex::of_input(store, &input, expected, &why, false).await? {
        Some(index) => index,
        None => JobIndex::of_input(store, &input, expected, &why, true)
            .await?
            .ok_or_else(|| StoreError(format!("{}: cannot index its ids", input.key)))?,
    };
    for output in &outputs {
        index.answers_in(store, output).await?;
    }
    let mut records = Lines::new(store, &input);
    let mut start = 0;
    while start < index.slots.len() {
        let window = index.window(start, writer.room());
        let mut side = vec![0u8; window.straddler_len];
        let mut outcomes = vec![None; window.end - start];
        {
            let part = writer.append_zeroed(window.fitted_bytes);
            let mut fill = Fill {
                index: &index,
                window: &window,
                offsets: index.offsets(&window),
                part,
                side: &mut side,
                outcomes: &mut outcomes,
            };
            for output in &outputs {
                fill.answers_from(store, output).await?;
            }
            fill.not_processed_from(&mut records, &input.key, &why)
                .await?;
        }
        for outcome in outcomes.into_iter().flatten() {
            add_outcome(summary, outcome, &batch.model_id, settings, batch.direct);
        }
        writer.flush().await?;
        writer.write(&side).await?;
        start = window.end;
    }
    Ok(())
}

/// An object to read and its size (0 when there is none).
struct Object {
    key: String,
    size: u64,
}

impl Object {
    async fn at<S: ObjectStore>(store: &S, key: &str) -> Result<Self, StoreError> {
        let size = store.info(key).await?.map_or(0, |info| info.size);
        Ok(Self {
            key: key.to_owned(),
            size,
        })
    }
}

/// An object's lines, read [`MERGE_READ_BYTES`] at a time: memory holds one range and the
/// line that crosses its end.
struct Lines<'a, S> {
    store: &'a S,
    key: &'a str,
    size: u64,
    offset: u64,
    buffer: Vec<u8>,
    at: usize,
}

impl<'a, S: ObjectStore> Lines<'a, S> {
    fn new(store: &'a S, object: &'a Object) -> Self {
        Self {
            store,
            key: &object.key,
            size: object.size,
            offset: 0,
            buffer: Vec::new(),
            at: 0,
        }
    }

    /// The next line (without its newline), blank ones included; `None` at the end.
    async fn next(&mut self) -> Result<Option<&[u8]>, StoreError> {
        loop {
            if let Some(len) = self.buffer[self.at..].iter().position(|b| *b == b'\n') {
                let start = self.at;
                self.at += len + 1;
                return Ok(Some(&self.buffer[start..start + len]));
            }
            if self.offset >= self.size {
                if self.at < self.buffer.len() {
                    let start = self.at;
                    self.at = self.buffer.len();
                    return Ok(Some(&self.buffer[start..]));
                }
                return Ok(None);
            }
            let end = self.offset.saturating_add(MERGE_READ_BYTES).min(self.size);
            let bytes = self.store.get_range(self.key, self.offset, end).await?;
            // A shorter answer (the object changed) still moves on: the read always ends.
            self.offset = end;
            let carry = &self.buffer[self.at..];
            self.buffer = if carry.is_empty() {
                bytes
            } else {
                // Sized once: the line that crossed the range's end, then the range.
                let mut joined = Vec::with_capacity(carry.len() + bytes.len());
                joined.extend_from_slice(carry);
                joined.extend_from_slice(&bytes);
                joined
            };
            self.at = 0;
        }
    }
}

/// A line's `recordId` alone, read without building the rest of the line.
#[derive(Deserialize)]
struct RecordId<'a> {
    #[serde(rename = "recordId", borrow)]
    record_id: Cow<'a, str>,
}

fn record_id(line: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<RecordId>(line)
        .ok()
        .map(|r| r.record_id)
}

/// An output line as the result it becomes, with its line in `results.jsonl`.
fn answer(line: &[u8]) -> Option<(ResultLine, Vec<u8>)> {
    let value = serde_json::from_slice::<Value>(line).ok()?;
    let result = ResultLine::from_output_line(&value)?;
    let bytes = line_of(&result);
    Some((result, bytes))
}

fn line_of(result: &ResultLine) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(result).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn not_processed(id: &str, why: &str) -> Vec<u8> {
    line_of(&ResultLine::failed(
        id.to_owned(),
        "NotProcessed",
        why.to_owned(),
    ))
}

/// What the summary counts of one record.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Failed,
    Answered(Option<Usage>),
}

impl Outcome {
    fn of(result: &ResultLine) -> Self {
        if result.error.is_some() {
            Self::Failed
        } else {
            Self::Answered(result.usage)
        }
    }
}

/// Bits of a packed id entry that hold the record's position; the others, the top of the id's
/// hash.
const POSITION_BITS: u32 = 24;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;

/// Record positions by id. Compact while it can be: one `u64` a record, the top 40 bits of the
/// id's hash above its position, sorted. The ids themselves when two ids share those bits, an
/// id comes twice, or the job holds more records than 24 bits number.
enum Ids {
    Packed(Vec<u64>),
    Exact(HashMap<Box<str>, u32>),
}

fn hash_bits(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish() & !POSITION_MASK
}

impl Ids {
    fn position(&self, id: &str) -> Option<usize> {
        match self {
            Self::Packed(entries) => {
                let bits = hash_bits(id);
                let at = entries.partition_point(|e| e & !POSITION_MASK < bits);
                let entry = entries.get(at).filter(|e| *e & !POSITION_MASK == bits)?;
                Some((entry & POSITION_MASK) as usize)
            }
            Self::Exact(ids) => ids.get(id).map(|p| *p as usize),
        }
    }
}

/// One record's line in `results.jsonl`: its length, and (top bit) whether an output answered
/// it; else its line is `NotProcessed`.
#[derive(Debug, Clone, Copy)]
struct Slot(u32);

const ANSWERED: u32 = 1 << 31;

impl Slot {
    fn new(bytes: &[u8], answered: bool, key: &str) -> Result<Self, StoreError> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|len| *len < ANSWERED)
            .ok_or_else(|| StoreError(format!("{key}: a line over 2 GiB")))?;
        Ok(Self(if answered { len | ANSWERED } else { len }))
    }

    fn len(self) -> usize {
        (self.0 & !ANSWERED) as usize
    }

    fn answered(self) -> bool {
        self.0 & ANSWERED != 0
    }
}

/// What the merge keeps of one job: the records' positions by id and their slots.
struct JobIndex {
    ids: Ids,
    slots: Vec<Slot>,
}

/// Records `start..end` of a job: those up to `fitted` fill `fitted_bytes` of the part; the
/// one after them, if any (`straddler_len` bytes), crosses the part's end.
struct Window {
    start: usize,
    fitted: usize,
    fitted_bytes: usize,
    straddler_len: usize,
    end: usize,
}

impl JobIndex {
    /// Every record of the job's input with a `recordId`, in order (`expected` of them, as
    /// the job was written). `None` when the compact index cannot tell the ids apart: read
    /// again with `exact`.
    async fn of_input<S: ObjectStore>(
        store: &S,
        input: &Object,
        expected: usize,
        why: &str,
        exact: bool,
    ) -> Result<Option<Self>, StoreError> {
        let packed = !exact && expected <= POSITION_MASK as usize;
        let mut entries = Vec::with_capacity(if packed { expected } else { 0 });
        let mut ids = HashMap::new();
        let mut slots = Vec::with_capacity(expected);
        let mut lines = Lines::new(store, input);
        while let Some(line) = lines.next().await? {
            let Some(id) = record_id(line) else {
                continue;
            };
            let position = slots.len();
            if packed {
                if position as u64 > POSITION_MASK {
                    return Ok(None);
                }
                entries.push(hash_bits(&id) | position as u64);
            } else {
                // A repeated id keeps its first position (which its answer fills); the later
                // one is NotProcessed.
                let position = u32::try_from(position)
                    .map_err(|_| StoreError(format!("{}: too many records", input.key)))?;
                ids.entry(Box::from(id.as_ref())).or_insert(position);
            }
            slots.push(Slot::new(&not_processed(&id, why), false, &input.key)?);
        }
        let ids = if packed {
            entries.sort_unstable();
            let clash = entries
                .windows(2)
                .any(|w| w[0] & !POSITION_MASK == w[1] & !POSITION_MASK);
            if clash {
                return Ok(None);
            }
            Ids::Packed(entries)
        } else {
            Ids::Exact(ids)
        };
        Ok(Some(Self { ids, slots }))
    }

    /// Marks the records an output file answers, with the length of their line; a record
    /// answered twice keeps the last answer, as the fill does.
    async fn answers_in<S: ObjectStore>(
        &mut self,
        store: &S,
        output: &Object,
    ) -> Result<(), StoreError> {
        let mut lines = Lines::new(store, output);
        while let Some(line) = lines.next().await? {
            let Some((result, bytes)) = answer(line) else {
                continue;
            };
            if let Some(p) = self.ids.position(&result.record_id) {
                self.slots[p] = Slot::new(&bytes, true, &output.key)?;
            }
        }
        Ok(())
    }

    /// Where each fitted record of the window starts in the part.
    fn offsets(&self, window: &Window) -> Vec<u32> {
        let mut offset = 0u32;
        self.slots[window.start..window.fitted]
            .iter()
            .map(|slot| {
                let at = offset;
                offset = offset.saturating_add(slot.len() as u32);
                at
            })
            .collect()
    }

    /// The records from `start` whose lines fit in `room` bytes, and the next one.
    fn window(&self, start: usize, room: usize) -> Window {
        let mut fitted = start;
        let mut fitted_bytes = 0;
        while let Some(slot) = self.slots.get(fitted) {
            let len = slot.len();
            if fitted_bytes + len > room {
                break;
            }
            fitted_bytes += len;
            fitted += 1;
        }
        let straddler_len = self.slots.get(fitted).map_or(0, |s| s.len());
        Window {
            start,
            fitted,
            fitted_bytes,
            straddler_len,
            end: (fitted + 1).min(self.slots.len()),
        }
    }
}

/// One window being written: the fitted records in place in the part, the straddler apart.
struct Fill<'a> {
    index: &'a JobIndex,
    window: &'a Window,
    offsets: Vec<u32>,
    part: &'a mut [u8],
    side: &'a mut Vec<u8>,
    outcomes: &'a mut Vec<Option<Outcome>>,
}

impl Fill<'_> {
    /// Writes the line of record `position` (of the window) where it belongs.
    fn put(&mut self, position: usize, bytes: &[u8], outcome: Outcome) {
        let window = self.window;
        if position < window.fitted {
            let offset = self.offsets[position - window.start] as usize;
            self.part[offset..offset + bytes.len()].copy_from_slice(bytes);
        } else {
            self.side.copy_from_slice(bytes);
        }
        self.outcomes[position - window.start] = Some(outcome);
    }

    /// The window's answers in one output file.
    async fn answers_from<S: ObjectStore>(
        &mut self,
        store: &S,
        output: &Object,
    ) -> Result<(), StoreError> {
        let mut lines = Lines::new(store, output);
        while let Some(line) = lines.next().await? {
            let Some(position) = record_id(line).and_then(|id| self.index.ids.position(&id)) else {
                continue;
            };
            if !(self.window.start..self.window.end).contains(&position)
                || !self.index.slots[position].answered()
            {
                continue;
            }
            let Some((result, bytes)) = answer(line) else {
                continue;
            };
            // An earlier answer of a record answered twice has its own length: the last one
            // counts, as the index kept it.
            if bytes.len() == self.index.slots[position].len() {
                self.put(position, &bytes, Outcome::of(&result));
            }
        }
        Ok(())
    }

    /// The window's records from the input, in order: those no output answered become
    /// `NotProcessed`; every answered one must have been written.
    async fn not_processed_from<S: ObjectStore>(
        &mut self,
        records: &mut Lines<'_, S>,
        key: &str,
        why: &str,
    ) -> Result<(), StoreError> {
        let changed = || StoreError(format!("{key}: the job's objects changed during the merge"));
        for position in self.window.start..self.window.end {
            let id = loop {
                let line = records.next().await?.ok_or_else(changed)?;
                if let Some(id) = record_id(line) {
                    break id.into_owned();
                }
            };
            let slot = self.index.slots[position];
            if slot.answered() {
                if self.outcomes[position - self.window.start].is_none() {
                    return Err(changed());
                }
                continue;
            }
            let bytes = not_processed(&id, why);
            if bytes.len() != slot.len() {
                return Err(changed());
            }
            self.put(position, &bytes, Outcome::Failed);
        }
        Ok(())
    }
}

fn add_outcome(
    summary: &mut BatchSummary,
    outcome: Outcome,
    model_id: &str,
    settings: &BatchSettings,
    direct: bool,
) {
    summary.total += 1;
    let Outcome::Answered(usage) = outcome else {
        summary.failed += 1;
        return;
    };
    summary.succeeded += 1;
    if let Some(usage) = usage {
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

pub(crate) fn add_to_summary(
    summary: &mut BatchSummary,
    line: &ResultLine,
    model_id: &str,
    settings: &BatchSettings,
    direct: bool,
) {
    add_outcome(summary, Outcome::of(line), model_id, settings, direct);
}
