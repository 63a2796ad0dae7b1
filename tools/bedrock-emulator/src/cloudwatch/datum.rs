//! Metric data as CloudWatch keeps it: datums per namespace, metric name and dimension set
//! (dimension order irrelevant), each with its unit and its value(s).

use super::doc::Doc;

/// A metric's identity: its dimensions sorted by name, so that their order never matters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

impl MetricKey {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        mut dimensions: Vec<(String, String)>,
    ) -> Self {
        dimensions.sort();
        Self {
            namespace: namespace.into(),
            name: name.into(),
            dimensions,
        }
    }

    /// `Metric` as CloudWatch answers it.
    pub fn to_doc(&self) -> Doc {
        Doc::structure([
            ("Namespace", Some(Doc::text(&self.namespace))),
            ("MetricName", Some(Doc::text(&self.name))),
            ("Dimensions", Some(dimensions_doc(&self.dimensions))),
        ])
    }
}

pub fn dimensions_doc(dimensions: &[(String, String)]) -> Doc {
    Doc::List(
        dimensions
            .iter()
            .map(|(name, value)| {
                Doc::structure([
                    ("Name", Some(Doc::text(name))),
                    ("Value", Some(Doc::text(value))),
                ])
            })
            .collect(),
    )
}

/// What one datum holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Value(f64),
    /// Distinct values with the number of times each occurred.
    Values(Vec<(f64, f64)>),
    Set {
        sample_count: f64,
        sum: f64,
        minimum: f64,
        maximum: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Epoch milliseconds, truncated to the datum's storage resolution (the minute, or the
    /// second for high-resolution datums).
    pub timestamp_ms: i64,
    pub unit: &'static str,
    pub sample: Sample,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub key: MetricKey,
    pub point: Point,
}
