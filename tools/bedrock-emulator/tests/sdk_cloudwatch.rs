#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The emulator's CloudWatch through the AWS SDK for Rust (Smithy RPC v2 CBOR, by endpoint
//! alone): data read back per period, ListMetrics filters, each PutMetricData limit refused with
//! its typed error, a gzip-compressed request, the EMF feed (the emulator in-process, one per
//! test).

mod common;

use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_cloudwatch::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_cloudwatch::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricDataResult, MetricDatum, MetricStat,
    ScanBy, StandardUnit, StatisticSet, StatusCode,
};
use aws_sdk_cloudwatch::Client;
use common::Emulator;
use serde_json::{json, Value};

const NAMESPACE: &str = "Test/Emulator";

/// The start of the minute `minutes_ago` minutes back, in epoch seconds.
fn minute(minutes_ago: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now / 60 - minutes_ago) * 60
}

fn dimension(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

fn datum(name: &str, value: f64, at: i64, dimensions: &[(&str, &str)]) -> MetricDatum {
    let mut builder = MetricDatum::builder()
        .metric_name(name)
        .value(value)
        .timestamp(DateTime::from_secs(at))
        .unit(StandardUnit::Count);
    for (n, v) in dimensions {
        builder = builder.dimensions(dimension(n, v));
    }
    builder.build()
}

fn query(
    id: &str,
    name: &str,
    dimensions: &[(&str, &str)],
    period: i32,
    stat: &str,
) -> MetricDataQuery {
    let mut metric = Metric::builder().namespace(NAMESPACE).metric_name(name);
    for (n, v) in dimensions {
        metric = metric.dimensions(dimension(n, v));
    }
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric.build())
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

/// (epoch seconds, value) pairs of one result, in the order CloudWatch gave them.
fn points(result: &MetricDataResult) -> Vec<(i64, f64)> {
    assert_eq!(result.status_code(), Some(&StatusCode::Complete));
    assert_eq!(result.timestamps().len(), result.values().len());
    result
        .timestamps()
        .iter()
        .map(|t| t.secs())
        .zip(result.values().iter().copied())
        .collect()
}

async fn stack() -> (Emulator, Client) {
    let emulator = Emulator::start().await;
    let client = Client::new(&emulator.sdk_config());
    (emulator, client)
}

async fn put(
    client: &Client,
    datums: Vec<MetricDatum>,
) -> Result<(), SdkError<PutMetricDataError>> {
    client
        .put_metric_data()
        .namespace(NAMESPACE)
        .set_metric_data(Some(datums))
        .send()
        .await
        .map(|_| ())
}

/// The typed error PutMetricData refuses these datums with.
async fn refused(client: &Client, datums: Vec<MetricDatum>) -> PutMetricDataError {
    put(client, datums).await.unwrap_err().into_service_error()
}

/// PutMetricData refuses these datums as an invalid parameter value, with this message.
async fn assert_invalid_value(client: &Client, datums: Vec<MetricDatum>, message: &str) {
    let error = refused(client, datums).await;
    assert!(error.is_invalid_parameter_value_exception(), "{error:?}");
    assert_eq!(error.message(), Some(message));
}

#[tokio::test]
async fn put_then_get_reads_back_exact_statistics_per_period() {
    let (_emulator, client) = stack().await;
    let t0 = minute(30);
    let route = [("ModelId", "haiku"), ("Route", "on-demand")];
    // The same metric whatever the order of its dimensions.
    let reversed = [("Route", "on-demand"), ("ModelId", "haiku")];
    put(
        &client,
        vec![
            datum("Latency", 10.0, t0 + 1, &route),
            datum("Latency", 30.0, t0 + 59, &reversed),
            datum("Latency", 5.0, t0 + 300, &route),
            datum("Latency", 7.0, t0 + 420, &reversed),
            datum("Latency", 9.0, t0 + 599, &route),
            // Another dimension set: another metric.
            datum("Latency", 1000.0, t0 + 1, &[("ModelId", "haiku")]),
        ],
    )
    .await
    .unwrap();
    // A statistic set and values with counts in the first period too.
    let set = MetricDatum::builder()
        .metric_name("Latency")
        .set_dimensions(Some(route.iter().map(|(n, v)| dimension(n, v)).collect()))
        .timestamp(DateTime::from_secs(t0 + 30))
        .statistic_values(
            StatisticSet::builder()
                .sample_count(2.0)
                .sum(40.0)
                .minimum(20.0)
                .maximum(20.0)
                .build(),
        )
        .unit(StandardUnit::Count)
        .build();
    let values = MetricDatum::builder()
        .metric_name("Latency")
        .set_dimensions(Some(route.iter().map(|(n, v)| dimension(n, v)).collect()))
        .timestamp(DateTime::from_secs(t0 + 31))
        .values(2.0)
        .counts(3.0)
        .values(50.0)
        .counts(1.0)
        .unit(StandardUnit::Count)
        .build();
    put(&client, vec![set, values]).await.unwrap();

    let stats = ["Sum", "Average", "SampleCount", "Minimum", "Maximum", "p50"];
    let output = client
        .get_metric_data()
        .set_metric_data_queries(Some(
            stats
                .iter()
                .enumerate()
                .map(|(i, stat)| query(&format!("q{i}"), "Latency", &route, 300, stat))
                .collect(),
        ))
        .start_time(DateTime::from_secs(t0))
        .end_time(DateTime::from_secs(t0 + 900))
        .send()
        .await
        .unwrap();
    let results = output.metric_data_results();
    assert_eq!(results.len(), stats.len());
    assert_eq!(results[0].label(), Some("Latency"));
    // Period 1 [t0, t0+300): 10, 30, 20×2, 2×3, 50: 8 samples summing 136, median 10.
    // Period 2 [t0+300, t0+600): 5, 7, 9. Newest first.
    let expected: [[f64; 2]; 6] = [
        [21.0, 136.0],
        [7.0, 17.0],
        [3.0, 8.0],
        [5.0, 2.0],
        [9.0, 50.0],
        [7.0, 10.0],
    ];
    for (result, values) in results.iter().zip(expected) {
        assert_eq!(
            points(result),
            [(t0 + 300, values[0]), (t0, values[1])],
            "{:?}",
            result.id()
        );
    }

    // Oldest first with ScanBy, one-minute periods, and arithmetic over the results.
    let output = client
        .get_metric_data()
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("sum")
                .return_data(false)
                .metric_stat(
                    query("x", "Latency", &reversed, 60, "Sum")
                        .metric_stat()
                        .unwrap()
                        .clone(),
                )
                .build(),
        )
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("count")
                .return_data(false)
                .metric_stat(
                    query("x", "Latency", &route, 60, "SampleCount")
                        .metric_stat()
                        .unwrap()
                        .clone(),
                )
                .build(),
        )
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("mean")
                .expression("sum / count")
                .label("mean latency")
                .build(),
        )
        .start_time(DateTime::from_secs(t0))
        .end_time(DateTime::from_secs(t0 + 600))
        .scan_by(ScanBy::TimestampAscending)
        .send()
        .await
        .unwrap();
    let results = output.metric_data_results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].label(), Some("mean latency"));
    assert_eq!(
        points(&results[0]),
        [
            (t0, 17.0),
            (t0 + 300, 5.0),
            (t0 + 420, 7.0),
            (t0 + 540, 9.0)
        ]
    );
}

#[tokio::test]
async fn list_metrics_filters_by_namespace_name_and_dimensions() {
    let (_emulator, client) = stack().await;
    let at = minute(5);
    put(
        &client,
        vec![
            datum("Requests", 1.0, at, &[("ModelId", "haiku")]),
            datum(
                "Requests",
                1.0,
                at,
                &[("ModelId", "sonnet"), ("Route", "provisioned")],
            ),
            datum("Latency", 1.0, at, &[("ModelId", "haiku")]),
            datum("Requests", 1.0, at, &[]),
        ],
    )
    .await
    .unwrap();
    client
        .put_metric_data()
        .namespace("Other/Namespace")
        .metric_data(datum("Requests", 1.0, at, &[]))
        .send()
        .await
        .unwrap();

    let list = |name: Option<&str>, filters: Vec<DimensionFilter>| {
        let request = client
            .list_metrics()
            .namespace(NAMESPACE)
            .set_metric_name(name.map(str::to_owned))
            .set_dimensions(Some(filters));
        async move {
            let mut found: Vec<String> = request
                .send()
                .await
                .unwrap()
                .metrics()
                .iter()
                .map(|m| {
                    let dims: Vec<String> = m
                        .dimensions()
                        .iter()
                        .map(|d| format!("{}={}", d.name().unwrap(), d.value().unwrap()))
                        .collect();
                    format!("{} [{}]", m.metric_name().unwrap(), dims.join(","))
                })
                .collect();
            found.sort();
            found
        }
    };
    assert_eq!(
        list(None, vec![]).await,
        [
            "Latency [ModelId=haiku]",
            "Requests [ModelId=haiku]",
            "Requests [ModelId=sonnet,Route=provisioned]",
            "Requests []",
        ]
    );
    assert_eq!(
        list(
            Some("Requests"),
            vec![DimensionFilter::builder().name("ModelId").build()]
        )
        .await,
        [
            "Requests [ModelId=haiku]",
            "Requests [ModelId=sonnet,Route=provisioned]"
        ]
    );
    assert_eq!(
        list(
            None,
            vec![DimensionFilter::builder()
                .name("ModelId")
                .value("haiku")
                .build()]
        )
        .await,
        ["Latency [ModelId=haiku]", "Requests [ModelId=haiku]"]
    );
    assert_eq!(
        list(None, vec![DimensionFilter::builder().name("Route").build()]).await,
        ["Requests [ModelId=sonnet,Route=provisioned]"]
    );
    let all = client.list_metrics().send().await.unwrap();
    assert_eq!(all.metrics().len(), 5);
    assert_eq!(all.next_token(), None);
}

#[tokio::test]
async fn each_put_metric_data_limit_is_refused_with_its_typed_error() {
    let (_emulator, client) = stack().await;
    let at = minute(1);
    let one = || datum("M", 1.0, at, &[]);

    assert_invalid_value(
        &client,
        vec![one(); 1001],
        "The collection MetricData must not have a size greater than 1000.",
    )
    .await;

    let mut wide = MetricDatum::builder().metric_name("M").value(1.0);
    for i in 0..31 {
        wide = wide.dimensions(dimension(&format!("D{i}"), "v"));
    }
    assert_invalid_value(
        &client,
        vec![wide.build()],
        "The collection MetricData.member.1.Dimensions must not have a size greater than 30.",
    )
    .await;

    let many_values = MetricDatum::builder()
        .metric_name("M")
        .set_values(Some((0..151).map(f64::from).collect()))
        .build();
    assert_invalid_value(
        &client,
        vec![many_values],
        "The collection MetricData.member.1.Values must not have a size greater than 150.",
    )
    .await;

    let uneven = MetricDatum::builder()
        .metric_name("M")
        .set_values(Some(vec![1.0, 2.0]))
        .set_counts(Some(vec![1.0]))
        .build();
    assert_invalid_value(
        &client,
        vec![one(), uneven],
        "The parameters MetricData.member.2.Values and MetricData.member.2.Counts must be of the same size.",
    )
    .await;

    let incomplete = MetricDatum::builder()
        .metric_name("M")
        .statistic_values(
            StatisticSet::builder()
                .sample_count(1.0)
                .sum(1.0)
                .maximum(1.0)
                .build(),
        )
        .build();
    let error = refused(&client, vec![incomplete]).await;
    assert!(error.is_missing_required_parameter_exception(), "{error:?}");
    assert_eq!(
        error.message(),
        Some("The parameter MetricData.member.1.StatisticValues.Minimum is required.")
    );

    let both = MetricDatum::builder()
        .metric_name("M")
        .value(1.0)
        .statistic_values(
            StatisticSet::builder()
                .sample_count(1.0)
                .sum(1.0)
                .minimum(1.0)
                .maximum(1.0)
                .build(),
        )
        .build();
    let error = refused(&client, vec![both]).await;
    assert!(
        error.is_invalid_parameter_combination_exception(),
        "{error:?}"
    );

    for (value, shown) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (2f64.powi(361), "4.6970851655476665E108"),
    ] {
        assert_invalid_value(
            &client,
            vec![datum("M", value, at, &[])],
            &format!("The value {shown} for parameter MetricData.member.1.Value is invalid."),
        )
        .await;
    }

    let error = client
        .put_metric_data()
        .namespace("AWS/Bedrock")
        .metric_data(one())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_invalid_parameter_value_exception(), "{error:?}");
    assert_eq!(
        error.message(),
        Some("The value AWS/Bedrock for parameter Namespace is invalid.")
    );

    // Above 1 MB uncompressed (the SDK sends it gzipped, well under): refused by size.
    let heavy: Vec<MetricDatum> = (0..1000)
        .map(|i| {
            MetricDatum::builder()
                .metric_name(format!("Heavy{i}"))
                .set_values(Some((0..150).map(|v| f64::from(v) + 0.25).collect()))
                .build()
        })
        .collect();
    let error = refused(&client, heavy).await;
    assert_eq!(error.code(), Some("RequestEntityTooLarge"), "{error:?}");

    // Nothing of a refused request was kept.
    let listed = client
        .list_metrics()
        .namespace(NAMESPACE)
        .send()
        .await
        .unwrap();
    assert!(listed.metrics().is_empty(), "{:?}", listed.metrics());
}

/// Records the `content-encoding` of every request the SDK sends.
#[derive(Debug, Default, Clone)]
struct Sent(Arc<Mutex<Vec<Option<String>>>>);

impl Intercept for Sent {
    fn name(&self) -> &'static str {
        "Sent"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let encoding = context.request().headers().get("content-encoding");
        self.0.lock().unwrap().push(encoding.map(str::to_owned));
        Ok(())
    }
}

#[tokio::test]
async fn a_large_put_is_gzipped_by_the_sdk_and_accepted() {
    let (emulator, _) = stack().await;
    let sent = Sent::default();
    let config = aws_sdk_cloudwatch::config::Builder::from(&emulator.sdk_config())
        .interceptor(sent.clone())
        .build();
    let client = Client::from_conf(config);
    let at = minute(2);
    // 1,000 datums of 20 values each: about 200 KB of CBOR.
    let datums: Vec<MetricDatum> = (0..1000)
        .map(|i| {
            MetricDatum::builder()
                .metric_name("Tokens")
                .dimensions(dimension("Shard", &format!("s{i:04}")))
                .timestamp(DateTime::from_secs(at))
                .set_values(Some((0..20).map(|v| f64::from(v * 10 + 1)).collect()))
                .set_counts(Some(vec![2.0; 20]))
                .build()
        })
        .collect();
    put(&client, datums).await.unwrap();
    put(&client, vec![datum("Small", 1.0, at, &[])])
        .await
        .unwrap();
    let sent = sent.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].as_deref(), Some("gzip"), "{sent:?}");
    assert_eq!(sent[1], None, "a request under 10 KiB is sent as is");

    let listed = client
        .list_metrics()
        .namespace(NAMESPACE)
        .metric_name("Tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.metrics().len(), 500);
    let token = listed.next_token().expect("a second page");
    let rest = client
        .list_metrics()
        .namespace(NAMESPACE)
        .metric_name("Tokens")
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.metrics().len(), 500);
    assert_eq!(rest.next_token(), None);

    let output = client
        .get_metric_data()
        .metric_data_queries(query("s", "Tokens", &[("Shard", "s0999")], 60, "Sum"))
        .start_time(DateTime::from_secs(at - 60))
        .end_time(DateTime::from_secs(at + 60))
        .send()
        .await
        .unwrap();
    // (1 + 11 + … + 191) × 2
    assert_eq!(points(&output.metric_data_results()[0]), [(at, 3840.0)]);
}

#[tokio::test]
async fn get_metric_data_errors_and_emf_feed() {
    let (emulator, client) = stack().await;
    let error = client
        .get_metric_data()
        .metric_data_queries(query("m", "X", &[], 60, "Sum"))
        .start_time(DateTime::from_secs(minute(1)))
        .end_time(DateTime::from_secs(minute(2)))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("InvalidParameterValue"));
    assert_eq!(
        error.message(),
        Some("The parameter StartTime must be less than the parameter EndTime.")
    );
    let error = client
        .get_metric_data()
        .metric_data_queries(query("m", "X", &[], 60, "Sum"))
        .start_time(DateTime::from_secs(minute(2)))
        .end_time(DateTime::from_secs(minute(1)))
        .next_token("never-issued")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_invalid_next_token(), "{error:?}");

    // EMF lines, as the functions print them, become metrics.
    let at = minute(3);
    let at_ms = at * 1000;
    let line = |model: &str, latency: u64| {
        json!({
            "_aws": {"Timestamp": at_ms, "CloudWatchMetrics": [{
                "Namespace": NAMESPACE, "Dimensions": [["ModelId"]],
                "Metrics": [{"Name": "Requests", "Unit": "Count"},
                            {"Name": "InferenceLatency", "Unit": "Milliseconds"}]}]},
            "level": "INFO", "ModelId": model, "Requests": 1, "InferenceLatency": latency,
        })
        .to_string()
    };
    let text = [
        line("haiku", 12),
        "not a metric".to_owned(),
        line("haiku", 30),
    ]
    .join("\n");
    let report: Value = emulator
        .http()
        .post(emulator.url("/_emulator/emf"))
        .body(text)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        report,
        json!({"lines": 3, "documents": 2, "datums": 4, "errors": []})
    );
    let output = client
        .get_metric_data()
        .metric_data_queries(query("n", "Requests", &[("ModelId", "haiku")], 60, "Sum"))
        .metric_data_queries(query(
            "l",
            "InferenceLatency",
            &[("ModelId", "haiku")],
            60,
            "Maximum",
        ))
        .start_time(DateTime::from_secs(at - 420))
        .end_time(DateTime::from_secs(at + 180))
        .send()
        .await
        .unwrap();
    let results = output.metric_data_results();
    assert_eq!(points(&results[0]), [(at, 2.0)]);
    assert_eq!(points(&results[1]), [(at, 30.0)]);

    // Reset forgets every metric.
    emulator.reset().await;
    let listed = client.list_metrics().send().await.unwrap();
    assert!(listed.metrics().is_empty());
}
