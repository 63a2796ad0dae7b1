//! Small batches answered directly through on-demand Converse, in the format of a job's output.

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use domain::batch::{Batch, BatchRecord, BatchStatus, BatchSummary, ResultLine};
use domain::conversation::{Conversation, InferenceConfig, Message, TextBlock};
use domain::ports::{ModelInvoker, ObjectStore};
use domain::routing::{Route, Target};

use super::*;

/// A Converse body (already validated) as the conversation the model port takes.
pub(crate) fn conversation_of(input: &Value) -> Conversation {
    let field = |name: &str| input.get(name).cloned().unwrap_or(Value::Null);
    Conversation {
        system: serde_json::from_value::<Vec<TextBlock>>(field("system")).unwrap_or_default(),
        messages: serde_json::from_value::<Vec<Message>>(field("messages")).unwrap_or_default(),
        inference_config: serde_json::from_value::<InferenceConfig>(field("inferenceConfig"))
            .unwrap_or_default(),
        additional_model_request_fields: input.get("additionalModelRequestFields").cloned(),
        tool_config: None,
    }
}

/// Answers a small batch through on-demand Converse, a few records at a time, and writes its
/// results in the same format and order a job's merge would.
pub async fn answer_directly<M: ModelInvoker, S: ObjectStore>(
    model: &M,
    store: &S,
    batch: &mut Batch,
    records: &[BatchRecord],
    settings: &BatchSettings,
) -> Result<(), BatchError> {
    let target = Target {
        invoke_id: batch.model_id.clone(),
        route: Route::OnDemand,
        model: batch.model_id.clone(),
    };
    // Owned records: a stream of borrowed ones makes the future not provably `Send`.
    let answers: Vec<ResultLine> = stream::iter(records.to_vec())
        .map(|record: BatchRecord| {
            let target = &target;
            async move {
                let conversation = conversation_of(&record.model_input);
                match model.converse(target, &conversation, None).await {
                    Ok(answer) => ResultLine {
                        record_id: record.record_id,
                        text: Some(answer.text()),
                        stop_reason: Some(answer.stop_reason),
                        usage: Some(answer.usage),
                        error: None,
                    },
                    Err(error) => {
                        ResultLine::failed(record.record_id, error.kind.as_str(), error.message)
                    }
                }
            }
        })
        .buffered(settings.direct_concurrency.max(1))
        .collect()
        .await;
    let mut summary = BatchSummary::default();
    let mut out = Vec::new();
    for line in &answers {
        add_to_summary(&mut summary, line, &batch.model_id, settings, true);
        if let Ok(json) = serde_json::to_vec(line) {
            out.extend_from_slice(&json);
            out.push(b'\n');
        }
    }
    let key = results_key(&batch.batch_id);
    store.put(&key, out).await?;
    batch.status = if summary.failed == 0 {
        BatchStatus::Completed
    } else if summary.succeeded == 0 {
        BatchStatus::Failed
    } else {
        BatchStatus::PartiallyCompleted
    };
    batch.results_key = Some(key);
    batch.summary = Some(summary);
    Ok(())
}
