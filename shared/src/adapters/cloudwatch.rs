//! CloudWatch metrics: GetMetricData and ListMetrics to read back, PutMetricData to publish.
//! Throttled and failed calls are retried by the SDK's standard retry strategy (exponential
//! backoff with jitter), `max_attempts` in all; what still fails is a [`MetricsError`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricDatum, MetricStat, ScanBy,
    StandardUnit,
};

use super::sdk_error::SdkFailure;
use domain::ports::{MetricsReader, MetricsWriter};
use domain::reporting::{Datum, MetricId, MetricsError, Query, Sample, Series};

/// Queries in one GetMetricData request.
pub const MAX_QUERIES_PER_REQUEST: usize = 500;

/// How calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudWatchRetry {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The first backoff; each further one doubles, with jitter (SDK standard mode).
    pub initial_backoff: Duration,
}

impl Default for CloudWatchRetry {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchMetrics {
    pub fn new(sdk: &aws_config::SdkConfig, retry: CloudWatchRetry) -> Self {
        let config = aws_sdk_cloudwatch::config::Builder::from(sdk)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(retry.max_attempts.max(1))
                    .with_initial_backoff(retry.initial_backoff),
            )
            .build();
        Self::from_client(aws_sdk_cloudwatch::Client::from_conf(config))
    }

    pub fn from_client(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }
}

/// Throttling (after the retries), refusals of the request itself, and the rest.
fn metrics_error<E>(error: SdkError<E>) -> MetricsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let SdkFailure { code, detail, .. } = SdkFailure::of(&error);
    match code.as_str() {
        "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => MetricsError::Throttled(detail),
        "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter"
        | "InvalidNextToken"
        | "RequestEntityTooLarge"
        | "ValidationError"
        | "AccessDenied"
        | "AccessDeniedException" => MetricsError::Refused(detail),
        _ => MetricsError::Unavailable(detail),
    }
}

fn dimension(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

fn to_datum(datum: &Datum) -> MetricDatum {
    let mut builder = MetricDatum::builder()
        .metric_name(&datum.name)
        .timestamp(DateTime::from_secs(datum.timestamp))
        .unit(StandardUnit::from(datum.unit.as_str()));
    for (name, value) in &datum.dimensions {
        builder = builder.dimensions(dimension(name, value));
    }
    match &datum.sample {
        Sample::Value(v) => builder.value(*v),
        Sample::Values { values, counts } => builder
            .set_values(Some(values.clone()))
            .set_counts((!counts.is_empty()).then(|| counts.clone())),
    }
    .build()
}

fn to_query(query: &Query) -> MetricDataQuery {
    let mut metric = Metric::builder()
        .namespace(&query.metric.namespace)
        .metric_name(&query.metric.name);
    for (name, value) in &query.metric.dimensions {
        metric = metric.dimensions(dimension(name, value));
    }
    MetricDataQuery::builder()
        .id(&query.id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric.build())
                .period(query.period_seconds)
                .stat(&query.stat)
                .build(),
        )
        .return_data(true)
        .build()
}

impl MetricsWriter for CloudWatchMetrics {
    async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<(), MetricsError> {
        self.client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(datums.iter().map(to_datum).collect()))
            .send()
            .await
            .map(drop)
            .map_err(metrics_error)
    }
}

impl MetricsReader for CloudWatchMetrics {
    async fn list(
        &self,
        namespace: &str,
        name: &str,
        dimension_names: &[&str],
    ) -> Result<Vec<MetricId>, MetricsError> {
        let mut request = self
            .client
            .list_metrics()
            .namespace(namespace)
            .metric_name(name);
        for dimension in dimension_names {
            request = request.dimensions(DimensionFilter::builder().name(*dimension).build());
        }
        let wanted: BTreeSet<&str> = dimension_names.iter().copied().collect();
        let mut pages = request.into_paginator().send();
        let mut metrics = Vec::new();
        while let Some(page) = pages.next().await {
            for metric in page.map_err(metrics_error)?.metrics() {
                let dimensions: Vec<(String, String)> = metric
                    .dimensions()
                    .iter()
                    .map(|d| {
                        (
                            d.name().unwrap_or_default().to_owned(),
                            d.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let names: BTreeSet<&str> = dimensions.iter().map(|(n, _)| n.as_str()).collect();
                if names == wanted && dimensions.len() == wanted.len() {
                    metrics.push(MetricId {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        dimensions,
                    });
                }
            }
        }
        metrics.sort();
        metrics.dedup();
        Ok(metrics)
    }

    async fn query(
        &self,
        queries: &[Query],
        start: i64,
        end: i64,
    ) -> Result<HashMap<String, Series>, MetricsError> {
        let mut series: HashMap<String, Series> = HashMap::new();
        for chunk in queries.chunks(MAX_QUERIES_PER_REQUEST) {
            let request = self
                .client
                .get_metric_data()
                .start_time(DateTime::from_secs(start))
                .end_time(DateTime::from_secs(end))
                .scan_by(ScanBy::TimestampAscending)
                .set_metric_data_queries(Some(chunk.iter().map(to_query).collect()));
            let mut pages = request.into_paginator().send();
            while let Some(page) = pages.next().await {
                for result in page.map_err(metrics_error)?.metric_data_results() {
                    let Some(id) = result.id() else { continue };
                    let points = result
                        .timestamps()
                        .iter()
                        .map(DateTime::secs)
                        .zip(result.values().iter().copied());
                    series.entry(id.to_owned()).or_default().extend(points);
                }
            }
        }
        Ok(series)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::reporting::Unit;

    #[test]
    fn datums_and_queries_become_the_sdks_shapes() {
        let datum = Datum::value(
            "CacheHitRate",
            vec![("ModelId".into(), "m".into())],
            1_750_000_200,
            62.5,
            Unit::Percent,
        );
        let sdk = to_datum(&datum);
        assert_eq!(sdk.metric_name(), Some("CacheHitRate"));
        assert_eq!(sdk.value(), Some(62.5));
        assert_eq!(sdk.unit(), Some(&StandardUnit::Percent));
        assert_eq!(sdk.timestamp().map(DateTime::secs), Some(1_750_000_200));
        assert_eq!(sdk.dimensions()[0].value(), Some("m"));
        let many = Datum {
            sample: Sample::Values {
                values: vec![1.0, 2.0],
                counts: vec![],
            },
            ..datum
        };
        let sdk = to_datum(&many);
        assert_eq!((sdk.values(), sdk.counts().len()), (&[1.0, 2.0][..], 0));

        let query = to_query(&Query {
            id: "q0".into(),
            metric: MetricId {
                namespace: "N".into(),
                name: "Requests".into(),
                dimensions: vec![("ModelId".into(), "m".into())],
            },
            stat: "Sum".into(),
            period_seconds: 300,
        });
        let stat = query.metric_stat().unwrap();
        assert_eq!(
            (query.id(), stat.stat(), stat.period()),
            (Some("q0"), Some("Sum"), Some(300))
        );
    }
}
