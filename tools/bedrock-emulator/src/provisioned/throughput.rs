//! A Provisioned Throughput: its status, the timed phases of its life, and how the control
//! plane describes it.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::check::{Commitment, Tag};
use crate::time::timestamp;

/// `ProvisionedModelStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    InService,
    Updating,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Creating,
        Status::InService,
        Status::Updating,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "Creating",
            Status::InService => "InService",
            Status::Updating => "Updating",
            Status::Failed => "Failed",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether runtime calls are served (Bedrock serves during an update).
    pub fn serves(self) -> bool {
        matches!(self, Status::InService | Status::Updating)
    }
}

/// Where a Provisioned Throughput is in its life; timed phases end when they are read.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    Creating {
        until: DateTime<Utc>,
        failure: Option<String>,
    },
    Updating {
        until: DateTime<Utc>,
    },
    InService,
    Failed {
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub id: String,
    pub arn: String,
    /// Creation order, for sorting and pagination.
    pub seq: u64,
    pub name: String,
    pub model_units: u32,
    /// The model as sent on create.
    pub model_id: String,
    /// The catalog's id of the model it serves.
    pub base_model: String,
    pub model_arn: String,
    pub desired_model_arn: String,
    pub foundation_model_arn: String,
    pub commitment: Option<Commitment>,
    pub commitment_expiration_time: Option<DateTime<Utc>>,
    pub creation_time: DateTime<Utc>,
    pub last_modified_time: DateTime<Utc>,
    pub client_request_token: Option<String>,
    pub tags: Vec<Tag>,
    pub(super) phase: Phase,
}

impl Provisioned {
    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Creating { .. } => Status::Creating,
            Phase::Updating { .. } => Status::Updating,
            Phase::InService => Status::InService,
            Phase::Failed { .. } => Status::Failed,
        }
    }

    pub fn failure_message(&self) -> Option<&str> {
        match &self.phase {
            Phase::Failed { message } => Some(message),
            _ => None,
        }
    }

    /// Ends a timed phase whose time has come; its end is the last modification.
    pub(super) fn settle(&mut self, now: DateTime<Utc>) {
        match &self.phase {
            Phase::Creating { until, failure } if *until <= now => {
                self.last_modified_time = *until;
                self.phase = match failure {
                    Some(message) => Phase::Failed {
                        message: message.clone(),
                    },
                    None => Phase::InService,
                };
            }
            Phase::Updating { until } if *until <= now => {
                self.last_modified_time = *until;
                self.model_arn.clone_from(&self.desired_model_arn);
                self.phase = Phase::InService;
            }
            _ => {}
        }
    }

    /// `ProvisionedModelSummary`.
    pub fn summary(&self) -> Value {
        let mut out = Map::new();
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        put("provisionedModelName", json!(self.name));
        put("provisionedModelArn", json!(self.arn));
        put("modelArn", json!(self.model_arn));
        put("desiredModelArn", json!(self.desired_model_arn));
        put("foundationModelArn", json!(self.foundation_model_arn));
        put("modelUnits", json!(self.model_units));
        put("desiredModelUnits", json!(self.model_units));
        put("status", json!(self.status().as_str()));
        if let Some(commitment) = self.commitment {
            put("commitmentDuration", json!(commitment.as_str()));
        }
        if let Some(expiration) = self.commitment_expiration_time {
            put("commitmentExpirationTime", json!(timestamp(expiration)));
        }
        put("creationTime", json!(timestamp(self.creation_time)));
        put(
            "lastModifiedTime",
            json!(timestamp(self.last_modified_time)),
        );
        Value::Object(out)
    }

    /// `GetProvisionedModelThroughput`'s answer: the summary and `failureMessage`.
    pub fn describe(&self) -> Value {
        let mut out = self.summary();
        if let Some(message) = self.failure_message() {
            out["failureMessage"] = json!(message);
        }
        out
    }
}
