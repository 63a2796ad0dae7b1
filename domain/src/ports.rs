//! The traits handlers are generic over. Adapters implement them against AWS; tests implement
//! them in memory.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

use chrono::{DateTime, Utc};

use crate::batch::{Batch, BudgetHold};
use crate::cache::{CacheEntry, CacheKey, Lease, StoredRecord};
use crate::capacity::{
    live_plan, Capacity, CapacityCounts, CapacityError, CreateOrder, RoutingTable,
    RoutingTableError,
};
use crate::conversation::{Conversation, ModelAnswer};
use crate::deferred::{DeferredGroup, DeferredRequest};
use crate::error::{
    CacheError, EventError, JobError, LimitError, ModelError, QueueError, RegistryError,
    StoreError, TenancyError,
};
use crate::limits::{TenantLimits, WindowCounts};
use crate::metrics::RequestMetrics;
use crate::reporting::{
    Datum, InventoryError, MetricId, MetricsError, ProvisionedThroughput, Query, ReportState,
    Series, StateError,
};
use crate::routing::{CapacityRouter, Plan, Target};
use crate::stream::StreamEvent;
use crate::tenancy::{BatchBudgetAnswer, Reservation, Reserved, TenantKey};

/// A model's answer as it is produced; an error ends it.
pub type ModelStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ModelError>> + Send>>;

/// A shared store of answers with a time to live, and of the leases that keep identical misses
/// from all calling the model.
pub trait CacheStore: Send + Sync {
    /// The record, live or not: expiry is the caller's decision, made with its clock.
    fn get(
        &self,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Option<StoredRecord>, CacheError>> + Send;

    /// Stores or overwrites the entry (and any lease on the key).
    fn put(
        &self,
        key: &CacheKey,
        entry: &CacheEntry,
    ) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// Claims the key for `lease.owner`, atomically, unless a live answer or another live
    /// lease holds it (`now_ms` decides liveness). `true` when claimed.
    fn try_lease(
        &self,
        key: &CacheKey,
        lease: &Lease,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// Removes the owner's lease; leaves the key alone when the owner no longer holds it.
    fn release(
        &self,
        key: &CacheKey,
        owner: &str,
    ) -> impl Future<Output = Result<(), CacheError>> + Send;
}

/// A model that answers a conversation (Bedrock Converse).
pub trait ModelInvoker: Send + Sync {
    /// Calls `target.invoke_id` (a model id, inference profile or Provisioned Throughput ARN)
    /// within `timeout`, retries included, when one is given.
    fn converse(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<ModelAnswer, ModelError>> + Send;

    /// Starts a streamed answer (Bedrock ConverseStream). `first_event_timeout` bounds the
    /// wait for the model's first event, so an unusable capacity can still spill over.
    fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        first_event_timeout: Option<Duration>,
    ) -> impl Future<Output = Result<ModelStream, ModelError>> + Send;

    /// The input tokens the conversation counts for `target`'s model (Bedrock CountTokens,
    /// free). A model port that cannot count says so with an error; callers then use a bound.
    fn count_tokens(
        &self,
        target: &Target,
        conversation: &Conversation,
    ) -> impl Future<Output = Result<u64, ModelError>> + Send {
        let _ = (target, conversation);
        async {
            Err(ModelError::new(
                crate::error::ModelErrorKind::Unexpected,
                "this model port does not count tokens",
            ))
        }
    }
}

/// The time, injected so that expiry and schedules are tested without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        self.as_ref().now()
    }
}

/// Where per-request metrics go (CloudWatch Embedded Metric Format on stdout in Lambda).
pub trait MetricsSink: Send + Sync {
    fn publish(&self, metrics: &RequestMetrics);
}

/// What [`ObjectStore::info`] tells of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// User metadata (`x-amz-meta-*` on S3), names without the prefix.
    pub metadata: std::collections::HashMap<String, String>,
}

/// One version of an object, as the S3 event of its upload names it: read at it, an object
/// overwritten meanwhile changes nothing of what is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectVersion {
    /// A versioned bucket's version id: that version stays readable after an overwrite.
    Id(String),
    /// An unversioned bucket's ETag: readable only while it is still the object's.
    ETag(String),
}

/// S3's smallest part: every part of a multipart upload but the last holds at least this many
/// bytes.
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

/// S3's most parts in one multipart upload, numbered from 1.
pub const MAX_PARTS: u32 = 10_000;

/// An object being written in parts ([`ObjectStore::create_upload`]): nothing is readable at
/// its key until [`ObjectStore::complete_upload`], and [`ObjectStore::abort_upload`] leaves
/// the key as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: String,
    /// The store's id of the upload (S3's `UploadId`).
    pub id: String,
}

/// A part written, as [`ObjectStore::complete_upload`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// From 1, in the object's order.
    pub number: u32,
    /// The store's tag of the part's bytes (S3's `ETag`).
    pub etag: String,
}

/// The objects of one bucket (the batch bucket on S3).
pub trait ObjectStore: Send + Sync {
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The object's bytes, or `None` when there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// The object's size and user metadata, or `None` when there is no object.
    fn info(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectInfo>, StoreError>> + Send;

    /// Bytes `start..end` of the object (end excluded).
    fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// [`ObjectStore::info`] of one version: `None` when that version is gone, or (an ETag)
    /// is no longer the object's.
    fn info_at(
        &self,
        key: &str,
        version: &ObjectVersion,
    ) -> impl Future<Output = Result<Option<ObjectInfo>, StoreError>> + Send;

    /// [`ObjectStore::get_range`] of one version; an error when that version is no longer
    /// readable.
    fn get_range_at(
        &self,
        key: &str,
        version: &ObjectVersion,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Keys under a prefix, in key order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Starts writing the object at `key` in parts (S3's CreateMultipartUpload).
    fn create_upload(&self, key: &str) -> impl Future<Output = Result<Upload, StoreError>> + Send;

    /// Writes part `number` (1 to [`MAX_PARTS`]) of the upload; every part but the last must
    /// hold at least [`MIN_PART_BYTES`] (S3's UploadPart).
    fn upload_part(
        &self,
        upload: &Upload,
        number: u32,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<UploadedPart, StoreError>> + Send;

    /// Makes the object of the parts, in their order: readable, whole, from then on (S3's
    /// CompleteMultipartUpload).
    fn complete_upload(
        &self,
        upload: &Upload,
        parts: &[UploadedPart],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops the upload and the parts written; the key keeps what it had (S3's
    /// AbortMultipartUpload).
    fn abort_upload(&self, upload: &Upload) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `s3://bucket/key`, as Bedrock is given it.
    fn uri(&self, key: &str) -> String;

    /// A URL that lets its holder download the object until it expires.
    fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
}

/// What a batch job is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub name: String,
    pub model_id: String,
    pub role_arn: String,
    pub input_uri: String,
    pub output_uri: String,
    /// Derived from the input, so a retried submission never makes a second job.
    pub client_request_token: String,
    pub timeout_hours: i32,
}

/// What Bedrock reports of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    pub status: String,
    pub message: Option<String>,
    pub processed: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// Bedrock's batch inference API.
pub trait BatchJobs: Send + Sync {
    /// The job's ARN.
    fn create(&self, request: &JobRequest)
        -> impl Future<Output = Result<String, JobError>> + Send;
    fn get(&self, arn: &str) -> impl Future<Output = Result<JobState, JobError>> + Send;
    fn stop(&self, arn: &str) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Where batches are kept. Writes are conditional on the version read, so concurrent events
/// and polls never replace a newer state with an older one.
pub trait BatchRegistry: Send + Sync {
    /// Stores a new batch; `false` when one with its id exists already.
    fn create(&self, batch: &Batch) -> impl Future<Output = Result<bool, RegistryError>> + Send;
    fn get(
        &self,
        batch_id: &str,
    ) -> impl Future<Output = Result<Option<Batch>, RegistryError>> + Send;
    /// Stores `batch` (whose `version` is one more than the stored one) if the stored version is
    /// still `batch.version - 1`.
    fn update(&self, batch: &Batch) -> impl Future<Output = Result<(), RegistryError>> + Send;
    /// Batches the schedule follows: not yet ended, or ended with their announcement pending
    /// (`Batch::is_open`).
    fn unfinished(&self) -> impl Future<Output = Result<Vec<Batch>, RegistryError>> + Send;

    /// `owner`'s batches ([`Batch::owner`]), newest first: `limit` of them after `page_token`,
    /// and the token of the next page. Another owner's batches are never among them.
    fn recent(
        &self,
        owner: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<Batch>, Option<String>), RegistryError>> + Send;

    /// Every owner's batches, paged as [`BatchRegistry::recent`]: for reports across the
    /// deployment (metrics-publisher), never for answering a caller.
    fn every(
        &self,
        limit: usize,
        page_token: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<Batch>, Option<String>), RegistryError>> + Send;
}

/// Where deferred requests are kept (`domain::deferred`). Every write after the first is
/// conditional on the version read, so two runs of the schedule, or a run and a redelivered
/// event, never both move a request.
pub trait DeferredStore: Send + Sync {
    /// Stores a new request; `false` when one with its id exists already.
    fn create(
        &self,
        request: &DeferredRequest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeferredRequest>, StoreError>> + Send;
    /// Stores `request` (whose `version` is one more than the stored one) if the stored version
    /// is still `request.version - 1`; `false` when another write came first.
    fn update(
        &self,
        request: &DeferredRequest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Every owner's requests not yet final, at most `limit` of them: what the schedule places.
    fn pending(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeferredRequest>, StoreError>> + Send;
    /// Each model's observed batch turnaround, in seconds.
    fn turnarounds(&self)
        -> impl Future<Output = Result<BTreeMap<String, i64>, StoreError>> + Send;
    /// Records a model's observed batch turnaround.
    fn set_turnaround(
        &self,
        model_id: &str,
        seconds: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes the schedule's lease for `holder` until `until` (epoch seconds) unless another
    /// holder's lease is live at `now_epoch`; `false` when it is.
    fn lease(
        &self,
        holder: &str,
        until: i64,
        now_epoch: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives the lease back, if `holder` still holds it.
    fn release(&self, holder: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The requests of `ids` that exist, in any order.
    fn get_many(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<DeferredRequest>, StoreError>> + Send;
    /// Stores a new group; `false` when one with its id exists already.
    fn create_group(
        &self,
        group: &DeferredGroup,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn get_group(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<DeferredGroup>, StoreError>> + Send;
    /// As [`DeferredStore::update`], for a group.
    fn update_group(
        &self,
        group: &DeferredGroup,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// `owner`'s groups, newest first; another owner's are never among them.
    fn groups(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<DeferredGroup>, StoreError>> + Send;
}

/// Where the schedule hands out the batches to advance, one message a batch (SQS), so each is
/// advanced in an invocation of its own: one failing or huge batch never holds back another.
pub trait BatchQueue: Send + Sync {
    /// Queues each id; the ids that could not be queued come back (a later run queues them).
    fn enqueue(
        &self,
        batch_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;
}

/// Where a batch's end is announced, so users can subscribe (EventBridge).
pub trait EventPublisher: Send + Sync {
    /// Publishes that the batch ended (its final status and results are already written).
    fn batch_ended(&self, batch: &Batch) -> impl Future<Output = Result<(), EventError>> + Send;
}

/// CloudWatch's metric data, read back (ListMetrics, GetMetricData).
pub trait MetricsReader: Send + Sync {
    /// The metrics of `namespace` named `name` whose dimension names are exactly
    /// `dimension_names` (any order) and that had data in the last two weeks.
    fn list(
        &self,
        namespace: &str,
        name: &str,
        dimension_names: &[&str],
    ) -> impl Future<Output = Result<Vec<MetricId>, MetricsError>> + Send;

    /// Each query's datapoints in `[start, end)` (epoch seconds), by query id; a query without
    /// data has no entry or an empty series.
    fn query(
        &self,
        queries: &[Query],
        start: i64,
        end: i64,
    ) -> impl Future<Output = Result<std::collections::HashMap<String, Series>, MetricsError>> + Send;
}

/// Where datums are published (PutMetricData); one call is one request, within the API's
/// limits ([`crate::reporting::requests`]), retried on throttling by the adapter.
pub trait MetricsWriter: Send + Sync {
    fn put(
        &self,
        namespace: &str,
        datums: &[Datum],
    ) -> impl Future<Output = Result<(), MetricsError>> + Send;
}

/// Bedrock's Provisioned Throughputs (ListProvisionedModelThroughputs).
pub trait ProvisionedInventory: Send + Sync {
    fn list(
        &self,
    ) -> impl Future<Output = Result<Vec<ProvisionedThroughput>, InventoryError>> + Send;
}

/// Where metrics-publisher keeps its watermark: one item, written conditionally.
pub trait ReportStateStore: Send + Sync {
    /// The stored state; `None` before the first write.
    fn load(&self) -> impl Future<Output = Result<Option<ReportState>, StateError>> + Send;

    /// Stores `state` (whose `version` is one more than the stored one, 1 for the first) if the
    /// stored version is still `state.version - 1`; `false` when another run changed it.
    fn save(&self, state: &ReportState) -> impl Future<Output = Result<bool, StateError>> + Send;
}

/// Where tenant keys are kept (their hashes, never the keys).
pub trait TenantKeyStore: Send + Sync {
    fn get(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<TenantKey>, TenancyError>> + Send;

    /// Stores a new key; [`TenancyError::KeyExists`] if its id is taken.
    fn create(&self, key: &TenantKey) -> impl Future<Output = Result<(), TenancyError>> + Send;

    fn list(&self) -> impl Future<Output = Result<Vec<TenantKey>, TenancyError>> + Send;

    /// Marks the key revoked at `at` (epoch seconds); [`TenancyError::NoSuchKey`] if unknown.
    fn revoke(
        &self,
        key_id: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), TenancyError>> + Send;

    /// Sets or removes the key's monthly budget; [`TenancyError::NoSuchKey`] if unknown.
    fn set_budget(
        &self,
        key_id: &str,
        monthly_budget_usd: Option<f64>,
    ) -> impl Future<Output = Result<(), TenancyError>> + Send;

    /// Sets the key's limits, each absent one removed; [`TenancyError::NoSuchKey`] if unknown.
    fn set_limits(
        &self,
        key_id: &str,
        limits: &TenantLimits,
    ) -> impl Future<Output = Result<(), TenancyError>> + Send;
}

/// Per-tenant rate and concurrency limits, counted where every instance sees them (see
/// [`crate::limits`] for the rules).
pub trait TenantLimiter: Send + Sync {
    /// Counts one request and reserves `tokens` in the tenant's window of `now_epoch`, if the
    /// window has room for both under `limits` (a limit absent is not checked); the window's
    /// counts after it, or [`LimitError::Exceeded`] and nothing counted.
    fn admit(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        tokens: u64,
        now_epoch: i64,
    ) -> impl Future<Output = Result<WindowCounts, LimitError>> + Send;

    /// Corrects the tokens of the window that starts at `window_start` by `delta` (the tokens
    /// used minus those reserved; negative gives a reservation back).
    fn adjust_tokens(
        &self,
        tenant: &str,
        window_start: i64,
        delta: i64,
    ) -> impl Future<Output = Result<(), LimitError>> + Send;

    /// Takes one of the tenant's `limit` concurrency slots under `lease_id` until `expires_at`
    /// (epoch seconds), leases expired at `now_epoch` not counted;
    /// [`LimitError::Exceeded`] when all are held.
    fn acquire(
        &self,
        tenant: &str,
        lease_id: &str,
        limit: u32,
        now_epoch: i64,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), LimitError>> + Send;

    /// Gives the slot of `lease_id` back (nothing when it is not held).
    fn release(
        &self,
        tenant: &str,
        lease_id: &str,
    ) -> impl Future<Output = Result<(), LimitError>> + Send;
}

impl<T: TenantLimiter> TenantLimiter for std::sync::Arc<T> {
    async fn admit(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        tokens: u64,
        now_epoch: i64,
    ) -> Result<WindowCounts, LimitError> {
        (**self).admit(tenant, limits, tokens, now_epoch).await
    }
    async fn adjust_tokens(
        &self,
        tenant: &str,
        window_start: i64,
        delta: i64,
    ) -> Result<(), LimitError> {
        (**self).adjust_tokens(tenant, window_start, delta).await
    }
    async fn acquire(
        &self,
        tenant: &str,
        lease_id: &str,
        limit: u32,
        now_epoch: i64,
        expires_at: i64,
    ) -> Result<(), LimitError> {
        (**self)
            .acquire(tenant, lease_id, limit, now_epoch, expires_at)
            .await
    }
    async fn release(&self, tenant: &str, lease_id: &str) -> Result<(), LimitError> {
        (**self).release(tenant, lease_id).await
    }
}

/// Spend per tenant and month, added to atomically by every instance.
pub trait SpendLedger: Send + Sync {
    fn spent(
        &self,
        tenant: &str,
        month: &str,
    ) -> impl Future<Output = Result<f64, TenancyError>> + Send;

    /// Adds `usd` and returns the new total.
    fn add(
        &self,
        tenant: &str,
        month: &str,
        usd: f64,
    ) -> impl Future<Output = Result<f64, TenancyError>> + Send;

    /// Holds `reservation.usd` of the month's `budget_usd` with one conditional write, if the
    /// spend and the live reservations leave room for it ([`Reserved::Refused`] otherwise).
    /// Reservations expired at `now_epoch` stop counting. A reservation already held (the same
    /// id, amount and expiry: a retry) is [`Reserved::Held`] and counted once.
    fn reserve(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        budget_usd: f64,
        now_epoch: i64,
    ) -> impl Future<Output = Result<Reserved, TenancyError>> + Send;

    /// Replaces `reservation`, held as `held` says, by the spend `actual_usd`; the new total
    /// spend. A reservation that expired meanwhile is not given back twice.
    fn settle(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        held: Reserved,
        actual_usd: f64,
    ) -> impl Future<Output = Result<f64, TenancyError>> + Send;
}

/// Tenants' monthly budgets as batches count against them (the tenant keys and the spend
/// ledger): a tenant batch's estimated cost is reserved when it is submitted and settled to
/// what it cost when it ends.
pub trait BatchBudgets: Send + Sync {
    /// Reserves `reservation` of `tenant`'s budget for `month`, on the terms its live keys give
    /// a batch on `model` ([`crate::tenancy::batch_terms`]).
    fn reserve(
        &self,
        tenant: &str,
        model: &str,
        month: &str,
        reservation: &Reservation,
        now_epoch: i64,
    ) -> impl Future<Output = Result<BatchBudgetAnswer, TenancyError>> + Send;

    /// Replaces the reservation of the batch `batch_id` by what it cost.
    fn settle(
        &self,
        batch_id: &str,
        hold: &BudgetHold,
        actual_usd: f64,
    ) -> impl Future<Output = Result<(), TenancyError>> + Send;
}

/// One store shared by several owners (a test and the handler it drives).
impl<T: TenantKeyStore> TenantKeyStore for std::sync::Arc<T> {
    async fn get(&self, key_id: &str) -> Result<Option<TenantKey>, TenancyError> {
        (**self).get(key_id).await
    }
    async fn create(&self, key: &TenantKey) -> Result<(), TenancyError> {
        (**self).create(key).await
    }
    async fn list(&self) -> Result<Vec<TenantKey>, TenancyError> {
        (**self).list().await
    }
    async fn revoke(&self, key_id: &str, at: i64) -> Result<(), TenancyError> {
        (**self).revoke(key_id, at).await
    }
    async fn set_budget(&self, key_id: &str, budget: Option<f64>) -> Result<(), TenancyError> {
        (**self).set_budget(key_id, budget).await
    }
    async fn set_limits(&self, key_id: &str, limits: &TenantLimits) -> Result<(), TenancyError> {
        (**self).set_limits(key_id, limits).await
    }
}

impl<T: SpendLedger> SpendLedger for std::sync::Arc<T> {
    async fn spent(&self, tenant: &str, month: &str) -> Result<f64, TenancyError> {
        (**self).spent(tenant, month).await
    }
    async fn add(&self, tenant: &str, month: &str, usd: f64) -> Result<f64, TenancyError> {
        (**self).add(tenant, month, usd).await
    }
    async fn reserve(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        budget_usd: f64,
        now_epoch: i64,
    ) -> Result<Reserved, TenancyError> {
        (**self)
            .reserve(tenant, month, reservation, budget_usd, now_epoch)
            .await
    }
    async fn settle(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        held: Reserved,
        actual_usd: f64,
    ) -> Result<f64, TenancyError> {
        (**self)
            .settle(tenant, month, reservation, held, actual_usd)
            .await
    }
}

/// The routing table the capacity function publishes: base model → live Provisioned
/// Throughput ARNs (see `shared::adapters::dynamo_routing` for the item).
pub trait RoutingTableSource: Send + Sync {
    /// The table as last published; `None` when none has been.
    fn routing_table(
        &self,
    ) -> impl Future<Output = Result<Option<RoutingTable>, RoutingTableError>> + Send;

    /// The plan for `model`: the static configuration's when it routes to Provisioned
    /// Throughput, else the table's live capacity (spilling over to on-demand), else
    /// on-demand. A table that cannot be read is logged and routes as if it were empty.
    fn plan(
        &self,
        router: &CapacityRouter,
        model: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Plan> + Send {
        async move {
            let table = match self.routing_table().await {
                Ok(table) => table,
                Err(error) => {
                    tracing::warn!(%error, "routing table unreadable; routing by the static configuration");
                    None
                }
            };
            live_plan(router, table.as_ref(), model, now)
        }
    }
}

/// Where the capacity function keeps the routing table. Every write is conditional on the
/// version it replaces, so of two concurrent runs one writes and the other stops.
pub trait RoutingTableStore: RoutingTableSource {
    /// Stores `table` if the stored version is `table.version - 1` (no table at all for version
    /// 1); [`RoutingTableError::Conflict`] otherwise.
    fn publish(
        &self,
        table: &RoutingTable,
    ) -> impl Future<Output = Result<(), RoutingTableError>> + Send;
}

/// No routing table: every model routes by the static configuration.
impl<R: RoutingTableSource> RoutingTableSource for Option<R> {
    async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
        match self {
            Some(source) => source.routing_table().await,
            None => Ok(None),
        }
    }
}

impl<R: RoutingTableSource> RoutingTableSource for std::sync::Arc<R> {
    async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
        (**self).routing_table().await
    }
}

impl<R: RoutingTableStore> RoutingTableStore for std::sync::Arc<R> {
    async fn publish(&self, table: &RoutingTable) -> Result<(), RoutingTableError> {
        (**self).publish(table).await
    }
}

/// Bedrock's Provisioned Throughput API.
pub trait ProvisionedThroughputs: Send + Sync {
    /// Every Provisioned Throughput of the account in the Region.
    fn list(&self) -> impl Future<Output = Result<Vec<Capacity>, CapacityError>> + Send;

    fn tags(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, String>, CapacityError>> + Send;

    /// Creates it (or finds the one its `clientRequestToken` created); its ARN.
    fn create(
        &self,
        order: &CreateOrder,
    ) -> impl Future<Output = Result<String, CapacityError>> + Send;

    fn tag(
        &self,
        arn: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<(), CapacityError>> + Send;

    fn delete(&self, arn: &str) -> impl Future<Output = Result<(), CapacityError>> + Send;
}

/// Where a capacity run's action counts go (EMF on stdout in Lambda).
pub trait CapacityMetricsSink: Send + Sync {
    fn publish(&self, counts: &CapacityCounts);
}
