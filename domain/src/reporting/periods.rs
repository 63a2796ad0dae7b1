//! The five-minute periods to publish, from the watermark of what was published, with a
//! bounded catch-up after a gap, and the state kept between runs.

use super::*;

/// The start of the period holding `t` (epoch seconds).
pub fn period_start(t: i64) -> i64 {
    t.div_euclid(PERIOD_SECONDS) * PERIOD_SECONDS
}

/// Which periods a run publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// A period is read only this long after its end, once the per-request metrics of its
    /// last requests have reached CloudWatch (Embedded Metric Format arrives through the logs).
    pub lag_seconds: i64,
    /// Most periods one run publishes, oldest first; the rest wait for the next run.
    pub max_periods_per_run: usize,
    /// Missed periods further back than this many are skipped (and logged), not published.
    pub max_catch_up_periods: i64,
}

/// The periods a run publishes (their starts, oldest first) and how many missed ones it skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodPlan {
    pub periods: Vec<i64>,
    pub skipped: i64,
}

/// The finished periods after the watermark (`published_through`, the end of the last period
/// published), within the catch-up bounds. Without a watermark (the first run), the last
/// finished period alone.
pub fn plan_periods(now: i64, published_through: Option<i64>, catch_up: &CatchUp) -> PeriodPlan {
    let last_end = period_start(now - catch_up.lag_seconds);
    let oldest = last_end - catch_up.max_catch_up_periods.max(1) * PERIOD_SECONDS;
    let from = published_through
        .map(period_start)
        .unwrap_or(last_end - PERIOD_SECONDS);
    let skipped = if from < oldest {
        (oldest - from) / PERIOD_SECONDS
    } else {
        0
    };
    let from = from.max(oldest);
    let periods = (0..)
        .map(|i| from + i * PERIOD_SECONDS)
        .take_while(|start| start + PERIOD_SECONDS <= last_end)
        .take(catch_up.max_periods_per_run.max(1))
        .collect();
    PeriodPlan { periods, skipped }
}

/// The period being published when a run stopped partway, and the digests of its requests
/// CloudWatch accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub period_start: i64,
    pub sent: Vec<String>,
}

/// Who publishes now, until when (epoch ms): runs that overlap (a late schedule, a retry)
/// leave the periods to the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishLease {
    pub owner: String,
    pub until_ms: i64,
}

/// The publisher's watermark, kept in one item written conditionally on its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportState {
    /// The end of the last period published in full (epoch seconds); `None` before the first.
    pub published_through: Option<i64>,
    pub partial: Option<Partial>,
    pub lease: Option<PublishLease>,
    /// 0 when no item exists; every write stores one more than it read.
    pub version: u64,
}

impl ReportState {
    /// Whether another run holds a live lease.
    pub fn leased_to_other(&self, owner: &str, now_ms: i64) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.owner != owner && l.until_ms > now_ms)
    }

    /// Whether the request (by digest) of the period was accepted by an earlier, interrupted run.
    pub fn already_sent(&self, period_start: i64, digest: &str) -> bool {
        self.partial
            .as_ref()
            .is_some_and(|p| p.period_start == period_start && p.sent.iter().any(|d| d == digest))
    }
}

// ---------------------------------------------------------------------------------------------
// A period's figures
