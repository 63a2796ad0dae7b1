//! The routing table the capacity function publishes and invoke-with-cache reads: base model
//! → live Provisioned Throughput ARNs, with what the function remembers of its own capacity.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;
use crate::routing::{CapacityRouter, Plan, Route, Target};

/// What the capacity function remembers of a capacity of its own, in the routing table item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityRecord {
    pub name: String,
    /// `None` until Bedrock has answered the creation.
    pub arn: Option<String>,
    pub model_id: String,
    pub model_units: u32,
    pub commitment: Commitment,
    /// As last listed, or `Requested` before it was.
    pub status: String,
    /// Whether the table routes to it.
    pub routed: bool,
    /// When its route was withdrawn (epoch seconds): it is deleted a drain later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<i64>,
    /// When its creation was requested (epoch seconds), until Bedrock lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<i64>,
}

/// The published routing table: base model id → the Provisioned Throughput ARNs to call, best
/// first, all `InService` (or `Updating`, which serves) when written. `version` grows by one
/// with every write, each conditional on the version it replaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingTable {
    pub version: u64,
    /// Epoch seconds of the write.
    pub updated_at: i64,
    pub routes: BTreeMap<String, Vec<String>>,
    /// The capacity function's own records (not part of the routing contract).
    #[serde(default)]
    pub capacities: Vec<CapacityRecord>,
}

impl RoutingTable {
    pub(crate) fn record(&self, name: &str) -> Option<&CapacityRecord> {
        self.capacities.iter().find(|r| r.name == name)
    }

    pub(crate) fn routes_to(&self, arn: &str) -> bool {
        self.routes.values().flatten().any(|a| a == arn)
    }

    /// The plan for `model`: the static configuration when it routes to Provisioned Throughput
    /// (the `PROVISIONED_THROUGHPUT` override, custom models, the schedule policy inside its
    /// window), else the table's first live capacity with spillover to on-demand, else
    /// on-demand.
    pub fn plan(&self, router: &CapacityRouter, model: &str, now: DateTime<Utc>) -> Plan {
        live_plan(router, Some(self), model, now)
    }
}

/// [`RoutingTable::plan`], for a table that may be absent.
pub fn live_plan(
    router: &CapacityRouter,
    table: Option<&RoutingTable>,
    model: &str,
    now: DateTime<Utc>,
) -> Plan {
    let configured = router.plan(model, now);
    if configured.primary.route == Route::Provisioned {
        return configured;
    }
    match table
        .and_then(|t| t.routes.get(model))
        .and_then(|arns| arns.first())
    {
        Some(arn) => Plan {
            primary: Target {
                latency: None,
                guardrail: None,
                invoke_id: arn.clone(),
                route: Route::Provisioned,
                model: model.to_owned(),
                service_tier: None,
            },
            spillover: Some(Target::on_demand(model)),
        },
        None => configured,
    }
}
