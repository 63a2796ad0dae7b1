//! The command line: commands, their arguments and the tables they need.

use clap::{ArgGroup, Args, Parser, Subcommand};

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
