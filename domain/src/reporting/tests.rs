use std::collections::{BTreeMap, HashMap};

use crate::batch::{Batch, BatchStatus, BatchSummary, JobEntry};

use super::*;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefghijkl";

fn terms(per_unit: f64, price: Option<f64>, headroom: f64) -> CapacityTerms {
    CapacityTerms {
        tokens_per_minute_per_unit: per_unit,
        hourly_price_per_unit: price,
        headroom,
    }
}

#[test]
fn utilization_and_recommendation_match_a_hand_computed_case() {
    // 2 units of 10,000 tokens a minute: 20,000 a minute. The period served 30,000 tokens,
    // 6,000 a minute on average (30 %), 12,000 in its busiest minute (60 %). With 20 %
    // headroom the busiest minute needs 14,400 tokens a minute: 1.44 units, so 2. Two units
    // at $20 an hour cost $3.33 for five minutes: less than the $5 the tokens cost on-demand.
    let minutes = [3000.0, 12000.0, 6000.0, 0.0, 9000.0];
    let f = provisioned_figures(2, &minutes, 5.0, &terms(10_000.0, Some(20.0), 0.2));
    assert!((f.utilization_pct - 30.0).abs() < 1e-9, "{f:?}");
    assert!((f.peak_utilization_pct - 60.0).abs() < 1e-9, "{f:?}");
    assert_eq!(f.hourly_cost_usd, Some(40.0));
    assert_eq!(f.recommended_units, 2);
    // The same tokens for $3 on-demand: the capacity is not worth it.
    let cheaper = provisioned_figures(2, &minutes, 3.0, &terms(10_000.0, Some(20.0), 0.2));
    assert_eq!(cheaper.recommended_units, 0);
    // Without a price the recommendation is the capacity alone.
    let unpriced = provisioned_figures(2, &minutes, 0.0, &terms(10_000.0, None, 0.2));
    assert_eq!(
        (unpriced.recommended_units, unpriced.hourly_cost_usd),
        (2, None)
    );
    // A busy minute of 25,000 tokens on 1 unit: 250 %; 30,000 with headroom is 3 units.
    let over = provisioned_figures(
        1,
        &[25_000.0, 0.0, 0.0, 0.0, 0.0],
        100.0,
        &terms(10_000.0, Some(20.0), 0.2),
    );
    assert!((over.peak_utilization_pct - 250.0).abs() < 1e-9);
    assert!((over.utilization_pct - 50.0).abs() < 1e-9);
    assert_eq!(over.recommended_units, 3);
}

#[test]
fn an_exact_fit_is_not_rounded_up_and_idle_capacity_recommends_none() {
    // 50,000 × 1.2 = 60,000 = one unit of 60,000 exactly.
    let exact = provisioned_figures(
        3,
        &[50_000.0, 0.0, 0.0, 0.0, 0.0],
        1e6,
        &terms(60_000.0, Some(1.0), 0.2),
    );
    assert_eq!(exact.recommended_units, 1);
    let idle = provisioned_figures(3, &[0.0; 5], 0.0, &terms(60_000.0, Some(1.0), 0.2));
    assert_eq!((idle.recommended_units, idle.utilization_pct), (0, 0.0));
    let no_headroom = provisioned_figures(
        1,
        &[60_001.0, 0.0, 0.0, 0.0, 0.0],
        1e6,
        &terms(60_000.0, None, 0.0),
    );
    assert_eq!(no_headroom.recommended_units, 2);
}

fn pt(arn: &str, units: u32, status: &str) -> ProvisionedThroughput {
    ProvisionedThroughput {
        arn: arn.to_owned(),
        name: "haiku-pt".to_owned(),
        model_arn: format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}:200k"),
        model_units: units,
        status: status.to_owned(),
    }
}

#[test]
fn tables_look_up_by_arn_name_model_then_any() {
    let table = CapacityTable::parse(
        "PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT",
        Some(&format!("{HAIKU}=5000, *=100; other-pt=7")),
        Some(1.0),
    )
    .unwrap();
    let p = pt(ARN, 1, "InService");
    assert_eq!(p.model_id(), HAIKU);
    assert_eq!(table.lookup(&p), Some(5000.0));
    assert_eq!(
        table.lookup(&ProvisionedThroughput {
            name: "other-pt".into(),
            ..p.clone()
        }),
        Some(7.0)
    );
    let elsewhere = ProvisionedThroughput {
        model_arn: "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0".into(),
        ..p.clone()
    };
    assert_eq!(elsewhere.model_id(), "amazon.nova-pro-v1:0");
    assert_eq!(table.lookup(&elsewhere), Some(100.0));
    assert_eq!(
        CapacityTable::parse("V", Some("250"), None)
            .unwrap()
            .lookup(&p),
        Some(250.0)
    );
    assert_eq!(
        CapacityTable::parse("V", None, None).unwrap().lookup(&p),
        None
    );
    for bad in ["x=0", "x=-1", "x=abc", "=5", "NaN"] {
        let err = CapacityTable::parse("V", Some(bad), None).unwrap_err();
        assert_eq!(err.variable, "V", "{bad}");
    }
}

#[test]
fn tokens_are_shared_by_units_among_the_capacity_of_a_model() {
    let tokens: BTreeMap<String, Vec<f64>> = [
        (HAIKU.to_owned(), vec![300.0, 0.0, 0.0, 0.0, 0.0]),
        (format!("us.{HAIKU}"), vec![0.0, 30.0, 0.0, 0.0, 0.0]),
        ("support-bot".to_owned(), vec![0.0, 0.0, 9.0, 0.0, 0.0]),
    ]
    .into_iter()
    .collect();
    let cost: BTreeMap<String, f64> = [(HAIKU.to_owned(), 3.0), ("support-bot".to_owned(), 1.0)]
        .into_iter()
        .collect();
    let second = ARN.replace("abcdefghijkl", "mnopqrstuvwx");
    let custom = ARN.replace("abcdefghijkl", "custom000001");
    let pts = vec![
        pt(ARN, 1, "InService"),
        pt(&second, 2, "Updating"),
        pt(
            "arn:aws:bedrock:us-east-1:1:provisioned-model/creating",
            5,
            "Creating",
        ),
        ProvisionedThroughput {
            model_arn: "arn:aws:bedrock:us-east-1:1:custom-model/x".into(),
            ..pt(&custom, 1, "InService")
        },
    ];
    let mapping: HashMap<String, String> = [(custom.clone(), "support-bot".to_owned())]
        .into_iter()
        .collect();
    let served = attribute(&pts, &mapping, &tokens, &cost);
    // Haiku by id and through its profile: 330 tokens, a third to 1 unit, two thirds to 2.
    assert_eq!(served[0].tokens_by_minute, vec![100.0, 10.0, 0.0, 0.0, 0.0]);
    assert_eq!(served[1].tokens_by_minute, vec![200.0, 20.0, 0.0, 0.0, 0.0]);
    assert!((served[0].on_demand_equivalent_usd - 1.0).abs() < 1e-12);
    assert!((served[1].on_demand_equivalent_usd - 2.0).abs() < 1e-12);
    // Not serving: nothing.
    assert_eq!(served[2].tokens_by_minute, vec![0.0; 5]);
    // The custom model by its configured name only.
    assert_eq!(served[3].tokens_by_minute, vec![0.0, 0.0, 9.0, 0.0, 0.0]);
    assert_eq!(served[3].on_demand_equivalent_usd, 1.0);
}

fn catch_up() -> CatchUp {
    CatchUp {
        lag_seconds: 120,
        max_periods_per_run: 3,
        max_catch_up_periods: 10,
    }
}

#[test]
fn periods_follow_the_watermark_within_bounds() {
    let t0 = 1_750_000_200; // a period start
    assert_eq!(period_start(t0 + 299), t0);
    // First run, 2 minutes past the end of [t0, t0+300): that period alone.
    let now = t0 + 300 + 120;
    assert_eq!(plan_periods(now, None, &catch_up()).periods, vec![t0]);
    // Before the lag has passed, the period is not finished yet.
    assert_eq!(
        plan_periods(now - 1, None, &catch_up()).periods,
        vec![t0 - 300]
    );
    // Repeated: nothing new.
    assert!(plan_periods(now, Some(t0 + 300), &catch_up())
        .periods
        .is_empty());
    // Two missed periods: both, oldest first.
    assert_eq!(
        plan_periods(now + 600, Some(t0 + 300), &catch_up()).periods,
        vec![t0 + 300, t0 + 600]
    );
    // Many missed: three a run.
    let plan = plan_periods(now + 3000, Some(t0 + 300), &catch_up());
    assert_eq!(plan.periods, vec![t0 + 300, t0 + 600, t0 + 900]);
    assert_eq!(plan.skipped, 0);
    // Beyond the catch-up bound: the oldest are skipped.
    let plan = plan_periods(now + 6000, Some(t0 + 300), &catch_up());
    assert_eq!(plan.skipped, 10);
    assert_eq!(plan.periods[0], t0 + 300 + 10 * 300);
}

#[test]
fn leases_and_partial_progress() {
    let state = ReportState {
        lease: Some(PublishLease {
            owner: "a".into(),
            until_ms: 1000,
        }),
        partial: Some(Partial {
            period_start: 300,
            sent: vec!["d1".into()],
        }),
        ..ReportState::default()
    };
    assert!(state.leased_to_other("b", 999));
    assert!(!state.leased_to_other("b", 1000));
    assert!(!state.leased_to_other("a", 0));
    assert!(state.already_sent(300, "d1"));
    assert!(!state.already_sent(600, "d1"));
    assert!(!state.already_sent(300, "d2"));
}

fn datum(i: usize, dims: usize) -> Datum {
    Datum::value(
        &format!("M{i}"),
        (0..dims)
            .map(|d| (format!("D{d}"), "v".repeat(200)))
            .collect(),
        0,
        i as f64,
        Unit::Count,
    )
}

#[test]
fn requests_respect_count_size_dimension_and_value_limits() {
    let batched = requests("N", (0..2500).map(|i| datum(i, 0)).collect()).unwrap();
    assert_eq!(
        batched.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1000, 1000, 500]
    );
    // Large datums: by size before count.
    let big = requests("N", (0..1000).map(|i| datum(i, 30)).collect()).unwrap();
    assert!(big.len() > 1);
    for request in &big {
        let size: usize = request.iter().map(encoded_size).sum();
        assert!(size <= MAX_REQUEST_BYTES - ENVELOPE_BYTES, "{size}");
    }
    assert_eq!(big.iter().map(Vec::len).sum::<usize>(), 1000);
    assert!(matches!(
        requests("N", vec![datum(0, 31)]),
        Err(DatumError::TooManyDimensions { count: 31, .. })
    ));
    let nan = Datum::value("X", vec![], 0, f64::NAN, Unit::None);
    assert!(matches!(
        requests("N", vec![nan]),
        Err(DatumError::NotFinite { .. })
    ));
    // 400 values: three datums of at most 150, counts alongside.
    let many = Datum {
        sample: Sample::Values {
            values: (0..400).map(f64::from).collect(),
            counts: vec![2.0; 400],
        },
        ..datum(0, 1)
    };
    let split = requests("N", vec![many]).unwrap();
    let lens: Vec<usize> = split[0]
        .iter()
        .map(|d| match &d.sample {
            Sample::Values { values, counts } => {
                assert_eq!(values.len(), counts.len());
                values.len()
            }
            Sample::Value(_) => 1,
        })
        .collect();
    assert_eq!(lens, vec![150, 150, 100]);
}

#[test]
fn digests_tell_requests_apart() {
    let a = vec![datum(1, 1)];
    let mut b = a.clone();
    b[0].timestamp = 300;
    assert_eq!(request_digest("N", &a), request_digest("N", &a.clone()));
    assert_ne!(request_digest("N", &a), request_digest("N", &b));
    assert_ne!(request_digest("N", &a), request_digest("O", &a));
}

fn batch(id: &str, status: BatchStatus, updated_at: i64, jobs: Vec<JobEntry>) -> Batch {
    Batch {
        batch_id: id.into(),
        owner: String::new(),
        name: None,
        model_id: HAIKU.into(),
        source: "api".into(),
        status,
        jobs,
        record_count: 0,
        direct: false,
        rejection: None,
        results_key: None,
        summary: status.is_final().then(|| BatchSummary {
            cost_usd: 1.0,
            on_demand_cost_usd: 2.0,
            ..BatchSummary::default()
        }),
        announcement: None,
        budget: None,
        lease: None,
        created_at: 0,
        updated_at,
        version: 1,
    }
}

fn job(status: &str, records: u64, processed: u64) -> JobEntry {
    JobEntry {
        name: "j".into(),
        arn: None,
        status: status.into(),
        input_key: "k".into(),
        record_count: records,
        processed,
        succeeded: processed,
        failed: 0,
        message: None,
    }
}

#[test]
fn batches_count_in_the_period_they_end_and_the_backlog_counts_open_jobs() {
    let batches = vec![
        batch("a", BatchStatus::Completed, 300, vec![]),
        batch("b", BatchStatus::PartiallyCompleted, 599, vec![]),
        batch("c", BatchStatus::Completed, 600, vec![]),
        batch("d", BatchStatus::InProgress, 400, vec![]),
        batch("e", BatchStatus::Rejected, 400, vec![]),
    ];
    let ended = batches_ended(&batches, 300, 600);
    let totals = ended[HAIKU];
    assert_eq!(
        (totals.batches, totals.cost_usd, totals.saved_usd()),
        (2, 2.0, 2.0)
    );

    let open = vec![
        batch(
            "x",
            BatchStatus::InProgress,
            0,
            vec![
                job("InProgress", 100, 40),
                job("Queued", 50, 0),
                job("Completed", 10, 10),
            ],
        ),
        batch("y", BatchStatus::Queued, 0, vec![job("Queued", 30, 0)]),
    ];
    assert_eq!(
        backlog(&open),
        Backlog {
            jobs_in_progress: 1,
            jobs_queued: 2,
            records_pending: 60 + 50 + 30
        }
    );
}

fn find<'a>(datums: &'a [Datum], name: &str, dims: &[(&str, &str)]) -> Option<&'a Datum> {
    datums.iter().find(|d| {
        d.name == name
            && d.dimensions.len() == dims.len()
            && d.dimensions
                .iter()
                .zip(dims)
                .all(|((n, v), (dn, dv))| n == dn && v == dv)
    })
}

fn value(datums: &[Datum], name: &str, dims: &[(&str, &str)]) -> f64 {
    match find(datums, name, dims).map(|d| &d.sample) {
        Some(Sample::Value(v)) => *v,
        other => panic!("{name} {dims:?}: {other:?}"),
    }
}

#[test]
fn a_period_report_becomes_its_datums() {
    let mut usage = BTreeMap::new();
    usage.insert(
        HAIKU.to_owned(),
        ModelUsage {
            requests: 6.0,
            hits: 3.0,
            throttles: 1.0,
            cost_usd: 0.5,
            saved_usd: 0.25,
            prompt_cache_saved_usd: 0.125,
            ..ModelUsage::default()
        },
    );
    usage.insert(
        NO_MODEL.to_owned(),
        ModelUsage {
            requests: 2.0,
            client_errors: 2.0,
            ..ModelUsage::default()
        },
    );
    usage.insert("idle".to_owned(), ModelUsage::default());
    let mut batches = BTreeMap::new();
    batches.insert(
        "nova".to_owned(),
        BatchTotals {
            batches: 1,
            cost_usd: 1.0,
            on_demand_cost_usd: 2.0,
        },
    );
    let figures = provisioned_figures(
        2,
        &[3000.0, 12000.0, 6000.0, 0.0, 9000.0],
        5.0,
        &terms(10_000.0, Some(24.0), 0.2),
    );
    let report = PeriodReport {
        cost_by_tier: BTreeMap::from([("flex".to_owned(), 0.2), ("default".to_owned(), 0.3)]),
        deferred: BTreeMap::new(),
        deferred_misses: 0.0,
        start: 600,
        usage,
        batches,
        provisioned: vec![(pt(ARN, 2, "InService"), figures)],
        backlog: Some(Backlog {
            jobs_in_progress: 1,
            jobs_queued: 2,
            records_pending: 3,
        }),
    };
    let d = report.datums();
    assert!(d.iter().all(|d| d.timestamp == 600));
    let haiku = [("ModelId", HAIKU)];
    assert_eq!(value(&d, "EstimatedCostUSD", &haiku), 0.5);
    assert_eq!(value(&d, "SavedByCacheUSD", &haiku), 0.25);
    assert_eq!(value(&d, "SavedByBatchUSD", &haiku), 0.0);
    assert_eq!(value(&d, "CacheHitRate", &haiku), 60.0); // 3 hits of 5 answered
    assert_eq!(value(&d, "SavedByPromptCacheUSD", &haiku), 0.125);
    assert_eq!(value(&d, "SavedByPromptCacheUSD", &[]), 0.125);
    assert_eq!(
        value(&d, "EstimatedCostUSD", &[("ServiceTier", "flex")]),
        0.2
    );
    assert_eq!(
        value(&d, "EstimatedCostUSD", &[("ServiceTier", "default")]),
        0.3
    );
    let nova = [("ModelId", "nova")];
    assert_eq!(
        (
            value(&d, "EstimatedCostUSD", &nova),
            value(&d, "SavedByBatchUSD", &nova)
        ),
        (1.0, 1.0)
    );
    assert!(
        find(&d, "CacheHitRate", &nova).is_none(),
        "no request answered"
    );
    assert!(find(&d, "EstimatedCostUSD", &[("ModelId", "idle")]).is_none());
    assert!(find(&d, "EstimatedCostUSD", &[("ModelId", NO_MODEL)]).is_none());
    assert_eq!(value(&d, "EstimatedCostUSD", &[]), 1.5);
    assert_eq!(value(&d, "SavedByBatchUSD", &[]), 1.0);
    assert_eq!(value(&d, "CacheHitRate", &[]), 60.0);
    // $48 an hour of capacity: $4 for five minutes.
    assert!((value(&d, "TotalCostUSD", &[]) - 5.5).abs() < 1e-12);
    assert!((value(&d, "ProvisionedUtilization", &[]) - 30.0).abs() < 1e-9);
    let arn = [("ProvisionedModelArn", ARN)];
    assert_eq!(value(&d, "ProvisionedModelUnits", &arn), 2.0);
    assert!((value(&d, "ProvisionedPeakUtilization", &arn) - 60.0).abs() < 1e-9);
    assert_eq!(value(&d, "ProvisionedHourlyCostUSD", &arn), 48.0);
    assert_eq!(value(&d, "ProvisionedOnDemandEquivalentUSD", &arn), 5.0);
    assert_eq!(value(&d, "RecommendedModelUnits", &arn), 2.0);
    assert_eq!(value(&d, "BatchRecordsPending", &[]), 3.0);
    let no_backlog = PeriodReport {
        backlog: None,
        ..report
    }
    .datums();
    assert!(find(&no_backlog, "BatchJobsQueued", &[]).is_none());
}

#[test]
fn deferred_requests_are_reported_by_placement_and_their_on_demand_cost_counted_once() {
    let report = PeriodReport {
        start: 600,
        deferred: BTreeMap::from([
            (
                "batch".to_owned(),
                DeferredTotals {
                    requests: 150.0,
                    cost_usd: 0.5,
                    saved_usd: 0.5,
                },
            ),
            (
                "flex".to_owned(),
                DeferredTotals {
                    requests: 5.0,
                    cost_usd: 0.02,
                    saved_usd: 0.02,
                },
            ),
        ]),
        deferred_misses: 1.0,
        ..PeriodReport::default()
    };
    let d = report.datums();
    let flex = [("Placement", "flex")];
    assert_eq!(value(&d, "DeferredRequests", &flex), 5.0);
    assert_eq!(value(&d, "SavedByDeferredUSD", &flex), 0.02);
    assert_eq!(value(&d, "SavedByDeferredUSD", &[]), 0.52);
    assert_eq!(value(&d, "DeferredDeadlineMisses", &[]), 1.0);
    // The batch placement's cost is its batch's, already in the registry's totals.
    assert_eq!(value(&d, "EstimatedCostUSD", &[]), 0.02);
}
