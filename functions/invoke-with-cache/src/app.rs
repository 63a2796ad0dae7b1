//! The function with its adapters, built once per instance. Its request path is in the
//! `handler` module, one module per step; this module only says what it is made of.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use domain::ports::{
    CacheStore, Clock, DeferredStore, MetricsSink, ModelInvoker, ObjectStore, RoutingTableSource,
    SpendLedger, TenantKeyStore, TenantLimiter,
};

use crate::config::InvokeConfig;

/// The adapters the handler is wired with, named once: `main` names the AWS ones, tests their
/// fakes. A type with only associated types, so that [`App`] takes one type parameter.
pub trait Adapters: Send + Sync + 'static {
    /// The response cache (DynamoDB fronted by the instance's memory).
    type Store: CacheStore + 'static;
    /// Bedrock Converse and ConverseStream.
    type Model: ModelInvoker + 'static;
    type Clock: Clock + 'static;
    /// Per-request metrics (EMF on stdout).
    type Metrics: MetricsSink + 'static;
    /// Tenant keys, when the deployment uses them.
    type Keys: TenantKeyStore + 'static;
    /// Tenants' monthly spend.
    type Ledger: SpendLedger + 'static;
    /// Tenants' rate and concurrency limits.
    type Limiter: TenantLimiter + 'static;
    /// The capacity function's live routes to Provisioned Throughput.
    type Routes: RoutingTableSource + 'static;
    /// Deferred requests (`POST /v1/deferred`).
    type Deferred: DeferredStore + 'static;
    /// OpenAI batch files (the batch bucket on S3).
    type Files: ObjectStore + 'static;
}

/// The ports an [`App`] calls, one value per associated type of its [`Adapters`].
pub struct Ports<A: Adapters> {
    pub store: A::Store,
    pub model: A::Model,
    pub clock: A::Clock,
    pub metrics: A::Metrics,
    /// Verifies bearer keys and counts tenants' spend; `None` refuses every bearer key.
    pub tenancy: Option<Tenancy<A::Keys, A::Ledger, A::Limiter>>,
    /// Routes by the capacity function's routing table (live Provisioned Throughput, spilling
    /// over to on-demand) where the static configuration does not route to Provisioned
    /// Throughput itself; `None` routes by the static configuration alone.
    pub routes: Option<A::Routes>,
    /// Where deferred requests are accepted and read (`DEFERRED_TABLE_NAME`); `None` answers
    /// those routes with 404.
    pub deferred: Option<A::Deferred>,
    /// Where OpenAI batch files are kept (`FILES_BUCKET_NAME`); `None` answers the files and
    /// batches routes with 404.
    pub files: Option<A::Files>,
}

/// Tenant keys, the spend ledger and the limiter, when the deployment uses keys.
pub struct Tenancy<T, L, R> {
    pub keys: T,
    pub ledger: L,
    /// Counts requests, tokens and concurrent requests of tenants whose keys carry limits.
    pub limiter: R,
}

/// The function: its configuration and its ports.
pub struct App<A: Adapters> {
    pub(crate) config: InvokeConfig,
    pub(crate) ports: Ports<A>,
    /// Makes lease owners unique within the instance; the request id makes them unique across.
    pub(crate) lease_counter: AtomicU64,
    /// Since when the limiter's table has been failing, as this instance saw it; `None` while
    /// it answers.
    pub(crate) limiter_outage: Mutex<Option<tokio::time::Instant>>,
}

impl<A: Adapters> App<A> {
    pub fn new(config: InvokeConfig, ports: Ports<A>) -> Self {
        Self {
            config,
            ports,
            lease_counter: AtomicU64::new(0),
            limiter_outage: Mutex::new(None),
        }
    }

    /// The store deferred requests are kept in, when the deployment has one.
    pub fn deferred_store(&self) -> Option<&A::Deferred> {
        self.ports.deferred.as_ref()
    }
}
