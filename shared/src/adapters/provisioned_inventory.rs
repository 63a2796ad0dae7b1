//! Bedrock's Provisioned Throughput list (`ListProvisionedModelThroughputs`), every page.

use aws_sdk_bedrock::error::DisplayErrorContext;

use domain::ports::ProvisionedInventory;
use domain::reporting::{InventoryError, ProvisionedThroughput};

#[derive(Debug, Clone)]
pub struct BedrockProvisionedInventory {
    client: aws_sdk_bedrock::Client,
}

impl BedrockProvisionedInventory {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_bedrock::Client::new(sdk))
    }

    pub fn from_client(client: aws_sdk_bedrock::Client) -> Self {
        Self { client }
    }
}

impl ProvisionedInventory for BedrockProvisionedInventory {
    async fn list(&self) -> Result<Vec<ProvisionedThroughput>, InventoryError> {
        let mut items = self
            .client
            .list_provisioned_model_throughputs()
            .into_paginator()
            .items()
            .send();
        let mut pts = Vec::new();
        while let Some(summary) = items.next().await {
            let summary =
                summary.map_err(|e| InventoryError(DisplayErrorContext(e).to_string()))?;
            pts.push(ProvisionedThroughput {
                arn: summary.provisioned_model_arn().to_owned(),
                name: summary.provisioned_model_name().to_owned(),
                model_arn: summary.model_arn().to_owned(),
                model_units: u32::try_from(summary.model_units()).unwrap_or(0),
                status: summary.status().as_str().to_owned(),
            });
        }
        Ok(pts)
    }
}
