//! capacity: every minute (an EventBridge schedule), reconciles the declared capacity plan with
//! the Provisioned Throughput that exists, publishes the routing table invoke-with-cache routes
//! by, and acts: adopts, creates, deletes. `GET /v1/capacity` (API Gateway, IAM) shows the
//! capacity, its cost, and what the plan costs a day against keeping it all day.
//!
//! A run, in order: read the table and list the capacity (tags only where ownership needs
//! them); decide ([`Reconcile`]); write the table if anything changed, conditional on the
//! version read, and stop if another run wrote first (its decisions stand); tag adopted
//! capacity; create; record the creations' ARNs; delete (only capacity the table no longer
//! routes, a drain after the write that withdrew it).

pub mod config;

use std::collections::BTreeMap;

use http::StatusCode;
use lambda_http::Request;
use serde::Serialize;
use serde_json::{json, Value};

use domain::capacity::{
    after_creations, needs_tags, plan_tags, Capacity, CapacityAction, CapacityCounts,
    CapacityError, DeleteReason, Observed, PlanCost, Reconcile, RoutingTable, RoutingTableError,
};
use domain::ports::{CapacityMetricsSink, Clock, ProvisionedThroughputs, RoutingTableStore};
use shared::api::ApiError;
use shared::http::{answer_gateway_event, request_id, JsonAnswer};

pub use config::CapacitySettings;

/// Why a scheduled run stopped before deciding anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Table(#[from] RoutingTableError),
    #[error(transparent)]
    Bedrock(#[from] CapacityError),
}

/// What a run did, by capacity name; also its answer to the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The routing table's version after the run.
    pub version: Option<u64>,
    /// Whether the run wrote the table.
    pub published: bool,
    /// Another run wrote the table first: this one did nothing.
    pub raced: bool,
    pub routes: BTreeMap<String, Vec<String>>,
    pub created: Vec<String>,
    pub adopted: Vec<String>,
    pub deleted: Vec<String>,
    pub failed: Vec<String>,
    pub quota_refused: Vec<String>,
}

pub struct CapacityApp<P, T, C, K> {
    pub settings: CapacitySettings,
    pub bedrock: P,
    pub table: T,
    pub clock: C,
    pub metrics: K,
}

/// Counts per model, published as one metrics line each at the end of a run.
#[derive(Default)]
struct Tally(BTreeMap<String, CapacityCounts>);

impl Tally {
    fn add(&mut self, model_id: &str, action: CapacityAction) {
        self.0
            .entry(model_id.to_owned())
            .or_insert_with(|| CapacityCounts {
                model_id: model_id.to_owned(),
                ..CapacityCounts::default()
            })
            .add(action);
    }
}

impl<P, T, C, K> CapacityApp<P, T, C, K>
where
    P: ProvisionedThroughputs,
    T: RoutingTableStore,
    C: Clock,
    K: CapacityMetricsSink,
{
    /// An API Gateway request is answered; any other event (the schedule's) runs a
    /// reconciliation, whose failure is the invocation's error.
    pub async fn on_event(&self, event: Value) -> Result<Value, RunError> {
        if event.get("requestContext").is_some() {
            return Ok(self.on_http(&event).await);
        }
        let report = self.reconcile().await?;
        Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
    }

    /// One reconciliation.
    pub async fn reconcile(&self) -> Result<RunReport, RunError> {
        let settings = &self.settings;
        let now = self.clock.now();
        let previous = self.table.routing_table().await?;
        let mut observed = Vec::new();
        for capacity in self.bedrock.list().await? {
            let tags = if needs_tags(&capacity, previous.as_ref(), &settings.plan) {
                match self.bedrock.tags(&capacity.arn).await {
                    Ok(tags) => Some(tags),
                    Err(error) => {
                        // Unknown ownership is foreign ownership: nothing is done to it.
                        tracing::warn!(name = capacity.name, arn = capacity.arn, %error, "tags unreadable; capacity left alone this run");
                        None
                    }
                }
            } else {
                None
            };
            observed.push(Observed { capacity, tags });
        }
        let decided = Reconcile {
            plan: &settings.plan,
            plan_name: &settings.plan_name,
            lead_minutes: settings.lead_minutes,
            drain: settings.drain,
            now,
            observed: &observed,
            previous: previous.as_ref(),
        }
        .decide();
        let mut report = RunReport {
            version: previous.as_ref().map(|t| t.version),
            routes: decided.table.routes.clone(),
            ..RunReport::default()
        };
        if !decided.changed {
            return Ok(report);
        }
        match self.table.publish(&decided.table).await {
            Ok(()) => {
                report.published = true;
                report.version = Some(decided.table.version);
                let before = previous.as_ref().map(|t| &t.routes);
                if before != Some(&decided.table.routes) {
                    tracing::info!(version = decided.table.version, routes = ?decided.table.routes, "routing table published");
                }
            }
            Err(RoutingTableError::Conflict) => {
                tracing::info!(
                    version = decided.table.version,
                    "another run wrote the routing table first; its decisions stand"
                );
                report.raced = true;
                return Ok(report);
            }
            Err(error) => return Err(error.into()),
        }

        let mut tally = Tally::default();
        for adoption in &decided.adoptions {
            if adoption.needs_tags {
                let tags = plan_tags(&settings.plan_name, &adoption.model_id);
                if let Err(error) = self.bedrock.tag(&adoption.arn, &tags).await {
                    tracing::warn!(action = "Failed", model_id = adoption.model_id, name = adoption.name, arn = adoption.arn, cause = %error, "adopted capacity not tagged");
                    tally.add(&adoption.model_id, CapacityAction::Failed);
                    report.failed.push(adoption.name.clone());
                }
            }
            tracing::info!(
                action = "Adopted",
                model_id = adoption.model_id,
                name = adoption.name,
                arn = adoption.arn,
                by = if adoption.needs_tags { "name" } else { "tag" },
                "capacity adopted"
            );
            tally.add(&adoption.model_id, CapacityAction::Adopted);
            report.adopted.push(adoption.name.clone());
        }

        let mut created = Vec::new();
        let mut refused = Vec::new();
        for order in &decided.creates {
            match self.bedrock.create(order).await {
                Ok(arn) => {
                    tracing::info!(
                        action = "Created",
                        model_id = order.model_id,
                        name = order.name,
                        arn,
                        model_units = order.model_units,
                        commitment = order.commitment.as_str(),
                        "capacity created"
                    );
                    tally.add(&order.model_id, CapacityAction::Created);
                    report.created.push(order.name.clone());
                    created.push((order.name.clone(), arn));
                }
                Err(CapacityError::QuotaExceeded(cause)) => {
                    tracing::warn!(
                        action = "QuotaRefused",
                        model_id = order.model_id,
                        name = order.name,
                        model_units = order.model_units,
                        cause,
                        "capacity not created: model-unit quota"
                    );
                    tally.add(&order.model_id, CapacityAction::QuotaRefused);
                    report.quota_refused.push(order.name.clone());
                    refused.push(order.name.clone());
                }
                Err(error) => {
                    tracing::warn!(action = "Failed", model_id = order.model_id, name = order.name, model_units = order.model_units, cause = %error, "capacity not created");
                    tally.add(&order.model_id, CapacityAction::Failed);
                    report.failed.push(order.name.clone());
                    refused.push(order.name.clone());
                }
            }
        }
        if !decided.creates.is_empty() {
            let next = after_creations(&decided.table, &created, &refused, now);
            match self.table.publish(&next).await {
                Ok(()) => report.version = Some(next.version),
                // The next run finds the capacity by name; nothing is lost.
                Err(error) => {
                    tracing::info!(%error, "creations not recorded; the next run reads them")
                }
            }
        }

        for order in &decided.deletes {
            if order.reason == DeleteReason::Failed {
                tracing::warn!(
                    action = "Failed",
                    model_id = order.model_id,
                    name = order.name,
                    arn = order.arn,
                    "capacity failed; deleting it"
                );
                tally.add(&order.model_id, CapacityAction::Failed);
                report.failed.push(order.name.clone());
            }
            match self.bedrock.delete(&order.arn).await {
                Ok(()) => {
                    tracing::info!(
                        action = "Deleted",
                        model_id = order.model_id,
                        name = order.name,
                        arn = order.arn,
                        reason = order.reason.as_str(),
                        "capacity deleted"
                    );
                    tally.add(&order.model_id, CapacityAction::Deleted);
                    report.deleted.push(order.name.clone());
                }
                Err(CapacityError::NotFound(_)) => {
                    tracing::info!(name = order.name, arn = order.arn, "capacity already gone")
                }
                Err(error) => {
                    tracing::warn!(action = "Failed", model_id = order.model_id, name = order.name, arn = order.arn, cause = %error, "capacity not deleted; retried next run");
                    tally.add(&order.model_id, CapacityAction::Failed);
                    report.failed.push(order.name.clone());
                }
            }
        }
        for counts in tally.0.values() {
            self.metrics.publish(counts);
        }
        Ok(report)
    }

    async fn on_http(&self, event: &Value) -> Value {
        answer_gateway_event(event, |request| async move { self.answer(&request).await }).await
    }

    /// `GET /v1/capacity`.
    pub async fn answer(&self, request: &Request) -> JsonAnswer {
        let request_id = request_id(request);
        let path = request.uri().path().trim_end_matches('/');
        let answer = if !path.ends_with("/v1/capacity") {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{path}: no such route; see GET /v1/capacity"),
            ))
        } else if request.method() != http::Method::GET {
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{} is not allowed on {path}", request.method()),
            ))
        } else {
            self.describe().await
        };
        match answer {
            Ok(body) => JsonAnswer::new(StatusCode::OK, body),
            Err(error) => {
                if error.status.is_server_error() {
                    tracing::warn!(
                        request_id,
                        code = error.code,
                        cause = error.cause.as_deref().unwrap_or("none"),
                        "capacity request failed"
                    );
                }
                JsonAnswer::error(&error, &request_id)
            }
        }
    }

    /// Every capacity of this plan (with its window and hourly cost), the plan with what each
    /// entry costs a day against the same capacity all day, and the routes.
    pub async fn describe(&self) -> Result<Value, ApiError> {
        let settings = &self.settings;
        let now = self.clock.now();
        let table = self
            .table
            .routing_table()
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .unwrap_or_default();
        let listed = self
            .bedrock
            .list()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let capacities: Vec<Value> = table
            .capacities
            .iter()
            .map(|record| {
                let live = listed.iter().find(|c| {
                    c.name == record.name && record.arn.as_deref().is_none_or(|a| a == c.arn)
                });
                self.describe_capacity(record, live, &table)
            })
            .collect();
        let mut daily = 0.0;
        let mut always_on = 0.0;
        let plan: Vec<Value> = settings
            .plan
            .entries
            .iter()
            .map(|entry| {
                let cost = PlanCost::of(
                    entry,
                    &settings.prices,
                    now,
                    settings.lead_minutes,
                    settings.drain,
                );
                if let Some(cost) = cost {
                    daily += cost.daily_usd;
                    always_on += cost.always_on_daily_usd;
                }
                let next = entry.window.as_ref().and_then(|w| w.next(now));
                let lead = chrono::Duration::minutes(i64::from(settings.lead_minutes));
                json!({
                    "modelId": entry.model_id,
                    "name": entry.name(),
                    "modelUnits": entry.model_units,
                    "commitment": entry.commitment.as_str(),
                    "window": entry.window.as_ref().map(|w| w.spec.clone()),
                    "timeZone": entry.window.as_ref().map(|w| w.zone.name()),
                    "due": entry.due(now, settings.lead_minutes).is_due(),
                    "nextWindow": next.map(|o| json!({
                        "createAt": o.opens.map(|t| (t - lead).to_rfc3339()),
                        "opensAt": o.opens.map(|t| t.to_rfc3339()),
                        "closesAt": o.closes.map(|t| t.to_rfc3339()),
                    })),
                    "hoursPerWeek": cost.map(|c| round(c.hours_per_week)),
                    "hourlyCostUsd": cost.map(|c| round(c.hourly_usd)),
                    "dailyCostUsd": cost.map(|c| round(c.daily_usd)),
                    "alwaysOnDailyCostUsd": cost.map(|c| round(c.always_on_daily_usd)),
                    "savedPerDayUsd": cost.map(|c| round(c.always_on_daily_usd - c.daily_usd)),
                })
            })
            .collect();
        let hourly_now = capacities
            .iter()
            .filter_map(|c| c["hourlyCostUsd"].as_f64())
            .fold(0.0, |sum, usd| sum + usd);
        Ok(json!({
            "capacities": capacities,
            "plan": plan,
            "cost": {
                "currentHourlyUsd": round(hourly_now),
                "dailyUsd": round(daily),
                "alwaysOnDailyUsd": round(always_on),
                "savedPerDayUsd": round(always_on - daily),
                "note": "daily figures are averages over the coming week: window hours plus the lead before and the drain after each window, at CAPACITY_HOURLY_PRICES (illustrative defaults unless set)",
            },
            "routes": table.routes,
            "routingTableVersion": table.version,
            "routingTableUpdatedAt": table.updated_at,
            "leadMinutes": settings.lead_minutes,
            "drainSeconds": settings.drain.num_seconds(),
        }))
    }

    fn describe_capacity(
        &self,
        record: &domain::capacity::CapacityRecord,
        live: Option<&Capacity>,
        table: &RoutingTable,
    ) -> Value {
        let settings = &self.settings;
        let planned = settings
            .plan
            .entry(&record.model_id)
            .filter(|e| e.model_units == record.model_units && e.commitment == record.commitment);
        let window = planned.and_then(|e| e.window.as_ref());
        let arn = live.map(|c| c.arn.clone()).or_else(|| record.arn.clone());
        json!({
            "name": record.name,
            "arn": arn,
            "modelId": record.model_id,
            "modelUnits": record.model_units,
            "status": live.map_or(record.status.as_str(), |c| c.status.as_str()),
            "commitment": record.commitment.as_str(),
            "commitmentExpiresAt": live.and_then(|c| c.commitment_expires_at).map(|t| t.to_rfc3339()),
            "createdAt": live.map(|c| c.created_at.to_rfc3339()),
            "routed": arn.as_deref().is_some_and(|a| table.routes.values().flatten().any(|r| r == a)),
            "planned": planned.is_some(),
            "window": window.map(|w| w.spec.clone()),
            "timeZone": window.map(|w| w.zone.name()),
            "hourlyCostUsd": settings
                .prices
                .hourly(&record.model_id, record.model_units, record.commitment)
                .map(round),
        })
    }
}

/// Cents and below rounded away for display.
fn round(usd: f64) -> f64 {
    (usd * 10_000.0).round() / 10_000.0
}

fn unavailable(cause: String) -> ApiError {
    let mut api = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "CapacityUnavailable",
        "Bedrock or the routing table did not answer; retry.",
    )
    .retry_after(5);
    api.cause = Some(cause);
    api
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use chrono::{DateTime, TimeZone, Utc};
    use domain::capacity::Commitment;
    use domain::ports::RoutingTableSource;
    use shared::adapters::clock::ManualClock;
    use shared::adapters::memory_routing::InMemoryRoutingTable;
    use shared::config::Env;
    use test_support::capacity::{FakeBedrock, RaceTable};
    use test_support::events::{scheduled_event, ApiEvent};
    use test_support::metrics::Counted;

    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn app(
        plan: &str,
        quota: Option<u32>,
    ) -> CapacityApp<FakeBedrock, InMemoryRoutingTable, Arc<ManualClock>, Counted> {
        let settings = CapacitySettings::from_env(&Env::from_pairs([
            ("CAPACITY_PLAN", plan),
            ("ROUTING_TABLE_NAME", "routes"),
            ("CAPACITY_DRAIN_SECONDS", "0"),
        ]))
        .unwrap();
        CapacityApp {
            settings,
            bedrock: FakeBedrock::with_quota(quota),
            table: InMemoryRoutingTable::default(),
            clock: Arc::new(ManualClock::at(utc(2026, 11, 23, 1, 0))),
            metrics: Counted::default(),
        }
    }

    fn windowed(units: u32) -> String {
        format!(
            r#"{{"{HAIKU}": {{"modelUnits": {units}, "window": "Mon-Fri 09:00-18:00", "timeZone": "Asia/Tokyo"}}}}"#
        )
    }

    #[tokio::test]
    async fn a_run_creates_then_routes_then_withdraws_and_deletes() {
        let app = app(&windowed(1), None);
        let first = app.reconcile().await.unwrap();
        assert_eq!(first.created.len(), 1);
        assert!(first.routes.is_empty());
        // Creations are recorded with Bedrock's ARN.
        let table = app.table.routing_table().await.unwrap().unwrap();
        assert_eq!(table.version, 2);
        assert!(table.capacities[0].arn.is_some());
        assert_eq!(app.metrics.0.lock().unwrap()[0].created, 1);

        let second = app.reconcile().await.unwrap();
        assert_eq!(second.routes[HAIKU].len(), 1);
        assert!(second.created.is_empty() && second.adopted.is_empty());
        // Unchanged: no write.
        let third = app.reconcile().await.unwrap();
        assert!(!third.published);
        // 18:00 Tokyo, no drain: withdrawn and deleted in one run, the write first.
        app.clock.set(utc(2026, 11, 23, 9, 0));
        let closing = app.reconcile().await.unwrap();
        assert!(closing.routes.is_empty());
        assert_eq!(closing.deleted.len(), 1);
        assert!(app.bedrock.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_scheduled_event_is_a_run_answered_with_its_report() {
        let app = app(&windowed(1), None);
        let answer = app.on_event(scheduled_event()).await.unwrap();
        assert_eq!(
            answer["created"].as_array().map(Vec::len),
            Some(1),
            "{answer}"
        );
        assert_eq!(answer["published"], true);
        assert_eq!(app.metrics.total(|c| c.created), 1);
        assert_eq!(app.bedrock.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn quota_refusals_are_counted_and_asked_again() {
        let app = app(&windowed(2), Some(1));
        let first = app.reconcile().await.unwrap();
        assert_eq!(first.quota_refused.len(), 1);
        let counts = app.metrics.0.lock().unwrap().clone();
        assert_eq!(counts[0].quota_refused, 1);
        // The refused request is not remembered as in flight: the next run asks again.
        let again = app.reconcile().await.unwrap();
        assert_eq!(again.quota_refused.len(), 1);
    }

    #[tokio::test]
    async fn a_lost_race_does_nothing() {
        let app = app(&windowed(1), None);
        // Another run wrote version 1 between this run's read and write.
        let app = CapacityApp {
            table: RaceTable,
            settings: app.settings,
            bedrock: app.bedrock,
            clock: app.clock,
            metrics: app.metrics,
        };
        let report = app.reconcile().await.unwrap();
        assert!(report.raced && report.created.is_empty());
        assert!(app.bedrock.list().await.unwrap().is_empty());
    }

    fn http(method: &str, path: &str) -> Value {
        ApiEvent::http(method, path).request_id("req-1").json()
    }

    #[tokio::test]
    async fn get_capacity_shows_capacity_and_what_the_plan_costs() {
        let plan = format!(
            r#"{{"{HAIKU}": {{"modelUnits": 1, "window": "Mon-Fri 09:00-18:00", "timeZone": "Asia/Tokyo"}},
                "anthropic.claude-3-sonnet-20240229-v1:0": {{"modelUnits": 1, "commitment": "OneMonth"}}}}"#
        );
        let app = app(&plan, None);
        app.reconcile().await.unwrap();
        let answer = app.on_event(http("GET", "/v1/capacity")).await.unwrap();
        assert_eq!(answer["statusCode"], 200);
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        let capacities = body["capacities"].as_array().unwrap();
        assert_eq!(capacities.len(), 2);
        let haiku = capacities.iter().find(|c| c["modelId"] == HAIKU).unwrap();
        assert_eq!(haiku["window"], "Mon-Fri 09:00-18:00");
        assert_eq!(haiku["timeZone"], "Asia/Tokyo");
        assert_eq!(haiku["status"], "InService");
        assert_eq!(haiku["hourlyCostUsd"], 40.0);
        let sonnet = capacities.iter().find(|c| c["modelId"] != HAIKU).unwrap();
        assert_eq!(sonnet["commitment"], Commitment::OneMonth.as_str());
        assert_eq!(sonnet["hourlyCostUsd"], 32.0);
        let entry = &body["plan"][0];
        assert_eq!(entry["alwaysOnDailyCostUsd"], 960.0);
        assert!(entry["dailyCostUsd"].as_f64().unwrap() < 300.0, "{entry}");
        assert!(body["cost"]["savedPerDayUsd"].as_f64().unwrap() > 600.0);
        assert_eq!(body["leadMinutes"], 15);

        let wrong = app.on_event(http("DELETE", "/v1/capacity")).await.unwrap();
        assert_eq!(wrong["statusCode"], 405);
        let unknown = app.on_event(http("GET", "/v1/other")).await.unwrap();
        assert_eq!(unknown["statusCode"], 404);
        let error: Value = serde_json::from_str(unknown["body"].as_str().unwrap()).unwrap();
        assert_eq!(error["error"]["code"], "NotFound");
        assert_eq!(error["error"]["requestId"], "req-1");
    }
}
