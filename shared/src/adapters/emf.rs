//! CloudWatch Embedded Metric Format: one JSON object a line on stdout, which CloudWatch Logs
//! turns into metrics without any API call on the request path.

use std::io::Write;

use chrono::Utc;
use serde_json::{json, Value};

use crate::domain::metrics::RequestMetrics;
use crate::ports::MetricsSink;

pub const DEFAULT_NAMESPACE: &str = "Custom/Bedrock";

/// The EMF document for one request, by `ModelId`.
pub fn render(namespace: &str, metrics: &RequestMetrics, timestamp_ms: i64) -> Value {
    let cache_hit = u8::from(metrics.cache == crate::domain::cache::CacheState::Hit);
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["ModelId"]],
                "Metrics": [
                    {"Name": "InferenceLatency", "Unit": "Milliseconds"},
                    {"Name": "InputTokens", "Unit": "Count"},
                    {"Name": "OutputTokens", "Unit": "Count"},
                    {"Name": "TokensProcessed", "Unit": "Count"},
                    {"Name": "CacheHit", "Unit": "Count"},
                    {"Name": "EstimatedCostUSD", "Unit": "None"},
                    {"Name": "EstimatedSavingsUSD", "Unit": "None"},
                    {"Name": "CacheEntryTooLarge", "Unit": "Count"}
                ]
            }]
        },
        "ModelId": metrics.model_id,
        "Route": metrics.route.map(|r| r.as_str()),
        "Tier": metrics.tier.map(|t| t.as_str()),
        "CacheState": metrics.cache.as_str(),
        "InferenceLatency": metrics.latency_ms,
        "InputTokens": metrics.input_tokens,
        "OutputTokens": metrics.output_tokens,
        "TokensProcessed": metrics.input_tokens + metrics.output_tokens,
        "CacheHit": cache_hit,
        "EstimatedCostUSD": metrics.cost_usd,
        "EstimatedSavingsUSD": metrics.saved_usd,
        "CacheEntryTooLarge": u8::from(metrics.too_large_to_cache),
    })
}

/// Writes EMF lines to stdout, where the Lambda runtime ships them to CloudWatch Logs.
#[derive(Debug, Clone)]
pub struct EmfStdout {
    namespace: String,
}

impl EmfStdout {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }
}

impl MetricsSink for EmfStdout {
    fn publish(&self, metrics: &RequestMetrics) {
        let line = render(&self.namespace, metrics, Utc::now().timestamp_millis());
        // A metric that cannot be written must not fail the request.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cache::CacheState;
    use crate::domain::routing::Route;

    #[test]
    fn renders_every_declared_metric_by_model() {
        let metrics = RequestMetrics {
            model_id: "m".into(),
            route: Some(Route::Provisioned),
            tier: None,
            cache: CacheState::Miss,
            latency_ms: 12,
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: 0.5,
            saved_usd: 0.0,
            too_large_to_cache: false,
        };
        let doc = render("Custom/Bedrock", &metrics, 1_700_000_000_000);
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
    }
}
