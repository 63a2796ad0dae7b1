#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Guardrails, prompt routers (runtime and control plane) and CountTokens through the AWS SDK
//! for Rust (the emulator in-process, one per test). Guardrails and routers are defined through
//! the admin API.

mod common;

use aws_sdk_bedrock::operation::get_prompt_router::GetPromptRouterError;
use aws_sdk_bedrock::types::{PromptRouterStatus, PromptRouterType};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::operation::count_tokens::CountTokensError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, ConverseStreamTrace,
    ConverseTokensRequest, CountTokensInput, GuardrailConfiguration, GuardrailStreamConfiguration,
    GuardrailStreamProcessingMode, GuardrailTrace, GuardrailWordPolicyAction,
    InvokeModelTokensRequest, Message, StopReason, SystemContentBlock,
};
use aws_sdk_bedrockruntime::Client;
use common::Emulator;
use serde_json::json;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SONNET_3_5: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// The built-in default router, in the emulator's default account and region.
const DEFAULT_ROUTER: &str =
    "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
const GUARDRAIL_ID: &str = "gr1abc";

fn client(emulator: &Emulator) -> Client {
    Client::new(&emulator.sdk_config())
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .expect("message")
}

fn text_of(output: &ConverseOutput) -> String {
    let message = output
        .output()
        .expect("output")
        .as_message()
        .expect("message");
    match &message.content()[0] {
        ContentBlock::Text(text) => text.clone(),
        other => panic!("{other:?}"),
    }
}

async fn define_guardrail(emulator: &Emulator) {
    emulator
        .configure(json!({"guardrails": {GUARDRAIL_ID: {
            "blockedWords": ["Password"],
            "blockedInputMessage": "I can't help with credentials.",
            "blockedOutputMessage": "That answer was blocked.",
        }}}))
        .await;
}

fn guardrail(identifier: &str, version: &str, trace: GuardrailTrace) -> GuardrailConfiguration {
    GuardrailConfiguration::builder()
        .guardrail_identifier(identifier)
        .guardrail_version(version)
        .trace(trace)
        .build()
}

#[tokio::test]
async fn a_blocked_word_in_the_input_intervenes_with_the_trace_asked_for() {
    let emulator = Emulator::start().await;
    define_guardrail(&emulator).await;
    let client = client(&emulator);
    let plain = client
        .converse()
        .model_id(HAIKU)
        .messages(user("What is the admin password?"))
        .send()
        .await
        .expect("converse");

    let arn = format!("arn:aws:bedrock:us-east-1:123456789012:guardrail/{GUARDRAIL_ID}");
    let output = client
        .converse()
        .model_id(HAIKU)
        .messages(user("What is the admin password?"))
        .guardrail_config(guardrail(&arn, "DRAFT", GuardrailTrace::Enabled))
        .send()
        .await
        .expect("converse");
    assert_eq!(output.stop_reason(), &StopReason::GuardrailIntervened);
    assert_eq!(text_of(&output), "I can't help with credentials.");
    let usage = output.usage().expect("usage");
    // 30 characters: 8 tokens.
    assert_eq!(usage.output_tokens(), 8);
    assert_eq!(
        usage.input_tokens(),
        plain.usage().expect("usage").input_tokens()
    );
    let trace = output
        .trace()
        .and_then(|t| t.guardrail())
        .expect("guardrail trace");
    let assessment = &trace.input_assessment().expect("input assessment")[GUARDRAIL_ID];
    let words = assessment
        .word_policy()
        .expect("word policy")
        .custom_words();
    assert_eq!(words.len(), 1);
    assert_eq!(words[0].r#match(), "Password");
    assert_eq!(words[0].action(), &GuardrailWordPolicyAction::Blocked);
    assert_eq!(words[0].detected(), Some(true));
    let metrics = assessment.invocation_metrics().expect("metrics");
    assert_eq!(metrics.usage().expect("usage").word_policy_units(), 1);
    assert!(trace.output_assessments().is_none());

    // Without a trace: the same intervention, no trace.
    let quiet = client
        .converse()
        .model_id(HAIKU)
        .messages(user("password"))
        .guardrail_config(guardrail(GUARDRAIL_ID, "1", GuardrailTrace::Disabled))
        .send()
        .await
        .expect("converse");
    assert_eq!(quiet.stop_reason(), &StopReason::GuardrailIntervened);
    assert!(quiet.trace().is_none());

    let stats = emulator.stats().await;
    assert_eq!(stats["models"][HAIKU]["guardrailInterventions"], 2);
    assert_eq!(stats["models"][HAIKU]["served"], 3);
}

#[tokio::test]
async fn a_blocked_word_in_the_input_intervenes_in_a_stream() {
    let emulator = Emulator::start().await;
    define_guardrail(&emulator).await;
    let config = GuardrailStreamConfiguration::builder()
        .guardrail_identifier(GUARDRAIL_ID)
        .guardrail_version("DRAFT")
        .trace(GuardrailTrace::EnabledFull)
        .stream_processing_mode(GuardrailStreamProcessingMode::Sync)
        .build();
    let mut stream = client(&emulator)
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("Reset my PASSWORD now"))
        .guardrail_config(config)
        .send()
        .await
        .expect("converse stream")
        .stream;
    let (mut text, mut stop, mut trace) = (String::new(), None, None);
    while let Some(event) = stream.recv().await.expect("stream event") {
        match event {
            ConverseStreamOutput::ContentBlockDelta(delta) => {
                if let Some(delta) = delta.delta() {
                    text.push_str(delta.as_text().expect("text delta"));
                }
            }
            ConverseStreamOutput::MessageStop(event) => stop = Some(event.stop_reason().clone()),
            ConverseStreamOutput::Metadata(event) => trace = event.trace().cloned(),
            _ => {}
        }
    }
    assert_eq!(text, "I can't help with credentials.");
    assert_eq!(stop, Some(StopReason::GuardrailIntervened));
    let trace: ConverseStreamTrace = trace.expect("a trace");
    let assessment = &trace
        .guardrail()
        .and_then(|g| g.input_assessment())
        .expect("input assessment")[GUARDRAIL_ID];
    assert_eq!(
        assessment
            .word_policy()
            .expect("word policy")
            .custom_words()[0]
            .r#match(),
        "Password"
    );
}

#[tokio::test]
async fn a_blocked_word_in_the_answer_is_replaced_by_the_output_message() {
    let emulator = Emulator::start().await;
    define_guardrail(&emulator).await;
    let client = client(&emulator);
    let ask = |config: Option<GuardrailConfiguration>| {
        client
            .converse()
            .model_id(HAIKU)
            .messages(user("Tell me about the sea"))
            .set_guardrail_config(config)
            .send()
    };
    // The guardrail changes nothing the model says: block one of the words it will say.
    let answer = text_of(&ask(None).await.expect("converse"));
    let word = answer
        .trim_end_matches('.')
        .split(' ')
        .nth(2)
        .expect("a third word");
    emulator
        .configure(json!({"guardrails": {GUARDRAIL_ID: {"blockedOutputWords": [word]}}}))
        .await;
    let passing = ask(Some(guardrail(
        GUARDRAIL_ID,
        "DRAFT",
        GuardrailTrace::Disabled,
    )))
    .await
    .expect("converse");
    assert_eq!(passing.stop_reason(), &StopReason::GuardrailIntervened);
    assert_eq!(text_of(&passing), "That answer was blocked.");

    let traced = ask(Some(guardrail(
        GUARDRAIL_ID,
        "DRAFT",
        GuardrailTrace::Enabled,
    )))
    .await
    .expect("converse");
    let trace = traced.trace().and_then(|t| t.guardrail()).expect("trace");
    assert_eq!(trace.model_output(), std::slice::from_ref(&answer));
    let outputs = &trace.output_assessments().expect("output assessments")[GUARDRAIL_ID];
    assert_eq!(
        outputs[0]
            .word_policy()
            .expect("word policy")
            .custom_words()[0]
            .r#match(),
        word
    );
    let input = &trace.input_assessment().expect("input assessment")[GUARDRAIL_ID];
    assert!(input.word_policy().is_none());
}

#[tokio::test]
async fn an_unknown_guardrail_or_version_is_refused() {
    let emulator = Emulator::start().await;
    define_guardrail(&emulator).await;
    let client = client(&emulator);
    for (identifier, version) in [
        ("nosuchguardrail", "DRAFT"),
        (GUARDRAIL_ID, "7"),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:guardrail/gr1abc",
            "1",
        ),
    ] {
        let error = client
            .converse()
            .model_id(HAIKU)
            .messages(user("Hello"))
            .guardrail_config(guardrail(identifier, version, GuardrailTrace::Enabled))
            .send()
            .await
            .expect_err("refused")
            .into_service_error();
        let ConverseError::ValidationException(exception) = error else {
            panic!("{error:?}");
        };
        assert_eq!(
            exception.message(),
            Some("The guardrail identifier or version provided in the request does not exist.")
        );
    }
    let stats = emulator.stats().await;
    assert_eq!(stats["models"][HAIKU]["validationErrors"], 3);
    // null removes a guardrail.
    emulator
        .configure(json!({"guardrails": {GUARDRAIL_ID: null}}))
        .await;
    let error = client
        .converse()
        .model_id(HAIKU)
        .messages(user("Hello"))
        .guardrail_config(guardrail(GUARDRAIL_ID, "DRAFT", GuardrailTrace::Enabled))
        .send()
        .await
        .expect_err("refused")
        .into_service_error();
    assert!(
        matches!(error, ConverseError::ValidationException(_)),
        "{error:?}"
    );
}

async fn routed(client: &Client, model_id: &str, text: &str) -> ConverseOutput {
    client
        .converse()
        .model_id(model_id)
        .messages(user(text))
        .send()
        .await
        .expect("converse")
}

fn invoked(output: &ConverseOutput) -> Option<&str> {
    output
        .trace()
        .and_then(|t| t.prompt_router())
        .and_then(|r| r.invoked_model_id())
}

#[tokio::test]
async fn the_default_router_sends_short_and_long_prompts_to_different_models() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let short = routed(&client, DEFAULT_ROUTER, "What is the capital of France?").await;
    let long_prompt = "Summarise this carefully. ".repeat(80);
    let long = routed(&client, DEFAULT_ROUTER, &long_prompt).await;
    assert_eq!(
        invoked(&short),
        Some("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(
        invoked(&long),
        Some(
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0"
        )
    );
    // Each answered as its model answers.
    let direct = routed(&client, SONNET_3_5, &long_prompt).await;
    assert_eq!(text_of(&long), text_of(&direct));
    assert!(invoked(&direct).is_none());

    // The stream's metadata carries the same trace.
    let mut stream = client
        .converse_stream()
        .model_id(DEFAULT_ROUTER)
        .messages(user("What is the capital of France?"))
        .send()
        .await
        .expect("converse stream")
        .stream;
    let mut trace = None;
    while let Some(event) = stream.recv().await.expect("stream event") {
        if let ConverseStreamOutput::Metadata(event) = event {
            trace = event.trace().cloned();
        }
    }
    let streamed = trace
        .and_then(|t| t.prompt_router().cloned())
        .and_then(|r| r.invoked_model_id().map(str::to_owned));
    assert_eq!(streamed.as_deref(), invoked(&short));

    let stats = emulator.stats().await;
    assert_eq!(stats["models"][HAIKU]["calls"], 2);
    assert_eq!(stats["models"][SONNET_3_5]["calls"], 2);
    assert!(stats["models"].get(DEFAULT_ROUTER).is_none());
}

#[tokio::test]
async fn configured_routers_are_served_got_and_listed() {
    let emulator = Emulator::start().await;
    let custom = "arn:aws:bedrock:us-east-1:123456789012:prompt-router/nova4short";
    emulator
        .configure(json!({"promptRouters": {
            custom: {"models": ["amazon.nova-micro-v1:0", "amazon.nova-pro-v1:0"], "thresholdChars": 10, "name": "Nova router"},
            DEFAULT_ROUTER: {"thresholdChars": 5},
        }}))
        .await;
    let client = client(&emulator);
    assert_eq!(
        invoked(&routed(&client, custom, "Hi").await),
        Some("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0")
    );
    assert_eq!(
        invoked(&routed(&client, custom, "Hello there").await),
        Some("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0")
    );
    assert_eq!(
        invoked(&routed(&client, DEFAULT_ROUTER, "Hello").await),
        Some(
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0"
        )
    );

    let bedrock = aws_sdk_bedrock::Client::new(&emulator.sdk_config());
    let got = bedrock
        .get_prompt_router()
        .prompt_router_arn(DEFAULT_ROUTER)
        .send()
        .await
        .expect("GetPromptRouter");
    assert_eq!(got.prompt_router_name(), "Anthropic Prompt Router");
    assert_eq!(got.prompt_router_arn(), DEFAULT_ROUTER);
    assert_eq!(got.r#type(), &PromptRouterType::Default);
    assert_eq!(got.status(), &PromptRouterStatus::Available);
    let models: Vec<_> = got.models().iter().filter_map(|m| m.model_arn()).collect();
    assert_eq!(
        models,
        [
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0",
        ]
    );
    assert_eq!(
        got.fallback_model().and_then(|m| m.model_arn()),
        Some(models[1])
    );
    let custom_got = bedrock
        .get_prompt_router()
        .prompt_router_arn(custom)
        .send()
        .await
        .expect("GetPromptRouter");
    assert_eq!(
        (custom_got.prompt_router_name(), custom_got.r#type()),
        ("Nova router", &PromptRouterType::Custom)
    );

    let all = bedrock
        .list_prompt_routers()
        .send()
        .await
        .expect("ListPromptRouters");
    let arns: Vec<_> = all
        .prompt_router_summaries()
        .iter()
        .map(|s| s.prompt_router_arn())
        .collect();
    assert_eq!(arns, [DEFAULT_ROUTER, custom]);
    let defaults = bedrock
        .list_prompt_routers()
        .r#type(PromptRouterType::Default)
        .send()
        .await
        .expect("ListPromptRouters");
    assert_eq!(defaults.prompt_router_summaries().len(), 1);
    let first = bedrock
        .list_prompt_routers()
        .max_results(1)
        .send()
        .await
        .expect("ListPromptRouters");
    let token = first.next_token().expect("a next page");
    let second = bedrock
        .list_prompt_routers()
        .max_results(1)
        .next_token(token)
        .send()
        .await
        .expect("ListPromptRouters");
    assert_eq!(
        second.prompt_router_summaries()[0].prompt_router_arn(),
        custom
    );
    assert!(second.next_token().is_none());

    let missing = bedrock
        .get_prompt_router()
        .prompt_router_arn("arn:aws:bedrock:us-east-1:123456789012:prompt-router/missing")
        .send()
        .await
        .expect_err("not found")
        .into_service_error();
    assert!(
        matches!(missing, GetPromptRouterError::ResourceNotFoundException(_)),
        "{missing:?}"
    );
    let invalid = bedrock
        .get_prompt_router()
        .prompt_router_arn("not-an-arn")
        .send()
        .await
        .expect_err("invalid")
        .into_service_error();
    assert!(
        matches!(invalid, GetPromptRouterError::ValidationException(_)),
        "{invalid:?}"
    );

    // null removes a configured router; the built-in one is back to its threshold.
    emulator
        .configure(json!({"promptRouters": {custom: null, DEFAULT_ROUTER: null}}))
        .await;
    assert_eq!(
        invoked(&routed(&client, DEFAULT_ROUTER, "Hello").await),
        Some("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0")
    );
    let error = client
        .converse()
        .model_id(custom)
        .messages(user("Hi"))
        .send()
        .await
        .expect_err("gone")
        .into_service_error();
    assert!(
        matches!(error, ConverseError::ValidationException(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn count_tokens_equals_the_input_tokens_of_the_same_converse_call() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let system = SystemContentBlock::Text("You answer in one sentence.".to_owned());
    let messages = [
        user("Where is the Eiffel Tower?"),
        Message::builder()
            .role(ConversationRole::Assistant)
            .content(ContentBlock::Text("In Paris.".to_owned()))
            .build()
            .expect("message"),
        user("And how tall is it, roughly?"),
    ];
    let converse = client
        .converse()
        .model_id(HAIKU)
        .system(system.clone())
        .set_messages(Some(messages.to_vec()))
        .send()
        .await
        .expect("converse");
    let counted = client
        .count_tokens()
        .model_id(HAIKU)
        .input(CountTokensInput::Converse(
            ConverseTokensRequest::builder()
                .system(system)
                .set_messages(Some(messages.to_vec()))
                .build(),
        ))
        .send()
        .await
        .expect("count tokens");
    assert_eq!(
        counted.input_tokens(),
        converse.usage().expect("usage").input_tokens()
    );
    assert_eq!(counted.input_tokens(), 23);

    // An InvokeModel body counts as InvokeModel counts it.
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
        "messages": [{"role": "user", "content": "Where is the Eiffel Tower?"}],
    });
    let invoked = client
        .invoke_model()
        .model_id(HAIKU)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .expect("invoke model");
    let answer: serde_json::Value =
        serde_json::from_slice(invoked.body().as_ref()).expect("json body");
    let counted = client
        .count_tokens()
        .model_id(HAIKU)
        .input(CountTokensInput::InvokeModel(
            InvokeModelTokensRequest::builder()
                .body(Blob::new(body.to_string()))
                .build()
                .expect("request"),
        ))
        .send()
        .await
        .expect("count tokens");
    assert_eq!(
        i64::from(counted.input_tokens()),
        answer["usage"]["input_tokens"]
            .as_i64()
            .expect("input tokens")
    );

    let stats = emulator.stats().await;
    assert_eq!(stats["models"][HAIKU]["countTokensCalls"], 2);
    // Counting is not a model call.
    assert_eq!(stats["models"][HAIKU]["calls"], 2);
    assert_eq!(stats["totalCalls"], 2);
}

#[tokio::test]
async fn count_tokens_refuses_bad_inputs_and_unknown_models() {
    let emulator = Emulator::start().await;
    let client = client(&emulator);
    let count = |model_id: &str, request: ConverseTokensRequest| {
        client
            .count_tokens()
            .model_id(model_id)
            .input(CountTokensInput::Converse(request))
            .send()
    };
    let hello = || {
        ConverseTokensRequest::builder()
            .messages(user("Hello"))
            .build()
    };
    let cases = [
        (
            "openai.gpt-9",
            hello(),
            "The provided model identifier is invalid.",
        ),
        (
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            hello(),
            "Invocation of model ID anthropic.claude-sonnet-4-5-20250929-v1:0 with on-demand throughput isn't supported.",
        ),
        (
            HAIKU,
            ConverseTokensRequest::builder().build(),
            "A conversation must start with a user message.",
        ),
        (
            HAIKU,
            ConverseTokensRequest::builder()
                .messages(user("a"))
                .messages(user("b"))
                .build(),
            "A conversation must alternate between user and assistant roles.",
        ),
    ];
    for (model_id, request, expected) in cases {
        let error = count(model_id, request)
            .await
            .expect_err("refused")
            .into_service_error();
        let CountTokensError::ValidationException(exception) = error else {
            panic!("{error:?}");
        };
        let message = exception.message().unwrap_or_default();
        assert!(message.starts_with(expected), "{model_id}: {message}");
    }
    // The same model error as Converse gives.
    let converse = client
        .converse()
        .model_id("openai.gpt-9")
        .messages(user("Hello"))
        .send()
        .await
        .expect_err("refused")
        .into_service_error();
    assert_eq!(
        converse.meta().message(),
        Some("The provided model identifier is invalid.")
    );

    let status = emulator
        .http()
        .post(emulator.url(&format!("/model/{HAIKU}/count-tokens")))
        .json(&json!({"input": {}}))
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status.as_u16(), 400);
}
