//! The HTTP contract's request body: parsing and validation. Every problem names its field.

use serde::Deserialize;
use serde_json::Value;

use domain::cache::CacheMode;
use domain::conversation::{
    check_inference, check_messages, check_system, check_tools, ContentBlock, Conversation,
    InferenceConfig, Invalid, Message, SystemBlock, ToolConfig,
};
use domain::prompt::{collapse_whitespace, limit_chars};
use domain::routing::{Latency, ServiceTier};

pub use domain::conversation::MAX_TOKENS_LIMIT;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvokeBody {
    messages: Option<Vec<Message>>,
    prompt: Option<String>,
    system: Option<Vec<SystemBlock>>,
    inference_config: Option<InferenceConfig>,
    model_id: Option<String>,
    cache: Option<CacheOptions>,
    optimize_prompt: Option<bool>,
    context_limit_chars: Option<usize>,
    additional_model_request_fields: Option<Value>,
    tool_config: Option<ToolConfig>,
    stream: Option<bool>,
    service_tier: Option<ServiceTierBody>,
    performance_config: Option<PerformanceBody>,
}

/// Converse's `performanceConfig`: `{"latency": "standard" | "optimized"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceBody {
    latency: Latency,
}

/// Converse's `serviceTier`: `{"type": "priority" | "default" | "flex"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceTierBody {
    #[serde(rename = "type")]
    kind: ServiceTier,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CacheOptions {
    #[serde(default)]
    mode: CacheMode,
    ttl_seconds: Option<i64>,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeRequest {
    /// What is sent to the model, after prompt optimisation.
    pub conversation: Conversation,
    pub model_id: Option<String>,
    pub cache_mode: CacheMode,
    pub ttl_seconds: Option<u64>,
    /// Answer as server-sent events while the model writes.
    pub stream: bool,
    /// The service tier asked for; `None` leaves it to the deployment (`SERVICE_TIER`).
    pub service_tier: Option<ServiceTier>,
    /// The latency asked of Bedrock (`performanceConfig.latency`).
    pub latency: Option<Latency>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl From<Invalid> for RequestError {
    fn from(invalid: Invalid) -> Self {
        Self::invalid(invalid.field, invalid.reason)
    }
}

impl RequestError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "InvalidJson",
            Self::Invalid { reason, .. } if reason.starts_with("unknown field") => "UnknownField",
            // A content block's or a tool choice's kind is its one key: an unknown kind is an
            // unknown field; an unknown role or mode is a bad value.
            Self::Invalid { field, reason }
                if reason.starts_with("unknown variant")
                    && (field.ends_with(']') || field.ends_with("toolChoice")) =>
            {
                "UnknownField"
            }
            Self::Invalid { .. } => "ValidationError",
        }
    }
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> &str {
    message
        .rsplit_once(" at line ")
        .map_or(message, |(head, _)| head)
}

/// Applies `optimizePrompt` and `contextLimitChars` to a text.
fn optimise(text: &mut String, collapse: bool, limit: Option<usize>) {
    if collapse {
        *text = collapse_whitespace(text);
    }
    if let Some(limit) = limit {
        *text = limit_chars(text, limit);
    }
}

/// Parses and validates a request body.
pub fn parse(body: &[u8]) -> Result<InvokeRequest, RequestError> {
    let mut parsed = read_body(body)?;
    let mut messages = messages_of(parsed.messages.take(), parsed.prompt.take())?;
    let mut system = parsed.system.take().unwrap_or_default();
    check_system(&system)?;
    let inference_config = parsed.inference_config.take().unwrap_or_default();
    check_inference(&inference_config)?;
    let model_id = check_model_id(parsed.model_id.take())?;
    let cache = parsed.cache.take().unwrap_or_default();
    let ttl_seconds = check_ttl(cache.ttl_seconds)?;
    check_limits(&parsed)?;
    check_tools(parsed.tool_config.as_ref(), &messages)?;

    // Tool calls and results are passed as they are: cutting them would change their meaning.
    let collapse = parsed.optimize_prompt.unwrap_or(false);
    for block in &mut system {
        if let SystemBlock::Text(text) = block {
            optimise(text, collapse, parsed.context_limit_chars);
        }
    }
    for block in messages.iter_mut().flat_map(|m| m.content.iter_mut()) {
        if let ContentBlock::Text(text) = block {
            optimise(text, collapse, parsed.context_limit_chars);
        }
    }

    Ok(InvokeRequest {
        conversation: Conversation {
            system,
            messages,
            inference_config,
            additional_model_request_fields: parsed.additional_model_request_fields,
            tool_config: parsed.tool_config,
        },
        model_id,
        cache_mode: cache.mode,
        ttl_seconds,
        stream: parsed.stream.unwrap_or(false),
        service_tier: parsed.service_tier.map(|tier| tier.kind),
        latency: parsed.performance_config.map(|config| config.latency),
    })
}

/// The body as one JSON object of the request's shape, errors naming the field.
fn read_body(body: &[u8]) -> Result<InvokeBody, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::invalid(
            "body",
            "is empty; send a JSON object with messages or prompt",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: InvokeBody = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return RequestError::InvalidJson(inner.to_string());
        }
        let field = if path == "." { "body".to_owned() } else { path };
        let reason = strip_position(&inner.to_string()).to_owned();
        let reason = if field == "body" && reason.starts_with("invalid type") {
            "must be a JSON object with messages or prompt".to_owned()
        } else {
            reason
        };
        RequestError::invalid(field, reason)
    })?;
    // One JSON value and nothing after it: a second object or stray bytes are a mistake.
    deserializer.end().map_err(|e| {
        RequestError::InvalidJson(format!(
            "{}; send exactly one JSON object",
            strip_position(&e.to_string())
        ))
    })?;
    Ok(parsed)
}

/// The conversation's messages: `messages`, or `prompt` as one user message.
fn messages_of(
    messages: Option<Vec<Message>>,
    prompt: Option<String>,
) -> Result<Vec<Message>, RequestError> {
    match (messages, prompt) {
        (Some(_), Some(_)) => Err(RequestError::invalid(
            "prompt",
            "send either messages or prompt, not both",
        )),
        (None, None) => Err(RequestError::invalid(
            "messages",
            "is required (or prompt, a string for a single user message)",
        )),
        (None, Some(prompt)) => {
            if prompt.trim().is_empty() {
                return Err(RequestError::invalid(
                    "prompt",
                    "must not be empty or only whitespace",
                ));
            }
            Ok(vec![Message::user_text(prompt)])
        }
        (Some(messages), None) => {
            check_messages(&messages)?;
            Ok(messages)
        }
    }
}

fn check_model_id(model_id: Option<String>) -> Result<Option<String>, RequestError> {
    match model_id {
        Some(id) if id.trim().is_empty() => Err(RequestError::invalid(
            "modelId",
            "must not be empty; omit it to choose the model by complexity",
        )),
        other => Ok(other),
    }
}

fn check_ttl(ttl_seconds: Option<i64>) -> Result<Option<u64>, RequestError> {
    match ttl_seconds {
        None => Ok(None),
        Some(ttl) if ttl < 1 => Err(RequestError::invalid(
            "cache.ttlSeconds",
            format!("must be at least 1, got {ttl}"),
        )),
        Some(ttl) => Ok(Some(u64::try_from(ttl).unwrap_or(u64::MAX))),
    }
}

fn check_limits(parsed: &InvokeBody) -> Result<(), RequestError> {
    if parsed.context_limit_chars == Some(0) {
        return Err(RequestError::invalid(
            "contextLimitChars",
            "must be at least 1",
        ));
    }
    if let Some(fields) = &parsed.additional_model_request_fields {
        if !fields.is_object() {
            return Err(RequestError::invalid(
                "additionalModelRequestFields",
                "must be a JSON object",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::conversation::{CachePoint, CacheTtl};
    use domain::prompt::CUT_MARKER;

    #[test]
    fn tools_and_stream_are_read_and_checked() {
        let request = parse(
            br#"{"prompt": "weather in Paris?", "stream": true, "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"auto": {}}}}"#,
        )
        .unwrap();
        assert!(request.stream);
        assert!(request.conversation.tool_config.is_some());
        let err = parse(
            br#"{"messages": [{"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "21C"}]}}]}]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, RequestError::Invalid { field, .. } if field == "toolConfig"),
            "{err}"
        );
    }

    #[test]
    fn cache_points_pass_through_where_they_stand_and_one_first_is_refused() {
        let request = parse(
            br#"{"system": [{"text": "a long system prompt"}, {"cachePoint": {"type": "default"}}],
                "messages": [{"role": "user", "content": [{"text": "documents"},
                    {"cachePoint": {"type": "default", "ttl": "1h"}}, {"text": "question"}]}],
                "toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "object"}}}},
                    {"cachePoint": {"type": "default"}}]}}"#,
        )
        .unwrap();
        let c = &request.conversation;
        assert_eq!(c.system[1], SystemBlock::CachePoint(CachePoint::DEFAULT));
        assert_eq!(
            c.messages[0].content[1],
            ContentBlock::CachePoint(CachePoint {
                ttl: Some(CacheTtl::OneHour),
                ..CachePoint::DEFAULT
            })
        );
        assert!(c.has_cache_points());

        for (body, field) in [
            (
                r#"{"system": [{"cachePoint": {"type": "default"}}], "prompt": "x"}"#,
                "system[0].cachePoint",
            ),
            (
                r#"{"messages": [{"role": "user", "content": [{"cachePoint": {"type": "default"}}, {"text": "x"}]}]}"#,
                "messages[0].content[0].cachePoint",
            ),
        ] {
            match parse(body.as_bytes()).unwrap_err() {
                RequestError::Invalid { field: got, .. } => assert_eq!(got, field, "{body}"),
                other => panic!("{other:?}"),
            }
        }
        for bad in [
            r#"{"system": [{"text": "x"}, {"cachePoint": {"type": "other"}}], "prompt": "x"}"#,
            r#"{"system": [{"text": "x"}, {"cachePoint": {"type": "default", "ttl": "2h"}}], "prompt": "x"}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_service_tier_is_read_in_converses_shape_and_an_unknown_one_refused() {
        let request = parse(br#"{"prompt": "x", "serviceTier": {"type": "flex"}}"#).unwrap();
        assert_eq!(request.service_tier, Some(ServiceTier::Flex));
        assert_eq!(parse(br#"{"prompt": "x"}"#).unwrap().service_tier, None);
        let optimized =
            parse(br#"{"prompt": "x", "performanceConfig": {"latency": "optimized"}}"#).unwrap();
        assert_eq!(optimized.latency, Some(Latency::Optimized));
        assert!(parse(br#"{"prompt": "x", "performanceConfig": {"latency": "fast"}}"#).is_err());
        for bad in [
            r#"{"prompt": "x", "serviceTier": {"type": "reserved"}}"#,
            r#"{"prompt": "x", "serviceTier": "flex"}"#,
        ] {
            match parse(bad.as_bytes()).unwrap_err() {
                RequestError::Invalid { field, .. } => {
                    assert!(field.starts_with("serviceTier"), "{field}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn prompt_is_shorthand_for_one_user_message() {
        let a = parse(br#"{"prompt": "hello"}"#).unwrap();
        let b =
            parse(br#"{"messages": [{"role": "user", "content": [{"text": "hello"}]}]}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.cache_mode, CacheMode::Use);
    }

    #[test]
    fn optimisation_collapses_and_cuts_text() {
        let request = parse(
            br#"{"prompt": "a   lot \n\n of   space", "system": [{"text": "  be\tbrief "}], "optimizePrompt": true, "contextLimitChars": 8}"#,
        )
        .unwrap();
        let text = request.conversation.messages[0].content[0].as_text();
        assert_eq!(text, Some(format!("a lot of{CUT_MARKER}").as_str()));
        assert_eq!(
            request.conversation.system[0],
            SystemBlock::text("be brief")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse(br#"{"messages": [{"role": "system", "content": [{"text": "x"}]}]}"#)
            .unwrap_err();
        assert!(
            matches!(&err, RequestError::Invalid { field, .. } if field == "messages[0].role"),
            "{err}"
        );
        let err =
            parse(br#"{"prompt": "x", "inferenceConfig": {"maxTokens": "many"}}"#).unwrap_err();
        assert!(
            matches!(&err, RequestError::Invalid { field, .. } if field == "inferenceConfig.maxTokens"),
            "{err}"
        );
        let err = parse(br#"{"prompt": "x", "colour": 1}"#).unwrap_err();
        assert_eq!(err.code(), "UnknownField");
        assert!(err.to_string().contains("colour"), "{err}");
        let err = parse(b"{\"prompt\": ").unwrap_err();
        assert_eq!(err.code(), "InvalidJson");
    }

    #[test]
    fn nothing_may_follow_the_json_value() {
        assert!(parse(b"{\"prompt\": \"x\"}  \n").is_ok());
        for trailing in [
            &b"{\"prompt\": \"x\"}{\"prompt\": \"y\"}"[..],
            b"{\"prompt\": \"x\"} garbage",
            b"{\"prompt\": \"x\"}]",
        ] {
            let err = parse(trailing).unwrap_err();
            assert_eq!(err.code(), "InvalidJson", "{err}");
            assert!(err.to_string().contains("trailing"), "{err}");
        }
    }
}
