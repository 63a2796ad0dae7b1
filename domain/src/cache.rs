//! Cache keys, entries and states.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::conversation::{Conversation, ModelAnswer};

/// Bumped whenever the key material changes shape, so old entries are never misread.
const KEY_VERSION: u32 = 1;

/// The hex SHA-256 of a request's canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_hex(hex: impl Into<String>) -> Self {
        Self(hex.into())
    }

    /// Hashes everything that changes the answer: the base model (so Provisioned Throughput and
    /// on-demand share entries), the system prompt, the messages, the inference configuration,
    /// the additional model fields, and the namespace (so tenants never share entries); not the
    /// prompt-cache points, which change only the cost.
    pub fn for_request(
        namespace: &str,
        base_model_id: &str,
        conversation: &Conversation,
    ) -> Result<Self, serde_json::Error> {
        #[derive(Serialize)]
        struct Material<'a> {
            version: u32,
            namespace: &'a str,
            model: &'a str,
            conversation: &'a Conversation,
        }
        // Cache points change what a call costs, not its answer: with or without them, one entry.
        let plain;
        let conversation = if conversation.has_cache_points() {
            plain = conversation.without_cache_points();
            &plain
        } else {
            conversation
        };
        let material = Material {
            version: KEY_VERSION,
            namespace,
            model: base_model_id,
            conversation,
        };
        let value = serde_json::to_value(&material)?;
        let mut canonical = String::with_capacity(256);
        write_canonical(&value, &mut canonical);
        Ok(Self(hex::encode(Sha256::digest(canonical.as_bytes()))))
    }
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so field order
/// in the request never changes the key.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// What the cache keeps of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedAnswer {
    pub answer: ModelAnswer,
    /// The base model that produced it.
    pub model_id: String,
    /// The on-demand price of the call's tokens, reported as `savedUsd` on every hit.
    pub cost_usd: f64,
    /// Epoch seconds.
    pub created_at: i64,
}

/// A cached answer with its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub cached: CachedAnswer,
    /// Epoch seconds; at or after it the entry is a miss, whether or not the store deleted it.
    pub expires_at: i64,
}

impl CacheEntry {
    pub fn is_live(&self, now_epoch: i64) -> bool {
        now_epoch < self.expires_at
    }
}

/// A claim on a key while its answer is being produced, so that identical misses arriving
/// together cost one model call. Stored in the key's place; never served as an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it: unique per request.
    pub owner: String,
    /// Epoch milliseconds; after it anyone may take the key over.
    pub until_ms: i64,
}

impl Lease {
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.until_ms
    }
}

/// What the store holds for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredRecord {
    Answer(CacheEntry),
    Lease(Lease),
}

/// What to do with requests that sample (temperature above 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampledRequests {
    /// Cache them like any other: every caller gets the first sample.
    Cache,
    /// Neither read nor write the cache for them: every call samples anew.
    Bypass,
}

impl std::str::FromStr for SampledRequests {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cache" => Ok(Self::Cache),
            "bypass" => Ok(Self::Bypass),
            other => Err(format!("{other:?} is not cache or bypass")),
        }
    }
}

/// Which answers are worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Store answers cut by `maxTokens` (`stopReason: max_tokens`).
    pub store_max_tokens: bool,
    pub sampled: SampledRequests,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            store_max_tokens: false,
            sampled: SampledRequests::Cache,
        }
    }
}

impl CachePolicy {
    /// Whether the cache takes part in this request at all.
    pub fn applies_to(&self, conversation: &Conversation) -> bool {
        let sampled = conversation
            .inference_config
            .temperature
            .is_some_and(|t| t > 0.0);
        !(sampled && self.sampled == SampledRequests::Bypass)
    }

    /// Why an answer must not be stored, or `None` when it may: only a normal end with text,
    /// or a call for a tool (the same conversation with the same tools asks for the same call);
    /// never an answer a guardrail intervened in.
    pub fn refusal(&self, answer: &ModelAnswer) -> Option<&'static str> {
        if crate::guardrail::intervened(&answer.stop_reason) {
            // Its message stands for the model's answer to this caller, not to everyone.
            return Some("a guardrail intervened");
        }
        let normal_end = match answer.stop_reason.as_str() {
            "end_turn" | "stop_sequence" => true,
            "tool_use" => answer.tool_uses().next().is_some(),
            "max_tokens" => self.store_max_tokens,
            _ => false,
        };
        if !normal_end {
            Some("the answer did not end normally")
        } else if answer.text().trim().is_empty() && answer.tool_uses().next().is_none() {
            Some("the answer is empty")
        } else {
            None
        }
    }
}

/// The client's cache instruction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Read, and write on a miss.
    #[default]
    Use,
    /// Neither read nor write.
    Bypass,
    /// Skip the read, overwrite.
    Refresh,
}

/// What the cache did for a request, reported in `cache` and `x-cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheState {
    Hit,
    Miss,
    Bypass,
    Refresh,
}

impl CacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
            Self::Refresh => "REFRESH",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{
        CachePoint, CacheTtl, ContentBlock, InferenceConfig, InputSchema, Message, Role,
        SystemBlock, Tool, ToolChoice, ToolConfig, ToolSpec, ToolUse,
    };

    fn conversation() -> Conversation {
        Conversation {
            system: vec![SystemBlock::text("be brief")],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::text("hello")],
            }],
            inference_config: InferenceConfig {
                max_tokens: Some(100),
                ..InferenceConfig::default()
            },
            additional_model_request_fields: Some(
                serde_json::json!({"top_k": 5, "a": [1, {"y": 1, "x": 2}]}),
            ),
            tool_config: None,
        }
    }

    #[test]
    fn cache_points_change_the_cost_not_the_key() {
        let plain = CacheKey::for_request("shared", "m", &conversation()).unwrap();
        let mut cached = conversation();
        cached
            .system
            .push(SystemBlock::CachePoint(CachePoint::DEFAULT));
        cached.messages[0]
            .content
            .push(ContentBlock::CachePoint(CachePoint {
                ttl: Some(CacheTtl::OneHour),
                ..CachePoint::DEFAULT
            }));
        let mut tools = weather_tool(None);
        tools.tools.push(Tool::CachePoint(CachePoint::DEFAULT));
        cached.tool_config = Some(tools);
        let mut tools_only = conversation();
        tools_only.tool_config = Some(weather_tool(None));
        assert!(cached.has_cache_points());
        assert_eq!(
            CacheKey::for_request("shared", "m", &cached).unwrap(),
            CacheKey::for_request("shared", "m", &tools_only).unwrap()
        );
        cached.tool_config = None;
        assert_eq!(
            CacheKey::for_request("shared", "m", &cached).unwrap(),
            plain
        );
    }

    #[test]
    fn every_content_change_changes_the_key() {
        let base = CacheKey::for_request("shared", "m", &conversation()).unwrap();
        assert_eq!(
            base,
            CacheKey::for_request("shared", "m", &conversation()).unwrap()
        );
        assert_eq!(base.as_str().len(), 64);

        let mut changed = Vec::new();
        let mut c = conversation();
        c.system[0] = SystemBlock::text("be brief!");
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.inference_config.max_tokens = Some(101);
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.inference_config.temperature = Some(0.5);
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.messages[0].content[0] = ContentBlock::text("hello ");
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.additional_model_request_fields = None;
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.tool_config = Some(weather_tool(None));
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.tool_config = Some(weather_tool(Some(ToolChoice::Any {})));
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        changed.push(CacheKey::for_request("tenant-a", "m", &conversation()).unwrap());
        changed.push(CacheKey::for_request("shared", "other-model", &conversation()).unwrap());
        for key in &changed {
            assert_ne!(key, &base);
        }
        let distinct: std::collections::HashSet<_> = changed.iter().collect();
        assert_eq!(distinct.len(), changed.len());
    }

    fn weather_tool(choice: Option<ToolChoice>) -> ToolConfig {
        ToolConfig {
            tools: vec![Tool::ToolSpec(ToolSpec {
                name: "get_weather".into(),
                description: None,
                input_schema: InputSchema {
                    json: serde_json::json!({"type": "object"}),
                },
            })],
            tool_choice: choice,
        }
    }

    /// Text blocks keep the shape they had before tools, so keys stored then still match.
    #[test]
    fn text_blocks_serialise_as_before_tools() {
        assert_eq!(
            serde_json::to_value(ContentBlock::text("hi")).unwrap(),
            serde_json::json!({"text": "hi"})
        );
        let without_tools = serde_json::to_value(conversation()).unwrap();
        assert!(without_tools.get("toolConfig").is_none());
    }

    #[test]
    fn field_order_does_not_change_the_key() {
        let mut a = conversation();
        a.additional_model_request_fields =
            Some(serde_json::from_str(r#"{"top_k":5,"a":[1,{"y":1,"x":2}]}"#).unwrap());
        let mut b = conversation();
        b.additional_model_request_fields =
            Some(serde_json::from_str(r#"{ "a" : [1, {"x":2, "y":1}], "top_k" : 5 }"#).unwrap());
        assert_eq!(
            CacheKey::for_request("s", "m", &a).unwrap(),
            CacheKey::for_request("s", "m", &b).unwrap()
        );
    }

    fn answer(stop_reason: &str, text: &str) -> ModelAnswer {
        ModelAnswer {
            latency: None,
            invoked_model: None,
            service_tier: None,
            message: Message {
                role: Role::Assistant,
                content: vec![ContentBlock::text(text)],
            },
            stop_reason: stop_reason.into(),
            usage: crate::conversation::Usage::default(),
        }
    }

    #[test]
    fn only_normal_ends_with_text_are_stored() {
        let policy = CachePolicy::default();
        assert_eq!(policy.refusal(&answer("end_turn", "hi")), None);
        assert_eq!(policy.refusal(&answer("stop_sequence", "hi")), None);
        for refused in [
            answer("max_tokens", "hi"),
            answer("content_filtered", "hi"),
            answer("guardrail_intervened", "hi"),
            answer("tool_use", "hi"),
            answer("end_turn", " \n "),
        ] {
            assert!(policy.refusal(&refused).is_some(), "{refused:?}");
        }
        let with_max_tokens = CachePolicy {
            store_max_tokens: true,
            ..policy
        };
        assert_eq!(with_max_tokens.refusal(&answer("max_tokens", "hi")), None);

        // A tool call is a normal end of the turn, even without text.
        let mut tool_call = answer("tool_use", "");
        tool_call.message.content = vec![ContentBlock::ToolUse(ToolUse {
            tool_use_id: "tooluse_1".into(),
            name: "get_weather".into(),
            input: serde_json::json!({"city": "Paris"}),
        })];
        assert_eq!(policy.refusal(&tool_call), None);
    }

    #[test]
    fn sampled_requests_follow_the_setting() {
        let mut sampled = conversation();
        sampled.inference_config.temperature = Some(0.7);
        let mut greedy = conversation();
        greedy.inference_config.temperature = Some(0.0);
        let bypass = CachePolicy {
            sampled: SampledRequests::Bypass,
            ..CachePolicy::default()
        };
        assert!(CachePolicy::default().applies_to(&sampled));
        assert!(!bypass.applies_to(&sampled));
        assert!(bypass.applies_to(&greedy));
        assert!("sometimes".parse::<SampledRequests>().is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_and_escapes() {
        let mut out = String::new();
        write_canonical(
            &serde_json::json!({"b": "q\"", "a": [true, null, 1.5]}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":[true,null,1.5],"b":"q\""}"#);
    }
}
