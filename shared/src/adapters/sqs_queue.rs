//! The queue that fans batches out to batch-status, one message a batch (SQS
//! `SendMessageBatch`).

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use domain::error::QueueError;
use domain::ports::BatchQueue;

use domain::batch::queued_batch_body;

/// SQS takes at most this many messages a call.
const MAX_BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsBatchQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsBatchQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl BatchQueue for SqsBatchQueue {
    async fn enqueue(&self, batch_ids: &[String]) -> Result<Vec<String>, QueueError> {
        let mut refused = Vec::new();
        for chunk in batch_ids.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(queued_batch_body(id))
                        .build()
                        .map_err(|e| QueueError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(DisplayErrorContext(e).to_string()))?;
            for failed in output.failed() {
                if let Some(id) = failed.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                    refused.push(id.clone());
                }
            }
        }
        Ok(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
    use aws_sdk_sqs::types::BatchResultErrorEntry;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use domain::batch::queued_batch_id;

    #[tokio::test]
    async fn batches_go_ten_a_call_one_message_each_and_refused_ones_come_back() {
        let send = mock!(aws_sdk_sqs::Client::send_message_batch)
            .match_requests(|r| {
                r.queue_url() == Some("https://sqs/q")
                    && r.entries().len() <= MAX_BATCH
                    && r.entries()
                        .iter()
                        .all(|e| queued_batch_id(e.message_body()).is_some())
            })
            .then_output(|| {
                SendMessageBatchOutput::builder()
                    .set_successful(Some(Vec::new()))
                    .failed(
                        BatchResultErrorEntry::builder()
                            .id("1")
                            .sender_fault(false)
                            .code("InternalError")
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap()
            });
        let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&send]);
        let queue = SqsBatchQueue::new(client, "https://sqs/q");
        let ids: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
        let refused = queue.enqueue(&ids).await.unwrap();
        // Entry "1" of each call was refused: b1, and b11 of the second call.
        assert_eq!(refused, ["b1", "b11"]);
        assert_eq!(send.num_calls(), 2);
        assert_eq!(queued_batch_body("b1"), r#"{"batchId":"b1"}"#);
    }
}
