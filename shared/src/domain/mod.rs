//! Pure domain types and rules: no AWS SDK type appears here.

pub mod batch;
pub mod cache;
pub mod capacity;
pub mod conversation;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod pricing;
pub mod prompt;
pub mod reporting;
pub mod routing;
pub mod stream;
pub mod tenancy;
pub mod tiers;
