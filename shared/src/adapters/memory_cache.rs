//! A small in-process cache in front of the shared store, for warm Lambda instances.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::domain::cache::{CacheEntry, CacheKey};

/// Bounded (least recently used entries go first) and honouring each entry's expiry.
#[derive(Debug)]
pub struct MemoryCache {
    entries: Option<Mutex<LruCache<CacheKey, CacheEntry>>>,
}

impl MemoryCache {
    /// A capacity of zero disables it.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
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

    pub fn put(&self, key: &CacheKey, entry: &CacheEntry) {
        if let Some(entries) = &self.entries {
            entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(key.clone(), entry.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cache::CachedAnswer;
    use crate::domain::conversation::{Message, ModelAnswer, Role, TextBlock, Usage};

    fn entry(expires_at: i64) -> CacheEntry {
        CacheEntry {
            cached: CachedAnswer {
                answer: ModelAnswer {
                    message: Message {
                        role: Role::Assistant,
                        content: vec![TextBlock::new("hi")],
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
        let cache = MemoryCache::new(2);
        let (a, b, c) = (
            CacheKey::from_hex("a"),
            CacheKey::from_hex("b"),
            CacheKey::from_hex("c"),
        );
        cache.put(&a, &entry(100));
        assert!(cache.get(&a, 99).is_some());
        assert!(cache.get(&a, 100).is_none());
        cache.put(&a, &entry(100));
        cache.put(&b, &entry(100));
        cache.put(&c, &entry(100));
        assert!(cache.get(&a, 0).is_none(), "least recently used is evicted");
        assert!(cache.get(&c, 0).is_some());
        let disabled = MemoryCache::new(0);
        disabled.put(&a, &entry(100));
        assert!(disabled.get(&a, 0).is_none());
    }
}
