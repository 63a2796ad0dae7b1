//! What is known of an answer: at its start (the first event of a stream, and the headers),
//! and whole with its figures. Both wire formats write from these.

use domain::cache::CacheState;
use domain::conversation::ModelAnswer;
use domain::routing::Route;
use domain::tiers::Tier;

/// What is known of an answer when it starts: the first event of a stream, and the headers.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMeta {
    pub request_id: String,
    /// Epoch seconds (OpenAI's `created`).
    pub created: i64,
    pub cache: CacheState,
    pub model_id: Option<String>,
    pub route: Option<Route>,
    pub tier: Option<Tier>,
    pub spilled_over: bool,
}

impl StreamMeta {
    pub fn completion_id(&self) -> String {
        format!("chatcmpl-{}", self.request_id)
    }

    #[cfg(test)]
    pub fn for_tests(request_id: &str) -> Self {
        Self {
            request_id: request_id.into(),
            created: 0,
            cache: CacheState::Miss,
            model_id: Some("m".into()),
            route: None,
            tier: None,
            spilled_over: false,
        }
    }
}

/// A whole answer with its figures.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub answer: &'a ModelAnswer,
    pub meta: &'a StreamMeta,
    pub cost_usd: f64,
    pub saved_usd: f64,
    pub on_demand_equivalent_usd: f64,
    pub latency_ms: u64,
}
