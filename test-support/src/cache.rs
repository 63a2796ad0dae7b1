//! The cache table: [`MemoryStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::cache::{CacheEntry, CacheKey, Lease, StoredRecord};
use domain::error::CacheError;
use domain::ports::CacheStore;

/// The cache table in memory, with DynamoDB's semantics: a lease is taken only when no live
/// answer or live lease holds the key, and only its owner releases it. Clones share their items.
///
/// Records every answer and lease in `items` ([`answers`](Self::answers) and
/// [`leases`](Self::leases) count them). To make it fail: `broken: true` refuses every call as an
/// unavailable table ([`CacheError::Unavailable`]); `refuses_as_too_large: true` refuses every
/// `put` as too large for an item ([`CacheError::TooLarge`]).
#[derive(Default, Clone)]
pub struct MemoryStore {
    pub items: Arc<Mutex<HashMap<CacheKey, StoredRecord>>>,
    /// Every call fails: the table is unavailable.
    pub broken: bool,
    /// Refuses every entry as too large for an item.
    pub refuses_as_too_large: bool,
}

impl MemoryStore {
    fn check(&self) -> Result<(), CacheError> {
        if self.broken {
            Err(CacheError::Unavailable("table not found".into()))
        } else {
            Ok(())
        }
    }

    /// How many keys a lease holds.
    pub fn leases(&self) -> usize {
        self.items
            .lock()
            .unwrap()
            .values()
            .filter(|r| matches!(r, StoredRecord::Lease(_)))
            .count()
    }

    /// How many keys an answer holds.
    pub fn answers(&self) -> usize {
        let total = self.items.lock().unwrap().len();
        total - self.leases()
    }
}

impl CacheStore for MemoryStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<StoredRecord>, CacheError> {
        self.check()?;
        Ok(self.items.lock().unwrap().get(key).cloned())
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<(), CacheError> {
        self.check()?;
        if self.refuses_as_too_large {
            return Err(CacheError::TooLarge(500_000));
        }
        self.items
            .lock()
            .unwrap()
            .insert(key.clone(), StoredRecord::Answer(entry.clone()));
        Ok(())
    }

    async fn try_lease(
        &self,
        key: &CacheKey,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<bool, CacheError> {
        self.check()?;
        let mut items = self.items.lock().unwrap();
        let free = match items.get(key) {
            None => true,
            Some(StoredRecord::Lease(held)) => !held.is_live(now_ms),
            Some(StoredRecord::Answer(entry)) => !entry.is_live(now_ms.div_euclid(1000)),
        };
        if free {
            items.insert(key.clone(), StoredRecord::Lease(lease.clone()));
        }
        Ok(free)
    }

    async fn release(&self, key: &CacheKey, owner: &str) -> Result<(), CacheError> {
        self.check()?;
        let mut items = self.items.lock().unwrap();
        if matches!(items.get(key), Some(StoredRecord::Lease(l)) if l.owner == owner) {
            items.remove(key);
        }
        Ok(())
    }
}
