//! PutMetricData: the datums a request (or an EMF line) states, and CloudWatch's checks and
//! limits on them.

use std::collections::BTreeSet;

use super::datum::{Datum, MetricKey, Point, Sample};
use super::doc::{double, Doc, Fields};
use super::error::CwError;

/// Datums in one PutMetricData request (across `MetricData` and `EntityMetricData`).
pub const MAX_DATUMS: usize = 1000;
/// Dimensions of one metric.
pub const MAX_DIMENSIONS: usize = 30;
/// Distinct values of one datum's `Values`.
pub const MAX_VALUES: usize = 150;
/// A datum's timestamp may be this far in the past…
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// …and this far in the future.
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;
/// CloudWatch's units (`StandardUnit`).
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// A datum as the request (or an EMF line) states it, before CloudWatch's checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatumInput {
    /// Where it sits in the request (`MetricData.member.3`), for error messages.
    pub path: String,
    pub metric_name: Option<String>,
    pub dimensions: Vec<(Option<String>, Option<String>)>,
    /// Epoch seconds.
    pub timestamp: Option<f64>,
    pub value: Option<f64>,
    pub statistic_values: Option<StatisticSetInput>,
    pub values: Vec<f64>,
    pub counts: Vec<f64>,
    pub unit: Option<String>,
    pub storage_resolution: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatisticSetInput {
    pub sample_count: Option<f64>,
    pub sum: Option<f64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
}

/// The members of PutMetricDataInput: `Namespace`, `MetricData` and the `MetricData` of each
/// `EntityMetricData` (whose entities the emulator does not keep).
pub fn parse_put(doc: &Doc) -> Result<(Option<String>, Vec<DatumInput>), CwError> {
    let input = Fields::root(doc)?;
    let namespace = input.string("Namespace")?.map(str::to_owned);
    let mut datums = Vec::new();
    if let Some(items) = input.list("MetricData")? {
        for (i, item) in items.iter().enumerate() {
            datums.push(parse_datum(item, &format!("MetricData.member.{}", i + 1))?);
        }
    }
    if let Some(entities) = input.list("EntityMetricData")? {
        for (e, entity) in entities.iter().enumerate() {
            let path = format!("EntityMetricData.member.{}", e + 1);
            let entity = Fields::at(entity, &path)?;
            for (i, item) in entity.list("MetricData")?.unwrap_or(&[]).iter().enumerate() {
                let path = format!("{path}.MetricData.member.{}", i + 1);
                datums.push(parse_datum(item, &path)?);
            }
        }
    }
    Ok((namespace, datums))
}

fn parse_datum(item: &Doc, path: &str) -> Result<DatumInput, CwError> {
    let datum = Fields::at(item, path)?;
    let mut dimensions = Vec::new();
    for (i, dimension) in datum.list("Dimensions")?.unwrap_or(&[]).iter().enumerate() {
        let dimension_path = format!("{path}.Dimensions.member.{}", i + 1);
        let dimension = Fields::at(dimension, &dimension_path)?;
        dimensions.push((
            dimension.string("Name")?.map(str::to_owned),
            dimension.string("Value")?.map(str::to_owned),
        ));
    }
    let statistic_values = match datum.get("StatisticValues") {
        None => None,
        Some(set) => {
            let set_path = datum.member_path("StatisticValues");
            let set = Fields::at(set, &set_path)?;
            Some(StatisticSetInput {
                sample_count: set.double("SampleCount")?,
                sum: set.double("Sum")?,
                minimum: set.double("Minimum")?,
                maximum: set.double("Maximum")?,
            })
        }
    };
    let doubles = |name: &str| -> Result<Vec<f64>, CwError> {
        let list_path = datum.member_path(name);
        datum
            .list(name)?
            .unwrap_or(&[])
            .iter()
            .map(|value| double(&list_path, value))
            .collect()
    };
    Ok(DatumInput {
        path: path.to_owned(),
        metric_name: datum.string("MetricName")?.map(str::to_owned),
        dimensions,
        timestamp: datum.timestamp("Timestamp")?,
        value: datum.double("Value")?,
        statistic_values,
        values: doubles("Values")?,
        counts: doubles("Counts")?,
        unit: datum.string("Unit")?.map(str::to_owned),
        storage_resolution: datum.integer("StorageResolution")?,
    })
}

/// A double as Java prints it, which is how CloudWatch quotes values in its messages.
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if v == 0.0 || (1e-3..1e7).contains(&v.abs()) {
        format!("{v:?}")
    } else {
        let formatted = format!("{v:E}");
        match formatted.split_once('E') {
            Some((mantissa, exponent)) if !mantissa.contains('.') => {
                format!("{mantissa}.0E{exponent}")
            }
            _ => formatted,
        }
    }
}

/// Values must be finite and within ±2^360, and 0 or at least 2^-360 in magnitude.
fn check_value(path: &str, v: f64) -> Result<f64, CwError> {
    let max = 2f64.powi(360);
    let min = 2f64.powi(-360);
    if !v.is_finite() || v.abs() > max || (v != 0.0 && v.abs() < min) {
        return Err(CwError::invalid_value_for(path, java_double(v)));
    }
    Ok(v)
}

pub fn check_namespace(namespace: Option<&str>) -> Result<&str, CwError> {
    let namespace = namespace.ok_or_else(|| CwError::missing("Namespace"))?;
    if namespace.is_empty()
        || namespace.len() > 255
        || namespace.starts_with(':')
        || namespace.starts_with("AWS/")
        || !namespace
            .chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        return Err(CwError::invalid_value_for("Namespace", namespace));
    }
    Ok(namespace)
}

pub fn check_unit(path: &str, unit: Option<&str>) -> Result<&'static str, CwError> {
    match unit {
        None => Ok("None"),
        Some(unit) => UNITS
            .iter()
            .find(|u| **u == unit)
            .copied()
            .ok_or_else(|| CwError::invalid_value_for(path, unit)),
    }
}

fn check_name(path: &str, name: Option<&str>, max: usize) -> Result<String, CwError> {
    let name = name.ok_or_else(|| CwError::missing(path))?;
    if name.is_empty()
        || name.len() > max
        || name.trim().is_empty()
        || name.chars().any(|c| c.is_ascii_control())
    {
        return Err(CwError::invalid_value_for(path, name));
    }
    Ok(name.to_owned())
}

/// A dimension list, checked as CloudWatch checks it: at most 30, names and values required,
/// no name starting with a colon, no name twice.
pub fn check_dimensions(
    path: &str,
    dimensions: &[(Option<String>, Option<String>)],
) -> Result<Vec<(String, String)>, CwError> {
    let list_path = format!("{path}.Dimensions");
    if dimensions.len() > MAX_DIMENSIONS {
        return Err(CwError::too_many(&list_path, MAX_DIMENSIONS));
    }
    let mut checked = Vec::with_capacity(dimensions.len());
    let mut names = BTreeSet::new();
    for (i, (name, value)) in dimensions.iter().enumerate() {
        let member = format!("{list_path}.member.{}", i + 1);
        let name = check_name(&format!("{member}.Name"), name.as_deref(), 255)?;
        if name.starts_with(':') || !name.is_ascii() {
            return Err(CwError::invalid_value_for(&format!("{member}.Name"), name));
        }
        let value = check_name(&format!("{member}.Value"), value.as_deref(), 1024)?;
        if !names.insert(name.clone()) {
            return Err(CwError::invalid_value(format!(
                "The collection {list_path} must not contain duplicate dimension names ({name})."
            )));
        }
        checked.push((name, value));
    }
    Ok(checked)
}

/// Checks a whole PutMetricData request (or the datums of one EMF line) at `now_ms`.
pub fn check_put(
    namespace: Option<&str>,
    inputs: &[DatumInput],
    now_ms: i64,
) -> Result<Vec<Datum>, CwError> {
    let namespace = check_namespace(namespace)?;
    if inputs.is_empty() {
        return Err(CwError::missing("MetricData"));
    }
    if inputs.len() > MAX_DATUMS {
        return Err(CwError::too_many("MetricData", MAX_DATUMS));
    }
    inputs
        .iter()
        .map(|input| check_datum(namespace, input, now_ms))
        .collect()
}

fn check_datum(namespace: &str, input: &DatumInput, now_ms: i64) -> Result<Datum, CwError> {
    let p = &input.path;
    let name = check_name(
        &format!("{p}.MetricName"),
        input.metric_name.as_deref(),
        255,
    )?;
    let dimensions = check_dimensions(p, &input.dimensions)?;
    let unit = check_unit(&format!("{p}.Unit"), input.unit.as_deref())?;
    let resolution_ms = match input.storage_resolution {
        None | Some(60) => 60_000,
        Some(1) => 1000,
        Some(other) => {
            return Err(CwError::invalid_value_for(
                &format!("{p}.StorageResolution"),
                other,
            ))
        }
    };
    let timestamp_ms = match input.timestamp {
        None => now_ms,
        Some(seconds) => (seconds * 1000.0).floor() as i64,
    };
    if timestamp_ms < now_ms - MAX_AGE_MS {
        return Err(CwError::invalid_value(format!(
            "The parameter {p}.Timestamp must specify a time no more than two weeks in the past."
        )));
    }
    if timestamp_ms > now_ms + MAX_AHEAD_MS {
        return Err(CwError::invalid_value(format!(
            "The parameter {p}.Timestamp must specify a time no more than two hours in the future."
        )));
    }
    let sample = check_sample(input)?;
    Ok(Datum {
        key: MetricKey::new(namespace, name, dimensions),
        point: Point {
            timestamp_ms: timestamp_ms.div_euclid(resolution_ms) * resolution_ms,
            unit,
            sample,
        },
    })
}

fn check_sample(input: &DatumInput) -> Result<Sample, CwError> {
    let p = &input.path;
    let exclusive = |a: &str, b: &str| {
        format!("The parameters {p}.{a} and {p}.{b} are mutually exclusive and you have specified both.")
    };
    let has_values = !input.values.is_empty() || !input.counts.is_empty();
    match (input.value, &input.statistic_values, has_values) {
        (Some(_), _, true) => Err(CwError::invalid_value(exclusive("Value", "Values"))),
        (Some(_), Some(_), _) => Err(CwError::invalid_combination(exclusive(
            "Value",
            "StatisticValues",
        ))),
        (None, Some(_), true) => Err(CwError::invalid_combination(exclusive(
            "StatisticValues",
            "Values",
        ))),
        (None, None, false) => Err(CwError::missing(&format!("{p}.Value"))),
        (Some(v), None, false) => Ok(Sample::Value(check_value(&format!("{p}.Value"), v)?)),
        (None, Some(set), false) => {
            let field = |name: &str, v: Option<f64>| {
                let path = format!("{p}.StatisticValues.{name}");
                v.ok_or_else(|| CwError::missing(&path))
                    .and_then(|v| check_value(&path, v))
            };
            let sample_count = field("SampleCount", set.sample_count)?;
            let sum = field("Sum", set.sum)?;
            let minimum = field("Minimum", set.minimum)?;
            let maximum = field("Maximum", set.maximum)?;
            Ok(Sample::Set {
                sample_count,
                sum,
                minimum,
                maximum,
            })
        }
        (None, None, true) => {
            if input.values.len() > MAX_VALUES {
                return Err(CwError::too_many(&format!("{p}.Values"), MAX_VALUES));
            }
            if !input.counts.is_empty() && input.counts.len() != input.values.len() {
                return Err(CwError::invalid_value(format!(
                    "The parameters {p}.Values and {p}.Counts must be of the same size."
                )));
            }
            let mut pairs = Vec::with_capacity(input.values.len());
            for (i, v) in input.values.iter().enumerate() {
                let v = check_value(&format!("{p}.Values.member.{}", i + 1), *v)?;
                let count_path = format!("{p}.Counts.member.{}", i + 1);
                let count = match input.counts.get(i) {
                    None => 1.0,
                    Some(c) if *c < 0.0 => {
                        return Err(CwError::invalid_value_for(&count_path, java_double(*c)))
                    }
                    Some(c) => check_value(&count_path, *c)?,
                };
                pairs.push((v, count));
            }
            Ok(Sample::Values(pairs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000_000;

    fn datum(name: &str) -> DatumInput {
        DatumInput {
            path: "MetricData.member.1".into(),
            metric_name: Some(name.into()),
            value: Some(1.0),
            ..DatumInput::default()
        }
    }

    fn refused(input: DatumInput) -> CwError {
        check_put(Some("App"), &[input], NOW).unwrap_err()
    }

    #[test]
    fn dimension_order_does_not_matter_and_timestamps_truncate_to_the_resolution() {
        let dims = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(n, v)| (Some(n.to_string()), Some(v.to_string())))
                .collect::<Vec<_>>()
        };
        let a = DatumInput {
            dimensions: dims(&[("B", "2"), ("A", "1")]),
            timestamp: Some((NOW / 1000) as f64 + 59.9),
            ..datum("Latency")
        };
        let b = DatumInput {
            dimensions: dims(&[("A", "1"), ("B", "2")]),
            storage_resolution: Some(1),
            timestamp: Some((NOW / 1000) as f64 + 59.9),
            ..datum("Latency")
        };
        let datums = check_put(Some("App"), &[a, b], NOW).unwrap();
        assert_eq!(datums[0].key, datums[1].key);
        assert_eq!(datums[0].point.timestamp_ms % 60_000, 0);
        assert_eq!(datums[1].point.timestamp_ms, NOW + 59_000);
        assert_eq!(datums[0].point.unit, "None");
    }

    #[test]
    fn limits_and_combinations_are_refused_with_cloudwatch_codes() {
        let cases: Vec<(DatumInput, &str, &str)> = vec![
            (
                DatumInput {
                    value: Some(f64::NAN),
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The value NaN for parameter MetricData.member.1.Value is invalid.",
            ),
            (
                DatumInput {
                    value: Some(f64::NEG_INFINITY),
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The value -Infinity for parameter MetricData.member.1.Value is invalid.",
            ),
            (
                DatumInput {
                    value: Some(2f64.powi(361)),
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The value 4.6970851655476665E108 for parameter MetricData.member.1.Value is invalid.",
            ),
            (
                DatumInput {
                    value: None,
                    values: vec![1.0; 151],
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The collection MetricData.member.1.Values must not have a size greater than 150.",
            ),
            (
                DatumInput {
                    value: None,
                    values: vec![1.0, 2.0],
                    counts: vec![1.0],
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The parameters MetricData.member.1.Values and MetricData.member.1.Counts must be of the same size.",
            ),
            (
                DatumInput {
                    values: vec![1.0],
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The parameters MetricData.member.1.Value and MetricData.member.1.Values are mutually exclusive and you have specified both.",
            ),
            (
                DatumInput {
                    statistic_values: Some(StatisticSetInput::default()),
                    ..datum("m")
                },
                "InvalidParameterCombination",
                "The parameters MetricData.member.1.Value and MetricData.member.1.StatisticValues are mutually exclusive and you have specified both.",
            ),
            (
                DatumInput {
                    value: None,
                    statistic_values: Some(StatisticSetInput {
                        sample_count: Some(2.0),
                        sum: Some(3.0),
                        minimum: Some(1.0),
                        maximum: None,
                    }),
                    ..datum("m")
                },
                "MissingParameter",
                "The parameter MetricData.member.1.StatisticValues.Maximum is required.",
            ),
            (
                DatumInput {
                    dimensions: (0..31)
                        .map(|i| (Some(format!("D{i}")), Some("v".into())))
                        .collect(),
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The collection MetricData.member.1.Dimensions must not have a size greater than 30.",
            ),
            (
                DatumInput {
                    metric_name: None,
                    ..datum("m")
                },
                "MissingParameter",
                "The parameter MetricData.member.1.MetricName is required.",
            ),
            (
                DatumInput {
                    unit: Some("Parsecs".into()),
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The value Parsecs for parameter MetricData.member.1.Unit is invalid.",
            ),
            (
                DatumInput {
                    storage_resolution: Some(5),
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The value 5 for parameter MetricData.member.1.StorageResolution is invalid.",
            ),
            (
                DatumInput {
                    timestamp: Some(((NOW - MAX_AGE_MS) / 1000 - 1) as f64),
                    ..datum("m")
                },
                "InvalidParameterValue",
                "The parameter MetricData.member.1.Timestamp must specify a time no more than two weeks in the past.",
            ),
        ];
        for (input, code, message) in cases {
            let error = refused(input);
            assert_eq!((error.code, error.message.as_str()), (code, message));
        }
        let error = check_put(Some("AWS/Lambda"), &[datum("m")], NOW).unwrap_err();
        assert_eq!(
            error.message,
            "The value AWS/Lambda for parameter Namespace is invalid."
        );
        let error = check_put(None, &[datum("m")], NOW).unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            ("MissingParameter", "The parameter Namespace is required.")
        );
        let many = vec![datum("m"); MAX_DATUMS + 1];
        let error = check_put(Some("App"), &many, NOW).unwrap_err();
        assert_eq!(
            error.message,
            "The collection MetricData must not have a size greater than 1000."
        );
        assert_eq!(
            check_put(Some("App"), &many[..MAX_DATUMS], NOW)
                .unwrap()
                .len(),
            1000
        );
    }
}
