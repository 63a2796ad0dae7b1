//! How batches are run, from the environment: job sizes, quotas, small batches, prices; and
//! the errors of batch orchestration.

use crate::config::{ConfigError, Env};
use domain::error::{EventError, JobError, RegistryError, StoreError};
use domain::pricing::PriceTable;

/// What to do with a batch under the per-job minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmallPolicy {
    /// Answer it through on-demand Converse, results in the same format as a job's.
    Direct,
    Reject,
}

impl std::str::FromStr for SmallPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Self::Direct),
            "reject" => Ok(Self::Reject),
            other => Err(format!("{other:?} is not direct or reject")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// The service role Bedrock assumes to read inputs and write outputs.
    pub role_arn: String,
    pub min_records: usize,
    pub max_records: usize,
    pub timeout_hours: i32,
    pub small_policy: SmallPolicy,
    pub direct_concurrency: usize,
    pub prices: PriceTable,
    /// Batch price as a share of on-demand.
    pub price_factor: f64,
}

impl BatchSettings {
    /// From the variables both batch functions read; every failure names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let min_records = env.parse_or("BATCH_MIN_RECORDS", 100usize)?;
        let max_records = env.parse_or("BATCH_MAX_RECORDS", 50_000usize)?;
        if max_records == 0 || max_records < min_records {
            return Err(ConfigError::new(
                "BATCH_MAX_RECORDS",
                format!("{max_records} must be at least 1 and at least BATCH_MIN_RECORDS ({min_records})"),
            ));
        }
        let timeout_hours = env.parse_or("BATCH_TIMEOUT_HOURS", 24i32)?;
        if !(24..=168).contains(&timeout_hours) {
            return Err(ConfigError::new(
                "BATCH_TIMEOUT_HOURS",
                format!("{timeout_hours} is outside Bedrock's 24 to 168 hours"),
            ));
        }
        let price_factor = env.parse_or("BATCH_PRICE_FACTOR", 0.5f64)?;
        if !(0.0..=1.0).contains(&price_factor) {
            return Err(ConfigError::new(
                "BATCH_PRICE_FACTOR",
                format!("{price_factor} is not a share between 0 and 1"),
            ));
        }
        Ok(Self {
            role_arn: env.required("BATCH_ROLE_ARN")?,
            min_records,
            max_records,
            timeout_hours,
            small_policy: env.parse_or("BATCH_SMALL_POLICY", SmallPolicy::Direct)?,
            direct_concurrency: env.parse_or("BATCH_DIRECT_CONCURRENCY", 4usize)?.max(1),
            prices: PriceTable::with_overrides("MODEL_PRICES", env.get("MODEL_PRICES"))?,
            price_factor,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Jobs(#[from] JobError),
    /// Announcing a batch's end failed (its state is written; a later run announces it).
    #[error(transparent)]
    Events(#[from] EventError),
    #[error("no batch {0}")]
    NotFound(String),
}
