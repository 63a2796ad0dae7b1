//! Timestamps as the control plane reads and writes them, and the present as the services see
//! it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// The present: `fixed` when the admin API set one (tests move it instead of sleeping), else
/// the system clock.
pub fn now_or_system(fixed: Option<DateTime<Utc>>) -> DateTime<Utc> {
    fixed.unwrap_or_else(Utc::now)
}

/// ISO-8601 with milliseconds, as the SDKs parse Bedrock's timestamps.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An optional time as [`timestamp`] writes it, or `null` (`#[serde(serialize_with = ...)]`).
pub fn serialize_optional_time<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    time.map(timestamp).serialize(serializer)
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
