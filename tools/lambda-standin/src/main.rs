//! `lambda-standin`: starts one function binary under the Runtime API stand-in, hands it each
//! event given, prints each outcome as one JSON line and exits non-zero when the function
//! failed to start, reported an error, or answered an HTTP event with a 5xx.
//!
//! ```text
//! lambda-standin --binary .aws-sam/build/CapacityFunction/bootstrap --name capacity \
//!     --env-json capacity-env.json --event scheduled.json
//! ```
//!
//! The environment is only what `--env-json` (an object of strings) and `--env NAME=VALUE`
//! give, plus Lambda's reserved variables: as on Lambda, nothing leaks from the caller's.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lambda_standin::{Behaviour, OutcomeKind, RuntimeApi};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Run a Lambda function's binary under a local Runtime API stand-in")]
struct Args {
    /// The function's executable (a `bootstrap` or a cargo-built binary).
    #[arg(long)]
    binary: PathBuf,
    /// The function name (AWS_LAMBDA_FUNCTION_NAME).
    #[arg(long)]
    name: String,
    /// A JSON object of environment variables.
    #[arg(long)]
    env_json: Vec<PathBuf>,
    /// One more variable, NAME=VALUE (after --env-json; repeatable).
    #[arg(long)]
    env: Vec<String>,
    /// An event file, handed out in the order given (repeatable).
    #[arg(long, required = true)]
    event: Vec<PathBuf>,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

fn environment(args: &Args) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for path in &args.env_json {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--env-json {}: {e}", path.display()))?;
        let object: serde_json::Map<String, Value> = serde_json::from_str(&text)
            .map_err(|e| format!("--env-json {}: not a JSON object: {e}", path.display()))?;
        for (name, value) in object {
            let value = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            env.push((name, value));
        }
    }
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--env {pair}: expected NAME=VALUE"))?;
        env.push((name.to_owned(), value.to_owned()));
    }
    Ok(env)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let env = match environment(&args) {
        Ok(env) => env,
        Err(message) => {
            eprintln!("lambda-standin: {message}");
            return ExitCode::from(2);
        }
    };
    let api = match RuntimeApi::start(Behaviour::default()).await {
        Ok(api) => api,
        Err(error) => {
            eprintln!("lambda-standin: {error}");
            return ExitCode::FAILURE;
        }
    };
    let function = match api.spawn(&args.binary, &args.name, env) {
        Ok(function) => function,
        Err(error) => {
            eprintln!("lambda-standin: {}: {error}", args.binary.display());
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for path in &args.event {
        let event = match std::fs::read(path) {
            Ok(event) => event,
            Err(error) => {
                eprintln!("lambda-standin: --event {}: {error}", path.display());
                return ExitCode::from(2);
            }
        };
        let within = Duration::from_secs(args.timeout);
        match api.invoke(&function, event, within).await {
            Ok(outcome) => {
                let http_status = outcome.http().ok().map(|answer| answer.status);
                let answered = outcome.kind == OutcomeKind::Response
                    && http_status.is_none_or(|status| status < 500);
                ok &= answered;
                println!(
                    "{}",
                    json!({
                        "function": args.name,
                        "event": path.display().to_string(),
                        "answered": answered,
                        "kind": format!("{:?}", outcome.kind),
                        "httpStatus": http_status,
                        "ms": outcome.duration().as_secs_f64() * 1e3,
                        "body": String::from_utf8_lossy(&outcome.body).chars().take(400).collect::<String>(),
                    })
                );
            }
            Err(error) => {
                eprintln!("lambda-standin: {}: {error}", args.name);
                return ExitCode::FAILURE;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "lambda-standin: {} did not answer every event; its log:\n{}",
            args.name,
            function.log()
        );
        ExitCode::FAILURE
    }
}
