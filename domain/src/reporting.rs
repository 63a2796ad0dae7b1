//! metrics-publisher's domain: the periods it publishes and its watermark, what a period's
//! figures are (from the per-request metrics, the batch registry and the Provisioned
//! Throughputs), the datums it publishes and their batching to PutMetricData's limits.
//! No AWS SDK type appears here; the CloudWatch and Bedrock adapters convert at the boundary.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::batch::{job_has_ended, Batch, BatchStatus, JOB_QUEUED};
use super::pricing::underlying_model;
use crate::error::ConfigError;

/// Every period is five minutes, aligned on the epoch (so on the hour).
pub const PERIOD_SECONDS: i64 = 300;
/// Minutes in a period: the resolution of the peak-minute figures.
pub const MINUTES_PER_PERIOD: usize = 5;

/// The per-request metrics' dimension of the model (see `adapters::emf`).
pub const MODEL_DIMENSION: &str = "ModelId";
/// The per-request metrics' dimension of the capacity that served a request.
pub const ROUTE_DIMENSION: &str = "Route";
/// The route value of Provisioned Throughput.
pub const PROVISIONED_ROUTE: &str = "provisioned";
/// The reports' dimension of a Provisioned Throughput.
pub const PROVISIONED_DIMENSION: &str = "ProvisionedModelArn";
/// The model dimension value of requests refused before a model was chosen.
pub const NO_MODEL: &str = "none";

// ---------------------------------------------------------------------------------------------
// CloudWatch's shapes

/// The CloudWatch units the reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Percent,
    /// Dollars: CloudWatch has no currency unit.
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Percent => "Percent",
            Self::None => "None",
        }
    }
}

/// Dimension names and values, in the order given.
pub type Dimensions = Vec<(String, String)>;

/// What a datum carries: one value, or distinct values with how often each was seen.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Value(f64),
    Values { values: Vec<f64>, counts: Vec<f64> },
}

/// One PutMetricData datum.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: String,
    pub dimensions: Dimensions,
    /// Epoch seconds.
    pub timestamp: i64,
    pub sample: Sample,
    pub unit: Unit,
}

impl Datum {
    pub fn value(
        name: &str,
        dimensions: Dimensions,
        timestamp: i64,
        value: f64,
        unit: Unit,
    ) -> Self {
        Self {
            name: name.to_owned(),
            dimensions,
            timestamp,
            sample: Sample::Value(value),
            unit,
        }
    }
}

/// A metric: namespace, name and dimensions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricId {
    pub namespace: String,
    pub name: String,
    pub dimensions: Dimensions,
}

/// One GetMetricData `MetricStat` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `^[a-z][a-zA-Z0-9_]*$`, unique in a request.
    pub id: String,
    pub metric: MetricId,
    /// `Sum`, `Average`, `SampleCount`…
    pub stat: String,
    pub period_seconds: i32,
}

/// A query's answer: (epoch seconds, value) pairs.
pub type Series = Vec<(i64, f64)>;

/// Why CloudWatch refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Still throttled after the client's retries.
    #[error("CloudWatch throttled the call: {0}")]
    Throttled(String),
    /// A refusal the same request would meet again (validation, access).
    #[error("CloudWatch refused the call: {0}")]
    Refused(String),
    /// 5xx, network, timeout: worth another try later.
    #[error("CloudWatch call failed: {0}")]
    Unavailable(String),
}

/// Why the publisher's state (its watermark) could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("report state store: {0}")]
pub struct StateError(pub String);

/// Why Bedrock's Provisioned Throughput list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Provisioned Throughput list: {0}")]
pub struct InventoryError(pub String);

/// A datum PutMetricData would refuse whatever the batching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatumError {
    #[error("datum {name} has {count} dimensions; PutMetricData allows {MAX_DIMENSIONS}")]
    TooManyDimensions { name: String, count: usize },
    #[error("datum {name} has a value that is not a finite number")]
    NotFinite { name: String },
    #[error("datum {name} has {values} values and {counts} counts")]
    CountsMismatch {
        name: String,
        values: usize,
        counts: usize,
    },
    #[error("datum {name} alone is larger than a PutMetricData request may be")]
    TooLarge { name: String },
}

// ---------------------------------------------------------------------------------------------
// PutMetricData's limits and the batching of datums

/// Datums in one PutMetricData request.
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
/// A request's size, uncompressed (1 MB).
pub const MAX_REQUEST_BYTES: usize = 1_048_576;
/// Dimensions of one datum.
pub const MAX_DIMENSIONS: usize = 30;
/// `Values` (and `Counts`) of one datum.
pub const MAX_VALUES: usize = 150;

/// What the request's envelope (namespace, operation, keys) may take, beside the datums.
const ENVELOPE_BYTES: usize = 1024;

/// An upper bound on a datum's encoded size, in the larger of the two encodings the SDKs use
/// (JSON, where a number takes up to 24 characters and a string may double when escaped; CBOR
/// is smaller).
fn encoded_size(datum: &Datum) -> usize {
    let dimensions: usize = datum
        .dimensions
        .iter()
        .map(|(n, v)| 32 + 2 * (n.len() + v.len()))
        .sum();
    let sample = match &datum.sample {
        Sample::Value(_) => 40,
        Sample::Values { values, counts } => 40 + 26 * (values.len() + counts.len()),
    };
    96 + 2 * datum.name.len() + dimensions + sample
}

fn finite(datum: &Datum) -> bool {
    match &datum.sample {
        Sample::Value(v) => v.is_finite(),
        Sample::Values { values, counts } => values.iter().chain(counts).all(|v| v.is_finite()),
    }
}

/// Checks a datum and splits one with more than [`MAX_VALUES`] values into several of the same
/// metric and time (CloudWatch aggregates them as one).
fn split(datum: Datum) -> Result<Vec<Datum>, DatumError> {
    if datum.dimensions.len() > MAX_DIMENSIONS {
        return Err(DatumError::TooManyDimensions {
            name: datum.name,
            count: datum.dimensions.len(),
        });
    }
    if !finite(&datum) {
        return Err(DatumError::NotFinite { name: datum.name });
    }
    match &datum.sample {
        Sample::Values { values, counts } if !counts.is_empty() && counts.len() != values.len() => {
            Err(DatumError::CountsMismatch {
                name: datum.name.clone(),
                values: values.len(),
                counts: counts.len(),
            })
        }
        Sample::Values { values, counts } if values.len() > MAX_VALUES => Ok(values
            .chunks(MAX_VALUES)
            .enumerate()
            .map(|(i, chunk)| {
                let counts = if counts.is_empty() {
                    Vec::new()
                } else {
                    counts[i * MAX_VALUES..i * MAX_VALUES + chunk.len()].to_vec()
                };
                Datum {
                    sample: Sample::Values {
                        values: chunk.to_vec(),
                        counts,
                    },
                    ..datum.clone()
                }
            })
            .collect()),
        _ => Ok(vec![datum]),
    }
}

/// The datums as PutMetricData requests, in order, each within the API's limits: at most
/// [`MAX_DATUMS_PER_REQUEST`] datums and [`MAX_REQUEST_BYTES`] uncompressed, no datum with more
/// than [`MAX_DIMENSIONS`] dimensions or [`MAX_VALUES`] values.
pub fn requests(namespace: &str, datums: Vec<Datum>) -> Result<Vec<Vec<Datum>>, DatumError> {
    let budget = MAX_REQUEST_BYTES - ENVELOPE_BYTES - 2 * namespace.len();
    let mut out: Vec<Vec<Datum>> = Vec::new();
    let mut current: Vec<Datum> = Vec::new();
    let mut size = 0;
    for datum in datums {
        for datum in split(datum)? {
            let datum_size = encoded_size(&datum);
            if datum_size > budget {
                return Err(DatumError::TooLarge { name: datum.name });
            }
            if current.len() == MAX_DATUMS_PER_REQUEST || size + datum_size > budget {
                out.push(std::mem::take(&mut current));
                size = 0;
            }
            size += datum_size;
            current.push(datum);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// A digest of one request's datums: how a run that resumes a period recognises the requests
/// CloudWatch already accepted, so that it sends none of them twice.
pub fn request_digest(namespace: &str, datums: &[Datum]) -> String {
    let mut hash = Sha256::new();
    hash.update(namespace.as_bytes());
    for d in datums {
        hash.update([0]);
        hash.update(d.name.as_bytes());
        for (n, v) in &d.dimensions {
            hash.update([1]);
            hash.update(n.as_bytes());
            hash.update([2]);
            hash.update(v.as_bytes());
        }
        hash.update(d.timestamp.to_be_bytes());
        hash.update(d.unit.as_str().as_bytes());
        match &d.sample {
            Sample::Value(v) => hash.update(v.to_bits().to_be_bytes()),
            Sample::Values { values, counts } => {
                for v in values.iter().chain(counts) {
                    hash.update(v.to_bits().to_be_bytes());
                }
            }
        }
    }
    hex::encode(&hash.finalize()[..16])
}

// ---------------------------------------------------------------------------------------------
// Periods and the watermark

/// The start of the period holding `t` (epoch seconds).
pub fn period_start(t: i64) -> i64 {
    t.div_euclid(PERIOD_SECONDS) * PERIOD_SECONDS
}

/// Which periods a run publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// A period is read only this long after its end, once the per-request metrics of its
    /// last requests have reached CloudWatch (Embedded Metric Format arrives through the logs).
    pub lag_seconds: i64,
    /// Most periods one run publishes, oldest first; the rest wait for the next run.
    pub max_periods_per_run: usize,
    /// Missed periods further back than this many are skipped (and logged), not published.
    pub max_catch_up_periods: i64,
}

/// The periods a run publishes (their starts, oldest first) and how many missed ones it skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodPlan {
    pub periods: Vec<i64>,
    pub skipped: i64,
}

/// The finished periods after the watermark (`published_through`, the end of the last period
/// published), within the catch-up bounds. Without a watermark (the first run), the last
/// finished period alone.
pub fn plan_periods(now: i64, published_through: Option<i64>, catch_up: &CatchUp) -> PeriodPlan {
    let last_end = period_start(now - catch_up.lag_seconds);
    let oldest = last_end - catch_up.max_catch_up_periods.max(1) * PERIOD_SECONDS;
    let from = published_through
        .map(period_start)
        .unwrap_or(last_end - PERIOD_SECONDS);
    let skipped = if from < oldest {
        (oldest - from) / PERIOD_SECONDS
    } else {
        0
    };
    let from = from.max(oldest);
    let periods = (0..)
        .map(|i| from + i * PERIOD_SECONDS)
        .take_while(|start| start + PERIOD_SECONDS <= last_end)
        .take(catch_up.max_periods_per_run.max(1))
        .collect();
    PeriodPlan { periods, skipped }
}

/// The period being published when a run stopped partway, and the digests of its requests
/// CloudWatch accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub period_start: i64,
    pub sent: Vec<String>,
}

/// Who publishes now, until when (epoch ms): runs that overlap (a late schedule, a retry)
/// leave the periods to the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishLease {
    pub owner: String,
    pub until_ms: i64,
}

/// The publisher's watermark, kept in one item written conditionally on its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportState {
    /// The end of the last period published in full (epoch seconds); `None` before the first.
    pub published_through: Option<i64>,
    pub partial: Option<Partial>,
    pub lease: Option<PublishLease>,
    /// 0 when no item exists; every write stores one more than it read.
    pub version: u64,
}

impl ReportState {
    /// Whether another run holds a live lease.
    pub fn leased_to_other(&self, owner: &str, now_ms: i64) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.owner != owner && l.until_ms > now_ms)
    }

    /// Whether the request (by digest) of the period was accepted by an earlier, interrupted run.
    pub fn already_sent(&self, period_start: i64, digest: &str) -> bool {
        self.partial
            .as_ref()
            .is_some_and(|p| p.period_start == period_start && p.sent.iter().any(|d| d == digest))
    }
}

// ---------------------------------------------------------------------------------------------
// A period's figures

/// One model's per-request metrics summed over a period (the `ModelId` series of invoke-with-cache's EMF).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelUsage {
    pub requests: f64,
    pub hits: f64,
    pub throttles: f64,
    pub client_errors: f64,
    pub server_errors: f64,
    pub timeouts: f64,
    pub cost_usd: f64,
    pub saved_usd: f64,
    pub on_demand_equivalent_usd: f64,
}

impl ModelUsage {
    /// The EMF metric each field sums, for the queries.
    pub const METRICS: [&'static str; 9] = [
        "Requests",
        "CacheHit",
        "Throttles",
        "ClientErrors",
        "ServerErrors",
        "Timeouts",
        "EstimatedCostUSD",
        "EstimatedSavingsUSD",
        "OnDemandEquivalentUSD",
    ];

    /// Sets the field of one of [`Self::METRICS`].
    pub fn set(&mut self, metric: &str, value: f64) {
        let field = match metric {
            "Requests" => &mut self.requests,
            "CacheHit" => &mut self.hits,
            "Throttles" => &mut self.throttles,
            "ClientErrors" => &mut self.client_errors,
            "ServerErrors" => &mut self.server_errors,
            "Timeouts" => &mut self.timeouts,
            "EstimatedCostUSD" => &mut self.cost_usd,
            "EstimatedSavingsUSD" => &mut self.saved_usd,
            "OnDemandEquivalentUSD" => &mut self.on_demand_equivalent_usd,
            _ => return,
        };
        *field = value;
    }

    /// Requests that got an answer (hit, miss, bypass or refresh): the ones the cache could
    /// have served.
    pub fn answered(&self) -> f64 {
        (self.requests - self.throttles - self.client_errors - self.server_errors - self.timeouts)
            .max(0.0)
    }

    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.throttles += other.throttles;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.timeouts += other.timeouts;
        self.cost_usd += other.cost_usd;
        self.saved_usd += other.saved_usd;
        self.on_demand_equivalent_usd += other.on_demand_equivalent_usd;
    }
}

/// Batches of one model that ended in the period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchTotals {
    pub batches: u64,
    /// At the batch price (or on-demand for a batch answered directly).
    pub cost_usd: f64,
    pub on_demand_cost_usd: f64,
}

impl BatchTotals {
    pub fn saved_usd(&self) -> f64 {
        (self.on_demand_cost_usd - self.cost_usd).max(0.0)
    }
}

/// Batches that ended in `[start, end)` (their last registry write, which is their end), by model.
pub fn batches_ended(batches: &[Batch], start: i64, end: i64) -> BTreeMap<String, BatchTotals> {
    let mut totals: BTreeMap<String, BatchTotals> = BTreeMap::new();
    for batch in batches {
        if !batch.status.is_final() || batch.status == BatchStatus::Rejected {
            continue;
        }
        let Some(summary) = &batch.summary else {
            continue;
        };
        if batch.updated_at < start || batch.updated_at >= end {
            continue;
        }
        let entry = totals.entry(batch.model_id.clone()).or_default();
        entry.batches += 1;
        entry.cost_usd += summary.cost_usd;
        entry.on_demand_cost_usd += summary.on_demand_cost_usd;
    }
    totals
}

/// The batch backlog at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Jobs Bedrock holds that have not ended (submitted, validating, scheduled, in progress, stopping).
    pub jobs_in_progress: u64,
    /// Jobs waiting for a slot under the concurrent-jobs quota, not yet submitted.
    pub jobs_queued: u64,
    /// Records of jobs not ended that Bedrock has not processed yet.
    pub records_pending: u64,
}

/// The backlog of the unfinished batches.
pub fn backlog(unfinished: &[Batch]) -> Backlog {
    let mut backlog = Backlog::default();
    for job in unfinished
        .iter()
        .filter(|b| !b.status.is_final())
        .flat_map(|b| &b.jobs)
        .filter(|j| !job_has_ended(&j.status))
    {
        if job.status == JOB_QUEUED {
            backlog.jobs_queued += 1;
        } else {
            backlog.jobs_in_progress += 1;
        }
        backlog.records_pending += job.record_count.saturating_sub(job.processed);
    }
    backlog
}

/// A Provisioned Throughput as Bedrock lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedThroughput {
    pub arn: String,
    pub name: String,
    /// The model it serves: a foundation-model ARN or a custom model's ARN.
    pub model_arn: String,
    pub model_units: u32,
    /// `Creating`, `InService`, `Updating`, `Failed`.
    pub status: String,
}

impl ProvisionedThroughput {
    /// Whether it serves (and bills): in service, or being updated (Bedrock keeps serving).
    pub fn serves(&self) -> bool {
        matches!(self.status.as_str(), "InService" | "Updating")
    }

    /// The model id in its model ARN, without a provisioning context suffix (`:200k`).
    pub fn model_id(&self) -> &str {
        let id = self
            .model_arn
            .rsplit_once('/')
            .map_or(self.model_arn.as_str(), |(_, id)| id);
        match id.rsplit_once(':') {
            Some((base, suffix))
                if suffix.len() > 1
                    && suffix.ends_with('k')
                    && suffix[..suffix.len() - 1]
                        .bytes()
                        .all(|b| b.is_ascii_digit()) =>
            {
                base
            }
            _ => id,
        }
    }
}

/// A per-Provisioned-Throughput setting: `KEY=NUMBER` entries separated by `,` or `;`, where KEY is
/// a Provisioned Throughput ARN or name, a model id, or `*` for any; a bare number is `*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapacityTable {
    entries: HashMap<String, f64>,
    any: Option<f64>,
}

impl CapacityTable {
    pub fn uniform(value: f64) -> Self {
        Self {
            entries: HashMap::new(),
            any: Some(value),
        }
    }

    /// Parses `spec`; `default` answers `*` unless the spec sets it. Numbers must be positive.
    pub fn parse(
        variable: &str,
        spec: Option<&str>,
        default: Option<f64>,
    ) -> Result<Self, ConfigError> {
        let mut table = Self {
            entries: HashMap::new(),
            any: default,
        };
        for entry in spec
            .unwrap_or_default()
            .split([',', ';'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (key, number) = match entry.rsplit_once('=') {
                Some((key, number)) => (key.trim(), number.trim()),
                None => ("*", entry),
            };
            let value = number
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    ConfigError::new(
                        variable,
                        format!("entry {entry:?}: {number:?} is not a positive number; expected KEY=NUMBER, KEY a Provisioned Throughput ARN or name, a model id or *"),
                    )
                })?;
            if key == "*" {
                table.any = Some(value);
            } else if key.is_empty() {
                return Err(ConfigError::new(
                    variable,
                    format!("entry {entry:?} has an empty key"),
                ));
            } else {
                table.entries.insert(key.to_owned(), value);
            }
        }
        Ok(table)
    }

    /// The value for a Provisioned Throughput: by its ARN, its name, its model, else `*`.
    pub fn lookup(&self, pt: &ProvisionedThroughput) -> Option<f64> {
        [pt.arn.as_str(), pt.name.as_str(), pt.model_id()]
            .iter()
            .find_map(|k| self.entries.get(*k))
            .copied()
            .or(self.any)
    }
}

/// What one Provisioned Throughput's period amounts to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProvisionedFigures {
    pub model_units: u32,
    /// Average tokens per minute over the period against the capacity, in percent.
    pub utilization_pct: f64,
    /// The busiest minute's tokens against the capacity, in percent.
    pub peak_utilization_pct: f64,
    /// What its model units cost an hour, when a price is configured.
    pub hourly_cost_usd: Option<f64>,
    /// What the tokens it served in the period would have cost on-demand.
    pub on_demand_equivalent_usd: f64,
    /// The fewest model units that would have served the period's busiest minute with the
    /// headroom, or 0 when those units would cost more than the same tokens on-demand.
    pub recommended_units: u32,
}

/// Inputs of [`provisioned_figures`] that come from configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityTerms {
    pub tokens_per_minute_per_unit: f64,
    pub hourly_price_per_unit: Option<f64>,
    /// Share of capacity kept spare at the busiest minute (0.2: 20 %).
    pub headroom: f64,
}

/// Utilization, cost and the recommended model units, from the tokens the Provisioned
/// Throughput served in each minute of the period and their on-demand price.
pub fn provisioned_figures(
    model_units: u32,
    tokens_by_minute: &[f64],
    on_demand_equivalent_usd: f64,
    terms: &CapacityTerms,
) -> ProvisionedFigures {
    let per_unit = terms.tokens_per_minute_per_unit;
    let capacity = f64::from(model_units) * per_unit;
    let total: f64 = tokens_by_minute.iter().sum();
    let average = total / MINUTES_PER_PERIOD as f64;
    let peak = tokens_by_minute.iter().copied().fold(0.0, f64::max);
    let percent = |tokens: f64| {
        if capacity > 0.0 {
            100.0 * tokens / capacity
        } else {
            0.0
        }
    };
    let needed = if peak > 0.0 && per_unit > 0.0 {
        // The epsilon keeps an exact fit (1.2 units of 1.2) from rounding up through float error.
        let units = (peak * (1.0 + terms.headroom) / per_unit - 1e-9).ceil();
        units.clamp(0.0, f64::from(u32::MAX)) as u32
    } else {
        0
    };
    let period_hours = PERIOD_SECONDS as f64 / 3600.0;
    let recommended = match terms.hourly_price_per_unit {
        Some(price) if f64::from(needed) * price * period_hours >= on_demand_equivalent_usd => 0,
        _ => needed,
    };
    ProvisionedFigures {
        model_units,
        utilization_pct: percent(average),
        peak_utilization_pct: percent(peak),
        hourly_cost_usd: terms
            .hourly_price_per_unit
            .map(|price| f64::from(model_units) * price),
        on_demand_equivalent_usd,
        recommended_units: recommended,
    }
}

/// What one Provisioned Throughput served in a period: tokens per minute and their on-demand price.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub tokens_by_minute: Vec<f64>,
    pub on_demand_equivalent_usd: f64,
}

/// Splits what each model's provisioned route served among the Provisioned Throughputs serving
/// it, in proportion to their model units. A Provisioned Throughput serves the model dimension
/// value `model_of_arn` gives for its ARN (the functions' `PROVISIONED_THROUGHPUT` and
/// `CUSTOM_MODELS`); otherwise every value whose underlying model is its model.
pub fn attribute(
    pts: &[ProvisionedThroughput],
    model_of_arn: &HashMap<String, String>,
    tokens_by_model: &BTreeMap<String, Vec<f64>>,
    on_demand_by_model: &BTreeMap<String, f64>,
) -> Vec<Served> {
    let models_of = |pt: &ProvisionedThroughput| -> Vec<String> {
        match model_of_arn.get(&pt.arn) {
            Some(model) => vec![model.clone()],
            None => tokens_by_model
                .keys()
                .chain(on_demand_by_model.keys())
                .filter(|m| !model_of_arn.values().any(|v| v == *m))
                .filter(|m| underlying_model(m) == pt.model_id())
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        }
    };
    let serving: Vec<(usize, Vec<String>)> = pts
        .iter()
        .enumerate()
        .filter(|(_, pt)| pt.serves())
        .map(|(i, pt)| (i, models_of(pt)))
        .collect();
    // Units serving each model, to share its tokens.
    let mut units_of_model: HashMap<&str, f64> = HashMap::new();
    for (i, models) in &serving {
        for m in models {
            *units_of_model.entry(m.as_str()).or_default() += f64::from(pts[*i].model_units);
        }
    }
    pts.iter()
        .enumerate()
        .map(|(i, pt)| {
            let mut served = Served {
                tokens_by_minute: vec![0.0; MINUTES_PER_PERIOD],
                on_demand_equivalent_usd: 0.0,
            };
            let Some((_, models)) = serving.iter().find(|(j, _)| *j == i) else {
                return served;
            };
            let own = f64::from(pt.model_units);
            for m in models {
                let units = units_of_model.get(m.as_str()).copied().unwrap_or(0.0);
                if units <= 0.0 {
                    continue;
                }
                if let Some(minutes) = tokens_by_model.get(m) {
                    for (slot, tokens) in served.tokens_by_minute.iter_mut().zip(minutes) {
                        *slot += tokens * own / units;
                    }
                }
                served.on_demand_equivalent_usd +=
                    on_demand_by_model.get(m).copied().unwrap_or(0.0) * own / units;
            }
            served
        })
        .collect()
}

/// Everything known of one period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodReport {
    pub start: i64,
    pub usage: BTreeMap<String, ModelUsage>,
    pub batches: BTreeMap<String, BatchTotals>,
    pub provisioned: Vec<(ProvisionedThroughput, ProvisionedFigures)>,
    /// The backlog now: published with the newest period of a run only.
    pub backlog: Option<Backlog>,
}

fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| 100.0 * part / whole)
}

impl PeriodReport {
    /// The datums to publish, all at the period's start:
    ///
    /// - by `ModelId`, for each model with requests or ended batches: `EstimatedCostUSD`,
    ///   `SavedByCacheUSD`, `SavedByBatchUSD`, `CacheHitRate` (when it answered any request);
    /// - without dimensions: the same over all models, `TotalCostUSD` (with the Provisioned
    ///   Throughputs' hours), `ProvisionedUtilization` (the busiest one's), the backlog;
    /// - by `ProvisionedModelArn`: `ProvisionedModelUnits`, `ProvisionedUtilization`,
    ///   `ProvisionedPeakUtilization`, `ProvisionedHourlyCostUSD` (when priced),
    ///   `ProvisionedOnDemandEquivalentUSD`, `RecommendedModelUnits`.
    pub fn datums(&self) -> Vec<Datum> {
        let t = self.start;
        let mut out = Vec::new();
        let mut total = ModelUsage::default();
        let mut batch_total = BatchTotals::default();
        let mut models: Vec<&String> = self.usage.keys().chain(self.batches.keys()).collect();
        models.sort();
        models.dedup();
        for model in models.into_iter().filter(|m| *m != NO_MODEL) {
            let usage = self.usage.get(model).copied().unwrap_or_default();
            let batch = self.batches.get(model).copied().unwrap_or_default();
            if usage.requests <= 0.0 && batch.batches == 0 {
                continue;
            }
            total.add(&usage);
            batch_total.batches += batch.batches;
            batch_total.cost_usd += batch.cost_usd;
            batch_total.on_demand_cost_usd += batch.on_demand_cost_usd;
            let dims = || vec![(MODEL_DIMENSION.to_owned(), model.clone())];
            out.push(Datum::value(
                "EstimatedCostUSD",
                dims(),
                t,
                usage.cost_usd + batch.cost_usd,
                Unit::None,
            ));
            out.push(Datum::value(
                "SavedByCacheUSD",
                dims(),
                t,
                usage.saved_usd,
                Unit::None,
            ));
            out.push(Datum::value(
                "SavedByBatchUSD",
                dims(),
                t,
                batch.saved_usd(),
                Unit::None,
            ));
            if let Some(rate) = percent(usage.hits, usage.answered()) {
                out.push(Datum::value("CacheHitRate", dims(), t, rate, Unit::Percent));
            }
        }

        let estimated = total.cost_usd + batch_total.cost_usd;
        let period_hours = PERIOD_SECONDS as f64 / 3600.0;
        let provisioned_cost: f64 = self
            .provisioned
            .iter()
            .filter_map(|(_, f)| f.hourly_cost_usd)
            .sum::<f64>()
            * period_hours;
        out.push(Datum::value(
            "EstimatedCostUSD",
            vec![],
            t,
            estimated,
            Unit::None,
        ));
        out.push(Datum::value(
            "SavedByCacheUSD",
            vec![],
            t,
            total.saved_usd,
            Unit::None,
        ));
        out.push(Datum::value(
            "SavedByBatchUSD",
            vec![],
            t,
            batch_total.saved_usd(),
            Unit::None,
        ));
        if let Some(rate) = percent(total.hits, total.answered()) {
            out.push(Datum::value("CacheHitRate", vec![], t, rate, Unit::Percent));
        }
        out.push(Datum::value(
            "TotalCostUSD",
            vec![],
            t,
            estimated + provisioned_cost,
            Unit::None,
        ));

        if let Some(busiest) = self
            .provisioned
            .iter()
            .map(|(_, f)| f.utilization_pct)
            .reduce(f64::max)
        {
            out.push(Datum::value(
                "ProvisionedUtilization",
                vec![],
                t,
                busiest,
                Unit::Percent,
            ));
        }
        for (pt, f) in &self.provisioned {
            let dims = || vec![(PROVISIONED_DIMENSION.to_owned(), pt.arn.clone())];
            out.push(Datum::value(
                "ProvisionedModelUnits",
                dims(),
                t,
                f64::from(f.model_units),
                Unit::Count,
            ));
            out.push(Datum::value(
                "ProvisionedUtilization",
                dims(),
                t,
                f.utilization_pct,
                Unit::Percent,
            ));
            out.push(Datum::value(
                "ProvisionedPeakUtilization",
                dims(),
                t,
                f.peak_utilization_pct,
                Unit::Percent,
            ));
            if let Some(cost) = f.hourly_cost_usd {
                out.push(Datum::value(
                    "ProvisionedHourlyCostUSD",
                    dims(),
                    t,
                    cost,
                    Unit::None,
                ));
            }
            out.push(Datum::value(
                "ProvisionedOnDemandEquivalentUSD",
                dims(),
                t,
                f.on_demand_equivalent_usd,
                Unit::None,
            ));
            out.push(Datum::value(
                "RecommendedModelUnits",
                dims(),
                t,
                f64::from(f.recommended_units),
                Unit::Count,
            ));
        }

        if let Some(b) = self.backlog {
            out.push(Datum::value(
                "BatchJobsInProgress",
                vec![],
                t,
                b.jobs_in_progress as f64,
                Unit::Count,
            ));
            out.push(Datum::value(
                "BatchJobsQueued",
                vec![],
                t,
                b.jobs_queued as f64,
                Unit::Count,
            ));
            out.push(Datum::value(
                "BatchRecordsPending",
                vec![],
                t,
                b.records_pending as f64,
                Unit::Count,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchSummary, JobEntry};

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
        let cost: BTreeMap<String, f64> =
            [(HAIKU.to_owned(), 3.0), ("support-bot".to_owned(), 1.0)]
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
}
