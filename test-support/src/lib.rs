//! Fakes of the ports in [`domain::ports`] and the API Gateway (and other trigger) events the
//! functions' handler tests drive them with. A dev-dependency only: nothing here is built into a
//! function.
//!
//! One module per port family; each fake says what it records and how to make it fail:
//!
//! - [`cache`]: [`cache::MemoryStore`] ([`domain::ports::CacheStore`]);
//! - [`model`]: [`model::FakeModel`] ([`domain::ports::ModelInvoker`]);
//! - [`metrics`]: [`metrics::Recorder`] ([`domain::ports::MetricsSink`]) and
//!   [`metrics::Counted`] ([`domain::ports::CapacityMetricsSink`]);
//! - [`batch`]: [`batch::Bucket`] ([`domain::ports::ObjectStore`]), [`batch::Registry`]
//!   ([`domain::ports::BatchRegistry`]), [`batch::Jobs`] and [`batch::Completed`]
//!   ([`domain::ports::BatchJobs`]), [`batch::Bus`] ([`domain::ports::EventPublisher`]);
//! - [`capacity`]: [`capacity::FakeBedrock`] ([`domain::ports::ProvisionedThroughputs`]) and
//!   [`capacity::RaceTable`] ([`domain::ports::RoutingTableStore`]);
//! - [`reporting`]: metrics-publisher's ports: [`reporting::Cloud`]
//!   ([`domain::ports::MetricsReader`]), [`reporting::Sink`] ([`domain::ports::MetricsWriter`]),
//!   [`reporting::Inventory`] ([`domain::ports::ProvisionedInventory`]), [`reporting::State`]
//!   ([`domain::ports::ReportStateStore`]);
//! - [`events`]: API Gateway events (HTTP API payload 2.0 and REST API 1.0, with IAM or JWT
//!   authorizer contexts), an S3 `ObjectCreated` event, a scheduled event and a Bedrock batch job
//!   state change, from the JSON files in `fixtures/`.
//!
//! The ports with an in-memory adapter in `shared` are not faked again here: the clock
//! (`shared::adapters::clock::ManualClock`), tenant keys and spend
//! (`shared::adapters::memory_tenancy`), and the routing table
//! (`shared::adapters::memory_routing`).
//!
//! Fakes that are shared with the handler they drive are `Clone` and their clones share their
//! state, so a test keeps one clone to look at what the handler did with the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod batch;
pub mod cache;
pub mod capacity;
pub mod events;
pub mod metrics;
pub mod model;
pub mod reporting;
