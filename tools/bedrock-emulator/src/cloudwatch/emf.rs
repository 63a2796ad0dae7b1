//! CloudWatch Embedded Metric Format: the metrics CloudWatch Logs extracts from a log line whose
//! JSON object has an `_aws.CloudWatchMetrics` directive. Each directive names a namespace,
//! dimension sets (names of the object's string members) and metrics (names of its numeric
//! members, or arrays of numbers, with an optional unit and storage resolution); every metric is
//! recorded once for every dimension set, at `_aws.Timestamp` (epoch milliseconds).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::put::DatumInput;

/// Metrics in one directive, and values in one metric's array (EMF's limits).
const MAX_METRICS: usize = 100;
const MAX_ARRAY_VALUES: usize = 100;
/// Dimension names in one dimension set.
const MAX_SET_DIMENSIONS: usize = 30;

/// The datums of one directive, before CloudWatch's checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub namespace: String,
    pub datums: Vec<DatumInput>,
}

/// The directives of one log line: `None` if the line is no EMF document, an error if it is one
/// that CloudWatch would not extract metrics from.
pub fn parse_line(line: &str) -> Option<Result<Vec<Directive>, String>> {
    let start = line.find('{')?;
    let root = match serde_json::from_str::<Value>(line[start..].trim_end()) {
        Ok(Value::Object(root)) if root.contains_key("_aws") => root,
        // A JSON log line that is not EMF, or not JSON at all.
        Ok(_) => return None,
        Err(_) if line.contains("\"CloudWatchMetrics\"") => {
            return Some(Err("the line is not one JSON object".to_owned()))
        }
        Err(_) => return None,
    };
    Some(parse_document(&root))
}

fn parse_document(root: &Map<String, Value>) -> Result<Vec<Directive>, String> {
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("_aws must be an object")?;
    let timestamp_ms = aws
        .get("Timestamp")
        .and_then(Value::as_f64)
        .ok_or("_aws.Timestamp must be a number (epoch milliseconds)")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics must be an array")?;
    directives
        .iter()
        .enumerate()
        .map(|(i, directive)| {
            let path = format!("_aws.CloudWatchMetrics.{i}");
            parse_directive(root, directive, timestamp_ms / 1000.0, &path)
        })
        .collect()
}

fn parse_directive(
    root: &Map<String, Value>,
    directive: &Value,
    timestamp: f64,
    path: &str,
) -> Result<Directive, String> {
    let directive = directive
        .as_object()
        .ok_or_else(|| format!("{path} must be an object"))?;
    let namespace = directive
        .get("Namespace")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}.Namespace must be a string"))?;

    let mut sets: Vec<Vec<(Option<String>, Option<String>)>> = Vec::new();
    for (s, set) in directive
        .get("Dimensions")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path}.Dimensions must be an array of dimension sets"))?
        .iter()
        .enumerate()
    {
        let names = set
            .as_array()
            .ok_or_else(|| format!("{path}.Dimensions.{s} must be an array of names"))?;
        if names.len() > MAX_SET_DIMENSIONS {
            return Err(format!(
                "{path}.Dimensions.{s} has {} dimensions, more than {MAX_SET_DIMENSIONS}",
                names.len()
            ));
        }
        let mut dimensions = Vec::with_capacity(names.len());
        for name in names {
            let name = name
                .as_str()
                .ok_or_else(|| format!("{path}.Dimensions.{s}: dimension names are strings"))?;
            let value = root
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("dimension {name} has no string member in the document"))?;
            dimensions.push((Some(name.to_owned()), Some(value.to_owned())));
        }
        sets.push(dimensions);
    }
    if sets.is_empty() {
        // No dimension set: the metrics are recorded without dimensions.
        sets.push(Vec::new());
    }

    let metrics = directive
        .get("Metrics")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path}.Metrics must be an array"))?;
    if metrics.len() > MAX_METRICS {
        return Err(format!(
            "{path}.Metrics has {} metrics, more than {MAX_METRICS}",
            metrics.len()
        ));
    }
    let mut datums = Vec::new();
    for (m, metric) in metrics.iter().enumerate() {
        let metric_path = format!("{path}.Metrics.{m}");
        let metric = metric
            .as_object()
            .ok_or_else(|| format!("{metric_path} must be an object"))?;
        let name = metric
            .get("Name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{metric_path}.Name must be a string"))?;
        let unit = match metric.get("Unit") {
            None | Some(Value::Null) => None,
            Some(Value::String(unit)) => Some(unit.clone()),
            Some(_) => return Err(format!("{metric_path}.Unit must be a string")),
        };
        let storage_resolution = match metric.get("StorageResolution") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| format!("{metric_path}.StorageResolution must be 1 or 60"))?,
            ),
        };
        let (value, values, counts) = metric_value(root.get(name))
            .ok_or_else(|| format!("metric {name} has no numeric member in the document"))??;
        for dimensions in &sets {
            datums.push(DatumInput {
                path: metric_path.clone(),
                metric_name: Some(name.to_owned()),
                dimensions: dimensions.clone(),
                timestamp: Some(timestamp),
                value,
                values: values.clone(),
                counts: counts.clone(),
                unit: unit.clone(),
                storage_resolution,
                statistic_values: None,
            });
        }
    }
    Ok(Directive {
        namespace: namespace.to_owned(),
        datums,
    })
}

type MetricValue = (Option<f64>, Vec<f64>, Vec<f64>);

/// A number is one value; an array of numbers becomes distinct values with their counts.
fn metric_value(member: Option<&Value>) -> Option<Result<MetricValue, String>> {
    match member? {
        Value::Number(n) => Some(Ok((n.as_f64(), Vec::new(), Vec::new()))),
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_VALUES {
                return Some(Err(format!(
                    "a metric array holds at most {MAX_ARRAY_VALUES} values, got {}",
                    items.len()
                )));
            }
            let mut counts: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
            for item in items {
                let v = item.as_f64()?;
                counts.entry(v.to_bits()).or_insert((v, 0.0)).1 += 1.0;
            }
            if counts.is_empty() {
                return None;
            }
            let (values, counts) = counts.into_values().unzip();
            Some(Ok((None, values, counts)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn directives(line: &str) -> Vec<Directive> {
        parse_line(line).expect("an EMF line").expect("valid EMF")
    }

    #[test]
    fn the_functions_emf_line_becomes_one_datum_per_metric_and_dimension_set() {
        let line = json!({
            "_aws": {"Timestamp": 1_750_000_000_123_i64, "CloudWatchMetrics": [{
                "Namespace": "Custom/Bedrock",
                "Dimensions": [["ModelId"], ["ModelId", "Route"], []],
                "Metrics": [
                    {"Name": "Requests", "Unit": "Count"},
                    {"Name": "InferenceLatency", "Unit": "Milliseconds", "StorageResolution": 1},
                ],
            }]},
            "level": "INFO",
            "ModelId": "m",
            "Route": "on-demand",
            "Tier": null,
            "Requests": 1,
            "InferenceLatency": [12, 12, 30],
        })
        .to_string();
        let parsed = directives(&line);
        assert_eq!(parsed.len(), 1);
        let datums = &parsed[0].datums;
        assert_eq!(parsed[0].namespace, "Custom/Bedrock");
        assert_eq!(datums.len(), 6);
        assert_eq!(datums[0].metric_name.as_deref(), Some("Requests"));
        assert_eq!(
            datums[0].dimensions,
            [(Some("ModelId".into()), Some("m".into()))]
        );
        assert_eq!(datums[1].dimensions.len(), 2);
        assert!(datums[2].dimensions.is_empty());
        assert_eq!(
            (datums[0].value, datums[0].unit.as_deref()),
            (Some(1.0), Some("Count"))
        );
        assert_eq!(datums[0].timestamp, Some(1_750_000_000.123));
        let latency = &datums[3];
        assert_eq!(
            (latency.value, &latency.values, &latency.counts),
            (None, &vec![12.0, 30.0], &vec![2.0, 1.0])
        );
        assert_eq!(latency.storage_resolution, Some(1));
    }

    #[test]
    fn other_lines_are_not_emf_and_broken_emf_is_reported() {
        for line in [
            "",
            "Compiling invoke-with-cache",
            r#"{"level":"INFO","message":"served"}"#,
            "[1, 2]",
        ] {
            assert!(parse_line(line).is_none(), "{line}");
        }
        // A prefix before the object (a log prefix) is skipped.
        let prefixed = format!(
            "2025-06-01T00:00:00Z {}",
            json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
                {"Namespace": "N", "Dimensions": [], "Metrics": [{"Name": "X"}]}]}, "X": 2})
        );
        assert_eq!(directives(&prefixed)[0].datums[0].value, Some(2.0));
        let broken = [
            (
                json!({"_aws": {"CloudWatchMetrics": []}}),
                "_aws.Timestamp must be a number (epoch milliseconds)",
            ),
            (
                json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
                    {"Namespace": "N", "Dimensions": [["ModelId"]], "Metrics": [{"Name": "X"}]}]}, "X": 1}),
                "dimension ModelId has no string member in the document",
            ),
            (
                json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
                    {"Namespace": "N", "Dimensions": [], "Metrics": [{"Name": "X"}]}]}, "X": "1"}),
                "metric X has no numeric member in the document",
            ),
        ];
        for (doc, message) in broken {
            assert_eq!(parse_line(&doc.to_string()), Some(Err(message.to_owned())));
        }
        assert_eq!(
            parse_line(r#"{"_aws": {"CloudWatchMetrics": [ truncated"#),
            Some(Err("the line is not one JSON object".to_owned()))
        );
    }
}
