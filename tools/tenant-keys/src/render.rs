//! Text and JSON output: times, dollars and the key listing's table.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use super::*;

pub(crate) fn stdout(text: String) -> Output {
    Output {
        stdout: text,
        stderr: String::new(),
    }
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<String, Error> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Epoch seconds as RFC 3339 in UTC.
pub(crate) fn time(epoch_seconds: i64) -> String {
    DateTime::from_timestamp(epoch_seconds, 0).map_or_else(
        || epoch_seconds.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// Dollars to the nano-dollar the ledger keeps, without trailing zeros.
pub(crate) fn usd_text(usd: f64) -> String {
    let text = format!("{usd:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// A key's limits, `rpm=60,tpm=100000,concurrent=2`, or `none`.
pub(crate) fn limits_text(key: &KeyView) -> String {
    let limits: Vec<String> = [
        ("rpm", key.requests_per_minute),
        ("tpm", key.tokens_per_minute),
        ("concurrent", key.concurrent_requests),
    ]
    .iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
    .collect();
    if limits.is_empty() {
        "none".to_owned()
    } else {
        limits.join(",")
    }
}

pub(crate) fn listing_table(listings: &[Listing], month: &str) -> String {
    let mut rows = vec![vec![
        "KEY ID".to_owned(),
        "TENANT".to_owned(),
        "MODELS".to_owned(),
        "BUDGET USD".to_owned(),
        format!("SPENT USD {month}"),
        "LIMITS".to_owned(),
        "CREATED".to_owned(),
        "REVOKED".to_owned(),
        "DESCRIPTION".to_owned(),
    ]];
    for listing in listings {
        let key = &listing.key;
        rows.push(vec![
            key.key_id.clone(),
            key.tenant.clone(),
            if key.models.is_empty() {
                "all".to_owned()
            } else {
                key.models.join(",")
            },
            key.monthly_budget_usd
                .map_or_else(|| "none".to_owned(), usd_text),
            usd_text(listing.spent_usd),
            limits_text(key),
            time(key.created_at),
            key.revoked_at.map_or_else(|| "-".to_owned(), time),
            key.description.clone().unwrap_or_default(),
        ]);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}
