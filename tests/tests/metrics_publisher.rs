#![allow(clippy::expect_used, clippy::unwrap_used)]
//! metrics-publisher against the local stack: CloudWatch on the emulator (the AWS SDK for Rust,
//! RPC v2 CBOR), the watermark in the stack's `MetricsStateTable`, the batch registry and
//! Bedrock's Provisioned Throughput list.
//!
//! The per-request metrics are invoke-with-cache's own: the function answers real requests
//! (misses, hits, a throttled one, calls on a Provisioned Throughput) and its recorded
//! `RequestMetrics` are rendered into exactly the Embedded Metric Format lines it prints
//! (`shared::adapters::emf::render`), which `POST /_emulator/emf` turns into datums as
//! CloudWatch Logs does. Only their timestamps are chosen, inside one known five-minute period,
//! so that every expected figure is the sum of known values. The batches are real too (submitted
//! and followed by batch-submit and batch-status), copied into a registry table of the test's
//! own so that no other test's batch counts.

use std::sync::Arc;

use aws_sdk_cloudwatch::primitives::DateTime as CwTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use chrono::{TimeZone, Utc};
use domain::batch::Batch;
use domain::metrics::RequestMetrics;
use domain::ports::{BatchRegistry, ReportStateStore};
use domain::reporting::period_start;
use domain::routing::Route;
use integration_tests::batch::BatchHarness;
use integration_tests::invoke::{unique, Harness, HAIKU, SONNET};
use integration_tests::{sdk_config, stack_var, Emulator};
use metrics_publisher::{on_aws, AwsPublisher, Settings};
use serde_json::{json, Value};
use shared::adapters::batch_registry::DynamoDbBatchRegistry;
use shared::adapters::clock::ManualClock;
use shared::adapters::emf::render;
use shared::adapters::report_state::DynamoDbReportState;
use shared::config::Env;

const PERIOD: i64 = 300;

/// One test's private corner of the stack: its namespace (so its watermark key), its registry.
struct Stage {
    emulator: Emulator,
    namespace: String,
    batch_table: String,
    cloudwatch: aws_sdk_cloudwatch::Client,
    clock: Arc<ManualClock>,
}

async fn stage() -> Stage {
    stack_var("AWS_ENDPOINT_URL_CLOUDWATCH");
    let emulator = Emulator::reset().await;
    let suffix = Utc::now().timestamp_nanos_opt().unwrap().to_string();
    let batch_table = format!("metrics-batches-{suffix}");
    let sdk = sdk_config().await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .create_table()
        .table_name(&batch_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("batchId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("batchId")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("CreateTable");
    Stage {
        emulator,
        namespace: format!("Test/Publisher-{suffix}"),
        batch_table,
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        clock: Arc::new(ManualClock::at(Utc::now())),
    }
}

impl Stage {
    fn reports(&self) -> String {
        format!("{}/Reports", self.namespace)
    }

    /// The function as its `main` builds it, on the stack, with the test's clock.
    async fn publisher(&self, extra: &[(&str, &str)]) -> AwsPublisher<Arc<ManualClock>> {
        let state_table = stack_var("METRICS_STATE_TABLE_NAME");
        let mut vars = vec![
            ("METRICS_NAMESPACE", self.namespace.as_str()),
            ("METRICS_STATE_TABLE_NAME", state_table.as_str()),
            ("BATCH_TABLE_NAME", self.batch_table.as_str()),
            ("CLOUDWATCH_RETRY_BASE_MS", "1"),
        ];
        vars.extend_from_slice(extra);
        let settings = Settings::from_env(&Env::from_pairs(vars)).expect("settings");
        on_aws(settings, &sdk_config().await, self.clock.clone())
    }

    /// Two minutes after the end of the period starting at `start`: when it is published.
    fn after(&self, start: i64) {
        self.clock
            .set(Utc.timestamp_opt(start + PERIOD + 120, 0).unwrap());
    }

    /// Feeds log lines to the emulator's CloudWatch as CloudWatch Logs would.
    async fn feed(&self, lines: &[String]) {
        let answer: Value = self
            .emulator
            .http()
            .post(self.emulator.url("/_emulator/emf"))
            .body(lines.join("\n"))
            .send()
            .await
            .expect("emf feed")
            .json()
            .await
            .expect("emf answer");
        assert_eq!(answer["errors"], json!([]), "{answer}");
        assert_eq!(answer["documents"], lines.len(), "{answer}");
    }

    /// The Sum and SampleCount of a reports metric over the period starting at `start`.
    async fn figure(&self, name: &str, dims: &[(&str, &str)], start: i64) -> Option<(f64, f64)> {
        let metric = Metric::builder()
            .namespace(self.reports())
            .metric_name(name)
            .set_dimensions(Some(
                dims.iter()
                    .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
                    .collect(),
            ))
            .build();
        let query = |id: &str, stat: &str| {
            MetricDataQuery::builder()
                .id(id)
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric.clone())
                        .period(PERIOD as i32)
                        .stat(stat)
                        .build(),
                )
                .build()
        };
        let output = self
            .cloudwatch
            .get_metric_data()
            .start_time(CwTime::from_secs(start))
            .end_time(CwTime::from_secs(start + PERIOD))
            .metric_data_queries(query("total", "Sum"))
            .metric_data_queries(query("count", "SampleCount"))
            .send()
            .await
            .expect("GetMetricData");
        let value = |id: &str| {
            output
                .metric_data_results()
                .iter()
                .find(|r| r.id() == Some(id))
                .and_then(|r| r.values().first().copied())
        };
        Some((value("total")?, value("count")?))
    }

    /// Asserts the metric was published once in the period, with this value.
    async fn published_once(&self, name: &str, dims: &[(&str, &str)], start: i64, want: f64) {
        let (total, count) = self
            .figure(name, dims, start)
            .await
            .unwrap_or_else(|| panic!("{name} {dims:?} was not published"));
        assert_eq!(count, 1.0, "{name} {dims:?} published {count} times");
        assert!(
            (total - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name} {dims:?}: {total} != {want}"
        );
    }

    async fn watermark(&self) -> Option<i64> {
        let state = DynamoDbReportState::new(
            aws_sdk_dynamodb::Client::new(&sdk_config().await),
            stack_var("METRICS_STATE_TABLE_NAME"),
            self.reports(),
        )
        .load()
        .await
        .expect("state");
        state.and_then(|s| {
            assert!(s.lease.is_none(), "the lease is released after a run");
            s.published_through
        })
    }
}

fn emf(namespace: &str, metrics: &RequestMetrics, at: i64) -> String {
    render(namespace, "INFO", metrics, at * 1000 + 500).to_string()
}

fn sum(metrics: &[&RequestMetrics], f: impl Fn(&RequestMetrics) -> f64) -> f64 {
    metrics.iter().map(|m| f(m)).sum()
}

fn records(count: usize, label: &str) -> Vec<Value> {
    let run = unique(label);
    (0..count)
        .map(|i| json!({"recordId": format!("r{i:04}"), "prompt": format!("{run}: question {i}")}))
        .collect()
}

#[tokio::test]
async fn one_run_publishes_the_exact_figures_of_the_period_and_a_second_run_nothing_new() {
    let st = stage().await;
    st.emulator
        .configure(json!({"batchStepMs": 10, "provisioned": {"createMs": 0}}))
        .await;
    let pt = st.emulator.create_provisioned("mp-sonnet", SONNET, 2).await;
    let spec = format!("{SONNET}={pt}");

    // The requests: Haiku on-demand (2 misses, 3 hits, 1 throttled), Sonnet on the
    // Provisioned Throughput (2 misses, 1 hit).
    let invoke = Harness::new(&[("PROVISIONED_THROUGHPUT", spec.as_str())]).await;
    let ask = |model: &str, prompt: &str| json!({"modelId": model, "prompt": prompt});
    let (a, b, c, d, e) = (
        unique("publisher a"),
        unique("publisher b"),
        unique("publisher c"),
        unique("publisher d"),
        unique("publisher e"),
    );
    for (prompt, cache) in [
        (&a, "MISS"),
        (&b, "MISS"),
        (&a, "HIT"),
        (&a, "HIT"),
        (&b, "HIT"),
    ] {
        assert_eq!(invoke.invoke(ask(HAIKU, prompt)).await.cache(), cache);
    }
    st.emulator
        .configure(json!({"models": {HAIKU: {"throttleRate": 1.0}}}))
        .await;
    assert_eq!(invoke.invoke(ask(HAIKU, &c)).await.status, 429);
    st.emulator
        .configure(json!({"models": {HAIKU: null}}))
        .await;
    for (prompt, cache) in [(&d, "MISS"), (&e, "MISS"), (&d, "HIT")] {
        let reply = invoke.invoke(ask(SONNET, prompt)).await;
        assert_eq!(reply.cache(), cache, "{}", reply.body);
        if cache == "MISS" {
            assert_eq!(reply.body["route"], "provisioned", "{}", reply.body);
        }
    }
    let metrics = invoke.metrics.wait_for(9).await;

    // The batches: one run to its end, one submitted and not followed yet.
    let batches = BatchHarness::new(&[]).await;
    let reply = batches
        .submit(&json!({"modelId": HAIKU, "records": records(120, "publisher batch")}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let ended = batches
        .schedule_until_ended(reply.body["batchId"].as_str().unwrap())
        .await;
    let summary = ended.summary.clone().expect("an ended batch has a summary");
    let reply = batches
        .submit(&json!({"modelId": HAIKU, "records": records(150, "publisher backlog")}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let waiting: Batch = batches.batch(reply.body["batchId"].as_str().unwrap()).await;
    assert!(!waiting.status.is_final());
    let registry = DynamoDbBatchRegistry::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        &st.batch_table,
    );
    for batch in [&ended, &waiting] {
        assert!(registry.create(batch).await.unwrap());
    }

    // The period the batch ended in; the requests in known minutes of it: the Haiku ones in
    // the first minute, the Sonnet misses in the third, its hit in the fourth.
    let start = period_start(ended.updated_at);
    let at = [5, 10, 15, 20, 25, 30, 125, 130, 200];
    let lines: Vec<String> = metrics
        .iter()
        .zip(at)
        .map(|(m, offset)| emf(&st.namespace, m, start + offset))
        .collect();
    st.feed(&lines).await;
    // A request a period earlier, which must not count.
    st.feed(&[emf(&st.namespace, &metrics[0], start - 10)])
        .await;

    let haiku: Vec<&RequestMetrics> = metrics[..6].iter().collect();
    let sonnet: Vec<&RequestMetrics> = metrics[6..].iter().collect();
    assert!(haiku.iter().all(|m| m.model_id.as_deref() == Some(HAIKU)));
    assert!(sonnet.iter().all(|m| m.model_id.as_deref() == Some(SONNET)));
    assert_eq!(sonnet[0].route, Some(Route::Provisioned));
    let haiku_cost = sum(&haiku, |m| m.cost_usd);
    let haiku_saved = sum(&haiku, |m| m.saved_usd);
    let sonnet_saved = sum(&sonnet, |m| m.saved_usd);
    let sonnet_on_demand = sum(&sonnet, |m| m.on_demand_equivalent_usd);
    let served = sum(&sonnet, |m| f64::from(m.input_tokens + m.output_tokens));
    assert!(haiku_cost > 0.0 && haiku_saved > 0.0 && sonnet_on_demand > 0.0 && served > 0.0);
    assert_eq!(
        sum(&sonnet, |m| m.cost_usd),
        0.0,
        "provisioned calls cost by the hour"
    );
    let batch_saved = summary.on_demand_cost_usd - summary.cost_usd;
    assert!(batch_saved > 0.0);

    // 100 tokens a minute a unit, 2 units; a price so low the capacity is worth it.
    let publisher = st
        .publisher(&[
            ("PROVISIONED_THROUGHPUT", spec.as_str()),
            (
                "PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT",
                &format!("{SONNET}=100"),
            ),
            ("PROVISIONED_HOURLY_PRICE_PER_UNIT", "0.0001"),
        ])
        .await;
    st.after(start);
    let run = publisher.run("run-1").await.expect("run");
    assert_eq!(run.published.len(), 1, "{run:?}");
    assert_eq!(st.watermark().await, Some(start + PERIOD));

    let by = |model| [("ModelId", model)];
    for (name, dims, want) in [
        ("EstimatedCostUSD", by(HAIKU), haiku_cost + summary.cost_usd),
        ("SavedByCacheUSD", by(HAIKU), haiku_saved),
        ("SavedByBatchUSD", by(HAIKU), batch_saved),
        // 3 hits of the 5 answered requests (the throttled one had no answer).
        ("CacheHitRate", by(HAIKU), 60.0),
        ("EstimatedCostUSD", by(SONNET), 0.0),
        ("SavedByCacheUSD", by(SONNET), sonnet_saved),
        ("CacheHitRate", by(SONNET), 100.0 / 3.0),
    ] {
        st.published_once(name, &dims, start, want).await;
    }
    let estimated = haiku_cost + summary.cost_usd;
    let capacity = 200.0;
    let recommended = (served * 1.2 / 100.0 - 1e-9).ceil();
    assert!(recommended >= 1.0);
    for (name, want) in [
        ("EstimatedCostUSD", estimated),
        ("SavedByCacheUSD", haiku_saved + sonnet_saved),
        ("SavedByBatchUSD", batch_saved),
        ("CacheHitRate", 100.0 * 4.0 / 8.0),
        ("TotalCostUSD", estimated + 2.0 * 0.0001 / 12.0),
        ("ProvisionedUtilization", 100.0 * served / 5.0 / capacity),
        ("BatchJobsInProgress", 1.0),
        ("BatchJobsQueued", 0.0),
        ("BatchRecordsPending", 150.0),
    ] {
        st.published_once(name, &[], start, want).await;
    }
    let arn = [("ProvisionedModelArn", pt.as_str())];
    for (name, want) in [
        ("ProvisionedModelUnits", 2.0),
        // Both misses in one minute: the peak is all the tokens served.
        ("ProvisionedUtilization", 100.0 * served / 5.0 / capacity),
        ("ProvisionedPeakUtilization", 100.0 * served / capacity),
        ("ProvisionedHourlyCostUSD", 0.0002),
        ("ProvisionedOnDemandEquivalentUSD", sonnet_on_demand),
        ("RecommendedModelUnits", recommended),
    ] {
        st.published_once(name, &arn, start, want).await;
    }
    assert!(st
        .figure("EstimatedCostUSD", &[], start - PERIOD)
        .await
        .is_none());

    // Again, at the same time and a minute later: nothing new, every figure still once.
    let again = publisher.run("run-2").await.expect("run");
    assert!(again.published.is_empty() && !again.busy, "{again:?}");
    st.clock
        .set(Utc.timestamp_opt(start + PERIOD + 180, 0).unwrap());
    assert!(publisher.run("run-3").await.unwrap().published.is_empty());
    st.published_once(
        "EstimatedCostUSD",
        &by(HAIKU),
        start,
        haiku_cost + summary.cost_usd,
    )
    .await;
    st.published_once("RecommendedModelUnits", &arn, start, recommended)
        .await;
    assert_eq!(st.watermark().await, Some(start + PERIOD));
}

/// A request of `usd` on-demand, answered, as invoke-with-cache reports it.
fn paid(usd: f64) -> RequestMetrics {
    RequestMetrics {
        model_id: Some(HAIKU.to_owned()),
        route: Some(Route::OnDemand),
        cache: Some(domain::cache::CacheState::Miss),
        input_tokens: 40,
        output_tokens: 20,
        cost_usd: usd,
        ..RequestMetrics::refused(200, 30)
    }
}

#[tokio::test]
async fn a_failed_put_metric_data_moves_no_watermark_and_the_next_run_publishes_the_missed_period_once(
) {
    let st = stage().await;
    // Three periods an hour ago, one request each.
    let p1 = period_start(Utc::now().timestamp()) - 3600;
    let (p2, p3) = (p1 + PERIOD, p1 + 2 * PERIOD);
    let costs = [(p1, 0.5), (p2, 0.25), (p3, 0.125)];
    let lines: Vec<String> = costs
        .iter()
        .map(|(p, usd)| emf(&st.namespace, &paid(*usd), p + 30))
        .collect();
    st.feed(&lines).await;
    let publisher = st.publisher(&[("CLOUDWATCH_MAX_ATTEMPTS", "3")]).await;

    st.after(p1);
    assert_eq!(publisher.run("run-1").await.unwrap().published.len(), 1);
    assert_eq!(st.watermark().await, Some(p1 + PERIOD));

    // Every attempt of the next period's PutMetricData is throttled: the run fails, the
    // watermark stays, nothing of the period is in CloudWatch.
    st.emulator
        .configure(json!({"cloudwatch": {"failPutMetricData": 3}}))
        .await;
    st.after(p2);
    let error = publisher.run("run-2").await.unwrap_err();
    assert!(error.to_string().contains("throttled"), "{error}");
    assert_eq!(st.watermark().await, Some(p1 + PERIOD));
    assert!(st.figure("EstimatedCostUSD", &[], p2).await.is_none());

    // A period later (the missed run never came), two throttled attempts are retried: the
    // missed period and the new one, each once.
    st.emulator
        .configure(json!({"cloudwatch": {"failPutMetricData": 2}}))
        .await;
    st.after(p3);
    let run = publisher.run("run-3").await.unwrap();
    assert_eq!(run.published.len(), 2, "{run:?}");
    for (p, usd) in costs {
        st.published_once("EstimatedCostUSD", &[], p, usd).await;
        st.published_once("EstimatedCostUSD", &[("ModelId", HAIKU)], p, usd)
            .await;
        st.published_once("CacheHitRate", &[], p, 0.0).await;
    }
    assert_eq!(st.watermark().await, Some(p3 + PERIOD));
    assert!(publisher.run("run-4").await.unwrap().published.is_empty());
    st.published_once("EstimatedCostUSD", &[], p2, 0.25).await;
}
