//! Bedrock's prompt cache: the least a cached prefix must hold for a model, where automatic
//! cache points go, and which of a caller's cache points are too short to count (Bedrock ignores
//! them without a word).
//!
//! Sizes are estimates, a token for every four characters (Bedrock's own count is the model's
//! tokenizer's): close for English prose, a guide rather than a promise.

use crate::conversation::{CachePoint, ContentBlock, Conversation, SystemBlock, Tool};
use crate::pricing::underlying_model;

/// Characters per token in the estimates.
pub const CHARS_PER_TOKEN: usize = 4;
/// The most cache points Bedrock takes in one request.
pub const MAX_CACHE_POINTS: usize = 4;

/// The fewest tokens a prefix must hold for `model_id` to cache it, as Bedrock documents them:
/// 4,096 for Claude Haiku 4.5 and Opus 4.5, 2,048 for Claude 3 and 3.5 Haiku, 1,000 for Amazon
/// Nova, 1,024 for other Claude models (and any other model).
pub fn minimum_tokens(model_id: &str) -> usize {
    let id = underlying_model(model_id);
    if id.contains("claude-haiku-4-5") || id.contains("claude-opus-4-5") {
        4096
    } else if id.contains("claude-3-haiku") || id.contains("claude-3-5-haiku") {
        2048
    } else if id.starts_with("amazon.nova") {
        1000
    } else {
        1024
    }
}

fn tokens(chars: usize) -> usize {
    chars.div_ceil(CHARS_PER_TOKEN)
}

fn tool_chars(tool: &Tool) -> usize {
    tool.spec().map_or(0, |spec| {
        serde_json::to_string(spec).map_or(0, |json| json.chars().count())
    })
}

fn system_chars(block: &SystemBlock) -> usize {
    match block {
        SystemBlock::Text(text) => text.chars().count(),
        SystemBlock::CachePoint(_) => 0,
    }
}

fn block_chars(block: &ContentBlock) -> usize {
    match block {
        ContentBlock::Text(text) => text.chars().count(),
        ContentBlock::CachePoint(_) => 0,
        other => serde_json::to_string(other).map_or(0, |json| json.chars().count()),
    }
}

/// The estimated tokens before each cache point of the conversation, in Bedrock's order
/// (tools, then system, then messages).
pub fn cache_point_prefixes(conversation: &Conversation) -> Vec<usize> {
    let mut chars = 0;
    let mut prefixes = Vec::new();
    for tool in conversation.tool_config.iter().flat_map(|c| &c.tools) {
        match tool {
            Tool::CachePoint(_) => prefixes.push(tokens(chars)),
            tool => chars += tool_chars(tool),
        }
    }
    for block in &conversation.system {
        match block {
            SystemBlock::CachePoint(_) => prefixes.push(tokens(chars)),
            block => chars += system_chars(block),
        }
    }
    for block in conversation.messages.iter().flat_map(|m| &m.content) {
        match block {
            ContentBlock::CachePoint(_) => prefixes.push(tokens(chars)),
            block => chars += block_chars(block),
        }
    }
    prefixes
}

/// How many of the conversation's cache points come after less than `minimum` tokens.
pub fn points_below_minimum(conversation: &Conversation, minimum: usize) -> usize {
    cache_point_prefixes(conversation)
        .into_iter()
        .filter(|prefix| *prefix < minimum)
        .count()
}

/// Adds a cache point after the tool definitions and after the system prompt, each where none
/// is and the prefix before it reaches `minimum` tokens, within Bedrock's four a request. The
/// number added.
pub fn add_automatic_points(conversation: &mut Conversation, minimum: usize) -> usize {
    let mut room = MAX_CACHE_POINTS.saturating_sub(cache_point_prefixes(conversation).len());
    let mut added = 0;
    let tool_chars_total: usize = conversation
        .tool_config
        .iter()
        .flat_map(|c| &c.tools)
        .map(tool_chars)
        .sum();
    if let Some(config) = &mut conversation.tool_config {
        let has_point = config
            .tools
            .iter()
            .any(|t| matches!(t, Tool::CachePoint(_)));
        if room > 0 && !has_point && tokens(tool_chars_total) >= minimum {
            config.tools.push(Tool::CachePoint(CachePoint::DEFAULT));
            room -= 1;
            added += 1;
        }
    }
    let system_chars_total: usize = conversation.system.iter().map(system_chars).sum();
    let has_point = conversation
        .system
        .iter()
        .any(|b| matches!(b, SystemBlock::CachePoint(_)));
    if room > 0
        && !has_point
        && system_chars_total > 0
        && tokens(tool_chars_total + system_chars_total) >= minimum
    {
        conversation
            .system
            .push(SystemBlock::CachePoint(CachePoint::DEFAULT));
        added += 1;
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{InferenceConfig, Message};

    fn conversation(system_chars: usize) -> Conversation {
        Conversation {
            system: vec![SystemBlock::text("x".repeat(system_chars))],
            messages: vec![Message::user_text("question")],
            inference_config: InferenceConfig::default(),
            additional_model_request_fields: None,
            tool_config: None,
        }
    }

    #[test]
    fn minimums_follow_the_model_family_through_profiles_and_arns() {
        assert_eq!(
            minimum_tokens("anthropic.claude-3-haiku-20240307-v1:0"),
            2048
        );
        assert_eq!(
            minimum_tokens("us.anthropic.claude-haiku-4-5-20251001-v1:0"),
            4096
        );
        assert_eq!(
            minimum_tokens("anthropic.claude-sonnet-4-20250514-v1:0"),
            1024
        );
        assert_eq!(
            minimum_tokens("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"),
            1000
        );
    }

    #[test]
    fn a_long_system_prompt_gets_a_point_and_a_short_one_none() {
        let mut long = conversation(4 * 1024);
        assert_eq!(add_automatic_points(&mut long, 1024), 1);
        assert_eq!(long.system[1], SystemBlock::CachePoint(CachePoint::DEFAULT));
        assert_eq!(add_automatic_points(&mut long, 1024), 0, "one is enough");
        let mut short = conversation(4 * 1000);
        assert_eq!(add_automatic_points(&mut short, 1024), 0);
        assert!(!short.has_cache_points());
    }

    #[test]
    fn a_callers_point_before_the_minimum_is_counted_as_too_small() {
        let mut c = conversation(400);
        c.system.push(SystemBlock::CachePoint(CachePoint::DEFAULT));
        assert_eq!(cache_point_prefixes(&c), [100]);
        assert_eq!(points_below_minimum(&c, 1024), 1);
        assert_eq!(points_below_minimum(&c, 100), 0);
    }
}
