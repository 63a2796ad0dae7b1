//! The capacity function's metrics in CloudWatch Embedded Metric Format: one line per model a
//! run acted on, by `ModelId`, counting `Created`, `Deleted`, `Adopted`, `Failed` and
//! `QuotaRefused`.

use std::io::Write;

use chrono::Utc;
use serde_json::{json, Value};

use super::emf::metrics_level;
use crate::domain::capacity::CapacityCounts;
use crate::ports::CapacityMetricsSink;

/// The EMF document of one model's counts.
pub fn render(namespace: &str, level: &str, counts: &CapacityCounts, timestamp_ms: i64) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["ModelId"]],
                "Metrics": [
                    {"Name": "Created", "Unit": "Count"},
                    {"Name": "Deleted", "Unit": "Count"},
                    {"Name": "Adopted", "Unit": "Count"},
                    {"Name": "Failed", "Unit": "Count"},
                    {"Name": "QuotaRefused", "Unit": "Count"}
                ]
            }]
        },
        "level": level,
        "ModelId": counts.model_id,
        "Created": counts.created,
        "Deleted": counts.deleted,
        "Adopted": counts.adopted,
        "Failed": counts.failed,
        "QuotaRefused": counts.quota_refused,
    })
}

/// Writes the lines to stdout, outside the log filter, as [`super::emf::EmfStdout`] does.
#[derive(Debug, Clone)]
pub struct CapacityEmf {
    namespace: String,
    level: &'static str,
}

impl CapacityEmf {
    /// `log_level` is the function's application log level (`AWS_LAMBDA_LOG_LEVEL`).
    pub fn new(namespace: impl Into<String>, log_level: Option<&str>) -> Self {
        Self {
            namespace: namespace.into(),
            level: metrics_level(log_level),
        }
    }

    pub fn line(&self, counts: &CapacityCounts) -> String {
        render(
            &self.namespace,
            self.level,
            counts,
            Utc::now().timestamp_millis(),
        )
        .to_string()
    }
}

impl CapacityMetricsSink for CapacityEmf {
    fn publish(&self, counts: &CapacityCounts) {
        let _ = writeln!(std::io::stdout().lock(), "{}", self.line(counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::capacity::CapacityAction;

    #[test]
    fn every_action_is_a_metric_by_model() {
        let mut counts = CapacityCounts {
            model_id: "m".into(),
            ..CapacityCounts::default()
        };
        for action in [
            CapacityAction::Created,
            CapacityAction::Deleted,
            CapacityAction::Adopted,
            CapacityAction::Failed,
            CapacityAction::QuotaRefused,
            CapacityAction::QuotaRefused,
        ] {
            counts.add(action);
        }
        let doc = render("Custom/Bedrock", "INFO", &counts, 0);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"][0][0], "ModelId");
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name}");
        }
        assert_eq!(doc["QuotaRefused"], 2);
        assert_eq!(doc["ModelId"], "m");
        let line = CapacityEmf::new("n", Some("WARN")).line(&counts);
        assert!(line.contains(r#""level":"WARN""#), "{line}");
    }
}
