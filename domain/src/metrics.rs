//! What one request reports: one log line and one set of metrics.

use super::cache::CacheState;
use super::routing::{Route, ServiceTier};
use super::tiers::Tier;

/// How a request ended, by the class an alarm is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    /// 429: Bedrock throttled, after spillover if any.
    Throttled,
    /// Any other 4xx: the caller's request was refused.
    ClientError,
    /// 5xx other than a timeout: Bedrock refused access, failed or could not be reached.
    ServerError,
    /// 504: no answer in time.
    Timeout,
}

impl Outcome {
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=399 => Self::Answered,
            429 => Self::Throttled,
            504 => Self::Timeout,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }
}

/// Per-request figures. Never holds prompt or answer text.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMetrics {
    /// The model that answered (or whose cached answer was served, or that was asked);
    /// `None` when the request was refused before a model was chosen.
    pub model_id: Option<String>,
    pub route: Option<Route>,
    pub tier: Option<Tier>,
    pub cache: Option<CacheState>,
    pub latency_ms: u64,
    /// Tokens Bedrock processed for this request: zero on a hit.
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// What the request cost at the margin: 0 on a hit and on Provisioned Throughput, which
    /// is billed by the hour.
    pub cost_usd: f64,
    pub saved_usd: f64,
    /// What the tokens Provisioned Throughput served would have cost on-demand.
    pub on_demand_equivalent_usd: f64,
    /// The answer was too large for the cache item limit and was not stored.
    pub too_large_to_cache: bool,
    pub outcome: Outcome,
    /// The Provisioned Throughput was unusable and the request went on-demand.
    pub spilled_over: bool,
    /// Input tokens Bedrock read from, and wrote to, its prompt cache (zero on a hit).
    pub prompt_cache_read_tokens: u32,
    pub prompt_cache_write_tokens: u32,
    /// What Bedrock's prompt cache saved on this call against the same input uncached
    /// (negative when it only wrote, which costs more than plain input).
    pub prompt_cache_saved_usd: f64,
    /// The service tier Bedrock served the call on, when one was asked for.
    pub service_tier: Option<ServiceTier>,
    /// A flex call was throttled and the default tier answered.
    pub tier_fallback: bool,
    /// A guardrail intervened in the answer (stop reason `guardrail_intervened`).
    pub guardrail_intervened: bool,
    /// Cache points of the request before fewer tokens than the model caches: Bedrock ignores
    /// them.
    pub prompt_cache_points_too_small: u32,
}

impl RequestMetrics {
    /// A request that ended before any model answered.
    pub fn refused(status: u16, latency_ms: u64) -> Self {
        Self {
            model_id: None,
            route: None,
            tier: None,
            cache: None,
            latency_ms,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            saved_usd: 0.0,
            prompt_cache_read_tokens: 0,
            prompt_cache_write_tokens: 0,
            prompt_cache_saved_usd: 0.0,
            service_tier: None,
            tier_fallback: false,
            guardrail_intervened: false,
            prompt_cache_points_too_small: 0,
            on_demand_equivalent_usd: 0.0,
            too_large_to_cache: false,
            outcome: Outcome::from_status(status),
            spilled_over: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_alarm_classes() {
        assert_eq!(Outcome::from_status(200), Outcome::Answered);
        assert_eq!(Outcome::from_status(429), Outcome::Throttled);
        assert_eq!(Outcome::from_status(400), Outcome::ClientError);
        assert_eq!(Outcome::from_status(403), Outcome::ClientError);
        assert_eq!(Outcome::from_status(502), Outcome::ServerError);
        assert_eq!(Outcome::from_status(500), Outcome::ServerError);
        assert_eq!(Outcome::from_status(504), Outcome::Timeout);
    }
}
