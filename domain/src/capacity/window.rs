//! Weekly windows in a time zone, in the schedule policy's syntax: when one opens and closes
//! around a moment.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::*;
use crate::routing::Schedule;

/// The start of the minute `at` is in.
pub(crate) fn minute_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp() - at.timestamp().rem_euclid(60), 0).unwrap_or(at)
}

/// One opening of a window. `None` ends: the window did not open (or close) within a week and a
/// day of the moment looked at, i.e. it never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub opens: Option<DateTime<Utc>>,
    pub closes: Option<DateTime<Utc>>,
}

/// A weekly window in a time zone, in the schedule policy's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityWindow {
    /// As written, for display.
    pub spec: String,
    pub schedule: Schedule,
    pub zone: Tz,
}

impl CapacityWindow {
    pub fn parse(window: &str, time_zone: &str) -> Result<Self, String> {
        let schedule = window.parse::<Schedule>().map_err(|e| {
            format!("window {window:?}: {e}; expected [DAYS ]HH:MM-HH:MM, e.g. Mon-Fri 09:00-18:00")
        })?;
        let zone = time_zone.parse::<Tz>().map_err(|e| {
            format!("timeZone {time_zone:?}: {e}; use an IANA name such as Asia/Tokyo")
        })?;
        Ok(Self {
            spec: window.to_owned(),
            schedule,
            zone,
        })
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.schedule.contains(at, self.zone)
    }

    /// The occurrence `at` is inside, or the one opening within `lead_minutes` of it: when the
    /// capacity should exist. Windows open and close on whole minutes (UTC offsets are whole
    /// minutes), so looking at each minute finds every opening, across daylight-saving changes
    /// too.
    pub fn due(&self, at: DateTime<Utc>, lead_minutes: u32) -> Option<Occurrence> {
        let start = minute_floor(at);
        (0..=i64::from(lead_minutes))
            .map(|k| start + Duration::minutes(k))
            .find(|m| self.contains(*m))
            .map(|m| self.occurrence_at(m))
    }

    /// The occurrence `at` is inside, else the next one (within a week and a day).
    pub fn next(&self, at: DateTime<Utc>) -> Option<Occurrence> {
        let start = minute_floor(at);
        (0..SCAN_MINUTES)
            .map(|k| start + Duration::minutes(k))
            .find(|m| self.contains(*m))
            .map(|m| self.occurrence_at(m))
    }

    /// The occurrence around a minute inside the window.
    fn occurrence_at(&self, inside: DateTime<Utc>) -> Occurrence {
        let step = Duration::minutes(1);
        let mut opens = inside;
        let mut n = 0;
        while n < SCAN_MINUTES && self.contains(opens - step) {
            opens -= step;
            n += 1;
        }
        let opens = (n < SCAN_MINUTES).then_some(opens);
        let mut closes = inside + step;
        n = 0;
        while n < SCAN_MINUTES && self.contains(closes) {
            closes += step;
            n += 1;
        }
        let closes = (n < SCAN_MINUTES).then_some(closes);
        Occurrence { opens, closes }
    }
}
