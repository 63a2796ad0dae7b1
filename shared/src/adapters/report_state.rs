//! metrics-publisher's watermark on DynamoDB: one item (`pk` = the state key) holding the end of
//! the last period published, the progress of a period published partway, the lease of the run
//! that publishes, and a version every write is conditional on.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;

use domain::ports::ReportStateStore;
use domain::reporting::{Partial, PublishLease, ReportState, StateError};

/// Partition key attribute, as in infra/template.yaml (`MetricsStateTable`).
pub const KEY_ATTRIBUTE: &str = "pk";

#[derive(Debug, Clone)]
pub struct DynamoDbReportState {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
}

impl DynamoDbReportState {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            key: key.into(),
        }
    }
}

fn unavailable(error: impl std::error::Error) -> StateError {
    StateError(DisplayErrorContext(error).to_string())
}

fn number<T: std::str::FromStr>(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> Result<Option<T>, StateError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(value) => value
            .as_n()
            .ok()
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| StateError(format!("attribute {name} is not a number"))),
    }
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<ReportState, StateError> {
    let partial = number::<i64>(item, "partialStart")?.map(|period_start| Partial {
        period_start,
        sent: item
            .get("partialSent")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
    });
    let lease = match (
        item.get("leaseOwner").and_then(|v| v.as_s().ok()),
        number::<i64>(item, "leaseUntil")?,
    ) {
        (Some(owner), Some(until_ms)) => Some(PublishLease {
            owner: owner.clone(),
            until_ms,
        }),
        _ => None,
    };
    Ok(ReportState {
        published_through: number(item, "publishedThrough")?,
        partial,
        lease,
        version: number(item, "version")?.unwrap_or(0),
    })
}

fn to_item(key: &str, state: &ReportState) -> HashMap<String, AttributeValue> {
    let n = |v: i64| AttributeValue::N(v.to_string());
    let mut item = HashMap::from([
        (KEY_ATTRIBUTE.to_owned(), AttributeValue::S(key.to_owned())),
        (
            "version".to_owned(),
            AttributeValue::N(state.version.to_string()),
        ),
    ]);
    if let Some(through) = state.published_through {
        item.insert("publishedThrough".to_owned(), n(through));
    }
    if let Some(partial) = &state.partial {
        item.insert("partialStart".to_owned(), n(partial.period_start));
        item.insert(
            "partialSent".to_owned(),
            AttributeValue::L(
                partial
                    .sent
                    .iter()
                    .map(|d| AttributeValue::S(d.clone()))
                    .collect(),
            ),
        );
    }
    if let Some(lease) = &state.lease {
        item.insert(
            "leaseOwner".to_owned(),
            AttributeValue::S(lease.owner.clone()),
        );
        item.insert("leaseUntil".to_owned(), n(lease.until_ms));
    }
    item
}

impl ReportStateStore for DynamoDbReportState {
    async fn load(&self) -> Result<Option<ReportState>, StateError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(self.key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.as_ref().map(from_item).transpose()
    }

    async fn save(&self, state: &ReportState) -> Result<bool, StateError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&self.key, state)));
        let request = if state.version <= 1 {
            request.condition_expression("attribute_not_exists(pk)")
        } else {
            request
                .condition_expression("version = :previous")
                .expression_attribute_values(
                    ":previous",
                    AttributeValue::N((state.version - 1).to_string()),
                )
        };
        match request.send().await {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_the_item() {
        let state = ReportState {
            published_through: Some(1_750_000_500),
            partial: Some(Partial {
                period_start: 1_750_000_500,
                sent: vec!["a".into(), "b".into()],
            }),
            lease: Some(PublishLease {
                owner: "run".into(),
                until_ms: 1_750_000_900_000,
            }),
            version: 7,
        };
        let item = to_item("reports", &state);
        assert_eq!(item["pk"], AttributeValue::S("reports".into()));
        assert_eq!(from_item(&item).unwrap(), state);
        let bare = ReportState {
            version: 1,
            ..ReportState::default()
        };
        assert_eq!(from_item(&to_item("k", &bare)).unwrap(), bare);
    }
}
