//! Where metrics go: [`Recorder`] (per-request metrics) and [`Counted`] (a capacity run's
//! action counts).

use std::sync::{Arc, Mutex};

use domain::capacity::CapacityCounts;
use domain::metrics::RequestMetrics;
use domain::ports::{CapacityMetricsSink, MetricsSink};
use tokio::sync::Notify;

/// Per-request metrics (EMF on stdout in Lambda), kept in order in `.0`; clones share them.
///
/// [`last`](Self::last) is the latest request's, [`wait_for`](Self::wait_for) waits until a
/// number of requests have been reported (a stream reports when it ends). Publishing cannot
/// fail (the port returns nothing), so neither can this.
#[derive(Default, Clone)]
pub struct Recorder(pub Arc<Mutex<Vec<RequestMetrics>>>, Arc<Notify>);

impl MetricsSink for Recorder {
    fn publish(&self, metrics: &RequestMetrics) {
        self.0.lock().unwrap().push(metrics.clone());
        self.1.notify_waiters();
    }
}

impl Recorder {
    /// The metrics of the latest request; panics when none was reported.
    pub fn last(&self) -> RequestMetrics {
        self.0.lock().unwrap().last().cloned().unwrap()
    }

    /// Everything reported so far.
    pub fn all(&self) -> Vec<RequestMetrics> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `count` requests have been reported; all of them.
    pub async fn wait_for(&self, count: usize) -> Vec<RequestMetrics> {
        loop {
            let reported = self.1.notified();
            {
                let metrics = self.0.lock().unwrap();
                if metrics.len() >= count {
                    return metrics.clone();
                }
            }
            reported.await;
        }
    }
}

/// A capacity run's action counts (EMF on stdout in Lambda), one entry per model and run, kept in
/// order in `.0`; clones share them. [`total`](Self::total) sums one count over every entry.
/// Publishing cannot fail (the port returns nothing), so neither can this.
#[derive(Default, Clone)]
pub struct Counted(pub Arc<Mutex<Vec<CapacityCounts>>>);

impl CapacityMetricsSink for Counted {
    fn publish(&self, counts: &CapacityCounts) {
        self.0.lock().unwrap().push(counts.clone());
    }
}

impl Counted {
    /// One count (`|c| c.created`, say) summed over everything published.
    pub fn total(&self, pick: fn(&CapacityCounts) -> u32) -> u32 {
        self.0.lock().unwrap().iter().map(pick).sum()
    }

    /// Everything published so far.
    pub fn all(&self) -> Vec<CapacityCounts> {
        self.0.lock().unwrap().clone()
    }
}
