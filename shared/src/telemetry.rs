//! Structured JSON logs through `tracing`, one object a line, as CloudWatch Logs indexes them.

use tracing_subscriber::EnvFilter;

/// Initialises JSON logging. The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda from the
/// function's application log level), else `RUST_LOG`, else `info`.
pub fn init_tracing() {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .and_then(|level| EnvFilter::try_new(level.to_lowercase()).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
}
