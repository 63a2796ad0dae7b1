//! Tenant keys and spend on DynamoDB. A key item holds the key's SHA-256, never the key; a
//! spend item per tenant and month is added to with `ADD`, atomic across instances.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use domain::error::TenancyError;
use domain::limits::TenantLimits;
use domain::ports::{SpendLedger, TenantKeyStore};
use domain::tenancy::TenantKey;

/// Partition key of the keys table, as in infra/template.yaml.
pub const KEY_ATTRIBUTE: &str = "keyId";
/// Partition key of the spend table: `<tenant>#<YYYY-MM>`.
pub const SPEND_ATTRIBUTE: &str = "tenantMonth";
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
            .update_expression("ADD spentUsd :usd, requests :one SET expiresAt = :expires")
            .expression_attribute_values(":usd", AttributeValue::N(format!("{usd:.9}")))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(store_error)?;
        spent_of(output.attributes.as_ref())
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
                    && r.update_expression()
                        == Some("ADD spentUsd :usd, requests :one SET expiresAt = :expires")
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

    #[tokio::test]
    async fn revoking_an_unknown_key_says_so() {
        let revoke = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.condition_expression() == Some("attribute_exists(keyId)"))
            .then_error(|| {
                UpdateItemError::ConditionalCheckFailedException(
                    aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                        .build(),
                )
            });
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
