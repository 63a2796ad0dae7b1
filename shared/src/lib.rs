//! The domain, ports and AWS adapters the Lambda functions share.
//!
//! - [`domain`]: pure types and rules (conversation, cache key, tiers, routing, pricing, errors).
//! - [`ports`]: the traits handlers are generic over, so they are tested without AWS.
//! - [`adapters`]: DynamoDB, Bedrock, the in-process cache, EMF metrics, the system clock.

pub mod adapters;
pub mod api;
pub mod batch;
pub mod config;
pub mod domain;
#[cfg(feature = "lambda-http")]
pub mod http;
pub mod ports;
#[cfg(feature = "runtime-nodelay")]
pub mod runtime_nodelay;
pub mod telemetry;
