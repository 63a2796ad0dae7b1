//! The metric store: every metric's datums, in memory until `/_emulator/reset`, and the
//! PutMetricData fault knob.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::datum::{Datum, MetricKey, Point};
use super::list::ListFilter;

/// `RecentlyActive: PT3H`.
pub(super) const RECENT_MS: i64 = 3 * 3600 * 1000;

#[derive(Debug, Default)]
struct Series {
    points: Vec<Point>,
    /// When a datum of this metric last arrived (for `RecentlyActive`).
    last_put_ms: i64,
}

/// Every metric's datums, in memory until `/_emulator/reset`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<BTreeMap<MetricKey, Series>>,
    /// PutMetricData calls still to answer with a throttling error (`cloudwatch.failPutMetricData`).
    failing_puts: std::sync::atomic::AtomicU64,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<MetricKey, Series>> {
        // Every update is a single step: the map stays consistent if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn put(&self, datums: Vec<Datum>, now_ms: i64) {
        let mut series = self.lock();
        for datum in datums {
            let entry = series.entry(datum.key).or_default();
            entry.points.push(datum.point);
            entry.last_put_ms = now_ms;
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
        self.fail_puts(0);
    }

    /// The next `calls` PutMetricData calls are throttled (and record nothing).
    pub fn fail_puts(&self, calls: u64) {
        self.failing_puts
            .store(calls, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this PutMetricData call is one to fail; counts it down.
    pub fn take_put_fault(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.failing_puts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Runs `f` over the datums of one metric (none if the metric has none).
    pub fn with_points<R>(&self, key: &MetricKey, f: impl FnOnce(&[Point]) -> R) -> R {
        let series = self.lock();
        f(series.get(key).map_or(&[][..], |s| &s.points))
    }

    /// The metrics that pass the filter, in a stable order (namespace, name, dimensions).
    pub fn list(&self, filter: &ListFilter, now_ms: i64) -> Vec<MetricKey> {
        self.lock()
            .iter()
            .filter(|(key, series)| {
                filter
                    .namespace
                    .as_ref()
                    .is_none_or(|n| *n == key.namespace)
                    && filter.metric_name.as_ref().is_none_or(|n| *n == key.name)
                    && filter.dimensions.iter().all(|(name, value)| {
                        key.dimensions
                            .iter()
                            .any(|(n, v)| n == name && value.as_ref().is_none_or(|x| x == v))
                    })
                    && (!filter.recently_active || series.last_put_ms >= now_ms - RECENT_MS)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// How many metrics and datums are kept (for `/_emulator/stats`).
    pub fn counts(&self) -> (usize, usize) {
        let series = self.lock();
        (series.len(), series.values().map(|s| s.points.len()).sum())
    }
}
