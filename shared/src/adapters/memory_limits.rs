//! Tenant limits in memory, for tests and local experiments: the same rules as the DynamoDB
//! limiter (windows per tenant and minute, leases with an expiry), in one process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use domain::error::LimitError;
use domain::limits::{
    seconds_to_window_end, window_start, Exceeded, Leases, LimitKind, TenantLimits, WindowCounts,
};
use domain::ports::TenantLimiter;

/// Counters and leases in memory; [`InMemoryLimiter::set_unavailable`] makes every call fail
/// as an unreachable table would.
#[derive(Debug, Default)]
pub struct InMemoryLimiter {
    windows: Mutex<HashMap<(String, i64), (u64, i64)>>,
    leases: Mutex<HashMap<String, Leases>>,
    unavailable: AtomicBool,
}

impl InMemoryLimiter {
    /// Makes every call fail (`true`) or succeed again (`false`).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::Relaxed);
    }

    /// Leases held (live or not) by `tenant`.
    pub fn leases_held(&self, tenant: &str) -> usize {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .map_or(0, |l| l.leases.len())
    }

    /// Requests and tokens counted in `tenant`'s window starting at `window`.
    pub fn window(&self, tenant: &str, window: i64) -> (u64, i64) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(tenant.to_owned(), window))
            .copied()
            .unwrap_or((0, 0))
    }

    fn check(&self) -> Result<(), LimitError> {
        if self.unavailable.load(Ordering::Relaxed) {
            Err(LimitError::Store(
                "the limits table cannot be reached".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl TenantLimiter for InMemoryLimiter {
    async fn admit(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        tokens: u64,
        now_epoch: i64,
    ) -> Result<WindowCounts, LimitError> {
        self.check()?;
        let start = window_start(now_epoch);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let (requests, used) = windows.entry((tenant.to_owned(), start)).or_default();
        let retry_after_seconds = seconds_to_window_end(now_epoch);
        if let Some(limit) = limits.requests_per_minute {
            if *requests >= u64::from(limit) {
                return Err(LimitError::Exceeded(Exceeded {
                    kind: LimitKind::RequestsPerMinute,
                    limit,
                    retry_after_seconds,
                }));
            }
        }
        let reserved = i64::try_from(tokens).unwrap_or(i64::MAX);
        if let Some(limit) = limits.tokens_per_minute {
            if used.saturating_add(reserved) > i64::from(limit) {
                return Err(LimitError::Exceeded(Exceeded {
                    kind: LimitKind::TokensPerMinute,
                    limit,
                    retry_after_seconds,
                }));
            }
        }
        *requests += 1;
        *used = used.saturating_add(reserved);
        Ok(WindowCounts {
            window_start: start,
            requests: *requests,
            tokens: u64::try_from(*used).unwrap_or(0),
        })
    }

    async fn adjust_tokens(
        &self,
        tenant: &str,
        window_start: i64,
        delta: i64,
    ) -> Result<(), LimitError> {
        self.check()?;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let (_, used) = windows
            .entry((tenant.to_owned(), window_start))
            .or_default();
        *used = used.saturating_add(delta);
        Ok(())
    }

    async fn acquire(
        &self,
        tenant: &str,
        lease_id: &str,
        limit: u32,
        now_epoch: i64,
        expires_at: i64,
    ) -> Result<(), LimitError> {
        self.check()?;
        let mut all = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let leases = all.entry(tenant.to_owned()).or_default();
        match leases.with_new(lease_id, expires_at, limit, now_epoch) {
            Some(written) => {
                leases.leases = written;
                leases.version += 1;
                Ok(())
            }
            None => Err(LimitError::Exceeded(Exceeded {
                kind: LimitKind::ConcurrentRequests,
                limit,
                retry_after_seconds: 1,
            })),
        }
    }

    async fn release(&self, tenant: &str, lease_id: &str) -> Result<(), LimitError> {
        self.check()?;
        let mut all = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(leases) = all.get_mut(tenant) {
            leases.leases.remove(lease_id);
            leases.version += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_counts_requests_and_tokens_and_refuses_past_either() {
        let limiter = InMemoryLimiter::default();
        let limits = TenantLimits {
            requests_per_minute: Some(2),
            tokens_per_minute: Some(100),
            concurrent_requests: None,
        };
        let first = limiter.admit("a", &limits, 60, 125).await.unwrap();
        assert_eq!(
            (first.window_start, first.requests, first.tokens),
            (120, 1, 60)
        );
        let refused = limiter.admit("a", &limits, 50, 130).await.unwrap_err();
        assert!(matches!(refused, LimitError::Exceeded(e) if e.kind == LimitKind::TokensPerMinute));
        limiter.adjust_tokens("a", 120, -40).await.unwrap();
        limiter.admit("a", &limits, 50, 130).await.unwrap();
        let refused = limiter.admit("a", &limits, 0, 170).await.unwrap_err();
        assert_eq!(
            refused,
            LimitError::Exceeded(Exceeded {
                kind: LimitKind::RequestsPerMinute,
                limit: 2,
                retry_after_seconds: 10
            })
        );
        // The next minute is a new window.
        limiter.admit("a", &limits, 0, 180).await.unwrap();
        // Another tenant counts apart.
        limiter.admit("b", &limits, 0, 170).await.unwrap();
    }

    #[tokio::test]
    async fn leases_are_released_or_expire() {
        let limiter = InMemoryLimiter::default();
        limiter.acquire("a", "one", 1, 100, 200).await.unwrap();
        assert!(limiter.acquire("a", "two", 1, 100, 200).await.is_err());
        limiter.acquire("b", "two", 1, 100, 200).await.unwrap();
        limiter.release("a", "one").await.unwrap();
        limiter.acquire("a", "two", 1, 100, 200).await.unwrap();
        // A lease whose holder died holds nothing past its expiry.
        limiter.acquire("a", "three", 1, 200, 300).await.unwrap();
    }
}
