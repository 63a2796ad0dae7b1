//! Batch inference and job-event settings (global only; their fields sit at the top level of
//! `/_emulator/config`), and their partial updates.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::patch::set_or_clear;

/// The largest `batchRecordMs`: a minute per record.
pub const MAX_BATCH_RECORD_MS: u64 = 60_000;

/// Batch inference (`bedrock` control plane) and job-event settings; global only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSettings {
    /// How long a job stays in each state (and each quarter of InProgress), in milliseconds.
    pub batch_step_ms: u64,
    /// Extra milliseconds a job spends InProgress per input record (each slice waits its
    /// `batchStepMs` plus this much per record it holds); 0..=[`MAX_BATCH_RECORD_MS`].
    pub batch_record_ms: u64,
    /// Fewer records than this fail the job in Validating.
    pub batch_min_records: u64,
    /// More records than this fail the job in Validating.
    pub batch_max_records: u64,
    /// Share of records (0..=1) answered with an error line, evenly spread.
    pub batch_record_error_rate: f64,
    /// Jobs of one model that may be Submitted, Validating, Scheduled, InProgress or Stopping.
    pub batch_concurrent_job_quota: u32,
    /// Where each job-state event is POSTed (JSON); `None`: nowhere.
    pub event_target: Option<String>,
    /// `false`: events are neither recorded nor delivered.
    pub events_enabled: bool,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            batch_step_ms: 1000,
            batch_record_ms: 0,
            batch_min_records: 100,
            batch_max_records: 50_000,
            batch_record_error_rate: 0.0,
            batch_concurrent_job_quota: 20,
            event_target: None,
            events_enabled: true,
        }
    }
}

/// A partial update of [`BatchSettings`] (the batch part of `POST /_emulator/config`): absent
/// fields keep their value, `"eventTarget": null` clears the target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPatch {
    pub batch_step_ms: Option<u64>,
    #[serde(default, deserialize_with = "record_ms")]
    pub batch_record_ms: Option<u64>,
    pub batch_min_records: Option<u64>,
    pub batch_max_records: Option<u64>,
    pub batch_record_error_rate: Option<f64>,
    pub batch_concurrent_job_quota: Option<u32>,
    #[serde(default, deserialize_with = "set_or_clear")]
    pub event_target: Option<Option<String>>,
    pub events_enabled: Option<bool>,
}

impl BatchSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_record_ms > MAX_BATCH_RECORD_MS {
            return Err(format!(
                "batchRecordMs must be an integer between 0 and {MAX_BATCH_RECORD_MS}, got {}",
                self.batch_record_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.batch_record_error_rate) {
            return Err(format!(
                "batchRecordErrorRate must be between 0 and 1, got {}",
                self.batch_record_error_rate
            ));
        }
        if self.batch_min_records > self.batch_max_records {
            return Err(format!(
                "batchMinRecords ({}) must not exceed batchMaxRecords ({})",
                self.batch_min_records, self.batch_max_records
            ));
        }
        if let Some(target) = &self.event_target {
            let url = reqwest::Url::parse(target)
                .map_err(|e| format!("eventTarget must be an http URL, got {target:?}: {e}"))?;
            if url.scheme() != "http" {
                return Err(format!(
                    "eventTarget must be an http:// URL, got {target:?}"
                ));
            }
        }
        Ok(())
    }

    /// These settings with a patch applied, or why the result is refused.
    pub fn patched(&self, patch: &BatchPatch) -> Result<BatchSettings, String> {
        let mut next = self.clone();
        if let Some(v) = patch.batch_step_ms {
            next.batch_step_ms = v;
        }
        if let Some(v) = patch.batch_record_ms {
            next.batch_record_ms = v;
        }
        if let Some(v) = patch.batch_min_records {
            next.batch_min_records = v;
        }
        if let Some(v) = patch.batch_max_records {
            next.batch_max_records = v;
        }
        if let Some(v) = patch.batch_record_error_rate {
            next.batch_record_error_rate = v;
        }
        if let Some(v) = patch.batch_concurrent_job_quota {
            next.batch_concurrent_job_quota = v;
        }
        if let Some(v) = &patch.event_target {
            next.event_target.clone_from(v);
        }
        if let Some(v) = patch.events_enabled {
            next.events_enabled = v;
        }
        next.validate()?;
        Ok(next)
    }
}

/// Reads `batchRecordMs` of a config body (`null`, like an absent field, keeps the value): a
/// value that is not a non-negative integer is refused with a message naming the field (its
/// bounds are checked by [`BatchSettings::validate`]). Use with
/// `#[serde(default, deserialize_with = "record_ms")]`.
pub fn record_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Millis;

    impl Visitor<'_> for Millis {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "batchRecordMs as an integer between 0 and {MAX_BATCH_RECORD_MS}"
            )
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
    }

    struct RecordMs(u64);

    impl<'de> Deserialize<'de> for RecordMs {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_u64(Millis).map(RecordMs)
        }
    }

    Option::<RecordMs>::deserialize(deserializer).map(|ms| ms.map(|RecordMs(v)| v))
}
