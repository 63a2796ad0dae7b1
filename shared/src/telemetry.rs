//! Structured JSON logs through `tracing`, one object a line, as CloudWatch Logs indexes them.

use tracing_subscriber::EnvFilter;

/// Crates that log request and response bodies (prompts, answers) or raw events (with
/// credentials headers) at debug and trace: never below info, whatever the level asked.
const BODY_LOGGING_CRATES: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "hyper",
    "hyper_util",
    "h2",
];

/// The filter directives for a level (`error`, `warn`, `info`, `debug`, `trace`, or a full
/// directive string as in `RUST_LOG`).
pub fn filter_directives(level: &str) -> String {
    let mut directives = level.trim().to_lowercase();
    if directives.is_empty() {
        directives.push_str("info");
    }
    if directives.contains("debug") || directives.contains("trace") {
        for krate in BODY_LOGGING_CRATES {
            directives.push_str(&format!(",{krate}=info"));
        }
    }
    directives
}

/// Initialises JSON logging. The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda from the
/// function's application log level), else `RUST_LOG`, else `info`.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter =
        EnvFilter::try_new(filter_directives(&level)).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_trace_never_reach_body_logging_crates() {
        assert_eq!(filter_directives(""), "info");
        assert_eq!(filter_directives("WARN"), "warn");
        let trace = filter_directives("TRACE");
        assert!(trace.starts_with("trace,"));
        for krate in ["lambda_runtime", "aws_smithy_runtime", "hyper"] {
            assert!(trace.contains(&format!("{krate}=info")), "{trace}");
        }
        assert!(EnvFilter::try_new(trace).is_ok());
        assert!(filter_directives("shared=debug").contains("aws_smithy_runtime=info"));
    }
}
