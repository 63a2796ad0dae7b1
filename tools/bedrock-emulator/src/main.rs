use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;

use bedrock_emulator::batch::Identity;
use bedrock_emulator::fault::{Fault, FaultRates};
use bedrock_emulator::state::{BatchSettings, Behaviour};
use bedrock_emulator::{router, Catalog, EmulatorState, RuntimeConfig};
use clap::Parser;

/// Local Amazon Bedrock runtime emulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EMULATOR_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to listen on (0 picks a free one; the chosen address is printed).
    #[arg(long, env = "EMULATOR_PORT", default_value_t = 4010)]
    port: u16,
    /// Time to first token, in milliseconds.
    #[arg(long, env = "EMULATOR_TTFT_MS", default_value_t = 0)]
    ttft_ms: u64,
    /// Time per output token, in milliseconds.
    #[arg(long, env = "EMULATOR_MS_PER_TOKEN", default_value_t = 0)]
    ms_per_token: u64,
    /// Share of calls answered with ThrottlingException (0..=1).
    #[arg(long, env = "EMULATOR_THROTTLE_RATE", default_value_t = 0.0)]
    throttle_rate: f64,
    /// Share of calls answered with ModelNotReadyException (0..=1).
    #[arg(long, env = "EMULATOR_MODEL_NOT_READY_RATE", default_value_t = 0.0)]
    model_not_ready_rate: f64,
    /// Share of calls answered with ServiceUnavailableException (0..=1).
    #[arg(long, env = "EMULATOR_SERVICE_UNAVAILABLE_RATE", default_value_t = 0.0)]
    service_unavailable_rate: f64,
    /// Share of calls answered with AccessDeniedException (0..=1).
    #[arg(long, env = "EMULATOR_ACCESS_DENIED_RATE", default_value_t = 0.0)]
    access_denied_rate: f64,
    /// Share of calls answered with ResourceNotFoundException (0..=1).
    #[arg(long, env = "EMULATOR_RESOURCE_NOT_FOUND_RATE", default_value_t = 0.0)]
    resource_not_found_rate: f64,
    /// Share of calls answered with ModelTimeoutException (0..=1).
    #[arg(long, env = "EMULATOR_MODEL_TIMEOUT_RATE", default_value_t = 0.0)]
    model_timeout_rate: f64,
    /// Share of calls answered with ModelErrorException (0..=1).
    #[arg(long, env = "EMULATOR_MODEL_ERROR_RATE", default_value_t = 0.0)]
    model_error_rate: f64,
    /// Share of calls answered with InternalServerException (0..=1).
    #[arg(long, env = "EMULATOR_INTERNAL_SERVER_RATE", default_value_t = 0.0)]
    internal_server_rate: f64,
    /// Batch inference: milliseconds a job spends in each state (and each quarter of InProgress).
    #[arg(long, env = "EMULATOR_BATCH_STEP_MS", default_value_t = 1000)]
    batch_step_ms: u64,
    /// Batch inference: extra milliseconds a job spends InProgress per input record (0..=60000).
    #[arg(long, env = "EMULATOR_BATCH_RECORD_MS", default_value_t = 0)]
    batch_record_ms: u64,
    /// Batch inference: fewer input records fail the job.
    #[arg(long, env = "EMULATOR_BATCH_MIN_RECORDS", default_value_t = 100)]
    batch_min_records: u64,
    /// Batch inference: more input records fail the job.
    #[arg(long, env = "EMULATOR_BATCH_MAX_RECORDS", default_value_t = 50_000)]
    batch_max_records: u64,
    /// Batch inference: share of records (0..=1) answered with an error line.
    #[arg(long, env = "EMULATOR_BATCH_RECORD_ERROR_RATE", default_value_t = 0.0)]
    batch_record_error_rate: f64,
    /// Batch inference: jobs of one model that may be active at once.
    #[arg(
        long,
        env = "EMULATOR_BATCH_CONCURRENT_JOB_QUOTA",
        default_value_t = 20
    )]
    batch_concurrent_job_quota: u32,
    /// URL each job-state event is POSTed to (JSON); none by default.
    #[arg(long, env = "EMULATOR_EVENT_TARGET")]
    event_target: Option<String>,
    /// Account id of job ARNs and events.
    #[arg(long, env = "EMULATOR_ACCOUNT_ID", default_value = "123456789012")]
    account_id: String,
    /// Region of job ARNs and events (the S3 client reads AWS_REGION itself).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Extra model ids to accept, comma-separated.
    #[arg(long, env = "EMULATOR_EXTRA_MODELS", value_delimiter = ',')]
    extra_models: Vec<String>,
}

impl Args {
    /// The fault rates given at start, each checked to lie in 0..=1.
    fn fault_rates(&self) -> Result<FaultRates, String> {
        let given = [
            (Fault::Throttling, self.throttle_rate),
            (Fault::ModelNotReady, self.model_not_ready_rate),
            (Fault::ServiceUnavailable, self.service_unavailable_rate),
            (Fault::AccessDenied, self.access_denied_rate),
            (Fault::ResourceNotFound, self.resource_not_found_rate),
            (Fault::ModelTimeout, self.model_timeout_rate),
            (Fault::ModelError, self.model_error_rate),
            (Fault::InternalServer, self.internal_server_rate),
        ];
        let mut rates = FaultRates::default();
        for (fault, rate) in given {
            if !(0.0..=1.0).contains(&rate) {
                let name = fault.spec().rate_field;
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
            rates.set(fault, rate);
        }
        Ok(rates)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().with_target(false).init();
    let args = Args::parse();
    let initial = RuntimeConfig {
        global: Behaviour {
            ttft_ms: args.ttft_ms,
            ms_per_token: args.ms_per_token,
            fault_rates: args.fault_rates()?,
            ..Behaviour::default()
        },
        batch: BatchSettings {
            batch_step_ms: args.batch_step_ms,
            batch_record_ms: args.batch_record_ms,
            batch_min_records: args.batch_min_records,
            batch_max_records: args.batch_max_records,
            batch_record_error_rate: args.batch_record_error_rate,
            batch_concurrent_job_quota: args.batch_concurrent_job_quota,
            event_target: args.event_target.clone().filter(|t| !t.is_empty()),
            events_enabled: true,
        },
        models: Default::default(),
        prompt_cache_now: None,
        provisioned: Default::default(),
        guardrails: Default::default(),
        prompt_routers: Default::default(),
    };
    initial.batch.validate()?;
    let identity = Identity {
        account: args.account_id.clone(),
        region: args.region.clone(),
    };
    let state = Arc::new(
        EmulatorState::new(Catalog::new(args.extra_models), initial).with_identity(identity),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
    tracing::info!(address = %listener.local_addr()?, "bedrock emulator listening");
    // Small frames (event-stream deltas) go out at once, not after Nagle's delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
