//! The OpenAI-compatible API, so the `openai` SDKs work unchanged: `POST
//! /openai/v1/chat/completions` read into the function's request ([`parse`]), and answers,
//! chunks, model lists and errors written in OpenAI's shapes.

mod request;
mod response;

pub use request::{parse, OpenAiOptions, AUTO_MODEL};
pub use response::{completion, error_body, finish_reason, models, ChunkWriter};

#[cfg(test)]
mod tests {
    use domain::conversation::{ContentBlock, SystemBlock, ToolChoice, ToolUse, Usage};
    use domain::stream::StreamEvent;
    use http::StatusCode;
    use serde_json::{json, Value};

    use super::*;
    use crate::answered::StreamMeta;
    use crate::error::ApiError;
    use crate::request::InvokeRequest;

    fn parse_ok(body: Value) -> (InvokeRequest, String, OpenAiOptions) {
        parse(body.to_string().as_bytes()).unwrap()
    }

    fn parse_err(body: Value) -> ApiError {
        parse(body.to_string().as_bytes()).unwrap_err()
    }

    #[test]
    fn cache_control_marks_become_cache_points_after_what_they_mark() {
        use domain::conversation::{CachePoint, CacheTtl};
        let (request, _, _) = parse_ok(json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": [
                    {"type": "text", "text": "a long policy", "cache_control": {"type": "ephemeral"}},
                ]},
                {"role": "user", "content": [
                    {"type": "text", "text": "documents", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                    {"type": "text", "text": "question"},
                ]},
                {"role": "assistant", "content": "answer", "cache_control": {"type": "ephemeral"}},
                {"role": "user", "content": "more"},
            ],
        }));
        let c = &request.conversation;
        assert_eq!(
            c.system,
            vec![
                SystemBlock::text("a long policy"),
                SystemBlock::CachePoint(CachePoint::DEFAULT)
            ]
        );
        assert_eq!(
            c.messages[0].content,
            vec![
                ContentBlock::text("documents"),
                ContentBlock::CachePoint(CachePoint {
                    ttl: Some(CacheTtl::OneHour),
                    ..CachePoint::DEFAULT
                }),
                ContentBlock::text("question"),
            ]
        );
        assert_eq!(
            c.messages[1].content,
            vec![
                ContentBlock::text("answer"),
                ContentBlock::CachePoint(CachePoint::DEFAULT)
            ]
        );

        let refused = parse_err(json!({"model": "auto", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "persistent"}}]},
        ]}));
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            refused.param.as_deref(),
            Some("messages[0].content[0].cache_control.type")
        );
    }

    #[test]
    fn service_tier_auto_is_the_deployments_and_the_others_are_bedrocks() {
        use domain::routing::ServiceTier;
        let tier = |value: Value| {
            let mut body = json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]});
            body["service_tier"] = value;
            parse(body.to_string().as_bytes()).map(|(request, _, _)| request.service_tier)
        };
        assert_eq!(tier(json!("auto")).unwrap(), None);
        assert_eq!(tier(json!("flex")).unwrap(), Some(ServiceTier::Flex));
        assert_eq!(
            tier(json!("priority")).unwrap(),
            Some(ServiceTier::Priority)
        );
        let refused = tier(json!("scale")).unwrap_err();
        assert_eq!(refused.param.as_deref(), Some("service_tier"));
    }

    #[test]
    fn usage_counts_cached_prompt_tokens_as_openai_does() {
        let usage = Usage {
            cache_read_input_tokens: 2048,
            cache_write_input_tokens: 100,
            ..Usage::new(3, 7)
        };
        let json = super::response::usage_json(&usage);
        assert_eq!(
            json,
            json!({"prompt_tokens": 2151, "completion_tokens": 7, "total_tokens": 2158,
                "prompt_tokens_details": {"cached_tokens": 2048}})
        );
        let plain = super::response::usage_json(&Usage::new(3, 7));
        assert_eq!(plain.get("prompt_tokens_details"), None);
    }

    #[test]
    fn maps_messages_and_inference_settings_to_converse() {
        let (request, model, options) = parse_ok(json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "in French"}]},
                {"role": "user", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "n": 1,
            "user": "u-1",
        }));
        assert_eq!(model, "auto");
        assert!(request.stream);
        assert!(options.include_usage);
        let c = &request.conversation;
        assert_eq!(
            c.system,
            vec![
                SystemBlock::text("be brief"),
                SystemBlock::text("in French")
            ]
        );
        assert_eq!(c.messages.len(), 1, "consecutive user messages merge");
        assert_eq!(c.messages[0].content.len(), 2);
        assert_eq!(c.inference_config.max_tokens, Some(20));
        assert_eq!(c.inference_config.temperature, Some(0.5));
        assert_eq!(c.inference_config.top_p, Some(0.9));
        assert_eq!(c.inference_config.stop_sequences, vec!["END".to_owned()]);
    }

    #[test]
    fn maps_tools_and_a_tool_round_trip() {
        let (request, _, _) = parse_ok(json!({
            "model": "auto",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }));
        let c = &request.conversation;
        let config = c.tool_config.as_ref().unwrap();
        assert_eq!(
            config.tool_choice,
            Some(ToolChoice::Tool {
                name: "get_weather".into()
            })
        );
        assert_eq!(
            c.messages[1].content,
            vec![ContentBlock::ToolUse(ToolUse {
                tool_use_id: "call_1".into(),
                name: "get_weather".into(),
                input: json!({"city": "Paris"}),
            })]
        );
        assert!(
            matches!(&c.messages[2].content[0], ContentBlock::ToolResult(r) if r.tool_use_id == "call_1")
        );
    }

    #[test]
    fn tool_choice_none_without_history_leaves_the_tools_out() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (choice, expected) in [
            (json!("auto"), Some(ToolChoice::Auto {})),
            (json!("required"), Some(ToolChoice::Any {})),
        ] {
            let (request, _, _) = parse_ok(
                json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            );
            assert_eq!(
                request.conversation.tool_config.unwrap().tool_choice,
                expected
            );
        }
        let (request, _, _) = parse_ok(
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "none"}),
        );
        assert_eq!(request.conversation.tool_config, None);
    }

    #[test]
    fn fields_that_would_change_the_answer_are_refused_by_name() {
        let base = || json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]});
        for (field, value) in [
            ("seed", json!(7)),
            ("n", json!(2)),
            ("logit_bias", json!({"50256": -100})),
            ("presence_penalty", json!(0.5)),
            ("response_format", json!({"type": "json_object"})),
            ("logprobs", json!(true)),
            ("parallel_tool_calls", json!(false)),
            ("colour", json!("blue")),
        ] {
            let mut body = base();
            body[field] = value;
            let error = parse_err(body);
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert_eq!(error.param.as_deref(), Some(field), "{error:?}");
            assert!(error.message.contains(field), "{error:?}");
        }
        let mut body = base();
        body["temperature"] = json!(1.5);
        assert_eq!(parse_err(body).param.as_deref(), Some("temperature"));
        let mut body = base();
        body["messages"] = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]);
        assert_eq!(
            parse_err(body).param.as_deref(),
            Some("messages[0].content[0].type")
        );
    }

    #[test]
    fn finish_reasons_follow_openai() {
        assert_eq!(finish_reason("end_turn"), "stop");
        assert_eq!(finish_reason("stop_sequence"), "stop");
        assert_eq!(finish_reason("max_tokens"), "length");
        assert_eq!(finish_reason("tool_use"), "tool_calls");
        assert_eq!(finish_reason("content_filtered"), "content_filter");
    }

    #[test]
    fn chunks_number_tool_calls_from_zero() {
        let meta = StreamMeta::for_tests("chatcmpl-x");
        let mut writer = ChunkWriter::new(
            &meta,
            OpenAiOptions {
                include_usage: true,
            },
        );
        let start = writer
            .event(&StreamEvent::ToolUseStart {
                index: 1,
                tool_use_id: "t".into(),
                name: "f".into(),
            })
            .unwrap();
        let text = String::from_utf8(start.to_vec()).unwrap();
        let chunk: Value = serde_json::from_str(text.trim().trim_start_matches("data: ")).unwrap();
        assert_eq!(chunk["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        let usage = writer.event(&StreamEvent::Usage(Usage::default())).unwrap();
        let usage: Value = serde_json::from_str(
            String::from_utf8(usage.to_vec())
                .unwrap()
                .trim()
                .trim_start_matches("data: "),
        )
        .unwrap();
        assert_eq!(usage["choices"], json!([]));
    }
}
