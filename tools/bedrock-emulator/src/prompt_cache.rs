//! Prompt caching: the runtime's cache of prompt prefixes, and what a request's cache points
//! read from it or write to it.
//!
//! A request's `cachePoint` blocks (in `toolConfig.tools`, `system` and `messages[].content`;
//! checked with the rest of a Converse request) each mark a prefix: everything before it in Bedrock's order, tools,
//! then system, then messages. A prefix is known by a SHA-256 of the model identifier and the
//! prefix's canonical JSON, and counts the tokens the emulator counts for input. A cache point
//! whose prefix is under the model's minimum is ignored; of the others, the longest prefix
//! counts: found in the cache and not expired, its tokens are read (and the entry lives on for
//! the cache point's TTL from now); otherwise they are written, and the prefix kept for that
//! TTL. The cache holds at most [`CAPACITY`] prefixes, the least recently used evicted first.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// Prefixes the cache holds at most.
pub const CAPACITY: usize = 4096;

/// Bedrock's `CacheTTL`: how long a prefix stays cached after it was last written or read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheTtl {
    #[default]
    FiveMinutes,
    OneHour,
}

impl CacheTtl {
    pub const ALL: [CacheTtl; 2] = [CacheTtl::FiveMinutes, CacheTtl::OneHour];

    /// Its name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            CacheTtl::FiveMinutes => "5m",
            CacheTtl::OneHour => "1h",
        }
    }

    pub fn duration(self) -> Duration {
        match self {
            CacheTtl::FiveMinutes => Duration::minutes(5),
            CacheTtl::OneHour => Duration::hours(1),
        }
    }
}

/// The SHA-256 that names a prefix.
pub type PrefixKey = [u8; 32];

/// A cache point of a request: the prefix before it, and the TTL it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePoint {
    /// Input tokens of the prefix, counted as the request's input tokens are.
    pub tokens: u32,
    pub key: PrefixKey,
    pub ttl: CacheTtl,
}

/// What a request read from the cache or wrote to it (one of the two is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUse {
    pub read: u32,
    pub write: u32,
    pub ttl: CacheTtl,
}

impl CacheUse {
    /// The `usage` object of an answer whose input, cached prefix included, counts
    /// `input_tokens`: `inputTokens` leaves out the tokens read and written, which Bedrock
    /// reports apart, and `cacheDetails` tells the written ones by TTL.
    pub fn usage(&self, input_tokens: u32, output_tokens: u32) -> Value {
        let cached = self.read.saturating_add(self.write);
        let input = input_tokens.saturating_sub(cached);
        let mut usage = json!({
            "inputTokens": input,
            "outputTokens": output_tokens,
            "totalTokens": input.saturating_add(output_tokens).saturating_add(cached),
            "cacheReadInputTokens": self.read,
            "cacheWriteInputTokens": self.write,
        });
        if self.write > 0 {
            usage["cacheDetails"] = json!([{"ttl": self.ttl.name(), "inputTokens": self.write}]);
        }
        usage
    }
}

/// The minimum prefix, in tokens, a cache point needs on a model, as Bedrock documents it
/// (by the identifier as sent: id, inference profile or ARN): 4096 for Claude Haiku 4.5 and
/// Opus 4.5, 2048 for Claude 3 and 3.5 Haiku, 1000 for Amazon Nova, 1024 for the other
/// Claude models and any other identifier.
pub fn default_min_tokens(model_id: &str) -> u32 {
    let id = model_id.to_ascii_lowercase();
    if id.contains("claude-haiku-4-5") || id.contains("claude-opus-4-5") {
        4096
    } else if id.contains("claude-3-haiku") || id.contains("claude-3-5-haiku") {
        2048
    } else if id.contains("amazon.nova") {
        1000
    } else {
        1024
    }
}

/// The cache point of a request that counts: the longest prefix of at least `min_tokens`
/// tokens (the last of equals).
pub fn counting(points: &[CachePoint], min_tokens: u32) -> Option<&CachePoint> {
    points
        .iter()
        .filter(|p| p.tokens >= min_tokens)
        .max_by_key(|p| p.tokens)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: DateTime<Utc>,
    /// Its place in [`PromptCache::order`].
    touched: u64,
}

/// The cached prefixes, bounded, the least recently used evicted first.
#[derive(Debug, Default)]
pub struct PromptCache {
    entries: HashMap<PrefixKey, Entry>,
    /// Keys by when they were last written or read, oldest first.
    order: BTreeMap<u64, PrefixKey>,
    ticks: u64,
}

impl PromptCache {
    /// Reads the point's prefix if it is cached and not expired, or writes it; either way it
    /// then expires the point's TTL from `now`.
    pub fn read_or_write(&mut self, point: &CachePoint, now: DateTime<Utc>) -> CacheUse {
        let hit = self
            .entries
            .get(&point.key)
            .is_some_and(|entry| entry.expires > now);
        self.ticks += 1;
        let entry = Entry {
            expires: now + point.ttl.duration(),
            touched: self.ticks,
        };
        if let Some(previous) = self.entries.insert(point.key, entry) {
            self.order.remove(&previous.touched);
        }
        self.order.insert(entry.touched, point.key);
        while self.entries.len() > CAPACITY {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let (read, write) = if hit {
            (point.tokens, 0)
        } else {
            (0, point.tokens)
        };
        CacheUse {
            read,
            write,
            ttl: point.ttl,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(n: u8, tokens: u32, ttl: CacheTtl) -> CachePoint {
        CachePoint {
            tokens,
            key: [n; 32],
            ttl,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn writes_then_reads_until_the_ttl_is_over() {
        let mut cache = PromptCache::default();
        let five = point(1, 2000, CacheTtl::FiveMinutes);
        assert_eq!(cache.read_or_write(&five, at(0)).write, 2000);
        assert_eq!(cache.read_or_write(&five, at(299)).read, 2000);
        // The read at 299 s kept it until 599 s.
        assert_eq!(cache.read_or_write(&five, at(598)).read, 2000);
        let again = cache.read_or_write(&five, at(598 + 300));
        assert_eq!((again.read, again.write), (0, 2000));

        let hour = point(2, 3000, CacheTtl::OneHour);
        cache.read_or_write(&hour, at(0));
        assert_eq!(cache.read_or_write(&hour, at(3599)).read, 3000);
        assert_eq!(cache.read_or_write(&hour, at(3599 + 3600)).write, 3000);
    }

    #[test]
    fn holds_at_most_its_capacity_the_least_recently_used_going_first() {
        let mut cache = PromptCache::default();
        let key = |i: usize| {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            CachePoint {
                tokens: 5000,
                key,
                ttl: CacheTtl::OneHour,
            }
        };
        for i in 0..CAPACITY {
            cache.read_or_write(&key(i), at(0));
        }
        // Reading the first keeps it; the second is then the oldest.
        assert_eq!(cache.read_or_write(&key(0), at(1)).read, 5000);
        cache.read_or_write(&key(CAPACITY), at(2));
        assert_eq!(cache.len(), CAPACITY);
        assert_eq!(cache.read_or_write(&key(0), at(3)).read, 5000);
        assert_eq!(cache.read_or_write(&key(1), at(3)).write, 5000);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn the_longest_usable_prefix_counts() {
        let points = [
            point(1, 1500, CacheTtl::FiveMinutes),
            point(2, 900, CacheTtl::FiveMinutes),
            point(3, 2500, CacheTtl::OneHour),
        ];
        assert_eq!(counting(&points, 1024).map(|p| p.key[0]), Some(3));
        assert_eq!(counting(&points[..2], 1024).map(|p| p.key[0]), Some(1));
        assert_eq!(counting(&points, 4096), None);
        assert_eq!(counting(&[], 0), None);
    }

    #[test]
    fn usage_reports_cached_tokens_apart() {
        let write = CacheUse {
            read: 0,
            write: 2000,
            ttl: CacheTtl::FiveMinutes,
        };
        assert_eq!(
            write.usage(2010, 30),
            json!({"inputTokens": 10, "outputTokens": 30, "totalTokens": 2040,
                   "cacheReadInputTokens": 0, "cacheWriteInputTokens": 2000,
                   "cacheDetails": [{"ttl": "5m", "inputTokens": 2000}]})
        );
        let read = CacheUse {
            read: 2000,
            write: 0,
            ttl: CacheTtl::OneHour,
        };
        assert_eq!(
            read.usage(2010, 30),
            json!({"inputTokens": 10, "outputTokens": 30, "totalTokens": 2040,
                   "cacheReadInputTokens": 2000, "cacheWriteInputTokens": 0})
        );
    }

    #[test]
    fn documented_minimums() {
        assert_eq!(
            default_min_tokens("anthropic.claude-3-haiku-20240307-v1:0"),
            2048
        );
        assert_eq!(
            default_min_tokens("us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            2048
        );
        assert_eq!(
            default_min_tokens("global.anthropic.claude-haiku-4-5-20251001-v1:0"),
            4096
        );
        assert_eq!(
            default_min_tokens("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            1024
        );
        assert_eq!(default_min_tokens("amazon.nova-pro-v1:0"), 1000);
        assert_eq!(
            default_min_tokens("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"),
            1000
        );
        assert_eq!(default_min_tokens("meta.llama3-8b-instruct-v1:0"), 1024);
    }
}
