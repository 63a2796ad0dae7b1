//! Batch inference's ports: the bucket ([`Bucket`]), the registry ([`Registry`]), Bedrock's
//! batch API ([`Jobs`], [`Completed`]), EventBridge ([`Bus`]) and the work queue ([`Queue`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::batch::Batch;
use domain::error::{EventError, JobError, QueueError, RegistryError, StoreError};
use domain::ports::{
    BatchJobs, BatchQueue, BatchRegistry, EventPublisher, JobRequest, JobState, ObjectInfo,
    ObjectStore, ObjectVersion, Upload, UploadedPart, MAX_PARTS, MIN_PART_BYTES,
};
use serde_json::{json, Value};

use crate::events::sqs_messages;

/// The bucket's name in [`Bucket::uri`]s.
pub const BUCKET: &str = "batch-bucket";

/// One object: its bytes and user metadata.
type Object = (Vec<u8>, HashMap<String, String>);

/// A multipart upload under way: its key and the parts written, by number.
type Open = (String, BTreeMap<u32, Vec<u8>>);

/// A completed multipart upload: its key and its parts' sizes, in order.
type Assembled = (String, Vec<usize>);

/// The batch bucket (S3) in memory, keys in order; clones share their objects.
///
/// Records every object put ([`object`](Self::object), [`keys`](Self::keys));
/// [`put_with_metadata`](Self::put_with_metadata) stores an upload with its user metadata
/// (`x-amz-meta-*`, names without the prefix) as S3 would. URIs are `s3://batch-bucket/{key}`,
/// presigned URLs `https://batch-bucket/{key}?X-Amz-Signature=x`.
///
/// Versioned as the stack's bucket is: every put is a version ([`version_of`](Self::version_of)
/// gives the object's current version id and ETag), each kept readable by its id; an ETag reads
/// only while it is the object's.
///
/// Multipart uploads follow S3's rules: parts numbered 1 to [`MAX_PARTS`], completion with
/// every part's ETag in ascending order, every part but the last at least [`MIN_PART_BYTES`]
/// (else `EntityTooSmall`); nothing is readable at the key before completion. It records the
/// uploads still open ([`open_uploads`](Self::open_uploads)), the part sizes of each completed
/// one ([`completed_parts`](Self::completed_parts)) and the largest answer to one read
/// ([`largest_read`](Self::largest_read)).
///
/// To make it fail: [`fail`](Self::fail) fails every later call with a [`StoreError`] of that
/// message (until [`recover`](Self::recover)); [`fail_under`](Self::fail_under) only the calls
/// on keys under a prefix; [`fail_parts_from`](Self::fail_parts_from) only the parts from a
/// number on.
#[derive(Default, Clone)]
pub struct Bucket {
    objects: Arc<Mutex<BTreeMap<String, Object>>>,
    /// Every version ever put: (key, version id) → object.
    versions: Arc<Mutex<HashMap<(String, String), Object>>>,
    /// The current (version id, ETag) of each key.
    current: Arc<Mutex<HashMap<String, (String, String)>>>,
    failure: Arc<Mutex<Option<String>>>,
    uploads: Arc<Mutex<BTreeMap<String, Open>>>,
    next_upload: Arc<Mutex<u64>>,
    completed: Arc<Mutex<Vec<Assembled>>>,
    part_failure: Arc<Mutex<Option<(u32, String)>>>,
    prefix_failure: Arc<Mutex<Option<(String, String)>>>,
    largest_read: Arc<Mutex<usize>>,
}

impl Bucket {
    /// Every later `upload_part` of part `number` or a later one fails with
    /// `StoreError(message)`; every other call still succeeds.
    pub fn fail_parts_from(&self, number: u32, message: &str) {
        *self.part_failure.lock().unwrap() = Some((number, message.to_owned()));
    }

    /// The keys of the multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> Vec<String> {
        self.uploads
            .lock()
            .unwrap()
            .values()
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The sizes of the parts of the last upload completed at `key`, in order; `None` when
    /// none was (a `put` is not an upload).
    pub fn completed_parts(&self, key: &str) -> Option<Vec<usize>> {
        self.completed
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, sizes)| sizes.clone())
    }

    /// The most bytes one `get` or `get_range` answered.
    pub fn largest_read(&self) -> usize {
        *self.largest_read.lock().unwrap()
    }

    fn read(&self, bytes: Vec<u8>) -> Vec<u8> {
        let mut largest = self.largest_read.lock().unwrap();
        *largest = (*largest).max(bytes.len());
        bytes
    }

    /// Every later call fails with `StoreError(message)`.
    pub fn fail(&self, message: &str) {
        *self.failure.lock().unwrap() = Some(message.to_owned());
    }

    /// Calls succeed again.
    pub fn recover(&self) {
        *self.failure.lock().unwrap() = None;
        *self.prefix_failure.lock().unwrap() = None;
    }

    fn check(&self) -> Result<(), StoreError> {
        match self.failure.lock().unwrap().as_ref() {
            Some(message) => Err(StoreError(message.clone())),
            None => Ok(()),
        }
    }

    /// Every later call on a key under `prefix` fails with `StoreError(message)`; calls on
    /// other keys still succeed.
    pub fn fail_under(&self, prefix: &str, message: &str) {
        *self.prefix_failure.lock().unwrap() = Some((prefix.to_owned(), message.to_owned()));
    }

    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        self.check()?;
        match self.prefix_failure.lock().unwrap().as_ref() {
            Some((prefix, message)) if key.starts_with(prefix.as_str()) => {
                Err(StoreError(message.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Stores an object with user metadata, as an upload with `--metadata` is.
    pub fn put_with_metadata(
        &self,
        key: &str,
        body: impl Into<Vec<u8>>,
        metadata: &[(&str, &str)],
    ) {
        let metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.store(key, (body.into(), metadata));
    }

    fn store(&self, key: &str, object: Object) {
        let mut versions = self.versions.lock().unwrap();
        let n = versions.len() + 1;
        let (version, etag) = (format!("v{n}"), format!("\"etag-{n}\""));
        versions.insert((key.to_owned(), version.clone()), object.clone());
        self.current
            .lock()
            .unwrap()
            .insert(key.to_owned(), (version, etag));
        self.objects.lock().unwrap().insert(key.to_owned(), object);
    }

    /// The object's current version id and ETag, as its S3 event names them.
    pub fn version_of(&self, key: &str) -> Option<(String, String)> {
        self.current.lock().unwrap().get(key).cloned()
    }

    /// The S3 `ObjectCreated` event of `key`'s current version, as a versioned bucket sends
    /// it: its size, ETag and version id, the key URL-encoded (`+` for a space).
    pub fn created_event(&self, key: &str) -> Value {
        let size = self.object(key).map_or(0, |b| b.len() as u64);
        let (version, etag) = self.version_of(key).unwrap_or_default();
        let mut event =
            crate::events::s3_object_created(BUCKET, &key.replace(' ', "+"), size, &etag);
        event["Records"][0]["s3"]["object"]["versionId"] = Value::String(version);
        event
    }

    /// The object at `version`: `None` when gone or, for an ETag, no longer current.
    fn object_at(&self, key: &str, version: &ObjectVersion) -> Option<Object> {
        match version {
            ObjectVersion::Id(id) => self
                .versions
                .lock()
                .unwrap()
                .get(&(key.to_owned(), id.clone()))
                .cloned(),
            ObjectVersion::ETag(etag) => {
                let current = self.version_of(key)?;
                (&current.1 == etag)
                    .then(|| self.objects.lock().unwrap().get(key).cloned())
                    .flatten()
            }
        }
    }

    /// The object's bytes, whatever [`fail`](Self::fail) says.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, _)| b.clone())
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

impl ObjectStore for Bucket {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.check_key(key)?;
        self.store(key, (body, HashMap::new()));
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_key(key)?;
        Ok(self.object(key).map(|bytes| self.read(bytes)))
    }
    async fn info(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.check_key(key)?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, metadata)| ObjectInfo {
                size: b.len() as u64,
                metadata: metadata.clone(),
            }))
    }
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        self.check_key(key)?;
        let bytes = self.object(key).unwrap_or_default();
        let end = (end as usize).min(bytes.len());
        Ok(self.read(bytes[(start as usize).min(end)..end].to_vec()))
    }
    async fn info_at(
        &self,
        key: &str,
        version: &ObjectVersion,
    ) -> Result<Option<ObjectInfo>, StoreError> {
        self.check_key(key)?;
        Ok(self
            .object_at(key, version)
            .map(|(b, metadata)| ObjectInfo {
                size: b.len() as u64,
                metadata,
            }))
    }
    async fn get_range_at(
        &self,
        key: &str,
        version: &ObjectVersion,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.check_key(key)?;
        let (bytes, _) = self.object_at(key, version).ok_or_else(|| {
            StoreError(format!("PreconditionFailed: {key} is not at {version:?}"))
        })?;
        let end = (end as usize).min(bytes.len());
        Ok(bytes[(start as usize).min(end)..end].to_vec())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.check_key(prefix)?;
        Ok(self
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect())
    }
    async fn create_upload(&self, key: &str) -> Result<Upload, StoreError> {
        self.check_key(key)?;
        let mut next = self.next_upload.lock().unwrap();
        *next += 1;
        let id = format!("upload-{next}");
        self.uploads
            .lock()
            .unwrap()
            .insert(id.clone(), (key.to_owned(), BTreeMap::new()));
        Ok(Upload {
            key: key.to_owned(),
            id,
        })
    }
    async fn upload_part(
        &self,
        upload: &Upload,
        number: u32,
        body: Vec<u8>,
    ) -> Result<UploadedPart, StoreError> {
        self.check()?;
        if let Some((from, message)) = self.part_failure.lock().unwrap().as_ref() {
            if number >= *from {
                return Err(StoreError(message.clone()));
            }
        }
        if !(1..=MAX_PARTS).contains(&number) {
            return Err(StoreError(format!("InvalidArgument: part {number}")));
        }
        let mut uploads = self.uploads.lock().unwrap();
        let Some((_, parts)) = uploads.get_mut(&upload.id) else {
            return Err(StoreError(format!("NoSuchUpload: {}", upload.id)));
        };
        let etag = part_etag(number, &body);
        parts.insert(number, body);
        Ok(UploadedPart { number, etag })
    }
    async fn complete_upload(
        &self,
        upload: &Upload,
        parts: &[UploadedPart],
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut uploads = self.uploads.lock().unwrap();
        let Some((key, written)) = uploads.get(&upload.id) else {
            return Err(StoreError(format!("NoSuchUpload: {}", upload.id)));
        };
        if parts.is_empty() || parts.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(StoreError("InvalidPartOrder".into()));
        }
        let mut body = Vec::new();
        let mut sizes = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let Some(bytes) = written
                .get(&part.number)
                .filter(|b| part_etag(part.number, b) == part.etag)
            else {
                return Err(StoreError(format!("InvalidPart: {}", part.number)));
            };
            if i + 1 < parts.len() && bytes.len() < MIN_PART_BYTES {
                return Err(StoreError(format!("EntityTooSmall: part {}", part.number)));
            }
            body.extend_from_slice(bytes);
            sizes.push(bytes.len());
        }
        let key = key.clone();
        uploads.remove(&upload.id);
        drop(uploads);
        self.store(&key, (body, HashMap::new()));
        self.completed.lock().unwrap().push((key, sizes));
        Ok(())
    }
    async fn abort_upload(&self, upload: &Upload) -> Result<(), StoreError> {
        self.check()?;
        self.uploads.lock().unwrap().remove(&upload.id);
        Ok(())
    }
    fn uri(&self, key: &str) -> String {
        format!("s3://{BUCKET}/{key}")
    }
    async fn presign_get(&self, key: &str, _: Duration) -> Result<String, StoreError> {
        self.check_key(key)?;
        Ok(format!("https://{BUCKET}/{key}?X-Amz-Signature=x"))
    }
}

/// A part's ETag in [`Bucket`]: its number and size, quoted as S3 quotes its tags.
fn part_etag(number: u32, body: &[u8]) -> String {
    format!("\"{number}-{}\"", body.len())
}

/// The batch registry (DynamoDB) in memory, with its conditions: `create` only when the id is
/// free, `update` only over the version it replaces. Clones share their batches.
///
/// Keeps batches in the order they were stored: `recent` pages through them in that order
/// (its token is the index of the next), `unfinished` answers the open ones
/// ([`Batch::is_open`]), as the DynamoDB registry's scan does. Records every successful
/// `update` ([`writes`](Self::writes)); [`insert`](Self::insert) stores a batch as it is, with
/// no condition and no write recorded. To make it fail: [`fail`](Self::fail) fails every later
/// call with that error; a stale `update` fails with [`RegistryError::Conflict`] by itself.
#[derive(Default, Clone)]
pub struct Registry {
    batches: Arc<Mutex<Vec<Batch>>>,
    writes: Arc<Mutex<Vec<Batch>>>,
    failure: Arc<Mutex<Option<RegistryError>>>,
}

impl Registry {
    /// Stores (or replaces) a batch as it is: a test's starting state.
    pub fn insert(&self, batch: Batch) {
        let mut batches = self.batches.lock().unwrap();
        match batches.iter_mut().find(|b| b.batch_id == batch.batch_id) {
            Some(stored) => *stored = batch,
            None => batches.push(batch),
        }
    }

    /// The stored batch; panics when there is none.
    pub fn stored(&self, batch_id: &str) -> Batch {
        self.find(batch_id)
            .unwrap_or_else(|| panic!("no batch {batch_id} in the registry"))
    }

    /// The stored batch, if any.
    pub fn find(&self, batch_id: &str) -> Option<Batch> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .find(|b| b.batch_id == batch_id)
            .cloned()
    }

    /// Every stored batch, in the order stored.
    pub fn all(&self) -> Vec<Batch> {
        self.batches.lock().unwrap().clone()
    }

    /// Every successful `update`, in order.
    pub fn writes(&self) -> Vec<Batch> {
        self.writes.lock().unwrap().clone()
    }

    /// Every later call fails with `error`.
    pub fn fail(&self, error: RegistryError) {
        *self.failure.lock().unwrap() = Some(error);
    }

    fn check(&self) -> Result<(), RegistryError> {
        match self.failure.lock().unwrap().as_ref() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

impl BatchRegistry for Registry {
    async fn create(&self, batch: &Batch) -> Result<bool, RegistryError> {
        self.check()?;
        let mut batches = self.batches.lock().unwrap();
        if batches.iter().any(|b| b.batch_id == batch.batch_id) {
            return Ok(false);
        }
        batches.push(batch.clone());
        Ok(true)
    }
    async fn get(&self, batch_id: &str) -> Result<Option<Batch>, RegistryError> {
        self.check()?;
        Ok(self.find(batch_id))
    }
    async fn update(&self, batch: &Batch) -> Result<(), RegistryError> {
        self.check()?;
        let mut batches = self.batches.lock().unwrap();
        let Some(stored) = batches
            .iter_mut()
            .find(|b| b.batch_id == batch.batch_id && b.version + 1 == batch.version)
        else {
            return Err(RegistryError::Conflict);
        };
        *stored = batch.clone();
        self.writes.lock().unwrap().push(batch.clone());
        Ok(())
    }
    /// As the DynamoDB registry's scan: not ended, or ended and not yet announced.
    async fn unfinished(&self) -> Result<Vec<Batch>, RegistryError> {
        self.check()?;
        let batches = self.batches.lock().unwrap();
        Ok(batches.iter().filter(|b| b.is_open()).cloned().collect())
    }
    async fn recent(
        &self,
        owner: &str,
        limit: usize,
        token: Option<&str>,
    ) -> Result<(Vec<Batch>, Option<String>), RegistryError> {
        self.page(Some(owner), limit, token)
    }
    async fn every(
        &self,
        limit: usize,
        token: Option<&str>,
    ) -> Result<(Vec<Batch>, Option<String>), RegistryError> {
        self.page(None, limit, token)
    }
}

impl Registry {
    fn page(
        &self,
        owner: Option<&str>,
        limit: usize,
        token: Option<&str>,
    ) -> Result<(Vec<Batch>, Option<String>), RegistryError> {
        self.check()?;
        let all: Vec<Batch> = self
            .all()
            .into_iter()
            .filter(|b| owner.is_none_or(|owner| b.owner == owner))
            .collect();
        let start: usize = token.map_or(0, |t| t.parse().unwrap());
        let end = (start + limit).min(all.len());
        Ok((
            all[start.min(end)..end].to_vec(),
            (end < all.len()).then(|| end.to_string()),
        ))
    }
}

/// The ARN [`Jobs`] gives the job named `name`.
pub fn job_arn(name: &str) -> String {
    format!("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{name}")
}

/// Bedrock's batch API in memory: every job is created (its ARN is [`job_arn`] of its name)
/// and then reports the [`JobState`] given to [`reporting`](Self::reporting) (`InProgress` by
/// default). Clones share their records.
///
/// Records every `create` request ([`created`](Self::created)) and every `stop`
/// ([`stopped`](Self::stopped)). To make it fail: [`fail`](Self::fail) fails every later
/// `create` with that error (`JobError::QuotaExceeded` leaves the job queued, `Refused` fails
/// it).
#[derive(Clone)]
pub struct Jobs {
    created: Arc<Mutex<Vec<JobRequest>>>,
    stopped: Arc<Mutex<Vec<String>>>,
    state: Arc<Mutex<JobState>>,
    failure: Arc<Mutex<Option<JobError>>>,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            created: Arc::default(),
            stopped: Arc::default(),
            state: Arc::new(Mutex::new(JobState {
                status: "InProgress".into(),
                ..JobState::default()
            })),
            failure: Arc::default(),
        }
    }
}

impl Jobs {
    /// Every job reports `state` from now on.
    pub fn reporting(&self, state: JobState) {
        *self.state.lock().unwrap() = state;
    }

    /// Every later `create` fails with `error`.
    pub fn fail(&self, error: JobError) {
        *self.failure.lock().unwrap() = Some(error);
    }

    /// The jobs created, in order.
    pub fn created(&self) -> Vec<JobRequest> {
        self.created.lock().unwrap().clone()
    }

    /// The ARNs stopped, in order.
    pub fn stopped(&self) -> Vec<String> {
        self.stopped.lock().unwrap().clone()
    }
}

impl BatchJobs for Jobs {
    async fn create(&self, request: &JobRequest) -> Result<String, JobError> {
        if let Some(error) = self.failure.lock().unwrap().clone() {
            return Err(error);
        }
        self.created.lock().unwrap().push(request.clone());
        Ok(job_arn(&request.name))
    }
    async fn get(&self, _: &str) -> Result<JobState, JobError> {
        Ok(self.state.lock().unwrap().clone())
    }
    async fn stop(&self, arn: &str) -> Result<(), JobError> {
        self.stopped.lock().unwrap().push(arn.to_owned());
        Ok(())
    }
}

/// Bedrock's batch API when every job has completed: `get` answers `Completed` with 3 records
/// processed, all succeeded; `stop` succeeds. Records nothing. `create` always fails
/// (`JobError::Failed`, which leaves a job queued): no job is created here.
pub struct Completed;

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

/// EventBridge, announcing batch ends. Every call checks (asserts) that the batch's end is
/// already written in `registry`: final status and results key.
///
/// Records every call ([`calls`](Self::calls)) and what it published
/// ([`published`](Self::published): batchId, status, resultsKey). To make it fail:
/// [`failing`](Self::failing) refuses the first `failures` calls as the SDK's dispatch failure
/// does ([`EventError::Call`]), then publishes.
pub struct Bus {
    registry: Registry,
    failures: Mutex<usize>,
    calls: Mutex<usize>,
    published: Mutex<Vec<Value>>,
}

impl Bus {
    /// Refuses the first `failures` calls; `0` for one that always publishes.
    pub fn failing(registry: &Registry, failures: usize) -> Self {
        Self {
            registry: registry.clone(),
            failures: Mutex::new(failures),
            calls: Mutex::new(0),
            published: Mutex::new(Vec::new()),
        }
    }

    /// How many times it was called, failed calls included.
    pub fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }

    /// What it published, in order.
    pub fn published(&self) -> Vec<Value> {
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

/// The queue the schedule fans batches out to (SQS), in memory; clones share their messages.
///
/// Records the batch ids sent ([`sent`](Self::sent)); [`receive`](Self::receive) hands the
/// messages waiting over as the SQS event Lambda would be invoked with (message ids
/// `m-{batch id}`, bodies as `SqsBatchQueue` writes them). To make it fail:
/// [`refusing`](Self::refusing) refuses those batch ids, as `SendMessageBatch` reports a failed
/// entry; [`unreachable`](Self::unreachable) fails every call.
#[derive(Default, Clone)]
pub struct Queue {
    sent: Arc<Mutex<Vec<String>>>,
    waiting: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<BTreeSet<String>>>,
    unreachable: Arc<Mutex<bool>>,
}

impl Queue {
    /// Refuses the messages of these batches; takes every other.
    pub fn refusing(batch_ids: &[&str]) -> Self {
        let queue = Self::default();
        queue
            .refused
            .lock()
            .unwrap()
            .extend(batch_ids.iter().map(|id| (*id).to_owned()));
        queue
    }

    /// Every later call fails, as when SQS cannot be reached.
    pub fn unreachable(&self) {
        *self.unreachable.lock().unwrap() = true;
    }

    /// The batch ids sent, in order.
    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }

    /// The messages waiting, as one SQS event; the queue is empty after.
    pub fn receive(&self) -> Value {
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap());
        let messages: Vec<(String, String)> = waiting
            .iter()
            .map(|id| (format!("m-{id}"), json!({ "batchId": id }).to_string()))
            .collect();
        let pairs: Vec<(&str, &str)> = messages
            .iter()
            .map(|(id, body)| (id.as_str(), body.as_str()))
            .collect();
        sqs_messages(&pairs)
    }
}

impl BatchQueue for Queue {
    async fn enqueue(&self, batch_ids: &[String]) -> Result<Vec<String>, QueueError> {
        if *self.unreachable.lock().unwrap() {
            return Err(QueueError("dispatch failure".into()));
        }
        let refused = self.refused.lock().unwrap();
        let (taken, refused): (Vec<String>, Vec<String>) = batch_ids
            .iter()
            .cloned()
            .partition(|id| !refused.contains(id));
        self.sent.lock().unwrap().extend(taken.iter().cloned());
        self.waiting.lock().unwrap().extend(taken);
        Ok(refused)
    }
}
