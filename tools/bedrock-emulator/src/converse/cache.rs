//! The `cachePoint` blocks of a Converse request (`{"cachePoint": {"type": "default", "ttl"?:
//! "5m" | "1h"}}` in `toolConfig.tools`, `system` and `messages[].content`): checked as Bedrock
//! checks them, and each read as the prefix before it (see [`crate::prompt_cache`]).
//!
//! A cache point is a marker: it counts no input tokens and does not change the answer.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::check::{characters_of, write_canonical};
use crate::error::BedrockError;
use crate::generate::tokens_for;
use crate::prompt_cache::{CachePoint, CacheTtl};
use crate::tier::{missing, not_in_enum};
use crate::tools::tool_chars;

/// Cache points a request may hold.
pub const MAX_CACHE_POINTS: usize = 4;

/// A block's `cachePoint` member, if it is a cache point.
pub(super) fn cache_point_of(block: &Value) -> Option<&Value> {
    block.get("cachePoint")
}

/// The TTL a `cachePoint` asks for, or the `ValidationException` Bedrock answers for it; `at`
/// is the path of the block that holds it (`system.1.member`).
fn check_point(point: &Value, at: &str) -> Result<CacheTtl, BedrockError> {
    if !point.is_object() {
        return Err(BedrockError::validation(format!(
            "Malformed input request: {at}.cachePoint: expected a structure"
        )));
    }
    match point.get("type").filter(|v| !v.is_null()) {
        None => return Err(missing(&format!("{at}.cachePoint.type"))),
        Some(kind) if kind.as_str() != Some("default") => {
            return Err(not_in_enum(
                kind,
                &format!("{at}.cachePoint.type"),
                &["default"],
            ))
        }
        Some(_) => {}
    }
    let Some(ttl) = point.get("ttl").filter(|v| !v.is_null()) else {
        return Ok(CacheTtl::default());
    };
    CacheTtl::ALL
        .into_iter()
        .find(|t| ttl.as_str() == Some(t.name()))
        .ok_or_else(|| not_in_enum(ttl, &format!("{at}.cachePoint.ttl"), &["5m", "1h"]))
}

/// Walks a request in Bedrock's order, hashing and counting what comes before each cache point.
struct Prefix {
    hasher: Sha256,
    chars: usize,
    points: Vec<CachePoint>,
}

impl Prefix {
    fn new(model_id: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(model_id.as_bytes());
        hasher.update([0]);
        Self {
            hasher,
            chars: 0,
            points: Vec::new(),
        }
    }

    /// A part of the prompt: its kind, then its canonical JSON, length first.
    fn add(&mut self, kind: u8, part: &Value, chars: usize) {
        let mut canonical = Vec::new();
        write_canonical(part, &mut canonical);
        self.hasher.update([kind]);
        self.hasher.update((canonical.len() as u64).to_le_bytes());
        self.hasher.update(&canonical);
        self.chars += chars;
    }

    fn point(&mut self, point: &Value, at: &str) -> Result<(), BedrockError> {
        let ttl = check_point(point, at)?;
        self.points.push(CachePoint {
            tokens: tokens_for(self.chars),
            key: self.hasher.clone().finalize().into(),
            ttl,
        });
        Ok(())
    }
}

fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The cache points of a Converse request, in order, each with the tokens and key of the
/// prefix before it; or the `ValidationException` Bedrock answers for a bad one, or for more
/// than [`MAX_CACHE_POINTS`].
pub(super) fn cache_points(
    model_id: &str,
    request: &Value,
) -> Result<Vec<CachePoint>, BedrockError> {
    let mut prefix = Prefix::new(model_id);
    let tools = array(request.get("toolConfig").and_then(|c| c.get("tools")));
    for (k, tool) in tools.iter().enumerate() {
        match cache_point_of(tool) {
            Some(point) => prefix.point(point, &format!("toolConfig.tools.{}.member", k + 1))?,
            None => prefix.add(b'T', tool, tool_chars(tool)),
        }
    }
    for (i, block) in array(request.get("system")).iter().enumerate() {
        match cache_point_of(block) {
            Some(point) => prefix.point(point, &format!("system.{}.member", i + 1))?,
            None => prefix.add(b'S', block, characters_of(block)),
        }
    }
    for (i, message) in array(request.get("messages")).iter().enumerate() {
        prefix.add(b'M', message.get("role").unwrap_or(&Value::Null), 0);
        for (j, block) in array(message.get("content")).iter().enumerate() {
            match cache_point_of(block) {
                Some(point) => prefix.point(
                    point,
                    &format!("messages.{}.member.content.{}.member", i + 1, j + 1),
                )?,
                None => prefix.add(b'B', block, characters_of(block)),
            }
        }
    }
    if prefix.points.len() > MAX_CACHE_POINTS {
        return Err(BedrockError::validation(format!(
            "The model returned the following errors: A maximum of {MAX_CACHE_POINTS} blocks with cache_control may be provided. Found {}.",
            prefix.points.len()
        )));
    }
    Ok(prefix.points)
}

/// The request without its cache points: what the answer derives from.
pub(super) fn without_cache_points(request: &mut Value) {
    let strip = |list: Option<&mut Value>| {
        if let Some(Value::Array(items)) = list {
            items.retain(|item| cache_point_of(item).is_none());
        }
    };
    strip(request.get_mut("system"));
    strip(
        request
            .get_mut("toolConfig")
            .and_then(|c| c.get_mut("tools")),
    );
    if let Some(Value::Array(messages)) = request.get_mut("messages") {
        for message in messages {
            strip(message.get_mut("content"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn points(request: Value) -> Result<Vec<CachePoint>, BedrockError> {
        cache_points("m", &request)
    }

    #[test]
    fn each_point_reads_the_prefix_before_it_in_bedrocks_order() {
        let tool = json!({"toolSpec": {"name": "t", "inputSchema": {"json": {}}}});
        let request = json!({
            "toolConfig": {"tools": [tool, {"cachePoint": {"type": "default"}}]},
            "system": [{"text": "a".repeat(400)}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": [
                {"text": "b".repeat(40)}, {"cachePoint": {"type": "default", "ttl": "5m"}}, {"text": "c"},
            ]}],
        });
        let found = points(request.clone()).unwrap();
        let tool_chars = tool.to_string().len();
        assert_eq!(
            found.iter().map(|p| p.tokens).collect::<Vec<_>>(),
            [
                tokens_for(tool_chars),
                tokens_for(tool_chars + 400),
                tokens_for(tool_chars + 440)
            ]
        );
        assert_eq!(
            found.iter().map(|p| p.ttl).collect::<Vec<_>>(),
            [
                CacheTtl::FiveMinutes,
                CacheTtl::OneHour,
                CacheTtl::FiveMinutes
            ]
        );
        // What follows a point does not change its prefix; what precedes it does, and so
        // does the model.
        let mut longer = request.clone();
        longer["messages"][0]["content"][2]["text"] = json!("something else");
        assert_eq!(points(longer).unwrap(), found);
        let mut changed = request.clone();
        changed["system"][0]["text"] = json!("z".repeat(400));
        let changed = points(changed).unwrap();
        assert_eq!(changed[0], found[0]);
        assert_ne!(changed[1].key, found[1].key);
        assert_ne!(
            cache_points("other", &request).unwrap()[0].key,
            found[0].key
        );
    }

    #[test]
    fn bad_points_are_refused_as_bedrock_refuses_them() {
        let user = |block: Value| json!({"messages": [{"role": "user", "content": [{"text": "hi"}, block]}]});
        let cases = [
            (
                user(json!({"cachePoint": {"type": "ephemeral"}})),
                "Value 'ephemeral' at 'messages.1.member.content.2.member.cachePoint.type' failed to satisfy constraint: Member must satisfy enum value set: [default]",
            ),
            (
                user(json!({"cachePoint": {}})),
                "Value null at 'messages.1.member.content.2.member.cachePoint.type' failed to satisfy constraint: Member must not be null",
            ),
            (
                user(json!({"cachePoint": {"type": "default", "ttl": "10m"}})),
                "Value '10m' at 'messages.1.member.content.2.member.cachePoint.ttl' failed to satisfy constraint: Member must satisfy enum value set: [5m, 1h]",
            ),
            (
                json!({"system": [{"text": "s"}, {"cachePoint": {"type": 1}}]}),
                "Value '1' at 'system.2.member.cachePoint.type'",
            ),
            (
                json!({"toolConfig": {"tools": [{"cachePoint": {"type": "nope"}}]}}),
                "at 'toolConfig.tools.1.member.cachePoint.type'",
            ),
            (
                json!({"system": [{"cachePoint": "default"}]}),
                "Malformed input request",
            ),
            (
                json!({"system": [
                    {"text": "s"}, {"cachePoint": {"type": "default"}}, {"cachePoint": {"type": "default"}},
                    {"cachePoint": {"type": "default"}}, {"cachePoint": {"type": "default"}},
                    {"cachePoint": {"type": "default"}},
                ]}),
                "A maximum of 4 blocks with cache_control may be provided. Found 5.",
            ),
        ];
        for (request, expected) in cases {
            let error = points(request.clone()).unwrap_err();
            assert_eq!(error.error_type, "ValidationException");
            assert!(
                error.message.contains(expected),
                "{request}: {}",
                error.message
            );
        }
    }

    #[test]
    fn stripping_leaves_the_content() {
        let mut request = json!({
            "toolConfig": {"tools": [{"cachePoint": {"type": "default"}}, {"toolSpec": {}}]},
            "system": [{"text": "s"}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"cachePoint": {"type": "default"}}, {"text": "hi"}]}],
        });
        without_cache_points(&mut request);
        assert_eq!(
            request,
            json!({
                "toolConfig": {"tools": [{"toolSpec": {}}]},
                "system": [{"text": "s"}],
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            })
        );
    }
}
