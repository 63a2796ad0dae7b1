//! What one request reports: one log line and one set of metrics.

use super::cache::CacheState;
use super::routing::Route;
use super::tiers::Tier;

/// Per-request figures. Never holds prompt or answer text.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMetrics {
    /// The base model that answered (or whose cached answer was served).
    pub model_id: String,
    pub route: Option<Route>,
    pub tier: Option<Tier>,
    pub cache: CacheState,
    pub latency_ms: u64,
    /// Tokens Bedrock processed for this request: zero on a hit.
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cost_usd: f64,
    pub saved_usd: f64,
    /// The answer was too large for the cache item limit and was not stored.
    pub too_large_to_cache: bool,
}
