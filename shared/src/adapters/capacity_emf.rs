//! The capacity function's metrics in CloudWatch Embedded Metric Format: one line per model a
//! run acted on, by `ModelId`, counting `Created`, `Deleted`, `Adopted`, `Failed` and
//! `QuotaRefused`.

use serde_json::{json, Value};

use super::emf::{directive, document, EmfStdout};
use domain::capacity::CapacityCounts;
use domain::ports::CapacityMetricsSink;

/// The EMF document of one model's counts.
pub fn render(namespace: &str, level: &str, counts: &CapacityCounts, timestamp_ms: i64) -> Value {
    let metrics = [
        ("Created", "Count"),
        ("Deleted", "Count"),
        ("Adopted", "Count"),
        ("Failed", "Count"),
        ("QuotaRefused", "Count"),
    ];
    document(
        timestamp_ms,
        vec![directive(namespace, &["ModelId"], &metrics)],
        level,
        json!({
            "ModelId": counts.model_id,
            "Created": counts.created,
            "Deleted": counts.deleted,
            "Adopted": counts.adopted,
            "Failed": counts.failed,
            "QuotaRefused": counts.quota_refused,
        }),
    )
}

/// Writes the lines to stdout, outside the log filter, as [`EmfStdout`] does.
#[derive(Debug, Clone)]
pub struct CapacityEmf {
    emf: EmfStdout,
}

impl CapacityEmf {
    /// `log_level` is the function's application log level (`AWS_LAMBDA_LOG_LEVEL`).
    pub fn new(namespace: impl Into<String>, log_level: Option<&str>) -> Self {
        Self {
            emf: EmfStdout::new(namespace, log_level),
        }
    }

    pub fn line(&self, counts: &CapacityCounts) -> String {
        self.emf.render_line(|namespace, level, timestamp_ms| {
            render(namespace, level, counts, timestamp_ms)
        })
    }
}

impl CapacityMetricsSink for CapacityEmf {
    fn publish(&self, counts: &CapacityCounts) {
        EmfStdout::write_line(&self.line(counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::capacity::CapacityAction;

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
