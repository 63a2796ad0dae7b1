//! Reading configuration from environment variables: every failure names the variable.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::str::FromStr;

pub use domain::error::ConfigError;
use domain::tiers::{
    TierModels, DEFAULT_COMPLEX_MODEL, DEFAULT_MODERATE_MODEL, DEFAULT_SIMPLE_MODEL,
};

/// A source of variables: the process environment, or a map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The value, if set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// Parses the value with `FromStr`, or returns the default when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    /// A comma-separated list; blank items are dropped.
    pub fn list_or(&self, name: &str, default: &[&str]) -> Vec<String> {
        match self.get(name) {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// The model of each tier: `MODEL_SIMPLE`, `MODEL_MODERATE`, `MODEL_COMPLEX`, with their
/// defaults.
pub fn tier_models(env: &Env) -> TierModels {
    TierModels {
        simple: env.string_or("MODEL_SIMPLE", DEFAULT_SIMPLE_MODEL),
        moderate: env.string_or("MODEL_MODERATE", DEFAULT_MODERATE_MODEL),
        complex: env.string_or("MODEL_COMPLEX", DEFAULT_COMPLEX_MODEL),
    }
}

/// The base models a caller may name, the same for `/v1/invoke` and batches: the tier models
/// and `ALLOWED_MODELS`.
pub fn allowed_models(env: &Env) -> BTreeSet<String> {
    let tiers = tier_models(env);
    env.list_or("ALLOWED_MODELS", &[])
        .into_iter()
        .chain([tiers.simple, tiers.moderate, tiers.complex])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_variable() {
        let env = Env::from_pairs([("CACHE_TTL_SECONDS", "soon")]);
        let err = env.parse_or::<u64>("CACHE_TTL_SECONDS", 3600).unwrap_err();
        assert_eq!(err.variable, "CACHE_TTL_SECONDS");
        assert!(err.to_string().contains("CACHE_TTL_SECONDS"));
        assert_eq!(env.parse_or::<u64>("OTHER", 7).unwrap(), 7);
        assert!(env
            .required("MISSING")
            .unwrap_err()
            .to_string()
            .contains("MISSING"));
    }

    #[test]
    fn lists_drop_blanks() {
        let env = Env::from_pairs([("L", " a, ,b ")]);
        assert_eq!(env.list_or("L", &[]), vec!["a", "b"]);
        assert_eq!(env.list_or("NONE", &["x"]), vec!["x"]);
    }
}
