//! Deterministic answers: the text is derived from a fingerprint of the request, and token
//! counts follow the rule of thumb of about four characters a token. A tool call (see
//! [`crate::tools`]) is an answer too: [`Generated::tool_call`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tools::ToolCall;
use crate::vocabulary::VOCABULARY;

/// Tokens for a piece of text: about four characters a token, at least one.
pub fn tokens_for(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(4).max(1)).unwrap_or(u32::MAX)
}

/// Converse's stop reasons (botocore's `StopReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    GuardrailIntervened,
    ContentFiltered,
    MalformedModelOutput,
    MalformedToolUse,
    ModelContextWindowExceeded,
}

/// What Bedrock answers in place of the text when a guardrail blocks it (its default
/// blocked-output message).
pub const GUARDRAIL_BLOCKED_MESSAGE: &str = "Sorry, the model cannot answer this question.";

impl StopReason {
    /// The closest `stop_reason` of the Anthropic Messages API (InvokeModel).
    pub const fn anthropic(self) -> &'static str {
        match self {
            StopReason::EndTurn
            | StopReason::GuardrailIntervened
            | StopReason::MalformedModelOutput => "end_turn",
            StopReason::ToolUse | StopReason::MalformedToolUse => "tool_use",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ContentFiltered => "refusal",
            StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub text: String,
    pub output_tokens: u32,
    pub stop_reason: StopReason,
    /// The stop sequence that ended the answer, if one did.
    pub stop_sequence: Option<String>,
    /// The tool the model calls: the answer's content is this `toolUse` block alone.
    pub tool_use: Option<ToolCall>,
}

impl Generated {
    /// The answer as the model gives it when it stops for `reason`: a content filter leaves
    /// no text (and no tool call), a guardrail replaces it with its blocked message, any other
    /// reason keeps it, tool call included.
    pub fn stopped_by(self, reason: StopReason) -> Generated {
        let (text, tool_use) = match reason {
            StopReason::ContentFiltered => (String::new(), None),
            StopReason::GuardrailIntervened => (GUARDRAIL_BLOCKED_MESSAGE.to_owned(), None),
            _ => (self.text, self.tool_use),
        };
        let stop_sequence = self
            .stop_sequence
            .filter(|_| reason == StopReason::StopSequence);
        Generated {
            output_tokens: match &tool_use {
                Some(_) => self.output_tokens,
                None if text.is_empty() => 0,
                None => tokens_for(text.len()),
            },
            text,
            stop_reason: reason,
            stop_sequence,
            tool_use,
        }
    }

    /// The answer that calls a tool: `stopReason` `tool_use`, output tokens for the serialised
    /// `toolUse` block. Stop sequences do not cut a call; a call longer than `max_tokens`
    /// keeps its block but stops with `max_tokens`, its output tokens capped at the limit.
    pub fn tool_call(call: ToolCall, max_tokens: u32) -> Generated {
        let tokens = tokens_for(call.block().to_string().len());
        let (output_tokens, stop_reason) = if tokens > max_tokens {
            (max_tokens, StopReason::MaxTokens)
        } else {
            (tokens, StopReason::ToolUse)
        };
        Generated {
            text: String::new(),
            output_tokens,
            stop_reason,
            stop_sequence: None,
            tool_use: Some(call),
        }
    }
}

/// A small xorshift generator seeded from the request fingerprint.
struct WordStream(u64);

impl WordStream {
    fn next_index(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        usize::try_from(x % VOCABULARY.len() as u64).unwrap_or(0)
    }
}

/// The text the model wants to say for a fingerprint, before any limit cuts it.
fn full_text(fingerprint: &[u8]) -> String {
    let digest = Sha256::digest(fingerprint);
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let seed = u64::from_le_bytes(seed) | 1;
    // Between 12 and 75 tokens when nothing caps the answer.
    let wanted_tokens = 12 + usize::from(digest[8]) % 64;
    // Room for the closing full stop within the wanted length.
    let wanted_chars = wanted_tokens * 4 - 1;
    // Whole words up to the wanted length, so an answer that ends on its own ends on a word.
    let mut words = WordStream(seed);
    let mut text = String::with_capacity(wanted_chars + 16);
    loop {
        let word = VOCABULARY[words.next_index()];
        let separator = usize::from(!text.is_empty());
        if !text.is_empty() && text.len() + separator + word.len() > wanted_chars {
            break;
        }
        if separator == 1 {
            text.push(' ');
        }
        text.push_str(word);
    }
    text[..1].to_uppercase() + &text[1..] + "."
}

/// The first stop sequence the model would write whole within its budget, and where.
fn first_stop<'a>(
    text: &str,
    stop_sequences: &'a [String],
    budget_chars: usize,
) -> Option<(usize, &'a String)> {
    stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        // A sequence that would end past the budget is never written: max_tokens stops first.
        .filter(|(at, s)| at + s.len() <= budget_chars)
        .min_by_key(|(at, _)| *at)
}

/// Generates the answer for a request fingerprint (any bytes that identify the request).
pub fn generate(fingerprint: &[u8], max_tokens: u32, stop_sequences: &[String]) -> Generated {
    let mut text = full_text(fingerprint);
    let budget_chars = usize::try_from(max_tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(4);
    let (stop_reason, stop_sequence) = match first_stop(&text, stop_sequences, budget_chars) {
        Some((at, sequence)) => {
            text.truncate(at);
            (StopReason::StopSequence, Some(sequence.clone()))
        }
        None if text.len() > budget_chars => {
            text.truncate(budget_chars);
            (StopReason::MaxTokens, None)
        }
        None => (StopReason::EndTurn, None),
    };
    Generated {
        output_tokens: tokens_for(text.len()),
        text,
        stop_reason,
        stop_sequence,
        tool_use: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_fingerprint_same_answer_other_fingerprint_other_answer() {
        let a = generate(b"request one", 1000, &[]);
        assert_eq!(a, generate(b"request one", 1000, &[]));
        assert_ne!(a.text, generate(b"request two", 1000, &[]).text);
        assert_eq!(a.stop_reason, StopReason::EndTurn);
    }

    #[test]
    fn max_tokens_caps_the_answer() {
        let capped = generate(b"request", 3, &[]);
        assert!(capped.output_tokens <= 3, "{capped:?}");
        assert_eq!(capped.stop_reason, StopReason::MaxTokens);
        for fingerprint in 0u32..200 {
            let answer = generate(&fingerprint.to_le_bytes(), 40, &[]);
            assert!(answer.output_tokens <= 40, "{answer:?}");
        }
    }

    #[test]
    fn stop_sequence_cuts_the_answer() {
        let full = generate(b"request", 1000, &[]);
        let word = full.text.split(' ').nth(2).unwrap().to_owned();
        let cut = generate(b"request", 1000, std::slice::from_ref(&word));
        assert_eq!(cut.stop_reason, StopReason::StopSequence);
        assert_eq!(cut.stop_sequence, Some(word));
        assert!(cut.text.len() < full.text.len());
    }

    #[test]
    fn a_stop_sequence_counts_only_when_it_cuts_the_answer() {
        let full = generate(b"request", 1000, &[]);
        let absent = generate(b"request", 1000, &["never-said".to_owned()]);
        assert_eq!(
            (absent.stop_reason, absent.stop_sequence),
            (StopReason::EndTurn, None)
        );
        assert_eq!(absent.text, full.text);

        // A word that starts within a budget of whole tokens but would end past it.
        let (budget, word) = full
            .text
            .split(' ')
            .scan(0, |at, word| {
                let start = *at;
                *at += word.len() + 1;
                Some((start, word))
            })
            .find_map(|(start, word)| {
                let budget = start / 4 + 1;
                let first = full.text.find(word) == Some(start);
                (first && budget * 4 < start + word.len()).then(|| (budget, word.to_owned()))
            })
            .unwrap();
        let capped = generate(b"request", u32::try_from(budget).unwrap(), &[word]);
        assert_eq!(
            (capped.stop_reason, capped.stop_sequence),
            (StopReason::MaxTokens, None)
        );
        assert_eq!(capped.text, full.text[..budget * 4]);
    }

    #[test]
    fn a_chosen_stop_reason_shapes_the_answer() {
        let answer = generate(b"request", 1000, &[]);
        let filtered = answer.clone().stopped_by(StopReason::ContentFiltered);
        assert_eq!((filtered.text.as_str(), filtered.output_tokens), ("", 0));
        let blocked = answer.clone().stopped_by(StopReason::GuardrailIntervened);
        assert_eq!(blocked.text, GUARDRAIL_BLOCKED_MESSAGE);
        let tool = answer.clone().stopped_by(StopReason::ToolUse);
        assert_eq!(
            (tool.text, tool.stop_reason),
            (answer.text, StopReason::ToolUse)
        );
        assert_eq!(StopReason::ContentFiltered.anthropic(), "refusal");
    }

    fn call() -> ToolCall {
        ToolCall {
            tool_use_id: "tooluse_0123456789abcdef012345".to_owned(),
            name: "get_weather".to_owned(),
            input: serde_json::json!({"city": "calm", "days": 1}),
        }
    }

    #[test]
    fn a_tool_call_stops_for_tool_use_unless_the_limit_is_too_small() {
        let answer = Generated::tool_call(call(), 1000);
        assert_eq!(answer.stop_reason, StopReason::ToolUse);
        assert_eq!(answer.text, "");
        assert_eq!(
            answer.output_tokens,
            tokens_for(call().block().to_string().len())
        );
        let capped = Generated::tool_call(call(), 3);
        assert_eq!(
            (capped.stop_reason, capped.output_tokens),
            (StopReason::MaxTokens, 3)
        );
        assert_eq!(capped.tool_use, Some(call()));
    }

    #[test]
    fn a_chosen_stop_reason_shapes_a_tool_call() {
        let answer = Generated::tool_call(call(), 1000);
        let filtered = answer.clone().stopped_by(StopReason::ContentFiltered);
        assert_eq!((filtered.tool_use, filtered.output_tokens), (None, 0));
        let blocked = answer.clone().stopped_by(StopReason::GuardrailIntervened);
        assert_eq!(
            (blocked.tool_use, blocked.text.as_str()),
            (None, GUARDRAIL_BLOCKED_MESSAGE)
        );
        let ended = answer.clone().stopped_by(StopReason::EndTurn);
        assert_eq!(ended.tool_use, answer.tool_use);
        assert_eq!(ended.output_tokens, answer.output_tokens);
    }

    #[test]
    fn about_four_characters_a_token() {
        assert_eq!(tokens_for(0), 1);
        assert_eq!(tokens_for(8), 2);
        assert_eq!(tokens_for(9), 3);
    }
}
