//! One command run from the command line to its output, as text or JSON.

use chrono::{DateTime, Utc};
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::month_of;

use super::*;

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
        Command::SetLimits(args) => {
            let key = set_limits(keys()?, &args).await?;
            Ok(Output {
                stdout: if json {
                    to_json(&key)?
                } else {
                    format!(
                        "key {} of tenant {}: limits {}\n",
                        key.key_id,
                        key.tenant,
                        limits_text(&key)
                    )
                },
                stderr: format!("{LIMITS_NOTE}\n"),
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
