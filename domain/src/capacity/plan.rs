//! The declared plan: per base model its units, commitment and optional weekly window; when
//! each entry is due, and the deterministic name of what it asks for.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::*;

/// The tag naming the plan a capacity belongs to; its value is the plan's name.
pub const PLAN_TAG: &str = "bgw:plan";
/// The tag naming the base model a capacity serves (informational).
pub const MODEL_TAG: &str = "bgw:model";
/// Every name this toolkit gives a Provisioned Throughput starts so.
pub const NAME_PREFIX: &str = "bgw-";
/// Longest Provisioned Throughput name Bedrock accepts.
pub(crate) const MAX_NAME: usize = 63;
/// A window is looked for this far (minutes) around a moment: a week and a day.
pub(crate) const SCAN_MINUTES: i64 = 8 * 24 * 60;
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
    pub(crate) fn opens(self) -> Option<DateTime<Utc>> {
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
pub(crate) struct EntrySpec {
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
