//! `ConverseStream`: the answer as AWS event-stream frames, paced as the model would write it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::{admit_checked, check, echo_request, target, usage, Checked};
use crate::error::BedrockError;
use crate::eventstream::{event_frame, exception_frame};
use crate::fault::StreamError;
use crate::generate::tokens_for;
use crate::prompt_routing::Target;
use crate::runtime::RuntimeState;

/// Splits the answer into deltas of a few words, as Bedrock streams them.
pub(super) fn deltas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for (i, word) in text.split_inclusive(' ').enumerate() {
        current.push_str(word);
        if i % 3 == 2 {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The events of a streamed answer, each with the output tokens it carries. A stream error
/// keeps `messageStart` (and a tool call's `contentBlockStart`) and the first `afterDeltas`
/// deltas only: its exception ends the stream.
pub(super) fn answer_events(
    checked: &Checked,
    stream_error: Option<StreamError>,
) -> Vec<(&'static str, Value, u32)> {
    let mut events = vec![("messageStart", json!({"role": "assistant"}), 0)];
    let deltas: Vec<(&'static str, Value, u32)> = match &checked.answer.tool_use {
        Some(call) => {
            let start = json!({
                "contentBlockIndex": 0,
                "start": {"toolUse": {"toolUseId": call.tool_use_id, "name": call.name}},
            });
            events.push(("contentBlockStart", start, 0));
            call.input_fragments()
                .into_iter()
                .map(|fragment| {
                    let tokens = tokens_for(fragment.len());
                    let delta = json!({"toolUse": {"input": fragment}});
                    let payload = json!({"contentBlockIndex": 0, "delta": delta});
                    ("contentBlockDelta", payload, tokens)
                })
                .collect()
        }
        None => deltas(&checked.answer.text)
            .into_iter()
            .map(|delta| {
                let tokens = tokens_for(delta.len());
                let payload = json!({"contentBlockIndex": 0, "delta": {"text": delta}});
                ("contentBlockDelta", payload, tokens)
            })
            .collect(),
    };
    let deltas = deltas.into_iter();
    match stream_error {
        Some(error) => {
            events.extend(deltas.take(usize::try_from(error.after_deltas).unwrap_or(usize::MAX)))
        }
        None => {
            events.extend(deltas);
            events.push(("contentBlockStop", json!({"contentBlockIndex": 0}), 0));
            let stop = json!({"stopReason": checked.answer.stop_reason});
            events.push(("messageStop", stop, 0));
        }
    }
    events
}

pub async fn converse_stream(
    State(state): State<Arc<RuntimeState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Result<Response, BedrockError> {
    let started = Instant::now();
    let Target {
        model_id,
        invoked_model_arn,
    } = target(&state, &model_id, &body)?;
    let (mut checked, admission) =
        admit_checked(&state, &model_id, || check(&state, &model_id, &body))?;
    checked.invoked_model_arn = invoked_model_arn;
    let stream_error = admission.behaviour.stream_error;
    if stream_error.is_some() {
        state.record_stream_error(&model_id);
    } else {
        state.record_served(&model_id, checked.service_tier);
    }

    let events = answer_events(&checked, stream_error);
    let mut metadata = json!({"usage": usage(&checked)});
    echo_request(&checked, &mut metadata);
    let first_token = admission.first_token_delay();
    let per_token = admission.per_token_delay();
    let frames = stream::iter(events.into_iter().enumerate())
        .then(move |(i, (event_type, payload, tokens))| async move {
            let delay = if i == 1 {
                first_token
            } else {
                per_token * tokens
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            event_frame(event_type, &payload)
        })
        .chain(stream::once(async move {
            match stream_error {
                Some(error) => {
                    let exception = error.exception;
                    exception_frame(exception.event_type(), &exception.payload())
                }
                None => {
                    let mut metadata = metadata;
                    metadata["metrics"] =
                        json!({"latencyMs": started.elapsed().as_millis() as u64});
                    event_frame("metadata", &metadata)
                }
            }
        }));

    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")],
        Body::from_stream(frames),
    )
        .into_response())
}
