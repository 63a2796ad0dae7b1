//! Deferred requests on DynamoDB: one item per request, the request as JSON beside the
//! attributes conditions and the schedule read (`owner`, `version`, and `pending` while the
//! request is not final, which puts it in the sparse `pending` index the schedule scans), and a
//! TTL. The schedule's lease and each model's observed batch turnaround are items of their own,
//! outside the index.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;

use domain::deferred::{DeferredGroup, DeferredRequest};
use domain::error::StoreError;
use domain::ports::DeferredStore;

/// Partition key attribute, as in infra/template.yaml.
pub const KEY_ATTRIBUTE: &str = "id";
/// Present (the model id) while a request is not final: the key of the sparse index.
pub const PENDING_ATTRIBUTE: &str = "pending";
/// The index of pending requests, as in infra/template.yaml.
pub const PENDING_INDEX: &str = "pending";
/// A request is kept this long after its deadline.
pub const RETENTION_SECONDS: i64 = 7 * 24 * 3600;
const LEASE_ID: &str = "#schedule-lease";
const TURNAROUND_PREFIX: &str = "#turnaround#";
/// Groups of requests (OpenAI's batches) are items of their own, outside the index.
const GROUP_PREFIX: &str = "#group#";
/// BatchGetItem's most keys a call.
const GET_MANY_CHUNK: usize = 100;
/// Rounds of BatchGetItem for the keys DynamoDB left unprocessed (throttling), at most.
const GET_MANY_ROUNDS: usize = 8;

#[derive(Debug, Clone)]
pub struct DynamoDbDeferredStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbDeferredStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable(error: impl std::error::Error) -> StoreError {
    StoreError(format!(
        "DynamoDB (deferred requests): {}",
        DisplayErrorContext(error)
    ))
}

fn is_conditional<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

/// An item: the key, the attributes conditions and listings read, the TTL and the payload.
fn item_of<T: serde::Serialize>(
    id: String,
    owner: &str,
    version: u64,
    expires_at: i64,
    payload: &T,
    pending: Option<&str>,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let payload = serde_json::to_string(payload)
        .map_err(|e| StoreError(format!("cannot encode a deferred item: {e}")))?;
    Ok([
        (KEY_ATTRIBUTE, AttributeValue::S(id)),
        ("owner", AttributeValue::S(owner.to_owned())),
        ("version", AttributeValue::N(version.to_string())),
        (
            "expiresAt",
            AttributeValue::N((expires_at + RETENTION_SECONDS).to_string()),
        ),
        ("payload", AttributeValue::S(payload)),
    ]
    .into_iter()
    .chain(pending.map(|model| (PENDING_ATTRIBUTE, AttributeValue::S(model.to_owned()))))
    .map(|(k, v)| (k.to_owned(), v))
    .collect())
}

fn item(request: &DeferredRequest) -> Result<HashMap<String, AttributeValue>, StoreError> {
    // Not final: in the pending index, under its model.
    let pending = (!request.status.is_final()).then_some(request.model_id.as_str());
    item_of(
        request.id.clone(),
        &request.owner,
        request.version,
        request.deadline,
        request,
        pending,
    )
}

fn group_item(group: &DeferredGroup) -> Result<HashMap<String, AttributeValue>, StoreError> {
    item_of(
        format!("{GROUP_PREFIX}{}", group.id),
        &group.owner,
        group.version,
        group.expires_at,
        group,
        None,
    )
}

fn payload_of<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let payload = item
        .get("payload")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError("a deferred item without payload".into()))?;
    serde_json::from_str(payload).map_err(|e| StoreError(format!("unreadable deferred item: {e}")))
}

impl DynamoDbDeferredStore {
    /// A put conditional on nothing being there (`previous` None) or on the version read.
    async fn put(
        &self,
        item: HashMap<String, AttributeValue>,
        previous: Option<u64>,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match previous {
            None => put.condition_expression("attribute_not_exists(id)"),
            Some(version) => put
                .condition_expression("version = :previous")
                .expression_attribute_values(":previous", AttributeValue::N(version.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl DeferredStore for DynamoDbDeferredStore {
    async fn create(&self, request: &DeferredRequest) -> Result<bool, StoreError> {
        self.put(item(request)?, None).await
    }

    async fn get(&self, id: &str) -> Result<Option<DeferredRequest>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(payload_of).transpose()
    }

    async fn update(&self, request: &DeferredRequest) -> Result<bool, StoreError> {
        self.put(item(request)?, Some(request.version.saturating_sub(1)))
            .await
    }

    async fn pending(&self, limit: usize) -> Result<Vec<DeferredRequest>, StoreError> {
        // The index holds only pending requests: the scan reads nothing else.
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .index_name(PENDING_INDEX)
            .into_paginator()
            .items()
            .send();
        let mut requests = Vec::new();
        while let Some(item) = pages.next().await {
            if requests.len() >= limit {
                break;
            }
            let request: DeferredRequest = payload_of(&item.map_err(unavailable)?)?;
            // The index is eventually consistent: the payload decides.
            if !request.status.is_final() {
                requests.push(request);
            }
        }
        Ok(requests)
    }

    async fn turnarounds(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(id, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S(TURNAROUND_PREFIX.into()))
            .into_paginator()
            .items()
            .send();
        let mut turnarounds = BTreeMap::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            let model = item
                .get(KEY_ATTRIBUTE)
                .and_then(|v| v.as_s().ok())
                .and_then(|id| id.strip_prefix(TURNAROUND_PREFIX));
            let seconds = item
                .get("seconds")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok());
            if let (Some(model), Some(seconds)) = (model, seconds) {
                turnarounds.insert(model.to_owned(), seconds);
            }
        }
        Ok(turnarounds)
    }

    async fn set_turnaround(&self, model_id: &str, seconds: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                KEY_ATTRIBUTE,
                AttributeValue::S(format!("{TURNAROUND_PREFIX}{model_id}")),
            )
            .item("seconds", AttributeValue::N(seconds.to_string()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn lease(&self, holder: &str, until: i64, now_epoch: i64) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, AttributeValue::S(LEASE_ID.to_owned()))
            .item("holder", AttributeValue::S(holder.to_owned()))
            .item("until", AttributeValue::N(until.to_string()))
            .condition_expression("attribute_not_exists(id) OR holder = :holder OR #until <= :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now_epoch.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release(&self, holder: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(LEASE_ID.to_owned()))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<DeferredRequest>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(GET_MANY_CHUNK) {
            let keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|id| {
                    HashMap::from([(KEY_ATTRIBUTE.to_owned(), AttributeValue::S(id.clone()))])
                })
                .collect();
            let mut wanted = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(unavailable)?,
            );
            for _ in 0..GET_MANY_ROUNDS {
                let Some(keys) = wanted.take() else { break };
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in output
                    .responses
                    .as_ref()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    found.push(payload_of(item)?);
                }
                wanted = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
            }
            if wanted.is_some() {
                return Err(StoreError(
                    "DynamoDB (deferred requests): keys left unprocessed after retries".into(),
                ));
            }
        }
        Ok(found)
    }

    async fn create_group(&self, group: &DeferredGroup) -> Result<bool, StoreError> {
        self.put(group_item(group)?, None).await
    }

    async fn get_group(&self, id: &str) -> Result<Option<DeferredGroup>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                KEY_ATTRIBUTE,
                AttributeValue::S(format!("{GROUP_PREFIX}{id}")),
            )
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(payload_of).transpose()
    }

    async fn update_group(&self, group: &DeferredGroup) -> Result<bool, StoreError> {
        self.put(group_item(group)?, Some(group.version.saturating_sub(1)))
            .await
    }

    /// A scan of the owner's group items: groups are few per owner, and expire a week after
    /// their window.
    async fn groups(&self, owner: &str) -> Result<Vec<DeferredGroup>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(id, :prefix) AND #o = :owner")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":prefix", AttributeValue::S(GROUP_PREFIX.into()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .into_paginator()
            .items()
            .send();
        let mut groups = Vec::new();
        while let Some(item) = pages.next().await {
            let group: DeferredGroup = payload_of(&item.map_err(unavailable)?)?;
            // The payload decides, not only the attribute the filter read.
            if group.owner == owner {
                groups.push(group);
            }
        }
        groups.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(groups)
    }
}
