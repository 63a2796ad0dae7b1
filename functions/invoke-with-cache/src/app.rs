//! The function with its adapters, built once per instance. Its request path is in the
//! `handler` module, one module per step; this module only says what it is made of.

use std::sync::atomic::AtomicU64;

use domain::ports::{
    CacheStore, Clock, MetricsSink, ModelInvoker, RoutingTableSource, SpendLedger, TenantKeyStore,
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
    /// The capacity function's live routes to Provisioned Throughput.
    type Routes: RoutingTableSource + 'static;
}

/// The ports an [`App`] calls, one value per associated type of its [`Adapters`].
pub struct Ports<A: Adapters> {
    pub store: A::Store,
    pub model: A::Model,
    pub clock: A::Clock,
    pub metrics: A::Metrics,
    /// Verifies bearer keys and counts tenants' spend; `None` refuses every bearer key.
    pub tenancy: Option<Tenancy<A::Keys, A::Ledger>>,
    /// Routes by the capacity function's routing table (live Provisioned Throughput, spilling
    /// over to on-demand) where the static configuration does not route to Provisioned
    /// Throughput itself; `None` routes by the static configuration alone.
    pub routes: Option<A::Routes>,
}

/// Tenant keys and the spend ledger, when the deployment uses keys.
pub struct Tenancy<T, L> {
    pub keys: T,
    pub ledger: L,
}

/// The function: its configuration and its ports.
pub struct App<A: Adapters> {
    pub(crate) config: InvokeConfig,
    pub(crate) ports: Ports<A>,
    /// Makes lease owners unique within the instance; the request id makes them unique across.
    pub(crate) lease_counter: AtomicU64,
}

impl<A: Adapters> App<A> {
    pub fn new(config: InvokeConfig, ports: Ports<A>) -> Self {
        Self {
            config,
            ports,
            lease_counter: AtomicU64::new(0),
        }
    }
}
