//! The command line: commands, their arguments and the tables they need.

use clap::{ArgGroup, Args, Parser, Subcommand};
use domain::routing::ServiceTier;

use super::*;

/// Manage invoke-with-cache's tenant keys (stored as SHA-256 hashes in DynamoDB) and read
/// tenants' spend. AWS region, credentials and endpoint come from the environment as for any
/// AWS SDK (`source .local/env` for the local stack).
#[derive(Debug, Parser)]
#[command(name = "tenant-keys", version)]
pub struct Cli {
    /// DynamoDB table of tenant keys (the stack's TenantKeysTable).
    #[arg(
        long,
        env = "TENANT_KEYS_TABLE_NAME",
        value_name = "TABLE",
        global = true
    )]
    pub keys_table: Option<String>,

    /// DynamoDB table of spend per tenant and month (the stack's SpendTable).
    #[arg(long, env = "SPEND_TABLE_NAME", value_name = "TABLE", global = true)]
    pub spend_table: Option<String>,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Create a key for a tenant and print it: this is the only time it is shown.
    Create(CreateArgs),
    /// List the keys (never the keys themselves) with their tenant's spend this month.
    List,
    /// Show one key, as `list` does.
    Get {
        /// The key's id (`list` shows them; it is the part after `bgw_` in the key).
        key_id: String,
    },
    /// Revoke a key: invoke-with-cache refuses it from then on.
    Revoke {
        /// The key's id.
        key_id: String,
    },
    /// Set or remove a key's monthly budget (checked against its tenant's spend).
    SetBudget(SetBudgetArgs),
    /// Set or remove a key's limits: requests and tokens per minute, concurrent requests. The
    /// limits not named are left as they are.
    SetLimits(SetLimitsArgs),
    /// Show what a tenant spent in a month.
    Spend(SpendArgs),
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct CreateArgs {
    /// The tenant: its cache namespace and spend (1 to 64 letters, digits, '-', '_', '.').
    #[arg(long, value_name = "NAME", value_parser = parse_tenant)]
    pub tenant: String,

    /// A model the key may name; repeat for more. None: every model the deployment allows.
    #[arg(long = "model", value_name = "ID", value_parser = parse_model)]
    pub models: Vec<String>,

    /// Monthly budget in US dollars, against the tenant's spend in the calendar month (UTC).
    #[arg(
        long,
        value_name = "USD",
        value_parser = parse_budget,
        allow_negative_numbers = true
    )]
    pub monthly_budget_usd: Option<f64>,

    /// What the key is for (shown by `list`).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// Requests the key may make per minute (all instances together; cache hits count).
    #[arg(long, value_name = "N", value_parser = parse_limit, allow_negative_numbers = true)]
    pub requests_per_minute: Option<u32>,

    /// Tokens (input + output) the key may use per minute; a request reserves its prompt's
    /// bytes and its output cap at admission.
    #[arg(long, value_name = "N", value_parser = parse_limit, allow_negative_numbers = true)]
    pub tokens_per_minute: Option<u32>,

    /// Requests the key may have in flight at once, streams included.
    #[arg(long, value_name = "N", value_parser = parse_limit, allow_negative_numbers = true)]
    pub concurrent_requests: Option<u32>,

    /// A Bedrock service tier the key's requests may ask for (priority, default, flex); repeat
    /// for more. None: every tier.
    #[arg(long = "service-tier", value_name = "TIER", value_parser = parse_service_tier)]
    pub service_tiers: Vec<ServiceTier>,

    /// The tier of the key's requests that name none (before the deployment's SERVICE_TIER).
    #[arg(long, value_name = "TIER", value_parser = parse_service_tier)]
    pub default_service_tier: Option<ServiceTier>,

    /// A Bedrock guardrail applied to the key's requests instead of the deployment's, as
    /// ID:VERSION (e.g. gr1abc:DRAFT or gr1abc:2).
    #[arg(long, value_name = "ID:VERSION", value_parser = parse_guardrail)]
    pub guardrail: Option<(String, String)>,
}

/// A limit to set (`N`, 1 or more) or to remove (`none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitValue(pub Option<u32>);

#[derive(Debug, Clone, PartialEq, Args)]
#[command(group(
    ArgGroup::new("limits")
        .args(["requests_per_minute", "tokens_per_minute", "concurrent_requests"])
        .required(true)
        .multiple(true)
))]
pub struct SetLimitsArgs {
    /// The key's id.
    pub key_id: String,

    /// Requests per minute: a number, or `none` to remove the limit.
    #[arg(
        long,
        value_name = "N|none",
        value_parser = parse_limit_value,
        allow_negative_numbers = true
    )]
    pub requests_per_minute: Option<LimitValue>,

    /// Tokens per minute: a number, or `none` to remove the limit.
    #[arg(
        long,
        value_name = "N|none",
        value_parser = parse_limit_value,
        allow_negative_numbers = true
    )]
    pub tokens_per_minute: Option<LimitValue>,

    /// Concurrent requests: a number, or `none` to remove the limit.
    #[arg(
        long,
        value_name = "N|none",
        value_parser = parse_limit_value,
        allow_negative_numbers = true
    )]
    pub concurrent_requests: Option<LimitValue>,
}

#[derive(Debug, Clone, PartialEq, Args)]
#[command(group(
    ArgGroup::new("budget")
        .args(["monthly_budget_usd", "none"])
        .required(true)
        .multiple(false)
))]
pub struct SetBudgetArgs {
    /// The key's id.
    pub key_id: String,

    /// The new monthly budget in US dollars.
    #[arg(
        long,
        value_name = "USD",
        value_parser = parse_budget,
        allow_negative_numbers = true
    )]
    pub monthly_budget_usd: Option<f64>,

    /// Remove the budget: the key is then limited by nothing but its models.
    #[arg(long)]
    pub none: bool,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct SpendArgs {
    /// The tenant.
    #[arg(long, value_name = "NAME", value_parser = parse_tenant)]
    pub tenant: String,

    /// The month, YYYY-MM (UTC); the current one when absent.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    pub month: Option<String>,
}
