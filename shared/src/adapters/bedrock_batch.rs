//! Bedrock's batch inference API (`CreateModelInvocationJob` and friends).

use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig,
    ModelInvocationJobS3InputDataConfig, ModelInvocationJobS3OutputDataConfig, ModelInvocationType,
    S3InputFormat,
};

use super::sdk_error::SdkFailure;
use domain::error::JobError;
use domain::ports::{BatchJobs, JobRequest, JobState};

#[derive(Debug, Clone)]
pub struct BedrockBatchJobs {
    client: aws_sdk_bedrock::Client,
}

impl BedrockBatchJobs {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_bedrock::Client::new(sdk))
    }

    pub fn from_client(client: aws_sdk_bedrock::Client) -> Self {
        Self { client }
    }
}

/// Quota refusals wait, refusals of the request itself stay refused, the rest is retried later.
fn job_error<E>(error: SdkError<E>) -> JobError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = SdkFailure::of(&error);
    let message = failure.message();
    match failure.code.as_str() {
        "ServiceQuotaExceededException" => JobError::QuotaExceeded(message),
        "ValidationException"
        | "ResourceNotFoundException"
        | "AccessDeniedException"
        | "ConflictException" => JobError::Refused(message),
        _ => JobError::Failed(message),
    }
}

fn count(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

impl BatchJobs for BedrockBatchJobs {
    async fn create(&self, request: &JobRequest) -> Result<String, JobError> {
        let refused = |e: aws_sdk_bedrock::error::BuildError| JobError::Refused(e.to_string());
        let input = ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(&request.input_uri)
            .s3_input_format(S3InputFormat::Jsonl)
            .build()
            .map_err(refused)?;
        let output = ModelInvocationJobS3OutputDataConfig::builder()
            .s3_uri(&request.output_uri)
            .build()
            .map_err(refused)?;
        let created = self
            .client
            .create_model_invocation_job()
            .job_name(&request.name)
            .model_id(&request.model_id)
            .role_arn(&request.role_arn)
            .client_request_token(&request.client_request_token)
            .timeout_duration_in_hours(request.timeout_hours)
            .model_invocation_type(ModelInvocationType::Converse)
            .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input))
            .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
                output,
            ))
            .send()
            .await
            .map_err(job_error)?;
        Ok(created.job_arn().to_owned())
    }

    async fn get(&self, arn: &str) -> Result<JobState, JobError> {
        let job = self
            .client
            .get_model_invocation_job()
            .job_identifier(arn)
            .send()
            .await
            .map_err(job_error)?;
        Ok(JobState {
            status: job
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            message: job.message().map(str::to_owned),
            processed: count(job.processed_record_count()),
            succeeded: count(job.success_record_count()),
            failed: count(job.error_record_count()),
        })
    }

    async fn stop(&self, arn: &str) -> Result<(), JobError> {
        self.client
            .stop_model_invocation_job()
            .job_identifier(arn)
            .send()
            .await
            .map_err(job_error)?;
        Ok(())
    }
}
