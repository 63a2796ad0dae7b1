use chrono::{DateTime, Utc};
use clap::Parser;
use domain::ports::{SpendLedger, TenantKeyStore};

use chrono::TimeZone;
use domain::tenancy::{key_id_of, secret_sha256};
use shared::adapters::memory_tenancy::InMemoryTenancy;

use super::*;

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
        requests_per_minute: None,
        tokens_per_minute: None,
        concurrent_requests: None,
        service_tiers: vec![],
        default_service_tier: None,
        guardrail: None,
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
    let no_slot = CreateArgs {
        tenant: "acme".into(),
        concurrent_requests: Some(0),
        ..bad_tenant.clone()
    };
    let error = create(&store, &no_slot, now()).await.err().unwrap();
    assert!(matches!(error, Error::Limits(_)), "{error}");
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

#[tokio::test]
async fn limits_are_given_on_create_changed_one_by_one_and_listed() {
    let store = InMemoryTenancy::default();
    let key = create_key(
        &store,
        &[
            "--tenant",
            "acme",
            "--requests-per-minute",
            "60",
            "--concurrent-requests",
            "2",
        ],
    )
    .await;
    let key_id = key_id_of(&key).unwrap();
    let stored = store.get(key_id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.requests_per_minute,
            stored.tokens_per_minute,
            stored.concurrent_requests
        ),
        (Some(60), None, Some(2))
    );

    let output = run_args(
        &store,
        &[
            "set-limits",
            key_id,
            "--tokens-per-minute",
            "10000",
            "--requests-per-minute",
            "none",
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        output.stdout,
        format!("key {key_id} of tenant acme: limits tpm=10000,concurrent=2\n")
    );
    assert!(output.stderr.contains("TENANT_KEY_CACHE_SECONDS"));
    let stored = store.get(key_id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.requests_per_minute,
            stored.tokens_per_minute,
            stored.concurrent_requests
        ),
        (None, Some(10000), Some(2))
    );

    let listed = run_args(&store, &["list"]).await.unwrap().stdout;
    assert!(listed.contains("LIMITS"), "{listed}");
    assert!(listed.contains("tpm=10000,concurrent=2"), "{listed}");
    let json = run_args(&store, &["get", key_id, "--json"])
        .await
        .unwrap()
        .stdout;
    let view: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(view["tokensPerMinute"], 10000);
    assert_eq!(view["requestsPerMinute"], serde_json::Value::Null);
}

#[test]
fn limits_are_whole_numbers_of_one_or_more_and_set_limits_needs_one() {
    for bad in ["0", "-1", "1.5", "many"] {
        let error = parse(&["create", "--tenant", "a", "--concurrent-requests", bad]).unwrap_err();
        assert!(
            error.to_string().contains("a limit is a whole number"),
            "{error}"
        );
    }
    assert_eq!(
        parse(&["set-limits", "k"]).unwrap_err().kind(),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        cli_command(&["set-limits", "k", "--concurrent-requests", "none"]),
        Command::SetLimits(SetLimitsArgs {
            key_id: "k".into(),
            requests_per_minute: None,
            tokens_per_minute: None,
            concurrent_requests: Some(LimitValue(None)),
        })
    );
}

#[tokio::test]
async fn a_key_can_carry_its_service_tiers_and_guardrail() {
    use domain::ports::TenantKeyStore;
    use domain::routing::ServiceTier;
    let store = InMemoryTenancy::default();
    let output = run_args(
        &store,
        &[
            "create",
            "--tenant",
            "acme",
            "--service-tier",
            "flex",
            "--service-tier",
            "default",
            "--default-service-tier",
            "flex",
            "--guardrail",
            "gr1abc:DRAFT",
            "--json",
        ],
    )
    .await
    .unwrap();
    let created: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let key_id = created["keyId"].as_str().unwrap();
    let stored = store.get(key_id).await.unwrap().unwrap();
    assert_eq!(
        stored.levers.service_tiers,
        Some(vec![ServiceTier::Flex, ServiceTier::Default])
    );
    assert_eq!(stored.levers.default_service_tier, Some(ServiceTier::Flex));
    assert_eq!(
        (
            stored.levers.guardrail_id.as_deref(),
            stored.levers.guardrail_version.as_deref()
        ),
        (Some("gr1abc"), Some("DRAFT"))
    );
    // A default the key may not use, a guardrail without a version, an unknown tier.
    for args in [
        &[
            "create",
            "--tenant",
            "acme",
            "--service-tier",
            "flex",
            "--default-service-tier",
            "priority",
        ][..],
        &["create", "--tenant", "acme", "--guardrail", "gr1abc"][..],
        &["create", "--tenant", "acme", "--service-tier", "reserved"][..],
    ] {
        let refused = match parse(args) {
            Err(_) => true,
            Ok(_) => run_args(&store, args).await.is_err(),
        };
        assert!(refused, "{args:?}");
    }
}
