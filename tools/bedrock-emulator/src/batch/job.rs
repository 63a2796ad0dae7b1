//! A batch inference job (`ModelInvocationJob`) and the checks `CreateModelInvocationJob`
//! makes, with the constraints of botocore's `bedrock` service model.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::catalog::Catalog;
use crate::checks::Violations;
use crate::error::BedrockError;
use crate::time::timestamp;

/// The model's `ModelInvocationJobName` pattern (anchored, as Bedrock applies it).
pub const JOB_NAME_PATTERN: &str = r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}";
pub const ROLE_ARN_PATTERN: &str = r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+";
pub const TOKEN_PATTERN: &str = r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}";
pub const MODEL_ID_PATTERN: &str = r"(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:(([0-9]{12}:custom-model/[a-z0-9-]{1,63}[.]{1}[a-z0-9-:]{1,63}/[a-z0-9]{12}$)|(:foundation-model/([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}([.]?[a-z0-9-]{1,63})([:][a-z0-9-]{1,63}){0,2})|(([0-9a-zA-Z][_-]?)+)$)|([0-9]{12}:(inference-profile|application-inference-profile)/[a-zA-Z0-9-:.]+$)))|([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}([.]?[a-z0-9-]{1,63})([:][a-z0-9-]{1,63}){0,2})|(([0-9a-zA-Z][_-]?)+)";
pub const S3_URI_PATTERN: &str =
    r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?";
pub const ACCOUNT_ID_PATTERN: &str = r"[0-9]{12}";
pub const KMS_KEY_PATTERN: &str = r"(arn:aws(-[^:]+)?:kms:[a-zA-Z0-9-]*:[0-9]{12}:((key/[a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+)))|([a-zA-Z0-9-]{36})|(alias/[a-zA-Z0-9-_/]+)";
pub const JOB_IDENTIFIER_PATTERN: &str =
    r"((arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})";

/// Default and bounds of `timeoutDurationInHours`.
pub const DEFAULT_TIMEOUT_HOURS: i64 = 168;
const TIMEOUT_HOURS: (i64, i64) = (24, 168);

/// `ModelInvocationJobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Submitted,
    Validating,
    Scheduled,
    InProgress,
    Completed,
    PartiallyCompleted,
    Failed,
    Stopping,
    Stopped,
    Expired,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Submitted,
        Status::Validating,
        Status::Scheduled,
        Status::InProgress,
        Status::Completed,
        Status::PartiallyCompleted,
        Status::Failed,
        Status::Stopping,
        Status::Stopped,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "Submitted",
            Status::Validating => "Validating",
            Status::Scheduled => "Scheduled",
            Status::InProgress => "InProgress",
            Status::Completed => "Completed",
            Status::PartiallyCompleted => "PartiallyCompleted",
            Status::Failed => "Failed",
            Status::Stopping => "Stopping",
            Status::Stopped => "Stopped",
            Status::Expired => "Expired",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Counts against the concurrent-jobs quota and blocks its name.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Submitted
                | Status::Validating
                | Status::Scheduled
                | Status::InProgress
                | Status::Stopping
        )
    }

    pub fn is_ended(self) -> bool {
        !self.is_active()
    }
}

/// `ModelInvocationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvocationType {
    InvokeModel,
    Converse,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3InputDataConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_input_format: Option<String>,
    pub s3_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_bucket_owner: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputDataConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_input_data_config: Option<S3InputDataConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3OutputDataConfig {
    pub s3_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_encryption_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_bucket_owner: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputDataConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_output_data_config: Option<S3OutputDataConfig>,
}

/// The body of `CreateModelInvocationJob`; every member optional here so that a missing one is
/// reported as Bedrock reports it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub job_name: Option<String>,
    pub role_arn: Option<String>,
    pub client_request_token: Option<String>,
    pub model_id: Option<String>,
    pub input_data_config: Option<InputDataConfig>,
    pub output_data_config: Option<OutputDataConfig>,
    pub vpc_config: Option<Value>,
    pub timeout_duration_in_hours: Option<i64>,
    pub tags: Option<Vec<Value>>,
    pub model_invocation_type: Option<String>,
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub job_name: String,
    pub role_arn: String,
    pub client_request_token: Option<String>,
    pub model_id: String,
    pub input_data_config: InputDataConfig,
    pub output_data_config: OutputDataConfig,
    pub input_uri: String,
    pub output_uri: String,
    pub vpc_config: Option<Value>,
    pub timeout_hours: i64,
    pub invocation_type: InvocationType,
}

/// The identifier of a Provisioned Throughput, which batch inference does not take.
fn is_provisioned(model_id: &str) -> bool {
    model_id.starts_with("arn:") && model_id.contains(":provisioned-model/")
}

/// Checks a create request the way Bedrock does: the model's constraints first (all of them
/// reported together), then the model itself.
pub fn check_create(catalog: &Catalog, request: CreateRequest) -> Result<Accepted, BedrockError> {
    let mut v = Violations::default();
    match &request.job_name {
        Some(name) => v.string(name, "jobName", (1, 63), JOB_NAME_PATTERN),
        None => v.required("jobName"),
    }
    match &request.role_arn {
        Some(arn) => v.string(arn, "roleArn", (0, 2048), ROLE_ARN_PATTERN),
        None => v.required("roleArn"),
    }
    if let Some(token) = &request.client_request_token {
        v.string(token, "clientRequestToken", (1, 256), TOKEN_PATTERN);
    }
    let provisioned = request.model_id.as_deref().is_some_and(is_provisioned);
    match &request.model_id {
        Some(id) if !provisioned => v.string(id, "modelId", (1, 2048), MODEL_ID_PATTERN),
        Some(_) => {}
        None => v.required("modelId"),
    }
    let s3_input = request
        .input_data_config
        .as_ref()
        .and_then(|c| c.s3_input_data_config.as_ref());
    match (&request.input_data_config, s3_input) {
        (None, _) => v.required("inputDataConfig"),
        (Some(_), None) => v.required("inputDataConfig.s3InputDataConfig"),
        (Some(_), Some(s3)) => {
            let path = "inputDataConfig.s3InputDataConfig";
            match &s3.s3_uri {
                Some(uri) => v.string(uri, &format!("{path}.s3Uri"), (1, 1024), S3_URI_PATTERN),
                None => v.required(&format!("{path}.s3Uri")),
            }
            if let Some(format) = s3.s3_input_format.as_deref().filter(|f| *f != "JSONL") {
                v.add(
                    Some(format),
                    &format!("{path}.s3InputFormat"),
                    "satisfy enum value set: [JSONL]",
                );
            }
            if let Some(owner) = &s3.s3_bucket_owner {
                v.string(
                    owner,
                    &format!("{path}.s3BucketOwner"),
                    (0, 12),
                    ACCOUNT_ID_PATTERN,
                );
            }
        }
    }
    let s3_output = request
        .output_data_config
        .as_ref()
        .and_then(|c| c.s3_output_data_config.as_ref());
    match (&request.output_data_config, s3_output) {
        (None, _) => v.required("outputDataConfig"),
        (Some(_), None) => v.required("outputDataConfig.s3OutputDataConfig"),
        (Some(_), Some(s3)) => {
            let path = "outputDataConfig.s3OutputDataConfig";
            match &s3.s3_uri {
                Some(uri) => v.string(uri, &format!("{path}.s3Uri"), (1, 1024), S3_URI_PATTERN),
                None => v.required(&format!("{path}.s3Uri")),
            }
            if let Some(key) = &s3.s3_encryption_key_id {
                v.string(
                    key,
                    &format!("{path}.s3EncryptionKeyId"),
                    (1, 2048),
                    KMS_KEY_PATTERN,
                );
            }
            if let Some(owner) = &s3.s3_bucket_owner {
                v.string(
                    owner,
                    &format!("{path}.s3BucketOwner"),
                    (0, 12),
                    ACCOUNT_ID_PATTERN,
                );
            }
        }
    }
    if let Some(hours) = request.timeout_duration_in_hours {
        let text = hours.to_string();
        if hours < TIMEOUT_HOURS.0 {
            v.add(
                Some(&text),
                "timeoutDurationInHours",
                format!("have value greater than or equal to {}", TIMEOUT_HOURS.0),
            );
        }
        if hours > TIMEOUT_HOURS.1 {
            v.add(
                Some(&text),
                "timeoutDurationInHours",
                format!("have value less than or equal to {}", TIMEOUT_HOURS.1),
            );
        }
    }
    if request.tags.as_ref().is_some_and(|t| t.len() > 200) {
        v.push(
            "Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 200",
        );
    }
    let invocation_type = match request.model_invocation_type.as_deref() {
        None | Some("InvokeModel") => InvocationType::InvokeModel,
        Some("Converse") => InvocationType::Converse,
        Some(other) => {
            v.add(
                Some(other),
                "modelInvocationType",
                "satisfy enum value set: [InvokeModel, Converse]",
            );
            InvocationType::InvokeModel
        }
    };
    v.into_result()?;

    let model_id = request.model_id.unwrap_or_default();
    if provisioned {
        return Err(BedrockError::validation(format!(
            "Batch inference does not support Provisioned Throughput. The model identifier {model_id} is a provisioned model; specify a foundation model or an inference profile."
        )));
    }
    catalog.max_output_tokens(&model_id)?;

    let input_data_config = request.input_data_config.unwrap_or_default();
    let output_data_config = request.output_data_config.unwrap_or_default();
    let input_uri = input_data_config
        .s3_input_data_config
        .as_ref()
        .and_then(|c| c.s3_uri.clone())
        .unwrap_or_default();
    let output_uri = output_data_config
        .s3_output_data_config
        .as_ref()
        .and_then(|c| c.s3_uri.clone())
        .unwrap_or_default();
    Ok(Accepted {
        job_name: request.job_name.unwrap_or_default(),
        role_arn: request.role_arn.unwrap_or_default(),
        client_request_token: request.client_request_token,
        model_id,
        input_data_config,
        output_data_config,
        input_uri,
        output_uri,
        vpc_config: request.vpc_config,
        timeout_hours: request
            .timeout_duration_in_hours
            .unwrap_or(DEFAULT_TIMEOUT_HOURS),
        invocation_type,
    })
}

/// Record counts, known once the input was validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub processed: u64,
    pub success: u64,
    pub error: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub arn: String,
    /// Creation order, for sorting and pagination.
    pub seq: u64,
    pub request: Accepted,
    pub status: Status,
    pub message: Option<String>,
    pub submit_time: DateTime<Utc>,
    pub last_modified_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub expiration_time: DateTime<Utc>,
    /// `None` until the input was read.
    pub counts: Option<Counts>,
}

impl Job {
    /// `GetModelInvocationJob`'s answer, which is also the job's `ModelInvocationJobSummary`.
    pub fn describe(&self) -> Value {
        let r = &self.request;
        let mut out = Map::new();
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        put("jobArn", json!(self.arn));
        put("jobName", json!(r.job_name));
        put("modelId", json!(r.model_id));
        if let Some(token) = &r.client_request_token {
            put("clientRequestToken", json!(token));
        }
        put("roleArn", json!(r.role_arn));
        put("status", json!(self.status.as_str()));
        if let Some(message) = &self.message {
            put("message", json!(message));
        }
        put("submitTime", json!(timestamp(self.submit_time)));
        put(
            "lastModifiedTime",
            json!(timestamp(self.last_modified_time)),
        );
        if let Some(end) = self.end_time {
            put("endTime", json!(timestamp(end)));
        }
        put("inputDataConfig", json!(r.input_data_config));
        put("outputDataConfig", json!(r.output_data_config));
        if let Some(vpc) = &r.vpc_config {
            put("vpcConfig", vpc.clone());
        }
        put("timeoutDurationInHours", json!(r.timeout_hours));
        put("jobExpirationTime", json!(timestamp(self.expiration_time)));
        let invocation_type = match r.invocation_type {
            InvocationType::InvokeModel => "InvokeModel",
            InvocationType::Converse => "Converse",
        };
        put("modelInvocationType", json!(invocation_type));
        if let Some(c) = self.counts {
            put("totalRecordCount", json!(c.total));
            put("processedRecordCount", json!(c.processed));
            put("successRecordCount", json!(c.success));
            put("errorRecordCount", json!(c.error));
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::full_match;

    fn request(body: Value) -> Result<Accepted, BedrockError> {
        let request: CreateRequest = serde_json::from_value(body).unwrap();
        check_create(&Catalog::default(), request)
    }

    fn valid() -> Value {
        json!({
            "jobName": "nightly-batch-1",
            "roleArn": "arn:aws:iam::123456789012:role/BatchRole",
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://in-bucket/records/input.jsonl", "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://out-bucket/results/"}},
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = valid();
        body[field] = value;
        body
    }

    #[test]
    fn accepts_a_valid_request_with_defaults() {
        let accepted = request(valid()).unwrap();
        assert_eq!(accepted.invocation_type, InvocationType::InvokeModel);
        assert_eq!(accepted.timeout_hours, 168);
        assert_eq!(accepted.input_uri, "s3://in-bucket/records/input.jsonl");
        assert_eq!(accepted.output_uri, "s3://out-bucket/results/");
        for model in [
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
        ] {
            assert!(request(with("modelId", json!(model))).is_ok(), "{model}");
        }
        let converse = request(with("modelInvocationType", json!("Converse"))).unwrap();
        assert_eq!(converse.invocation_type, InvocationType::Converse);
    }

    #[test]
    fn refuses_what_the_model_refuses() {
        let cases = [
            ("jobName", json!("-starts-with-dash"), "jobName"),
            ("jobName", json!("has space"), "jobName"),
            (
                "jobName",
                json!("a".repeat(64)),
                "length less than or equal to 63",
            ),
            ("roleArn", json!("arn:aws:iam::123:user/x"), "roleArn"),
            (
                "clientRequestToken",
                json!("bad token"),
                "clientRequestToken",
            ),
            ("modelId", json!("Not A Model!"), "modelId"),
            (
                "timeoutDurationInHours",
                json!(23),
                "greater than or equal to 24",
            ),
            (
                "timeoutDurationInHours",
                json!(169),
                "less than or equal to 168",
            ),
            (
                "modelInvocationType",
                json!("Batch"),
                "[InvokeModel, Converse]",
            ),
            (
                "inputDataConfig",
                json!({"s3InputDataConfig": {"s3Uri": "https://bucket/key"}}),
                "inputDataConfig.s3InputDataConfig.s3Uri",
            ),
            (
                "inputDataConfig",
                json!({"s3InputDataConfig": {"s3Uri": "s3://bucket/in.jsonl", "s3InputFormat": "CSV"}}),
                "[JSONL]",
            ),
            (
                "inputDataConfig",
                json!({}),
                "Value null at 'inputDataConfig.s3InputDataConfig'",
            ),
            (
                "outputDataConfig",
                json!({"s3OutputDataConfig": {"s3Uri": "s3://B/upper"}}),
                "outputDataConfig.s3OutputDataConfig.s3Uri",
            ),
        ];
        for (field, value, expected) in cases {
            let error = request(with(field, value.clone())).unwrap_err();
            assert_eq!(error.error_type, "ValidationException", "{field} {value}");
            assert!(
                error.message.contains(expected),
                "{field} {value}: {}",
                error.message
            );
        }
    }

    #[test]
    fn reports_every_violation_and_missing_members() {
        let error = request(json!({"jobName": "ok"})).unwrap_err();
        assert!(
            error.message.starts_with("4 validation errors detected: "),
            "{}",
            error.message
        );
        assert!(error.message.contains(
            "Value null at 'roleArn' failed to satisfy constraint: Member must not be null"
        ));
    }

    #[test]
    fn refuses_unknown_models_and_provisioned_throughput() {
        let unknown = request(with("modelId", json!("vendor.unknown-v1"))).unwrap_err();
        assert_eq!(unknown.message, "The provided model identifier is invalid.");
        let pt = request(with(
            "modelId",
            json!("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123"),
        ))
        .unwrap_err();
        assert_eq!(pt.error_type, "ValidationException");
        assert!(
            pt.message.contains("Provisioned Throughput"),
            "{}",
            pt.message
        );
    }

    #[test]
    fn job_identifiers_follow_the_model() {
        assert!(full_match(JOB_IDENTIFIER_PATTERN, "abcdef123456"));
        assert!(full_match(
            JOB_IDENTIFIER_PATTERN,
            "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456"
        ));
        assert!(!full_match(JOB_IDENTIFIER_PATTERN, "ABCDEF123456"));
        assert!(!full_match(JOB_IDENTIFIER_PATTERN, "abc"));
    }
}
