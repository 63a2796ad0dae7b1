//! The tenant-keys tool against the local stack's tables (moto): the command line parsed and
//! run as the binary runs it, with the DynamoDB adapters on TENANT_KEYS_TABLE_NAME and
//! SPEND_TABLE_NAME (created from infra/template.yaml by the stack).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::{key_id_of, month_of, secret_sha256};
use integration_tests::{sdk_config, stack_var};
use serde_json::Value;
use shared::adapters::dynamo_tenancy::{DynamoDbSpendLedger, DynamoDbTenantKeys};
use tenant_keys::{Cli, Error, Output};

struct Stack {
    keys: DynamoDbTenantKeys,
    ledger: DynamoDbSpendLedger,
    keys_table: String,
    spend_table: String,
}

impl Stack {
    async fn new() -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
        let keys_table = stack_var("TENANT_KEYS_TABLE_NAME");
        let spend_table = stack_var("SPEND_TABLE_NAME");
        Self {
            keys: DynamoDbTenantKeys::new(dynamodb.clone(), &keys_table),
            ledger: DynamoDbSpendLedger::new(dynamodb, &spend_table),
            keys_table,
            spend_table,
        }
    }

    /// `tenant-keys ARGS` with the stack's tables, as main.rs runs it.
    async fn run(&self, args: &[&str], now: DateTime<Utc>) -> Result<Output, Error> {
        let tables = [
            "tenant-keys",
            "--keys-table",
            &self.keys_table,
            "--spend-table",
            &self.spend_table,
        ];
        let cli = Cli::try_from_args(tables.iter().chain(args)).expect("valid arguments");
        let used = cli.tables()?;
        let keys = used.keys.map(|_| &self.keys);
        let ledger = used.spend.map(|_| &self.ledger);
        tenant_keys::run(cli.command, cli.json, keys, ledger, now).await
    }

    async fn json(&self, args: &[&str], now: DateTime<Utc>) -> Value {
        let output = self
            .run(&[args, &["--json"]].concat(), now)
            .await
            .unwrap_or_else(|e| panic!("tenant-keys {args:?}: {e}"));
        serde_json::from_str(&output.stdout).expect("JSON on stdout")
    }
}

/// A tenant name no other test uses.
fn tenant(label: &str) -> String {
    format!(
        "it-{label}-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

#[tokio::test]
async fn create_list_revoke_get() {
    let stack = Stack::new().await;
    let now = Utc::now();
    let tenant = tenant("lifecycle");

    let created = stack
        .run(
            &[
                "create",
                "--tenant",
                &tenant,
                "--model",
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "--monthly-budget-usd",
                "5",
                "--description",
                "integration test",
            ],
            now,
        )
        .await
        .unwrap();
    let key = created.stdout.trim().to_owned();
    let key_id = key_id_of(&key)
        .expect("a well-formed key on stdout")
        .to_owned();
    assert!(created.stderr.contains("will not be shown again"));
    assert!(created.stderr.contains(&key_id));

    // Stored in DynamoDB as its hash, accepted as invoke-with-cache checks it.
    let stored = stack.keys.get(&key_id).await.unwrap().expect("stored");
    assert_eq!(stored.secret_sha256, secret_sha256(&key));
    assert!(stored.accepts(&key));
    assert_eq!(stored.tenant, tenant);
    assert_eq!(stored.monthly_budget_usd, Some(5.0));

    // Listed with this month's spend, never the key or its hash.
    stack
        .ledger
        .add(&tenant, &month_of(now), 0.25)
        .await
        .unwrap();
    let text = stack.run(&["list"], now).await.unwrap().stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with(&key_id))
        .unwrap_or_else(|| panic!("{key_id} in {text}"));
    for cell in [
        tenant.as_str(),
        "claude-haiku",
        "5",
        "0.25",
        "integration test",
    ] {
        assert!(line.contains(cell), "{cell} in {line}");
    }
    let listed = stack.json(&["list"], now).await;
    for output in [&text, &listed.to_string()] {
        assert!(!output.contains(&key), "{output}");
        assert!(!output.contains(&stored.secret_sha256), "{output}");
    }
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyId"] == key_id.as_str())
        .expect("the key in the JSON list");
    assert_eq!(mine["tenant"], tenant.as_str());
    assert_eq!(mine["spentUsd"], 0.25);
    assert_eq!(mine["month"], month_of(now).as_str());
    assert_eq!(mine["revokedAt"], Value::Null);
    assert!(mine.get("secretSha256").is_none());

    let revoked = stack.run(&["revoke", &key_id], now).await.unwrap();
    assert!(
        revoked.stdout.starts_with("revoked key"),
        "{}",
        revoked.stdout
    );
    assert!(revoked.stderr.contains("TENANT_KEY_CACHE_SECONDS"));

    let shown = stack.json(&["get", &key_id], now).await;
    assert_eq!(shown["revokedAt"], now.timestamp());
    assert_eq!(shown["keyId"], key_id.as_str());
    let stored = stack.keys.get(&key_id).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(now.timestamp()));
    assert!(!stored.accepts(&key));

    // Revoking again keeps the first time.
    let later = now + chrono::Duration::minutes(5);
    let again = stack.json(&["revoke", &key_id], later).await;
    assert_eq!(again["revokedAt"], now.timestamp());
}

#[tokio::test]
async fn set_budget_and_unknown_keys() {
    let stack = Stack::new().await;
    let now = Utc::now();
    let created = stack
        .json(&["create", "--tenant", &tenant("budget")], now)
        .await;
    let key_id = created["keyId"].as_str().unwrap();
    assert_eq!(created["monthlyBudgetUsd"], Value::Null);
    assert_eq!(key_id_of(created["key"].as_str().unwrap()), Some(key_id));

    let set = stack
        .run(&["set-budget", key_id, "--monthly-budget-usd", "12.5"], now)
        .await
        .unwrap();
    assert!(
        set.stdout.contains("monthly budget 12.5 USD"),
        "{}",
        set.stdout
    );
    let stored = stack.keys.get(key_id).await.unwrap().unwrap();
    assert_eq!(stored.monthly_budget_usd, Some(12.5));

    let removed = stack.json(&["set-budget", key_id, "--none"], now).await;
    assert_eq!(removed["monthlyBudgetUsd"], Value::Null);
    let stored = stack.keys.get(key_id).await.unwrap().unwrap();
    assert_eq!(stored.monthly_budget_usd, None);

    for args in [
        &["revoke", "000000000000"][..],
        &["get", "000000000000"],
        &["set-budget", "000000000000", "--none"],
    ] {
        let error = stack.run(args, now).await.unwrap_err();
        assert!(matches!(error, Error::UnknownKey(_)), "{args:?}: {error}");
    }
}

#[tokio::test]
async fn spend_of_a_tenant_by_month() {
    let stack = Stack::new().await;
    let now = Utc::now();
    let tenant = tenant("spend");
    stack
        .ledger
        .add(&tenant, &month_of(now), 0.000082)
        .await
        .unwrap();
    stack
        .ledger
        .add(&tenant, &month_of(now), 1.5)
        .await
        .unwrap();
    stack.ledger.add(&tenant, "2020-01", 7.0).await.unwrap();

    let this_month = stack
        .run(&["spend", "--tenant", &tenant], now)
        .await
        .unwrap();
    assert_eq!(
        this_month.stdout,
        format!("tenant {tenant} spent 1.500082 USD in {}\n", month_of(now))
    );
    let january = stack
        .json(&["spend", "--tenant", &tenant, "--month", "2020-01"], now)
        .await;
    assert_eq!(
        january,
        serde_json::json!({"tenant": tenant, "month": "2020-01", "spentUsd": 7.0})
    );
    let never = stack
        .json(&["spend", "--tenant", &tenant, "--month", "2019-12"], now)
        .await;
    assert_eq!(never["spentUsd"], 0.0);
}
