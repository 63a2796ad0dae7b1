//! Deferred requests in memory, with the DynamoDB adapter's conditions: for tests and tools.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use domain::deferred::{DeferredGroup, DeferredRequest};
use domain::error::StoreError;
use domain::ports::DeferredStore;

/// Clones share their requests (a test keeps one to look into what the function stored).
#[derive(Debug, Default, Clone)]
pub struct MemoryDeferredStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    requests: HashMap<String, DeferredRequest>,
    groups: HashMap<String, DeferredGroup>,
    turnarounds: BTreeMap<String, i64>,
    lease: Option<(String, i64)>,
    /// Writes refused from now on (a store that went down), for tests.
    failing: bool,
}

impl MemoryDeferredStore {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        let state = self
            .state
            .lock()
            .map_err(|_| StoreError("deferred store lock poisoned".into()))?;
        if state.failing {
            return Err(StoreError("the deferred store is down (test)".into()));
        }
        Ok(state)
    }

    /// Every request, in id order.
    pub fn all(&self) -> Vec<DeferredRequest> {
        let mut all: Vec<_> = self
            .state
            .lock()
            .map(|s| s.requests.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a: &DeferredRequest, b| a.id.cmp(&b.id));
        all
    }

    /// Makes every call fail (or answer again).
    pub fn set_failing(&self, failing: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.failing = failing;
        }
    }
}

impl DeferredStore for MemoryDeferredStore {
    async fn create(&self, request: &DeferredRequest) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        if state.requests.contains_key(&request.id) {
            return Ok(false);
        }
        state.requests.insert(request.id.clone(), request.clone());
        Ok(true)
    }

    async fn get(&self, id: &str) -> Result<Option<DeferredRequest>, StoreError> {
        Ok(self.state()?.requests.get(id).cloned())
    }

    async fn update(&self, request: &DeferredRequest) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        match state.requests.get(&request.id) {
            Some(stored) if stored.version + 1 == request.version => {
                state.requests.insert(request.id.clone(), request.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn pending(&self, limit: usize) -> Result<Vec<DeferredRequest>, StoreError> {
        let mut pending: Vec<_> = self
            .state()?
            .requests
            .values()
            .filter(|r| !r.status.is_final())
            .cloned()
            .collect();
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        pending.truncate(limit);
        Ok(pending)
    }

    async fn turnarounds(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(self.state()?.turnarounds.clone())
    }

    async fn set_turnaround(&self, model_id: &str, seconds: i64) -> Result<(), StoreError> {
        self.state()?
            .turnarounds
            .insert(model_id.to_owned(), seconds);
        Ok(())
    }

    async fn lease(&self, holder: &str, until: i64, now_epoch: i64) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        match &state.lease {
            Some((other, other_until)) if other != holder && *other_until > now_epoch => Ok(false),
            _ => {
                state.lease = Some((holder.to_owned(), until));
                Ok(true)
            }
        }
    }

    async fn release(&self, holder: &str) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if state.lease.as_ref().is_some_and(|(h, _)| h == holder) {
            state.lease = None;
        }
        Ok(())
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<DeferredRequest>, StoreError> {
        let state = self.state()?;
        Ok(ids
            .iter()
            .filter_map(|id| state.requests.get(id).cloned())
            .collect())
    }

    async fn create_group(&self, group: &DeferredGroup) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        if state.groups.contains_key(&group.id) {
            return Ok(false);
        }
        state.groups.insert(group.id.clone(), group.clone());
        Ok(true)
    }

    async fn get_group(&self, id: &str) -> Result<Option<DeferredGroup>, StoreError> {
        Ok(self.state()?.groups.get(id).cloned())
    }

    async fn update_group(&self, group: &DeferredGroup) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        match state.groups.get(&group.id) {
            Some(stored) if stored.version + 1 == group.version => {
                state.groups.insert(group.id.clone(), group.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn groups(&self, owner: &str) -> Result<Vec<DeferredGroup>, StoreError> {
        let mut groups: Vec<_> = self
            .state()?
            .groups
            .values()
            .filter(|g| g.owner == owner)
            .cloned()
            .collect();
        groups.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(groups)
    }
}
