//! The function's configuration, read once at start from environment variables.

use chrono::Duration;

use domain::capacity::{CapacityPlan, CapacityPrices};
use shared::adapters::emf::DEFAULT_NAMESPACE;
use shared::config::{ConfigError, Env};

#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySettings {
    /// `CAPACITY_PLAN`: what should exist, per base model.
    pub plan: CapacityPlan,
    /// `CAPACITY_PLAN_NAME`: the `bgw:plan` tag value of this plan's capacity (the stack's name
    /// in the template), which the invoking role's IAM condition names too.
    pub plan_name: String,
    /// `CAPACITY_LEAD_MINUTES`: how long before a window opens its capacity is created.
    pub lead_minutes: u32,
    /// `CAPACITY_DRAIN_SECONDS`: how long after its route is withdrawn a capacity is deleted;
    /// at least invoke-with-cache's `ROUTING_TABLE_CACHE_SECONDS`, so no instance still routes
    /// to it.
    pub drain: Duration,
    /// `CAPACITY_HOURLY_PRICES`, over illustrative defaults.
    pub prices: CapacityPrices,
    /// `ROUTING_TABLE_NAME`.
    pub routing_table: String,
    pub metrics_namespace: String,
    /// The function's application log level, which metric lines must pass.
    pub log_level: Option<String>,
}

/// A tag value Bedrock accepts, short enough to read: 1 to 128 of `[A-Za-z0-9 ._:/=+@-]`.
fn tag_value(name: &str, value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._:/=+@-".contains(c));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::new(
            name,
            format!("{value:?} is not a tag value: 1 to 128 letters, digits, spaces or ._:/=+@-"),
        ))
    }
}

impl CapacitySettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let plan = CapacityPlan::parse(&env.required("CAPACITY_PLAN")?)
            .map_err(|e| ConfigError::new("CAPACITY_PLAN", e))?;
        let lead_minutes = env.parse_or("CAPACITY_LEAD_MINUTES", 15u32)?;
        if lead_minutes > 24 * 60 {
            return Err(ConfigError::new(
                "CAPACITY_LEAD_MINUTES",
                format!("{lead_minutes} is more than a day (1440)"),
            ));
        }
        let drain_seconds = env.parse_or("CAPACITY_DRAIN_SECONDS", 60u32)?;
        if drain_seconds > 3600 {
            return Err(ConfigError::new(
                "CAPACITY_DRAIN_SECONDS",
                format!("{drain_seconds} is more than an hour (3600): the capacity would be billed for nothing"),
            ));
        }
        Ok(Self {
            plan,
            plan_name: tag_value(
                "CAPACITY_PLAN_NAME",
                &env.string_or("CAPACITY_PLAN_NAME", "bgw"),
            )?,
            lead_minutes,
            drain: Duration::seconds(i64::from(drain_seconds)),
            prices: CapacityPrices::with_overrides(env.get("CAPACITY_HOURLY_PRICES"))
                .map_err(|e| ConfigError::new("CAPACITY_HOURLY_PRICES", e))?,
            routing_table: env.required("ROUTING_TABLE_NAME")?,
            metrics_namespace: env.string_or("METRICS_NAMESPACE", DEFAULT_NAMESPACE),
            log_level: env.get("AWS_LAMBDA_LOG_LEVEL").map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(
            [("CAPACITY_PLAN", "{}"), ("ROUTING_TABLE_NAME", "routes")]
                .into_iter()
                .chain(pairs.iter().copied()),
        )
    }

    #[test]
    fn defaults() {
        let settings = CapacitySettings::from_env(&env(&[])).unwrap();
        assert_eq!(settings.lead_minutes, 15);
        assert_eq!(settings.drain, Duration::seconds(60));
        assert_eq!(settings.plan_name, "bgw");
        assert!(settings.plan.entries.is_empty());
        assert_eq!(settings.metrics_namespace, "Custom/Bedrock");
    }

    #[test]
    fn every_invalid_value_names_its_variable() {
        for (name, value) in [
            ("CAPACITY_PLAN", "not json"),
            ("CAPACITY_PLAN", r#"{"m": {"modelUnits": 0}}"#),
            ("CAPACITY_LEAD_MINUTES", "soon"),
            ("CAPACITY_LEAD_MINUTES", "2000"),
            ("CAPACITY_DRAIN_SECONDS", "-1"),
            ("CAPACITY_DRAIN_SECONDS", "7200"),
            ("CAPACITY_PLAN_NAME", "no*stars"),
            ("CAPACITY_HOURLY_PRICES", "m=cheap"),
        ] {
            let err = CapacitySettings::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{name}={value}: {err}");
        }
        for missing in ["CAPACITY_PLAN", "ROUTING_TABLE_NAME"] {
            let pairs = [("CAPACITY_PLAN", "{}"), ("ROUTING_TABLE_NAME", "t")];
            let env = Env::from_pairs(pairs.into_iter().filter(|(n, _)| *n != missing));
            assert_eq!(
                CapacitySettings::from_env(&env).unwrap_err().variable,
                missing
            );
        }
    }
}
