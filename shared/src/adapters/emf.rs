//! CloudWatch Embedded Metric Format: one JSON object a line on stdout, which CloudWatch Logs
//! turns into metrics without any API call on the request path.

use std::io::Write;

use chrono::Utc;
use serde_json::{json, Value};

use domain::cache::CacheState;
use domain::metrics::{Outcome, RequestMetrics};
use domain::ports::MetricsSink;

pub const DEFAULT_NAMESPACE: &str = "Custom/Bedrock";

/// The dimension value of requests refused before a model was chosen.
pub const NO_MODEL: &str = "none";

/// Lambda's log levels, least severe first.
const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// The level metric lines carry: the function's application log level when it is above INFO,
/// so that Lambda's log-level filter never drops them (a line without a level counts as INFO).
pub fn metrics_level(log_level: Option<&str>) -> &'static str {
    let wanted = log_level.unwrap_or("INFO").trim().to_ascii_uppercase();
    let wanted = if wanted == "WARNING" {
        "WARN".to_owned()
    } else {
        wanted
    };
    let index = LEVELS.iter().position(|l| *l == wanted).unwrap_or(2);
    LEVELS[index.max(2)]
}

fn count(condition: bool) -> u8 {
    u8::from(condition)
}

/// One directive of an EMF document: metrics (name, unit) of a namespace by one set of
/// dimensions (none: across every value of the document's dimensions).
pub fn directive(namespace: &str, dimensions: &[&str], metrics: &[(&str, &str)]) -> Value {
    json!({
        "Namespace": namespace,
        "Dimensions": [dimensions],
        "Metrics": metrics
            .iter()
            .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
            .collect::<Vec<_>>(),
    })
}

/// An EMF document: the `_aws` metadata (timestamp and directives), the level, then the
/// members of `values` (an object of dimension and metric values), in their order.
pub fn document(timestamp_ms: i64, directives: Vec<Value>, level: &str, values: Value) -> Value {
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": directives,
        },
        "level": level,
    });
    if let (Some(doc), Value::Object(values)) = (doc.as_object_mut(), values) {
        doc.extend(values);
    }
    doc
}

/// The EMF document for one request: every metric by `ModelId`; the request and error counts
/// and the latency across models too (no dimension: what the alarms and the dashboard's
/// percentiles read); and, when a capacity served it, `TokensProcessed` by `ModelId` and
/// `Route`, from which metrics-publisher tells the tokens Provisioned Throughput served.
pub fn render(namespace: &str, level: &str, metrics: &RequestMetrics, timestamp_ms: i64) -> Value {
    let outcome = metrics.outcome;
    let mut directives = vec![
        directive(
            namespace,
            &["ModelId"],
            &[
                ("Requests", "Count"),
                ("InferenceLatency", "Milliseconds"),
                ("InputTokens", "Count"),
                ("OutputTokens", "Count"),
                ("TokensProcessed", "Count"),
                ("CacheHit", "Count"),
                ("EstimatedCostUSD", "None"),
                ("EstimatedSavingsUSD", "None"),
                ("OnDemandEquivalentUSD", "None"),
                ("CacheEntryTooLarge", "Count"),
                ("Throttles", "Count"),
                ("ClientErrors", "Count"),
                ("ServerErrors", "Count"),
                ("Timeouts", "Count"),
                ("Spillovers", "Count"),
                ("GuardrailInterventions", "Count"),
                ("PromptCachePointsTooSmall", "Count"),
                ("PromptCacheReadTokens", "Count"),
                ("PromptCacheWriteTokens", "Count"),
                ("PromptCacheSavingsUSD", "None"),
            ],
        ),
        directive(
            namespace,
            &[],
            &[
                ("Requests", "Count"),
                ("InferenceLatency", "Milliseconds"),
                ("Throttles", "Count"),
                ("ClientErrors", "Count"),
                ("ServerErrors", "Count"),
                ("Timeouts", "Count"),
            ],
        ),
    ];
    if metrics.service_tier.is_some() {
        directives.push(directive(
            namespace,
            &["ModelId", "ServiceTier"],
            &[
                ("Requests", "Count"),
                ("EstimatedCostUSD", "None"),
                ("TierFallbacks", "Count"),
            ],
        ));
    }
    if metrics.route.is_some() {
        directives.push(directive(
            namespace,
            &["ModelId", "Route"],
            &[("TokensProcessed", "Count")],
        ));
    }
    let values = json!({
        "ModelId": metrics.model_id.as_deref().unwrap_or(NO_MODEL),
        "Route": metrics.route.map(|r| r.as_str()),
        "Tier": metrics.tier.map(|t| t.as_str()),
        "CacheState": metrics.cache.map(CacheState::as_str),
        "Requests": 1,
        "InferenceLatency": metrics.latency_ms,
        "InputTokens": metrics.input_tokens,
        "OutputTokens": metrics.output_tokens,
        "TokensProcessed": metrics.input_tokens + metrics.output_tokens,
        "CacheHit": count(metrics.cache == Some(CacheState::Hit)),
        "EstimatedCostUSD": metrics.cost_usd,
        "EstimatedSavingsUSD": metrics.saved_usd,
        "OnDemandEquivalentUSD": metrics.on_demand_equivalent_usd,
        "CacheEntryTooLarge": count(metrics.too_large_to_cache),
        "Throttles": count(outcome == Outcome::Throttled),
        "ClientErrors": count(outcome == Outcome::ClientError),
        "ServerErrors": count(outcome == Outcome::ServerError),
        "Timeouts": count(outcome == Outcome::Timeout),
        "Spillovers": count(metrics.spilled_over),
        "ServiceTier": metrics.service_tier.map(|t| t.as_str()),
        "TierFallbacks": count(metrics.tier_fallback),
        "GuardrailInterventions": count(metrics.guardrail_intervened),
        "PromptCachePointsTooSmall": metrics.prompt_cache_points_too_small,
        "PromptCacheReadTokens": metrics.prompt_cache_read_tokens,
        "PromptCacheWriteTokens": metrics.prompt_cache_write_tokens,
        "PromptCacheSavingsUSD": metrics.prompt_cache_saved_usd,
    });
    document(timestamp_ms, directives, level, values)
}

/// The X-Ray trace header of the invocation in progress. `lambda_runtime` sets
/// `_X_AMZN_TRACE_ID` for each event when it handles one at a time (Lambda's default; with
/// `AWS_LAMBDA_MAX_CONCURRENCY` above 1 it does not, and records go without the field).
pub fn current_trace_id() -> Option<String> {
    std::env::var("_X_AMZN_TRACE_ID")
        .ok()
        .filter(|id| !id.is_empty())
}

/// Writes EMF lines to stdout, where the Lambda runtime ships them to CloudWatch Logs. They do
/// not go through `tracing`: the log filter must not decide whether metrics exist.
#[derive(Debug, Clone)]
pub struct EmfStdout {
    namespace: String,
    level: &'static str,
}

impl EmfStdout {
    /// `log_level` is the function's application log level (`AWS_LAMBDA_LOG_LEVEL`).
    pub fn new(namespace: impl Into<String>, log_level: Option<&str>) -> Self {
        Self {
            namespace: namespace.into(),
            level: metrics_level(log_level),
        }
    }

    pub fn line(&self, metrics: &RequestMetrics) -> String {
        self.render_line(|namespace, level, timestamp_ms| {
            render(namespace, level, metrics, timestamp_ms)
        })
    }

    /// A document rendered with this writer's namespace and level, stamped now, as one line,
    /// with the invocation's X-Ray trace id (`xrayTraceId`, the field the runtime's log lines
    /// carry too), so an operator goes from a metric's record to the request's trace and logs.
    pub(crate) fn render_line(&self, render: impl FnOnce(&str, &str, i64) -> Value) -> String {
        let mut doc = render(&self.namespace, self.level, Utc::now().timestamp_millis());
        if let (Some(doc), Some(trace_id)) = (doc.as_object_mut(), current_trace_id()) {
            doc.insert("xrayTraceId".to_owned(), Value::String(trace_id));
        }
        doc.to_string()
    }

    /// Writes a line to stdout. A metric that cannot be written must not fail the caller.
    pub fn write_line(line: &str) {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

impl MetricsSink for EmfStdout {
    fn publish(&self, metrics: &RequestMetrics) {
        Self::write_line(&self.line(metrics));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::routing::Route;

    fn answered() -> RequestMetrics {
        RequestMetrics {
            model_id: Some("m".into()),
            route: Some(Route::Provisioned),
            cache: Some(CacheState::Miss),
            latency_ms: 12,
            input_tokens: 10,
            output_tokens: 5,
            on_demand_equivalent_usd: 0.5,
            spilled_over: false,
            ..RequestMetrics::refused(200, 12)
        }
    }

    #[test]
    fn renders_every_declared_metric_by_model() {
        let doc = render("Custom/Bedrock", "INFO", &answered(), 1_700_000_000_000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Custom/Bedrock");
        assert_eq!(directive["Dimensions"][0][0], "ModelId");
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} has no value");
        }
        assert_eq!(doc["TokensProcessed"], 15);
        assert_eq!(doc["CacheHit"], 0);
        assert_eq!(doc["Route"], "provisioned");
        assert_eq!(doc["OnDemandEquivalentUSD"], 0.5);
        assert_eq!(doc["EstimatedCostUSD"], 0.0);
    }

    #[test]
    fn totals_need_no_dimension_and_tokens_carry_the_route() {
        let doc = render("Custom/Bedrock", "INFO", &answered(), 0);
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 3);
        assert_eq!(directives[1]["Dimensions"], json!([[]]));
        assert_eq!(directives[2]["Dimensions"], json!([["ModelId", "Route"]]));
        for directive in directives {
            assert_eq!(directive["Namespace"], "Custom/Bedrock");
            for m in directive["Metrics"].as_array().unwrap() {
                assert!(doc[m["Name"].as_str().unwrap()].is_number());
            }
        }
        // Without a route (a hit, a refusal) no dimension may be missing: no route directive.
        let refused = render("n", "INFO", &RequestMetrics::refused(429, 3), 0);
        assert_eq!(
            refused["_aws"]["CloudWatchMetrics"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn refused_and_failed_requests_count_by_class() {
        let throttled = render("n", "INFO", &RequestMetrics::refused(429, 3), 0);
        assert_eq!(throttled["ModelId"], NO_MODEL);
        assert_eq!(
            (
                throttled["Throttles"].as_u64(),
                throttled["ServerErrors"].as_u64()
            ),
            (Some(1), Some(0))
        );
        let spilled = RequestMetrics {
            spilled_over: true,
            ..RequestMetrics::refused(504, 3)
        };
        let doc = render("n", "INFO", &spilled, 0);
        assert_eq!(
            (doc["Timeouts"].as_u64(), doc["Spillovers"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(
            render("n", "INFO", &RequestMetrics::refused(502, 1), 0)["ServerErrors"],
            1
        );
        assert_eq!(
            render("n", "INFO", &RequestMetrics::refused(400, 1), 0)["ClientErrors"],
            1
        );
    }

    #[test]
    fn metric_lines_pass_lambdas_log_level_filter() {
        assert_eq!(metrics_level(None), "INFO");
        assert_eq!(metrics_level(Some("debug")), "INFO");
        assert_eq!(metrics_level(Some("WARN")), "WARN");
        assert_eq!(metrics_level(Some("error")), "ERROR");
        assert_eq!(metrics_level(Some("nonsense")), "INFO");
        let line = EmfStdout::new("n", Some("ERROR")).line(&answered());
        let doc: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["level"], "ERROR");
    }
}
