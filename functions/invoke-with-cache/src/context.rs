//! What a request carries from step to step: who is calling, what the path serves, what is
//! known of it so far (for the log line of a failure too), and what it becomes.

use std::time::Instant;

use chrono::{DateTime, Utc};
use lambda_http::{Request, Response};
use serde_json::Value;

use domain::cache::{CacheEntry, CacheKey, CacheState};
use domain::conversation::ModelAnswer;
use domain::limits::RateStatus;
use domain::routing::{Plan, Route};
use domain::tenancy::{Reservation, Reserved, Tenant};
use domain::tiers::Tier;

use crate::body::ResponseBody;
use crate::openai::OpenAiOptions;
use crate::request::InvokeRequest;
use crate::wire::Wire;

/// A successful answer, before it becomes HTTP.
pub(crate) struct Answer {
    pub(crate) answer: ModelAnswer,
    pub(crate) cache: CacheState,
    pub(crate) cost_usd: f64,
    pub(crate) saved_usd: f64,
    pub(crate) on_demand_equivalent_usd: f64,
    pub(crate) too_large_to_cache: bool,
}

/// What is known of a request as it goes: the log line and metrics of a failure need it too.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trace {
    pub(crate) model_id: Option<String>,
    pub(crate) tier: Option<Tier>,
    pub(crate) route: Option<Route>,
    pub(crate) spilled_over: bool,
    /// A flex call was throttled and the default tier answered.
    pub(crate) tier_fallback: bool,
    /// Cache points before fewer tokens than the model caches (estimated).
    pub(crate) cache_points_too_small: u32,
}

/// One request's identity, clock and reporting, carried into a stream's task.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) request_id: String,
    /// The invocation's X-Ray trace header, on every log line of the request.
    pub(crate) xray_trace_id: String,
    pub(crate) started: Instant,
    pub(crate) trace: Trace,
    pub(crate) wire: Wire,
    /// What the request holds of its tenant's limits, given back when it ends; a stream's
    /// task takes it over.
    pub(crate) held: Option<Held>,
    /// The tenant's per-minute counts, for the OpenAI route's `x-ratelimit-*` headers.
    pub(crate) rate: Option<RateStatus>,
    /// When a stream must end with an error event, before API Gateway or Lambda cut it
    /// ([`StreamLimits`](crate::config::StreamLimits)); tokio's clock.
    pub(crate) stream_ends_by: tokio::time::Instant,
    /// The request's input tokens as Bedrock's CountTokens counted them (`COUNT_TOKENS`), for
    /// its reservation and for a stream cut before Bedrock's usage came.
    pub(crate) counted_input_tokens: Option<u64>,
}

/// What an admitted request holds of its tenant's limits until it ends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Held {
    pub(crate) tenant: String,
    /// The concurrency lease, when the tenant has a concurrency limit.
    pub(crate) lease_id: Option<String>,
    /// The window the request was counted in and the tokens it reserved there, when the
    /// tenant has a per-minute limit.
    pub(crate) window: Option<(i64, u64)>,
    /// The share of the tenant's monthly budget reserved for the request.
    pub(crate) budget: Option<BudgetHold>,
}

impl Held {
    pub(crate) fn of(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            lease_id: None,
            window: None,
            budget: None,
        }
    }
}

/// A reservation in a tenant's budget, and where it is held.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BudgetHold {
    pub(crate) month: String,
    pub(crate) reservation: Reservation,
    pub(crate) held: Reserved,
}

/// The routes the function serves (matched on the path's end, whatever the stage prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Invoke,
    ChatCompletions,
    Models,
    /// Another path under `/openai/`: a 404 in OpenAI's shape.
    OpenAiOther,
    /// `POST /v1/deferred`.
    Deferred,
    /// `GET /v1/deferred/{id}`.
    DeferredStatus,
    /// OpenAI's files and batches routes.
    BatchApi,
}

impl Endpoint {
    pub(crate) fn of(request: &Request) -> Self {
        let path = request.uri().path().trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Self::ChatCompletions
        } else if path.ends_with("/openai/v1/models") || path.ends_with("/models") {
            Self::Models
        } else if path.contains("/openai/v1/files") || path.contains("/openai/v1/batches") {
            Self::BatchApi
        } else if path.contains("/openai/") {
            Self::OpenAiOther
        } else if path.ends_with("/v1/deferred") {
            Self::Deferred
        } else if path.contains("/v1/deferred/") {
            Self::DeferredStatus
        } else {
            Self::Invoke
        }
    }

    /// The native API's routes (IAM callers, and tenant keys), as against OpenAI's.
    pub(crate) fn is_native(self) -> bool {
        matches!(self, Self::Invoke | Self::Deferred | Self::DeferredStatus)
    }

    pub(crate) fn wire(self) -> Wire {
        match self {
            Self::Invoke | Self::Deferred | Self::DeferredStatus => Wire::Native,
            Self::ChatCompletions | Self::Models | Self::OpenAiOther | Self::BatchApi => {
                Wire::OpenAi(OpenAiOptions::default())
            }
        }
    }
}

/// Who is asking: the cache namespace, and the tenant when a key was presented.
pub(crate) struct Caller {
    pub(crate) namespace: String,
    pub(crate) tenant: Option<Tenant>,
    /// Whether the request's cost was reserved in its tenant's budget: its spend is then
    /// settled with the reservation when the request ends, not added on its own.
    pub(crate) budget_reserved: bool,
}

/// A request past its checks, on its way to the model.
pub(crate) struct Job {
    pub(crate) invoke: InvokeRequest,
    pub(crate) caller: Caller,
    pub(crate) plan: Plan,
    pub(crate) key: Option<CacheKey>,
    pub(crate) state: CacheState,
    pub(crate) lease_owner: Option<String>,
    pub(crate) now: DateTime<Utc>,
}

/// What the handler answers with.
pub(crate) enum Reply {
    Answer(Answer),
    /// A stream, reported by its own task when it ends.
    Stream(Response<ResponseBody>),
    Json(Value),
    /// 202: accepted, answered later.
    Accepted(Value),
    /// A file's bytes.
    Bytes(Vec<u8>),
}

pub(crate) fn hit(entry: CacheEntry, trace: &mut Trace) -> Answer {
    trace.model_id = Some(entry.cached.model_id);
    Answer {
        saved_usd: entry.cached.cost_usd,
        answer: entry.cached.answer,
        cache: CacheState::Hit,
        cost_usd: 0.0,
        on_demand_equivalent_usd: 0.0,
        too_large_to_cache: false,
    }
}

pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
