//! ListMetrics: its filters, checked, and its page tokens.

use super::doc::{Doc, Fields};
use super::error::CwError;

/// Metrics in one ListMetrics page.
pub const LIST_PAGE: usize = 500;
/// ListMetrics' filters.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    /// A name, and optionally the value it must have.
    pub dimensions: Vec<(String, Option<String>)>,
    pub recently_active: bool,
}

/// ListMetricsInput, checked.
pub fn parse_list(doc: &Doc) -> Result<(ListFilter, usize), CwError> {
    let input = Fields::root(doc)?;
    let mut filter = ListFilter {
        namespace: input.string("Namespace")?.map(str::to_owned),
        metric_name: input.string("MetricName")?.map(str::to_owned),
        ..ListFilter::default()
    };
    let dimensions = input.list("Dimensions")?.unwrap_or(&[]);
    if dimensions.len() > 10 {
        return Err(CwError::too_many("Dimensions", 10));
    }
    for (i, dimension) in dimensions.iter().enumerate() {
        let path = format!("Dimensions.member.{}", i + 1);
        let dimension = Fields::at(dimension, &path)?;
        let name = dimension
            .string("Name")?
            .ok_or_else(|| CwError::missing(&format!("{path}.Name")))?;
        filter.dimensions.push((
            name.to_owned(),
            dimension.string("Value")?.map(str::to_owned),
        ));
    }
    match input.string("RecentlyActive")? {
        None => {}
        Some("PT3H") => filter.recently_active = true,
        Some(other) => return Err(CwError::invalid_value_for("RecentlyActive", other)),
    }
    let offset = match input.string("NextToken")? {
        None => 0,
        Some(token) => parse_token(token)
            .ok_or_else(|| CwError::invalid_value("Request parameter NextToken is invalid"))?,
    };
    Ok((filter, offset))
}

/// A page token: the offset of the page's first metric, made opaque enough not to be mistaken
/// for a number.
pub fn page_token(offset: usize) -> String {
    format!("lm1-{offset:08x}")
}

fn parse_token(token: &str) -> Option<usize> {
    usize::from_str_radix(token.strip_prefix("lm1-")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::datum::{Datum, MetricKey, Point, Sample};
    use crate::cloudwatch::store::{Metrics, RECENT_MS};

    const NOW: i64 = 1_750_000_000_000;

    #[test]
    fn list_filters_by_namespace_name_and_dimensions() {
        let metrics = Metrics::default();
        let key = |ns: &str, name: &str, dims: &[(&str, &str)]| {
            MetricKey::new(
                ns,
                name,
                dims.iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let point = Point {
            timestamp_ms: NOW,
            unit: "None",
            sample: Sample::Value(1.0),
        };
        for k in [
            key("A", "Latency", &[("ModelId", "x")]),
            key("A", "Latency", &[("ModelId", "y"), ("Route", "pt")]),
            key("A", "Requests", &[]),
            key("B", "Latency", &[]),
        ] {
            metrics.put(
                vec![Datum {
                    key: k,
                    point: point.clone(),
                }],
                NOW,
            );
        }
        let names = |filter: ListFilter| -> Vec<String> {
            metrics
                .list(&filter, NOW)
                .into_iter()
                .map(|k| format!("{}/{}/{}", k.namespace, k.name, k.dimensions.len()))
                .collect()
        };
        assert_eq!(
            names(ListFilter {
                namespace: Some("A".into()),
                ..ListFilter::default()
            }),
            ["A/Latency/1", "A/Latency/2", "A/Requests/0"]
        );
        assert_eq!(
            names(ListFilter {
                dimensions: vec![("ModelId".into(), None)],
                ..ListFilter::default()
            }),
            ["A/Latency/1", "A/Latency/2"]
        );
        assert_eq!(
            names(ListFilter {
                dimensions: vec![("ModelId".into(), Some("y".into()))],
                ..ListFilter::default()
            }),
            ["A/Latency/2"]
        );
        assert!(metrics
            .list(
                &ListFilter {
                    recently_active: true,
                    ..ListFilter::default()
                },
                NOW + RECENT_MS + 1
            )
            .is_empty());
        assert_eq!(parse_token(&page_token(500)), Some(500));
        assert_eq!(parse_token("500"), None);
    }
}
