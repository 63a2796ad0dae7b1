//! Tenant keys and spend on DynamoDB. A key item holds the key's SHA-256, never the key; a
//! spend item per tenant and month is added to with `ADD`, atomic across instances. It also
//! holds the month's budget reservations: `reservations` (a string set of
//! [`Reservation::entry`]), their sum `reservedUsd`, and `committedUsd` (spend + reservations),
//! which a reservation's one conditional update compares with the budget.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use domain::error::TenancyError;
use domain::limits::TenantLimits;
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::{Reservation, Reserved, TenantKey};

/// Partition key of the keys table, as in infra/template.yaml.
pub const KEY_ATTRIBUTE: &str = "keyId";
/// Partition key of the spend table: `<tenant>#<YYYY-MM>`.
pub const SPEND_ATTRIBUTE: &str = "tenantMonth";
/// An addition: the spend, and the committed total (spend + reservations) with it.
pub const ADD_UPDATE: &str =
    "ADD spentUsd :usd, committedUsd :usd, requests :one SET expiresAt = :expires";
/// A reservation: held in the set `reservations` and counted in `committedUsd`.
pub const RESERVE_UPDATE: &str =
    "ADD committedUsd :usd, reservedUsd :usd, reservations :entry SET expiresAt = :expires";
/// A reservation's condition: the committed total leaves room for it (`:room` is the budget
/// less the reservation). A month item written before reservations (spend, no committed
/// total) fails it, and is brought up to date first.
pub const RESERVE_CONDITION: &str = "((attribute_not_exists(spentUsd) AND attribute_not_exists(committedUsd)) OR committedUsd <= :room) AND NOT contains(reservations, :held)";
/// A settlement: the reservation out, the spend in, the committed total by the difference.
pub const SETTLE_UPDATE: &str = "ADD spentUsd :usd, committedUsd :delta, reservedUsd :unreserve, requests :one DELETE reservations :entry SET expiresAt = :expires";
/// A settlement's condition: the reservation is still held (not purged as expired).
pub const SETTLE_CONDITION: &str = "contains(reservations, :held)";
/// Expired reservations purged at most at once (each is a condition term).
const PURGE_AT_MOST: usize = 25;

/// Spend items are kept about 13 months (DynamoDB TTL), long enough for a year's report.
const SPEND_RETENTION_SECONDS: i64 = 400 * 24 * 3600;

fn store_error(error: impl std::error::Error) -> TenancyError {
    TenancyError::Store(DisplayErrorContext(error).to_string())
}

fn is_condition_failure<R>(error: &SdkError<UpdateItemError, R>) -> bool {
    matches!(
        error.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}

#[derive(Debug, Clone)]
pub struct DynamoDbTenantKeys {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbTenantKeys {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<TenantKey, TenancyError> {
    serde_dynamo::from_item(item)
        .map_err(|e| TenancyError::Store(format!("unreadable key item: {e}")))
}

impl TenantKeyStore for DynamoDbTenantKeys {
    async fn get(&self, key_id: &str) -> Result<Option<TenantKey>, TenancyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key_id.to_owned()))
            .send()
            .await
            .map_err(store_error)?;
        output.item.map(from_item).transpose()
    }

    async fn create(&self, key: &TenantKey) -> Result<(), TenancyError> {
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(key)
            .map_err(|e| TenancyError::Store(format!("cannot encode key: {e}")))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(keyId)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(TenancyError::KeyExists(key.key_id.clone()))
            }
            Err(error) => Err(store_error(error)),
        }
    }

    async fn list(&self) -> Result<Vec<TenantKey>, TenancyError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            keys.push(from_item(item.map_err(store_error)?)?);
        }
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }

    async fn revoke(&self, key_id: &str, at: i64) -> Result<(), TenancyError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key_id.to_owned()))
            .update_expression("SET revokedAt = if_not_exists(revokedAt, :at)")
            .condition_expression("attribute_exists(keyId)")
            .expression_attribute_values(":at", AttributeValue::N(at.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => {
                Err(TenancyError::NoSuchKey(key_id.to_owned()))
            }
            Err(error) => Err(store_error(error)),
        }
    }

    async fn set_budget(
        &self,
        key_id: &str,
        monthly_budget_usd: Option<f64>,
    ) -> Result<(), TenancyError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key_id.to_owned()))
            .condition_expression("attribute_exists(keyId)");
        let update = match monthly_budget_usd {
            Some(budget) => update
                .update_expression("SET monthlyBudgetUsd = :budget")
                .expression_attribute_values(":budget", AttributeValue::N(budget.to_string())),
            None => update.update_expression("REMOVE monthlyBudgetUsd"),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => {
                Err(TenancyError::NoSuchKey(key_id.to_owned()))
            }
            Err(error) => Err(store_error(error)),
        }
    }

    async fn set_limits(&self, key_id: &str, limits: &TenantLimits) -> Result<(), TenancyError> {
        let mut sets = Vec::new();
        let mut removes = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key_id.to_owned()))
            .condition_expression("attribute_exists(keyId)");
        for (attribute, value) in [
            ("requestsPerMinute", limits.requests_per_minute),
            ("tokensPerMinute", limits.tokens_per_minute),
            ("concurrentRequests", limits.concurrent_requests),
        ] {
            match value {
                Some(value) => {
                    sets.push(format!("{attribute} = :{attribute}"));
                    update = update.expression_attribute_values(
                        format!(":{attribute}"),
                        AttributeValue::N(value.to_string()),
                    );
                }
                None => removes.push(attribute),
            }
        }
        let mut expression = Vec::new();
        if !sets.is_empty() {
            expression.push(format!("SET {}", sets.join(", ")));
        }
        if !removes.is_empty() {
            expression.push(format!("REMOVE {}", removes.join(", ")));
        }
        match update.update_expression(expression.join(" ")).send().await {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => {
                Err(TenancyError::NoSuchKey(key_id.to_owned()))
            }
            Err(error) => Err(store_error(error)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DynamoDbSpendLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    now_epoch: fn() -> i64,
}

impl DynamoDbSpendLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            now_epoch: || chrono::Utc::now().timestamp(),
        }
    }
}

fn spent_of(item: Option<&HashMap<String, AttributeValue>>) -> Result<f64, TenancyError> {
    match item.and_then(|i| i.get("spentUsd")) {
        None => Ok(0.0),
        Some(value) => value
            .as_n()
            .ok()
            .and_then(|n| n.parse::<f64>().ok())
            .ok_or_else(|| TenancyError::Store("spentUsd is not a number".into())),
    }
}

impl SpendLedger for DynamoDbSpendLedger {
    async fn spent(&self, tenant: &str, month: &str) -> Result<f64, TenancyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                SPEND_ATTRIBUTE,
                AttributeValue::S(format!("{tenant}#{month}")),
            )
            .send()
            .await
            .map_err(store_error)?;
        spent_of(output.item.as_ref())
    }

    async fn add(&self, tenant: &str, month: &str, usd: f64) -> Result<f64, TenancyError> {
        let expires_at = (self.now_epoch)() + SPEND_RETENTION_SECONDS;
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                SPEND_ATTRIBUTE,
                AttributeValue::S(format!("{tenant}#{month}")),
            )
            .update_expression(ADD_UPDATE)
            .expression_attribute_values(":usd", AttributeValue::N(format!("{usd:.9}")))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(store_error)?;
        spent_of(output.attributes.as_ref())
    }

    /// One conditional `UpdateItem` on the month's item. When it is refused, the item is read:
    /// expired reservations are purged (they stop counting) or a month item older than
    /// reservations gets its committed total, and the reservation is tried once more.
    async fn reserve(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        budget_usd: f64,
        now_epoch: i64,
    ) -> Result<Reserved, TenancyError> {
        let key = AttributeValue::S(format!("{tenant}#{month}"));
        let room = budget_usd - reservation.usd;
        if room < 0.0 {
            // More than the whole budget: no month could hold it.
            return Ok(Reserved::Refused { committed_usd: 0.0 });
        }
        for attempt in 0..2 {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(SPEND_ATTRIBUTE, key.clone())
                .update_expression(RESERVE_UPDATE)
                .condition_expression(RESERVE_CONDITION)
                .expression_attribute_values(
                    ":usd",
                    AttributeValue::N(format!("{:.9}", reservation.usd)),
                )
                .expression_attribute_values(
                    ":entry",
                    AttributeValue::Ss(vec![reservation.entry()]),
                )
                .expression_attribute_values(":room", AttributeValue::N(format!("{room:.9}")))
                .expression_attribute_values(":held", AttributeValue::S(reservation.entry()))
                .expression_attribute_values(
                    ":expires",
                    AttributeValue::N(((self.now_epoch)() + SPEND_RETENTION_SECONDS).to_string()),
                )
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Reserved::Held),
                Err(error) if is_condition_failure(&error) => {
                    let item = self.read_month(&key).await?;
                    // Held already (a retried request or a redelivered event): counted once.
                    if holds(item.as_ref(), &reservation.entry()) {
                        return Ok(Reserved::Held);
                    }
                    let committed = number_of(item.as_ref(), "committedUsd");
                    if attempt == 1 || !self.tidy(&key, item.as_ref(), now_epoch).await? {
                        return Ok(Reserved::Refused {
                            committed_usd: committed.unwrap_or_else(|| {
                                number_of(item.as_ref(), "spentUsd").unwrap_or(0.0)
                            }),
                        });
                    }
                }
                Err(error) => return Err(store_error(error)),
            }
        }
        Ok(Reserved::Refused { committed_usd: 0.0 })
    }

    async fn settle(
        &self,
        tenant: &str,
        month: &str,
        reservation: &Reservation,
        held: Reserved,
        actual_usd: f64,
    ) -> Result<f64, TenancyError> {
        if held != Reserved::Held {
            return self.add(tenant, month, actual_usd).await;
        }
        let entry = reservation.entry();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                SPEND_ATTRIBUTE,
                AttributeValue::S(format!("{tenant}#{month}")),
            )
            .update_expression(SETTLE_UPDATE)
            .condition_expression(SETTLE_CONDITION)
            .expression_attribute_values(":usd", AttributeValue::N(format!("{actual_usd:.9}")))
            .expression_attribute_values(
                ":delta",
                AttributeValue::N(format!("{:.9}", actual_usd - reservation.usd)),
            )
            .expression_attribute_values(
                ":unreserve",
                AttributeValue::N(format!("{:.9}", -reservation.usd)),
            )
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":entry", AttributeValue::Ss(vec![entry.clone()]))
            .expression_attribute_values(":held", AttributeValue::S(entry))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(((self.now_epoch)() + SPEND_RETENTION_SECONDS).to_string()),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => spent_of(output.attributes.as_ref()),
            // Purged as expired meanwhile: it no longer counts, so the spend is a plain addition.
            Err(error) if is_condition_failure(&error) => self.add(tenant, month, actual_usd).await,
            Err(error) => Err(store_error(error)),
        }
    }
}

/// Whether the month item's reservations hold `entry`.
fn holds(item: Option<&HashMap<String, AttributeValue>>, entry: &str) -> bool {
    item.and_then(|i| i.get("reservations"))
        .and_then(|r| r.as_ss().ok())
        .is_some_and(|set| set.iter().any(|e| e == entry))
}

fn number_of(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> Option<f64> {
    item.and_then(|i| i.get(name))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

impl DynamoDbSpendLedger {
    async fn read_month(
        &self,
        key: &AttributeValue,
    ) -> Result<Option<HashMap<String, AttributeValue>>, TenancyError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key(SPEND_ATTRIBUTE, key.clone())
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?
            .item)
    }

    /// Brings the month's item up to date for reservations: a committed total where it has
    /// none (an item older than reservations), or the expired reservations purged. Whether it
    /// changed anything (then the reservation is worth another try).
    async fn tidy(
        &self,
        key: &AttributeValue,
        item: Option<&HashMap<String, AttributeValue>>,
        now_epoch: i64,
    ) -> Result<bool, TenancyError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(SPEND_ATTRIBUTE, key.clone());
        let update = if number_of(item, "committedUsd").is_none() {
            update
                .update_expression("SET committedUsd = spentUsd")
                .condition_expression(
                    "attribute_exists(spentUsd) AND attribute_not_exists(committedUsd)",
                )
        } else {
            let expired: Vec<Reservation> = item
                .and_then(|i| i.get("reservations"))
                .and_then(|v| v.as_ss().ok())
                .into_iter()
                .flatten()
                .filter_map(|entry| Reservation::from_entry(entry))
                .filter(|r| r.expires_at <= now_epoch)
                .take(PURGE_AT_MOST)
                .collect();
            if expired.is_empty() {
                return Ok(false);
            }
            let usd: f64 = expired.iter().map(|r| r.usd).sum();
            let mut update = update
                .update_expression(
                    "ADD committedUsd :minus, reservedUsd :minus DELETE reservations :expired",
                )
                .expression_attribute_values(":minus", AttributeValue::N(format!("{:.9}", -usd)))
                .expression_attribute_values(
                    ":expired",
                    AttributeValue::Ss(expired.iter().map(Reservation::entry).collect()),
                );
            // Each purged once: all of them still held, or nothing is done.
            let mut conditions = Vec::new();
            for (i, reservation) in expired.iter().enumerate() {
                conditions.push(format!("contains(reservations, :e{i})"));
                update = update.expression_attribute_values(
                    format!(":e{i}"),
                    AttributeValue::S(reservation.entry()),
                );
            }
            update.condition_expression(conditions.join(" AND "))
        };
        match update.send().await {
            Ok(_) => Ok(true),
            // Another instance did it first: the item changed, so try again.
            Err(error) if is_condition_failure(&error) => Ok(true),
            Err(error) => Err(store_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_smithy_mocks::{mock, mock_client};

    /// The addition is one atomic ADD on the tenant's month, and the new total comes back.
    #[tokio::test]
    async fn spend_is_added_atomically_and_the_total_returned() {
        let add = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.key().and_then(|k| k.get(SPEND_ATTRIBUTE))
                    == Some(&AttributeValue::S("acme#2026-11".into()))
                    && r.update_expression() == Some(ADD_UPDATE)
                    && r.expression_attribute_values().and_then(|v| v.get(":usd"))
                        == Some(&AttributeValue::N("0.001500000".into()))
            })
            .then_output(|| {
                UpdateItemOutput::builder()
                    .attributes("spentUsd", AttributeValue::N("2.0015".into()))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, [&add]);
        let ledger = DynamoDbSpendLedger::new(client, "spend");
        assert_eq!(ledger.add("acme", "2026-11", 0.0015).await.unwrap(), 2.0015);
        assert_eq!(add.num_calls(), 1);
    }

    /// DynamoDB's answer to an update whose condition does not hold.
    fn condition_failed() -> UpdateItemError {
        UpdateItemError::ConditionalCheckFailedException(
            aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder().build(),
        )
    }

    fn reservation() -> Reservation {
        Reservation {
            id: "req-1".into(),
            usd: 0.25,
            expires_at: 2000,
        }
    }

    /// A reservation is one update, conditional on the committed total leaving room.
    #[tokio::test]
    async fn a_reservation_is_one_conditional_update_on_the_committed_total() {
        let reserve = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let value = |name: &str| r.expression_attribute_values().and_then(|v| v.get(name));
                r.key().and_then(|k| k.get(SPEND_ATTRIBUTE))
                    == Some(&AttributeValue::S("acme#2026-11".into()))
                    && r.update_expression() == Some(RESERVE_UPDATE)
                    && r.condition_expression() == Some(RESERVE_CONDITION)
                    && RESERVE_CONDITION.ends_with("AND NOT contains(reservations, :held)")
                    && value(":held") == Some(&AttributeValue::S("req-1|0.250000000|2000".into()))
                    && value(":room") == Some(&AttributeValue::N("9.750000000".into()))
                    && value(":usd") == Some(&AttributeValue::N("0.250000000".into()))
                    && value(":entry")
                        == Some(&AttributeValue::Ss(vec!["req-1|0.250000000|2000".into()]))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, [&reserve]);
        let ledger = DynamoDbSpendLedger::new(client, "spend");
        assert_eq!(
            ledger
                .reserve("acme", "2026-11", &reservation(), 10.0, 1000)
                .await,
            Ok(Reserved::Held)
        );
        assert_eq!(reserve.num_calls(), 1);
    }

    /// A reservation already held (a retried request, a redelivered event) fails the condition
    /// and is found in the set: held, counted once, nothing written again.
    #[tokio::test]
    async fn a_reservation_already_held_is_held_once() {
        let refused = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.update_expression() == Some(RESERVE_UPDATE))
            .then_error(condition_failed);
        let read = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
                .item("committedUsd", AttributeValue::N("0.25".into()))
                .item(
                    "reservations",
                    AttributeValue::Ss(vec!["req-1|0.250000000|2000".into()]),
                )
                .build()
        });
        let client = mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::Sequential,
            [&refused, &read]
        );
        let ledger = DynamoDbSpendLedger::new(client, "spend");
        assert_eq!(
            ledger
                .reserve("acme", "2026-11", &reservation(), 10.0, 1000)
                .await,
            Ok(Reserved::Held)
        );
        assert_eq!((refused.num_calls(), read.num_calls()), (1, 1));
    }

    /// A refused reservation purges the expired ones (each exactly once) and tries again.
    #[tokio::test]
    async fn a_refusal_purges_expired_reservations_and_tries_once_more() {
        let refused = || {
            mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(|r| r.update_expression() == Some(RESERVE_UPDATE))
                .then_error(condition_failed)
        };
        let first = refused();
        let read = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
                .item("committedUsd", AttributeValue::N("9.9".into()))
                .item(
                    "reservations",
                    AttributeValue::Ss(vec![
                        "dead|1.000000000|900".into(),
                        "live|0.100000000|5000".into(),
                    ]),
                )
                .build()
        });
        let purge = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let value = |name: &str| r.expression_attribute_values().and_then(|v| v.get(name));
                r.update_expression()
                    == Some(
                        "ADD committedUsd :minus, reservedUsd :minus DELETE reservations :expired",
                    )
                    && r.condition_expression() == Some("contains(reservations, :e0)")
                    && value(":minus") == Some(&AttributeValue::N("-1.000000000".into()))
                    && value(":expired")
                        == Some(&AttributeValue::Ss(vec!["dead|1.000000000|900".into()]))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let second = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::Sequential,
            [&first, &read, &purge, &second]
        );
        let ledger = DynamoDbSpendLedger::new(client, "spend");
        assert_eq!(
            ledger
                .reserve("acme", "2026-11", &reservation(), 10.0, 1000)
                .await,
            Ok(Reserved::Held)
        );
        assert_eq!(purge.num_calls(), 1);
        assert_eq!(second.num_calls(), 1);
    }

    /// Settling gives the reservation back and adds the spend, if it is still held; one
    /// purged as expired meanwhile makes the spend a plain addition.
    #[tokio::test]
    async fn settling_replaces_the_reservation_by_the_spend() {
        let settle = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let value = |name: &str| r.expression_attribute_values().and_then(|v| v.get(name));
                r.update_expression() == Some(SETTLE_UPDATE)
                    && r.condition_expression() == Some(SETTLE_CONDITION)
                    && value(":delta") == Some(&AttributeValue::N("-0.150000000".into()))
                    && value(":unreserve") == Some(&AttributeValue::N("-0.250000000".into()))
                    && value(":held") == Some(&AttributeValue::S("req-1|0.250000000|2000".into()))
            })
            .then_error(condition_failed);
        let add = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.update_expression() == Some(ADD_UPDATE))
            .then_output(|| {
                UpdateItemOutput::builder()
                    .attributes("spentUsd", AttributeValue::N("3.1".into()))
                    .build()
            });
        let client = mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::Sequential,
            [&settle, &add]
        );
        let ledger = DynamoDbSpendLedger::new(client, "spend");
        assert_eq!(
            ledger
                .settle("acme", "2026-11", &reservation(), Reserved::Held, 0.1)
                .await,
            Ok(3.1)
        );
    }

    #[tokio::test]
    async fn revoking_an_unknown_key_says_so() {
        let revoke = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.condition_expression() == Some("attribute_exists(keyId)"))
            .then_error(condition_failed);
        let client = mock_client!(aws_sdk_dynamodb, [&revoke]);
        let keys = DynamoDbTenantKeys::new(client, "keys");
        assert_eq!(
            keys.revoke("abc", 1).await,
            Err(TenancyError::NoSuchKey("abc".into()))
        );
    }

    /// Limits given are set, limits absent removed, on an existing key only.
    #[tokio::test]
    async fn limits_are_set_and_removed_in_one_update() {
        let set = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.update_expression()
                    == Some("SET requestsPerMinute = :requestsPerMinute, concurrentRequests = :concurrentRequests REMOVE tokensPerMinute")
                    && r.condition_expression() == Some("attribute_exists(keyId)")
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":concurrentRequests"))
                        == Some(&AttributeValue::N("2".into()))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, [&set]);
        let keys = DynamoDbTenantKeys::new(client, "keys");
        let limits = TenantLimits {
            requests_per_minute: Some(60),
            tokens_per_minute: None,
            concurrent_requests: Some(2),
        };
        keys.set_limits("abc", &limits).await.unwrap();
        assert_eq!(set.num_calls(), 1);
    }

    #[test]
    fn a_key_item_holds_the_hash_not_the_key() {
        let key = TenantKey {
            levers: domain::tenancy::KeyLevers::default(),
            key_id: "0123456789ab".into(),
            secret_sha256: "f".repeat(64),
            tenant: "acme".into(),
            models: vec!["m".into()],
            monthly_budget_usd: Some(5.0),
            created_at: 1,
            revoked_at: None,
            description: None,
            requests_per_minute: Some(60),
            tokens_per_minute: None,
            concurrent_requests: Some(2),
        };
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&key).unwrap();
        assert_eq!(
            item.get(KEY_ATTRIBUTE),
            Some(&AttributeValue::S("0123456789ab".into()))
        );
        assert_eq!(from_item(item).unwrap(), key);
    }
}
