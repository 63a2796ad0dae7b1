//! The batch registry on DynamoDB: one item per batch, the batch as JSON beside the attributes
//! that conditions and the schedule read (`status`, `version`, and `announcement` while a
//! batch's end is still to be announced), and a TTL.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;

use domain::batch::{Batch, BatchStatus};
use domain::error::RegistryError;
use domain::ports::BatchRegistry;

/// Partition key attribute, as in infra/template.yaml.
pub const KEY_ATTRIBUTE: &str = "batchId";
/// The owner's attribute, beside the payload, for listings to filter on.
pub const OWNER_ATTRIBUTE: &str = "owner";
/// A batch is kept this long after its last change.
pub const RETENTION_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct DynamoDbBatchRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbBatchRegistry {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable(error: impl std::error::Error) -> RegistryError {
    RegistryError::Unavailable(DisplayErrorContext(error).to_string())
}

fn status_name(status: BatchStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The attribute that marks an item whose end is still to be announced (absent otherwise, so the
/// schedule's scan finds them without reading every payload), and its one value.
pub const ANNOUNCEMENT_ATTRIBUTE: &str = "announcement";
const ANNOUNCEMENT_PENDING: &str = "Pending";
/// The attribute that marks an ended item whose tenant budget hold is still to be settled
/// (absent otherwise), and its one value.
pub const BUDGET_ATTRIBUTE: &str = "budgetHold";
const BUDGET_UNSETTLED: &str = "Unsettled";

fn item(batch: &Batch) -> Result<std::collections::HashMap<String, AttributeValue>, RegistryError> {
    let payload = serde_json::to_string(batch)
        .map_err(|e| RegistryError::Unavailable(format!("cannot encode batch: {e}")))?;
    let pending = batch.announcement_pending().then(|| {
        (
            ANNOUNCEMENT_ATTRIBUTE,
            AttributeValue::S(ANNOUNCEMENT_PENDING.to_owned()),
        )
    });
    let unsettled = batch.budget_unsettled().then(|| {
        (
            BUDGET_ATTRIBUTE,
            AttributeValue::S(BUDGET_UNSETTLED.to_owned()),
        )
    });
    Ok([
        (KEY_ATTRIBUTE, AttributeValue::S(batch.batch_id.clone())),
        ("status", AttributeValue::S(status_name(batch.status))),
        (OWNER_ATTRIBUTE, AttributeValue::S(batch.owner.clone())),
        ("version", AttributeValue::N(batch.version.to_string())),
        (
            "expiresAt",
            AttributeValue::N((batch.updated_at + RETENTION_SECONDS).to_string()),
        ),
        ("payload", AttributeValue::S(payload)),
    ]
    .into_iter()
    .chain(pending)
    .chain(unsettled)
    .map(|(k, v)| (k.to_owned(), v))
    .collect())
}

fn from_item(
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Result<Batch, RegistryError> {
    let payload = item
        .get("payload")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| RegistryError::Unavailable("a batch item without payload".into()))?;
    serde_json::from_str(payload)
        .map_err(|e| RegistryError::Unavailable(format!("unreadable batch item: {e}")))
}

impl DynamoDbBatchRegistry {
    /// A scan (of one owner's items, or all) sorted in memory, the page token an offset: enough
    /// for a registry whose items expire after 30 days; an index by owner and time would serve
    /// a much larger one.
    async fn page(
        &self,
        owner: Option<&str>,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<Batch>, Option<String>), RegistryError> {
        let start = match page_token {
            None => 0,
            Some(token) => token.parse::<usize>().map_err(|_| {
                RegistryError::Unavailable(format!("{token:?} is not a page token of this API"))
            })?,
        };
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .set_filter_expression(owner.map(|_| "#o = :owner".to_owned()))
            .set_expression_attribute_names(
                owner.map(|_| [("#o".to_owned(), OWNER_ATTRIBUTE.to_owned())].into()),
            )
            .set_expression_attribute_values(
                owner.map(|o| [(":owner".to_owned(), AttributeValue::S(o.to_owned()))].into()),
            )
            .into_paginator()
            .items()
            .send();
        let mut batches = Vec::new();
        while let Some(item) = pages.next().await {
            let batch = from_item(&item.map_err(unavailable)?)?;
            // The payload decides, not only the attribute the filter read.
            if owner.is_none_or(|owner| batch.owner == owner) {
                batches.push(batch);
            }
        }
        batches.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.batch_id.cmp(&b.batch_id))
        });
        let end = start.saturating_add(limit).min(batches.len());
        let next = (end < batches.len()).then(|| end.to_string());
        let page = batches.drain(start.min(end)..end).collect();
        Ok((page, next))
    }
}

impl BatchRegistry for DynamoDbBatchRegistry {
    async fn create(&self, batch: &Batch) -> Result<bool, RegistryError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(batch)?))
            .condition_expression("attribute_not_exists(batchId)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, batch_id: &str) -> Result<Option<Batch>, RegistryError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(batch_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(from_item).transpose()
    }

    async fn update(&self, batch: &Batch) -> Result<(), RegistryError> {
        let previous = batch.version.saturating_sub(1);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(batch)?))
            .condition_expression("version = :previous")
            .expression_attribute_values(":previous", AttributeValue::N(previous.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(RegistryError::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn recent(
        &self,
        owner: &str,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<Batch>, Option<String>), RegistryError> {
        self.page(Some(owner), limit, page_token).await
    }

    async fn every(
        &self,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<Batch>, Option<String>), RegistryError> {
        self.page(None, limit, page_token).await
    }

    /// Batches not yet ended and, for the schedule to finish them, ended ones whose end is still
    /// to be announced or whose budget hold is still to be settled ([`Batch::is_open`]).
    async fn unfinished(&self) -> Result<Vec<Batch>, RegistryError> {
        let open = [
            BatchStatus::Queued,
            BatchStatus::InProgress,
            BatchStatus::Stopping,
        ];
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("#s IN (:a, :b, :c) OR #an = :pending OR #bh = :unsettled")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#an", ANNOUNCEMENT_ATTRIBUTE)
            .expression_attribute_names("#bh", BUDGET_ATTRIBUTE)
            .expression_attribute_values(
                ":pending",
                AttributeValue::S(ANNOUNCEMENT_PENDING.to_owned()),
            )
            .expression_attribute_values(
                ":unsettled",
                AttributeValue::S(BUDGET_UNSETTLED.to_owned()),
            );
        for (name, status) in [":a", ":b", ":c"].iter().zip(open) {
            scan = scan.expression_attribute_values(*name, AttributeValue::S(status_name(status)));
        }
        let mut pages = scan.into_paginator().items().send();
        let mut batches = Vec::new();
        while let Some(item) = pages.next().await {
            batches.push(from_item(&item.map_err(unavailable)?)?);
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::scan::ScanOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use domain::batch::Announcement;
    use serde_json::json;

    fn batch(announcement: Option<Announcement>) -> Batch {
        let mut batch: Batch = serde_json::from_value(json!({
            "batchId": "abc", "modelId": "m", "source": "api", "status": "Completed", "jobs": [],
            "recordCount": 3, "resultsKey": "batch-results/abc/results.jsonl",
            "createdAt": 1, "updatedAt": 2, "version": 4
        }))
        .unwrap();
        batch.announcement = announcement;
        batch
    }

    #[test]
    fn only_an_end_still_to_announce_carries_the_attribute_the_schedule_scans_for() {
        let pending = item(&batch(Some(Announcement::Pending))).unwrap();
        assert_eq!(
            pending.get(ANNOUNCEMENT_ATTRIBUTE),
            Some(&AttributeValue::S("Pending".into()))
        );
        assert_eq!(
            from_item(&pending).unwrap(),
            batch(Some(Announcement::Pending))
        );
        for other in [None, Some(Announcement::Announced)] {
            let written = item(&batch(other)).unwrap();
            assert!(!written.contains_key(ANNOUNCEMENT_ATTRIBUTE), "{other:?}");
            assert_eq!(from_item(&written).unwrap().announcement, other);
        }
    }

    #[test]
    fn only_an_ended_batch_with_its_budget_hold_unsettled_carries_the_budget_attribute() {
        let mut ended = batch(None);
        ended.budget = Some(domain::batch::BudgetHold {
            tenant: "acme".into(),
            month: "2026-12".into(),
            reserved_usd: 2.0,
            expires_at: 9,
            settled: false,
        });
        let written = item(&ended).unwrap();
        assert_eq!(
            written.get(BUDGET_ATTRIBUTE),
            Some(&AttributeValue::S("Unsettled".into()))
        );
        assert_eq!(from_item(&written).unwrap(), ended);
        if let Some(hold) = ended.budget.as_mut() {
            hold.settled = true;
        }
        assert!(!item(&ended).unwrap().contains_key(BUDGET_ATTRIBUTE));
    }

    #[tokio::test]
    async fn the_schedule_reads_unended_batches_and_ends_still_to_announce() {
        let scan = mock!(aws_sdk_dynamodb::Client::scan)
            .match_requests(|r| {
                let values = r.expression_attribute_values().unwrap();
                r.filter_expression()
                    == Some("#s IN (:a, :b, :c) OR #an = :pending OR #bh = :unsettled")
                    && r.expression_attribute_names().unwrap()["#an"] == ANNOUNCEMENT_ATTRIBUTE
                    && r.expression_attribute_names().unwrap()["#bh"] == BUDGET_ATTRIBUTE
                    && values[":unsettled"] == AttributeValue::S("Unsettled".into())
                    && values[":pending"] == AttributeValue::S("Pending".into())
                    && values[":a"] == AttributeValue::S("Queued".into())
            })
            .then_output(|| {
                ScanOutput::builder()
                    .items(item(&batch(Some(Announcement::Pending))).unwrap())
                    .build()
            });
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression() == Some("version = :previous")
                    && !r.item().unwrap().contains_key(ANNOUNCEMENT_ATTRIBUTE)
            })
            .then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&scan, &put]);
        let registry = DynamoDbBatchRegistry::new(client, "batches");
        let open = registry.unfinished().await.unwrap();
        assert_eq!(open.len(), 1);
        assert!(open[0].announcement_pending());
        // Recorded as announced: the attribute is gone, so the next scan passes it by.
        let mut announced = open[0].clone();
        announced.announcement = Some(Announcement::Announced);
        announced.version += 1;
        registry.update(&announced).await.unwrap();
        assert_eq!((scan.num_calls(), put.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_listing_reads_only_the_owners_items_and_a_report_reads_every_owners() {
        let mine = Batch {
            owner: "role:\"1\"/\"a\"".into(),
            ..batch(None)
        };
        let theirs = Batch {
            batch_id: "def".into(),
            owner: "role:\"1\"/\"b\"".into(),
            ..batch(None)
        };
        let written = item(&mine).unwrap();
        assert_eq!(
            written.get(OWNER_ATTRIBUTE),
            Some(&AttributeValue::S(mine.owner.clone()))
        );
        let owned = mock!(aws_sdk_dynamodb::Client::scan)
            .match_requests(|r| {
                r.filter_expression() == Some("#o = :owner")
                    && r.expression_attribute_names().unwrap()["#o"] == OWNER_ATTRIBUTE
                    && r.expression_attribute_values().unwrap()[":owner"]
                        == AttributeValue::S("role:\"1\"/\"a\"".into())
            })
            // Even an item the filter let through is checked against its payload.
            .then_output({
                let (mine, theirs) = (item(&mine).unwrap(), item(&theirs).unwrap());
                move || {
                    ScanOutput::builder()
                        .items(mine.clone())
                        .items(theirs.clone())
                        .build()
                }
            });
        let every = mock!(aws_sdk_dynamodb::Client::scan)
            .match_requests(|r| r.filter_expression().is_none())
            .then_output({
                let (mine, theirs) = (item(&mine).unwrap(), item(&theirs).unwrap());
                move || {
                    ScanOutput::builder()
                        .items(mine.clone())
                        .items(theirs.clone())
                        .build()
                }
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&owned, &every]);
        let registry = DynamoDbBatchRegistry::new(client, "batches");
        let (page, next) = registry.recent(&mine.owner, 10, None).await.unwrap();
        assert_eq!((page, next), (vec![mine.clone()], None));
        let (page, _) = registry.every(10, None).await.unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!((owned.num_calls(), every.num_calls()), (1, 1));
    }
}
