//! The routing table on DynamoDB (the template's `RoutingTable`, `ROUTING_TABLE_NAME`): one
//! item, written by the capacity function, read by invoke-with-cache (and anyone who wants to
//! know where live Provisioned Throughput is).
//!
//! The item:
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `pk` | S | always `routing-table` (the table's partition key) |
//! | `version` | N | grows by one with every write; each write is conditional on the version it replaces |
//! | `updatedAt` | N | epoch seconds of the write |
//! | `routes` | M | base model id → L of S: the Provisioned Throughput ARNs to call for it, best first, each `InService` (or `Updating`, which serves) when written |
//! | `capacities` | S | JSON: the capacity function's records of the capacity it manages (name, ARN, model, units, commitment, status, whether routed, when withdrawn); not part of the routing contract |
//!
//! A model absent from `routes` has no live capacity: callers go on-demand.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;

use domain::capacity::{RoutingTable, RoutingTableError};
use domain::ports::{RoutingTableSource, RoutingTableStore};

/// Partition key attribute, as in infra/template.yaml.
pub const KEY_ATTRIBUTE: &str = "pk";
/// The one item's key.
pub const ITEM_KEY: &str = "routing-table";

#[derive(Debug, Clone)]
pub struct DynamoDbRoutingTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbRoutingTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable(error: impl std::error::Error) -> RoutingTableError {
    RoutingTableError::Unavailable(DisplayErrorContext(error).to_string())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<i64, RoutingTableError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| RoutingTableError::Unavailable(format!("routing table item without {name}")))
}

/// The item for a table.
pub fn to_item(table: &RoutingTable) -> Result<HashMap<String, AttributeValue>, RoutingTableError> {
    let routes = table
        .routes
        .iter()
        .map(|(model, arns)| {
            let arns = arns.iter().cloned().map(AttributeValue::S).collect();
            (model.clone(), AttributeValue::L(arns))
        })
        .collect();
    let capacities = serde_json::to_string(&table.capacities)
        .map_err(|e| RoutingTableError::Unavailable(format!("cannot encode records: {e}")))?;
    Ok([
        (KEY_ATTRIBUTE, AttributeValue::S(ITEM_KEY.to_owned())),
        ("version", AttributeValue::N(table.version.to_string())),
        ("updatedAt", AttributeValue::N(table.updated_at.to_string())),
        ("routes", AttributeValue::M(routes)),
        ("capacities", AttributeValue::S(capacities)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect())
}

/// The table in an item. Unreadable records are dropped (the routes are what matters).
pub fn from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<RoutingTable, RoutingTableError> {
    let version = u64::try_from(number(item, "version")?)
        .map_err(|_| RoutingTableError::Unavailable("a negative version".into()))?;
    let routes = match item.get("routes").and_then(|v| v.as_m().ok()) {
        None => BTreeMap::new(),
        Some(map) => map
            .iter()
            .map(|(model, arns)| {
                let arns = arns
                    .as_l()
                    .map(|l| l.iter().filter_map(|a| a.as_s().ok().cloned()).collect())
                    .unwrap_or_default();
                (model.clone(), arns)
            })
            .collect(),
    };
    let capacities = item
        .get("capacities")
        .and_then(|v| v.as_s().ok())
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    Ok(RoutingTable {
        version,
        updated_at: number(item, "updatedAt").unwrap_or(0),
        routes,
        capacities,
    })
}

impl RoutingTableSource for DynamoDbRoutingTable {
    async fn routing_table(&self) -> Result<Option<RoutingTable>, RoutingTableError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(ITEM_KEY.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(from_item).transpose()
    }
}

impl RoutingTableStore for DynamoDbRoutingTable {
    async fn publish(&self, table: &RoutingTable) -> Result<(), RoutingTableError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(table)?));
        let put = if table.version <= 1 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :previous")
                .expression_attribute_values(
                    ":previous",
                    AttributeValue::N((table.version - 1).to_string()),
                )
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(RoutingTableError::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::capacity::{CapacityRecord, Commitment};

    #[test]
    fn the_item_round_trips_and_routes_are_a_native_map() {
        let table = RoutingTable {
            version: 7,
            updated_at: 1_700_000_000,
            routes: [("m".to_owned(), vec!["arn:a".to_owned(), "arn:b".to_owned()])].into(),
            capacities: vec![CapacityRecord {
                name: "bgw-m-1u".into(),
                arn: Some("arn:a".into()),
                model_id: "m".into(),
                model_units: 1,
                commitment: Commitment::None,
                status: "InService".into(),
                routed: true,
                withdrawn_at: None,
                requested_at: None,
            }],
        };
        let item = to_item(&table).unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), ITEM_KEY);
        assert_eq!(item["routes"].as_m().unwrap()["m"].as_l().unwrap().len(), 2);
        assert_eq!(from_item(&item).unwrap(), table);
        let mut bare = item.clone();
        bare.remove("capacities");
        bare.remove("routes");
        let read = from_item(&bare).unwrap();
        assert!(read.routes.is_empty() && read.capacities.is_empty());
        bare.remove("version");
        assert!(from_item(&bare).is_err());
    }
}
