//! Bedrock Converse: domain conversation in, domain answer or [`ModelError`] out.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use aws_sdk_bedrockruntime::config::retry::RetryPartition;
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::operation::count_tokens::CountTokensError;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, CachePointBlock, CachePointType, CacheTtl as SdkCacheTtl,
    ContentBlock as SdkContentBlock, ContentBlockDelta, ContentBlockStart, ConversationRole,
    ConverseStreamOutput, ConverseTokensRequest, CountTokensInput, GuardrailConfiguration,
    GuardrailStreamConfiguration, GuardrailStreamProcessingMode, GuardrailTrace,
    InferenceConfiguration, Message as SdkMessage, PerformanceConfigLatency,
    PerformanceConfiguration, ServiceTier as SdkServiceTier, ServiceTierType, SpecificToolChoice,
    SystemContentBlock, TokenUsage, Tool as SdkTool, ToolChoice as SdkToolChoice,
    ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock,
    ToolResultStatus as SdkToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use futures_util::StreamExt;
use serde_json::Value;

use domain::conversation::{
    CachePoint, CachePointKind, CacheTtl, ContentBlock, Conversation, Message, ModelAnswer, Role,
    SystemBlock, Tool, ToolChoice, ToolConfig, ToolResultContent, ToolResultStatus, ToolUse, Usage,
};
use domain::error::{ModelError, ModelErrorKind};
use domain::guardrail::{Guardrail, StreamProcessing};
use domain::ports::{ModelInvoker, ModelStream};
use domain::routing::{Latency, Route, ServiceTier, Target};
use domain::stream::StreamEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    Standard,
    Adaptive,
}

impl std::str::FromStr for RetryMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Self::Standard),
            "adaptive" => Ok(Self::Adaptive),
            other => Err(format!("{other:?} is not standard or adaptive")),
        }
    }
}

/// Client settings: connect 5 s, read 60 s, adaptive retries with 2 attempts by default, and
/// optionally a bound on a whole call, retries included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BedrockSettings {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub operation_timeout: Option<Duration>,
    /// The share of a request's time a Provisioned Throughput call may use, so that spillover
    /// to on-demand always has time left.
    pub provisioned_timeout: Duration,
    pub max_attempts: u32,
    pub retry_mode: RetryMode,
}

impl BedrockSettings {
    /// batch-status's calls (small batches, deferred requests): standard retries, not
    /// adaptive. Adaptive mode slows every later call of the client after a throttle, and flex
    /// is throttled first: the default-tier fallbacks of deferred requests would wait behind it.
    pub fn for_schedule() -> Self {
        Self {
            retry_mode: RetryMode::Standard,
            ..Self::default()
        }
    }
}

impl Default for BedrockSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            operation_timeout: None,
            provisioned_timeout: Duration::from_secs(10),
            max_attempts: 2,
            retry_mode: RetryMode::Adaptive,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BedrockInvoker {
    client: aws_sdk_bedrockruntime::Client,
}

impl BedrockInvoker {
    /// Builds the client once per instance from the function's one `SdkConfig`.
    pub fn new(sdk: &SdkConfig, settings: &BedrockSettings) -> Self {
        let retry = match settings.retry_mode {
            RetryMode::Standard => RetryConfig::standard(),
            RetryMode::Adaptive => RetryConfig::adaptive(),
        }
        .with_max_attempts(settings.max_attempts);
        let mut timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout);
        timeouts.set_operation_timeout(settings.operation_timeout);
        let timeouts = timeouts.build();
        let config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(retry)
            .timeout_config(timeouts)
            .build();
        Self::from_client(aws_sdk_bedrockruntime::Client::from_conf(config))
    }

    pub fn from_client(client: aws_sdk_bedrockruntime::Client) -> Self {
        Self { client }
    }
}

fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or_default())
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A cache point as Bedrock's `CachePointBlock`.
fn to_sdk_cache_point(point: &CachePoint) -> Result<CachePointBlock, ModelError> {
    CachePointBlock::builder()
        .r#type(match point.kind {
            CachePointKind::Default => CachePointType::Default,
        })
        .set_ttl(point.ttl.map(|ttl| match ttl {
            CacheTtl::FiveMinutes => SdkCacheTtl::FiveMinutes,
            CacheTtl::OneHour => SdkCacheTtl::OneHour,
        }))
        .build()
        .map_err(unexpected)
}

fn to_sdk_block(block: &ContentBlock) -> Result<SdkContentBlock, ModelError> {
    Ok(match block {
        ContentBlock::Text(text) => SdkContentBlock::Text(text.clone()),
        ContentBlock::CachePoint(point) => SdkContentBlock::CachePoint(to_sdk_cache_point(point)?),
        ContentBlock::ToolUse(tool_use) => SdkContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id(&tool_use.tool_use_id)
                .name(&tool_use.name)
                .input(to_document(&tool_use.input))
                .build()
                .map_err(unexpected)?,
        ),
        ContentBlock::ToolResult(result) => {
            let content = result
                .content
                .iter()
                .map(|part| match part {
                    ToolResultContent::Text(text) => ToolResultContentBlock::Text(text.clone()),
                    ToolResultContent::Json(value) => {
                        ToolResultContentBlock::Json(to_document(value))
                    }
                })
                .collect();
            SdkContentBlock::ToolResult(
                ToolResultBlock::builder()
                    .tool_use_id(&result.tool_use_id)
                    .set_content(Some(content))
                    .set_status(result.status.map(|status| match status {
                        ToolResultStatus::Success => SdkToolResultStatus::Success,
                        ToolResultStatus::Error => SdkToolResultStatus::Error,
                    }))
                    .build()
                    .map_err(unexpected)?,
            )
        }
    })
}

fn unexpected(error: impl std::fmt::Display) -> ModelError {
    ModelError::new(ModelErrorKind::Unexpected, error.to_string())
}

fn to_sdk_message(message: &Message) -> Result<SdkMessage, ModelError> {
    let role = match message.role {
        Role::User => ConversationRole::User,
        Role::Assistant => ConversationRole::Assistant,
    };
    let content = message
        .content
        .iter()
        .map(to_sdk_block)
        .collect::<Result<Vec<_>, _>>()?;
    SdkMessage::builder()
        .role(role)
        .set_content(Some(content))
        .build()
        .map_err(unexpected)
}

fn to_sdk_tools(config: &ToolConfig) -> Result<ToolConfiguration, ModelError> {
    let tools = config
        .tools
        .iter()
        .map(|tool| match tool {
            Tool::ToolSpec(spec) => ToolSpecification::builder()
                .name(&spec.name)
                .set_description(spec.description.clone())
                .input_schema(ToolInputSchema::Json(to_document(&spec.input_schema.json)))
                .build()
                .map(SdkTool::ToolSpec)
                .map_err(unexpected),
            Tool::CachePoint(point) => to_sdk_cache_point(point).map(SdkTool::CachePoint),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let choice = match &config.tool_choice {
        None => None,
        Some(ToolChoice::Auto {}) => Some(SdkToolChoice::Auto(AutoToolChoice::builder().build())),
        Some(ToolChoice::Any {}) => Some(SdkToolChoice::Any(AnyToolChoice::builder().build())),
        Some(ToolChoice::Tool { name }) => Some(SdkToolChoice::Tool(
            SpecificToolChoice::builder()
                .name(name)
                .build()
                .map_err(unexpected)?,
        )),
    };
    ToolConfiguration::builder()
        .set_tools(Some(tools))
        .set_tool_choice(choice)
        .build()
        .map_err(unexpected)
}

fn from_document(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => Value::from(*f),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(from_document).collect()),
        Document::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_document(v)))
                .collect(),
        ),
    }
}

/// Sets the [`Parts`] and the target on a Converse or a ConverseStream request builder (two
/// types with the same setters).
macro_rules! with_parts {
    ($builder:expr, $target:expr, $parts:expr) => {
        $builder
            .model_id(&$target.invoke_id)
            .set_messages(Some($parts.messages))
            .set_system($parts.system)
            .inference_config($parts.inference)
            .set_tool_config($parts.tools)
            .set_additional_model_request_fields($parts.additional)
            .set_service_tier($parts.service_tier)
            .set_performance_config($parts.performance)
    };
}

/// Everything of a conversation that Converse and ConverseStream are sent alike.
struct Parts {
    messages: Vec<SdkMessage>,
    system: Option<Vec<SystemContentBlock>>,
    inference: InferenceConfiguration,
    tools: Option<ToolConfiguration>,
    additional: Option<Document>,
    /// The target's, not the conversation's: a tier changes when, not what.
    service_tier: Option<SdkServiceTier>,
    performance: Option<PerformanceConfiguration>,
}

impl Parts {
    fn of(conversation: &Conversation, target: &Target) -> Result<Self, ModelError> {
        let messages = conversation
            .messages
            .iter()
            .map(to_sdk_message)
            .collect::<Result<Vec<_>, _>>()?;
        let config = &conversation.inference_config;
        let inference = InferenceConfiguration::builder()
            .set_max_tokens(config.max_tokens.and_then(|n| i32::try_from(n).ok()))
            .set_temperature(config.temperature)
            .set_top_p(config.top_p)
            .set_stop_sequences(
                (!config.stop_sequences.is_empty()).then(|| config.stop_sequences.clone()),
            )
            .build();
        let system = if conversation.system.is_empty() {
            None
        } else {
            Some(
                conversation
                    .system
                    .iter()
                    .map(|block| match block {
                        SystemBlock::Text(text) => Ok(SystemContentBlock::Text(text.clone())),
                        SystemBlock::CachePoint(point) => {
                            to_sdk_cache_point(point).map(SystemContentBlock::CachePoint)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )
        };
        let tools = conversation
            .tool_config
            .as_ref()
            .map(to_sdk_tools)
            .transpose()?;
        Ok(Self {
            service_tier: target.service_tier.map(to_sdk_tier).transpose()?,
            performance: target.latency.map(|latency| {
                PerformanceConfiguration::builder()
                    .latency(match latency {
                        Latency::Standard => PerformanceConfigLatency::Standard,
                        Latency::Optimized => PerformanceConfigLatency::Optimized,
                    })
                    .build()
            }),
            messages,
            system,
            inference,
            tools,
            additional: conversation
                .additional_model_request_fields
                .as_ref()
                .map(to_document),
        })
    }
}

fn from_usage(usage: Option<&TokenUsage>) -> Usage {
    let count = |tokens: i32| u32::try_from(tokens).unwrap_or(0);
    usage.map_or_else(Usage::default, |u| Usage {
        input_tokens: count(u.input_tokens()),
        output_tokens: count(u.output_tokens()),
        total_tokens: count(u.total_tokens()),
        cache_read_input_tokens: u.cache_read_input_tokens().map_or(0, count),
        cache_write_input_tokens: u.cache_write_input_tokens().map_or(0, count),
    })
}

fn from_output(output: ConverseOutput) -> Result<ModelAnswer, ModelError> {
    let message = output
        .output()
        .and_then(|o| o.as_message().ok())
        .ok_or_else(|| {
            ModelError::new(ModelErrorKind::ModelFailure, "the answer holds no message")
        })?;
    // Text and tool calls are kept; reasoning blocks are not answers.
    let content = message
        .content()
        .iter()
        .filter_map(|block| match block {
            SdkContentBlock::Text(text) => Some(ContentBlock::Text(text.clone())),
            SdkContentBlock::ToolUse(tool_use) => Some(ContentBlock::ToolUse(ToolUse {
                tool_use_id: tool_use.tool_use_id().to_owned(),
                name: tool_use.name().to_owned(),
                input: from_document(tool_use.input()),
            })),
            _ => None,
        })
        .collect();
    Ok(ModelAnswer {
        latency: output
            .performance_config()
            .and_then(|config| match config.latency() {
                PerformanceConfigLatency::Standard => Some(Latency::Standard),
                PerformanceConfigLatency::Optimized => Some(Latency::Optimized),
                _ => None,
            }),
        invoked_model: output
            .trace()
            .and_then(|trace| trace.prompt_router())
            .and_then(|router| router.invoked_model_id())
            .map(str::to_owned),
        service_tier: output
            .service_tier()
            .and_then(|tier| from_sdk_tier(tier.r#type())),
        message: Message {
            role: Role::Assistant,
            content,
        },
        stop_reason: output.stop_reason().as_str().to_owned(),
        usage: from_usage(output.usage()),
    })
}

/// A guardrail as Converse's `guardrailConfig`.
fn guardrail_config(guardrail: &Guardrail) -> GuardrailConfiguration {
    GuardrailConfiguration::builder()
        .guardrail_identifier(&guardrail.identifier)
        .guardrail_version(&guardrail.version)
        .trace(guardrail_trace(guardrail))
        .build()
}

/// A guardrail as ConverseStream's `guardrailConfig`, with its stream processing mode.
fn guardrail_stream_config(guardrail: &Guardrail) -> GuardrailStreamConfiguration {
    GuardrailStreamConfiguration::builder()
        .guardrail_identifier(&guardrail.identifier)
        .guardrail_version(&guardrail.version)
        .trace(guardrail_trace(guardrail))
        .stream_processing_mode(match guardrail.stream_mode {
            StreamProcessing::Sync => GuardrailStreamProcessingMode::Sync,
            StreamProcessing::Async => GuardrailStreamProcessingMode::Async,
        })
        .build()
}

fn guardrail_trace(guardrail: &Guardrail) -> GuardrailTrace {
    if guardrail.trace {
        GuardrailTrace::Enabled
    } else {
        GuardrailTrace::Disabled
    }
}

/// A service tier as Converse's `serviceTier`.
fn to_sdk_tier(tier: ServiceTier) -> Result<SdkServiceTier, ModelError> {
    let kind = match tier {
        ServiceTier::Priority => ServiceTierType::Priority,
        ServiceTier::Default => ServiceTierType::Default,
        ServiceTier::Flex => ServiceTierType::Flex,
    };
    SdkServiceTier::builder()
        .r#type(kind)
        .build()
        .map_err(unexpected)
}

/// The tier Bedrock says it served; one this gateway does not price (`reserved`) is not kept.
fn from_sdk_tier(kind: &ServiceTierType) -> Option<ServiceTier> {
    match kind {
        ServiceTierType::Priority => Some(ServiceTier::Priority),
        ServiceTierType::Default => Some(ServiceTier::Default),
        ServiceTierType::Flex => Some(ServiceTier::Flex),
        _ => None,
    }
}

/// The kind, exception name and message of a modelled service error: one `match` over the
/// error enum's variants, each with the kind it maps to. Converse, ConverseStream and the
/// stream's own exceptions share the names but are different enums.
macro_rules! failure {
    ($error:expr, $enum:ident { $($variant:ident => $kind:ident),* $(,)? }) => {
        match $error {
            $($enum::$variant(e) => (ModelErrorKind::$kind, stringify!($variant), e.message()),)*
            other => (ModelErrorKind::ModelFailure, "UnknownError", other.message()),
        }
    };
}

fn converse_failure(error: &ConverseError) -> (ModelErrorKind, &'static str, Option<&str>) {
    failure!(error, ConverseError {
        ThrottlingException => Throttled,
        ModelNotReadyException => ModelNotReady,
        ServiceUnavailableException => ServiceUnavailable,
        ModelTimeoutException => Timeout,
        AccessDeniedException => AccessDenied,
        ValidationException => Validation,
        ResourceNotFoundException => NotFound,
        ModelErrorException => ModelFailure,
        InternalServerException => ModelFailure,
    })
}

fn count_failure(error: &CountTokensError) -> (ModelErrorKind, &'static str, Option<&str>) {
    failure!(error, CountTokensError {
        ThrottlingException => Throttled,
        ServiceUnavailableException => ServiceUnavailable,
        AccessDeniedException => AccessDenied,
        ValidationException => Validation,
        ResourceNotFoundException => NotFound,
        InternalServerException => ModelFailure,
    })
}

/// The errors ConverseStream answers before its stream.
fn stream_failure(error: &ConverseStreamError) -> (ModelErrorKind, &'static str, Option<&str>) {
    failure!(error, ConverseStreamError {
        ThrottlingException => Throttled,
        ModelNotReadyException => ModelNotReady,
        ServiceUnavailableException => ServiceUnavailable,
        ModelTimeoutException => Timeout,
        AccessDeniedException => AccessDenied,
        ValidationException => Validation,
        ResourceNotFoundException => NotFound,
        ModelErrorException => ModelFailure,
        ModelStreamErrorException => ModelFailure,
        InternalServerException => ModelFailure,
    })
}

/// The exceptions that arrive inside a stream.
fn event_failure(
    error: &ConverseStreamOutputError,
) -> (ModelErrorKind, &'static str, Option<&str>) {
    failure!(error, ConverseStreamOutputError {
        ThrottlingException => Throttled,
        ServiceUnavailableException => ServiceUnavailable,
        ValidationException => Validation,
        ModelStreamErrorException => ModelFailure,
        InternalServerException => ModelFailure,
    })
}

/// A request that was never sent because it could not be signed: no credentials, or none
/// that load. The SDK reports these as dispatch failures, like a refused connection.
fn is_signing_failure(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    ["auth scheme", "identity resolver", "credentials", "signing"]
        .iter()
        .any(|needle| detail.contains(needle))
}

fn from_sdk_error<E, R>(
    error: SdkError<E, R>,
    classify: impl Fn(&E) -> (ModelErrorKind, &'static str, Option<&str>),
) -> ModelError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use ModelErrorKind as Kind;
    let detail = DisplayErrorContext(&error).to_string();
    let kind = match &error {
        SdkError::ServiceError(service) => {
            let (kind, name, message) = classify(service.err());
            return ModelError::new(kind, format!("{name}: {}", message.unwrap_or_default()));
        }
        SdkError::TimeoutError(_) => Kind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => Kind::Timeout,
        // Connection refused, DNS, TLS: nowhere to send the call, on any capacity.
        SdkError::DispatchFailure(failure) if failure.is_io() => Kind::Unreachable,
        SdkError::DispatchFailure(_) if is_signing_failure(&detail) => Kind::Credentials,
        SdkError::DispatchFailure(_) => Kind::Unreachable,
        // A response that could not be read or parsed: Bedrock's answer was unusable.
        SdkError::ResponseError(_) => Kind::ModelFailure,
        _ => Kind::Unexpected,
    };
    ModelError::new(kind, detail)
}

/// The domain event of a stream event; `None` for those that carry nothing the answer needs.
/// The events of one stream event: a metadata event gives the usage, and how the call was
/// served when Bedrock says (a prompt router's model, a service tier).
fn from_stream_event(event: ConverseStreamOutput) -> Vec<StreamEvent> {
    if let ConverseStreamOutput::Metadata(metadata) = &event {
        let invoked_model = metadata
            .trace()
            .and_then(|trace| trace.prompt_router())
            .and_then(|router| router.invoked_model_id())
            .map(str::to_owned);
        let service_tier = metadata
            .service_tier()
            .and_then(|tier| from_sdk_tier(tier.r#type()));
        let mut events = Vec::with_capacity(2);
        if invoked_model.is_some() || service_tier.is_some() {
            events.push(StreamEvent::Served {
                invoked_model,
                service_tier,
            });
        }
        events.push(StreamEvent::Usage(from_usage(metadata.usage())));
        return events;
    }
    one_stream_event(event).into_iter().collect()
}

fn one_stream_event(event: ConverseStreamOutput) -> Option<StreamEvent> {
    match event {
        ConverseStreamOutput::MessageStart(_) => Some(StreamEvent::Started),
        ConverseStreamOutput::ContentBlockStart(start) => match start.start() {
            Some(ContentBlockStart::ToolUse(tool_use)) => Some(StreamEvent::ToolUseStart {
                index: u32::try_from(start.content_block_index()).unwrap_or(0),
                tool_use_id: tool_use.tool_use_id().to_owned(),
                name: tool_use.name().to_owned(),
            }),
            _ => None,
        },
        ConverseStreamOutput::ContentBlockDelta(delta) => {
            let index = u32::try_from(delta.content_block_index()).unwrap_or(0);
            match delta.delta() {
                Some(ContentBlockDelta::Text(text)) => Some(StreamEvent::Text {
                    index,
                    text: text.clone(),
                }),
                Some(ContentBlockDelta::ToolUse(tool_use)) => Some(StreamEvent::ToolInput {
                    index,
                    input: tool_use.input().to_owned(),
                }),
                _ => None,
            }
        }
        ConverseStreamOutput::MessageStop(stop) => Some(StreamEvent::Stopped {
            stop_reason: stop.stop_reason().as_str().to_owned(),
        }),
        _ => None,
    }
}

type Receiver = EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>;

/// The next domain event of the receiver, skipping those that carry nothing.
/// A stream's receiver, and the events of a stream event not yet handed out.
struct Events {
    receiver: Receiver,
    pending: std::collections::VecDeque<StreamEvent>,
}

async fn next_event(events: &mut Events) -> Option<Result<StreamEvent, ModelError>> {
    loop {
        if let Some(event) = events.pending.pop_front() {
            return Some(Ok(event));
        }
        match events.receiver.recv().await {
            Ok(Some(event)) => events.pending.extend(from_stream_event(event)),
            Ok(None) => return None,
            Err(error) => return Some(Err(from_sdk_error(error, event_failure))),
        }
    }
}

impl ModelInvoker for BedrockInvoker {
    async fn converse(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        let parts = Parts::of(conversation, target)?;
        let output = with_parts!(self.client.converse(), target, parts)
            .set_guardrail_config(target.guardrail.as_ref().map(guardrail_config))
            .customize()
            .config_override(call_config(target, timeout))
            .send()
            .await;
        from_output(output.map_err(|e| from_sdk_error(e, converse_failure))?)
    }

    async fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        first_event_timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        let parts = Parts::of(conversation, target)?;
        let started = async {
            let output = with_parts!(self.client.converse_stream(), target, parts)
                .set_guardrail_config(target.guardrail.as_ref().map(guardrail_stream_config))
                .customize()
                .config_override(call_config(target, None))
                .send()
                .await
                .map_err(|e| from_sdk_error(e, stream_failure))?;
            let mut events = Events {
                receiver: output.stream,
                pending: std::collections::VecDeque::new(),
            };
            // The first event is awaited here: until it arrives, a failure can still spill over.
            let first = next_event(&mut events).await.transpose()?;
            Ok::<_, ModelError>((first, events))
        };
        let (first, events) = match first_event_timeout {
            Some(limit) => tokio::time::timeout(limit, started).await.map_err(|_| {
                ModelError::new(
                    ModelErrorKind::Timeout,
                    format!("no first event within {} ms", limit.as_millis()),
                )
            })??,
            None => started.await?,
        };
        let rest = futures_util::stream::unfold(events, |mut events| async move {
            next_event(&mut events).await.map(|item| (item, events))
        });
        Ok(Box::pin(
            futures_util::stream::iter(first.map(Ok)).chain(rest),
        ))
    }

    /// Bedrock CountTokens on the foundation model behind the target (an inference profile's
    /// or an ARN's), with the conversation as Converse would send it.
    async fn count_tokens(
        &self,
        target: &Target,
        conversation: &Conversation,
    ) -> Result<u64, ModelError> {
        let parts = Parts::of(conversation, target)?;
        let input = ConverseTokensRequest::builder()
            .set_messages(Some(parts.messages))
            .set_system(parts.system)
            .set_tool_config(parts.tools)
            .set_additional_model_request_fields(parts.additional)
            .build();
        let output = self
            .client
            .count_tokens()
            .model_id(domain::pricing::underlying_model(&target.model))
            .input(CountTokensInput::Converse(input))
            .customize()
            .config_override(call_config(target, None))
            .send()
            .await
            .map_err(|e| from_sdk_error(e, count_failure))?;
        Ok(u64::try_from(output.input_tokens()).unwrap_or(0))
    }
}

/// Per-call settings. Each model identifier has its own retry partition, so adaptive retry's
/// rate limiter, slowed by one throttled model, does not slow the others. A provisioned call
/// is tried once: spillover to on-demand is its retry, and retrying throttled capacity first
/// would only make the caller wait. `timeout` bounds the call within the request's budget.
fn call_config(
    target: &Target,
    timeout: Option<Duration>,
) -> aws_sdk_bedrockruntime::config::Builder {
    let mut config = aws_sdk_bedrockruntime::config::Builder::default().retry_partition(
        RetryPartition::new(format!("bedrock-runtime/{}", target.invoke_id)),
    );
    if target.route == Route::Provisioned {
        config = config.retry_config(RetryConfig::standard().with_max_attempts(1));
    }
    if let Some(timeout) = timeout {
        config = config.timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build());
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::config::{
        ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
    };
    use aws_sdk_bedrockruntime::types::error::{
        AccessDeniedException, InternalServerException, ModelErrorException,
        ResourceNotFoundException, ThrottlingException, ValidationException,
    };
    use aws_sdk_bedrockruntime::types::{ConverseOutput as Output, StopReason, TokenUsage};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use domain::conversation::{InferenceConfig, SystemBlock};
    use std::sync::{Arc, Mutex};

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt1";
    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    fn provisioned() -> Target {
        Target {
            latency: None,
            guardrail: None,
            service_tier: None,
            invoke_id: ARN.into(),
            route: Route::Provisioned,
            model: HAIKU.into(),
        }
    }

    fn on_demand(id: &str) -> Target {
        Target {
            latency: None,
            guardrail: None,
            service_tier: None,
            invoke_id: id.into(),
            route: Route::OnDemand,
            model: id.into(),
        }
    }

    fn conversation() -> Conversation {
        Conversation {
            system: vec![SystemBlock::text("be brief")],
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentBlock::text("hello")],
            }],
            inference_config: InferenceConfig {
                max_tokens: Some(64),
                temperature: Some(0.25),
                top_p: None,
                stop_sequences: vec!["END".into()],
            },
            additional_model_request_fields: Some(serde_json::json!({"top_k": 5})),
            tool_config: None,
        }
    }

    fn answer() -> ConverseOutput {
        ConverseOutput::builder()
            .output(Output::Message(
                SdkMessage::builder()
                    .role(ConversationRole::Assistant)
                    .content(SdkContentBlock::Text("hi!".into()))
                    .build()
                    .unwrap(),
            ))
            .stop_reason(StopReason::EndTurn)
            .usage(
                TokenUsage::builder()
                    .input_tokens(3)
                    .output_tokens(2)
                    .total_tokens(5)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn sends_the_conversation_as_converse_and_reads_the_answer() {
        let rule = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(|req| {
                let config = req.inference_config().unwrap();
                req.model_id() == Some(ARN)
                    && req.system()[0].as_text().ok().map(String::as_str) == Some("be brief")
                    && req.messages()[0].role() == &ConversationRole::User
                    && req.messages()[0].content()[0]
                        .as_text()
                        .ok()
                        .map(String::as_str)
                        == Some("hello")
                    && config.max_tokens() == Some(64)
                    && config.temperature() == Some(0.25)
                    && config.top_p().is_none()
                    && config.stop_sequences() == ["END".to_owned()]
                    && req.additional_model_request_fields()
                        == Some(&Document::Object(HashMap::from([(
                            "top_k".to_owned(),
                            Document::Number(Number::PosInt(5)),
                        )])))
            })
            .then_output(answer);
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let answer = BedrockInvoker::from_client(client)
            .converse(&provisioned(), &conversation(), None)
            .await
            .unwrap();
        assert_eq!(answer.text(), "hi!");
        assert_eq!(answer.stop_reason, "end_turn");
        assert_eq!(answer.usage.total_tokens, 5);
        assert_eq!(rule.num_calls(), 1);
    }

    /// CountTokens is asked of the foundation model behind a profile, with the conversation in
    /// Converse's shape.
    #[tokio::test]
    async fn counts_tokens_on_the_model_behind_the_target() {
        use aws_sdk_bedrockruntime::operation::count_tokens::CountTokensOutput;
        let rule = mock!(aws_sdk_bedrockruntime::Client::count_tokens)
            .match_requests(|req| {
                req.model_id() == Some(HAIKU)
                    && req
                        .input()
                        .and_then(|input| input.as_converse().ok())
                        .is_some_and(|c| c.messages().len() == 1 && c.system().len() == 1)
            })
            .then_output(|| {
                CountTokensOutput::builder()
                    .input_tokens(42)
                    .build()
                    .unwrap()
            });
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let counted = BedrockInvoker::from_client(client)
            .count_tokens(&on_demand(&format!("us.{HAIKU}")), &conversation())
            .await
            .unwrap();
        assert_eq!((counted, rule.num_calls()), (42, 1));
    }

    /// A prompt router's answer says which model answered (`trace.promptRouter`).
    #[tokio::test]
    async fn reads_the_model_a_prompt_router_invoked() {
        use aws_sdk_bedrockruntime::types::{ConverseTrace, PromptRouterTrace};
        const ROUTER: &str =
            "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
        const INVOKED: &str =
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0";
        let rule = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(|req| req.model_id() == Some(ROUTER))
            .then_output(|| {
                let mut output = answer();
                output.trace = Some(
                    ConverseTrace::builder()
                        .prompt_router(
                            PromptRouterTrace::builder()
                                .invoked_model_id(INVOKED)
                                .build(),
                        )
                        .build(),
                );
                output
            });
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let answer = BedrockInvoker::from_client(client)
            .converse(&on_demand(ROUTER), &conversation(), None)
            .await
            .unwrap();
        assert_eq!(answer.invoked_model.as_deref(), Some(INVOKED));
    }

    /// The target's guardrail reaches Converse as its `guardrailConfig`.
    #[tokio::test]
    async fn applies_the_targets_guardrail() {
        let rule = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(|req| {
                req.guardrail_config().is_some_and(|g| {
                    g.guardrail_identifier() == "gr-1"
                        && g.guardrail_version() == "DRAFT"
                        && g.trace() == &GuardrailTrace::Disabled
                })
            })
            .then_output(answer);
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let guarded = Target {
            guardrail: Some(Guardrail {
                identifier: "gr-1".into(),
                version: "DRAFT".into(),
                trace: false,
                stream_mode: StreamProcessing::Sync,
            }),
            ..on_demand(HAIKU)
        };
        BedrockInvoker::from_client(client)
            .converse(&guarded, &conversation(), None)
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1, "the guardrail is sent");
    }

    /// The target's service tier is asked of Converse, and the tier Bedrock served comes back.
    #[tokio::test]
    async fn asks_the_targets_service_tier_and_reads_the_one_served() {
        let rule = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(|req| {
                req.service_tier().map(|t| t.r#type()) == Some(&ServiceTierType::Flex)
            })
            .then_output(|| {
                let mut output = answer();
                output.service_tier = to_sdk_tier(ServiceTier::Flex).ok();
                output
            });
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let flex = Target {
            service_tier: Some(ServiceTier::Flex),
            ..on_demand(HAIKU)
        };
        let answer = BedrockInvoker::from_client(client)
            .converse(&flex, &conversation(), None)
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1, "the tier is sent");
        assert_eq!(answer.service_tier, Some(ServiceTier::Flex));
    }

    /// Cache points reach Converse as `CachePointBlock`s where they stand (system, message,
    /// tools), and the prompt cache's tokens come back in the usage.
    #[tokio::test]
    async fn sends_cache_points_and_reads_the_prompt_caches_tokens() {
        use domain::conversation::{CachePoint, InputSchema, Tool, ToolSpec};
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
        cached.tool_config = Some(ToolConfig {
            tools: vec![
                Tool::ToolSpec(ToolSpec {
                    name: "get_weather".into(),
                    description: None,
                    input_schema: InputSchema {
                        json: serde_json::json!({"type": "object"}),
                    },
                }),
                Tool::CachePoint(CachePoint::DEFAULT),
            ],
            tool_choice: None,
        });
        let default_point = CachePointBlock::builder()
            .r#type(CachePointType::Default)
            .build()
            .unwrap();
        let hour_point = CachePointBlock::builder()
            .r#type(CachePointType::Default)
            .ttl(SdkCacheTtl::OneHour)
            .build()
            .unwrap();
        let rule = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(move |req| {
                req.system()[1].as_cache_point().ok() == Some(&default_point)
                    && req.messages()[0].content()[1].as_cache_point().ok() == Some(&hour_point)
                    && req
                        .tool_config()
                        .is_some_and(|c| c.tools()[1].as_cache_point().ok() == Some(&default_point))
            })
            .then_output(|| {
                let mut output = answer();
                output.usage = Some(
                    TokenUsage::builder()
                        .input_tokens(3)
                        .output_tokens(2)
                        .total_tokens(2053)
                        .cache_read_input_tokens(2048)
                        .cache_write_input_tokens(0)
                        .build()
                        .unwrap(),
                );
                output
            });
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let answer = BedrockInvoker::from_client(client)
            .converse(&on_demand(HAIKU), &cached, None)
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1, "cache points sent where they stand");
        assert_eq!(
            (
                answer.usage.input_tokens,
                answer.usage.cache_read_input_tokens,
                answer.usage.cache_write_input_tokens,
                answer.usage.total_tokens
            ),
            (3, 2048, 0, 2053)
        );
    }

    /// Tools, tool calls and tool results reach Converse as its own types, and a tool call in
    /// the answer comes back with its input as JSON.
    #[tokio::test]
    async fn sends_tools_and_reads_tool_calls() {
        use aws_sdk_bedrockruntime::types::{ToolChoice as SdkChoice, ToolUseBlock};
        use domain::conversation::{
            InputSchema, Tool, ToolResult, ToolSpec, ToolUse as DomainToolUse,
        };
        let mut with_tools = conversation();
        with_tools.messages.push(Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse(DomainToolUse {
                tool_use_id: "t1".into(),
                name: "get_weather".into(),
                input: serde_json::json!({"city": "Paris", "days": 2}),
            })],
        });
        with_tools.messages.push(Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult(ToolResult {
                tool_use_id: "t1".into(),
                content: vec![ToolResultContent::Json(serde_json::json!({"celsius": 21}))],
                status: Some(ToolResultStatus::Success),
            })],
        });
        with_tools.tool_config = Some(ToolConfig {
            tools: vec![Tool::ToolSpec(ToolSpec {
                name: "get_weather".into(),
                description: Some("the weather".into()),
                input_schema: InputSchema {
                    json: serde_json::json!({"type": "object"}),
                },
            })],
            tool_choice: Some(ToolChoice::Any {}),
        });
        let rule = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(|req| {
                let tools = req.tool_config().unwrap();
                let spec = tools.tools()[0].as_tool_spec().unwrap();
                let call = req.messages()[1].content()[0].as_tool_use().unwrap();
                let result = req.messages()[2].content()[0].as_tool_result().unwrap();
                spec.name() == "get_weather"
                    && matches!(tools.tool_choice(), Some(SdkChoice::Any(_)))
                    && call.tool_use_id() == "t1"
                    && call.input().as_object().and_then(|o| o.get("days"))
                        == Some(&Document::Number(Number::PosInt(2)))
                    && result.tool_use_id() == "t1"
                    && result.status() == Some(&SdkToolResultStatus::Success)
                    && result.content()[0].is_json()
            })
            .then_output(|| {
                ConverseOutput::builder()
                    .output(Output::Message(
                        SdkMessage::builder()
                            .role(ConversationRole::Assistant)
                            .content(SdkContentBlock::ToolUse(
                                ToolUseBlock::builder()
                                    .tool_use_id("t2")
                                    .name("get_weather")
                                    .input(to_document(&serde_json::json!({"city": "Lyon"})))
                                    .build()
                                    .unwrap(),
                            ))
                            .build()
                            .unwrap(),
                    ))
                    .stop_reason(StopReason::ToolUse)
                    .build()
                    .unwrap()
            });
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let answer = BedrockInvoker::from_client(client)
            .converse(&on_demand(HAIKU), &with_tools, None)
            .await
            .unwrap();
        assert_eq!(answer.stop_reason, "tool_use");
        let call = answer.tool_uses().next().unwrap();
        assert_eq!(call.input, serde_json::json!({"city": "Lyon"}));
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn provisioned_calls_are_not_retried_on_demand_calls_are() {
        let throttled = mock!(aws_sdk_bedrockruntime::Client::converse)
            .sequence()
            .http_status(503, None)
            .times(10)
            .build();
        let client = mock_client!(
            aws_sdk_bedrockruntime,
            RuleMode::MatchAny,
            [&throttled],
            |config| config.retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1))
            )
        );
        let invoker = BedrockInvoker::from_client(client);
        invoker
            .converse(&provisioned(), &conversation(), None)
            .await
            .unwrap_err();
        assert_eq!(throttled.num_calls(), 1, "a provisioned call is tried once");
        invoker
            .converse(&on_demand(HAIKU), &conversation(), None)
            .await
            .unwrap_err();
        assert_eq!(
            throttled.num_calls(),
            4,
            "an on-demand call uses the client's retries"
        );
    }

    #[tokio::test]
    async fn maps_service_errors_to_model_errors_with_their_message() {
        fn rule(model: &'static str, error: fn() -> ConverseError) -> aws_smithy_mocks::Rule {
            mock!(aws_sdk_bedrockruntime::Client::converse)
                .match_requests(move |req| req.model_id() == Some(model))
                .then_error(error)
        }
        let rules = [
            rule("throttled", || {
                ConverseError::ThrottlingException(
                    ThrottlingException::builder().message("slow down").build(),
                )
            }),
            rule("invalid", || {
                ConverseError::ValidationException(
                    ValidationException::builder()
                        .message("maxTokens too big")
                        .build(),
                )
            }),
            rule("denied", || {
                ConverseError::AccessDeniedException(
                    AccessDeniedException::builder()
                        .message("not authorized to perform bedrock:InvokeModel")
                        .build(),
                )
            }),
            rule("missing", || {
                ConverseError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .message("model not found")
                        .build(),
                )
            }),
            rule("failing", || {
                ConverseError::ModelErrorException(
                    ModelErrorException::builder()
                        .message("model crashed")
                        .build(),
                )
            }),
            rule("internal", || {
                ConverseError::InternalServerException(
                    InternalServerException::builder().message("oops").build(),
                )
            }),
        ];
        let client = mock_client!(
            aws_sdk_bedrockruntime,
            RuleMode::MatchAny,
            [&rules[0], &rules[1], &rules[2], &rules[3], &rules[4], &rules[5]]
        );
        let invoker = BedrockInvoker::from_client(client);
        let expected = [
            (
                "throttled",
                ModelErrorKind::Throttled,
                "ThrottlingException: slow down",
            ),
            (
                "invalid",
                ModelErrorKind::Validation,
                "ValidationException: maxTokens too big",
            ),
            (
                "denied",
                ModelErrorKind::AccessDenied,
                "AccessDeniedException: not authorized to perform bedrock:InvokeModel",
            ),
            (
                "missing",
                ModelErrorKind::NotFound,
                "ResourceNotFoundException: model not found",
            ),
            (
                "failing",
                ModelErrorKind::ModelFailure,
                "ModelErrorException: model crashed",
            ),
            (
                "internal",
                ModelErrorKind::ModelFailure,
                "InternalServerException: oops",
            ),
        ];
        for (model, kind, message) in expected {
            let err = invoker
                .converse(&on_demand(model), &conversation(), None)
                .await
                .unwrap_err();
            assert_eq!(err, ModelError::new(kind, message), "{model}");
        }
    }

    fn client_at(endpoint: &str, credentials: bool) -> aws_sdk_bedrockruntime::Client {
        let mut config = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::standard().with_max_attempts(1));
        if credentials {
            config =
                config.credentials_provider(Credentials::new("AKID", "secret", None, None, "test"));
        }
        aws_sdk_bedrockruntime::Client::from_conf(config.build())
    }

    #[tokio::test]
    async fn unreachable_bedrock_and_missing_credentials_have_their_own_kinds() {
        // Nothing listens on port 1: the connection is refused.
        let err = BedrockInvoker::from_client(client_at("http://127.0.0.1:1", true))
            .converse(&on_demand(HAIKU), &conversation(), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ModelErrorKind::Unreachable, "{err}");
        assert!(!err.spills_over());
        let err = BedrockInvoker::from_client(client_at("http://127.0.0.1:1", false))
            .converse(&provisioned(), &conversation(), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ModelErrorKind::Credentials, "{err}");
        assert!(!err.spills_over());
    }

    /// Records the retry partition each call ran in.
    #[derive(Debug, Default, Clone)]
    struct Partitions(Arc<Mutex<Vec<String>>>);

    impl Intercept for Partitions {
        fn name(&self) -> &'static str {
            "Partitions"
        }

        fn read_before_attempt(
            &self,
            _: &aws_sdk_bedrockruntime::config::interceptors::BeforeTransmitInterceptorContextRef<
                '_,
            >,
            _: &RuntimeComponents,
            cfg: &mut ConfigBag,
        ) -> Result<(), aws_sdk_bedrockruntime::error::BoxError> {
            let name = cfg
                .load::<RetryPartition>()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.0.lock().unwrap().push(name);
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_model_has_its_own_retry_partition() {
        let ok = mock!(aws_sdk_bedrockruntime::Client::converse).then_output(answer);
        let partitions = Partitions::default();
        let recorder = partitions.clone();
        let client = mock_client!(
            aws_sdk_bedrockruntime,
            RuleMode::MatchAny,
            [&ok],
            |config| config.interceptor(recorder.clone())
        );
        let invoker = BedrockInvoker::from_client(client);
        for target in [
            on_demand(HAIKU),
            on_demand("amazon.nova-lite-v1:0"),
            on_demand(HAIKU),
        ] {
            invoker
                .converse(&target, &conversation(), None)
                .await
                .unwrap();
        }
        let seen = partitions.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_ne!(
            seen[0], seen[1],
            "two models share a rate limiter: {seen:?}"
        );
        assert_eq!(seen[0], seen[2]);
    }
}
