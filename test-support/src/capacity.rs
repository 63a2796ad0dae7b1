//! Provisioned Throughput capacity: Bedrock's API ([`FakeBedrock`]) and a routing table that
//! always loses the race to write ([`RaceTable`]). The routing table that works is
//! `shared::adapters::memory_routing::InMemoryRoutingTable`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::Utc;
use domain::capacity::{
    Capacity, CapacityError, CapacityStatus, CreateOrder, RoutingTable, RoutingTableError,
};
use domain::ports::{ProvisionedThroughputs, RoutingTableSource, RoutingTableStore};

/// Bedrock's Provisioned Throughput API in memory: creation is immediate (`InService`), a
/// `clientRequestToken` already used answers the capacity it created, a unit quota applies.
///
/// Keeps the capacities it holds (`list`), created with no tags (`tags` answers none, `tag`
/// keeps nothing). To make it fail: [`with_quota`](Self::with_quota) refuses a creation that
/// would take the units over the quota ([`CapacityError::QuotaExceeded`]).
#[derive(Default)]
pub struct FakeBedrock {
    /// Each capacity with the token that created it.
    capacities: Mutex<Vec<(Capacity, String)>>,
    quota: Option<u32>,
}

impl FakeBedrock {
    /// An account whose no-commitment capacities may hold `quota` model units in all (none: no
    /// limit).
    pub fn with_quota(quota: Option<u32>) -> Self {
        Self {
            quota,
            ..Self::default()
        }
    }
}

impl ProvisionedThroughputs for FakeBedrock {
    async fn list(&self) -> Result<Vec<Capacity>, CapacityError> {
        Ok(self
            .capacities
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect())
    }
    async fn tags(&self, _: &str) -> Result<BTreeMap<String, String>, CapacityError> {
        Ok(BTreeMap::new())
    }
    async fn create(&self, order: &CreateOrder) -> Result<String, CapacityError> {
        let mut all = self.capacities.lock().unwrap();
        if let Some((c, _)) = all.iter().find(|(_, t)| *t == order.client_request_token) {
            return Ok(c.arn.clone());
        }
        let used: u32 = all.iter().map(|(c, _)| c.model_units).sum();
        if self.quota.is_some_and(|q| used + order.model_units > q) {
            return Err(CapacityError::QuotaExceeded("quota".into()));
        }
        let arn = format!(
            "arn:aws:bedrock:us-east-1:1:provisioned-model/{}",
            order.name
        );
        all.push((
            Capacity {
                arn: arn.clone(),
                name: order.name.clone(),
                model_id: Some(order.model_id.clone()),
                model_units: order.model_units,
                status: CapacityStatus::InService,
                commitment: order.commitment,
                commitment_expires_at: None,
                created_at: Utc::now(),
            },
            order.client_request_token.clone(),
        ));
        Ok(arn)
    }
    async fn tag(&self, _: &str, _: &[(String, String)]) -> Result<(), CapacityError> {
        Ok(())
    }
    async fn delete(&self, arn: &str) -> Result<(), CapacityError> {
        self.capacities
            .lock()
            .unwrap()
            .retain(|(c, _)| c.arn != arn);
        Ok(())
    }
}

/// A routing table that reads as never published, but that another run has always just
/// written: every `publish` fails with [`RoutingTableError::Conflict`]. Records nothing.
pub struct RaceTable;

impl RoutingTableSource for RaceTable {
    async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
        Ok(None)
    }
}

impl RoutingTableStore for RaceTable {
    async fn publish(&self, _: &RoutingTable) -> Result<(), RoutingTableError> {
        Err(RoutingTableError::Conflict)
    }
}
