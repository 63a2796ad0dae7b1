//! Provisioned Throughput in a period: its capacity, how much of it the traffic used at its
//! peak minute, and what the traffic served on demand would have cost on it.

use std::collections::{BTreeMap, HashMap};

use crate::error::ConfigError;
use crate::pricing::underlying_model;

use super::*;

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
