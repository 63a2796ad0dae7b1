//! Batch completion events on EventBridge (`PutEvents`).

use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::json;

use domain::batch::Batch;
use domain::error::EventError;
use domain::ports::EventPublisher;

/// The `source` of the events this toolkit publishes.
pub const EVENT_SOURCE: &str = "bedrock-toolkit.batch";
/// The `detail-type` of a batch's end.
pub const BATCH_ENDED: &str = "Batch Ended";

#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// A client from the SDK's configuration (on the local stack, `AWS_ENDPOINT_URL_EVENTBRIDGE`
    /// points it at moto).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        Self::new(aws_sdk_eventbridge::Client::new(sdk), bus)
    }

    /// The bus the events go to.
    pub fn bus(&self) -> &str {
        &self.bus
    }
}

/// The event's detail: what a subscriber needs to fetch the results, never record text.
pub fn detail(batch: &Batch) -> serde_json::Value {
    json!({
        "batchId": batch.batch_id,
        // Subscribers route by it: a rule per team matches its owner.
        "owner": batch.owner,
        "name": batch.name,
        "status": batch.status,
        "modelId": batch.model_id,
        "source": batch.source,
        "recordCount": batch.record_count,
        "summary": batch.summary,
        "resultsKey": batch.results_key,
    })
}

impl EventPublisher for EventBridgePublisher {
    async fn batch_ended(&self, batch: &Batch) -> Result<(), EventError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(EVENT_SOURCE)
            .detail_type(BATCH_ENDED)
            .detail(detail(batch).to_string())
            .build();
        let output = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                EventError::Call(format!("bus {}: {}", self.bus, DisplayErrorContext(e)))
            })?;
        if output.failed_entry_count() > 0 {
            let reason = output
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(EventError::NotAccepted(format!(
                "bus {}: {reason}",
                self.bus
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eventbridge::operation::put_events::{PutEventsError, PutEventsOutput};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn batch() -> Batch {
        serde_json::from_value(json!({
            "batchId": "abc", "owner": "tenant:\"team-a\"", "modelId": "m", "source": "api",
            "status": "Completed", "jobs": [],
            "recordCount": 3, "resultsKey": "batch-results/abc/results.jsonl",
            "createdAt": 1, "updatedAt": 2, "version": 4
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_batch_end_is_one_put_events_entry_on_the_bus() {
        let put = mock!(aws_sdk_eventbridge::Client::put_events)
            .match_requests(|req| {
                let entry = &req.entries()[0];
                let detail: serde_json::Value =
                    serde_json::from_str(entry.detail().unwrap()).unwrap();
                req.entries().len() == 1
                    && entry.event_bus_name() == Some("toolkit-bus")
                    && entry.source() == Some(EVENT_SOURCE)
                    && entry.detail_type() == Some(BATCH_ENDED)
                    && detail["batchId"] == "abc"
                    && detail["owner"] == "tenant:\"team-a\""
                    && detail["status"] == "Completed"
                    && detail["resultsKey"] == "batch-results/abc/results.jsonl"
            })
            .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&put]);
        EventBridgePublisher::new(client, "toolkit-bus")
            .batch_ended(&batch())
            .await
            .unwrap();
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_failed_put_events_names_eventbridge_and_the_bus() {
        let failing = mock!(aws_sdk_eventbridge::Client::put_events).then_error(|| {
            PutEventsError::InternalException(
                aws_sdk_eventbridge::types::error::InternalException::builder()
                    .message("try later")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&failing]);
        let error = EventBridgePublisher::new(client, "toolkit-bus")
            .batch_ended(&batch())
            .await
            .unwrap_err();
        assert!(matches!(error, EventError::Call(_)), "{error:?}");
        let text = error.to_string();
        assert!(
            text.starts_with("EventBridge PutEvents: bus toolkit-bus: "),
            "{text}"
        );
        assert!(text.contains("try later"), "{text}");
        assert!(!text.contains("object store"), "{text}");
    }

    #[tokio::test]
    async fn an_entry_eventbridge_did_not_take_is_an_error_naming_it() {
        let refused = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(1)
                .entries(
                    aws_sdk_eventbridge::types::PutEventsResultEntry::builder()
                        .error_code("InternalFailure")
                        .error_message("the bus is busy")
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&refused]);
        let error = EventBridgePublisher::new(client, "toolkit-bus")
            .batch_ended(&batch())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            EventError::NotAccepted("bus toolkit-bus: the bus is busy".into())
        );
        assert_eq!(
            error.to_string(),
            "EventBridge PutEvents: entry not accepted: bus toolkit-bus: the bus is busy"
        );
    }
}
