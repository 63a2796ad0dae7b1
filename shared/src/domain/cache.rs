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
    /// the additional model fields, and the namespace (so tenants never share entries).
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
    /// What the call cost, reported as `savedUsd` on every hit.
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
    use crate::domain::conversation::{InferenceConfig, Message, Role, TextBlock};

    fn conversation() -> Conversation {
        Conversation {
            system: vec![TextBlock::new("be brief")],
            messages: vec![Message {
                role: Role::User,
                content: vec![TextBlock::new("hello")],
            }],
            inference_config: InferenceConfig {
                max_tokens: Some(100),
                ..InferenceConfig::default()
            },
            additional_model_request_fields: Some(
                serde_json::json!({"top_k": 5, "a": [1, {"y": 1, "x": 2}]}),
            ),
        }
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
        c.system[0].text.push('!');
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.inference_config.max_tokens = Some(101);
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.inference_config.temperature = Some(0.5);
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.messages[0].content[0].text = "hello ".into();
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        let mut c = conversation();
        c.additional_model_request_fields = None;
        changed.push(CacheKey::for_request("shared", "m", &c).unwrap());
        changed.push(CacheKey::for_request("tenant-a", "m", &conversation()).unwrap());
        changed.push(CacheKey::for_request("shared", "other-model", &conversation()).unwrap());
        for key in &changed {
            assert_ne!(key, &base);
        }
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
