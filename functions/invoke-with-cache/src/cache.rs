//! The cache's part in a request: the key, the claim on it (a hit, or a lease against a
//! stampede of identical requests), storing an answer worth repeating, and giving the key back.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use domain::cache::{CacheEntry, CacheKey, CachedAnswer, Lease, StoredRecord};
use domain::error::CacheError;
use domain::ports::{CacheStore, Clock};
use domain::routing::Target;

use crate::app::{Adapters, App};
use crate::context::{Answer, Ctx};
use crate::request::InvokeRequest;
use domain::cache::{CacheMode, CacheState};

/// Where a request stands with the cache.
pub(crate) enum Standing {
    /// A live answer to give at once.
    Hit(CacheEntry),
    /// The model answers: `state` is what the answer reports (`Miss`, `Refresh`, or `Bypass`
    /// when the cache takes no part or failed), `lease_owner` set when this request holds the
    /// key's lease.
    ToAnswer {
        state: CacheState,
        lease_owner: Option<String>,
    },
}

/// The outcome of looking a key up, with stampede protection.
pub(crate) enum Claim {
    /// A live answer, there at once or produced by the request that held the key.
    Hit(CacheEntry),
    /// This request holds the key's lease: its answer replaces the lease.
    Holder(String),
    /// No lease (turned off, or the wait ran out): answer and store as usual.
    Unclaimed,
    /// The store failed: answer without it.
    StoreFailed,
}

impl<A: Adapters> App<A> {
    /// The request's standing by its cache mode: a bypass or a refresh never reads the cache;
    /// a use claims the key.
    pub(crate) async fn standing(
        &self,
        mode: CacheMode,
        key: Option<&CacheKey>,
        ctx: &Ctx,
    ) -> Standing {
        let (state, lease_owner) = match (mode, key) {
            (CacheMode::Bypass, _) | (_, None) => (CacheState::Bypass, None),
            (CacheMode::Refresh, Some(_)) => (CacheState::Refresh, None),
            (CacheMode::Use, Some(key)) => match self.claim(key, &ctx.request_id).await {
                Claim::Hit(entry) => return Standing::Hit(entry),
                Claim::Holder(owner) => (CacheState::Miss, Some(owner)),
                Claim::Unclaimed => (CacheState::Miss, None),
                Claim::StoreFailed => (CacheState::Bypass, None),
            },
        };
        Standing::ToAnswer { state, lease_owner }
    }

    /// The key of the request's answer from `model`, or `None` when the cache takes no part.
    pub(crate) fn cache_key(
        &self,
        invoke: &InvokeRequest,
        namespace: &str,
        model: &str,
    ) -> Option<CacheKey> {
        if !self.config.cache_policy.applies_to(&invoke.conversation) {
            return None;
        }
        CacheKey::for_request(namespace, model, &invoke.conversation)
            .map_err(|error| {
                tracing::warn!(error = %error, "no cache key for the request; answering without the cache");
            })
            .ok()
    }

    /// Looks the key up; on a miss, leases it or waits for the holder's answer.
    pub(crate) async fn claim(&self, key: &CacheKey, request_id: &str) -> Claim {
        let lease_settings = self.config.lease;
        let deadline = Instant::now() + lease_settings.wait;
        let mut owner = None;
        loop {
            let now = self.ports.clock.now();
            let record = match self.ports.store.get(key).await {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(error = %error, "cache read failed; answering without the cache");
                    return Claim::StoreFailed;
                }
            };
            let waiting = match record {
                Some(StoredRecord::Answer(entry)) if entry.is_live(now.timestamp()) => {
                    return Claim::Hit(entry)
                }
                Some(StoredRecord::Lease(lease)) => lease.is_live(now.timestamp_millis()),
                _ => false,
            };
            let Some(duration) = lease_settings.duration else {
                return Claim::Unclaimed;
            };
            if !waiting {
                let owner = owner
                    .get_or_insert_with(|| self.lease_owner(request_id))
                    .clone();
                let lease = Lease {
                    until_ms: now.timestamp_millis().saturating_add(millis(duration)),
                    owner: owner.clone(),
                };
                match self
                    .ports
                    .store
                    .try_lease(key, &lease, now.timestamp_millis())
                    .await
                {
                    Ok(true) => return Claim::Holder(owner),
                    // Another request got there first: wait for its answer.
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(error = %error, "cache lease failed; answering without the cache");
                        return Claim::StoreFailed;
                    }
                }
            }
            if Instant::now() + lease_settings.poll > deadline {
                tracing::info!(
                    "waited for an identical request's answer in vain; calling the model"
                );
                return Claim::Unclaimed;
            }
            tokio::time::sleep(lease_settings.poll).await;
        }
    }

    pub(crate) fn lease_owner(&self, request_id: &str) -> String {
        let n = self.lease_counter.fetch_add(1, Ordering::Relaxed);
        format!("{request_id}/{}/{n}", std::process::id())
    }

    /// Gives the key back after a failed call or an answer not worth storing, so waiting
    /// requests stop waiting. Best effort: the lease lapses anyway.
    pub(crate) async fn release(&self, key: Option<&CacheKey>, owner: Option<&str>) {
        if let (Some(key), Some(owner)) = (key, owner) {
            if let Err(error) = self.ports.store.release(key, owner).await {
                tracing::warn!(error = %error, "cache lease release failed; it lapses by itself");
            }
        }
    }

    /// Stores an answer worth repeating; a store failure only changes the reported state.
    pub(crate) async fn store_answer(
        &self,
        key: &CacheKey,
        invoke: &InvokeRequest,
        target: &Target,
        on_demand_price: f64,
        answered: &mut Answer,
        now_epoch: i64,
    ) {
        if let Some(reason) = self.config.cache_policy.refusal(&answered.answer) {
            tracing::info!(
                reason,
                stop_reason = answered.answer.stop_reason,
                "answer not cached"
            );
            answered.cache = CacheState::Bypass;
            return;
        }
        let ttl = invoke
            .ttl_seconds
            .unwrap_or(self.config.cache_ttl_seconds)
            .min(self.config.cache_max_ttl_seconds);
        let entry = CacheEntry {
            cached: CachedAnswer {
                answer: answered.answer.clone(),
                model_id: target.model.clone(),
                cost_usd: on_demand_price,
                created_at: now_epoch,
            },
            expires_at: now_epoch.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        };
        match self.ports.store.put(key, &entry).await {
            Ok(()) => {}
            Err(CacheError::TooLarge(bytes)) => {
                tracing::warn!(bytes, "answer too large to cache; not stored");
                answered.too_large_to_cache = true;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cache write failed; answering without the cache");
                answered.cache = CacheState::Bypass;
            }
        }
    }
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
