//! Every Provisioned Throughput that exists, by id, with the capacity windows of their ARNs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::Utc;

use super::capacity::Window;
use super::throughput::Provisioned;

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// By id.
    pub(super) pts: BTreeMap<String, Provisioned>,
    pub(super) seq: u64,
    /// By ARN.
    pub(super) windows: HashMap<String, Window>,
    /// Calls refused for capacity, by ARN.
    pub(super) capacity_throttled: HashMap<String, u64>,
}

impl Inner {
    pub(super) fn by_arn(&self, arn: &str) -> Option<&Provisioned> {
        self.pts.values().find(|pt| pt.arn == arn)
    }

    /// A name, an id or an ARN.
    pub(super) fn find(&self, identifier: &str) -> Option<&Provisioned> {
        if identifier.starts_with("arn:") {
            return self.by_arn(identifier);
        }
        self.pts
            .values()
            .find(|pt| pt.name == identifier)
            .or_else(|| self.pts.get(identifier))
    }
}

/// Every Provisioned Throughput that exists, with its capacity window.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    /// The registry, every timed phase that has ended settled.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        for pt in inner.pts.values_mut() {
            pt.settle(now);
        }
        inner
    }

    /// Forgets every Provisioned Throughput.
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = Inner::default();
    }

    /// A Provisioned Throughput by name, id or ARN.
    pub fn find(&self, identifier: &str) -> Option<Provisioned> {
        self.lock().find(identifier).cloned()
    }

    /// Every Provisioned Throughput, in creation order.
    pub fn all(&self) -> Vec<Provisioned> {
        let mut all: Vec<_> = self.lock().pts.values().cloned().collect();
        all.sort_by_key(|pt| pt.seq);
        all
    }
}

#[cfg(test)]
impl Registry {
    /// Moves a Provisioned Throughput's timed phase to its end, as time would.
    pub(crate) fn finish_phase(&self, arn: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pt) = inner.pts.values_mut().find(|pt| pt.arn == arn) else {
            panic!("no Provisioned Throughput {arn}");
        };
        let until = match &pt.phase {
            super::throughput::Phase::Creating { until, .. }
            | super::throughput::Phase::Updating { until } => *until,
            _ => return,
        };
        pt.settle(until);
    }
}
