//! Bedrock Converse: domain conversation in, domain answer or [`ModelError`] out.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message as SdkMessage,
    SystemContentBlock,
};
use aws_smithy_types::{Document, Number};
use serde_json::Value;

use crate::domain::conversation::{Conversation, Message, ModelAnswer, Role, TextBlock, Usage};
use crate::domain::error::ModelError;
use crate::ports::ModelInvoker;

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
    pub max_attempts: u32,
    pub retry_mode: RetryMode,
}

impl Default for BedrockSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            operation_timeout: None,
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

fn to_sdk_message(message: &Message) -> Result<SdkMessage, ModelError> {
    let role = match message.role {
        Role::User => ConversationRole::User,
        Role::Assistant => ConversationRole::Assistant,
    };
    SdkMessage::builder()
        .role(role)
        .set_content(Some(
            message
                .content
                .iter()
                .map(|b| ContentBlock::Text(b.text.clone()))
                .collect(),
        ))
        .build()
        .map_err(|e| ModelError::Unexpected(e.to_string()))
}

fn from_output(output: ConverseOutput) -> Result<ModelAnswer, ModelError> {
    let message = output
        .output()
        .and_then(|o| o.as_message().ok())
        .ok_or_else(|| ModelError::ModelFailure("the answer holds no message".to_owned()))?;
    // Only text is kept: the request offers no tools, and reasoning blocks are not answers.
    let content = message
        .content()
        .iter()
        .filter_map(|block| block.as_text().ok())
        .map(|text| TextBlock::new(text.clone()))
        .collect();
    let usage = output.usage().map_or_else(Usage::default, |u| Usage {
        input_tokens: u32::try_from(u.input_tokens()).unwrap_or(0),
        output_tokens: u32::try_from(u.output_tokens()).unwrap_or(0),
        total_tokens: u32::try_from(u.total_tokens()).unwrap_or(0),
    });
    Ok(ModelAnswer {
        message: Message {
            role: Role::Assistant,
            content,
        },
        stop_reason: output.stop_reason().as_str().to_owned(),
        usage,
    })
}

fn from_sdk_error(error: SdkError<ConverseError>) -> ModelError {
    let detail = DisplayErrorContext(&error).to_string();
    match error {
        SdkError::TimeoutError(_) => ModelError::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ModelError::Timeout,
        SdkError::DispatchFailure(_) => ModelError::ServiceUnavailable,
        SdkError::ServiceError(service) => {
            let error = service.into_err();
            // The modelled message, else the one from the error metadata.
            let message = match &error {
                ConverseError::AccessDeniedException(e) => e.message(),
                ConverseError::ValidationException(e) => e.message(),
                ConverseError::ResourceNotFoundException(e) => e.message(),
                ConverseError::ModelErrorException(e) => e.message(),
                ConverseError::InternalServerException(e) => e.message(),
                other => other.message(),
            }
            .unwrap_or_default()
            .to_owned();
            match error {
                ConverseError::ThrottlingException(_) => ModelError::Throttled,
                ConverseError::ModelNotReadyException(_) => ModelError::ModelNotReady,
                ConverseError::ServiceUnavailableException(_) => ModelError::ServiceUnavailable,
                ConverseError::ModelTimeoutException(_) => ModelError::Timeout,
                ConverseError::AccessDeniedException(_) => ModelError::AccessDenied(message),
                ConverseError::ValidationException(_) => ModelError::Validation(message),
                ConverseError::ResourceNotFoundException(_) => ModelError::NotFound(message),
                ConverseError::ModelErrorException(_)
                | ConverseError::InternalServerException(_) => ModelError::ModelFailure(message),
                other => ModelError::ModelFailure(format!(
                    "{}: {message}",
                    other.code().unwrap_or("unknown error")
                )),
            }
        }
        // A response that could not be read or parsed: Bedrock's answer was unusable.
        SdkError::ResponseError(_) => ModelError::ModelFailure(detail),
        _ => ModelError::Unexpected(detail),
    }
}

/// `arn:aws:bedrock:REGION:ACCOUNT:provisioned-model/ID`.
fn is_provisioned_throughput(model_id: &str) -> bool {
    model_id.starts_with("arn:") && model_id.contains(":provisioned-model/")
}

impl ModelInvoker for BedrockInvoker {
    async fn converse(
        &self,
        model_id: &str,
        conversation: &Conversation,
    ) -> Result<ModelAnswer, ModelError> {
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
        let system = (!conversation.system.is_empty()).then(|| {
            conversation
                .system
                .iter()
                .map(|b| SystemContentBlock::Text(b.text.clone()))
                .collect()
        });
        let request = self
            .client
            .converse()
            .model_id(model_id)
            .set_messages(Some(messages))
            .set_system(system)
            .inference_config(inference)
            .set_additional_model_request_fields(
                conversation
                    .additional_model_request_fields
                    .as_ref()
                    .map(to_document),
            );
        let output = if is_provisioned_throughput(model_id) {
            // Spillover to on-demand is this call's retry: retrying throttled provisioned
            // capacity first would only make the caller wait.
            request
                .customize()
                .config_override(
                    aws_sdk_bedrockruntime::config::Builder::default()
                        .retry_config(RetryConfig::standard().with_max_attempts(1)),
                )
                .send()
                .await
        } else {
            request.send().await
        };
        from_output(output.map_err(from_sdk_error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::conversation::InferenceConfig;
    use aws_sdk_bedrockruntime::types::error::{ThrottlingException, ValidationException};
    use aws_sdk_bedrockruntime::types::{ConverseOutput as Output, StopReason, TokenUsage};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt1";

    fn conversation() -> Conversation {
        Conversation {
            system: vec![TextBlock::new("be brief")],
            messages: vec![Message {
                role: Role::User,
                content: vec![TextBlock::new("hello")],
            }],
            inference_config: InferenceConfig {
                max_tokens: Some(64),
                temperature: Some(0.25),
                top_p: None,
                stop_sequences: vec!["END".into()],
            },
            additional_model_request_fields: Some(serde_json::json!({"top_k": 5})),
        }
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
            .then_output(|| {
                ConverseOutput::builder()
                    .output(Output::Message(
                        SdkMessage::builder()
                            .role(ConversationRole::Assistant)
                            .content(ContentBlock::Text("hi!".into()))
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
            });
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
        let answer = BedrockInvoker::from_client(client)
            .converse(ARN, &conversation())
            .await
            .unwrap();
        assert_eq!(answer.text(), "hi!");
        assert_eq!(answer.stop_reason, "end_turn");
        assert_eq!(answer.usage.total_tokens, 5);
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
        invoker.converse(ARN, &conversation()).await.unwrap_err();
        assert_eq!(throttled.num_calls(), 1, "a provisioned call is tried once");
        invoker
            .converse("anthropic.claude-3-haiku-20240307-v1:0", &conversation())
            .await
            .unwrap_err();
        assert_eq!(
            throttled.num_calls(),
            4,
            "an on-demand call uses the client's retries"
        );
    }

    #[tokio::test]
    async fn maps_service_errors_to_model_errors() {
        let throttled = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(|req| req.model_id() == Some("throttled"))
            .then_error(|| {
                ConverseError::ThrottlingException(
                    ThrottlingException::builder().message("slow down").build(),
                )
            });
        let invalid = mock!(aws_sdk_bedrockruntime::Client::converse)
            .match_requests(|req| req.model_id() == Some("invalid"))
            .then_error(|| {
                ConverseError::ValidationException(
                    ValidationException::builder()
                        .message("maxTokens too big")
                        .build(),
                )
            });
        let client = mock_client!(
            aws_sdk_bedrockruntime,
            RuleMode::MatchAny,
            [&throttled, &invalid]
        );
        let invoker = BedrockInvoker::from_client(client);
        let err = invoker
            .converse("throttled", &conversation())
            .await
            .unwrap_err();
        assert_eq!(err, ModelError::Throttled);
        assert!(err.spills_over());
        let err = invoker
            .converse("invalid", &conversation())
            .await
            .unwrap_err();
        assert_eq!(err, ModelError::Validation("maxTokens too big".into()));
        assert!(!err.spills_over());
    }
}
