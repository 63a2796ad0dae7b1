//! In-process caches in front of the tenant key store and the spend ledger, so that a warm
//! instance verifies a key and checks a budget with a memory lookup. Each answer is kept for a
//! bounded time: that time bounds how long a revoked key keeps working on an instance, and how
//! stale the spend a budget is checked against may be.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use domain::error::TenancyError;
use domain::limits::TenantLimits;
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::{Reservation, Reserved, TenantKey};

/// Entries kept at most; past it expired ones go, and new ones are not remembered until then.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Remembered<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
    ttl: Duration,
}

impl<V: Clone> Remembered<V> {
    fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: &str, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            // Still full (a flood of made-up key ids, say): what is remembered stays, so valid
            // keys are not pushed out; the newcomer is simply not remembered.
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(key.to_owned(), (Instant::now(), value));
    }

    fn forget(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Remembers each key lookup, found or not, for `ttl`.
#[derive(Debug)]
pub struct CachedKeys<K> {
    inner: K,
    remembered: Remembered<Option<TenantKey>>,
}

impl<K> CachedKeys<K> {
    pub fn new(inner: K, ttl: Duration) -> Self {
        Self {
            inner,
            remembered: Remembered::new(ttl),
        }
    }
}

impl<K: TenantKeyStore> TenantKeyStore for CachedKeys<K> {
    async fn get(&self, key_id: &str) -> Result<Option<TenantKey>, TenancyError> {
        if let Some(found) = self.remembered.get(key_id) {
            return Ok(found);
        }
        let found = self.inner.get(key_id).await?;
        self.remembered.put(key_id, found.clone());
        Ok(found)
    }

    async fn create(&self, key: &TenantKey) -> Result<(), TenancyError> {
        self.remembered.forget(&key.key_id);
        self.inner.create(key).await
    }

    async fn list(&self) -> Result<Vec<TenantKey>, TenancyError> {
        self.inner.list().await
    }

    async fn revoke(&self, key_id: &str, at: i64) -> Result<(), TenancyError> {
        self.remembered.forget(key_id);
        self.inner.revoke(key_id, at).await
    }

    async fn set_budget(
        &self,
        key_id: &str,
        monthly_budget_usd: Option<f64>,
    ) -> Result<(), TenancyError> {
        self.remembered.forget(key_id);
        self.inner.set_budget(key_id, monthly_budget_usd).await
    }

    async fn set_limits(&self, key_id: &str, limits: &TenantLimits) -> Result<(), TenancyError> {
        self.remembered.forget(key_id);
        self.inner.set_limits(key_id, limits).await
    }
}

/// Remembers each tenant's spend for `ttl`; an addition made here updates it at once. When the
/// ledger cannot be read, the last figure read or written here answers for `grace` (so a tenant
/// known to be over budget stays refused through a ledger outage); past it, the read fails.
///
/// An addition the ledger refused is not dropped: it is owed, counted in the spend this
/// instance answers, and added with the tenant's next addition here (lost only if the instance
/// ends first).
#[derive(Debug)]
pub struct CachedSpend<L> {
    inner: L,
    remembered: Remembered<f64>,
    last_known: Remembered<f64>,
    owed: Mutex<HashMap<String, f64>>,
    /// Reservations this instance holds itself, made while the ledger could not be written.
    held: Mutex<HashMap<String, f64>>,
}

impl<L> CachedSpend<L> {
    /// Without a grace: a failed read fails at once.
    pub fn new(inner: L, ttl: Duration) -> Self {
        Self {
            inner,
            remembered: Remembered::new(ttl),
            last_known: Remembered::new(Duration::ZERO),
            owed: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// How long the last figure known answers for a ledger that cannot be read.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.last_known = Remembered::new(grace);
        self
    }

    fn remember(&self, key: &str, spent: f64) {
        self.remembered.put(key, spent);
        self.last_known.put(key, spent);
    }

    fn owed(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        self.owed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the ledger has not recorded yet of the tenant's spend here.
    fn owed_for(&self, key: &str) -> f64 {
        self.owed().get(key).copied().unwrap_or(0.0)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `usd` owed for `key` (bounded like the caches).
    fn owe(&self, key: String, usd: f64) {
        let mut all_owed = self.owed();
        if all_owed.len() < MAX_ENTRIES || all_owed.contains_key(&key) {
            *all_owed.entry(key).or_insert(0.0) += usd;
        }
    }
}

fn spend_key(tenant: &str, month: &str) -> String {
    format!("{tenant}#{month}")
}

impl<L: SpendLedger> SpendLedger for CachedSpend<L> {
    async fn spent(&self, tenant: &str, month: &str) -> Result<f64, TenancyError> {
        let key = spend_key(tenant, month);
        let owed = self.owed_for(&key);
        if let Some(spent) = self.remembered.get(&key) {
            return Ok(spent + owed);
        }
        match self.inner.spent(tenant, month).await {
            Ok(spent) => {
                self.remember(&key, spent);
                Ok(spent + owed)
            }
            Err(error) => match self.last_known.get(&key) {
                Some(spent) => {
                    tracing::warn!(%error, "spend unreadable; the last figure known holds");
                    Ok(spent + owed)
                }
                None => Err(error),
            },
        }
    }

    async fn add(&self, tenant: &str, month: &str, usd: f64) -> Result<f64, TenancyError> {
        let key = spend_key(tenant, month);
        let owed = self.owed().remove(&key).unwrap_or(0.0);
        match self.inner.add(tenant, month, usd + owed).await {
            Ok(total) => {
                self.remember(&key, total);
                Ok(total)
            }
            Err(error) => {
                // Bounded like the caches: past it a new tenant's debt is not kept (and logged
                // by the caller as not recorded).
                self.owe(key, usd + owed);
                Err(error)
            }
        }
    }

    /// A reservation the ledger cannot take (it cannot be written) is held by this instance
    /// against the last spend it knows, within the grace: the spend, what it owes and what it
    /// holds already must leave room. Past the grace (or with no figure known) the error
    /// stands, and the caller refuses the request (fail closed).
    async fn reserve(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        budget_usd: f64,
        now_epoch: i64,
    ) -> Result<Reserved, TenancyError> {
        let error = match self
            .inner
            .reserve(tenant, month, reservation, budget_usd, now_epoch)
            .await
        {
            Ok(reserved) => return Ok(reserved),
            Err(error) => error,
        };
        let key = spend_key(tenant, month);
        let Some(spent) = self.last_known.get(&key) else {
            return Err(error);
        };
        let owed = self.owed_for(&key);
        let mut held = self.held();
        let holding = held.get(&key).copied().unwrap_or(0.0);
        let committed = spent + owed + holding;
        if committed + reservation.usd > budget_usd {
            return Ok(Reserved::Refused {
                committed_usd: committed,
            });
        }
        tracing::warn!(%error, tenant, usd = reservation.usd, "reservation not written; held by this instance against the last spend known");
        if held.len() < MAX_ENTRIES || held.contains_key(&key) {
            *held.entry(key).or_insert(0.0) += reservation.usd;
        }
        Ok(Reserved::HeldLocally)
    }

    async fn settle(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        held: Reserved,
        actual_usd: f64,
    ) -> Result<f64, TenancyError> {
        let key = spend_key(tenant, month);
        if held != Reserved::Held {
            if let Some(holding) = self.held().get_mut(&key) {
                *holding = (*holding - reservation.usd).max(0.0);
            }
            return self.add(tenant, month, actual_usd).await;
        }
        let owed = self.owed().remove(&key).unwrap_or(0.0);
        match self
            .inner
            .settle(tenant, month, reservation, held, actual_usd + owed)
            .await
        {
            Ok(total) => {
                self.remember(&key, total);
                Ok(total)
            }
            Err(error) => {
                // The reservation stays in the ledger until it expires (the tenant is held to
                // more, not less); the spend is owed and added with the next addition.
                self.owe(key, actual_usd + owed);
                Err(error)
            }
        }
    }
}

/// Keys and spend in memory, for tests and local experiments.
#[derive(Debug, Default)]
pub struct InMemoryTenancy {
    keys: Mutex<HashMap<String, TenantKey>>,
    spend: Mutex<HashMap<String, f64>>,
    /// Spend reads fail while set, as a ledger table that cannot be read.
    spend_unreadable: std::sync::atomic::AtomicBool,
    /// Spend additions fail while set, as a ledger table that cannot be written.
    spend_unwritable: std::sync::atomic::AtomicBool,
    /// Live and expired reservations per tenant and month.
    reservations: Mutex<HashMap<String, Vec<Reservation>>>,
}

impl InMemoryTenancy {
    /// Makes spend reads fail (`true`) or succeed again (`false`).
    pub fn set_spend_unreadable(&self, unreadable: bool) {
        self.spend_unreadable
            .store(unreadable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes spend additions and reservations fail (`true`) or succeed again (`false`).
    pub fn set_spend_unwritable(&self, unwritable: bool) {
        self.spend_unwritable
            .store(unwritable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reservations held for the tenant's month, expired ones included.
    pub fn reservations(&self, tenant: &str, month: &str) -> Vec<Reservation> {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&spend_key(tenant, month))
            .cloned()
            .unwrap_or_default()
    }

    fn unwritable(&self) -> Result<(), TenancyError> {
        if self
            .spend_unwritable
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            Err(TenancyError::Store(
                "the spend table cannot be written".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl TenantKeyStore for InMemoryTenancy {
    async fn get(&self, key_id: &str) -> Result<Option<TenantKey>, TenancyError> {
        Ok(self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .cloned())
    }

    async fn create(&self, key: &TenantKey) -> Result<(), TenancyError> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.contains_key(&key.key_id) {
            return Err(TenancyError::KeyExists(key.key_id.clone()));
        }
        keys.insert(key.key_id.clone(), key.clone());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<TenantKey>, TenancyError> {
        let mut keys: Vec<_> = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }

    async fn revoke(&self, key_id: &str, at: i64) -> Result<(), TenancyError> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .get_mut(key_id)
            .ok_or_else(|| TenancyError::NoSuchKey(key_id.to_owned()))?;
        key.revoked_at.get_or_insert(at);
        Ok(())
    }

    async fn set_budget(
        &self,
        key_id: &str,
        monthly_budget_usd: Option<f64>,
    ) -> Result<(), TenancyError> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .get_mut(key_id)
            .ok_or_else(|| TenancyError::NoSuchKey(key_id.to_owned()))?;
        key.monthly_budget_usd = monthly_budget_usd;
        Ok(())
    }

    async fn set_limits(&self, key_id: &str, limits: &TenantLimits) -> Result<(), TenancyError> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .get_mut(key_id)
            .ok_or_else(|| TenancyError::NoSuchKey(key_id.to_owned()))?;
        key.set_limits(*limits);
        Ok(())
    }
}

impl SpendLedger for InMemoryTenancy {
    async fn spent(&self, tenant: &str, month: &str) -> Result<f64, TenancyError> {
        if self
            .spend_unreadable
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(TenancyError::Store("the spend table cannot be read".into()));
        }
        Ok(self
            .spend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&spend_key(tenant, month))
            .copied()
            .unwrap_or(0.0))
    }

    async fn add(&self, tenant: &str, month: &str, usd: f64) -> Result<f64, TenancyError> {
        if self
            .spend_unwritable
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(TenancyError::Store(
                "the spend table cannot be written".into(),
            ));
        }
        let mut spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        let total = spend.entry(spend_key(tenant, month)).or_insert(0.0);
        *total += usd;
        Ok(*total)
    }

    async fn reserve(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        budget_usd: f64,
        now_epoch: i64,
    ) -> Result<Reserved, TenancyError> {
        self.unwritable()?;
        let key = spend_key(tenant, month);
        // One lock over both, as one conditional write is atomic.
        let spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        let mut reservations = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        let held = reservations.entry(key.clone()).or_default();
        held.retain(|r| r.expires_at > now_epoch);
        if held.contains(reservation) {
            return Ok(Reserved::Held);
        }
        let committed =
            spend.get(&key).copied().unwrap_or(0.0) + held.iter().map(|r| r.usd).sum::<f64>();
        if committed + reservation.usd > budget_usd {
            return Ok(Reserved::Refused {
                committed_usd: committed,
            });
        }
        held.push(reservation.clone());
        Ok(Reserved::Held)
    }

    async fn settle(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        _held: Reserved,
        actual_usd: f64,
    ) -> Result<f64, TenancyError> {
        self.unwritable()?;
        let key = spend_key(tenant, month);
        if let Some(held) = self
            .reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key)
        {
            held.retain(|r| r.id != reservation.id);
        }
        let mut spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        let total = spend.entry(key).or_insert(0.0);
        *total += actual_usd;
        Ok(*total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(id: &str) -> TenantKey {
        TenantKey {
            levers: domain::tenancy::KeyLevers::default(),
            key_id: id.into(),
            secret_sha256: "h".into(),
            tenant: "acme".into(),
            models: vec![],
            monthly_budget_usd: None,
            created_at: 0,
            revoked_at: None,
            description: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            concurrent_requests: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_elsewhere_shows_after_the_ttl() {
        let store = Arc::new(InMemoryTenancy::default());
        store.create(&key("k1")).await.unwrap();
        let cached = CachedKeys::new(store.clone(), Duration::from_secs(60));
        assert!(cached.get("k1").await.unwrap().is_some());
        // Revoked through another instance: this one still remembers the key for a while.
        store.revoke("k1", 5).await.unwrap();
        assert_eq!(cached.get("k1").await.unwrap().unwrap().revoked_at, None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(cached.get("k1").await.unwrap().unwrap().revoked_at, Some(5));
        // Unknown keys are remembered too, so a flood of bad keys stays in memory.
        assert!(cached.get("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_addition_the_ledger_refused_is_owed_counted_and_added_with_the_next() {
        let ledger = Arc::new(InMemoryTenancy::default());
        let spend = CachedSpend::new(ledger.clone(), Duration::ZERO);
        ledger.set_spend_unwritable(true);
        assert!(spend.add("acme", "2026-12", 1.5).await.is_err());
        assert!(spend.add("acme", "2026-12", 0.5).await.is_err());
        assert_eq!(ledger.spent("acme", "2026-12").await.unwrap(), 0.0);
        // The budget check counts what the ledger has not recorded yet.
        assert_eq!(spend.spent("acme", "2026-12").await.unwrap(), 2.0);
        assert_eq!(spend.spent("other", "2026-12").await.unwrap(), 0.0);

        ledger.set_spend_unwritable(false);
        assert_eq!(spend.add("acme", "2026-12", 1.0).await.unwrap(), 3.0);
        assert_eq!(ledger.spent("acme", "2026-12").await.unwrap(), 3.0);
        assert_eq!(
            spend.spent("acme", "2026-12").await.unwrap(),
            3.0,
            "nothing owed twice"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_ledger_answers_with_the_last_figure_for_the_grace_then_fails() {
        let ledger = Arc::new(InMemoryTenancy::default());
        ledger.add("acme", "2026-12", 5.0).await.unwrap();
        let spend = CachedSpend::new(ledger.clone(), Duration::from_secs(10))
            .with_grace(Duration::from_secs(300));
        assert_eq!(spend.spent("acme", "2026-12").await.unwrap(), 5.0);

        ledger.set_spend_unreadable(true);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(spend.spent("acme", "2026-12").await.unwrap(), 5.0);
        assert!(
            spend.spent("other", "2026-12").await.is_err(),
            "never known"
        );
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(
            spend.spent("acme", "2026-12").await.is_err(),
            "past the grace"
        );

        ledger.set_spend_unreadable(false);
        assert_eq!(spend.spent("acme", "2026-12").await.unwrap(), 5.0);
        let no_grace = CachedSpend::new(ledger.clone(), Duration::ZERO);
        ledger.set_spend_unreadable(true);
        assert!(no_grace.spent("acme", "2026-12").await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn spend_added_here_shows_at_once_spend_elsewhere_after_the_ttl() {
        let ledger = Arc::new(InMemoryTenancy::default());
        let cached = CachedSpend::new(ledger.clone(), Duration::from_secs(10));
        assert_eq!(cached.spent("acme", "2026-11").await.unwrap(), 0.0);
        assert_eq!(cached.add("acme", "2026-11", 1.5).await.unwrap(), 1.5);
        assert_eq!(cached.spent("acme", "2026-11").await.unwrap(), 1.5);
        ledger.add("acme", "2026-11", 2.0).await.unwrap();
        assert_eq!(cached.spent("acme", "2026-11").await.unwrap(), 1.5);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(cached.spent("acme", "2026-11").await.unwrap(), 3.5);
        assert_eq!(cached.spent("acme", "2026-12").await.unwrap(), 0.0);
    }

    fn hold(id: &str, usd: f64, expires_at: i64) -> Reservation {
        Reservation {
            id: id.into(),
            usd,
            expires_at,
        }
    }

    #[tokio::test]
    async fn reservations_count_until_settled_or_expired() {
        let ledger = InMemoryTenancy::default();
        ledger.add("acme", "2026-11", 8.0).await.unwrap();
        let reserve = |r: Reservation, now| {
            let ledger = &ledger;
            async move { ledger.reserve("acme", "2026-11", &r, 10.0, now).await }
        };
        assert_eq!(reserve(hold("a", 1.5, 500), 100).await, Ok(Reserved::Held));
        // The same reservation again (a retry): held, and counted once.
        assert_eq!(reserve(hold("a", 1.5, 500), 100).await, Ok(Reserved::Held));
        assert_eq!(ledger.reservations("acme", "2026-11").len(), 1);
        assert_eq!(
            reserve(hold("b", 1.0, 500), 100).await,
            Ok(Reserved::Refused { committed_usd: 9.5 }),
            "8 spent and 1.5 held leave 0.5"
        );
        // Settled below its reservation: the difference is free again.
        let total = ledger
            .settle("acme", "2026-11", &hold("a", 1.5, 500), Reserved::Held, 0.5)
            .await
            .unwrap();
        assert_eq!(total, 8.5);
        assert_eq!(reserve(hold("b", 1.0, 500), 100).await, Ok(Reserved::Held));
        // A reservation never settled stops counting at its expiry.
        assert!(matches!(
            reserve(hold("c", 1.0, 900), 499).await,
            Ok(Reserved::Refused { .. })
        ));
        assert_eq!(reserve(hold("c", 1.0, 900), 500).await, Ok(Reserved::Held));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unwritable_ledger_holds_reservations_here_within_the_grace_then_fails() {
        let ledger = Arc::new(InMemoryTenancy::default());
        ledger.add("acme", "2026-11", 8.0).await.unwrap();
        let spend = CachedSpend::new(ledger.clone(), Duration::from_secs(10))
            .with_grace(Duration::from_secs(300));
        assert_eq!(spend.spent("acme", "2026-11").await.unwrap(), 8.0);
        ledger.set_spend_unwritable(true);
        let r1 = hold("a", 1.5, 500);
        assert_eq!(
            spend.reserve("acme", "2026-11", &r1, 10.0, 100).await,
            Ok(Reserved::HeldLocally)
        );
        // What this instance holds counts against the last figure known.
        assert_eq!(
            spend
                .reserve("acme", "2026-11", &hold("b", 1.0, 500), 10.0, 100)
                .await,
            Ok(Reserved::Refused { committed_usd: 9.5 })
        );
        // Settled while the ledger is down: owed, and still counted here.
        assert!(spend
            .settle("acme", "2026-11", &r1, Reserved::HeldLocally, 1.0)
            .await
            .is_err());
        assert_eq!(spend.spent("acme", "2026-11").await.unwrap(), 9.0);
        // A tenant never known, or known past the grace: the error stands (fail closed).
        assert!(spend
            .reserve("other", "2026-11", &hold("c", 0.1, 500), 10.0, 100)
            .await
            .is_err());
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(spend
            .reserve("acme", "2026-11", &hold("d", 0.1, 500), 10.0, 100)
            .await
            .is_err());
        ledger.set_spend_unwritable(false);
        assert_eq!(
            spend
                .reserve("acme", "2026-11", &hold("d", 0.1, 500), 10.0, 100)
                .await,
            Ok(Reserved::Held)
        );
    }
}
