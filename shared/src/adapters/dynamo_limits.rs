//! Tenant limits on DynamoDB, in the spend table (its key `tenantMonth` and TTL `expiresAt`;
//! tenant names cannot hold `#`, so these keys never meet a `<tenant>#<YYYY-MM>` spend item):
//!
//! - `window#<tenant>#<minute>`: `requests` and `tokens` of one one-minute window, each
//!   admission one `UpdateItem` that adds to both on the condition that they stay within the
//!   limits; expires a few minutes after its window.
//! - `leases#<tenant>`: `leases`, a map of lease id → expiry (epoch seconds), and `version`.
//!   Taking a slot reads it, drops the expired leases, and writes the map back on the condition
//!   that `version` did not change (tried again on a conflict); giving it back removes the one
//!   lease and bumps `version`, so a concurrent taker rereads.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use domain::error::LimitError;
use domain::limits::{
    seconds_to_window_end, window_start, Exceeded, Leases, LimitKind, TenantLimits, WindowCounts,
    WINDOW_SECONDS,
};
use domain::ports::TenantLimiter;

use super::dynamo_tenancy::SPEND_ATTRIBUTE;

/// Attempts at writing the leases when other instances write them at the same time.
const LEASE_ATTEMPTS: usize = 5;
/// A window's item outlives its minute by this much (DynamoDB TTL), for late corrections.
const WINDOW_RETENTION_SECONDS: i64 = 600;

/// The `UpdateItem` of an admission: one request and the reserved tokens.
pub const ADMIT_UPDATE: &str = "ADD requests :one, tokens :tokens SET expiresAt = :expires";
/// The condition on the requests of a window under a requests-per-minute limit.
pub const REQUESTS_CONDITION: &str = "(attribute_not_exists(requests) OR requests < :rpm)";
/// The condition on the tokens of a window: the reservation fits in what is left.
pub const TOKENS_CONDITION: &str = "(attribute_not_exists(tokens) OR tokens <= :room)";
/// The condition of a lease write: nobody wrote the leases since they were read.
pub const LEASES_CONDITION: &str = "attribute_not_exists(version) OR version = :version";

fn store_error(error: impl std::error::Error) -> LimitError {
    LimitError::Store(DisplayErrorContext(error).to_string())
}

fn is_condition_failure<R>(error: &SdkError<UpdateItemError, R>) -> bool {
    matches!(
        error.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}

fn number(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> i64 {
    item.and_then(|i| i.get(name))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Counters and leases in a DynamoDB table (the spend table).
#[derive(Debug, Clone)]
pub struct DynamoDbLimiter {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbLimiter {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn window_key(tenant: &str, start: i64) -> AttributeValue {
        AttributeValue::S(format!("window#{tenant}#{start}"))
    }

    fn leases_key(tenant: &str) -> AttributeValue {
        AttributeValue::S(format!("leases#{tenant}"))
    }

    async fn read_leases(&self, tenant: &str) -> Result<Leases, LimitError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(SPEND_ATTRIBUTE, Self::leases_key(tenant))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let item = output.item.as_ref();
        let leases = item
            .and_then(|i| i.get("leases"))
            .and_then(|v| v.as_m().ok())
            .map(|map| {
                map.iter()
                    .filter_map(|(id, expiry)| {
                        Some((id.clone(), expiry.as_n().ok()?.parse::<i64>().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Leases {
            leases,
            version: u64::try_from(number(item, "version")).unwrap_or(0),
        })
    }
}

impl TenantLimiter for DynamoDbLimiter {
    async fn admit(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        tokens: u64,
        now_epoch: i64,
    ) -> Result<WindowCounts, LimitError> {
        let start = window_start(now_epoch);
        let retry_after_seconds = seconds_to_window_end(now_epoch);
        let exceeded = |kind, limit| {
            LimitError::Exceeded(Exceeded {
                kind,
                limit,
                retry_after_seconds,
            })
        };
        let mut conditions = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(SPEND_ATTRIBUTE, Self::window_key(tenant, start))
            .update_expression(ADMIT_UPDATE)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":tokens", AttributeValue::N(tokens.to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((start + WINDOW_SECONDS + WINDOW_RETENTION_SECONDS).to_string()),
            )
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(rpm) = limits.requests_per_minute {
            conditions.push(REQUESTS_CONDITION);
            update = update.expression_attribute_values(":rpm", AttributeValue::N(rpm.to_string()));
        }
        if let Some(tpm) = limits.tokens_per_minute {
            let Some(room) = u64::from(tpm).checked_sub(tokens) else {
                return Err(exceeded(LimitKind::TokensPerMinute, tpm));
            };
            conditions.push(TOKENS_CONDITION);
            update =
                update.expression_attribute_values(":room", AttributeValue::N(room.to_string()));
        }
        if !conditions.is_empty() {
            update = update.condition_expression(conditions.join(" AND "));
        }
        match update.send().await {
            Ok(output) => {
                let item = output.attributes.as_ref();
                Ok(WindowCounts {
                    window_start: start,
                    requests: u64::try_from(number(item, "requests")).unwrap_or(0),
                    tokens: u64::try_from(number(item, "tokens")).unwrap_or(0),
                })
            }
            Err(error) if is_condition_failure(&error) => {
                let old = match error.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(e)) => e.item.clone(),
                    _ => None,
                };
                let requests = number(old.as_ref(), "requests");
                Err(
                    match (limits.requests_per_minute, limits.tokens_per_minute) {
                        (Some(rpm), _) if requests >= i64::from(rpm) => {
                            exceeded(LimitKind::RequestsPerMinute, rpm)
                        }
                        (_, Some(tpm)) => exceeded(LimitKind::TokensPerMinute, tpm),
                        (Some(rpm), None) => exceeded(LimitKind::RequestsPerMinute, rpm),
                        (None, None) => {
                            LimitError::Store("an unconditional update was refused".into())
                        }
                    },
                )
            }
            Err(error) => Err(store_error(error)),
        }
    }

    async fn adjust_tokens(
        &self,
        tenant: &str,
        window_start: i64,
        delta: i64,
    ) -> Result<(), LimitError> {
        if delta == 0 {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key(SPEND_ATTRIBUTE, Self::window_key(tenant, window_start))
            .update_expression("ADD tokens :delta SET expiresAt = :expires")
            .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(
                    (window_start + WINDOW_SECONDS + WINDOW_RETENTION_SECONDS).to_string(),
                ),
            )
            .send()
            .await
            .map_err(store_error)?;
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
        let exceeded = LimitError::Exceeded(Exceeded {
            kind: LimitKind::ConcurrentRequests,
            limit,
            retry_after_seconds: 1,
        });
        for _ in 0..LEASE_ATTEMPTS {
            let read = self.read_leases(tenant).await?;
            let Some(written) = read.with_new(lease_id, expires_at, limit, now_epoch) else {
                return Err(exceeded);
            };
            let item_expiry = written.values().copied().max().unwrap_or(expires_at);
            let leases = written
                .into_iter()
                .map(|(id, expiry)| (id, AttributeValue::N(expiry.to_string())))
                .collect();
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(SPEND_ATTRIBUTE, Self::leases_key(tenant))
                .update_expression("SET leases = :leases, expiresAt = :expires ADD version :one")
                .condition_expression(LEASES_CONDITION)
                .expression_attribute_values(":leases", AttributeValue::M(leases))
                .expression_attribute_values(":expires", AttributeValue::N(item_expiry.to_string()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(
                    ":version",
                    AttributeValue::N(read.version.to_string()),
                )
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                // Another instance took or gave back a slot since the read: read again.
                Err(error) if is_condition_failure(&error) => continue,
                Err(error) => return Err(store_error(error)),
            }
        }
        // Still contended after every attempt: as many requests as that are in flight.
        Err(exceeded)
    }

    async fn release(&self, tenant: &str, lease_id: &str) -> Result<(), LimitError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(SPEND_ATTRIBUTE, Self::leases_key(tenant))
            .update_expression("REMOVE leases.#lease ADD version :one")
            .condition_expression("attribute_exists(leases)")
            .expression_attribute_names("#lease", lease_id)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(store_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn limits() -> TenantLimits {
        TenantLimits {
            requests_per_minute: Some(10),
            tokens_per_minute: Some(1000),
            concurrent_requests: Some(1),
        }
    }

    /// One conditional update counts the request and reserves its tokens in the window.
    #[tokio::test]
    async fn an_admission_is_one_update_conditional_on_both_limits() {
        let admit = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let value = |name: &str| r.expression_attribute_values().and_then(|v| v.get(name));
                r.key().and_then(|k| k.get(SPEND_ATTRIBUTE))
                    == Some(&AttributeValue::S("window#acme#120".into()))
                    && r.update_expression() == Some(ADMIT_UPDATE)
                    && r.condition_expression()
                        == Some(
                            "(attribute_not_exists(requests) OR requests < :rpm) AND (attribute_not_exists(tokens) OR tokens <= :room)",
                        )
                    && value(":rpm") == Some(&AttributeValue::N("10".into()))
                    && value(":room") == Some(&AttributeValue::N("700".into()))
                    && value(":tokens") == Some(&AttributeValue::N("300".into()))
            })
            .then_output(|| {
                UpdateItemOutput::builder()
                    .attributes("requests", AttributeValue::N("3".into()))
                    .attributes("tokens", AttributeValue::N("650".into()))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, [&admit]);
        let counts = DynamoDbLimiter::new(client, "spend")
            .admit("acme", &limits(), 300, 130)
            .await
            .unwrap();
        assert_eq!(
            counts,
            WindowCounts {
                window_start: 120,
                requests: 3,
                tokens: 650
            }
        );
    }

    /// A refused condition names the limit the window's counts were at.
    #[tokio::test]
    async fn a_full_window_names_the_limit_it_is_at() {
        let refuse = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
            UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .item("requests", AttributeValue::N("10".into()))
                    .item("tokens", AttributeValue::N("10".into()))
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_dynamodb, [&refuse]);
        let refused = DynamoDbLimiter::new(client, "spend")
            .admit("acme", &limits(), 300, 130)
            .await;
        assert_eq!(
            refused,
            Err(LimitError::Exceeded(Exceeded {
                kind: LimitKind::RequestsPerMinute,
                limit: 10,
                retry_after_seconds: 50
            }))
        );
        // A request larger than the whole limit is refused without a call.
        let client = mock_client!(aws_sdk_dynamodb, []);
        let refused = DynamoDbLimiter::new(client, "spend")
            .admit("acme", &limits(), 5000, 130)
            .await;
        assert!(
            matches!(refused, Err(LimitError::Exceeded(e)) if e.kind == LimitKind::TokensPerMinute)
        );
    }

    fn leases_item(version: &str, leases: &[(&str, &str)]) -> GetItemOutput {
        let map = leases
            .iter()
            .map(|(id, expiry)| ((*id).to_owned(), AttributeValue::N((*expiry).to_owned())))
            .collect();
        GetItemOutput::builder()
            .item("leases", AttributeValue::M(map))
            .item("version", AttributeValue::N(version.into()))
            .build()
    }

    /// A slot is taken by writing the live leases back on the version read; a conflict reads
    /// again, and an expired lease of a dead instance holds no slot.
    #[tokio::test]
    async fn a_lease_is_written_on_the_version_read_and_retried_on_conflict() {
        let first_read = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.consistent_read() == Some(true))
            .then_output(|| leases_item("4", &[]));
        let conflict = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
            UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().build(),
            )
        });
        let second_read = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| leases_item("5", &[("dead", "100")]));
        let write = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let value = |name: &str| r.expression_attribute_values().and_then(|v| v.get(name));
                r.key().and_then(|k| k.get(SPEND_ATTRIBUTE))
                    == Some(&AttributeValue::S("leases#acme".into()))
                    && r.condition_expression() == Some(LEASES_CONDITION)
                    && value(":version") == Some(&AttributeValue::N("5".into()))
                    && value(":leases").and_then(|l| l.as_m().ok()).map(|m| {
                        let mut ids: Vec<_> = m.keys().cloned().collect();
                        ids.sort();
                        ids
                    }) == Some(vec!["mine".to_owned()])
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::Sequential,
            [&first_read, &conflict, &second_read, &write]
        );
        DynamoDbLimiter::new(client, "spend")
            .acquire("acme", "mine", 1, 200, 1100)
            .await
            .unwrap();
        assert_eq!(write.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_tenant_at_its_concurrency_is_refused_and_a_release_removes_one_lease() {
        let read = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| leases_item("2", &[("other", "900")]));
        let client = mock_client!(aws_sdk_dynamodb, [&read]);
        let refused = DynamoDbLimiter::new(client, "spend")
            .acquire("acme", "mine", 1, 200, 1100)
            .await;
        assert!(
            matches!(refused, Err(LimitError::Exceeded(e)) if e.kind == LimitKind::ConcurrentRequests)
        );

        let release = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.update_expression() == Some("REMOVE leases.#lease ADD version :one")
                    && r.expression_attribute_names().and_then(|n| n.get("#lease"))
                        == Some(&"mine".to_owned())
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, [&release]);
        DynamoDbLimiter::new(client, "spend")
            .release("acme", "mine")
            .await
            .unwrap();
        assert_eq!(release.num_calls(), 1);
    }
}
