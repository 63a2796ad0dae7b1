//! metrics-publisher: every five minutes (an EventBridge schedule), what no single request can
//! know. For each finished five-minute period after its watermark it reads the per-request
//! metrics invoke-with-cache wrote as Embedded Metric Format (GetMetricData), the batch registry
//! and Bedrock's Provisioned Throughput list, and publishes cost, savings, cache hit rate, batch
//! backlog and Provisioned Throughput utilization and advice with PutMetricData, in a namespace
//! of its own. The watermark moves only once a period's requests were all accepted, so a missed
//! or repeated run neither skips nor double-counts a period.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use domain::batch::Batch;
use domain::error::RegistryError;
use domain::ports::{
    BatchRegistry, Clock, MetricsReader, MetricsWriter, ProvisionedInventory, ReportStateStore,
};
use domain::reporting::{
    attribute, backlog, batches_ended, plan_periods, provisioned_figures, request_digest, requests,
    CapacityTable, CapacityTerms, CatchUp, DatumError, DeferredTotals, InventoryError, MetricId,
    MetricsError, ModelUsage, Partial, PeriodPlan, PeriodReport, ProvisionedThroughput,
    PublishLease, Query, ReportState, StateError, MINUTES_PER_PERIOD, MODEL_DIMENSION, NO_MODEL,
    PERIOD_SECONDS, PLACEMENT_DIMENSION, PROVISIONED_ROUTE, ROUTE_DIMENSION,
    SERVICE_TIER_DIMENSION,
};
use domain::routing::CapacityRouter;
use shared::adapters::batch_registry::DynamoDbBatchRegistry;
use shared::adapters::cloudwatch::{CloudWatchMetrics, CloudWatchRetry};
use shared::adapters::provisioned_inventory::BedrockProvisionedInventory;
use shared::adapters::report_state::DynamoDbReportState;
use shared::config::{ConfigError, Env};

/// Tokens per minute of one model unit when the table names none: the emulator's default.
pub const DEFAULT_TOKENS_PER_MINUTE_PER_UNIT: f64 = 100_000.0;
pub const DEFAULT_HEADROOM: f64 = 0.2;
/// Where deferred requests are answered: the `Placement` values of batch-status's metrics.
const PLACEMENTS: [&str; 4] = ["batch", "flex", "default", "cache"];
/// Batches read from the registry a page.
const REGISTRY_PAGE: usize = 1000;

/// The configuration, from environment variables; every error names its variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where invoke-with-cache's per-request metrics are (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// Where the reports go (`REPORTS_NAMESPACE`, default `METRICS_NAMESPACE` + `/Reports`).
    pub reports_namespace: String,
    pub state_table: String,
    /// The watermark item's key (`METRICS_STATE_KEY`, default the reports namespace).
    pub state_key: String,
    pub batch_table: String,
    pub catch_up: CatchUp,
    pub lease_seconds: i64,
    pub tokens_per_minute: CapacityTable,
    pub hourly_price: CapacityTable,
    pub headroom: f64,
    /// Provisioned Throughput ARN → the model dimension value its requests are reported under.
    pub model_of_arn: HashMap<String, String>,
    /// Models queried whether ListMetrics lists them yet or not (it may take minutes to list a
    /// new metric): the functions' tier, allowed, provisioned and custom models.
    pub known_models: Vec<String>,
    pub retry: CloudWatchRetry,
}

fn positive<T>(env: &Env, name: &str, default: T) -> Result<T, ConfigError>
where
    T: PartialOrd + Default + Copy + std::fmt::Display + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let value = env.parse_or(name, default)?;
    if value <= T::default() {
        return Err(ConfigError::new(
            name,
            format!("must be above 0, got {value}"),
        ));
    }
    Ok(value)
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let metrics_namespace = env.string_or(
            "METRICS_NAMESPACE",
            shared::adapters::emf::DEFAULT_NAMESPACE,
        );
        let reports_namespace =
            env.string_or("REPORTS_NAMESPACE", &format!("{metrics_namespace}/Reports"));
        if reports_namespace == metrics_namespace {
            return Err(ConfigError::new(
                "REPORTS_NAMESPACE",
                "must differ from METRICS_NAMESPACE, so reports are never read back as requests",
            ));
        }
        let headroom: f64 = env.parse_or("RECOMMENDATION_HEADROOM", DEFAULT_HEADROOM)?;
        if !(0.0..=10.0).contains(&headroom) {
            return Err(ConfigError::new(
                "RECOMMENDATION_HEADROOM",
                format!(
                    "must be between 0 and 10 (a share of capacity, 0.2 for 20 %), got {headroom}"
                ),
            ));
        }
        let provisioned = CapacityRouter::parse_provisioned(
            env.get("PROVISIONED_THROUGHPUT").unwrap_or_default(),
        )
        .map_err(|e| ConfigError::new("PROVISIONED_THROUGHPUT", e))?;
        let custom = CapacityRouter::parse_custom(env.get("CUSTOM_MODELS").unwrap_or_default())
            .map_err(|e| ConfigError::new("CUSTOM_MODELS", e))?;
        let mut model_of_arn: HashMap<String, String> = HashMap::new();
        for (model, arn) in &provisioned {
            model_of_arn.insert(arn.clone(), model.clone());
        }
        for (name, custom) in &custom {
            model_of_arn.insert(custom.arn.clone(), name.clone());
        }
        let mut known: BTreeSet<String> = ["MODEL_SIMPLE", "MODEL_MODERATE", "MODEL_COMPLEX"]
            .iter()
            .filter_map(|v| env.get(v).map(str::to_owned))
            .collect();
        known.extend(env.list_or("ALLOWED_MODELS", &[]));
        known.extend(provisioned.keys().cloned());
        known.extend(custom.keys().cloned());
        let max_catch_up_hours: i64 = positive(env, "MAX_CATCH_UP_HOURS", 24)?;
        let lag_seconds: i64 = env.parse_or("PUBLISH_LAG_SECONDS", 120)?;
        if lag_seconds < 0 {
            return Err(ConfigError::new(
                "PUBLISH_LAG_SECONDS",
                "must not be negative",
            ));
        }
        let lease_seconds: i64 = positive(env, "PUBLISH_LEASE_SECONDS", 240)?;
        Ok(Self {
            state_table: env.required("METRICS_STATE_TABLE_NAME")?,
            state_key: env.string_or("METRICS_STATE_KEY", &reports_namespace),
            batch_table: env.required("BATCH_TABLE_NAME")?,
            metrics_namespace,
            reports_namespace,
            catch_up: CatchUp {
                lag_seconds,
                max_periods_per_run: positive(env, "MAX_PERIODS_PER_RUN", 12)?,
                max_catch_up_periods: max_catch_up_hours * 3600 / PERIOD_SECONDS,
            },
            lease_seconds,
            tokens_per_minute: CapacityTable::parse(
                "PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT",
                env.get("PROVISIONED_TOKENS_PER_MINUTE_PER_UNIT"),
                Some(DEFAULT_TOKENS_PER_MINUTE_PER_UNIT),
            )?,
            hourly_price: CapacityTable::parse(
                "PROVISIONED_HOURLY_PRICE_PER_UNIT",
                env.get("PROVISIONED_HOURLY_PRICE_PER_UNIT"),
                None,
            )?,
            headroom,
            model_of_arn,
            known_models: known.into_iter().collect(),
            retry: CloudWatchRetry {
                max_attempts: positive(env, "CLOUDWATCH_MAX_ATTEMPTS", 5)?,
                initial_backoff: std::time::Duration::from_millis(positive(
                    env,
                    "CLOUDWATCH_RETRY_BASE_MS",
                    1000,
                )?),
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Datum(#[from] DatumError),
    #[error("another run changed the watermark while this one published")]
    LostLease,
}

/// What a run did, as the invocation's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Starts of the periods published in full, ISO 8601.
    pub published: Vec<String>,
    /// PutMetricData requests sent and the datums in them.
    pub requests: usize,
    pub datums: usize,
    /// Missed periods older than the catch-up bound, skipped.
    pub skipped_periods: i64,
    /// Another run held the watermark: this one published nothing.
    pub busy: bool,
}

impl RunSummary {
    fn busy() -> Self {
        Self {
            busy: true,
            ..Self::default()
        }
    }
}

fn iso(epoch_seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch_seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| epoch_seconds.to_string())
}

/// What every period of a run reads alike.
struct Inputs {
    models: Vec<String>,
    /// The (model, service tier) series of requests that asked for a tier.
    tiers: Vec<(String, String)>,
    pts: Vec<ProvisionedThroughput>,
    batches: Vec<Batch>,
}

pub struct Publisher<R, W, B, P, S, C> {
    pub settings: Settings,
    pub reader: R,
    pub writer: W,
    pub registry: B,
    pub inventory: P,
    pub state: S,
    pub clock: C,
}

impl<R, W, B, P, S, C> Publisher<R, W, B, P, S, C>
where
    R: MetricsReader,
    W: MetricsWriter,
    B: BatchRegistry,
    P: ProvisionedInventory,
    S: ReportStateStore,
    C: Clock,
{
    /// One run: publishes the finished periods after the watermark, oldest first, under a
    /// lease (`owner`: the invocation's request id) so that overlapping runs do not both
    /// publish. A failure leaves the watermark at the last period published in full (and the
    /// requests of a period published partway recorded), for the next run to go on from.
    pub async fn run(&self, owner: &str) -> Result<RunSummary, PublishError> {
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let stored = self.state.load().await?.unwrap_or_default();
        if stored.leased_to_other(owner, now_ms) {
            tracing::info!("another run holds the watermark; nothing to do");
            return Ok(RunSummary::busy());
        }
        let plan = plan_periods(
            now.timestamp(),
            stored.published_through,
            &self.settings.catch_up,
        );
        if plan.periods.is_empty() {
            tracing::info!(
                published_through = stored.published_through.map(iso),
                "no finished period to publish"
            );
            return Ok(RunSummary::default());
        }
        if plan.skipped > 0 {
            tracing::warn!(
                skipped = plan.skipped,
                from = stored.published_through.map(iso),
                "missed periods beyond the catch-up bound are skipped"
            );
        }
        let mut state = ReportState {
            lease: Some(PublishLease {
                owner: owner.to_owned(),
                until_ms: now_ms + self.settings.lease_seconds * 1000,
            }),
            version: stored.version + 1,
            ..stored
        };
        if !self.state.save(&state).await? {
            tracing::info!("another run took the watermark first; nothing to do");
            return Ok(RunSummary::busy());
        }
        match self.publish(&mut state, &plan).await {
            Ok(summary) => {
                tracing::info!(
                    periods = summary.published.len(),
                    requests = summary.requests,
                    datums = summary.datums,
                    "published"
                );
                Ok(summary)
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    published_through = state.published_through.map(iso),
                    "publishing stopped; the next run goes on from the watermark"
                );
                if state.lease.is_some() {
                    let released = ReportState {
                        lease: None,
                        version: state.version + 1,
                        ..state
                    };
                    if let Err(e) = self.state.save(&released).await {
                        tracing::warn!(error = %e, "lease not released; it lapses by itself");
                    }
                }
                Err(error)
            }
        }
    }

    async fn publish(
        &self,
        state: &mut ReportState,
        plan: &PeriodPlan,
    ) -> Result<RunSummary, PublishError> {
        let namespace = &self.settings.reports_namespace;
        let inputs = self.inputs().await?;
        let mut summary = RunSummary {
            skipped_periods: plan.skipped,
            ..RunSummary::default()
        };
        for (i, &start) in plan.periods.iter().enumerate() {
            let newest = i + 1 == plan.periods.len();
            let report = self.report(&inputs, start, newest).await?;
            let batches = requests(namespace, report.datums())?;
            let several = batches.len() > 1;
            for request in &batches {
                let digest = request_digest(namespace, request);
                if state.already_sent(start, &digest) {
                    continue;
                }
                self.writer.put(namespace, request).await?;
                summary.requests += 1;
                summary.datums += request.len();
                if several {
                    let mut partial = state
                        .partial
                        .clone()
                        .filter(|p| p.period_start == start)
                        .unwrap_or(Partial {
                            period_start: start,
                            sent: Vec::new(),
                        });
                    partial.sent.push(digest);
                    self.advance(state, |s| s.partial = Some(partial)).await?;
                }
            }
            self.advance(state, |s| {
                s.published_through = Some(start + PERIOD_SECONDS);
                s.partial = None;
                if newest {
                    s.lease = None;
                }
            })
            .await?;
            tracing::info!(period = iso(start), "period published");
            summary.published.push(iso(start));
        }
        Ok(summary)
    }

    /// Stores the next version of the state; another run's write in between is a lost lease.
    async fn advance(
        &self,
        state: &mut ReportState,
        change: impl FnOnce(&mut ReportState),
    ) -> Result<(), PublishError> {
        let mut next = state.clone();
        change(&mut next);
        next.version = state.version + 1;
        if !self.state.save(&next).await? {
            return Err(PublishError::LostLease);
        }
        *state = next;
        Ok(())
    }

    async fn inputs(&self) -> Result<Inputs, PublishError> {
        let namespace = &self.settings.metrics_namespace;
        let value_of = |m: &MetricId, name: &str| {
            m.dimensions
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut models: BTreeSet<String> = self.settings.known_models.iter().cloned().collect();
        for metric in self
            .reader
            .list(namespace, "Requests", &[MODEL_DIMENSION])
            .await?
        {
            models.extend(value_of(&metric, MODEL_DIMENSION));
        }
        for metric in self
            .reader
            .list(
                namespace,
                "TokensProcessed",
                &[MODEL_DIMENSION, ROUTE_DIMENSION],
            )
            .await?
        {
            if value_of(&metric, ROUTE_DIMENSION).as_deref() == Some(PROVISIONED_ROUTE) {
                models.extend(value_of(&metric, MODEL_DIMENSION));
            }
        }
        models.remove(NO_MODEL);
        let mut tiers = BTreeSet::new();
        for metric in self
            .reader
            .list(
                namespace,
                "Requests",
                &[MODEL_DIMENSION, SERVICE_TIER_DIMENSION],
            )
            .await?
        {
            if let (Some(model), Some(tier)) = (
                value_of(&metric, MODEL_DIMENSION),
                value_of(&metric, SERVICE_TIER_DIMENSION),
            ) {
                tiers.insert((model, tier));
            }
        }
        let pts = self.inventory.list().await?;
        let mut batches = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self.registry.every(REGISTRY_PAGE, token.as_deref()).await?;
            batches.extend(page);
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(Inputs {
            models: models.into_iter().collect(),
            tiers: tiers.into_iter().collect(),
            pts,
            batches,
        })
    }

    /// The queries of a period: each model's per-request sums over the period, the tokens its
    /// provisioned route served, minute by minute, its cost on each service tier, and the
    /// deferred requests answered on each placement (batch-status's metrics).
    fn queries(&self, models: &[String], tiers: &[(String, String)]) -> Vec<Query> {
        let namespace = &self.settings.metrics_namespace;
        let mut queries = Vec::new();
        let sum = |id: String, name: &str, dimensions: Vec<(String, String)>| Query {
            id,
            metric: MetricId {
                namespace: namespace.clone(),
                name: name.to_owned(),
                dimensions,
            },
            stat: "Sum".to_owned(),
            period_seconds: PERIOD_SECONDS as i32,
        };
        for (p, placement) in PLACEMENTS.iter().enumerate() {
            for (m, metric) in DeferredTotals::METRICS.iter().enumerate() {
                queries.push(sum(
                    format!("d{p}_{m}"),
                    metric,
                    vec![(PLACEMENT_DIMENSION.to_owned(), (*placement).to_owned())],
                ));
            }
        }
        queries.push(sum("dm".to_owned(), "DeferredDeadlineMisses", vec![]));
        for (k, (model, tier)) in tiers.iter().enumerate() {
            queries.push(Query {
                id: format!("t{k}"),
                metric: MetricId {
                    namespace: namespace.clone(),
                    name: "EstimatedCostUSD".to_owned(),
                    dimensions: vec![
                        (MODEL_DIMENSION.to_owned(), model.clone()),
                        (SERVICE_TIER_DIMENSION.to_owned(), tier.clone()),
                    ],
                },
                stat: "Sum".to_owned(),
                period_seconds: PERIOD_SECONDS as i32,
            });
        }
        for (i, model) in models.iter().enumerate() {
            for (j, metric) in ModelUsage::METRICS.iter().enumerate() {
                queries.push(Query {
                    id: format!("u{i}_{j}"),
                    metric: MetricId {
                        namespace: namespace.clone(),
                        name: (*metric).to_owned(),
                        dimensions: vec![(MODEL_DIMENSION.to_owned(), model.clone())],
                    },
                    stat: "Sum".to_owned(),
                    period_seconds: PERIOD_SECONDS as i32,
                });
            }
            queries.push(Query {
                id: format!("p{i}"),
                metric: MetricId {
                    namespace: namespace.clone(),
                    name: "TokensProcessed".to_owned(),
                    dimensions: vec![
                        (MODEL_DIMENSION.to_owned(), model.clone()),
                        (ROUTE_DIMENSION.to_owned(), PROVISIONED_ROUTE.to_owned()),
                    ],
                },
                stat: "Sum".to_owned(),
                period_seconds: 60,
            });
        }
        queries
    }

    async fn report(
        &self,
        inputs: &Inputs,
        start: i64,
        newest: bool,
    ) -> Result<PeriodReport, PublishError> {
        let end = start + PERIOD_SECONDS;
        let series = self
            .reader
            .query(&self.queries(&inputs.models, &inputs.tiers), start, end)
            .await?;
        let sum = |id: &str| {
            series
                .get(id)
                .map_or(0.0, |points| points.iter().map(|(_, v)| v).sum())
        };
        let mut usage: BTreeMap<String, ModelUsage> = BTreeMap::new();
        let mut tokens: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (i, model) in inputs.models.iter().enumerate() {
            let mut u = ModelUsage::default();
            for (j, metric) in ModelUsage::METRICS.iter().enumerate() {
                u.set(metric, sum(&format!("u{i}_{j}")));
            }
            usage.insert(model.clone(), u);
            let mut minutes = vec![0.0; MINUTES_PER_PERIOD];
            for (t, v) in series.get(&format!("p{i}")).into_iter().flatten() {
                let minute = (t - start).div_euclid(60);
                if let Some(slot) = usize::try_from(minute)
                    .ok()
                    .and_then(|m| minutes.get_mut(m))
                {
                    *slot += v;
                }
            }
            if minutes.iter().any(|t| *t > 0.0) {
                tokens.insert(model.clone(), minutes);
            }
        }
        let on_demand: BTreeMap<String, f64> = usage
            .iter()
            .filter(|(_, u)| u.on_demand_equivalent_usd > 0.0)
            .map(|(m, u)| (m.clone(), u.on_demand_equivalent_usd))
            .collect();
        let served = attribute(
            &inputs.pts,
            &self.settings.model_of_arn,
            &tokens,
            &on_demand,
        );
        let mut provisioned = Vec::new();
        for (pt, served) in inputs.pts.iter().zip(served) {
            if !pt.serves() {
                continue;
            }
            let Some(per_unit) = self.settings.tokens_per_minute.lookup(pt) else {
                tracing::warn!(
                    arn = pt.arn,
                    "no tokens per minute per unit configured; skipped"
                );
                continue;
            };
            let terms = CapacityTerms {
                tokens_per_minute_per_unit: per_unit,
                hourly_price_per_unit: self.settings.hourly_price.lookup(pt),
                headroom: self.settings.headroom,
            };
            let figures = provisioned_figures(
                pt.model_units,
                &served.tokens_by_minute,
                served.on_demand_equivalent_usd,
                &terms,
            );
            provisioned.push((pt.clone(), figures));
        }
        let mut cost_by_tier: BTreeMap<String, f64> = BTreeMap::new();
        for (k, (_, tier)) in inputs.tiers.iter().enumerate() {
            *cost_by_tier.entry(tier.clone()).or_default() += sum(&format!("t{k}"));
        }
        let mut deferred = BTreeMap::new();
        for (p, placement) in PLACEMENTS.iter().enumerate() {
            let mut totals = DeferredTotals::default();
            for (m, metric) in DeferredTotals::METRICS.iter().enumerate() {
                totals.set(metric, sum(&format!("d{p}_{m}")));
            }
            if totals.requests > 0.0 {
                deferred.insert((*placement).to_owned(), totals);
            }
        }
        Ok(PeriodReport {
            start,
            usage,
            cost_by_tier,
            deferred,
            deferred_misses: sum("dm"),
            batches: batches_ended(&inputs.batches, start, end),
            provisioned,
            backlog: newest.then(|| backlog(&inputs.batches)),
        })
    }
}

/// The publisher against AWS (or the local stack, by endpoint): CloudWatch, the batch registry
/// and the watermark on DynamoDB, Bedrock's Provisioned Throughput list.
pub type AwsPublisher<C> = Publisher<
    CloudWatchMetrics,
    CloudWatchMetrics,
    DynamoDbBatchRegistry,
    BedrockProvisionedInventory,
    DynamoDbReportState,
    C,
>;

pub fn on_aws<C: Clock>(
    settings: Settings,
    sdk: &aws_config::SdkConfig,
    clock: C,
) -> AwsPublisher<C> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let cloudwatch = CloudWatchMetrics::new(sdk, settings.retry);
    Publisher {
        reader: cloudwatch.clone(),
        writer: cloudwatch,
        registry: DynamoDbBatchRegistry::new(dynamodb.clone(), settings.batch_table.clone()),
        inventory: BedrockProvisionedInventory::new(sdk),
        state: DynamoDbReportState::new(
            dynamodb,
            settings.state_table.clone(),
            settings.state_key.clone(),
        ),
        clock,
        settings,
    }
}

#[cfg(test)]
mod tests;
