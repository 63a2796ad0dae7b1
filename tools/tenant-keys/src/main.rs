//! `tenant-keys`: parses the command line, builds the DynamoDB adapters from the environment
//! and prints what the command says (see the library for the commands themselves).

use std::io::Write;
use std::process::ExitCode;

use aws_config::BehaviorVersion;
use clap::Parser;
use shared::adapters::dynamo_tenancy::{DynamoDbSpendLedger, DynamoDbTenantKeys};
use tenant_keys::{Cli, Error, Output};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            let printed = stdout
                .write_all(output.stdout.as_bytes())
                .and_then(|()| stdout.flush());
            // The notes go out even when stdout is closed (`| head`): they say what happened.
            let _ = std::io::stderr().write_all(output.stderr.as_bytes());
            if printed.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("tenant-keys: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> Result<Output, Error> {
    // Before any AWS configuration is loaded: a missing table is a mistake on the command line.
    let tables = cli.tables()?;
    // Region, credentials and endpoint (AWS_ENDPOINT_URL_DYNAMODB on the local stack) as any
    // AWS SDK reads them.
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let keys = tables
        .keys
        .map(|table| DynamoDbTenantKeys::new(dynamodb.clone(), table));
    let ledger = tables
        .spend
        .map(|table| DynamoDbSpendLedger::new(dynamodb.clone(), table));
    tenant_keys::run(
        cli.command,
        cli.json,
        keys.as_ref(),
        ledger.as_ref(),
        chrono::Utc::now(),
    )
    .await
}
