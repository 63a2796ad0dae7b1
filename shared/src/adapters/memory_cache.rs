//! A small in-process cache in front of the shared store, for warm Lambda instances.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use domain::cache::{CacheEntry, CacheKey, Lease, StoredRecord};
use domain::error::CacheError;
use domain::ports::{CacheStore, Clock};

/// Bounded (least recently used entries go first) and honouring each entry's expiry. An entry
/// is kept at most `max_age_seconds`, so that a `refresh` made through another instance reaches
/// this one soon.
#[derive(Debug)]
pub struct MemoryCache {
    entries: Option<Mutex<LruCache<CacheKey, CacheEntry>>>,
    max_age_seconds: i64,
}

impl MemoryCache {
    /// A capacity of zero disables it.
    pub fn new(capacity: usize, max_age_seconds: u64) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            max_age_seconds: i64::try_from(max_age_seconds).unwrap_or(i64::MAX),
        }
    }

    /// The live entry for the key; an expired one is dropped.
    pub fn get(&self, key: &CacheKey, now_epoch: i64) -> Option<CacheEntry> {
        let mut entries = self
            .entries
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some(entry) if entry.is_live(now_epoch) => Some(entry.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: &CacheKey, entry: &CacheEntry, now_epoch: i64) {
        if let Some(entries) = &self.entries {
            let mut kept = entry.clone();
            kept.expires_at = kept
                .expires_at
                .min(now_epoch.saturating_add(self.max_age_seconds));
            entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(key.clone(), kept);
        }
    }
}

/// A [`CacheStore`] with a [`MemoryCache`] in front: live answers are served from memory, and
/// what is read from or written to the store is remembered. Leases always go to the store,
/// which is what instances share.
#[derive(Debug)]
pub struct MemoryFronted<S, C> {
    store: S,
    memory: MemoryCache,
    clock: C,
}

impl<S: CacheStore, C: Clock> MemoryFronted<S, C> {
    pub fn new(store: S, memory: MemoryCache, clock: C) -> Self {
        Self {
            store,
            memory,
            clock,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn now_epoch(&self) -> i64 {
        self.clock.now().timestamp()
    }
}

impl<S: CacheStore, C: Clock> CacheStore for MemoryFronted<S, C> {
    async fn get(&self, key: &CacheKey) -> Result<Option<StoredRecord>, CacheError> {
        let now = self.now_epoch();
        if let Some(entry) = self.memory.get(key, now) {
            return Ok(Some(StoredRecord::Answer(entry)));
        }
        let record = self.store.get(key).await?;
        if let Some(StoredRecord::Answer(entry)) = &record {
            if entry.is_live(now) {
                self.memory.put(key, entry, now);
            }
        }
        Ok(record)
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<(), CacheError> {
        self.store.put(key, entry).await?;
        self.memory.put(key, entry, self.now_epoch());
        Ok(())
    }

    async fn try_lease(
        &self,
        key: &CacheKey,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<bool, CacheError> {
        self.store.try_lease(key, lease, now_ms).await
    }

    async fn release(&self, key: &CacheKey, owner: &str) -> Result<(), CacheError> {
        self.store.release(key, owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::cache::CachedAnswer;
    use domain::conversation::{ContentBlock, Message, ModelAnswer, Role, Usage};

    fn entry(expires_at: i64) -> CacheEntry {
        CacheEntry {
            cached: CachedAnswer {
                answer: ModelAnswer {
                    latency: None,
                    invoked_model: None,
                    service_tier: None,
                    message: Message {
                        role: Role::Assistant,
                        content: vec![ContentBlock::text("hi")],
                    },
                    stop_reason: "end_turn".into(),
                    usage: Usage::default(),
                },
                model_id: "m".into(),
                cost_usd: 0.0,
                created_at: 0,
            },
            expires_at,
        }
    }

    #[test]
    fn honours_expiry_and_capacity() {
        let cache = MemoryCache::new(2, 1000);
        let (a, b, c) = (
            CacheKey::from_hex("a"),
            CacheKey::from_hex("b"),
            CacheKey::from_hex("c"),
        );
        cache.put(&a, &entry(100), 0);
        assert!(cache.get(&a, 99).is_some());
        assert!(cache.get(&a, 100).is_none());
        cache.put(&a, &entry(100), 0);
        cache.put(&b, &entry(100), 0);
        cache.put(&c, &entry(100), 0);
        assert!(cache.get(&a, 0).is_none(), "least recently used is evicted");
        assert!(cache.get(&c, 0).is_some());
        let disabled = MemoryCache::new(0, 1000);
        disabled.put(&a, &entry(100), 0);
        assert!(disabled.get(&a, 0).is_none());
    }

    #[test]
    fn entries_are_kept_at_most_their_max_age() {
        let cache = MemoryCache::new(2, 60);
        let key = CacheKey::from_hex("a");
        cache.put(&key, &entry(10_000), 1_000);
        assert!(cache.get(&key, 1_059).is_some());
        assert!(
            cache.get(&key, 1_060).is_none(),
            "the store's TTL is longer, the memory's is not"
        );
    }
}
