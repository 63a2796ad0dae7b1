//! The binary's exit statuses and messages for mistakes caught before any AWS call (the
//! commands against DynamoDB are in tests/tests/tenant_keys.rs, on the local stack).
#![allow(clippy::expect_used)] // test helpers: a failure is the report

use std::process::{Command, Output};

fn tenant_keys(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenant-keys"))
        .args(args)
        .env_remove("TENANT_KEYS_TABLE_NAME")
        .env_remove("SPEND_TABLE_NAME")
        .output()
        .expect("tenant-keys runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_invalid_tenant_is_a_usage_error() {
    let output = tenant_keys(&["--keys-table", "k", "create", "--tenant", "a b"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("1 to 64 letters"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_negative_budget_is_a_usage_error() {
    let output = tenant_keys(&["set-budget", "0123456789ab", "--monthly-budget-usd", "-5"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("0 or more"), "{}", stderr(&output));
}

#[test]
fn a_missing_table_is_named_with_its_flag_and_variable() {
    let output = tenant_keys(&["list", "--keys-table", "k"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "tenant-keys: no spend table: pass --spend-table TABLE or set SPEND_TABLE_NAME\n"
    );
    let output = tenant_keys(&["revoke", "0123456789ab"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("TENANT_KEYS_TABLE_NAME"));
}

#[test]
fn help_names_every_command() {
    let output = tenant_keys(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["create", "list", "get", "revoke", "set-budget", "spend"] {
        assert!(help.contains(command), "{command} in {help}");
    }
}
