//! Provisioned Throughput as Bedrock lists it: status, units, commitment, tags.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

/// A Provisioned Throughput's status, as Bedrock reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapacityStatus {
    Creating,
    InService,
    Updating,
    Failed,
    /// A status this code does not know: neither routed nor deleted.
    Unknown,
}

impl CapacityStatus {
    pub fn parse(status: &str) -> Self {
        match status {
            "Creating" => Self::Creating,
            "InService" => Self::InService,
            "Updating" => Self::Updating,
            "Failed" => Self::Failed,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::InService => "InService",
            Self::Updating => "Updating",
            Self::Failed => "Failed",
            Self::Unknown => "Unknown",
        }
    }

    /// Bedrock answers calls to it (it keeps serving while it updates).
    pub fn serves(self) -> bool {
        matches!(self, Self::InService | Self::Updating)
    }
}

/// A Provisioned Throughput as Bedrock lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub arn: String,
    pub name: String,
    /// The base model it serves; `None` for a custom model's capacity (never managed here).
    pub model_id: Option<String>,
    pub model_units: u32,
    pub status: CapacityStatus,
    pub commitment: Commitment,
    pub commitment_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A listed capacity and, where they were looked up, its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub capacity: Capacity,
    pub tags: Option<BTreeMap<String, String>>,
}
