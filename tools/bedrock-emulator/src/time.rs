//! Timestamps as the control plane reads and writes them.

use chrono::{DateTime, SecondsFormat, Utc};

/// ISO-8601 with milliseconds, as the SDKs parse Bedrock's timestamps.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An ISO-8601 time or epoch seconds (possibly fractional), as the SDKs send timestamps.
pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Some(time.with_timezone(&Utc));
    }
    // Epoch seconds, possibly fractional.
    let seconds: f64 = value.parse().ok()?;
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
}
