//! Bedrock's Provisioned Throughput API (`ListProvisionedModelThroughputs`,
//! `CreateProvisionedModelThroughput`, `DeleteProvisionedModelThroughput`, tagging) for the
//! capacity function.

use std::collections::BTreeMap;

use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::primitives::DateTime as SdkDateTime;
use aws_sdk_bedrock::types::{CommitmentDuration, ProvisionedModelSummary, Tag};
use chrono::{DateTime, Utc};

use super::sdk_error::SdkFailure;
use domain::capacity::{Capacity, CapacityError, CapacityStatus, Commitment, CreateOrder};
use domain::ports::ProvisionedThroughputs;

#[derive(Debug, Clone)]
pub struct BedrockProvisionedThroughputs {
    client: aws_sdk_bedrock::Client,
}

impl BedrockProvisionedThroughputs {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_bedrock::Client::new(sdk))
    }

    pub fn from_client(client: aws_sdk_bedrock::Client) -> Self {
        Self { client }
    }
}

/// Bedrock's error code decides: the quota, a conflict, a missing capacity, a refusal the same
/// call would meet again, or a failure worth retrying on the next run.
fn capacity_error<E>(error: SdkError<E>) -> CapacityError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = SdkFailure::of(&error);
    let message = failure.message();
    match failure.code.as_str() {
        "ServiceQuotaExceededException" => CapacityError::QuotaExceeded(message),
        "ConflictException" => CapacityError::Conflict(message),
        "ResourceNotFoundException" => CapacityError::NotFound(message),
        "ValidationException" | "AccessDeniedException" | "TooManyTagsException" => {
            CapacityError::Refused(message)
        }
        _ => CapacityError::Failed(message),
    }
}

fn time(t: &SdkDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn commitment(duration: Option<&CommitmentDuration>) -> Commitment {
    match duration {
        None => Commitment::None,
        Some(CommitmentDuration::SixMonths) => Commitment::SixMonths,
        // OneMonth, or a term this SDK does not know: committed either way, never deleted.
        Some(_) => Commitment::OneMonth,
    }
}

/// The base model of a capacity: the id in its `foundation-model/` ARN; `None` for custom
/// models.
fn base_model(model_arn: &str) -> Option<String> {
    model_arn
        .split_once(":foundation-model/")
        .map(|(_, id)| id.to_owned())
}

fn capacity(summary: &ProvisionedModelSummary) -> Capacity {
    Capacity {
        arn: summary.provisioned_model_arn().to_owned(),
        name: summary.provisioned_model_name().to_owned(),
        model_id: base_model(summary.model_arn()),
        model_units: u32::try_from(summary.model_units()).unwrap_or(0),
        status: CapacityStatus::parse(summary.status().as_str()),
        commitment: commitment(summary.commitment_duration()),
        commitment_expires_at: summary.commitment_expiration_time().and_then(time),
        created_at: time(summary.creation_time()).unwrap_or_default(),
    }
}

fn tags(tags: &[(String, String)]) -> Result<Vec<Tag>, CapacityError> {
    tags.iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| CapacityError::Refused(e.to_string()))
        })
        .collect()
}

impl ProvisionedThroughputs for BedrockProvisionedThroughputs {
    async fn list(&self) -> Result<Vec<Capacity>, CapacityError> {
        let mut pages = self
            .client
            .list_provisioned_model_throughputs()
            .max_results(1000)
            .into_paginator()
            .items()
            .send();
        let mut listed = Vec::new();
        while let Some(summary) = pages.next().await {
            listed.push(capacity(&summary.map_err(capacity_error)?));
        }
        Ok(listed)
    }

    async fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, CapacityError> {
        let output = self
            .client
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(capacity_error)?;
        Ok(output
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn create(&self, order: &CreateOrder) -> Result<String, CapacityError> {
        let units = i32::try_from(order.model_units)
            .map_err(|_| CapacityError::Refused(format!("{} model units", order.model_units)))?;
        let duration = match order.commitment {
            Commitment::None => None,
            Commitment::OneMonth => Some(CommitmentDuration::OneMonth),
            Commitment::SixMonths => Some(CommitmentDuration::SixMonths),
        };
        let created = self
            .client
            .create_provisioned_model_throughput()
            .provisioned_model_name(&order.name)
            .model_id(&order.model_id)
            .model_units(units)
            .set_commitment_duration(duration)
            .client_request_token(&order.client_request_token)
            .set_tags(Some(tags(&order.tags)?))
            .send()
            .await
            .map_err(capacity_error)?;
        Ok(created.provisioned_model_arn().to_owned())
    }

    async fn tag(&self, arn: &str, to_add: &[(String, String)]) -> Result<(), CapacityError> {
        self.client
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags(to_add)?))
            .send()
            .await
            .map_err(capacity_error)?;
        Ok(())
    }

    async fn delete(&self, arn: &str) -> Result<(), CapacityError> {
        self.client
            .delete_provisioned_model_throughput()
            .provisioned_model_id(arn)
            .send()
            .await
            .map_err(capacity_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_models_come_from_foundation_model_arns_only() {
        assert_eq!(
            base_model("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0")
                .as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
        assert_eq!(
            base_model("arn:aws:bedrock:us-east-1:123456789012:custom-model/m/abc"),
            None
        );
    }

    #[test]
    fn summaries_become_capacities() {
        let summary = ProvisionedModelSummary::builder()
            .provisioned_model_name("bgw-x-1u")
            .provisioned_model_arn("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc")
            .model_arn("arn:aws:bedrock:us-east-1::foundation-model/m")
            .desired_model_arn("arn:aws:bedrock:us-east-1::foundation-model/m")
            .foundation_model_arn("arn:aws:bedrock:us-east-1::foundation-model/m")
            .model_units(2)
            .desired_model_units(2)
            .status(aws_sdk_bedrock::types::ProvisionedModelStatus::InService)
            .commitment_duration(CommitmentDuration::SixMonths)
            .creation_time(SdkDateTime::from_secs(1_700_000_000))
            .last_modified_time(SdkDateTime::from_secs(1_700_000_000))
            .build()
            .unwrap();
        let c = capacity(&summary);
        assert_eq!(c.model_id.as_deref(), Some("m"));
        assert_eq!(c.model_units, 2);
        assert_eq!(c.status, CapacityStatus::InService);
        assert_eq!(c.commitment, Commitment::SixMonths);
        assert_eq!(c.created_at.timestamp(), 1_700_000_000);
    }
}
