//! On-demand prices per model and the cost of a call.

use std::collections::HashMap;

use super::conversation::Usage;
use crate::error::ConfigError;
use crate::routing::{Latency, ServiceTier};

/// US dollars per 1,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_1k: f64,
    pub output_per_1k: f64,
    /// Input tokens read from the prompt cache.
    pub cache_read_per_1k: f64,
    /// Input tokens written to the prompt cache.
    pub cache_write_per_1k: f64,
}

impl Price {
    /// A model's input and output prices, with its prompt-cache prices as Bedrock sets them
    /// against its input price: Anthropic's models read at 10% and write at 125%, Amazon Nova
    /// models read at 25% and write at no charge; any other model at its input price (no
    /// discount assumed). Give exact prices in `MODEL_PRICES` when they differ.
    pub fn for_model(model_id: &str, input_per_1k: f64, output_per_1k: f64) -> Self {
        let (read, write) = match underlying_model(model_id) {
            id if id.starts_with("anthropic.") => (0.1, 1.25),
            id if id.starts_with("amazon.nova") => (0.25, 0.0),
            _ => (1.0, 1.0),
        };
        Self {
            input_per_1k,
            output_per_1k,
            cache_read_per_1k: input_per_1k * read,
            cache_write_per_1k: input_per_1k * write,
        }
    }

    /// What the prompt cache saved on `usage` against the same input tokens uncached: reads at
    /// the input price less their own, less what writes cost over the input price.
    pub fn prompt_cache_saving(&self, usage: &Usage) -> f64 {
        let read = f64::from(usage.cache_read_input_tokens) / 1000.0;
        let written = f64::from(usage.cache_write_input_tokens) / 1000.0;
        read * (self.input_per_1k - self.cache_read_per_1k)
            + written * (self.input_per_1k - self.cache_write_per_1k)
    }
}

/// On-demand prices (us-east-1) of the default models.
const DEFAULT_PRICES: &[(&str, f64, f64)] = &[
    ("anthropic.claude-3-haiku-20240307-v1:0", 0.00025, 0.00125),
    ("anthropic.claude-3-sonnet-20240229-v1:0", 0.003, 0.015),
    ("anthropic.claude-3-opus-20240229-v1:0", 0.015, 0.075),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", 0.0008, 0.004),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", 0.003, 0.015),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", 0.003, 0.015),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", 0.003, 0.015),
    ("anthropic.claude-sonnet-4-20250514-v1:0", 0.003, 0.015),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", 0.003, 0.015),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", 0.001, 0.005),
    ("anthropic.claude-opus-4-20250514-v1:0", 0.015, 0.075),
    ("anthropic.claude-opus-4-1-20250805-v1:0", 0.015, 0.075),
    ("amazon.nova-premier-v1:0", 0.0025, 0.0125),
    ("amazon.nova-micro-v1:0", 0.000035, 0.00014),
    ("amazon.nova-lite-v1:0", 0.00006, 0.00024),
    ("amazon.nova-pro-v1:0", 0.0008, 0.0032),
];

#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
    /// Price of each service tier as a share of the default tier's.
    tiers: TierFactors,
}

/// What the flex and priority tiers cost as a share of the default tier's price
/// (`SERVICE_TIER_PRICE_FACTORS`): by default flex half, priority 1.75 times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierFactors {
    pub flex: f64,
    pub priority: f64,
    /// Latency-optimized inference (`performanceConfig.latency: optimized`) against standard.
    pub optimized: f64,
}

impl Default for TierFactors {
    fn default() -> Self {
        Self {
            flex: 0.5,
            priority: 1.75,
            optimized: 1.25,
        }
    }
}

impl TierFactors {
    /// `flex=0.5,priority=1.75,optimized=1.25` (any may be left out, keeping its default).
    pub fn parse(variable: &str, spec: Option<&str>) -> Result<Self, ConfigError> {
        let mut factors = Self::default();
        for entry in spec
            .unwrap_or_default()
            .split([',', ';'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let invalid = || {
                ConfigError::new(
                    variable,
                    format!("entry {entry:?} is not flex=SHARE, priority=SHARE or optimized=SHARE (a non-negative number, e.g. flex=0.5)"),
                )
            };
            let (tier, share) = entry.split_once('=').ok_or_else(invalid)?;
            let share = share
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(invalid)?;
            match tier.trim() {
                "flex" => factors.flex = share,
                "priority" => factors.priority = share,
                "optimized" => factors.optimized = share,
                _ => return Err(invalid()),
            }
        }
        Ok(factors)
    }

    fn of(&self, tier: Option<ServiceTier>) -> f64 {
        match tier {
            Some(ServiceTier::Flex) => self.flex,
            Some(ServiceTier::Priority) => self.priority,
            Some(ServiceTier::Default) | None => 1.0,
        }
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            prices: DEFAULT_PRICES
                .iter()
                .map(|(id, input, output)| {
                    ((*id).to_owned(), Price::for_model(id, *input, *output))
                })
                .collect(),
            tiers: TierFactors::default(),
        }
    }
}

/// The geographic prefixes of cross-region inference profiles (`us.anthropic.…`), `us-gov.`
/// before `us.` so that the longer one is taken first.
pub const INFERENCE_PROFILE_PREFIXES: [&str; 8] = [
    "us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global.",
];

/// The foundation model behind an identifier: cross-region inference profiles (every prefix of
/// [`INFERENCE_PROFILE_PREFIXES`]) and foundation-model or inference-profile ARNs cost what
/// their model costs.
pub fn underlying_model(model_id: &str) -> &str {
    let id = if model_id.starts_with("arn:") {
        model_id.rsplit_once('/').map_or(model_id, |(_, id)| id)
    } else {
        model_id
    };
    INFERENCE_PROFILE_PREFIXES
        .iter()
        .find_map(|p| id.strip_prefix(p))
        .unwrap_or(id)
}

impl PriceTable {
    /// The defaults overridden by `MODEL_ID=INPUT/OUTPUT[/CACHE_READ/CACHE_WRITE]` entries
    /// separated by `;` or `,` (US dollars per 1,000 tokens), as in `MODEL_PRICES`; without the
    /// prompt-cache prices, [`Price::for_model`] derives them from the input price.
    pub fn with_overrides(variable: &str, spec: Option<&str>) -> Result<Self, ConfigError> {
        let mut table = Self::default();
        for entry in spec
            .unwrap_or_default()
            .split([';', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let invalid = |why: &str| {
                ConfigError::new(
                    variable,
                    format!("entry {entry:?} {why}; expected MODEL_ID=INPUT/OUTPUT[/CACHE_READ/CACHE_WRITE] in USD per 1,000 tokens, e.g. anthropic.claude-3-haiku-20240307-v1:0=0.00025/0.00125"),
                )
            };
            let (model, prices) = entry.split_once('=').ok_or_else(|| invalid("has no '='"))?;
            let parse = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && *p >= 0.0)
                    .ok_or_else(|| invalid("has a price that is not a non-negative number"))
            };
            let parts: Vec<&str> = prices.split('/').collect();
            let model = model.trim();
            let price = match parts.as_slice() {
                [input, output] => Price::for_model(model, parse(input)?, parse(output)?),
                [input, output, read, write] => Price {
                    input_per_1k: parse(input)?,
                    output_per_1k: parse(output)?,
                    cache_read_per_1k: parse(read)?,
                    cache_write_per_1k: parse(write)?,
                },
                [_] => return Err(invalid("has no '/'")),
                _ => return Err(invalid("has neither two prices nor four")),
            };
            table.prices.insert(model.to_owned(), price);
        }
        Ok(table)
    }

    /// The table with these service-tier factors.
    pub fn with_tier_factors(mut self, tiers: TierFactors) -> Self {
        self.tiers = tiers;
        self
    }

    /// The cost of a call served on `tier` ([`Self::cost`] times the tier's factor).
    pub fn cost_on_tier(
        &self,
        model_id: &str,
        usage: &Usage,
        tier: Option<ServiceTier>,
    ) -> Option<f64> {
        self.cost_served(model_id, usage, tier, None)
    }

    /// The cost of a call served on `tier` with `latency` (the factors of both).
    pub fn cost_served(
        &self,
        model_id: &str,
        usage: &Usage,
        tier: Option<ServiceTier>,
        latency: Option<Latency>,
    ) -> Option<f64> {
        let latency_factor = match latency {
            Some(Latency::Optimized) => self.tiers.optimized,
            Some(Latency::Standard) | None => 1.0,
        };
        self.cost(model_id, usage)
            .map(|cost| (cost * self.tiers.of(tier) * latency_factor * 1e10).round() / 1e10)
    }

    pub fn price(&self, model_id: &str) -> Option<Price> {
        self.prices
            .get(model_id)
            .or_else(|| self.prices.get(underlying_model(model_id)))
            .copied()
    }

    /// The on-demand cost of a call, prompt-cache reads and writes at their own prices, or
    /// `None` when the model has no price. Rounded to 1e-10 USD so that reports show 0.0000155,
    /// not 0.000015499999999999997.
    pub fn cost(&self, model_id: &str, usage: &Usage) -> Option<f64> {
        self.price(model_id).map(|p| {
            let cost = f64::from(usage.input_tokens) / 1000.0 * p.input_per_1k
                + f64::from(usage.output_tokens) / 1000.0 * p.output_per_1k
                + f64::from(usage.cache_read_input_tokens) / 1000.0 * p.cache_read_per_1k
                + f64::from(usage.cache_write_input_tokens) / 1000.0 * p.cache_write_per_1k;
            (cost * 1e10).round() / 1e10
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    #[test]
    fn every_region_prefix_of_an_inference_profile_costs_what_its_model_costs() {
        let table = PriceTable::default();
        let haiku = table.price(HAIKU).unwrap();
        for prefix in INFERENCE_PROFILE_PREFIXES {
            let profile = format!("{prefix}{HAIKU}");
            assert_eq!(underlying_model(&profile), HAIKU, "{profile}");
            assert_eq!(table.price(&profile), Some(haiku), "{profile}");
        }
        let arn = format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/jp.{HAIKU}");
        assert_eq!(underlying_model(&arn), HAIKU);
        assert_eq!(
            table.price("xx.anthropic.claude-3-haiku-20240307-v1:0"),
            None
        );
    }

    #[test]
    fn prompt_cache_reads_and_writes_cost_their_own_prices() {
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 1000,
            total_tokens: 5100,
            cache_read_input_tokens: 4000,
            cache_write_input_tokens: 0,
        };
        let table = PriceTable::default();
        // Claude 3 Haiku: reads at a tenth of its input price.
        let cost = table.cost(HAIKU, &usage).unwrap();
        let expected = 0.1 * 0.00025 + 1.0 * 0.00125 + 4.0 * 0.000025;
        assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
        let saved = table.price(HAIKU).unwrap().prompt_cache_saving(&usage);
        assert!((saved - 4.0 * (0.00025 - 0.000025)).abs() < 1e-12);
        // A write costs a quarter more than the input it caches.
        let written = Usage {
            cache_read_input_tokens: 0,
            cache_write_input_tokens: 4000,
            ..usage
        };
        let saved = table.price(HAIKU).unwrap().prompt_cache_saving(&written);
        assert!((saved + 4.0 * 0.25 * 0.00025).abs() < 1e-12, "{saved}");
        // Nova writes at no charge; exact prices from MODEL_PRICES win.
        let nova = table.price("us.amazon.nova-lite-v1:0").unwrap();
        assert_eq!(nova.cache_write_per_1k, 0.0);
        let custom =
            PriceTable::with_overrides("MODEL_PRICES", Some(&format!("{HAIKU}=1/2/0.3/1.5")))
                .unwrap();
        assert_eq!(custom.price(HAIKU).unwrap().cache_read_per_1k, 0.3);
        assert!(PriceTable::with_overrides("MODEL_PRICES", Some("x=1/2/3")).is_err());
    }

    #[test]
    fn a_tier_scales_the_default_price_by_its_factor() {
        let usage = Usage::new(2000, 1000);
        let table = PriceTable::default();
        let default = table.cost(HAIKU, &usage).unwrap();
        let flex = table.cost_on_tier(HAIKU, &usage, Some(ServiceTier::Flex));
        assert_eq!(flex, Some((default * 0.5 * 1e10).round() / 1e10));
        let table = table.with_tier_factors(
            TierFactors::parse("SERVICE_TIER_PRICE_FACTORS", Some("priority=2")).unwrap(),
        );
        let priority = table
            .cost_on_tier(HAIKU, &usage, Some(ServiceTier::Priority))
            .unwrap();
        assert!((priority - 2.0 * default).abs() < 1e-12);
        assert_eq!(table.cost_on_tier(HAIKU, &usage, None), Some(default));
        let optimized = table
            .cost_served(HAIKU, &usage, None, Some(Latency::Optimized))
            .unwrap();
        assert!((optimized - 1.25 * default).abs() < 1e-12);
        for bad in ["flex", "flex=-1", "scale=1", "flex=x"] {
            let err = TierFactors::parse("SERVICE_TIER_PRICE_FACTORS", Some(bad)).unwrap_err();
            assert_eq!(err.variable, "SERVICE_TIER_PRICE_FACTORS", "{bad}");
        }
    }

    #[test]
    fn cost_uses_input_and_output_prices() {
        let usage = Usage::new(2000, 1000);
        let cost = PriceTable::default().cost(HAIKU, &usage).unwrap();
        assert!((cost - (0.0005 + 0.00125)).abs() < 1e-12);
        let small = Usage::new(7, 11);
        assert_eq!(PriceTable::default().cost(HAIKU, &small), Some(0.0000155));
        let profile = PriceTable::default().cost(&format!("us.{HAIKU}"), &usage);
        assert_eq!(profile, Some(cost));
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-3-haiku-20240307-v1:0";
        assert_eq!(PriceTable::default().cost(arn, &usage), Some(cost));
        assert_eq!(PriceTable::default().cost("unknown", &usage), None);
    }

    #[test]
    fn overrides_replace_and_add() {
        let table = PriceTable::with_overrides(
            "MODEL_PRICES",
            Some(&format!("{HAIKU}=1/2; custom=0.5/0.25")),
        )
        .unwrap();
        assert_eq!(table.price(HAIKU).unwrap().output_per_1k, 2.0);
        assert_eq!(table.price("custom").unwrap().input_per_1k, 0.5);
        for bad in ["x", "x=1", "x=a/1", "x=-1/1"] {
            let err = PriceTable::with_overrides("MODEL_PRICES", Some(bad)).unwrap_err();
            assert_eq!(err.variable, "MODEL_PRICES");
        }
    }
}
