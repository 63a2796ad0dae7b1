//! The traits handlers are generic over. Adapters implement them against AWS; tests implement
//! them in memory.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::cache::{CacheEntry, CacheKey, Lease, StoredRecord};
use crate::domain::conversation::{Conversation, ModelAnswer};
use crate::domain::error::{CacheError, ModelError};
use crate::domain::metrics::RequestMetrics;
use crate::domain::routing::Target;

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
}

/// The time, injected so that expiry and schedules are tested without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Where per-request metrics go (CloudWatch Embedded Metric Format on stdout in Lambda).
pub trait MetricsSink: Send + Sync {
    fn publish(&self, metrics: &RequestMetrics);
}
