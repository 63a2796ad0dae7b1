//! A model's answer as it is produced (Bedrock ConverseStream), folded back into a whole
//! answer, and a stored answer replayed as such a stream.

use std::collections::BTreeMap;

use crate::conversation::{ContentBlock, Message, ModelAnswer, Role, ToolUse, Usage};
use crate::error::{ModelError, ModelErrorKind};
use crate::routing::ServiceTier;

/// One step of a streamed answer. `index` is the content block's position in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The model began its answer (Bedrock's `messageStart`).
    Started,
    /// A tool call begins at block `index`; its input follows as [`StreamEvent::ToolInput`].
    ToolUseStart {
        index: u32,
        tool_use_id: String,
        name: String,
    },
    Text {
        index: u32,
        text: String,
    },
    /// A fragment of a tool call's input, JSON text.
    ToolInput {
        index: u32,
        input: String,
    },
    /// The answer ended, for this reason (`end_turn`, `tool_use`, `max_tokens`…).
    Stopped {
        stop_reason: String,
    },
    /// Token counts, after [`StreamEvent::Stopped`].
    Usage(Usage),
    /// How Bedrock served the call, from the stream's metadata: the model a prompt router
    /// invoked, the service tier.
    Served {
        invoked_model: Option<String>,
        service_tier: Option<ServiceTier>,
    },
}

#[derive(Debug, Clone)]
enum Partial {
    Text(String),
    Tool {
        tool_use_id: String,
        name: String,
        input: String,
    },
}

/// Collects a stream's events into the answer a buffered call would have given.
#[derive(Debug, Default)]
pub struct AnswerBuilder {
    blocks: BTreeMap<u32, Partial>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
    invoked_model: Option<String>,
    service_tier: Option<ServiceTier>,
}

impl AnswerBuilder {
    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Started => {}
            StreamEvent::ToolUseStart {
                index,
                tool_use_id,
                name,
            } => {
                self.blocks.insert(
                    *index,
                    Partial::Tool {
                        tool_use_id: tool_use_id.clone(),
                        name: name.clone(),
                        input: String::new(),
                    },
                );
            }
            StreamEvent::Text { index, text } => {
                match self
                    .blocks
                    .entry(*index)
                    .or_insert_with(|| Partial::Text(String::new()))
                {
                    Partial::Text(whole) => whole.push_str(text),
                    Partial::Tool { .. } => {}
                }
            }
            StreamEvent::ToolInput { index, input } => {
                if let Some(Partial::Tool { input: whole, .. }) = self.blocks.get_mut(index) {
                    whole.push_str(input);
                }
            }
            StreamEvent::Stopped { stop_reason } => self.stop_reason = Some(stop_reason.clone()),
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Served {
                invoked_model,
                service_tier,
            } => {
                self.invoked_model = invoked_model.clone().or(self.invoked_model.take());
                self.service_tier = service_tier.or(self.service_tier);
            }
        }
    }

    /// The token counts reported so far (none before the stream's metadata event).
    pub fn usage(&self) -> Usage {
        self.usage.unwrap_or_default()
    }

    /// The bytes of text and tool input streamed so far.
    pub fn produced_bytes(&self) -> usize {
        self.blocks
            .values()
            .map(|block| match block {
                Partial::Text(text) => text.len(),
                Partial::Tool { input, .. } => input.len(),
            })
            .sum()
    }

    /// What a stream cut short costs: the usage Bedrock reported, or, when it was cut before
    /// Bedrock did, upper bounds: `input_bound` input tokens (the request's estimate, as its
    /// reservation) and a token for every byte streamed (no token is shorter than a byte).
    pub fn usage_or_bound(&self, input_bound: u64) -> Usage {
        if let Some(usage) = self.usage {
            return usage;
        }
        let input_tokens = u32::try_from(input_bound).unwrap_or(u32::MAX);
        let output_tokens = u32::try_from(self.produced_bytes()).unwrap_or(u32::MAX);
        Usage::new(input_tokens, output_tokens)
    }

    /// Whether the model said it stopped: an answer cut before that is incomplete.
    pub fn stopped(&self) -> bool {
        self.stop_reason.is_some()
    }

    /// The whole answer, or why there is none (cut short, or a tool input that is not JSON).
    pub fn finish(self) -> Result<ModelAnswer, ModelError> {
        let stop_reason = self.stop_reason.ok_or_else(|| {
            ModelError::new(
                ModelErrorKind::ModelFailure,
                "the stream ended before the model stopped",
            )
        })?;
        let content = self
            .blocks
            .into_values()
            .map(|block| match block {
                Partial::Text(text) => Ok(ContentBlock::Text(text)),
                Partial::Tool {
                    tool_use_id,
                    name,
                    input,
                } => {
                    let input = if input.trim().is_empty() {
                        serde_json::Value::Object(serde_json::Map::new())
                    } else {
                        serde_json::from_str(&input).map_err(|e| {
                            ModelError::new(
                                ModelErrorKind::ModelFailure,
                                format!("the input of tool call {tool_use_id} is not JSON: {e}"),
                            )
                        })?
                    };
                    Ok(ContentBlock::ToolUse(ToolUse {
                        tool_use_id,
                        name,
                        input,
                    }))
                }
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(ModelAnswer {
            latency: None,
            service_tier: self.service_tier,
            invoked_model: self.invoked_model,
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason,
            usage: self.usage.unwrap_or_default(),
        })
    }
}

/// Words per replayed text delta: a hit streams as several deltas, as a miss does.
const WORDS_PER_DELTA: usize = 3;

/// Splits text into deltas of a few words each, whitespace kept, so they join to the text.
pub fn text_deltas(text: &str) -> Vec<String> {
    let mut deltas = Vec::new();
    let mut current = String::new();
    let mut words = 0;
    let mut in_word = false;
    for c in text.chars() {
        let space = c.is_whitespace();
        if !space && !in_word {
            if words == WORDS_PER_DELTA {
                deltas.push(std::mem::take(&mut current));
                words = 0;
            }
            words += 1;
        }
        in_word = !space;
        current.push(c);
    }
    if !current.is_empty() {
        deltas.push(current);
    }
    deltas
}

/// A stored answer as the stream a miss would have produced: text in several deltas, each
/// tool call's input in two fragments, then the stop reason and the stored usage.
pub fn replay(answer: &ModelAnswer) -> Vec<StreamEvent> {
    let mut events = vec![StreamEvent::Started];
    for (index, block) in (0u32..).zip(&answer.message.content) {
        match block {
            ContentBlock::Text(text) => events.extend(
                text_deltas(text)
                    .into_iter()
                    .map(|text| StreamEvent::Text { index, text }),
            ),
            ContentBlock::ToolUse(tool_use) => {
                events.push(StreamEvent::ToolUseStart {
                    index,
                    tool_use_id: tool_use.tool_use_id.clone(),
                    name: tool_use.name.clone(),
                });
                let input = tool_use.input.to_string();
                let middle = input
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(input.chars().count() / 2)
                    .unwrap_or(input.len());
                let (head, tail) = input.split_at(middle);
                for part in [head, tail].into_iter().filter(|p| !p.is_empty()) {
                    events.push(StreamEvent::ToolInput {
                        index,
                        input: part.to_owned(),
                    });
                }
            }
            ContentBlock::ToolResult(_) | ContentBlock::CachePoint(_) => {}
        }
    }
    events.push(StreamEvent::Stopped {
        stop_reason: answer.stop_reason.clone(),
    });
    events.push(StreamEvent::Usage(answer.usage));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stream_cut_before_its_usage_is_charged_upper_bounds_else_what_bedrock_reported() {
        let mut builder = AnswerBuilder::default();
        builder.push(&StreamEvent::Started);
        builder.push(&StreamEvent::Text {
            index: 0,
            text: "héllo ".into(),
        });
        builder.push(&StreamEvent::ToolUseStart {
            index: 1,
            tool_use_id: "t1".into(),
            name: "f".into(),
        });
        builder.push(&StreamEvent::ToolInput {
            index: 1,
            input: "{\"a\":1}".into(),
        });
        assert_eq!(builder.produced_bytes(), 7 + 7);
        assert_eq!(builder.usage_or_bound(120), Usage::new(120, 14));
        let reported = Usage::new(30, 4);
        builder.push(&StreamEvent::Usage(reported));
        assert_eq!(builder.usage_or_bound(120), reported);
    }

    fn answer(content: Vec<ContentBlock>, stop_reason: &str) -> ModelAnswer {
        ModelAnswer {
            latency: None,
            invoked_model: None,
            service_tier: None,
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason: stop_reason.into(),
            usage: Usage::new(7, 11),
        }
    }

    #[test]
    fn text_deltas_join_to_the_text_and_are_several() {
        let text = "  A cache keeps answers\nfor a while,  then forgets them. ";
        let deltas = text_deltas(text);
        assert!(deltas.len() >= 3, "{deltas:?}");
        assert_eq!(deltas.concat(), text);
        assert_eq!(text_deltas(""), Vec::<String>::new());
        assert_eq!(text_deltas("word"), vec!["word"]);
    }

    #[test]
    fn a_replayed_answer_folds_back_into_itself() {
        let original = answer(
            vec![
                ContentBlock::text("Let me look that up for you, one moment."),
                ContentBlock::ToolUse(ToolUse {
                    tool_use_id: "tooluse_1".into(),
                    name: "get_weather".into(),
                    input: json!({"city": "Tōkyō", "days": 3}),
                }),
            ],
            "tool_use",
        );
        let events = replay(&original);
        let fragments = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolInput { .. }))
            .count();
        assert_eq!(fragments, 2);
        let mut builder = AnswerBuilder::default();
        for event in &events {
            builder.push(event);
        }
        assert_eq!(builder.finish(), Ok(original));
    }

    #[test]
    fn a_stream_cut_before_its_stop_is_no_answer() {
        let mut builder = AnswerBuilder::default();
        builder.push(&StreamEvent::Started);
        builder.push(&StreamEvent::Text {
            index: 0,
            text: "half an ans".into(),
        });
        assert!(!builder.stopped());
        let error = builder.finish().unwrap_err();
        assert_eq!(error.kind, ModelErrorKind::ModelFailure);
    }

    #[test]
    fn a_tool_input_that_is_not_json_is_a_model_failure() {
        let mut builder = AnswerBuilder::default();
        builder.push(&StreamEvent::ToolUseStart {
            index: 0,
            tool_use_id: "t".into(),
            name: "n".into(),
        });
        builder.push(&StreamEvent::ToolInput {
            index: 0,
            input: "{\"a\":".into(),
        });
        builder.push(&StreamEvent::Stopped {
            stop_reason: "tool_use".into(),
        });
        assert_eq!(
            builder.finish().unwrap_err().kind,
            ModelErrorKind::ModelFailure
        );
    }

    #[test]
    fn a_tool_call_without_input_has_an_empty_object() {
        let mut builder = AnswerBuilder::default();
        builder.push(&StreamEvent::ToolUseStart {
            index: 0,
            tool_use_id: "t".into(),
            name: "now".into(),
        });
        builder.push(&StreamEvent::Stopped {
            stop_reason: "tool_use".into(),
        });
        let answer = builder.finish().unwrap();
        assert_eq!(
            answer.tool_uses().next().map(|t| &t.input),
            Some(&json!({}))
        );
    }
}
