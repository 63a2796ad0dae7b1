//! Building HTTP responses: an answer, a stream's head, an error, each in the caller's wire
//! format and with the headers that describe it.

use http::{header, HeaderValue, StatusCode};
use lambda_http::Response;
use serde_json::Value;

use domain::cache::CacheState;
use domain::limits::{openai_duration, RateStatus};

use crate::answered::{Answered, StreamMeta};
use crate::body::{self, ResponseBody};
use crate::context::{Answer, Ctx};
use crate::error::ApiError;
use crate::wire::Wire;

pub(crate) fn meta(ctx: &Ctx, cache: CacheState, created: i64) -> StreamMeta {
    StreamMeta {
        request_id: ctx.request_id.clone(),
        created,
        cache,
        model_id: ctx.trace.model_id.clone(),
        // A hit did not go to any capacity.
        route: (cache != CacheState::Hit)
            .then_some(ctx.trace.route)
            .flatten(),
        tier: ctx.trace.tier,
        spilled_over: ctx.trace.spilled_over,
    }
}

pub(crate) fn answered<'a>(
    answer: &'a Answer,
    meta: &'a StreamMeta,
    latency_ms: u64,
) -> Answered<'a> {
    Answered {
        answer: &answer.answer,
        meta,
        cost_usd: answer.cost_usd,
        saved_usd: answer.saved_usd,
        on_demand_equivalent_usd: answer.on_demand_equivalent_usd,
        latency_ms,
    }
}

pub(crate) fn insert_header(headers: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// `x-cache`, the model and the route, on every answer.
pub(crate) fn meta_headers(headers: &mut http::HeaderMap, meta: &StreamMeta) {
    insert_header(headers, "x-cache", meta.cache.as_str());
    if let Some(model) = &meta.model_id {
        insert_header(headers, "x-model-id", model);
    }
    if let Some(route) = meta.route {
        insert_header(headers, "x-route", route.as_str());
    }
}

pub(crate) fn json_body_response(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut response = Response::new(body::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A file's bytes, as OpenAI's files API gives them.
pub(crate) fn bytes_response(bytes: Vec<u8>) -> Response<ResponseBody> {
    let mut response = Response::new(body::full(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

pub(crate) fn answer_response(
    wire: &Wire,
    answered: &Answered<'_>,
    meta: &StreamMeta,
) -> Response<ResponseBody> {
    let mut response = json_body_response(StatusCode::OK, &wire.answer_body(answered));
    let headers = response.headers_mut();
    meta_headers(headers, meta);
    insert_header(headers, "x-cost-usd", &answered.cost_usd.to_string());
    insert_header(headers, "x-saved-usd", &answered.saved_usd.to_string());
    response
}

pub(crate) fn stream_response(meta: &StreamMeta, body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    meta_headers(headers, meta);
    response
}

pub(crate) fn error_response(
    wire: &Wire,
    error: &ApiError,
    request_id: &str,
) -> Response<ResponseBody> {
    let mut response = json_body_response(error.status, &wire.error_body(error, request_id));
    let headers = response.headers_mut();
    if let Some(seconds) = error.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if error.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    if error.code == "BudgetExceeded" {
        // Retrying cannot help before the month turns; the OpenAI SDKs honour this header.
        headers.insert("x-should-retry", HeaderValue::from_static("false"));
    }
    response
}

/// OpenAI's `x-ratelimit-*` headers, for the per-minute limits the tenant has.
pub(crate) fn rate_limit_headers(headers: &mut http::HeaderMap, rate: &RateStatus) {
    let reset = openai_duration(rate.reset_seconds);
    if let Some(limit) = rate.limit_requests {
        insert_header(headers, "x-ratelimit-limit-requests", &limit.to_string());
        insert_header(
            headers,
            "x-ratelimit-remaining-requests",
            &rate.remaining_requests.to_string(),
        );
        insert_header(headers, "x-ratelimit-reset-requests", &reset);
    }
    if let Some(limit) = rate.limit_tokens {
        insert_header(headers, "x-ratelimit-limit-tokens", &limit.to_string());
        insert_header(
            headers,
            "x-ratelimit-remaining-tokens",
            &rate.remaining_tokens.to_string(),
        );
        insert_header(headers, "x-ratelimit-reset-tokens", &reset);
    }
}

/// 499, as proxies log a client that closed the connection first.
pub(crate) fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}
