use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::routing::{CapacityRouter, Route, RoutingPolicy};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SONNET: &str = "anthropic.claude-3-sonnet-20240229-v1:0";
const PLAN: &str = "test-plan";

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn tokyo_plan() -> CapacityPlan {
    CapacityPlan::parse(&format!(
        r#"{{"{HAIKU}": {{"modelUnits": 1, "window": "Mon-Fri 09:00-18:00", "timeZone": "Asia/Tokyo"}}}}"#
    ))
    .unwrap()
}

fn capacity(name: &str, units: u32, status: CapacityStatus) -> Capacity {
    Capacity {
        arn: format!("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/{name}"),
        name: name.to_owned(),
        model_id: Some(HAIKU.to_owned()),
        model_units: units,
        status,
        commitment: Commitment::None,
        commitment_expires_at: None,
        created_at: utc(2026, 11, 23, 0, 0),
    }
}

fn seen(capacity: Capacity) -> Observed {
    Observed {
        capacity,
        tags: None,
    }
}

/// Listed, and its tags looked up: none.
fn untagged(capacity: Capacity) -> Observed {
    Observed {
        capacity,
        tags: Some(BTreeMap::new()),
    }
}

struct Run<'a> {
    plan: &'a CapacityPlan,
    drain_seconds: i64,
}

impl Run<'_> {
    fn at(
        &self,
        now: DateTime<Utc>,
        observed: &[Observed],
        previous: Option<&RoutingTable>,
    ) -> Reconciliation {
        Reconcile {
            plan: self.plan,
            plan_name: PLAN,
            lead_minutes: 15,
            drain: Duration::seconds(self.drain_seconds),
            now,
            observed,
            previous,
        }
        .decide()
    }
}

#[test]
fn plans_parse_and_refuse_what_they_cannot_mean() {
    let plan = CapacityPlan::parse(&format!(
        r#"{{"{HAIKU}": {{"modelUnits": 2, "window": "Mon-Fri 09:00-18:00", "timeZone": "Asia/Tokyo"}},
            "{SONNET}": {{"modelUnits": 1, "commitment": "OneMonth"}}}}"#
    ))
    .unwrap();
    let haiku = plan.entry(HAIKU).unwrap();
    assert_eq!(haiku.model_units, 2);
    assert_eq!(haiku.commitment, Commitment::None);
    assert_eq!(haiku.window.as_ref().unwrap().zone, chrono_tz::Asia::Tokyo);
    assert_eq!(plan.entry(SONNET).unwrap().commitment, Commitment::OneMonth);
    assert!(CapacityPlan::parse("{}").unwrap().entries.is_empty());
    for bad in [
        "[]",
        r#"{"m": {"modelUnits": 0}}"#,
        r#"{"m": {"modelUnits": 1, "commitment": "forever"}}"#,
        r#"{"m": {"modelUnits": 1, "commitment": "OneMonth", "window": "09:00-17:00"}}"#,
        r#"{"m": {"modelUnits": 1, "window": "9 to 5"}}"#,
        r#"{"m": {"modelUnits": 1, "window": "09:00-17:00", "timeZone": "Mars/Olympus"}}"#,
        r#"{"m": {"modelUnits": 1, "timeZone": "UTC"}}"#,
        r#"{"m": {"modelUnits": 1, "units": 2}}"#,
        r#"{"a model": {"modelUnits": 1}}"#,
    ] {
        assert!(CapacityPlan::parse(bad).is_err(), "{bad}");
    }
    let error = CapacityPlan::parse(r#"{"m": {"modelUnits": 1, "window": "9 to 5"}}"#).unwrap_err();
    assert!(error.starts_with("m: window"), "{error}");
}

#[test]
fn names_are_deterministic_short_and_of_bedrocks_pattern() {
    assert_eq!(
        capacity_name(HAIKU, 1, Commitment::None),
        "bgw-anthropic-claude-3-haiku-20240307-v1-0-1u"
    );
    assert_eq!(
        capacity_name(HAIKU, 2, Commitment::SixMonths),
        "bgw-anthropic-claude-3-haiku-20240307-v1-0-2u-c6m"
    );
    let long = "anthropic.claude-3-5-sonnet-20241022-v2:0:200k-with-a-very-long-suffix";
    let name = capacity_name(long, 12, Commitment::OneMonth);
    assert!(name.len() <= 63, "{name}");
    assert!(name.ends_with("-12u-c1m"), "{name}");
    assert_ne!(
        name,
        capacity_name(&format!("{long}x"), 12, Commitment::OneMonth)
    );
    for name in [name, capacity_name("--Odd..Model__", 1, Commitment::None)] {
        assert!(!name.contains("--") && name.starts_with("bgw-"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}

#[test]
fn the_lead_time_opens_the_window_early_and_saturday_has_none() {
    let window = CapacityWindow::parse("Mon-Fri 09:00-18:00", "Asia/Tokyo").unwrap();
    // Monday 2026-11-23: 09:00 in Tokyo is 00:00 UTC; the lead opens at 08:45 (23:45 UTC
    // on Sunday).
    assert_eq!(window.due(utc(2026, 11, 22, 23, 44), 15), None);
    let due = window.due(utc(2026, 11, 22, 23, 45), 15).unwrap();
    assert_eq!(due.opens, Some(utc(2026, 11, 23, 0, 0)));
    assert_eq!(due.closes, Some(utc(2026, 11, 23, 9, 0)));
    // Seconds into the minute before the lead: not yet.
    let just_before = utc(2026, 11, 22, 23, 44) + Duration::seconds(59);
    assert_eq!(window.due(just_before, 15), None);
    assert!(window.due(utc(2026, 11, 23, 8, 59), 15).is_some());
    assert_eq!(window.due(utc(2026, 11, 23, 9, 0), 15), None);
    // Saturday 2026-11-28, every minute: nothing due.
    for minute in (0..24 * 60).step_by(7) {
        let at = utc(2026, 11, 27, 15, 0) + Duration::minutes(minute);
        assert_eq!(window.due(at, 15), None, "{at}");
    }
    // Sunday 23:45 Tokyo is the lead of Monday's window.
    assert!(window.due(utc(2026, 11, 29, 23, 45), 15).is_some());
    let next = window.next(utc(2026, 11, 28, 1, 0)).unwrap();
    assert_eq!(next.opens, Some(utc(2026, 11, 30, 0, 0)));
}

#[test]
fn windows_hold_across_daylight_saving_changes() {
    let window = CapacityWindow::parse("Mon-Fri 09:00-17:00", "America/New_York").unwrap();
    // Friday 2026-03-06 (EST, UTC-5): 09:00 is 14:00 UTC, the lead 13:45.
    assert_eq!(window.due(utc(2026, 3, 6, 13, 44), 15), None);
    assert_eq!(
        window.due(utc(2026, 3, 6, 13, 45), 15).unwrap().opens,
        Some(utc(2026, 3, 6, 14, 0))
    );
    // Monday 2026-03-09, after spring-forward (EDT, UTC-4): an hour earlier in UTC.
    assert_eq!(window.due(utc(2026, 3, 9, 12, 44), 15), None);
    let monday = window.due(utc(2026, 3, 9, 12, 45), 15).unwrap();
    assert_eq!(monday.opens, Some(utc(2026, 3, 9, 13, 0)));
    assert_eq!(monday.closes, Some(utc(2026, 3, 9, 21, 0)));
    // Monday 2026-11-02, after fall-back: 09:00 EST is 14:00 UTC again.
    assert_eq!(
        window.due(utc(2026, 11, 2, 13, 45), 15).unwrap().closes,
        Some(utc(2026, 11, 2, 22, 0))
    );
    // A window that never closes has no ends.
    let always = CapacityWindow::parse("00:00-00:00", "UTC").unwrap();
    let occurrence = always.due(utc(2026, 1, 1, 0, 0), 15).unwrap();
    assert_eq!((occurrence.opens, occurrence.closes), (None, None));
}

#[test]
fn tokens_follow_the_plan_and_the_opening() {
    let plan = tokyo_plan();
    let entry = &plan.entries[0];
    let monday = Some(utc(2026, 11, 23, 0, 0));
    let token = entry.client_request_token(PLAN, monday);
    assert_eq!(token, entry.client_request_token(PLAN, monday));
    assert_ne!(
        token,
        entry.client_request_token(PLAN, Some(utc(2026, 11, 24, 0, 0)))
    );
    assert_ne!(token, entry.client_request_token("other-plan", monday));
    assert_eq!(token.len(), 32);
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn a_window_creates_at_the_lead_routes_when_in_service_withdraws_then_deletes() {
    let plan = tokyo_plan();
    let run = Run {
        plan: &plan,
        drain_seconds: 60,
    };
    let name = plan.entries[0].name();
    // Sunday 23:44 UTC (Monday 08:44 Tokyo): nothing yet.
    let early = run.at(utc(2026, 11, 22, 23, 44), &[], None);
    assert!(early.creates.is_empty() && !early.changed);
    // 08:45 Tokyo: create, tagged, with the opening's token.
    let lead = run.at(utc(2026, 11, 22, 23, 45), &[], None);
    assert_eq!(lead.creates.len(), 1);
    let order = &lead.creates[0];
    assert_eq!(order.name, name);
    assert_eq!(
        order.client_request_token,
        plan.entries[0].client_request_token(PLAN, Some(utc(2026, 11, 23, 0, 0)))
    );
    assert!(order.tags.contains(&(PLAN_TAG.into(), PLAN.into())));
    assert!(lead.changed && lead.table.routes.is_empty());
    assert_eq!(lead.table.capacities[0].status, "Requested");
    // A repeated run that does not see it yet trusts the request.
    let again = run.at(utc(2026, 11, 22, 23, 46), &[], Some(&lead.table));
    assert!(again.creates.is_empty(), "{again:?}");
    // Creating: recorded (not adopted), not routed.
    let creating = [seen(capacity(&name, 1, CapacityStatus::Creating))];
    let second = run.at(utc(2026, 11, 22, 23, 47), &creating, Some(&lead.table));
    assert!(second.creates.is_empty() && second.adoptions.is_empty());
    assert!(second.table.routes.is_empty());
    // InService: routed.
    let live = [seen(capacity(&name, 1, CapacityStatus::InService))];
    let routed = run.at(utc(2026, 11, 22, 23, 50), &live, Some(&second.table));
    assert_eq!(
        routed.table.routes[HAIKU],
        vec![live[0].capacity.arn.clone()]
    );
    assert!(routed.deletes.is_empty());
    // Unchanged in the afternoon: nothing to write.
    let noon = run.at(utc(2026, 11, 23, 3, 0), &live, Some(&routed.table));
    assert!(!noon.changed, "{noon:?}");
    // 18:00 Tokyo: withdrawn, not deleted yet.
    let closing = run.at(utc(2026, 11, 23, 9, 0), &live, Some(&routed.table));
    assert!(closing.table.routes.is_empty() && closing.deletes.is_empty());
    assert_eq!(
        closing.table.capacities[0].withdrawn_at,
        Some(utc(2026, 11, 23, 9, 0).timestamp())
    );
    // A drain later: deleted.
    let drained = run.at(utc(2026, 11, 23, 9, 1), &live, Some(&closing.table));
    assert_eq!(drained.deletes.len(), 1);
    assert_eq!(drained.deletes[0].reason, DeleteReason::WindowClosed);
    // Without a drain, the same run that withdraws deletes (after its write).
    let at_once = Run {
        plan: &plan,
        drain_seconds: 0,
    }
    .at(utc(2026, 11, 23, 9, 0), &live, Some(&routed.table));
    assert!(at_once.table.routes.is_empty());
    assert_eq!(at_once.deletes.len(), 1);
}

#[test]
fn nothing_happens_on_saturday() {
    let plan = tokyo_plan();
    let run = Run {
        plan: &plan,
        drain_seconds: 60,
    };
    for hour in 0..24 {
        // Saturday 2026-11-28 in Tokyo.
        let at = utc(2026, 11, 27, 15, 0) + Duration::hours(hour);
        let decided = run.at(at, &[], None);
        assert!(decided.creates.is_empty() && !decided.changed, "{at}");
    }
}

#[test]
fn committed_capacity_is_routed_and_never_deleted() {
    let plan = CapacityPlan::parse(&format!(
        r#"{{"{HAIKU}": {{"modelUnits": 1, "commitment": "OneMonth"}}}}"#
    ))
    .unwrap();
    let run = Run {
        plan: &plan,
        drain_seconds: 0,
    };
    let first = run.at(utc(2026, 11, 28, 3, 0), &[], None);
    assert_eq!(first.creates[0].commitment, Commitment::OneMonth);
    assert_eq!(
        first.creates[0].name,
        capacity_name(HAIKU, 1, Commitment::OneMonth)
    );
    let mut committed = capacity(&first.creates[0].name, 1, CapacityStatus::InService);
    committed.commitment = Commitment::OneMonth;
    let live = [seen(committed.clone())];
    let routed = run.at(utc(2026, 11, 28, 3, 1), &live, Some(&first.table));
    assert_eq!(routed.table.routes[HAIKU], vec![committed.arn.clone()]);
    // Removed from the plan: still routed (paid for anyway), never deleted.
    let empty = CapacityPlan::default();
    let dropped = Run {
        plan: &empty,
        drain_seconds: 0,
    }
    .at(utc(2026, 11, 28, 4, 0), &live, Some(&routed.table));
    assert!(dropped.deletes.is_empty());
    assert_eq!(dropped.table.routes[HAIKU], vec![committed.arn.clone()]);
    // Even failed.
    committed.status = CapacityStatus::Failed;
    let failed = run.at(
        utc(2026, 11, 28, 4, 0),
        &[seen(committed)],
        Some(&routed.table),
    );
    assert!(failed.deletes.is_empty());
}

#[test]
fn a_unit_change_is_blue_green() {
    let one = tokyo_plan();
    let old_name = one.entries[0].name();
    let old = capacity(&old_name, 1, CapacityStatus::InService);
    let at = |m| utc(2026, 11, 23, 1, m);
    let routed = Run {
        plan: &one,
        drain_seconds: 60,
    }
    .at(at(0), &[untagged(old.clone())], None);
    assert_eq!(routed.adoptions.len(), 1);
    assert_eq!(routed.table.routes[HAIKU], vec![old.arn.clone()]);

    let two = CapacityPlan::parse(&format!(
        r#"{{"{HAIKU}": {{"modelUnits": 2, "window": "Mon-Fri 09:00-18:00", "timeZone": "Asia/Tokyo"}}}}"#
    ))
    .unwrap();
    let run = Run {
        plan: &two,
        drain_seconds: 60,
    };
    // The new one is created; the old one keeps the route.
    let green = run.at(at(1), &[seen(old.clone())], Some(&routed.table));
    assert_eq!(green.creates.len(), 1);
    assert_eq!(green.creates[0].model_units, 2);
    assert_eq!(green.table.routes[HAIKU], vec![old.arn.clone()]);
    assert!(green.deletes.is_empty());
    let new_name = two.entries[0].name();
    let creating = [
        seen(old.clone()),
        seen(capacity(&new_name, 2, CapacityStatus::Creating)),
    ];
    let waiting = run.at(at(2), &creating, Some(&green.table));
    assert_eq!(waiting.table.routes[HAIKU], vec![old.arn.clone()]);
    assert!(waiting.deletes.is_empty() && waiting.creates.is_empty());
    // In service: the route switches; the old one is deleted a drain later.
    let new = capacity(&new_name, 2, CapacityStatus::InService);
    let both = [seen(old.clone()), seen(new.clone())];
    let switched = run.at(at(3), &both, Some(&waiting.table));
    assert_eq!(switched.table.routes[HAIKU], vec![new.arn.clone()]);
    assert!(switched.deletes.is_empty());
    let later = run.at(at(4), &both, Some(&switched.table));
    assert_eq!(later.deletes.len(), 1);
    assert_eq!(later.deletes[0].arn, old.arn);
    assert_eq!(later.deletes[0].reason, DeleteReason::Replaced);
}

#[test]
fn existing_capacity_is_adopted_by_name_or_tag_and_foreign_capacity_left_alone() {
    let plan = tokyo_plan();
    let run = Run {
        plan: &plan,
        drain_seconds: 60,
    };
    let name = plan.entries[0].name();
    let mut named = seen(capacity(&name, 1, CapacityStatus::InService));
    assert!(needs_tags(&named.capacity, None, &plan));
    named.tags = Some(BTreeMap::new());
    let mut tagged = seen(capacity("team-haiku", 1, CapacityStatus::InService));
    tagged.tags = Some([(PLAN_TAG.to_owned(), PLAN.to_owned())].into());
    let mut foreign = seen(capacity("other-team", 1, CapacityStatus::InService));
    foreign.tags = Some([(PLAN_TAG.to_owned(), "their-plan".to_owned())].into());
    let untagged = seen(capacity("someone-else", 1, CapacityStatus::InService));

    let decided = run.at(
        utc(2026, 11, 23, 1, 0),
        &[named.clone(), tagged.clone(), foreign, untagged],
        None,
    );
    assert!(decided.creates.is_empty(), "{decided:?}");
    let adopted: Vec<(&str, bool)> = decided
        .adoptions
        .iter()
        .map(|a| (a.name.as_str(), a.needs_tags))
        .collect();
    assert_eq!(adopted, vec![(name.as_str(), true), ("team-haiku", false)]);
    assert_eq!(decided.table.routes[HAIKU].len(), 2);
    // Recorded from now on: not adopted again, no tag lookups needed.
    assert!(!needs_tags(&named.capacity, Some(&decided.table), &plan));
    let again = run.at(
        utc(2026, 11, 23, 1, 1),
        &[seen(named.capacity), seen(tagged.capacity)],
        Some(&decided.table),
    );
    assert!(again.adoptions.is_empty() && !again.changed, "{again:?}");
}

#[test]
fn a_failed_creation_is_deleted_then_created_again() {
    let plan = tokyo_plan();
    let run = Run {
        plan: &plan,
        drain_seconds: 60,
    };
    let name = plan.entries[0].name();
    let failed = [seen(capacity(&name, 1, CapacityStatus::Failed))];
    let first = run.at(utc(2026, 11, 23, 0, 0), &[], None);
    let decided = run.at(utc(2026, 11, 23, 1, 0), &failed, Some(&first.table));
    assert!(decided.creates.is_empty());
    assert_eq!(decided.deletes[0].reason, DeleteReason::Failed);
    let next = run.at(utc(2026, 11, 23, 1, 1), &[], Some(&decided.table));
    assert_eq!(next.creates.len(), 1);
}

#[test]
fn creation_outcomes_update_the_records() {
    let plan = tokyo_plan();
    let lead = Run {
        plan: &plan,
        drain_seconds: 60,
    }
    .at(utc(2026, 11, 22, 23, 45), &[], None);
    let name = lead.creates[0].name.clone();
    let created = after_creations(
        &lead.table,
        &[(name.clone(), "arn:x".into())],
        &[],
        utc(2026, 11, 22, 23, 45),
    );
    assert_eq!(created.version, lead.table.version + 1);
    assert_eq!(created.capacities[0].arn.as_deref(), Some("arn:x"));
    let refused = after_creations(&lead.table, &[], &[name], utc(2026, 11, 22, 23, 45));
    assert!(refused.capacities.is_empty());
}

#[test]
fn live_routes_apply_unless_the_static_configuration_routes_provisioned() {
    let static_arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/static";
    let live_arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/live";
    let table = RoutingTable {
        routes: [
            (HAIKU.to_owned(), vec![live_arn.to_owned()]),
            (SONNET.to_owned(), vec![live_arn.to_owned()]),
        ]
        .into(),
        ..RoutingTable::default()
    };
    let router = CapacityRouter::new(
        CapacityRouter::parse_provisioned(&format!("{HAIKU}={static_arn}")).unwrap(),
        RoutingPolicy::Spillover,
    );
    let now = utc(2026, 11, 23, 1, 0);
    assert_eq!(
        table.plan(&router, HAIKU, now).primary.invoke_id,
        static_arn
    );
    let live = table.plan(&router, SONNET, now);
    assert_eq!(live.primary.invoke_id, live_arn);
    assert_eq!(live.primary.route, Route::Provisioned);
    assert_eq!(live.primary.model, SONNET);
    assert_eq!(live.spillover.unwrap().invoke_id, SONNET);
    let none = live_plan(&router, None, SONNET, now);
    assert_eq!(none.primary.route, Route::OnDemand);
    assert!(none.spillover.is_none());
}

#[test]
fn prices_and_the_daily_cost_of_a_window() {
    let prices = CapacityPrices::with_overrides(Some(&format!("{HAIKU}=10/8; *=50"))).unwrap();
    assert_eq!(prices.per_unit_hour(HAIKU, Commitment::None), Some(10.0));
    assert_eq!(prices.per_unit_hour(HAIKU, Commitment::SixMonths), None);
    assert_eq!(prices.hourly(SONNET, 2, Commitment::None), Some(100.0));
    let defaults = CapacityPrices::with_overrides(None).unwrap();
    assert_eq!(
        defaults.per_unit_hour(SONNET, Commitment::OneMonth),
        Some(32.0)
    );
    for bad in ["m", "m=x", "m=1/2/3/4", "m=-1"] {
        assert!(CapacityPrices::with_overrides(Some(bad)).is_err(), "{bad}");
    }

    let plan = tokyo_plan();
    let entry = &plan.entries[0];
    // Five 9-hour windows, each with a 15-minute lead and a 1-minute drain.
    let cost = PlanCost::of(
        entry,
        &prices,
        utc(2026, 11, 23, 0, 0),
        15,
        Duration::seconds(60),
    )
    .unwrap();
    let hours = 5.0 * (9.0 + 15.0 / 60.0 + 1.0 / 60.0);
    assert!((cost.hours_per_week - hours).abs() < 1e-9, "{cost:?}");
    assert!((cost.daily_usd - hours / 7.0 * 10.0).abs() < 1e-9);
    assert!((cost.always_on_daily_usd - 240.0).abs() < 1e-9);
    let always = CapacityPlan::parse(&format!(r#"{{"{HAIKU}": {{"modelUnits": 1}}}}"#)).unwrap();
    assert_eq!(
        always.entries[0].hours_per_week(utc(2026, 11, 23, 0, 0), 15, Duration::zero()),
        168.0
    );
}
