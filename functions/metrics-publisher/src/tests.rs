#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The handler over in-memory ports: periods published once, missed ones caught up, a failed
//! PutMetricData retried by the next run without double counting, overlapping runs.

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use domain::batch::{Batch, BatchStatus, BatchSummary};
use domain::reporting::Datum;
use shared::adapters::clock::ManualClock;
use test_support::batch::Registry;
use test_support::reporting::{Cloud, Inventory, Sink, State};

use super::*;

const NS: &str = "Custom/Bedrock";
const REPORTS: &str = "Custom/Bedrock/Reports";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefghijkl";
/// A period start.
const T0: i64 = 1_750_000_200;

struct World {
    publisher: Publisher<Cloud, Sink, Registry, Inventory, State, Arc<ManualClock>>,
    cloud: Cloud,
    sink: Sink,
    state: State,
    clock: Arc<ManualClock>,
}

fn settings(extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("METRICS_STATE_TABLE_NAME", "state"),
        ("BATCH_TABLE_NAME", "batches"),
        ("PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT", "1000"),
        ("PROVISIONED_HOURLY_PRICE_PER_UNIT", "0.6"),
    ];
    vars.extend_from_slice(extra);
    Settings::from_env(&Env::from_pairs(vars)).unwrap()
}

fn world(extra: &[(&str, &str)]) -> World {
    let cloud = Cloud::new(NS);
    let sink = Sink::new(REPORTS);
    let state = State::default();
    // Two minutes after the end of the period [T0, T0 + 300).
    let clock = Arc::new(ManualClock::at(Utc.timestamp_opt(T0 + 420, 0).unwrap()));
    World {
        publisher: Publisher {
            settings: settings(extra),
            reader: cloud.clone(),
            writer: sink.clone(),
            registry: Registry::default(),
            inventory: Inventory::default(),
            state: state.clone(),
            clock: clock.clone(),
        },
        cloud,
        sink,
        state,
        clock,
    }
}

/// A request as invoke-with-cache reports it, at `at`.
fn request(cloud: &Cloud, model: &str, at: i64, hit: bool, cost: f64, saved: f64) {
    let m = [("ModelId", model)];
    cloud.add("Requests", &m, at, 1.0);
    cloud.add("CacheHit", &m, at, if hit { 1.0 } else { 0.0 });
    cloud.add("EstimatedCostUSD", &m, at, cost);
    cloud.add("EstimatedSavingsUSD", &m, at, saved);
}

fn provisioned_call(cloud: &Cloud, model: &str, at: i64, tokens: f64, on_demand: f64) {
    let m = [("ModelId", model)];
    cloud.add("Requests", &m, at, 1.0);
    cloud.add("OnDemandEquivalentUSD", &m, at, on_demand);
    cloud.add(
        "TokensProcessed",
        &[("ModelId", model), ("Route", "provisioned")],
        at,
        tokens,
    );
}

fn pt(units: u32) -> ProvisionedThroughput {
    ProvisionedThroughput {
        arn: ARN.into(),
        name: "haiku-pt".into(),
        model_arn: format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"),
        model_units: units,
        status: "InService".into(),
    }
}

fn ended_batch(updated_at: i64) -> Batch {
    Batch {
        batch_id: "b1".into(),
        owner: String::new(),
        name: None,
        model_id: HAIKU.into(),
        source: "api".into(),
        status: BatchStatus::Completed,
        jobs: vec![],
        record_count: 120,
        direct: false,
        rejection: None,
        results_key: None,
        summary: Some(BatchSummary {
            cost_usd: 0.25,
            on_demand_cost_usd: 0.5,
            ..BatchSummary::default()
        }),
        announcement: None,
        budget: None,
        lease: None,
        created_at: updated_at - 60,
        updated_at,
        version: 3,
    }
}

#[tokio::test]
async fn one_run_publishes_the_period_and_a_second_publishes_nothing() {
    let w = world(&[]);
    // Two misses and three hits on-demand; two provisioned calls in the second minute and one
    // in the fourth; a batch that ended in the period; one a period before, not counted.
    request(&w.cloud, HAIKU, T0 + 5, false, 0.002, 0.0);
    request(&w.cloud, HAIKU, T0 + 65, false, 0.003, 0.0);
    for s in [70, 130, 290] {
        request(&w.cloud, HAIKU, T0 + s, true, 0.0, 0.002);
    }
    provisioned_call(&w.cloud, HAIKU, T0 + 61, 900.0, 0.01);
    provisioned_call(&w.cloud, HAIKU, T0 + 119, 600.0, 0.02);
    provisioned_call(&w.cloud, HAIKU, T0 + 200, 300.0, 0.005);
    request(&w.cloud, HAIKU, T0 - 10, false, 1.0, 0.0);
    w.publisher.registry.insert(ended_batch(T0 + 100));
    w.publisher.registry.insert(Batch {
        batch_id: "b0".into(),
        ..ended_batch(T0 - 1)
    });
    w.publisher.inventory.0.lock().unwrap().push(pt(2));

    let summary = w.publisher.run("run-1").await.unwrap();
    assert_eq!(summary.published, vec![iso(T0)]);
    assert!(!summary.busy);
    let s = &w.sink;
    let haiku = [("ModelId", HAIKU)];
    let close = |(v, n): (f64, usize), want: f64| {
        assert_eq!(n, 1, "published once");
        assert!((v - want).abs() < 1e-12, "{v} != {want}");
    };
    close(s.value("EstimatedCostUSD", &haiku, T0), 0.005 + 0.25);
    close(s.value("SavedByCacheUSD", &haiku, T0), 0.006);
    close(s.value("SavedByBatchUSD", &haiku, T0), 0.25);
    // 3 hits of 8 answered requests (the provisioned calls were misses).
    close(s.value("CacheHitRate", &haiku, T0), 37.5);
    close(s.value("EstimatedCostUSD", &[], T0), 0.255);
    // Two units of 1,000 tokens a minute: 1,800 tokens in five minutes is 18 %; the busiest
    // minute 1,500 is 75 %; with 20 % headroom it needs 1,800: 2 units, $0.1 for the period
    // against $0.035 on-demand, so on-demand is cheaper: 0.
    let arn = [("ProvisionedModelArn", ARN)];
    close(s.value("ProvisionedUtilization", &arn, T0), 18.0);
    close(s.value("ProvisionedPeakUtilization", &arn, T0), 75.0);
    close(s.value("ProvisionedHourlyCostUSD", &arn, T0), 1.2);
    close(s.value("ProvisionedOnDemandEquivalentUSD", &arn, T0), 0.035);
    close(s.value("RecommendedModelUnits", &arn, T0), 0.0);
    close(s.value("TotalCostUSD", &[], T0), 0.255 + 0.1);
    close(s.value("BatchJobsInProgress", &[], T0), 0.0);
    assert_eq!(w.state.through(), Some(T0 + 300));
    let count = s.datums().len();

    // The same run again, and a run before the next period is finished: nothing new.
    assert_eq!(
        w.publisher.run("run-2").await.unwrap(),
        RunSummary::default()
    );
    w.clock.set(Utc.timestamp_opt(T0 + 300 + 419, 0).unwrap());
    assert!(w.publisher.run("run-3").await.unwrap().published.is_empty());
    assert_eq!(s.datums().len(), count);
}

#[tokio::test]
async fn a_failed_put_keeps_the_watermark_and_the_next_run_publishes_the_missed_period_once() {
    let w = world(&[]);
    request(&w.cloud, HAIKU, T0 + 5, false, 0.5, 0.0);
    w.publisher.run("run-1").await.unwrap();
    assert_eq!(w.state.through(), Some(T0 + 300));

    // The next period's put fails (after the adapter's retries): the run fails, nothing moves.
    request(&w.cloud, HAIKU, T0 + 305, false, 0.25, 0.0);
    w.sink.fail(1);
    w.clock.set(Utc.timestamp_opt(T0 + 300 + 420, 0).unwrap());
    let error = w.publisher.run("run-2").await.unwrap_err();
    assert!(
        matches!(error, PublishError::Metrics(MetricsError::Throttled(_))),
        "{error}"
    );
    assert_eq!(w.state.through(), Some(T0 + 300));
    assert_eq!(w.sink.value("EstimatedCostUSD", &[], T0 + 300).1, 0);
    // The lease was released: the next run need not wait for it to lapse.
    assert!(w.state.0.lock().unwrap().as_ref().unwrap().lease.is_none());

    // A period later: both periods, each once.
    request(&w.cloud, HAIKU, T0 + 605, false, 0.125, 0.0);
    w.clock.set(Utc.timestamp_opt(T0 + 600 + 420, 0).unwrap());
    let summary = w.publisher.run("run-3").await.unwrap();
    assert_eq!(summary.published, vec![iso(T0 + 300), iso(T0 + 600)]);
    for (at, cost) in [(T0, 0.5), (T0 + 300, 0.25), (T0 + 600, 0.125)] {
        assert_eq!(w.sink.value("EstimatedCostUSD", &[], at), (cost, 1));
    }
    // The backlog is a snapshot: with the newest period only.
    assert_eq!(w.sink.value("BatchJobsQueued", &[], T0 + 300).1, 0);
    assert_eq!(w.sink.value("BatchJobsQueued", &[], T0 + 600).1, 1);
    assert_eq!(w.state.through(), Some(T0 + 900));
}

#[tokio::test]
async fn a_period_of_several_requests_resumes_after_the_ones_accepted() {
    let w = world(&[]);
    // 300 models: 4 datums each, 1,200 and more: two requests.
    for i in 0..300 {
        request(
            &w.cloud,
            &format!("model-{i:03}"),
            T0 + 5,
            i % 2 == 0,
            0.001,
            0.0,
        );
    }
    let publisher = &w.publisher;
    {
        // The first request is accepted, the second fails.
        struct FailSecond(Sink, Mutex<usize>);
        impl MetricsWriter for FailSecond {
            async fn put(&self, ns: &str, datums: &[Datum]) -> Result<(), MetricsError> {
                let call = {
                    let mut n = self.1.lock().unwrap();
                    *n += 1;
                    *n
                };
                if call == 2 {
                    return Err(MetricsError::Unavailable("connection reset".into()));
                }
                self.0.put(ns, datums).await
            }
        }
        let failing = Publisher {
            settings: publisher.settings.clone(),
            reader: w.cloud.clone(),
            writer: FailSecond(w.sink.clone(), Mutex::new(0)),
            registry: Registry::default(),
            inventory: Inventory::default(),
            state: w.state.clone(),
            clock: w.clock.clone(),
        };
        assert!(failing.run("run-1").await.is_err());
    }
    assert_eq!(w.sink.accepted.lock().unwrap().len(), 1);
    assert_eq!(w.state.through(), None);
    let partial = w.state.0.lock().unwrap().clone().unwrap().partial.unwrap();
    assert_eq!((partial.period_start, partial.sent.len()), (T0, 1));

    // The next run sends the second request only: every datum once.
    let summary = publisher.run("run-2").await.unwrap();
    assert_eq!(summary.requests, 1);
    assert_eq!(w.sink.accepted.lock().unwrap().len(), 2);
    for i in [0, 150, 299] {
        let model = format!("model-{i:03}");
        assert_eq!(
            w.sink.value("EstimatedCostUSD", &[("ModelId", &model)], T0),
            (0.001, 1)
        );
    }
    assert_eq!(w.state.through(), Some(T0 + 300));
}

#[tokio::test]
async fn overlapping_runs_leave_the_periods_to_the_lease_holder_and_misses_catch_up_bounded() {
    let w = world(&[("MAX_PERIODS_PER_RUN", "2"), ("MAX_CATCH_UP_HOURS", "1")]);
    *w.state.0.lock().unwrap() = Some(ReportState {
        published_through: Some(T0),
        lease: Some(PublishLease {
            owner: "other".into(),
            until_ms: (T0 + 430) * 1000,
        }),
        version: 4,
        ..ReportState::default()
    });
    assert!(w.publisher.run("run-1").await.unwrap().busy);
    assert!(w.sink.datums().is_empty());

    // The lease lapsed: the run takes over, two periods at a time.
    w.clock.set(Utc.timestamp_opt(T0 + 900 + 420, 0).unwrap());
    let summary = w.publisher.run("run-2").await.unwrap();
    assert_eq!(summary.published, vec![iso(T0), iso(T0 + 300)]);
    let summary = w.publisher.run("run-3").await.unwrap();
    assert_eq!(summary.published, vec![iso(T0 + 600), iso(T0 + 900)]);

    // Down for two hours: only the last hour is published, the rest is skipped.
    w.clock
        .set(Utc.timestamp_opt(T0 + 1200 + 7200 + 120, 0).unwrap());
    let summary = w.publisher.run("run-4").await.unwrap();
    assert_eq!(summary.skipped_periods, 12);
    assert_eq!(summary.published[0], iso(T0 + 1200 + 3600));
}

#[tokio::test]
async fn an_unreadable_source_fails_the_run_with_its_name_and_publishes_nothing() {
    let w = world(&[]);
    request(&w.cloud, HAIKU, T0 + 5, false, 0.5, 0.0);
    w.publisher.inventory.fail("AccessDeniedException");
    let error = w.publisher.run("run-1").await.unwrap_err();
    assert!(matches!(error, PublishError::Inventory(_)), "{error}");
    assert!(w.sink.datums().is_empty());
    assert_eq!(w.state.through(), None);
    assert!(w.state.0.lock().unwrap().as_ref().unwrap().lease.is_none());

    let w = world(&[]);
    w.publisher
        .registry
        .fail(RegistryError::Unavailable("table not found".into()));
    let error = w.publisher.run("run-1").await.unwrap_err();
    assert!(matches!(error, PublishError::Registry(_)), "{error}");

    let w = world(&[]);
    w.state.fail("throttled");
    let error = w.publisher.run("run-1").await.unwrap_err();
    assert!(matches!(error, PublishError::State(_)), "{error}");
    assert!(w.sink.datums().is_empty());
}

#[test]
fn settings_have_defaults_and_errors_name_the_variable() {
    let s = Settings::from_env(&Env::from_pairs([
        ("METRICS_STATE_TABLE_NAME", "state"),
        ("BATCH_TABLE_NAME", "batches"),
        ("PROVISIONED_THROUGHPUT", &format!("{HAIKU}={ARN}")),
        (
            "MODEL_SIMPLE",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
    ]))
    .unwrap();
    assert_eq!(s.reports_namespace, REPORTS);
    assert_eq!(s.state_key, REPORTS);
    assert_eq!(s.headroom, 0.2);
    assert_eq!(s.catch_up.lag_seconds, 120);
    assert_eq!(s.catch_up.max_catch_up_periods, 288);
    assert_eq!(s.tokens_per_minute.lookup(&pt(1)), Some(100_000.0));
    assert_eq!(s.hourly_price.lookup(&pt(1)), None);
    assert_eq!(s.model_of_arn[ARN], HAIKU);
    assert_eq!(
        s.known_models,
        vec![HAIKU, "us.anthropic.claude-haiku-4-5-20251001-v1:0"]
    );
    for (variable, value) in [
        ("RECOMMENDATION_HEADROOM", "-0.1"),
        ("PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT", "x=0"),
        ("PROVISIONED_HOURLY_PRICE_PER_UNIT", "abc"),
        ("PROVISIONED_THROUGHPUT", "nonsense"),
        ("MAX_PERIODS_PER_RUN", "0"),
        ("PUBLISH_LAG_SECONDS", "-1"),
        ("REPORTS_NAMESPACE", NS),
    ] {
        let err = Settings::from_env(&Env::from_pairs([
            ("METRICS_STATE_TABLE_NAME", "state"),
            ("BATCH_TABLE_NAME", "batches"),
            (variable, value),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, variable, "{err}");
    }
    let missing = Settings::from_env(&Env::from_pairs([("BATCH_TABLE_NAME", "b")])).unwrap_err();
    assert_eq!(missing.variable, "METRICS_STATE_TABLE_NAME");
}

#[tokio::test]
async fn prompt_cache_savings_and_cost_by_service_tier_are_reported() {
    let w = world(&[]);
    // A flex miss that read the prompt cache, a priority miss, and a request without a tier.
    request(&w.cloud, HAIKU, T0 + 5, false, 0.001, 0.0);
    w.cloud.add(
        "PromptCacheSavingsUSD",
        &[("ModelId", HAIKU)],
        T0 + 5,
        0.0009,
    );
    for (tier, cost) in [("flex", 0.001), ("priority", 0.0035)] {
        let m = [("ModelId", HAIKU), ("ServiceTier", tier)];
        w.cloud.add("Requests", &m, T0 + 5, 1.0);
        w.cloud.add("EstimatedCostUSD", &m, T0 + 5, cost);
    }
    request(&w.cloud, HAIKU, T0 + 6, false, 0.0035, 0.0);
    request(&w.cloud, HAIKU, T0 + 7, false, 0.002, 0.0);

    w.publisher.run("run-1").await.unwrap();
    let s = &w.sink;
    let close = |(v, n): (f64, usize), want: f64| {
        assert_eq!(n, 1, "published once");
        assert!((v - want).abs() < 1e-12, "{v} != {want}");
    };
    close(
        s.value("SavedByPromptCacheUSD", &[("ModelId", HAIKU)], T0),
        0.0009,
    );
    close(s.value("SavedByPromptCacheUSD", &[], T0), 0.0009);
    close(
        s.value("EstimatedCostUSD", &[("ServiceTier", "flex")], T0),
        0.001,
    );
    close(
        s.value("EstimatedCostUSD", &[("ServiceTier", "priority")], T0),
        0.0035,
    );
    assert_eq!(
        s.value("EstimatedCostUSD", &[("ServiceTier", "default")], T0)
            .1,
        0
    );
}

#[tokio::test]
async fn deferred_requests_are_reported_by_placement_with_their_misses() {
    let w = world(&[]);
    // batch-status's EMF: five answered on flex, one deadline missed.
    let flex = [("Placement", "flex")];
    w.cloud.add("DeferredRequests", &flex, T0 + 5, 5.0);
    w.cloud.add("DeferredCostUSD", &flex, T0 + 5, 0.01);
    w.cloud.add("DeferredSavedUSD", &flex, T0 + 5, 0.01);
    w.cloud.add("DeferredDeadlineMisses", &[], T0 + 5, 1.0);

    w.publisher.run("run-1").await.unwrap();
    let s = &w.sink;
    let close = |(v, n): (f64, usize), want: f64| {
        assert_eq!(n, 1, "published once");
        assert!((v - want).abs() < 1e-12, "{v} != {want}");
    };
    close(s.value("DeferredRequests", &flex, T0), 5.0);
    close(s.value("SavedByDeferredUSD", &flex, T0), 0.01);
    close(s.value("DeferredDeadlineMisses", &[], T0), 1.0);
    close(s.value("EstimatedCostUSD", &[], T0), 0.01);
    assert_eq!(
        s.value("DeferredRequests", &[("Placement", "batch")], T0).1,
        0,
        "nothing placed in a batch"
    );
}
