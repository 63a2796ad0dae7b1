//! Amazon CloudWatch's metric API — PutMetricData, GetMetricData, ListMetrics — in the two
//! protocols CloudWatch speaks today:
//!
//! - Smithy RPC v2 CBOR (the AWS SDK for Rust): `POST /service/GraniteServiceVersion20100801/operation/{Op}`
//!   with `smithy-protocol: rpc-v2-cbor`, CBOR bodies (gzip-compressed by the SDK above 10 KiB).
//! - awsJson1_0 (boto3 and the AWS CLI, whose botocore prefers `json` to `smithy-rpc-v2-cbor`):
//!   `POST /` with `X-Amz-Target: GraniteServiceVersion20100801.{Op}`.
//!
//! Errors are CloudWatch's query-compatible ones (see [`error`]). `POST /_emulator/emf` feeds
//! log lines in, extracting their Embedded Metric Format metrics as CloudWatch Logs does.

pub mod datum;
pub mod doc;
pub mod emf;
pub mod error;
pub mod list;
pub mod math;
pub mod put;
pub mod query;
pub mod statistics;
pub mod store;

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::BedrockError;
use doc::Doc;
use error::CwError;
pub use store::Metrics;

/// The service's Smithy shape name: the RPC v2 path segment and the awsJson target prefix.
pub const SERVICE: &str = "GraniteServiceVersion20100801";
/// PutMetricData's limit on a request, uncompressed: 1 MB.
pub const MAX_REQUEST_BYTES: usize = 1_048_576;
/// Bodies are read, and inflated, up to this much before they are refused unmeasured.
const READ_LIMIT: usize = 8 * MAX_REQUEST_BYTES;

const CBOR: &str = "application/cbor";
const JSON: &str = "application/x-amz-json-1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    RpcV2Cbor,
    AwsJson,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `POST /service/GraniteServiceVersion20100801/operation/{operation}`.
pub async fn rpc_v2_cbor(
    State(metrics): State<Arc<Metrics>>,
    Path(operation): Path<String>,
    request: Request,
) -> Response {
    serve(&metrics, Protocol::RpcV2Cbor, &operation, request).await
}

/// `POST /` with `X-Amz-Target: GraniteServiceVersion20100801.{operation}`.
pub async fn aws_json(State(metrics): State<Arc<Metrics>>, request: Request) -> Response {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(SERVICE))
        .and_then(|t| t.strip_prefix('.'))
        .map(str::to_owned);
    match target {
        Some(operation) => serve(&metrics, Protocol::AwsJson, &operation, request).await,
        None => BedrockError::unknown_operation().into_response(),
    }
}

async fn serve(
    metrics: &Metrics,
    protocol: Protocol,
    operation: &str,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let answer = match read_body(&parts.headers, body).await {
        Ok(bytes) => {
            decode(protocol, &bytes).and_then(|doc| dispatch(metrics, operation, &doc, now_ms()))
        }
        Err(e) => Err(e),
    };
    respond(protocol, answer)
}

/// The request body, inflated if it came gzip-compressed, within CloudWatch's size limit.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, CwError> {
    let exceeded =
        || CwError::too_large(format!("Request size exceeded {MAX_REQUEST_BYTES} bytes."));
    let raw = axum::body::to_bytes(body, READ_LIMIT)
        .await
        .map_err(|_| exceeded())?;
    let gzipped = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.trim().eq_ignore_ascii_case("gzip"));
    let body = if gzipped {
        inflate(&raw)?
    } else {
        raw.to_vec()
    };
    if body.len() > READ_LIMIT {
        return Err(exceeded());
    }
    if body.len() > MAX_REQUEST_BYTES {
        return Err(CwError::too_large(format!(
            "Request size {} exceeded {MAX_REQUEST_BYTES} bytes.",
            body.len()
        )));
    }
    Ok(body)
}

/// Gunzips at most one byte more than `READ_LIMIT`, so that a small bomb stays small.
pub fn inflate(gzipped: &[u8]) -> Result<Vec<u8>, CwError> {
    let mut body = Vec::new();
    flate2::read::MultiGzDecoder::new(gzipped)
        .take(READ_LIMIT as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| CwError::serialization(format!("invalid gzip body: {e}")))?;
    Ok(body)
}

fn decode(protocol: Protocol, body: &[u8]) -> Result<Doc, CwError> {
    match protocol {
        Protocol::RpcV2Cbor => doc::from_cbor(body),
        Protocol::AwsJson => doc::from_json(body),
    }
}

/// Faults of the emulated CloudWatch, under `"cloudwatch"` in `POST /_emulator/config`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultPatch {
    /// The next N PutMetricData calls answer `Throttling` (`Rate exceeded`) and record nothing;
    /// 0 clears it.
    pub fail_put_metric_data: Option<u64>,
}

impl FaultPatch {
    pub fn apply(&self, metrics: &Metrics) {
        if let Some(calls) = self.fail_put_metric_data {
            metrics.fail_puts(calls);
        }
    }
}

/// Runs one operation on a decoded input; `None` is an operation without output.
pub fn dispatch(
    metrics: &Metrics,
    operation: &str,
    input: &Doc,
    now_ms: i64,
) -> Result<Option<Doc>, CwError> {
    match operation {
        "PutMetricData" => {
            if metrics.take_put_fault() {
                return Err(CwError::throttling());
            }
            let (namespace, inputs) = put::parse_put(input)?;
            let datums = put::check_put(namespace.as_deref(), &inputs, now_ms)?;
            metrics.put(datums, now_ms);
            Ok(None)
        }
        "GetMetricData" => {
            let request = query::parse(input)?;
            query::run(&request, metrics).map(Some)
        }
        "ListMetrics" => {
            let (filter, offset) = list::parse_list(input)?;
            let all = metrics.list(&filter, now_ms);
            if offset > all.len() {
                return Err(CwError::invalid_value(
                    "Request parameter NextToken is invalid",
                ));
            }
            let end = all.len().min(offset + list::LIST_PAGE);
            let page = all[offset..end].iter().map(datum::MetricKey::to_doc);
            Ok(Some(Doc::structure([
                ("Metrics", Some(Doc::List(page.collect()))),
                (
                    "NextToken",
                    (end < all.len()).then(|| Doc::text(list::page_token(end))),
                ),
            ])))
        }
        other => Err(CwError::invalid_action(other)),
    }
}

fn respond(protocol: Protocol, answer: Result<Option<Doc>, CwError>) -> Response {
    let (status, body, error) = match answer {
        Ok(output) => (StatusCode::OK, output, None),
        Err(e) => {
            let body = Doc::structure([
                ("__type", Some(Doc::text(e.type_id()))),
                ("message", Some(Doc::text(&e.message))),
            ]);
            (e.status, Some(body), Some(e))
        }
    };
    let (content_type, bytes) = match (protocol, &body) {
        // RPC v2 CBOR: an operation without output answers with no body and no content type.
        (Protocol::RpcV2Cbor, None) => (None, Vec::new()),
        (Protocol::RpcV2Cbor, Some(doc)) => (Some(CBOR), doc::to_cbor(doc)),
        (Protocol::AwsJson, None) => (Some(JSON), b"{}".to_vec()),
        (Protocol::AwsJson, Some(doc)) => (Some(JSON), doc::to_json(doc).to_string().into_bytes()),
    };
    let mut response = (status, Bytes::from(bytes)).into_response();
    let headers = response.headers_mut();
    match content_type {
        Some(content_type) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        None => {
            headers.remove(CONTENT_TYPE);
        }
    }
    if protocol == Protocol::RpcV2Cbor {
        headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    }
    if let Some(e) = error {
        if let Ok(value) = HeaderValue::from_str(&e.query_error()) {
            headers.insert("x-amzn-query-error", value);
        }
    }
    response
}

/// `POST /_emulator/emf`: log lines (any text; one log event a line). Every line that is an EMF
/// document has its metrics recorded, as CloudWatch Logs extracts them; a document CloudWatch
/// would reject records nothing and is reported with its line number.
pub async fn emf(State(metrics): State<Arc<Metrics>>, body: Bytes) -> Response {
    Json(feed_emf(
        &metrics,
        &String::from_utf8_lossy(&body),
        now_ms(),
    ))
    .into_response()
}

pub fn feed_emf(metrics: &Metrics, text: &str, now_ms: i64) -> serde_json::Value {
    let mut lines = 0;
    let mut documents = 0;
    let mut recorded = 0;
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let Some(parsed) = emf::parse_line(line) else {
            continue;
        };
        documents += 1;
        let checked = parsed.and_then(|directives| {
            directives
                .iter()
                .map(|d| {
                    put::check_put(Some(&d.namespace), &d.datums, now_ms).map_err(|e| e.message)
                })
                .collect::<Result<Vec<_>, String>>()
        });
        match checked {
            Ok(datums) => {
                let datums: Vec<datum::Datum> = datums.into_iter().flatten().collect();
                recorded += datums.len();
                metrics.put(datums, now_ms);
            }
            Err(message) => errors.push(json!({"line": n + 1, "message": message})),
        }
    }
    json!({"lines": lines, "documents": documents, "datums": recorded, "errors": errors})
}

#[cfg(test)]
mod tests;
