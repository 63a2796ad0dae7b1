//! Provisioned Throughput over time: the declared capacity plan (per base model: model units,
//! commitment and, for no-commitment capacity, an optional weekly window in a time zone), when
//! each capacity should exist, the routing table that tells invoke-with-cache where live
//! capacity is, and the decisions the capacity function executes to get from what exists to
//! what the plan wants. Pure: the clock, Bedrock's state and the stored table come in as values.
//!
//! The rules, in the order the capacity function applies them:
//!
//! - **Due**: capacity without a window is always due; windowed capacity is due from
//!   `lead_minutes` before its window opens until the window closes (the window read as the
//!   schedule policy reads it, [`Schedule`], wall-clock times in its zone).
//! - **Ours**: a Provisioned Throughput is managed here when the routing table's records name
//!   it, when it carries the tag `bgw:plan` with this plan's name, or when it has no `bgw:plan`
//!   tag and the deterministic name of what it is (`bgw-<model-slug>-<units>u`). The last two are
//!   *adopted* (and tagged, so the invoking role's tag condition admits them). Anything else is
//!   left alone.
//! - **Create**: a due entry with no Provisioned Throughput of its model, units and commitment
//!   is created, under its deterministic name and a `clientRequestToken` derived from the plan
//!   and the window's opening, so repeated or concurrent runs create it once.
//! - **Route**: a model's routes are its planned, due, serving (`InService` or `Updating`)
//!   capacity, then any committed capacity of ours (paid for anyway), then, only while the
//!   planned one is not serving yet, the no-commitment capacity it replaces (blue/green).
//! - **Delete**: no-commitment capacity of ours that is not wanted any more is deleted once its
//!   route has been withdrawn, in a table write that succeeded, at least `drain` earlier (so
//!   instances that cached the old table have let go of it). Committed capacity is never
//!   deleted. A failed one is deleted at once (it never served).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::routing::{CapacityRouter, Plan, Route, Schedule, Target};

/// The tag naming the plan a capacity belongs to; its value is the plan's name.
pub const PLAN_TAG: &str = "bgw:plan";
/// The tag naming the base model a capacity serves (informational).
pub const MODEL_TAG: &str = "bgw:model";
/// Every name this toolkit gives a Provisioned Throughput starts so.
pub const NAME_PREFIX: &str = "bgw-";
/// Longest Provisioned Throughput name Bedrock accepts.
const MAX_NAME: usize = 63;
/// A window is looked for this far (minutes) around a moment: a week and a day.
const SCAN_MINUTES: i64 = 8 * 24 * 60;
/// How long a requested creation that Bedrock does not list yet is trusted to be in flight.
pub const PENDING_GRACE_SECONDS: i64 = 300;

/// How long a Provisioned Throughput is bought for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Commitment {
    /// Billed by the hour, deletable at any time.
    #[serde(rename = "none")]
    None,
    OneMonth,
    SixMonths,
}

impl Commitment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::OneMonth => "OneMonth",
            Self::SixMonths => "SixMonths",
        }
    }

    pub fn is_committed(self) -> bool {
        self != Self::None
    }

    fn name_suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::OneMonth => "-c1m",
            Self::SixMonths => "-c6m",
        }
    }
}

impl FromStr for Commitment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "OneMonth" => Ok(Self::OneMonth),
            "SixMonths" => Ok(Self::SixMonths),
            other => Err(format!(
                "{other:?} is not a commitment (none, OneMonth, SixMonths)"
            )),
        }
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The start of the minute `at` is in.
fn minute_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp() - at.timestamp().rem_euclid(60), 0).unwrap_or(at)
}

/// One opening of a window. `None` ends: the window did not open (or close) within a week and a
/// day of the moment looked at, i.e. it never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub opens: Option<DateTime<Utc>>,
    pub closes: Option<DateTime<Utc>>,
}

/// A weekly window in a time zone, in the schedule policy's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityWindow {
    /// As written, for display.
    pub spec: String,
    pub schedule: Schedule,
    pub zone: Tz,
}

impl CapacityWindow {
    pub fn parse(window: &str, time_zone: &str) -> Result<Self, String> {
        let schedule = window.parse::<Schedule>().map_err(|e| {
            format!("window {window:?}: {e}; expected [DAYS ]HH:MM-HH:MM, e.g. Mon-Fri 09:00-18:00")
        })?;
        let zone = time_zone.parse::<Tz>().map_err(|e| {
            format!("timeZone {time_zone:?}: {e}; use an IANA name such as Asia/Tokyo")
        })?;
        Ok(Self {
            spec: window.to_owned(),
            schedule,
            zone,
        })
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.schedule.contains(at, self.zone)
    }

    /// The occurrence `at` is inside, or the one opening within `lead_minutes` of it: when the
    /// capacity should exist. Windows open and close on whole minutes (UTC offsets are whole
    /// minutes), so looking at each minute finds every opening, across daylight-saving changes
    /// too.
    pub fn due(&self, at: DateTime<Utc>, lead_minutes: u32) -> Option<Occurrence> {
        let start = minute_floor(at);
        (0..=i64::from(lead_minutes))
            .map(|k| start + Duration::minutes(k))
            .find(|m| self.contains(*m))
            .map(|m| self.occurrence_at(m))
    }

    /// The occurrence `at` is inside, else the next one (within a week and a day).
    pub fn next(&self, at: DateTime<Utc>) -> Option<Occurrence> {
        let start = minute_floor(at);
        (0..SCAN_MINUTES)
            .map(|k| start + Duration::minutes(k))
            .find(|m| self.contains(*m))
            .map(|m| self.occurrence_at(m))
    }

    /// The occurrence around a minute inside the window.
    fn occurrence_at(&self, inside: DateTime<Utc>) -> Occurrence {
        let step = Duration::minutes(1);
        let mut opens = inside;
        let mut n = 0;
        while n < SCAN_MINUTES && self.contains(opens - step) {
            opens -= step;
            n += 1;
        }
        let opens = (n < SCAN_MINUTES).then_some(opens);
        let mut closes = inside + step;
        n = 0;
        while n < SCAN_MINUTES && self.contains(closes) {
            closes += step;
            n += 1;
        }
        let closes = (n < SCAN_MINUTES).then_some(closes);
        Occurrence { opens, closes }
    }
}

/// What the plan wants of one base model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCapacity {
    pub model_id: String,
    pub model_units: u32,
    pub commitment: Commitment,
    /// No-commitment capacity only; `None`: always.
    pub window: Option<CapacityWindow>,
}

/// Whether a planned capacity should exist now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// No window: always.
    Always,
    /// For this occurrence of its window (from its lead time to its close).
    Window(Occurrence),
    /// Outside its window and its lead time.
    No,
}

impl Due {
    pub fn is_due(self) -> bool {
        !matches!(self, Self::No)
    }

    /// The opening the capacity is for, part of its creation token.
    fn opens(self) -> Option<DateTime<Utc>> {
        match self {
            Self::Window(occurrence) => occurrence.opens,
            _ => None,
        }
    }
}

impl PlannedCapacity {
    /// The Provisioned Throughput's name: deterministic, so a later run, another instance or
    /// an operator finds it.
    pub fn name(&self) -> String {
        capacity_name(&self.model_id, self.model_units, self.commitment)
    }

    pub fn due(&self, at: DateTime<Utc>, lead_minutes: u32) -> Due {
        match &self.window {
            None => Due::Always,
            Some(window) => window.due(at, lead_minutes).map_or(Due::No, Due::Window),
        }
    }

    /// What a Provisioned Throughput must be to be this capacity (its status aside).
    pub fn matches(&self, capacity: &Capacity) -> bool {
        capacity.model_id.as_deref() == Some(self.model_id.as_str())
            && capacity.model_units == self.model_units
            && capacity.commitment == self.commitment
    }

    /// Derived from the plan's name, the capacity and the window's opening: the same for every
    /// run that creates this capacity for this opening, different for the next opening.
    pub fn client_request_token(&self, plan_name: &str, opens: Option<DateTime<Utc>>) -> String {
        let seed = format!(
            "{plan_name}|{}|{}|{}|{}",
            self.model_id,
            self.model_units,
            self.commitment,
            opens.map_or_else(|| "always".to_owned(), |t| t.timestamp().to_string())
        );
        hex::encode(Sha256::digest(seed.as_bytes()))[..32].to_owned()
    }

    /// Hours a week the capacity exists from `from` on: its window's minutes, each opening's
    /// lead and the drain after each close (all week without a window).
    pub fn hours_per_week(&self, from: DateTime<Utc>, lead_minutes: u32, drain: Duration) -> f64 {
        let Some(window) = &self.window else {
            return 168.0;
        };
        let week = 7 * 24 * 60;
        let lead = i64::from(lead_minutes);
        let start = minute_floor(from);
        let inside: Vec<bool> = (0..week + lead + 1)
            .map(|k| window.contains(start + Duration::minutes(k)))
            .collect();
        let mut minutes = 0u32;
        let mut closes = 0u32;
        let mut previous_due = false;
        for k in 0..week {
            let from = usize::try_from(k).unwrap_or(0);
            let to = usize::try_from(k + lead).unwrap_or(0);
            let due = inside[from..=to].iter().any(|i| *i);
            if due {
                minutes += 1;
            } else if previous_due {
                closes += 1;
            }
            previous_due = due;
        }
        f64::from(minutes) / 60.0 + f64::from(closes) * drain.num_seconds() as f64 / 3600.0
    }
}

/// `bgw-<model-slug>-<units>u`, `-c1m` or `-c6m` for committed capacity; a long model id is cut
/// and a hash of it added, to keep within Bedrock's 63 characters and its name pattern.
pub fn capacity_name(model_id: &str, model_units: u32, commitment: Commitment) -> String {
    let mut slug = String::new();
    for c in model_id.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let tail = format!("-{model_units}u{}", commitment.name_suffix());
    let name = format!("{NAME_PREFIX}{slug}{tail}");
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = &hex::encode(Sha256::digest(model_id.as_bytes()))[..6];
    let room = MAX_NAME - NAME_PREFIX.len() - tail.len() - hash.len() - 1;
    let cut = slug[..room.min(slug.len())].trim_end_matches('-');
    format!("{NAME_PREFIX}{cut}-{hash}{tail}")
}

/// The declared plan: at most one entry per base model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapacityPlan {
    pub entries: Vec<PlannedCapacity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EntrySpec {
    model_units: u32,
    #[serde(default)]
    commitment: Option<String>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
}

impl CapacityPlan {
    /// `{"MODEL_ID": {"modelUnits": N, "commitment": "none"|"OneMonth"|"SixMonths",
    /// "window": "[DAYS ]HH:MM-HH:MM", "timeZone": "IANA zone"}, …}`; `commitment` defaults to
    /// `none`, `timeZone` to `UTC`; a window only for no-commitment capacity.
    pub fn parse(json: &str) -> Result<Self, String> {
        let specs: BTreeMap<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|e| format!("not a JSON object of model id to capacity: {e}"))?;
        let mut entries = Vec::new();
        for (model_id, spec) in specs {
            let at = |message: String| format!("{model_id}: {message}");
            if model_id.trim().is_empty() || model_id.chars().any(char::is_whitespace) {
                return Err(format!("{model_id:?} is not a model id"));
            }
            let spec: EntrySpec = serde_json::from_value(spec).map_err(|e| at(e.to_string()))?;
            if spec.model_units == 0 {
                return Err(at("modelUnits must be at least 1".into()));
            }
            let commitment = match spec.commitment.as_deref() {
                None => Commitment::None,
                Some(c) => c.parse().map_err(at)?,
            };
            let window = match (&spec.window, &spec.time_zone) {
                (None, Some(_)) => return Err(at("timeZone without a window".into())),
                (None, None) => None,
                (Some(_), _) if commitment.is_committed() => {
                    return Err(at(format!(
                        "a window is for no-commitment capacity only: {commitment} capacity is billed for its whole term"
                    )))
                }
                (Some(window), zone) => Some(
                    CapacityWindow::parse(window, zone.as_deref().unwrap_or("UTC")).map_err(at)?,
                ),
            };
            entries.push(PlannedCapacity {
                model_id,
                model_units: spec.model_units,
                commitment,
                window,
            });
        }
        Ok(Self { entries })
    }

    pub fn entry(&self, model_id: &str) -> Option<&PlannedCapacity> {
        self.entries.iter().find(|e| e.model_id == model_id)
    }
}

/// A Provisioned Throughput's status, as Bedrock reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapacityStatus {
    Creating,
    InService,
    Updating,
    Failed,
    /// A status this code does not know: neither routed nor deleted.
    Unknown,
}

impl CapacityStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "Creating" => Self::Creating,
            "InService" => Self::InService,
            "Updating" => Self::Updating,
            "Failed" => Self::Failed,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::InService => "InService",
            Self::Updating => "Updating",
            Self::Failed => "Failed",
            Self::Unknown => "Unknown",
        }
    }

    /// Bedrock answers calls to it (it keeps serving while it updates).
    pub fn serves(self) -> bool {
        matches!(self, Self::InService | Self::Updating)
    }
}

/// A Provisioned Throughput as Bedrock lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub arn: String,
    pub name: String,
    /// The base model it serves; `None` for a custom model's capacity (never managed here).
    pub model_id: Option<String>,
    pub model_units: u32,
    pub status: CapacityStatus,
    pub commitment: Commitment,
    pub commitment_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A listed capacity and, where they were looked up, its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub capacity: Capacity,
    pub tags: Option<BTreeMap<String, String>>,
}

/// What the capacity function remembers of a capacity of its own, in the routing table item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityRecord {
    pub name: String,
    /// `None` until Bedrock has answered the creation.
    pub arn: Option<String>,
    pub model_id: String,
    pub model_units: u32,
    pub commitment: Commitment,
    /// As last listed, or `Requested` before it was.
    pub status: String,
    /// Whether the table routes to it.
    pub routed: bool,
    /// When its route was withdrawn (epoch seconds): it is deleted a drain later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<i64>,
    /// When its creation was requested (epoch seconds), until Bedrock lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<i64>,
}

/// The published routing table: base model id → the Provisioned Throughput ARNs to call, best
/// first, all `InService` (or `Updating`, which serves) when written. `version` grows by one
/// with every write, each conditional on the version it replaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingTable {
    pub version: u64,
    /// Epoch seconds of the write.
    pub updated_at: i64,
    pub routes: BTreeMap<String, Vec<String>>,
    /// The capacity function's own records (not part of the routing contract).
    #[serde(default)]
    pub capacities: Vec<CapacityRecord>,
}

impl RoutingTable {
    fn record(&self, name: &str) -> Option<&CapacityRecord> {
        self.capacities.iter().find(|r| r.name == name)
    }

    fn routes_to(&self, arn: &str) -> bool {
        self.routes.values().flatten().any(|a| a == arn)
    }

    /// The plan for `model`: the static configuration when it routes to Provisioned Throughput
    /// (the `PROVISIONED_THROUGHPUT` override, custom models, the schedule policy inside its
    /// window), else the table's first live capacity with spillover to on-demand, else
    /// on-demand.
    pub fn plan(&self, router: &CapacityRouter, model: &str, now: DateTime<Utc>) -> Plan {
        live_plan(router, Some(self), model, now)
    }
}

/// [`RoutingTable::plan`], for a table that may be absent.
pub fn live_plan(
    router: &CapacityRouter,
    table: Option<&RoutingTable>,
    model: &str,
    now: DateTime<Utc>,
) -> Plan {
    let configured = router.plan(model, now);
    if configured.primary.route == Route::Provisioned {
        return configured;
    }
    match table
        .and_then(|t| t.routes.get(model))
        .and_then(|arns| arns.first())
    {
        Some(arn) => Plan {
            primary: Target {
                invoke_id: arn.clone(),
                route: Route::Provisioned,
                model: model.to_owned(),
            },
            spillover: Some(Target {
                invoke_id: model.to_owned(),
                route: Route::OnDemand,
                model: model.to_owned(),
            }),
        },
        None => configured,
    }
}

/// Why a capacity is considered this plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The routing table's records name it.
    Recorded,
    /// It carries `bgw:plan` with this plan's name.
    Tagged,
    /// It carries no `bgw:plan` tag and the name this plan would give it.
    Named,
    Foreign,
}

/// Whether the capacity's tags must be looked up to tell whether it is ours: it is not in the
/// records, and it serves a planned model or has a name of this toolkit's.
pub fn needs_tags(
    capacity: &Capacity,
    previous: Option<&RoutingTable>,
    plan: &CapacityPlan,
) -> bool {
    let recorded = previous.is_some_and(|t| recorded(t, capacity));
    let relevant = capacity.name.starts_with(NAME_PREFIX)
        || capacity
            .model_id
            .as_deref()
            .is_some_and(|m| plan.entry(m).is_some());
    capacity.model_id.is_some() && !recorded && relevant
}

fn recorded(table: &RoutingTable, capacity: &Capacity) -> bool {
    table
        .record(&capacity.name)
        .is_some_and(|r| r.arn.is_none() || r.arn.as_deref() == Some(capacity.arn.as_str()))
}

pub fn ownership(
    observed: &Observed,
    previous: Option<&RoutingTable>,
    plan_name: &str,
) -> Ownership {
    let capacity = &observed.capacity;
    let Some(model_id) = capacity.model_id.as_deref() else {
        return Ownership::Foreign;
    };
    if previous.is_some_and(|t| recorded(t, capacity)) {
        return Ownership::Recorded;
    }
    let Some(tags) = &observed.tags else {
        return Ownership::Foreign;
    };
    match tags.get(PLAN_TAG) {
        Some(plan) if plan == plan_name => Ownership::Tagged,
        Some(_) => Ownership::Foreign,
        None if capacity.name
            == capacity_name(model_id, capacity.model_units, capacity.commitment) =>
        {
            Ownership::Named
        }
        None => Ownership::Foreign,
    }
}

/// The tags this plan puts on a capacity of a model.
pub fn plan_tags(plan_name: &str, model_id: &str) -> Vec<(String, String)> {
    vec![
        (PLAN_TAG.to_owned(), plan_name.to_owned()),
        (MODEL_TAG.to_owned(), model_id.to_owned()),
    ]
}

/// A capacity to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder {
    pub name: String,
    pub model_id: String,
    pub model_units: u32,
    pub commitment: Commitment,
    pub client_request_token: String,
    pub tags: Vec<(String, String)>,
}

/// A capacity found and taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub arn: String,
    pub name: String,
    pub model_id: String,
    /// Adopted by name: it gets the plan's tags.
    pub needs_tags: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// Its window closed (and its route was withdrawn a drain ago).
    WindowClosed,
    /// The plan wants other units, or no capacity, of its model.
    Replaced,
    /// Its creation failed: it never served.
    Failed,
}

impl DeleteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WindowClosed => "window closed",
            Self::Replaced => "replaced or no longer planned",
            Self::Failed => "creation failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOrder {
    pub arn: String,
    pub name: String,
    pub model_id: String,
    pub reason: DeleteReason,
}

/// What one run decided: the table to publish first, then the actions, in order: adoptions,
/// creations, deletions (each deleted capacity is already out of the published routes).
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    pub table: RoutingTable,
    /// Whether the table differs from the stored one (or there is anything to do): only then
    /// is it written.
    pub changed: bool,
    pub adoptions: Vec<Adoption>,
    pub creates: Vec<CreateOrder>,
    pub deletes: Vec<DeleteOrder>,
}

/// One reconciliation's inputs.
#[derive(Debug, Clone, Copy)]
pub struct Reconcile<'a> {
    pub plan: &'a CapacityPlan,
    /// The `bgw:plan` tag value of this plan's capacity.
    pub plan_name: &'a str,
    pub lead_minutes: u32,
    /// How long after its route was withdrawn a capacity is deleted.
    pub drain: Duration,
    pub now: DateTime<Utc>,
    /// Every Provisioned Throughput Bedrock lists, with tags where [`needs_tags`] said so.
    pub observed: &'a [Observed],
    /// The stored table, if any.
    pub previous: Option<&'a RoutingTable>,
}

fn by_age(list: &mut [&Capacity]) {
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.arn.cmp(&b.arn)));
}

impl Reconcile<'_> {
    pub fn decide(&self) -> Reconciliation {
        let now = self.now;
        let empty = RoutingTable::default();
        let previous = self.previous.unwrap_or(&empty);

        let mut ours: Vec<&Capacity> = Vec::new();
        let mut adoptions = Vec::new();
        for observed in self.observed {
            let capacity = &observed.capacity;
            let owner = ownership(observed, self.previous, self.plan_name);
            if owner == Ownership::Foreign {
                continue;
            }
            if matches!(owner, Ownership::Tagged | Ownership::Named) {
                adoptions.push(Adoption {
                    arn: capacity.arn.clone(),
                    name: capacity.name.clone(),
                    model_id: capacity.model_id.clone().unwrap_or_default(),
                    needs_tags: owner == Ownership::Named,
                });
            }
            ours.push(capacity);
        }

        let due: HashMap<&str, Due> = self
            .plan
            .entries
            .iter()
            .map(|e| (e.model_id.as_str(), e.due(now, self.lead_minutes)))
            .collect();
        // What the plan wants now, status aside.
        let is_due = |model: &str| due.get(model).is_some_and(|d| d.is_due());
        let wanted = |c: &Capacity| {
            c.model_id
                .as_deref()
                .and_then(|m| self.plan.entry(m))
                .is_some_and(|e| e.matches(c) && is_due(&e.model_id))
        };
        let observed_names: HashSet<&str> = ours.iter().map(|c| c.name.as_str()).collect();
        let pending: Vec<&CapacityRecord> = previous
            .capacities
            .iter()
            .filter(|r| !observed_names.contains(r.name.as_str()))
            .filter(|r| {
                r.requested_at
                    .is_some_and(|t| now.timestamp() - t < PENDING_GRACE_SECONDS)
            })
            .collect();

        // Creations: a due entry with nothing of its kind (a failed one of its name is deleted
        // first; one requested moments ago is trusted to be on its way).
        let mut creates = Vec::new();
        for entry in &self.plan.entries {
            let Some(entry_due) = due.get(entry.model_id.as_str()).filter(|d| d.is_due()) else {
                continue;
            };
            let name = entry.name();
            let exists = ours.iter().any(|c| {
                c.name == name || (entry.matches(c) && c.status != CapacityStatus::Failed)
            });
            if exists || pending.iter().any(|r| r.name == name) {
                continue;
            }
            creates.push(CreateOrder {
                name,
                model_id: entry.model_id.clone(),
                model_units: entry.model_units,
                commitment: entry.commitment,
                client_request_token: entry.client_request_token(self.plan_name, entry_due.opens()),
                tags: plan_tags(self.plan_name, &entry.model_id),
            });
        }

        // Routes, per model.
        let mut models: Vec<&str> = ours.iter().filter_map(|c| c.model_id.as_deref()).collect();
        models.sort_unstable();
        models.dedup();
        let mut routes = BTreeMap::new();
        for model in models {
            let of_model =
                |c: &&&Capacity| c.model_id.as_deref() == Some(model) && c.status.serves();
            let mut planned: Vec<&Capacity> = ours
                .iter()
                .filter(of_model)
                .filter(|c| wanted(c))
                .copied()
                .collect();
            let mut committed: Vec<&Capacity> = ours
                .iter()
                .filter(of_model)
                .filter(|c| !wanted(c) && c.commitment.is_committed())
                .copied()
                .collect();
            let replacing = planned.is_empty() && is_due(model);
            let mut outgoing: Vec<&Capacity> = if replacing {
                ours.iter()
                    .filter(of_model)
                    .filter(|c| !wanted(c) && !c.commitment.is_committed())
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            by_age(&mut planned);
            by_age(&mut committed);
            by_age(&mut outgoing);
            let arns: Vec<String> = planned
                .iter()
                .chain(&committed)
                .chain(&outgoing)
                .map(|c| c.arn.clone())
                .collect();
            if !arns.is_empty() {
                routes.insert(model.to_owned(), arns);
            }
        }
        let routed = |arn: &str| routes.values().flatten().any(|a| a == arn);

        // Deletions and the records.
        let mut deletes = Vec::new();
        let mut records = Vec::new();
        for capacity in &ours {
            let routed_now = routed(&capacity.arn);
            let record = previous.record(&capacity.name);
            let withdrawn_at = if routed_now {
                None
            } else if previous.routes_to(&capacity.arn) {
                Some(now.timestamp())
            } else {
                record.and_then(|r| r.withdrawn_at)
            };
            let model_id = capacity.model_id.clone().unwrap_or_default();
            let retiring = !routed_now && !capacity.commitment.is_committed();
            let reason = match capacity.status {
                CapacityStatus::Failed if !capacity.commitment.is_committed() => {
                    Some(DeleteReason::Failed)
                }
                CapacityStatus::InService if retiring && !wanted(capacity) => {
                    let drained = withdrawn_at
                        .is_none_or(|t| now.timestamp() - t >= self.drain.num_seconds());
                    let closed = self
                        .plan
                        .entry(&model_id)
                        .is_some_and(|e| e.matches(capacity) && e.window.is_some());
                    drained.then_some(if closed {
                        DeleteReason::WindowClosed
                    } else {
                        DeleteReason::Replaced
                    })
                }
                _ => None,
            };
            if let Some(reason) = reason {
                deletes.push(DeleteOrder {
                    arn: capacity.arn.clone(),
                    name: capacity.name.clone(),
                    model_id: model_id.clone(),
                    reason,
                });
            }
            records.push(CapacityRecord {
                name: capacity.name.clone(),
                arn: Some(capacity.arn.clone()),
                model_id,
                model_units: capacity.model_units,
                commitment: capacity.commitment,
                status: capacity.status.as_str().to_owned(),
                routed: routed_now,
                withdrawn_at,
                requested_at: None,
            });
        }
        records.extend(pending.into_iter().cloned());
        records.extend(creates.iter().map(|order| CapacityRecord {
            name: order.name.clone(),
            arn: None,
            model_id: order.model_id.clone(),
            model_units: order.model_units,
            commitment: order.commitment,
            status: "Requested".to_owned(),
            routed: false,
            withdrawn_at: None,
            requested_at: Some(now.timestamp()),
        }));
        records.sort_by(|a, b| a.name.cmp(&b.name));

        let changed = routes != previous.routes
            || records != previous.capacities
            || !adoptions.is_empty()
            || !creates.is_empty()
            || !deletes.is_empty();
        Reconciliation {
            table: RoutingTable {
                version: previous.version + 1,
                updated_at: now.timestamp(),
                routes,
                capacities: records,
            },
            changed,
            adoptions,
            creates,
            deletes,
        }
    }
}

/// The table after the creations of a run: Bedrock's ARN on each requested record, the records
/// of refused creations dropped (so the next run asks again).
pub fn after_creations(
    table: &RoutingTable,
    created: &[(String, String)],
    refused: &[String],
    now: DateTime<Utc>,
) -> RoutingTable {
    let mut next = table.clone();
    next.version += 1;
    next.updated_at = now.timestamp();
    next.capacities.retain(|r| !refused.contains(&r.name));
    for record in &mut next.capacities {
        if let Some((_, arn)) = created.iter().find(|(name, _)| *name == record.name) {
            record.arn = Some(arn.clone());
        }
    }
    next
}

/// Hourly prices per model unit, by model and commitment, in USD.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPrices {
    by_model: HashMap<String, [Option<f64>; 3]>,
}

/// Illustrative defaults, not AWS's price list: USD per model unit and hour without
/// commitment, with one month's, with six months'. Set `CAPACITY_HOURLY_PRICES` from the
/// Amazon Bedrock pricing page for real figures.
pub const DEFAULT_CAPACITY_PRICES: &str = "*=40.00/32.00/22.00";

fn price_index(commitment: Commitment) -> usize {
    match commitment {
        Commitment::None => 0,
        Commitment::OneMonth => 1,
        Commitment::SixMonths => 2,
    }
}

impl CapacityPrices {
    /// `MODEL_ID=NONE[/ONE_MONTH[/SIX_MONTHS]]` entries separated by `;`, USD per model unit
    /// and hour; `*` is every other model. Entries override the defaults.
    pub fn with_overrides(spec: Option<&str>) -> Result<Self, String> {
        let mut prices = Self {
            by_model: HashMap::new(),
        };
        for spec in [Some(DEFAULT_CAPACITY_PRICES), spec].into_iter().flatten() {
            for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                let (model, values) = entry.split_once('=').ok_or_else(|| {
                    format!("entry {entry:?} is not MODEL_ID=NONE[/ONE_MONTH[/SIX_MONTHS]]")
                })?;
                let mut parsed = [None; 3];
                let values: Vec<&str> = values.split('/').map(str::trim).collect();
                if values.len() > 3 {
                    return Err(format!("entry {entry:?} has more than three prices"));
                }
                for (slot, value) in parsed.iter_mut().zip(&values) {
                    if value.is_empty() {
                        continue;
                    }
                    let price = value
                        .parse::<f64>()
                        .ok()
                        .filter(|p| p.is_finite() && *p >= 0.0)
                        .ok_or_else(|| {
                            format!("entry {entry:?}: {value:?} is not a price in USD")
                        })?;
                    *slot = Some(price);
                }
                prices.by_model.insert(model.trim().to_owned(), parsed);
            }
        }
        Ok(prices)
    }

    /// USD per model unit and hour.
    pub fn per_unit_hour(&self, model_id: &str, commitment: Commitment) -> Option<f64> {
        let index = price_index(commitment);
        self.by_model
            .get(model_id)
            .and_then(|p| p[index])
            .or_else(|| self.by_model.get("*").and_then(|p| p[index]))
    }

    /// USD per hour of a capacity.
    pub fn hourly(&self, model_id: &str, units: u32, commitment: Commitment) -> Option<f64> {
        self.per_unit_hour(model_id, commitment)
            .map(|p| p * f64::from(units))
    }
}

/// What a planned capacity costs a day, on average over a week, against the same capacity kept
/// all day every day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanCost {
    pub hours_per_week: f64,
    pub hourly_usd: f64,
    pub daily_usd: f64,
    pub always_on_daily_usd: f64,
}

impl PlanCost {
    pub fn of(
        entry: &PlannedCapacity,
        prices: &CapacityPrices,
        from: DateTime<Utc>,
        lead_minutes: u32,
        drain: Duration,
    ) -> Option<Self> {
        let hourly_usd = prices.hourly(&entry.model_id, entry.model_units, entry.commitment)?;
        let hours_per_week = entry.hours_per_week(from, lead_minutes, drain);
        Some(Self {
            hours_per_week,
            hourly_usd,
            daily_usd: hours_per_week / 7.0 * hourly_usd,
            always_on_daily_usd: 24.0 * hourly_usd,
        })
    }
}

/// A capacity action, counted per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityAction {
    Created,
    Deleted,
    Adopted,
    /// A call failed, or a capacity ended `Failed`.
    Failed,
    /// Bedrock refused a creation for the no-commitment model-unit quota.
    QuotaRefused,
}

impl CapacityAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Deleted => "Deleted",
            Self::Adopted => "Adopted",
            Self::Failed => "Failed",
            Self::QuotaRefused => "QuotaRefused",
        }
    }
}

/// A run's actions on one model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapacityCounts {
    pub model_id: String,
    pub created: u32,
    pub deleted: u32,
    pub adopted: u32,
    pub failed: u32,
    pub quota_refused: u32,
}

impl CapacityCounts {
    pub fn add(&mut self, action: CapacityAction) {
        let counter = match action {
            CapacityAction::Created => &mut self.created,
            CapacityAction::Deleted => &mut self.deleted,
            CapacityAction::Adopted => &mut self.adopted,
            CapacityAction::Failed => &mut self.failed,
            CapacityAction::QuotaRefused => &mut self.quota_refused,
        };
        *counter += 1;
    }
}

/// Why Bedrock's Provisioned Throughput API refused or failed a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// ServiceQuotaExceededException: no model units left for no-commitment capacity.
    #[error("Provisioned Throughput quota reached: {0}")]
    QuotaExceeded(String),
    /// ConflictException: a name taken, or a capacity still changing.
    #[error("Provisioned Throughput conflict: {0}")]
    Conflict(String),
    #[error("no such Provisioned Throughput: {0}")]
    NotFound(String),
    /// Validation, access: the same call would be refused again.
    #[error("Provisioned Throughput call refused: {0}")]
    Refused(String),
    /// Throttling, 5xx, network: worth another try on the next run.
    #[error("Provisioned Throughput call failed: {0}")]
    Failed(String),
}

/// Why the routing table could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingTableError {
    /// Another run wrote first: its decisions stand.
    #[error("the routing table changed since it was read")]
    Conflict,
    #[error("routing table unavailable: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::RoutingPolicy;
    use chrono::TimeZone;

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
        let error =
            CapacityPlan::parse(r#"{"m": {"modelUnits": 1, "window": "9 to 5"}}"#).unwrap_err();
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
        let always =
            CapacityPlan::parse(&format!(r#"{{"{HAIKU}": {{"modelUnits": 1}}}}"#)).unwrap();
        assert_eq!(
            always.entries[0].hours_per_week(utc(2026, 11, 23, 0, 0), 15, Duration::zero()),
            168.0
        );
    }
}
