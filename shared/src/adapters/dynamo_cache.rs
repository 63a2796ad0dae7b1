//! The answer cache on DynamoDB: one item per key, TTL attribute in epoch seconds, large
//! payloads compressed, payloads that still do not fit under the 400 KB item limit not stored.

use std::io::{Read, Write};

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use domain::cache::{CacheEntry, CacheKey, CachedAnswer, Lease, StoredRecord};
use domain::error::CacheError;
use domain::ports::CacheStore;

/// Partition key attribute, as in infra/template.yaml.
pub const KEY_ATTRIBUTE: &str = "pk";
/// TTL attribute, as in infra/template.yaml.
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// Payloads above this are gzip-compressed.
pub const COMPRESS_ABOVE_BYTES: usize = 32 * 1024;
/// DynamoDB's item limit is 400 KB including attribute names; keep a margin.
pub const MAX_PAYLOAD_BYTES: usize = 390 * 1024;

/// An answer (`payload` or `payloadGz`) or a lease (`leaseOwner`, `leaseUntil`), never both:
/// storing the answer replaces the lease.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheItem {
    pk: String,
    /// Epoch seconds; DynamoDB's TTL deletes the item some time after it.
    #[serde(rename = "expiresAt")]
    expires_at: i64,
    #[serde(rename = "createdAt")]
    created_at: i64,
    #[serde(rename = "modelId", default, skip_serializing_if = "Option::is_none")]
    model_id: Option<String>,
    #[serde(
        rename = "leaseOwner",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    lease_owner: Option<String>,
    /// Epoch milliseconds.
    #[serde(
        rename = "leaseUntil",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    lease_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(
        rename = "payloadGz",
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_bytes"
    )]
    payload_gz: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct DynamoDbCacheStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// A DynamoDB client whose every call, retries included, ends within `operation_timeout`, so
/// a slow table costs a request that long at most.
pub fn client_with_timeout(
    sdk: &aws_config::SdkConfig,
    operation_timeout: std::time::Duration,
) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(operation_timeout)
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

impl DynamoDbCacheStore {
    /// A client of its own whose calls, retries included, end after `operation_timeout`: a slow
    /// table must not hold a request that can be answered without it.
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        operation_timeout: std::time::Duration,
    ) -> Self {
        Self::new(client_with_timeout(sdk, operation_timeout), table)
    }

    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn unavailable(error: impl std::error::Error) -> CacheError {
    CacheError::Unavailable(DisplayErrorContext(error).to_string())
}

/// The item for an entry: the payload as JSON, gzip-compressed when large.
fn to_item(key: &CacheKey, entry: &CacheEntry) -> Result<CacheItem, CacheError> {
    let json = serde_json::to_string(&entry.cached)
        .map_err(|e| CacheError::Unavailable(format!("cannot encode entry: {e}")))?;
    let (payload, payload_gz) = if json.len() > COMPRESS_ABOVE_BYTES {
        let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
        encoder
            .write_all(json.as_bytes())
            .and_then(|()| encoder.finish())
            .map(|gz| (None, Some(gz)))
            .map_err(|e| CacheError::Unavailable(format!("cannot compress entry: {e}")))?
    } else {
        (Some(json), None)
    };
    let size = payload.as_ref().map_or(0, String::len) + payload_gz.as_ref().map_or(0, Vec::len);
    if size > MAX_PAYLOAD_BYTES {
        return Err(CacheError::TooLarge(size));
    }
    Ok(CacheItem {
        pk: key.as_str().to_owned(),
        expires_at: entry.expires_at,
        created_at: entry.cached.created_at,
        model_id: Some(entry.cached.model_id.clone()),
        payload,
        payload_gz,
        ..CacheItem::default()
    })
}

fn lease_item(key: &CacheKey, lease: &Lease, now_ms: i64) -> CacheItem {
    CacheItem {
        pk: key.as_str().to_owned(),
        // TTL removes a lease whose holder died, a little after it lapses.
        expires_at: lease.until_ms.div_euclid(1000) + 1,
        created_at: now_ms.div_euclid(1000),
        lease_owner: Some(lease.owner.clone()),
        lease_until: Some(lease.until_ms),
        ..CacheItem::default()
    }
}

fn from_item(item: CacheItem) -> Result<StoredRecord, String> {
    let json = match (item.payload, item.payload_gz) {
        (Some(json), _) => json,
        (None, Some(gz)) => {
            let mut json = String::new();
            GzDecoder::new(gz.as_slice())
                .read_to_string(&mut json)
                .map_err(|e| format!("cannot decompress: {e}"))?;
            json
        }
        (None, None) => {
            return match (item.lease_owner, item.lease_until) {
                (Some(owner), Some(until_ms)) => Ok(StoredRecord::Lease(Lease { owner, until_ms })),
                _ => Err("neither an answer nor a lease".to_owned()),
            }
        }
    };
    let cached: CachedAnswer = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(StoredRecord::Answer(CacheEntry {
        cached,
        expires_at: item.expires_at,
    }))
}

/// Taken when nothing is there, the lease there has lapsed, or the answer there has expired.
const LEASE_CONDITION: &str = "attribute_not_exists(pk) \
     OR (attribute_not_exists(payload) AND attribute_not_exists(payloadGz) AND leaseUntil <= :nowMs) \
     OR expiresAt <= :nowSeconds";
/// Only the owner's lease, never an answer that replaced it.
const RELEASE_CONDITION: &str =
    "leaseOwner = :owner AND attribute_not_exists(payload) AND attribute_not_exists(payloadGz)";

/// `Ok(true)` when a conditional write happened, `Ok(false)` when its condition did not hold.
fn conditional<T, E>(
    result: Result<T, SdkError<E>>,
    condition_failed: fn(&E) -> bool,
) -> Result<bool, CacheError>
where
    E: std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(condition_failed) => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

impl CacheStore for DynamoDbCacheStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<StoredRecord>, CacheError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key.as_str().to_owned()))
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let decoded = serde_dynamo::from_item::<_, CacheItem>(item)
            .map_err(|e| e.to_string())
            .and_then(from_item);
        match decoded {
            Ok(entry) => Ok(Some(entry)),
            Err(reason) => {
                // An unreadable entry is a miss; the next store overwrites it.
                tracing::warn!(cache_key = key.as_str(), %reason, "unreadable cache item ignored");
                Ok(None)
            }
        }
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<(), CacheError> {
        let item = serde_dynamo::to_item(to_item(key, entry)?)
            .map_err(|e| CacheError::Unavailable(format!("cannot encode item: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn try_lease(
        &self,
        key: &CacheKey,
        lease: &Lease,
        now_ms: i64,
    ) -> Result<bool, CacheError> {
        let item = serde_dynamo::to_item(lease_item(key, lease, now_ms))
            .map_err(|e| CacheError::Unavailable(format!("cannot encode lease: {e}")))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(LEASE_CONDITION)
            .expression_attribute_values(":nowMs", number(now_ms))
            .expression_attribute_values(":nowSeconds", number(now_ms.div_euclid(1000)))
            .send()
            .await;
        conditional(result, PutItemError::is_conditional_check_failed_exception)
    }

    async fn release(&self, key: &CacheKey, owner: &str) -> Result<(), CacheError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(key.as_str().to_owned()))
            .condition_expression(RELEASE_CONDITION)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        // Not the owner's any more (answered, or taken over): nothing to give back.
        conditional(
            result,
            DeleteItemError::is_conditional_check_failed_exception,
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use domain::conversation::{ContentBlock, Message, ModelAnswer, Role, Usage};
    use sha2::Digest;
    use std::collections::HashMap;

    fn entry(text: String) -> CacheEntry {
        CacheEntry {
            cached: CachedAnswer {
                answer: ModelAnswer {
                    latency: None,
                    invoked_model: None,
                    service_tier: None,
                    message: Message {
                        role: Role::Assistant,
                        content: vec![ContentBlock::text(text)],
                    },
                    stop_reason: "end_turn".into(),
                    usage: Usage::new(3, 4),
                },
                model_id: "m".into(),
                cost_usd: 0.25,
                created_at: 1_000,
            },
            expires_at: 4_600,
        }
    }

    #[test]
    fn small_entries_are_plain_large_ones_compressed_huge_ones_refused() {
        let key = CacheKey::from_hex("k");
        let small = to_item(&key, &entry("short".into())).unwrap();
        assert!(small.payload.is_some() && small.payload_gz.is_none());

        let large_entry = entry("word ".repeat(100_000));
        let large = to_item(&key, &large_entry).unwrap();
        assert!(large.payload.is_none());
        assert!(large.payload_gz.as_ref().unwrap().len() < COMPRESS_ABOVE_BYTES);
        assert_eq!(from_item(large).unwrap(), StoredRecord::Answer(large_entry));

        // Incompressible text over the limit.
        let noise: String = (0..20_000u32)
            .flat_map(|i| sha2::Sha256::digest(i.to_le_bytes()))
            .map(|b| char::from(b'!' + b % 90))
            .collect();
        assert!(matches!(
            to_item(&key, &entry(noise)),
            Err(CacheError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn put_writes_key_ttl_and_payload_then_get_reads_them_back() {
        let stored = entry("hello".into());
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(to_item(&CacheKey::from_hex("abc"), &stored).unwrap()).unwrap();
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|req| {
                let item = req.item().unwrap();
                req.table_name() == Some("cache")
                    && item.get("pk") == Some(&AttributeValue::S("abc".into()))
                    && item.get("expiresAt") == Some(&AttributeValue::N("4600".into()))
                    && item.contains_key("payload")
            })
            .then_output(|| PutItemOutput::builder().build());
        let get = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|req| {
                req.key().and_then(|k| k.get("pk")) == Some(&AttributeValue::S("abc".into()))
            })
            .then_output(move || {
                GetItemOutput::builder()
                    .set_item(Some(item.clone()))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let store = DynamoDbCacheStore::new(client, "cache");
        store
            .put(&CacheKey::from_hex("abc"), &stored)
            .await
            .unwrap();
        let read = store.get(&CacheKey::from_hex("abc")).await.unwrap();
        assert_eq!(read, Some(StoredRecord::Answer(stored)));
        assert_eq!(put.num_calls(), 1);
        assert_eq!(get.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_lease_is_a_conditional_put_and_its_release_a_conditional_delete() {
        use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
        use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;

        let lease = Lease {
            owner: "req-1".into(),
            until_ms: 1_700_000_030_000,
        };
        let claim = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|req| {
                let item = req.item().unwrap();
                let values = req.expression_attribute_values().unwrap();
                req.condition_expression() == Some(LEASE_CONDITION)
                    && values.get(":nowMs") == Some(&AttributeValue::N("1700000000000".into()))
                    && values.get(":nowSeconds") == Some(&AttributeValue::N("1700000000".into()))
                    && item.get("leaseOwner") == Some(&AttributeValue::S("req-1".into()))
                    && item.get("leaseUntil") == Some(&AttributeValue::N("1700000030000".into()))
                    && item.get("expiresAt") == Some(&AttributeValue::N("1700000031".into()))
                    && !item.contains_key("payload")
            })
            .sequence()
            .output(|| PutItemOutput::builder().build())
            .error(|| {
                PutItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder().build(),
                )
            })
            .build();
        let release = mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|req| {
                req.condition_expression() == Some(RELEASE_CONDITION)
                    && req
                        .expression_attribute_values()
                        .and_then(|v| v.get(":owner"))
                        == Some(&AttributeValue::S("req-1".into()))
            })
            .sequence()
            .output(|| DeleteItemOutput::builder().build())
            .error(|| {
                DeleteItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder().build(),
                )
            })
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&claim, &release]);
        let store = DynamoDbCacheStore::new(client, "cache");
        let key = CacheKey::from_hex("k");
        assert!(store
            .try_lease(&key, &lease, 1_700_000_000_000)
            .await
            .unwrap());
        assert!(!store
            .try_lease(&key, &lease, 1_700_000_000_000)
            .await
            .unwrap());
        store.release(&key, "req-1").await.unwrap();
        // Already replaced by an answer or taken over: nothing to do, no error.
        store.release(&key, "req-1").await.unwrap();
        assert_eq!((claim.num_calls(), release.num_calls()), (2, 2));
    }

    #[test]
    fn a_lease_item_reads_back_as_a_lease_never_as_an_answer() {
        let lease = Lease {
            owner: "o".into(),
            until_ms: 5_000,
        };
        let item = lease_item(&CacheKey::from_hex("k"), &lease, 1_000);
        assert_eq!(from_item(item).unwrap(), StoredRecord::Lease(lease));
        assert!(from_item(CacheItem::default()).is_err());
    }
}
