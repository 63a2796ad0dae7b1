//! `tenant-keys`: what operators do with invoke-with-cache's tenant keys — create one (shown
//! once), list them with their tenant's spend this month, revoke one, change a budget, read a
//! tenant's spend.
//!
//! The commands are functions generic over the ports ([`TenantKeyStore`], [`SpendLedger`]), so
//! they are tested in memory; `main.rs` only parses, builds the DynamoDB adapters and prints
//! the [`Output`]. Nothing here ever prints a key's hash, and a key only when it is created.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand};
use domain::error::TenancyError;
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::{check_tenant_name, issue_key, month_of, TenantKey};
use serde::Serialize;

/// Attempts at a fresh key id when a new one is taken (48 random bits: practically never).
const CREATE_ATTEMPTS: usize = 3;

/// Said after a revocation: instances remember a key lookup for a while.
const REVOKE_NOTE: &str = "running invoke-with-cache instances stop accepting it within \
     TENANT_KEY_CACHE_SECONDS (default 60) seconds, as they remember a key that long";

/// Said after a budget change, for the same reason.
const BUDGET_NOTE: &str = "running invoke-with-cache instances apply it within \
     TENANT_KEY_CACHE_SECONDS (default 60) seconds, as they remember a key that long";

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

/// Why a command failed. Each is printed on stderr and ends the tool with a non-zero status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no key with id {0:?} (`tenant-keys list` shows the key ids)")]
    UnknownKey(String),
    #[error("{0}")]
    InvalidTenant(String),
    #[error("a monthly budget is an amount of US dollars, 0 or more, not {0:?}")]
    InvalidBudget(String),
    #[error("a month is YYYY-MM, such as 2026-11, not {0:?}")]
    InvalidMonth(String),
    #[error("a model id cannot be empty")]
    EmptyModel,
    #[error("no {what} table: pass {flag} TABLE or set {env}")]
    MissingTable {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error("cannot make a key: {0}")]
    Issue(String),
    #[error("{0}")]
    Store(TenancyError),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<TenancyError> for Error {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::NoSuchKey(id) => Self::UnknownKey(id),
            other => Self::Store(other),
        }
    }
}

const KEYS_TABLE: Error = Error::MissingTable {
    what: "tenant keys",
    flag: "--keys-table",
    env: "TENANT_KEYS_TABLE_NAME",
};
const SPEND_TABLE: Error = Error::MissingTable {
    what: "spend",
    flag: "--spend-table",
    env: "SPEND_TABLE_NAME",
};

fn parse_tenant(value: &str) -> Result<String, String> {
    check_tenant_name(value)?;
    Ok(value.to_owned())
}

fn parse_model(value: &str) -> Result<String, String> {
    check_model(value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

fn parse_budget(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .map_err(|_| Error::InvalidBudget(value.to_owned()))
        .and_then(check_budget)
        .map_err(|e| e.to_string())
}

fn parse_month(value: &str) -> Result<String, String> {
    check_month(value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

fn check_tenant(name: &str) -> Result<(), Error> {
    check_tenant_name(name).map_err(Error::InvalidTenant)
}

fn check_model(model: &str) -> Result<(), Error> {
    if model.trim().is_empty() {
        Err(Error::EmptyModel)
    } else {
        Ok(())
    }
}

/// A budget is a finite amount, 0 or more (0 stops the tenant's keys that carry it).
pub fn check_budget(usd: f64) -> Result<f64, Error> {
    if usd.is_finite() && usd >= 0.0 {
        Ok(usd)
    } else {
        Err(Error::InvalidBudget(usd.to_string()))
    }
}

/// `YYYY-MM` with a month from 01 to 12, as [`month_of`] writes it.
pub fn check_month(month: &str) -> Result<(), Error> {
    let valid = match month.as_bytes() {
        [y1, y2, y3, y4, b'-', m1, m2] => {
            [y1, y2, y3, y4, m1, m2].iter().all(|b| b.is_ascii_digit())
                && matches!((m1, m2), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidMonth(month.to_owned()))
    }
}

/// The tables a command reads or writes, each `None` when the command does not use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub keys: Option<String>,
    pub spend: Option<String>,
}

impl Command {
    fn uses_keys(&self) -> bool {
        !matches!(self, Self::Spend(_))
    }

    fn uses_spend(&self) -> bool {
        matches!(self, Self::List | Self::Get { .. } | Self::Spend(_))
    }
}

impl Cli {
    /// Parses a command line, the program's name first, as the binary does (for callers
    /// without `clap::Parser` in scope).
    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(args)
    }

    /// The tables the command needs, or the error naming the one that is not given.
    pub fn tables(&self) -> Result<Tables, Error> {
        let given = |table: &Option<String>| table.clone().filter(|t| !t.trim().is_empty());
        let keys = match (self.command.uses_keys(), given(&self.keys_table)) {
            (true, None) => return Err(KEYS_TABLE),
            (used, table) => table.filter(|_| used),
        };
        let spend = match (self.command.uses_spend(), given(&self.spend_table)) {
            (true, None) => return Err(SPEND_TABLE),
            (used, table) => table.filter(|_| used),
        };
        Ok(Tables { keys, spend })
    }
}

/// A key as operators see it: everything stored but its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub key_id: String,
    pub tenant: String,
    /// Empty: every model the deployment allows.
    pub models: Vec<String>,
    pub monthly_budget_usd: Option<f64>,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub revoked_at: Option<i64>,
    pub description: Option<String>,
}

impl From<&TenantKey> for KeyView {
    fn from(key: &TenantKey) -> Self {
        Self {
            key_id: key.key_id.clone(),
            tenant: key.tenant.clone(),
            models: key.models.clone(),
            monthly_budget_usd: key.monthly_budget_usd,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            description: key.description.clone(),
        }
    }
}

/// A key with what its tenant spent in `month`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    #[serde(flatten)]
    pub key: KeyView,
    pub month: String,
    pub spent_usd: f64,
}

/// A new key: the key itself, which is never shown again, and what was stored of it.
/// (No `Debug`, so that the key does not end up in a log by accident.)
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub key: String,
    #[serde(flatten)]
    pub view: KeyView,
}

/// What a tenant spent in a month.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spend {
    pub tenant: String,
    pub month: String,
    pub spent_usd: f64,
}

/// What a command prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Makes a key (see [`issue_key`]) and stores its record; the key is in the answer only.
pub async fn create<K: TenantKeyStore>(
    keys: &K,
    args: &CreateArgs,
    now: DateTime<Utc>,
) -> Result<Created, Error> {
    check_tenant(&args.tenant)?;
    for model in &args.models {
        check_model(model)?;
    }
    if let Some(budget) = args.monthly_budget_usd {
        check_budget(budget)?;
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let issued = issue_key(
            &args.tenant,
            args.models.clone(),
            args.monthly_budget_usd,
            args.description.clone(),
            now,
        )
        .map_err(Error::Issue)?;
        match keys.create(&issued.record).await {
            Ok(()) => {
                return Ok(Created {
                    view: KeyView::from(&issued.record),
                    key: issued.key,
                })
            }
            Err(TenancyError::KeyExists(_)) if attempts < CREATE_ATTEMPTS => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Every key, oldest first, with its tenant's spend in the month of `now`.
pub async fn list<K: TenantKeyStore, L: SpendLedger>(
    keys: &K,
    ledger: &L,
    now: DateTime<Utc>,
) -> Result<Vec<Listing>, Error> {
    let month = month_of(now);
    let mut spent: HashMap<String, f64> = HashMap::new();
    let mut listings = Vec::new();
    for key in keys.list().await? {
        let spent_usd = match spent.get(&key.tenant) {
            Some(usd) => *usd,
            None => {
                let usd = ledger.spent(&key.tenant, &month).await?;
                spent.insert(key.tenant.clone(), usd);
                usd
            }
        };
        listings.push(Listing {
            key: KeyView::from(&key),
            month: month.clone(),
            spent_usd,
        });
    }
    Ok(listings)
}

/// One key, as [`list`] shows it.
pub async fn get<K: TenantKeyStore, L: SpendLedger>(
    keys: &K,
    ledger: &L,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<Listing, Error> {
    let key = find(keys, key_id).await?;
    let month = month_of(now);
    let spent_usd = ledger.spent(&key.tenant, &month).await?;
    Ok(Listing {
        key: KeyView::from(&key),
        month,
        spent_usd,
    })
}

async fn find<K: TenantKeyStore>(keys: &K, key_id: &str) -> Result<TenantKey, Error> {
    keys.get(key_id)
        .await?
        .ok_or_else(|| Error::UnknownKey(key_id.to_owned()))
}

/// Revokes the key at `now`; a key revoked before keeps its first revocation time.
pub async fn revoke<K: TenantKeyStore>(
    keys: &K,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<KeyView, Error> {
    keys.revoke(key_id, now.timestamp()).await?;
    Ok(KeyView::from(&find(keys, key_id).await?))
}

/// Sets (`Some`) or removes (`None`) the key's monthly budget.
pub async fn set_budget<K: TenantKeyStore>(
    keys: &K,
    key_id: &str,
    monthly_budget_usd: Option<f64>,
) -> Result<KeyView, Error> {
    if let Some(budget) = monthly_budget_usd {
        check_budget(budget)?;
    }
    keys.set_budget(key_id, monthly_budget_usd).await?;
    Ok(KeyView::from(&find(keys, key_id).await?))
}

/// What `tenant` spent in `month` (the month of `now` when `None`).
pub async fn spend<L: SpendLedger>(
    ledger: &L,
    tenant: &str,
    month: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Spend, Error> {
    check_tenant(tenant)?;
    let month = match month {
        Some(month) => {
            check_month(month)?;
            month.to_owned()
        }
        None => month_of(now),
    };
    let spent_usd = ledger.spent(tenant, &month).await?;
    Ok(Spend {
        tenant: tenant.to_owned(),
        month,
        spent_usd,
    })
}

/// Runs a command against the stores it uses (`None`: the table was not given) and says what
/// to print: the result on stdout (text, or JSON with `json`), notes on stderr.
pub async fn run<K: TenantKeyStore, L: SpendLedger>(
    command: Command,
    json: bool,
    keys: Option<&K>,
    ledger: Option<&L>,
    now: DateTime<Utc>,
) -> Result<Output, Error> {
    let keys = || keys.ok_or(KEYS_TABLE);
    let ledger = || ledger.ok_or(SPEND_TABLE);
    match command {
        Command::Create(args) => {
            let created = create(keys()?, &args, now).await?;
            let stdout = if json {
                to_json(&created)?
            } else {
                format!("{}\n", created.key)
            };
            Ok(Output {
                stdout,
                stderr: format!(
                    "created key {} for tenant {}: store the key now, it will not be shown again (only its SHA-256 is kept)\n",
                    created.view.key_id, created.view.tenant
                ),
            })
        }
        Command::List => {
            let listings = list(keys()?, ledger()?, now).await?;
            if json {
                return Ok(stdout(to_json(&listings)?));
            }
            if listings.is_empty() {
                return Ok(Output {
                    stdout: String::new(),
                    stderr: "no tenant keys\n".into(),
                });
            }
            Ok(stdout(listing_table(&listings, &month_of(now))))
        }
        Command::Get { key_id } => {
            let listing = get(keys()?, ledger()?, &key_id, now).await?;
            if json {
                return Ok(stdout(to_json(&listing)?));
            }
            Ok(stdout(listing_table(
                std::slice::from_ref(&listing),
                &listing.month,
            )))
        }
        Command::Revoke { key_id } => {
            let key = revoke(keys()?, &key_id, now).await?;
            let at = key.revoked_at.map_or_else(|| "-".to_owned(), time);
            let text = if key.revoked_at == Some(now.timestamp()) {
                format!(
                    "revoked key {} of tenant {} at {at}\n",
                    key.key_id, key.tenant
                )
            } else {
                format!(
                    "key {} of tenant {} was revoked already, at {at}\n",
                    key.key_id, key.tenant
                )
            };
            Ok(Output {
                stdout: if json { to_json(&key)? } else { text },
                stderr: format!("{REVOKE_NOTE}\n"),
            })
        }
        Command::SetBudget(args) => {
            let budget = if args.none {
                None
            } else {
                args.monthly_budget_usd
            };
            let key = set_budget(keys()?, &args.key_id, budget).await?;
            let text = match key.monthly_budget_usd {
                Some(usd) => format!(
                    "key {} of tenant {}: monthly budget {} USD\n",
                    key.key_id,
                    key.tenant,
                    usd_text(usd)
                ),
                None => format!(
                    "key {} of tenant {}: no monthly budget\n",
                    key.key_id, key.tenant
                ),
            };
            Ok(Output {
                stdout: if json { to_json(&key)? } else { text },
                stderr: format!("{BUDGET_NOTE}\n"),
            })
        }
        Command::Spend(args) => {
            let spend = spend(ledger()?, &args.tenant, args.month.as_deref(), now).await?;
            if json {
                return Ok(stdout(to_json(&spend)?));
            }
            Ok(stdout(format!(
                "tenant {} spent {} USD in {}\n",
                spend.tenant,
                usd_text(spend.spent_usd),
                spend.month
            )))
        }
    }
}

fn stdout(text: String) -> Output {
    Output {
        stdout: text,
        stderr: String::new(),
    }
}

fn to_json(value: &impl Serialize) -> Result<String, Error> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Epoch seconds as RFC 3339 in UTC.
fn time(epoch_seconds: i64) -> String {
    DateTime::from_timestamp(epoch_seconds, 0).map_or_else(
        || epoch_seconds.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// Dollars to the nano-dollar the ledger keeps, without trailing zeros.
fn usd_text(usd: f64) -> String {
    let text = format!("{usd:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn listing_table(listings: &[Listing], month: &str) -> String {
    let mut rows = vec![vec![
        "KEY ID".to_owned(),
        "TENANT".to_owned(),
        "MODELS".to_owned(),
        "BUDGET USD".to_owned(),
        format!("SPENT USD {month}"),
        "CREATED".to_owned(),
        "REVOKED".to_owned(),
        "DESCRIPTION".to_owned(),
    ]];
    for listing in listings {
        let key = &listing.key;
        rows.push(vec![
            key.key_id.clone(),
            key.tenant.clone(),
            if key.models.is_empty() {
                "all".to_owned()
            } else {
                key.models.join(",")
            },
            key.monthly_budget_usd
                .map_or_else(|| "none".to_owned(), usd_text),
            usd_text(listing.spent_usd),
            time(key.created_at),
            key.revoked_at.map_or_else(|| "-".to_owned(), time),
            key.description.clone().unwrap_or_default(),
        ]);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use domain::tenancy::{key_id_of, secret_sha256};
    use shared::adapters::memory_tenancy::InMemoryTenancy;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(
            [
                "tenant-keys",
                "--keys-table",
                "keys",
                "--spend-table",
                "spend",
            ]
            .iter()
            .chain(args),
        )
    }

    async fn run_args(store: &InMemoryTenancy, args: &[&str]) -> Result<Output, Error> {
        let cli = parse(args).unwrap();
        run(cli.command, cli.json, Some(store), Some(store), now()).await
    }

    /// Creates a key through the command line and returns the key printed.
    async fn create_key(store: &InMemoryTenancy, args: &[&str]) -> String {
        let output = run_args(store, &[&["create"], args].concat())
            .await
            .unwrap();
        output.stdout.trim().to_owned()
    }

    #[tokio::test]
    async fn create_prints_the_key_once_and_stores_only_its_hash() {
        let store = InMemoryTenancy::default();
        let output = run_args(
            &store,
            &[
                "create",
                "--tenant",
                "acme",
                "--model",
                "m1",
                "--model",
                "m2",
                "--monthly-budget-usd",
                "25.5",
                "--description",
                "CI key",
            ],
        )
        .await
        .unwrap();
        let key = output.stdout.trim();
        let key_id = key_id_of(key).expect("a well-formed key");
        assert_eq!(output.stdout, format!("{key}\n"));
        assert!(output.stderr.contains(key_id), "{}", output.stderr);
        assert!(output.stderr.contains("will not be shown again"));
        assert!(!output.stderr.contains(key));

        let stored = store.get(key_id).await.unwrap().unwrap();
        assert_eq!(stored.secret_sha256, secret_sha256(key));
        assert!(stored.accepts(key));
        assert_eq!(stored.tenant, "acme");
        assert_eq!(stored.models, ["m1", "m2"]);
        assert_eq!(stored.monthly_budget_usd, Some(25.5));
        assert_eq!(stored.description.as_deref(), Some("CI key"));
        assert_eq!(stored.created_at, now().timestamp());
        assert_eq!(stored.revoked_at, None);
    }

    #[tokio::test]
    async fn create_as_json_names_key_id_and_tenant() {
        let store = InMemoryTenancy::default();
        let output = run_args(&store, &["create", "--tenant", "acme", "--json"])
            .await
            .unwrap();
        let created: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
        let key = created["key"].as_str().unwrap();
        assert_eq!(created["keyId"].as_str(), key_id_of(key));
        assert_eq!(created["tenant"], "acme");
        assert_eq!(created["models"], serde_json::json!([]));
        assert_eq!(created["monthlyBudgetUsd"], serde_json::Value::Null);
        assert_eq!(created["createdAt"], now().timestamp());
        assert!(created.get("secretSha256").is_none());
        assert!(output.stderr.contains("will not be shown again"));
    }

    #[tokio::test]
    async fn list_shows_keys_with_this_months_spend_but_never_a_key_or_hash() {
        let store = InMemoryTenancy::default();
        let acme = create_key(&store, &["--tenant", "acme", "--monthly-budget-usd", "10"]).await;
        let other = create_key(&store, &["--tenant", "beta", "--model", "m1"]).await;
        store.add("acme", "2026-11", 1.25).await.unwrap();
        store.add("acme", "2026-11", 0.000082).await.unwrap();
        store.add("acme", "2026-10", 100.0).await.unwrap();

        let text = run_args(&store, &["list"]).await.unwrap().stdout;
        let json = run_args(&store, &["list", "--json"]).await.unwrap().stdout;
        for (key, output) in [
            (&acme, &text),
            (&other, &text),
            (&acme, &json),
            (&other, &json),
        ] {
            assert!(!output.contains(key.as_str()), "{output}");
            assert!(!output.contains(&secret_sha256(key)), "{output}");
            assert!(output.contains(key_id_of(key).unwrap()), "{output}");
        }
        assert!(!json.contains("secretSha256"));

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("KEY ID"), "{text}");
        assert!(lines[0].contains("SPENT USD 2026-11"), "{text}");
        let acme_line = lines
            .iter()
            .find(|l| l.contains(key_id_of(&acme).unwrap()))
            .unwrap();
        for cell in ["acme", "all", "10", "1.250082", "2026-11-30T12:00:00Z"] {
            assert!(acme_line.contains(cell), "{cell} in {acme_line}");
        }
        let beta_line = lines
            .iter()
            .find(|l| l.contains(key_id_of(&other).unwrap()))
            .unwrap();
        for cell in ["beta", "m1", "none"] {
            assert!(beta_line.contains(cell), "{cell} in {beta_line}");
        }

        let listings: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let acme_listing = listings.iter().find(|l| l["tenant"] == "acme").unwrap();
        assert_eq!(acme_listing["month"], "2026-11");
        assert_eq!(acme_listing["spentUsd"], 1.25 + 0.000082);
        assert_eq!(acme_listing["monthlyBudgetUsd"], 10.0);
        assert_eq!(acme_listing["revokedAt"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn an_empty_list_says_so() {
        let store = InMemoryTenancy::default();
        let output = run_args(&store, &["list"]).await.unwrap();
        assert_eq!(output.stdout, "");
        assert_eq!(output.stderr, "no tenant keys\n");
        let output = run_args(&store, &["list", "--json"]).await.unwrap();
        assert_eq!(output.stdout.trim(), "[]");
    }

    #[tokio::test]
    async fn revoke_marks_the_key_and_the_first_revocation_stays() {
        let store = InMemoryTenancy::default();
        let key = create_key(&store, &["--tenant", "acme"]).await;
        let key_id = key_id_of(&key).unwrap();

        let output = run_args(&store, &["revoke", key_id]).await.unwrap();
        assert_eq!(
            output.stdout,
            format!("revoked key {key_id} of tenant acme at 2026-11-30T12:00:00Z\n")
        );
        assert!(output
            .stderr
            .contains("TENANT_KEY_CACHE_SECONDS (default 60)"));
        let stored = store.get(key_id).await.unwrap().unwrap();
        assert_eq!(stored.revoked_at, Some(now().timestamp()));
        assert!(!stored.accepts(&key));

        let later = now() + chrono::Duration::hours(1);
        let again = revoke(&store, key_id, later).await.unwrap();
        assert_eq!(again.revoked_at, Some(now().timestamp()));
        let cli = parse(&["revoke", key_id, "--json"]).unwrap();
        let output = run(cli.command, cli.json, Some(&store), Some(&store), later)
            .await
            .unwrap();
        let view: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
        assert_eq!(view["revokedAt"], now().timestamp());

        let text = run(
            cli_command(&["revoke", key_id]),
            false,
            Some(&store),
            Some(&store),
            later,
        )
        .await
        .unwrap();
        assert!(
            text.stdout.contains("was revoked already"),
            "{}",
            text.stdout
        );

        let shown = run_args(&store, &["get", key_id]).await.unwrap().stdout;
        assert!(
            shown.contains("2026-11-30T12:00:00Z  2026-11-30T12:00:00Z"),
            "{shown}"
        );
    }

    fn cli_command(args: &[&str]) -> Command {
        parse(args).unwrap().command
    }

    #[tokio::test]
    async fn unknown_key_ids_are_errors() {
        let store = InMemoryTenancy::default();
        for args in [
            &["revoke", "0123456789ab"][..],
            &["get", "0123456789ab"],
            &["set-budget", "0123456789ab", "--none"],
            &["set-budget", "0123456789ab", "--monthly-budget-usd", "3"],
        ] {
            let error = run_args(&store, args).await.unwrap_err();
            assert!(
                matches!(&error, Error::UnknownKey(id) if id == "0123456789ab"),
                "{args:?}: {error}"
            );
            assert!(error.to_string().contains("tenant-keys list"), "{error}");
        }
    }

    #[tokio::test]
    async fn set_budget_sets_and_removes() {
        let store = InMemoryTenancy::default();
        let key = create_key(&store, &["--tenant", "acme"]).await;
        let key_id = key_id_of(&key).unwrap();

        let output = run_args(
            &store,
            &["set-budget", key_id, "--monthly-budget-usd", "12.5"],
        )
        .await
        .unwrap();
        assert_eq!(
            output.stdout,
            format!("key {key_id} of tenant acme: monthly budget 12.5 USD\n")
        );
        assert!(output.stderr.contains("TENANT_KEY_CACHE_SECONDS"));
        let stored = store.get(key_id).await.unwrap().unwrap();
        assert_eq!(stored.monthly_budget_usd, Some(12.5));

        let output = run_args(&store, &["set-budget", key_id, "--none", "--json"])
            .await
            .unwrap();
        let view: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
        assert_eq!(view["monthlyBudgetUsd"], serde_json::Value::Null);
        assert_eq!(
            store.get(key_id).await.unwrap().unwrap().monthly_budget_usd,
            None
        );

        // Zero is a budget (it stops the key); below zero is not.
        run_args(&store, &["set-budget", key_id, "--monthly-budget-usd", "0"])
            .await
            .unwrap();
        assert_eq!(
            store.get(key_id).await.unwrap().unwrap().monthly_budget_usd,
            Some(0.0)
        );
        let error = set_budget(&store, key_id, Some(-1.0)).await.unwrap_err();
        assert!(matches!(error, Error::InvalidBudget(_)), "{error}");
        let error = set_budget(&store, key_id, Some(f64::NAN))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidBudget(_)), "{error}");
        assert_eq!(
            store.get(key_id).await.unwrap().unwrap().monthly_budget_usd,
            Some(0.0)
        );
    }

    #[tokio::test]
    async fn spend_reads_a_month_this_one_by_default() {
        let store = InMemoryTenancy::default();
        store.add("acme", "2026-11", 0.5).await.unwrap();
        store.add("acme", "2026-10", 2.0).await.unwrap();

        let output = run_args(&store, &["spend", "--tenant", "acme"])
            .await
            .unwrap();
        assert_eq!(output.stdout, "tenant acme spent 0.5 USD in 2026-11\n");
        let output = run_args(
            &store,
            &["spend", "--tenant", "acme", "--month", "2026-10", "--json"],
        )
        .await
        .unwrap();
        let spend: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
        assert_eq!(
            spend,
            serde_json::json!({"tenant": "acme", "month": "2026-10", "spentUsd": 2.0})
        );
        let output = run_args(&store, &["spend", "--tenant", "nobody"])
            .await
            .unwrap();
        assert_eq!(output.stdout, "tenant nobody spent 0 USD in 2026-11\n");
    }

    #[tokio::test]
    async fn the_functions_check_what_the_parser_checks() {
        let store = InMemoryTenancy::default();
        let bad_tenant = CreateArgs {
            tenant: "a b".into(),
            models: vec![],
            monthly_budget_usd: None,
            description: None,
        };
        let error = create(&store, &bad_tenant, now()).await.err().unwrap();
        assert!(matches!(error, Error::InvalidTenant(_)), "{error}");
        let negative = CreateArgs {
            tenant: "acme".into(),
            monthly_budget_usd: Some(-5.0),
            ..bad_tenant.clone()
        };
        let error = create(&store, &negative, now()).await.err().unwrap();
        assert!(matches!(error, Error::InvalidBudget(_)), "{error}");
        let empty_model = CreateArgs {
            tenant: "acme".into(),
            models: vec![" ".into()],
            ..bad_tenant
        };
        let error = create(&store, &empty_model, now()).await.err().unwrap();
        assert!(matches!(error, Error::EmptyModel), "{error}");
        assert!(store.list().await.unwrap().is_empty());

        let error = spend(&store, "a:b", None, now()).await.unwrap_err();
        assert!(matches!(error, Error::InvalidTenant(_)), "{error}");
        let error = spend(&store, "acme", Some("2026-13"), now())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidMonth(_)), "{error}");
    }

    #[test]
    fn the_parser_refuses_bad_values_with_the_reason() {
        let refused = |args: &[&str], reason: &str| {
            let error = parse(args).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{error}"
            );
            assert!(error.to_string().contains(reason), "{reason} in {error}");
        };
        refused(&["create", "--tenant", "a b"], "1 to 64 letters");
        refused(&["create", "--tenant", ""], "1 to 64 letters");
        refused(
            &["create", "--tenant", "acme", "--monthly-budget-usd", "-5"],
            "0 or more",
        );
        refused(
            &["create", "--tenant", "acme", "--monthly-budget-usd", "inf"],
            "0 or more",
        );
        refused(
            &["create", "--tenant", "acme", "--monthly-budget-usd", "ten"],
            "0 or more",
        );
        refused(&["create", "--tenant", "acme", "--model", ""], "empty");
        refused(
            &["set-budget", "k", "--monthly-budget-usd", "-0.01"],
            "0 or more",
        );
        refused(
            &["spend", "--tenant", "acme", "--month", "2026-1"],
            "YYYY-MM",
        );
        refused(
            &["spend", "--tenant", "acme", "--month", "2026-00"],
            "YYYY-MM",
        );
        refused(
            &["spend", "--tenant", "acme", "--month", "26-11-01"],
            "YYYY-MM",
        );
    }

    #[test]
    fn set_budget_takes_exactly_one_of_a_budget_and_none() {
        assert_eq!(
            parse(&["set-budget", "k"]).unwrap_err().kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["set-budget", "k", "--none", "--monthly-budget-usd", "1"])
                .unwrap_err()
                .kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
        assert_eq!(
            cli_command(&["set-budget", "k", "--none"]),
            Command::SetBudget(SetBudgetArgs {
                key_id: "k".into(),
                monthly_budget_usd: None,
                none: true
            })
        );
    }

    #[test]
    fn months_are_checked() {
        for good in ["2026-01", "2026-09", "2026-10", "2026-12", "1999-11"] {
            assert!(check_month(good).is_ok(), "{good}");
        }
        for bad in [
            "", "2026-13", "2026-00", "2026-1", "2026/11", "20261-1", "2026-11 ",
        ] {
            assert!(check_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_command_needs_only_its_tables() {
        let cli = |args: &[&str]| Cli::try_parse_from(["tenant-keys"].iter().chain(args)).unwrap();
        let spend_only = cli(&["--spend-table", "s", "spend", "--tenant", "acme"]);
        assert_eq!(
            spend_only.tables().unwrap(),
            Tables {
                keys: None,
                spend: Some("s".into())
            }
        );
        let create = cli(&[
            "create",
            "--tenant",
            "acme",
            "--keys-table",
            "k",
            "--spend-table",
            "s",
        ]);
        assert_eq!(
            create.tables().unwrap(),
            Tables {
                keys: Some("k".into()),
                spend: None
            }
        );
        let error = cli(&["list", "--keys-table", "k"]).tables().unwrap_err();
        assert_eq!(
            error.to_string(),
            "no spend table: pass --spend-table TABLE or set SPEND_TABLE_NAME"
        );
        let error = cli(&["revoke", "x", "--keys-table", " "])
            .tables()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no tenant keys table: pass --keys-table TABLE or set TENANT_KEYS_TABLE_NAME"
        );
    }

    #[tokio::test]
    async fn a_command_without_its_store_says_which_table_is_missing() {
        let store = InMemoryTenancy::default();
        let error = run(
            cli_command(&["list"]),
            false,
            Some(&store),
            None::<&InMemoryTenancy>,
            now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(
            error,
            Error::MissingTable {
                flag: "--spend-table",
                ..
            }
        ));
        let output = run(
            cli_command(&["spend", "--tenant", "acme"]),
            false,
            None::<&InMemoryTenancy>,
            Some(&store),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(output.stdout, "tenant acme spent 0 USD in 2026-11\n");
    }

    #[test]
    fn dollars_are_printed_plainly() {
        assert_eq!(usd_text(10.0), "10");
        assert_eq!(usd_text(0.0), "0");
        assert_eq!(usd_text(0.000082), "0.000082");
        assert_eq!(usd_text(0.1 + 0.2), "0.3");
        assert_eq!(usd_text(12.5), "12.5");
    }
}
