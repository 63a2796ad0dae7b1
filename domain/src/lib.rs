//! The toolkit's domain: pure types and rules, and the ports the handlers are generic over.
//!
//! Cargo holds the boundary: this crate depends on no AWS SDK, no Lambda runtime and reads no
//! environment variable, so nothing here can name an SDK type. Adapters (`shared::adapters`)
//! convert SDK types to and from these; the functions wire adapters into handlers.
//!
//! - the rules: [`conversation`], [`cache`], [`tiers`], [`routing`], [`capacity`], [`pricing`],
//!   [`reporting`], [`batch`], [`tenancy`], [`limits`], [`identity`], [`stream`], [`metrics`], [`prompt`],
//!   [`prompt_cache`], [`guardrail`], [`deferred`];
//! - the failures each port reports, in [`error`];
//! - the [`ports`]: the traits handlers are written against, so they are tested without AWS.

pub mod batch;
pub mod cache;
pub mod capacity;
pub mod conversation;
pub mod deferred;
pub mod error;
pub mod guardrail;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod ports;
pub mod pricing;
pub mod prompt;
pub mod prompt_cache;
pub mod reporting;
pub mod routing;
pub mod stream;
pub mod tenancy;
pub mod tiers;
