//! Hourly prices per model unit, and what a plan costs a day against keeping it all day.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::*;

/// Hourly prices per model unit, by model and commitment, in USD.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPrices {
    by_model: HashMap<String, [Option<f64>; 3]>,
}

/// Illustrative defaults, not AWS's price list: USD per model unit and hour without
/// commitment, with one month's, with six months'. Set `CAPACITY_HOURLY_PRICES` from the
/// Amazon Bedrock pricing page for real figures.
pub const DEFAULT_CAPACITY_PRICES: &str = "*=40.00/32.00/22.00";

pub(crate) fn price_index(commitment: Commitment) -> usize {
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
