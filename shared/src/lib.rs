//! What the Lambda functions share beyond the domain: the AWS adapters, configuration from the
//! environment, telemetry, the HTTP error shape and batch orchestration.
//!
//! - [`adapters`]: DynamoDB, Bedrock, S3, EventBridge, CloudWatch, the in-process caches, EMF
//!   metrics, the system clock; each SDK behind a Cargo feature, so a function links only the
//!   SDKs it calls. They implement the traits of [`domain::ports`].
//! - [`config`]: reading environment variables; every failure names the variable.
//! - [`api`], [`http`]: domain errors mapped once to HTTP status and the native error shape.
//! - [`batch`]: batch inference orchestration over the ports.
//! - [`deferred`]: the schedule's placement of deferred requests.
//! - [`telemetry`]: JSON logs with the trace id.

pub mod adapters;
pub mod api;
pub mod batch;
pub mod config;
pub mod deferred;
#[cfg(feature = "lambda-http")]
pub mod http;
#[cfg(feature = "runtime-nodelay")]
pub mod runtime_nodelay;
pub mod telemetry;
