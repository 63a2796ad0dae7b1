//! The routing table in an instance's memory: a decorator that reads it at most once per
//! `ttl` (so a warm invoke-with-cache instance routes with a memory lookup, and follows a
//! change within `ttl`), a table in memory for tests, and the absence of a table.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use domain::capacity::{RoutingTable, RoutingTableError};
use domain::ports::{RoutingTableSource, RoutingTableStore};

/// No routing table: every model routes by the static configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoutingTable;

impl RoutingTableSource for NoRoutingTable {
    async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
        Ok(None)
    }
}

/// Remembers the table for `ttl`. A read that fails keeps the table last read (logged) for
/// another `ttl`: a route to capacity that has gone since spills over to on-demand, while
/// dropping every route would send all traffic on-demand. With nothing read yet, the error
/// is returned.
#[derive(Debug)]
pub struct CachedRoutingTable<R> {
    inner: R,
    ttl: Duration,
    last: Mutex<Option<(Instant, Option<RoutingTable>)>>,
}

impl<R> CachedRoutingTable<R> {
    pub fn new(inner: R, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            last: Mutex::new(None),
        }
    }

    fn remembered(&self) -> Option<(Instant, Option<RoutingTable>)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn remember(&self, table: Option<RoutingTable>) {
        if !self.ttl.is_zero() {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), table));
        }
    }
}

impl<R: RoutingTableSource> RoutingTableSource for CachedRoutingTable<R> {
    async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
        let last = self.remembered();
        if let Some((at, table)) = &last {
            if at.elapsed() < self.ttl {
                return Ok(table.clone());
            }
        }
        match self.inner.routing_table().await {
            Ok(table) => {
                self.remember(table.clone());
                Ok(table)
            }
            Err(error) => match last {
                Some((_, table)) => {
                    tracing::warn!(%error, "routing table unreadable; keeping the one read last");
                    self.remember(table.clone());
                    Ok(table)
                }
                None => Err(error),
            },
        }
    }
}

/// A routing table in memory, with the store's conditional writes.
#[derive(Debug, Default)]
pub struct InMemoryRoutingTable(Mutex<Option<RoutingTable>>);

impl InMemoryRoutingTable {
    pub fn with(table: RoutingTable) -> Self {
        Self(Mutex::new(Some(table)))
    }
}

impl RoutingTableSource for InMemoryRoutingTable {
    async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl RoutingTableStore for InMemoryRoutingTable {
    async fn publish(&self, table: &RoutingTable) -> Result<(), RoutingTableError> {
        let mut stored = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let current = stored.as_ref().map_or(0, |t| t.version);
        if table.version != current + 1 {
            return Err(RoutingTableError::Conflict);
        }
        *stored = Some(table.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;

    fn table(version: u64) -> RoutingTable {
        RoutingTable {
            version,
            routes: [("m".to_owned(), vec![format!("arn:{version}")])].into(),
            ..RoutingTable::default()
        }
    }

    #[derive(Default)]
    struct Flaky {
        inner: InMemoryRoutingTable,
        reads: AtomicU32,
        failing: AtomicBool,
    }

    impl RoutingTableSource for Flaky {
        async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            if self.failing.load(Ordering::Relaxed) {
                return Err(RoutingTableError::Unavailable("down".into()));
            }
            self.inner.routing_table().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_shows_after_the_ttl_and_an_outage_keeps_the_last_table() {
        let source = Arc::new(Flaky::default());
        let cached = CachedRoutingTable::new(source.clone(), Duration::from_secs(30));
        assert_eq!(cached.routing_table().await.unwrap(), None);
        source.inner.publish(&table(1)).await.unwrap();
        // Within the TTL the instance still routes by what it read.
        assert_eq!(cached.routing_table().await.unwrap(), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(cached.routing_table().await.unwrap(), Some(table(1)));
        assert_eq!(source.reads.load(Ordering::Relaxed), 2);
        // The table cannot be read: the last one stands, and is tried again a TTL later.
        source.failing.store(true, Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(cached.routing_table().await.unwrap(), Some(table(1)));
        assert_eq!(cached.routing_table().await.unwrap(), Some(table(1)));
        assert_eq!(source.reads.load(Ordering::Relaxed), 3);
        // Never read: the error.
        let cold = CachedRoutingTable::new(source.clone(), Duration::from_secs(30));
        assert!(cold.routing_table().await.is_err());
        // A zero TTL reads every time.
        source.failing.store(false, Ordering::Relaxed);
        let uncached = CachedRoutingTable::new(source.clone(), Duration::ZERO);
        uncached.routing_table().await.unwrap();
        uncached.routing_table().await.unwrap();
        assert_eq!(source.reads.load(Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn writes_are_conditional_on_the_version() {
        let store = InMemoryRoutingTable::default();
        store.publish(&table(1)).await.unwrap();
        assert_eq!(
            store.publish(&table(1)).await,
            Err(RoutingTableError::Conflict)
        );
        assert_eq!(
            store.publish(&table(3)).await,
            Err(RoutingTableError::Conflict)
        );
        store.publish(&table(2)).await.unwrap();
        assert_eq!(store.routing_table().await.unwrap(), Some(table(2)));
        assert_eq!(NoRoutingTable.routing_table().await, Ok(None));
    }
}
