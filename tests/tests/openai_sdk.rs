//! The real `openai` Python package (tests/openai_sdk.py) against invoke-with-cache served
//! over HTTP on the private stack: moto's key, spend and cache tables, the emulator's Bedrock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::ports::TenantKeyStore;
use domain::tenancy::issue_key;
use integration_tests::invoke::Harness;
use integration_tests::{stack_var, Emulator};
use shared::adapters::dynamo_tenancy::DynamoDbTenantKeys;

async fn new_key(keys: &DynamoDbTenantKeys, tenant: &str, budget: Option<f64>) -> String {
    let issued = issue_key(tenant, vec![], budget, None, chrono::Utc::now()).unwrap();
    keys.create(&issued.record).await.unwrap();
    issued.key
}

#[tokio::test]
async fn the_openai_package_works_unchanged() {
    Emulator::reset().await;
    let keys_table = stack_var("TENANT_KEYS_TABLE_NAME");
    let spend_table = stack_var("SPEND_TABLE_NAME");
    let harness = Harness::new(&[
        ("TENANT_KEYS_TABLE_NAME", keys_table.as_str()),
        ("SPEND_TABLE_NAME", spend_table.as_str()),
    ])
    .await;
    let keys = DynamoDbTenantKeys::new(
        aws_sdk_dynamodb::Client::new(&integration_tests::sdk_config().await),
        &keys_table,
    );
    let tenant = format!(
        "sdk-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let key = new_key(&keys, &tenant, None).await;
    // Room for the reservation of one short answer (5 output tokens), none for a request
    // without max_tokens (4,096 output tokens reserved, $0.005 at Claude 3 Haiku's price).
    let budget_key = new_key(&keys, &format!("{tenant}-budget"), Some(0.001)).await;
    let address = harness.serve().await;

    let output = tokio::process::Command::new(".venv/bin/python")
        .arg("tests/openai_sdk.py")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("OPENAI_BASE_URL", format!("http://{address}/openai/v1"))
        .env("OPENAI_API_KEY", &key)
        .env("BUDGET_KEY", &budget_key)
        .env("EMULATOR_URL", stack_var("EMULATOR_URL"))
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "openai_sdk.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("openai sdk: 0 failed"), "{stdout}");
}
