//! The traits handlers are generic over. Adapters implement them against AWS; tests implement
//! them in memory.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::cache::{CacheEntry, CacheKey};
use crate::domain::conversation::{Conversation, ModelAnswer};
use crate::domain::error::{CacheError, ModelError};
use crate::domain::metrics::RequestMetrics;

/// A shared store of answers with a time to live.
pub trait CacheStore: Send + Sync {
    /// The entry, live or not: expiry is the caller's decision, made with its clock.
    fn get(
        &self,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Option<CacheEntry>, CacheError>> + Send;

    /// Stores or overwrites the entry.
    fn put(
        &self,
        key: &CacheKey,
        entry: &CacheEntry,
    ) -> impl Future<Output = Result<(), CacheError>> + Send;
}

/// A model that answers a conversation (Bedrock Converse).
pub trait ModelInvoker: Send + Sync {
    /// `model_id` is what Bedrock is sent: a model id or a Provisioned Throughput ARN.
    fn converse(
        &self,
        model_id: &str,
        conversation: &Conversation,
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
