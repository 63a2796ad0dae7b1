//! How batches are run, from the environment: job sizes, quotas, small batches, prices; and
//! the errors of batch orchestration.

use crate::config::{ConfigError, Env};
use domain::batch::MAX_JOBS_PER_BATCH;
use domain::error::{EventError, JobError, QueueError, RegistryError, StoreError, TenancyError};
use domain::identity::{CallerClaims, Principal};
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

/// Where tenants' budgets are: their keys (the budgets) and their spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetTables {
    pub keys: String,
    pub spend: String,
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
    /// Seconds a run of a direct batch must have left to start another record's call
    /// (`BATCH_DIRECT_CALL_SECONDS`); with less, it leaves the rest to the next run.
    pub direct_call_seconds: u64,
    pub prices: PriceTable,
    /// Batch price as a share of on-demand.
    pub price_factor: f64,
    /// Records one batch may hold, whatever its jobs (`BATCH_MAX_BATCH_RECORDS`).
    pub max_batch_records: usize,
    /// Bytes an uploaded file may have (`BATCH_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
    /// Bytes one line of an upload may have (`BATCH_MAX_LINE_BYTES`): no more of a line is
    /// ever held in memory.
    pub max_line_bytes: usize,
    /// The tenant keys and spend tables (`TENANT_KEYS_TABLE_NAME`, `SPEND_TABLE_NAME`), when
    /// tenants' uploads count against their budgets; both or neither.
    pub budget_tables: Option<BudgetTables>,
    /// Output tokens a record without `inferenceConfig.maxTokens` counts for against its tenant's
    /// budget (`RESERVE_MAX_TOKENS`, as invoke-with-cache's requests).
    pub reserve_max_tokens: u32,
    /// Models a batch may run on: those `/v1/invoke` allows ([`crate::config::allowed_models`]).
    pub allowed_models: std::collections::BTreeSet<String>,
    /// `make dev` only (`LOCAL_CALLER_ARN`): whom a request that carries no identity at all
    /// comes from. Behind API Gateway's IAM authorizer every request carries one, so this
    /// never applies there; the template never sets it.
    pub local_caller: Option<Principal>,
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
        let positive = |name: &str, value: u64| {
            if value == 0 {
                Err(ConfigError::new(name, "0 allows nothing; give at least 1"))
            } else {
                Ok(value)
            }
        };
        // Bedrock's default quotas: 10 jobs in progress of 50,000 records each; 1 GB an input file.
        let max_batch_records = positive(
            "BATCH_MAX_BATCH_RECORDS",
            env.parse_or("BATCH_MAX_BATCH_RECORDS", 500_000u64)?,
        )?;
        let max_upload_bytes = positive(
            "BATCH_MAX_UPLOAD_BYTES",
            env.parse_or("BATCH_MAX_UPLOAD_BYTES", 1_073_741_824u64)?,
        )?;
        let max_line_bytes = positive(
            "BATCH_MAX_LINE_BYTES",
            env.parse_or("BATCH_MAX_LINE_BYTES", 1_048_576u64)?,
        )?;
        if max_line_bytes > max_upload_bytes {
            return Err(ConfigError::new(
                "BATCH_MAX_LINE_BYTES",
                format!(
                    "{max_line_bytes} is more than BATCH_MAX_UPLOAD_BYTES ({max_upload_bytes})"
                ),
            ));
        }
        let max_jobs = max_batch_records.div_ceil(max_records as u64);
        if max_jobs > MAX_JOBS_PER_BATCH as u64 {
            return Err(ConfigError::new(
                "BATCH_MAX_BATCH_RECORDS",
                format!(
                    "{max_batch_records} records in jobs of BATCH_MAX_RECORDS ({max_records}) makes up to {max_jobs} jobs a batch, more than the {MAX_JOBS_PER_BATCH} a registry item holds; lower it or raise BATCH_MAX_RECORDS"
                ),
            ));
        }
        Ok(Self {
            max_batch_records: usize::try_from(max_batch_records).unwrap_or(usize::MAX),
            max_upload_bytes,
            max_line_bytes: usize::try_from(max_line_bytes).unwrap_or(usize::MAX),
            allowed_models: crate::config::allowed_models(env),
            reserve_max_tokens: env.parse_or("RESERVE_MAX_TOKENS", 4096u32)?,
            budget_tables: match (env.get("TENANT_KEYS_TABLE_NAME"), env.get("SPEND_TABLE_NAME")) {
                (Some(keys), Some(spend)) => Some(BudgetTables {
                    keys: keys.to_owned(),
                    spend: spend.to_owned(),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(ConfigError::new(
                        "SPEND_TABLE_NAME",
                        "is required with TENANT_KEYS_TABLE_NAME: tenants' batches count against their budgets",
                    ))
                }
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        "TENANT_KEYS_TABLE_NAME",
                        "is required with SPEND_TABLE_NAME: a budget is read from the tenant's keys",
                    ))
                }
            },
            local_caller: env
                .get("LOCAL_CALLER_ARN")
                .map(|arn| {
                    Principal::from_claims(&CallerClaims {
                        user_arn: Some(arn.to_owned()),
                        ..CallerClaims::default()
                    })
                    .filter(|_| arn.starts_with("arn:"))
                    .ok_or_else(|| {
                        ConfigError::new("LOCAL_CALLER_ARN", format!("{arn:?} is not an IAM ARN"))
                    })
                })
                .transpose()?,
            role_arn: env.required("BATCH_ROLE_ARN")?,
            min_records,
            max_records,
            timeout_hours,
            small_policy: env.parse_or("BATCH_SMALL_POLICY", SmallPolicy::Direct)?,
            direct_concurrency: env.parse_or("BATCH_DIRECT_CONCURRENCY", 4usize)?.max(1),
            direct_call_seconds: positive(
                "BATCH_DIRECT_CALL_SECONDS",
                env.parse_or("BATCH_DIRECT_CALL_SECONDS", 30u64)?,
            )?,
            // Deferred requests answered on flex are priced by the tier's share.
            prices: PriceTable::with_overrides("MODEL_PRICES", env.get("MODEL_PRICES"))?
                .with_tier_factors(domain::pricing::TierFactors::parse(
                    "SERVICE_TIER_PRICE_FACTORS",
                    env.get("SERVICE_TIER_PRICE_FACTORS"),
                )?),
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
    /// Handing batches to the queue failed (the schedule's next run hands them out again).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A tenant's budget could not be read or reserved (the upload's event is retried).
    #[error("tenant budget: {0}")]
    Budget(TenancyError),
    #[error("no batch {0}")]
    NotFound(String),
}
