//! The function's configuration, read once at start from environment variables.

use std::collections::BTreeSet;
use std::time::Duration;

use domain::cache::{CachePolicy, SampledRequests};
use domain::guardrail::{Guardrail, StreamProcessing};
use domain::pricing::{PriceTable, TierFactors};
use domain::routing::{CapacityRouter, RoutingPolicy, Schedule, ServiceTier};
use domain::tiers::{ComplexityRules, TierModels, DEFAULT_COMPLEX_KEYWORDS};
use shared::adapters::bedrock::{BedrockSettings, RetryMode};
use shared::adapters::emf::DEFAULT_NAMESPACE;
use shared::config::{ConfigError, Env};

/// How the function hands answers to Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// Lambda response streaming: server-sent events leave as the model writes (API Gateway
    /// REST API with `ResponseTransferMode: STREAM`, function URLs, `cargo lambda watch`).
    Streaming,
    /// One whole response (HTTP API, REST API without streaming): a stream is collected first.
    Buffered,
}

impl std::str::FromStr for ResponseMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "streaming" => Ok(Self::Streaming),
            "buffered" => Ok(Self::Buffered),
            other => Err(format!("{other:?} is not streaming or buffered")),
        }
    }
}

/// Who shares cache entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Every caller shares one namespace.
    Shared,
    /// Each caller (IAM principal or JWT subject) has its own.
    Caller,
}

#[derive(Debug, Clone)]
pub struct InvokeConfig {
    pub cache_table: String,
    pub cache_ttl_seconds: u64,
    pub cache_max_ttl_seconds: u64,
    pub cache_scope: CacheScope,
    pub cache_namespace: String,
    /// Under the shared scope, whether a request may `refresh` an entry everyone shares.
    pub shared_allow_refresh: bool,
    /// Under the shared scope, whether a request may set `ttlSeconds` above the default.
    pub shared_allow_ttl: bool,
    pub cache_policy: CachePolicy,
    pub lease: LeaseSettings,
    pub memory_cache_entries: usize,
    pub memory_cache_ttl_seconds: u64,
    /// Bound on one cache call, retries included.
    pub cache_timeout: Duration,
    pub tier_models: TierModels,
    pub complexity: ComplexityRules,
    /// Models a request may name in `modelId`: the tier models and `ALLOWED_MODELS`.
    pub allowed_models: BTreeSet<String>,
    pub router: CapacityRouter,
    pub bedrock: BedrockSettings,
    pub prices: PriceTable,
    /// The service tier asked of Bedrock for an on-demand call whose request names none (or
    /// OpenAI's `auto`) (`SERVICE_TIER`); `None` asks none, Bedrock's default.
    pub service_tier: Option<ServiceTier>,
    /// The guardrail applied to every call (`GUARDRAIL_ID`, `GUARDRAIL_VERSION`,
    /// `GUARDRAIL_TRACE`, `GUARDRAIL_STREAM_MODE`).
    pub guardrail: Option<Guardrail>,
    /// Whether a cache point is placed after long tool definitions and system prompts
    /// (`PROMPT_CACHE_AUTO`).
    pub prompt_cache_auto: bool,
    /// Whether a tenant's reservation counts its input with Bedrock's CountTokens
    /// (`COUNT_TOKENS`): closer than the prompt's bytes, at the price of one call.
    pub count_tokens: bool,
    /// Deferred requests' table, and how near and how far their deadline may be.
    pub deferred: DeferredConfig,
    pub metrics_namespace: String,
    /// The function's application log level, which metric lines must pass.
    pub log_level: Option<String>,
    pub max_body_bytes: usize,
    pub response_mode: ResponseMode,
    /// When a stream ends with an error event rather than be cut by API Gateway or Lambda.
    pub stream_limits: StreamLimits,
    /// Whether streamed mode sets TCP_NODELAY on the Runtime API connection
    /// (`shared::runtime_nodelay`); off only to measure the delayed-ACK stall it removes.
    pub runtime_api_nodelay: bool,
    /// Tenant keys and budgets; `None` when TENANT_KEYS_TABLE_NAME is unset.
    pub tenancy: Option<TenancySettings>,
    /// The capacity function's routing table; `None` when ROUTING_TABLE_NAME is unset.
    pub routing_table: Option<RoutingTableSettings>,
}

/// Live routes to Provisioned Throughput, read from the table the capacity function publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTableSettings {
    pub table: String,
    /// How long an instance routes by the table it read before reading it again.
    pub cache: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenancySettings {
    pub keys_table: String,
    pub spend_table: String,
    /// How long an instance trusts a key lookup: a revoked key works at most this long.
    pub key_cache: Duration,
    /// How long an instance trusts a tenant's spend before reading it again.
    pub spend_cache: Duration,
    /// How long the last spend known answers while the spend table cannot be read; past it,
    /// a tenant with a budget is refused (503) until the table answers again.
    pub spend_grace: Duration,
    /// How long a concurrency lease lasts when its request never gives it back (an instance
    /// killed or frozen mid-request): the longest a dead request holds one of its tenant's slots.
    pub concurrency_lease: Duration,
    /// How long, from the first failure, an instance admits tenants unlimited while the
    /// limiter's table cannot be reached; past it, tenants with limits get 503.
    pub limiter_fail_open: Duration,
    /// Output tokens a request without `maxTokens` is taken to use at most, for its
    /// tokens-per-minute reservation and its budget reservation.
    pub default_max_tokens: u32,
    /// How long a budget reservation counts when its request never settles it (an instance
    /// killed or frozen mid-request).
    pub budget_reservation: Duration,
}

/// Stampede protection: the first of identical misses leases the key, the others wait for its
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a lease holds the key; `None` turns leases off.
    pub duration: Option<Duration>,
    /// Longest a request waits for another's answer before calling the model itself.
    pub wait: Duration,
    /// How often a waiting request looks for the answer.
    pub poll: Duration,
}

/// How long a stream may last. API Gateway ends a REST API's stream after 15 minutes and Lambda
/// an invocation at its timeout, both without a word to the client; a stream ends `margin`
/// before the first of them with an error event instead, its tokens charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// The longest a stream lasts (`STREAM_MAX_SECONDS`, 900: API Gateway's limit).
    pub max: Duration,
    /// How long before that limit, or the invocation's deadline, a stream ends
    /// (`STREAM_END_MARGIN_SECONDS`, 10): the time to write its error event and charge it.
    pub margin: Duration,
}

impl StreamLimits {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max = positive(
            "STREAM_MAX_SECONDS",
            env.parse_or("STREAM_MAX_SECONDS", 900u64)?,
        )?;
        let margin = env.parse_or("STREAM_END_MARGIN_SECONDS", 10u64)?;
        if margin >= max {
            return Err(ConfigError::new(
                "STREAM_END_MARGIN_SECONDS",
                format!("must be less than STREAM_MAX_SECONDS ({max}), got {margin}"),
            ));
        }
        Ok(Self {
            max: Duration::from_secs(max),
            margin: Duration::from_secs(margin),
        })
    }

    /// How long a stream started now may last: `margin` before `max` or the invocation's
    /// deadline (`invocation_left`, when known), whichever comes first.
    pub fn allowance(&self, invocation_left: Option<Duration>) -> Duration {
        invocation_left
            .map_or(self.max, |left| left.min(self.max))
            .saturating_sub(self.margin)
    }
}

fn millis(env: &Env, name: &str, default: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(positive(
        name,
        env.parse_or(name, default)?,
    )?))
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(
    name: &str,
    value: T,
) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::new(
            name,
            format!("must be greater than 0, got {value}"),
        ))
    }
}

impl InvokeConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let cache_ttl_seconds = positive(
            "CACHE_TTL_SECONDS",
            env.parse_or("CACHE_TTL_SECONDS", 3600u64)?,
        )?;
        let cache_max_ttl_seconds = env.parse_or("CACHE_MAX_TTL_SECONDS", 86_400u64)?;
        if cache_max_ttl_seconds < cache_ttl_seconds {
            return Err(ConfigError::new(
                "CACHE_MAX_TTL_SECONDS",
                format!("{cache_max_ttl_seconds} is below CACHE_TTL_SECONDS ({cache_ttl_seconds})"),
            ));
        }
        let cache_scope = match env.string_or("CACHE_SCOPE", "shared").as_str() {
            "shared" => CacheScope::Shared,
            "caller" => CacheScope::Caller,
            other => {
                return Err(ConfigError::new(
                    "CACHE_SCOPE",
                    format!("{other:?} is not shared or caller"),
                ))
            }
        };
        let tier_models = shared::config::tier_models(env);
        let simple_max_words = positive(
            "COMPLEXITY_SIMPLE_MAX_WORDS",
            env.parse_or("COMPLEXITY_SIMPLE_MAX_WORDS", 50usize)?,
        )?;
        let moderate_max_words = env.parse_or("COMPLEXITY_MODERATE_MAX_WORDS", 200usize)?;
        if moderate_max_words < simple_max_words {
            return Err(ConfigError::new(
                "COMPLEXITY_MODERATE_MAX_WORDS",
                "must not be below COMPLEXITY_SIMPLE_MAX_WORDS",
            ));
        }
        let keywords = env.list_or("COMPLEXITY_KEYWORDS", DEFAULT_COMPLEX_KEYWORDS);
        let complexity = ComplexityRules::new(
            simple_max_words,
            moderate_max_words,
            keywords.iter().map(String::as_str),
        );

        let mut allowed_models = shared::config::allowed_models(env);

        let provisioned = CapacityRouter::parse_provisioned(
            env.get("PROVISIONED_THROUGHPUT").unwrap_or_default(),
        )
        .map_err(|e| ConfigError::new("PROVISIONED_THROUGHPUT", e))?;
        let custom_models =
            CapacityRouter::parse_custom(env.get("CUSTOM_MODELS").unwrap_or_default())
                .map_err(|e| ConfigError::new("CUSTOM_MODELS", e))?;
        for name in custom_models.keys() {
            if allowed_models.contains(name) || provisioned.contains_key(name) {
                return Err(ConfigError::new(
                    "CUSTOM_MODELS",
                    format!("{name:?} is also a base model here; give the custom model a name of its own"),
                ));
            }
        }
        allowed_models.extend(custom_models.keys().cloned());
        let policy = match env.string_or("ROUTING_POLICY", "spillover").as_str() {
            "spillover" => RoutingPolicy::Spillover,
            "schedule" => RoutingPolicy::Schedule {
                schedule: env
                    .string_or("PROVISIONED_SCHEDULE", "09:00-17:00")
                    .parse::<Schedule>()
                    .map_err(|e| {
                        ConfigError::new(
                            "PROVISIONED_SCHEDULE",
                            format!("{e}; expected [DAYS ]HH:MM-HH:MM, e.g. Mon-Fri 09:00-18:00"),
                        )
                    })?,
                time_zone: env
                    .string_or("PROVISIONED_TIMEZONE", "UTC")
                    .parse()
                    .map_err(|e| {
                        ConfigError::new(
                            "PROVISIONED_TIMEZONE",
                            format!("{e}; use an IANA name such as Asia/Tokyo"),
                        )
                    })?,
            },
            other => {
                return Err(ConfigError::new(
                    "ROUTING_POLICY",
                    format!("{other:?} is not spillover or schedule"),
                ))
            }
        };

        let bedrock = BedrockSettings {
            connect_timeout: Duration::from_millis(positive(
                "BEDROCK_CONNECT_TIMEOUT_MS",
                env.parse_or("BEDROCK_CONNECT_TIMEOUT_MS", 5_000u64)?,
            )?),
            read_timeout: Duration::from_millis(positive(
                "BEDROCK_READ_TIMEOUT_MS",
                env.parse_or("BEDROCK_READ_TIMEOUT_MS", 60_000u64)?,
            )?),
            // 0 (the default) leaves a call bounded by the connect and read timeouts alone.
            operation_timeout: match env.parse_or("BEDROCK_OPERATION_TIMEOUT_MS", 0u64)? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            provisioned_timeout: millis(env, "BEDROCK_PROVISIONED_TIMEOUT_MS", 10_000)?,
            max_attempts: positive(
                "BEDROCK_MAX_ATTEMPTS",
                env.parse_or("BEDROCK_MAX_ATTEMPTS", 2u32)?,
            )?,
            retry_mode: env.parse_or("BEDROCK_RETRY_MODE", RetryMode::Adaptive)?,
        };

        if let Some(operation) = bedrock.operation_timeout {
            if bedrock.provisioned_timeout >= operation {
                return Err(ConfigError::new(
                    "BEDROCK_PROVISIONED_TIMEOUT_MS",
                    format!(
                        "{} ms leaves no time of BEDROCK_OPERATION_TIMEOUT_MS ({} ms) for spillover to on-demand; make it a share of it",
                        bedrock.provisioned_timeout.as_millis(),
                        operation.as_millis()
                    ),
                ));
            }
        }
        let lease = LeaseSettings {
            duration: match env.parse_or("CACHE_LEASE_MS", 30_000u64)? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            wait: Duration::from_millis(env.parse_or("CACHE_LEASE_WAIT_MS", 5_000u64)?),
            poll: millis(env, "CACHE_LEASE_POLL_MS", 100)?,
        };
        let cache_policy = CachePolicy {
            store_max_tokens: env.parse_or("CACHE_MAX_TOKENS_ANSWERS", false)?,
            sampled: env.parse_or("CACHE_SAMPLED_REQUESTS", SampledRequests::Cache)?,
        };

        let tenancy = match env.get("TENANT_KEYS_TABLE_NAME") {
            None => None,
            Some(keys_table) => Some(TenancySettings {
                keys_table: keys_table.to_owned(),
                spend_table: env.required("SPEND_TABLE_NAME")?,
                key_cache: Duration::from_secs(env.parse_or("TENANT_KEY_CACHE_SECONDS", 60u64)?),
                spend_cache: Duration::from_secs(env.parse_or("SPEND_CACHE_SECONDS", 10u64)?),
                spend_grace: Duration::from_secs(env.parse_or("SPEND_READ_GRACE_SECONDS", 300u64)?),
                concurrency_lease: Duration::from_secs(
                    env.parse_or("CONCURRENCY_LEASE_SECONDS", 900u64)?,
                ),
                limiter_fail_open: Duration::from_secs(
                    env.parse_or("LIMITER_FAIL_OPEN_SECONDS", 10u64)?,
                ),
                default_max_tokens: env.parse_or("RESERVE_MAX_TOKENS", 4096u32)?,
                budget_reservation: Duration::from_secs(
                    env.parse_or("BUDGET_RESERVATION_SECONDS", 900u64)?,
                ),
            }),
        };

        let prices = PriceTable::with_overrides("MODEL_PRICES", env.get("MODEL_PRICES"))?
            .with_tier_factors(TierFactors::parse(
                "SERVICE_TIER_PRICE_FACTORS",
                env.get("SERVICE_TIER_PRICE_FACTORS"),
            )?);
        let guardrail = match (env.get("GUARDRAIL_ID"), env.get("GUARDRAIL_VERSION")) {
            (None, None) => None,
            (Some(identifier), Some(version)) => Some(Guardrail {
                identifier: identifier.to_owned(),
                version: version.to_owned(),
                trace: env.parse_or("GUARDRAIL_TRACE", false)?,
                stream_mode: env.parse_or("GUARDRAIL_STREAM_MODE", StreamProcessing::Sync)?,
            }),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "GUARDRAIL_VERSION",
                    "is required with GUARDRAIL_ID: DRAFT or the version number to apply",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "GUARDRAIL_ID",
                    "is required with GUARDRAIL_VERSION: the guardrail's id or ARN",
                ))
            }
        };
        let service_tier = env
            .get("SERVICE_TIER")
            .map(|tier| {
                tier.parse::<ServiceTier>()
                    .map_err(|why| ConfigError::new("SERVICE_TIER", why))
            })
            .transpose()?;
        // A tenant's budget counts what its answers cost: a model without a price would be free.
        if tenancy.is_some() {
            if let Some(model) = allowed_models.iter().find(|m| prices.price(m).is_none()) {
                return Err(ConfigError::new(
                    "MODEL_PRICES",
                    format!(
                        "tenant keys are on (TENANT_KEYS_TABLE_NAME is set) and {model:?}, a model a key may use, has no price, so budgets would not count it; add {model}=INPUT/OUTPUT (USD per 1,000 tokens) to MODEL_PRICES or take it out of ALLOWED_MODELS"
                    ),
                ));
            }
        }

        let routing_cache =
            Duration::from_secs(env.parse_or("ROUTING_TABLE_CACHE_SECONDS", 30u64)?);
        let routing_table = env
            .get("ROUTING_TABLE_NAME")
            .map(|table| RoutingTableSettings {
                table: table.to_owned(),
                cache: routing_cache,
            });

        Ok(Self {
            tenancy,
            routing_table,
            cache_table: env.required("CACHE_TABLE_NAME")?,
            cache_ttl_seconds,
            cache_max_ttl_seconds,
            cache_scope,
            cache_namespace: env.string_or("CACHE_NAMESPACE", "shared"),
            shared_allow_refresh: env.parse_or("SHARED_CACHE_ALLOW_REFRESH", false)?,
            shared_allow_ttl: env.parse_or("SHARED_CACHE_ALLOW_TTL", false)?,
            cache_policy,
            lease,
            memory_cache_entries: env.parse_or("MEMORY_CACHE_ENTRIES", 256usize)?,
            memory_cache_ttl_seconds: positive(
                "MEMORY_CACHE_TTL_SECONDS",
                env.parse_or("MEMORY_CACHE_TTL_SECONDS", 60u64)?,
            )?,
            cache_timeout: Duration::from_millis(positive(
                "CACHE_TIMEOUT_MS",
                env.parse_or("CACHE_TIMEOUT_MS", 1_000u64)?,
            )?),
            tier_models,
            complexity,
            allowed_models,
            router: CapacityRouter::new(provisioned, policy).with_custom_models(custom_models),
            bedrock,
            prices,
            service_tier,
            guardrail,
            prompt_cache_auto: env.parse_or("PROMPT_CACHE_AUTO", false)?,
            count_tokens: env.parse_or("COUNT_TOKENS", false)?,
            deferred: DeferredConfig::from_env(env)?,
            metrics_namespace: env.string_or("METRICS_NAMESPACE", DEFAULT_NAMESPACE),
            log_level: env.get("AWS_LAMBDA_LOG_LEVEL").map(str::to_owned),
            response_mode: env.parse_or("RESPONSE_MODE", ResponseMode::Streaming)?,
            stream_limits: StreamLimits::from_env(env)?,
            runtime_api_nodelay: env.parse_or("RUNTIME_API_NODELAY", true)?,
            max_body_bytes: positive(
                "MAX_BODY_BYTES",
                env.parse_or("MAX_BODY_BYTES", 262_144usize)?,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied().chain([("CACHE_TABLE_NAME", "cache")]))
    }

    #[test]
    fn a_stream_ends_its_margin_before_api_gateways_limit_or_the_invocations_deadline() {
        let limits = InvokeConfig::from_env(&env(&[])).unwrap().stream_limits;
        assert_eq!(limits.allowance(None), Duration::from_secs(890));
        assert_eq!(
            limits.allowance(Some(Duration::from_secs(300))),
            Duration::from_secs(290)
        );
        assert_eq!(
            limits.allowance(Some(Duration::from_secs(5))),
            Duration::ZERO
        );
        let err = InvokeConfig::from_env(&env(&[
            ("STREAM_MAX_SECONDS", "30"),
            ("STREAM_END_MARGIN_SECONDS", "30"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "STREAM_END_MARGIN_SECONDS");
        let err = InvokeConfig::from_env(&env(&[("STREAM_MAX_SECONDS", "0")])).unwrap_err();
        assert_eq!(err.variable, "STREAM_MAX_SECONDS");
    }

    #[test]
    fn the_deployments_service_tier_and_its_prices_are_read_and_checked() {
        let config = InvokeConfig::from_env(&env(&[])).unwrap();
        assert_eq!(config.service_tier, None);
        let config = InvokeConfig::from_env(&env(&[
            ("SERVICE_TIER", "flex"),
            ("SERVICE_TIER_PRICE_FACTORS", "flex=0.4"),
        ]))
        .unwrap();
        assert_eq!(config.service_tier, Some(ServiceTier::Flex));
        for (name, value) in [
            ("SERVICE_TIER", "reserved"),
            ("SERVICE_TIER_PRICE_FACTORS", "flex=cheap"),
        ] {
            let err = InvokeConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(err.variable, name);
        }
    }

    #[test]
    fn a_guardrail_needs_its_id_and_version() {
        assert_eq!(InvokeConfig::from_env(&env(&[])).unwrap().guardrail, None);
        let config = InvokeConfig::from_env(&env(&[
            ("GUARDRAIL_ID", "gr-1"),
            ("GUARDRAIL_VERSION", "2"),
            ("GUARDRAIL_STREAM_MODE", "async"),
        ]))
        .unwrap();
        let guardrail = config.guardrail.unwrap();
        assert_eq!(
            (guardrail.identifier.as_str(), guardrail.version.as_str()),
            ("gr-1", "2")
        );
        assert_eq!(
            (guardrail.trace, guardrail.stream_mode),
            (false, StreamProcessing::Async)
        );
        for (pairs, variable) in [
            (&[("GUARDRAIL_ID", "gr-1")][..], "GUARDRAIL_VERSION"),
            (&[("GUARDRAIL_VERSION", "1")][..], "GUARDRAIL_ID"),
            (
                &[
                    ("GUARDRAIL_ID", "g"),
                    ("GUARDRAIL_VERSION", "1"),
                    ("GUARDRAIL_STREAM_MODE", "later"),
                ][..],
                "GUARDRAIL_STREAM_MODE",
            ),
        ] {
            assert_eq!(
                InvokeConfig::from_env(&env(pairs)).unwrap_err().variable,
                variable
            );
        }
    }

    #[test]
    fn defaults_are_sensible() {
        let config = InvokeConfig::from_env(&env(&[])).unwrap();
        assert_eq!(config.cache_ttl_seconds, 3600);
        assert_eq!(config.cache_scope, CacheScope::Shared);
        assert_eq!(config.bedrock, BedrockSettings::default());
        assert_eq!(config.metrics_namespace, "Custom/Bedrock");
        assert!(config
            .allowed_models
            .contains(domain::tiers::DEFAULT_COMPLEX_MODEL));
        assert_eq!(config.routing_table, None);
        let routed = InvokeConfig::from_env(&env(&[("ROUTING_TABLE_NAME", "routes")])).unwrap();
        assert_eq!(
            routed.routing_table,
            Some(RoutingTableSettings {
                table: "routes".into(),
                cache: Duration::from_secs(30),
            })
        );
    }

    #[test]
    fn with_tenant_keys_every_model_a_key_may_use_needs_a_price() {
        let keyed = [
            ("CACHE_TABLE_NAME", "cache"),
            ("TENANT_KEYS_TABLE_NAME", "keys"),
            ("SPEND_TABLE_NAME", "spend"),
        ];
        let unpriced = "mistral.mistral-large-2407-v1:0";
        let allowed = format!("jp.anthropic.claude-3-haiku-20240307-v1:0,{unpriced}");
        let mut vars = keyed.to_vec();
        vars.push(("ALLOWED_MODELS", &allowed));
        let error = InvokeConfig::from_env(&Env::from_pairs(vars.clone())).unwrap_err();
        assert_eq!(error.variable, "MODEL_PRICES");
        assert!(error.message.contains(unpriced), "{error}");

        let priced = format!("{unpriced}=0.002/0.006");
        vars.push(("MODEL_PRICES", &priced));
        assert!(InvokeConfig::from_env(&Env::from_pairs(vars)).is_ok());
        // Without keys no budget counts the cost: the model is served, its cost reported as 0.
        assert!(InvokeConfig::from_env(&Env::from_pairs([
            ("CACHE_TABLE_NAME", "cache"),
            ("ALLOWED_MODELS", unpriced),
        ]))
        .is_ok());
    }

    #[test]
    fn every_invalid_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("CACHE_TTL_SECONDS", "0"),
            ("CACHE_TTL_SECONDS", "an hour"),
            ("CACHE_MAX_TTL_SECONDS", "10"),
            ("CACHE_SCOPE", "tenant"),
            ("COMPLEXITY_SIMPLE_MAX_WORDS", "0"),
            ("COMPLEXITY_MODERATE_MAX_WORDS", "10"),
            ("PROVISIONED_THROUGHPUT", "model-without-arn"),
            ("ROUTING_POLICY", "random"),
            ("BEDROCK_CONNECT_TIMEOUT_MS", "0"),
            ("BEDROCK_MAX_ATTEMPTS", "-1"),
            ("BEDROCK_RETRY_MODE", "legacy"),
            ("MODEL_PRICES", "m=1"),
            ("MAX_BODY_BYTES", "0"),
            ("MEMORY_CACHE_ENTRIES", "many"),
            ("MEMORY_CACHE_TTL_SECONDS", "0"),
            ("CACHE_TIMEOUT_MS", "0"),
            ("BEDROCK_OPERATION_TIMEOUT_MS", "soon"),
            ("SHARED_CACHE_ALLOW_REFRESH", "yes"),
            ("SHARED_CACHE_ALLOW_TTL", "1"),
            ("CACHE_MAX_TOKENS_ANSWERS", "sometimes"),
            ("CACHE_SAMPLED_REQUESTS", "never"),
            ("CACHE_LEASE_MS", "-5"),
            ("CACHE_LEASE_WAIT_MS", "long"),
            ("CACHE_LEASE_POLL_MS", "0"),
            ("BEDROCK_PROVISIONED_TIMEOUT_MS", "0"),
            ("CUSTOM_MODELS", "bot=not-an-arn"),
            ("RESPONSE_MODE", "chunked"),
            ("RUNTIME_API_NODELAY", "on"),
            ("ROUTING_TABLE_CACHE_SECONDS", "half a minute"),
            (
                "CUSTOM_MODELS",
                "us.anthropic.claude-haiku-4-5-20251001-v1:0=arn:aws:bedrock:us-east-1:1:provisioned-model/x",
            ),
        ];
        for (name, value) in cases {
            let err = InvokeConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(&err.variable, name, "{name}={value}: {err}");
        }
        let err = InvokeConfig::from_env(&env(&[
            ("BEDROCK_OPERATION_TIMEOUT_MS", "5000"),
            ("BEDROCK_PROVISIONED_TIMEOUT_MS", "5000"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "BEDROCK_PROVISIONED_TIMEOUT_MS");
        let err = InvokeConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(err.variable, "CACHE_TABLE_NAME");
        // Keys without a spend table: the missing one is named.
        let err = InvokeConfig::from_env(&env(&[("TENANT_KEYS_TABLE_NAME", "keys")])).unwrap_err();
        assert_eq!(err.variable, "SPEND_TABLE_NAME");
        for (name, value) in [
            ("TENANT_KEY_CACHE_SECONDS", "a minute"),
            ("SPEND_CACHE_SECONDS", "-1"),
            ("CONCURRENCY_LEASE_SECONDS", "15m"),
            ("LIMITER_FAIL_OPEN_SECONDS", "-5"),
            ("RESERVE_MAX_TOKENS", "4k"),
            ("BUDGET_RESERVATION_SECONDS", "soon"),
        ] {
            let err = InvokeConfig::from_env(&env(&[
                ("TENANT_KEYS_TABLE_NAME", "keys"),
                ("SPEND_TABLE_NAME", "spend"),
                (name, value),
            ]))
            .unwrap_err();
            assert_eq!(err.variable, name);
        }
        for (name, value) in [
            ("PROVISIONED_SCHEDULE", "9 to 5"),
            ("PROVISIONED_SCHEDULE", "Mon-Fry 09:00-17:00"),
            ("PROVISIONED_TIMEZONE", "Mars/Olympus"),
        ] {
            let err =
                InvokeConfig::from_env(&env(&[("ROUTING_POLICY", "schedule"), (name, value)]))
                    .unwrap_err();
            assert_eq!(err.variable, name);
        }
    }
}

/// Deferred requests: their table (`DEFERRED_TABLE_NAME`; unset turns the routes off) and the
/// deadlines `POST /v1/deferred` accepts, in seconds from acceptance: at least
/// `DEFERRED_MIN_DEADLINE` (`PT5M`), at most `DEFERRED_MAX_DEADLINE` (`P7D`), ISO 8601 durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredConfig {
    pub table: Option<String>,
    /// Where OpenAI batch files are kept (`FILES_BUCKET_NAME`; unset turns the files routes off).
    pub files_bucket: Option<String>,
    /// The largest file `POST /openai/v1/files` takes (`OPENAI_FILE_MAX_BYTES`, 5,000,000:
    /// under Lambda's 6 MB request payload).
    pub max_file_bytes: usize,
    /// The most requests one batch file may hold (`OPENAI_BATCH_MAX_REQUESTS`, 5,000).
    pub max_batch_requests: usize,
    pub min_seconds: i64,
    pub max_seconds: i64,
}

impl DeferredConfig {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let min_seconds = shared::deferred::iso_seconds(env, "DEFERRED_MIN_DEADLINE", 300)?;
        let max_seconds = shared::deferred::iso_seconds(env, "DEFERRED_MAX_DEADLINE", 7 * 86_400)?;
        if max_seconds < min_seconds {
            return Err(ConfigError::new(
                "DEFERRED_MAX_DEADLINE",
                format!("{max_seconds} s is less than DEFERRED_MIN_DEADLINE ({min_seconds} s)"),
            ));
        }
        Ok(Self {
            table: env.get("DEFERRED_TABLE_NAME").map(str::to_owned),
            files_bucket: env.get("FILES_BUCKET_NAME").map(str::to_owned),
            max_file_bytes: env.parse_or("OPENAI_FILE_MAX_BYTES", 5_000_000usize)?,
            max_batch_requests: env.parse_or("OPENAI_BATCH_MAX_REQUESTS", 5_000usize)?,
            min_seconds,
            max_seconds,
        })
    }
}
