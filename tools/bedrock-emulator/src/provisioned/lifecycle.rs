//! The lifecycle operations: create, find, update and delete a Provisioned Throughput.

use chrono::{DateTime, Duration, Months, Utc};

use super::check::{
    check_identifier, check_update, Accepted, UpdateRequest, MAX_TAGS_PER_RESOURCE,
};
use super::errors::{invalid_model, not_found, too_many_tags};
use super::throughput::{Phase, Provisioned, Status};
use super::ProvisionedState;
use crate::error::BedrockError;
use crate::ids::new_id;
use crate::time::timestamp;

impl ProvisionedState {
    /// `arn:aws:bedrock:REGION::foundation-model/ID` for a model id; an ARN as it is.
    fn model_arn(&self, model_id: &str) -> String {
        if model_id.starts_with("arn:") {
            model_id.to_owned()
        } else {
            format!(
                "arn:aws:bedrock:{}::foundation-model/{model_id}",
                self.identity.region
            )
        }
    }

    /// Registers a Provisioned Throughput, or finds the one an earlier request with the same
    /// token created.
    pub fn create_provisioned(&self, accepted: Accepted) -> Result<Provisioned, BedrockError> {
        let settings = self.settings();
        let mut inner = self.registry.lock();
        if let Some(token) = &accepted.client_request_token {
            let earlier = inner
                .pts
                .values()
                .find(|pt| pt.client_request_token.as_ref() == Some(token));
            if let Some(pt) = earlier {
                return Ok(pt.clone());
            }
        }
        let base_model = self
            .catalog
            .provisionable(&accepted.model_id)
            .ok_or_else(invalid_model)?;
        if inner.pts.values().any(|pt| pt.name == accepted.name) {
            return Err(BedrockError::conflict(format!(
                "A Provisioned Throughput with the name {} already exists. Use a different provisionedModelName.",
                accepted.name
            )));
        }
        if accepted.tags.len() > MAX_TAGS_PER_RESOURCE {
            return Err(too_many_tags(&accepted.name, accepted.tags.len()));
        }
        if accepted.commitment.is_none() {
            let used: u64 = inner
                .pts
                .values()
                .filter(|pt| pt.commitment.is_none() && pt.status() != Status::Failed)
                .map(|pt| u64::from(pt.model_units))
                .sum();
            let quota = settings.no_commitment_unit_quota;
            if used + u64::from(accepted.model_units) > u64::from(quota) {
                return Err(BedrockError::service_quota_exceeded(format!(
                    "You have exceeded the quota of {quota} model units for no-commitment Provisioned Throughput: {used} are in use and {} were requested. Delete a no-commitment Provisioned Throughput, request fewer model units, or request a quota increase.",
                    accepted.model_units
                )));
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        let id = new_id("pt:", seq, |id| inner.pts.contains_key(id));
        // Milliseconds, as reported, so that a reported time filters as it reads.
        let now = now_millis();
        let failure = settings
            .fails(&accepted, &base_model)
            .then(|| settings.failure_message.clone());
        let model_arn = self.model_arn(&accepted.model_id);
        let mut pt = Provisioned {
            arn: format!(
                "arn:aws:bedrock:{}:{}:provisioned-model/{id}",
                self.identity.region, self.identity.account
            ),
            id: id.clone(),
            seq,
            name: accepted.name,
            model_units: accepted.model_units,
            model_id: accepted.model_id,
            base_model,
            desired_model_arn: model_arn.clone(),
            foundation_model_arn: model_arn.clone(),
            model_arn,
            commitment: accepted.commitment,
            commitment_expiration_time: accepted
                .commitment
                .and_then(|c| now.checked_add_months(Months::new(c.months()))),
            creation_time: now,
            last_modified_time: now,
            client_request_token: accepted.client_request_token,
            tags: accepted.tags,
            phase: Phase::Creating {
                until: now + duration_ms(settings.create_ms),
                failure,
            },
        };
        pt.settle(now);
        inner.pts.insert(id, pt.clone());
        Ok(pt)
    }

    /// The Provisioned Throughput a `provisionedModelId` (name or ARN) names.
    pub fn find_provisioned(&self, identifier: &str) -> Result<Provisioned, BedrockError> {
        check_identifier(identifier)?;
        self.registry
            .find(identifier)
            .ok_or_else(|| not_found(identifier))
    }

    /// Renames a Provisioned Throughput or (re)associates its model; either makes it
    /// `Updating` for `updateMs`.
    pub fn update_provisioned(
        &self,
        identifier: &str,
        request: &UpdateRequest,
    ) -> Result<Provisioned, BedrockError> {
        check_update(identifier, request)?;
        let settings = self.settings();
        let desired_model_arn = match &request.desired_model_id {
            Some(model) => {
                self.catalog
                    .provisionable(model)
                    .ok_or_else(invalid_model)?;
                Some(self.model_arn(model))
            }
            None => None,
        };
        let mut inner = self.registry.lock();
        let pt = inner
            .find(identifier)
            .ok_or_else(|| not_found(identifier))?;
        let (id, arn, status) = (pt.id.clone(), pt.arn.clone(), pt.status());
        if status != Status::InService {
            return Err(BedrockError::validation(format!(
                "The Provisioned Throughput {arn} cannot be updated: its status is {}. Try again when it is InService.",
                status.as_str()
            )));
        }
        if let Some(desired) = &desired_model_arn {
            if *desired != pt.model_arn {
                return Err(BedrockError::validation(format!(
                    "You can't change the model of a Provisioned Throughput associated with a base model: {arn} serves {}.",
                    pt.model_arn
                )));
            }
        }
        let rename = request
            .desired_provisioned_model_name
            .as_ref()
            .filter(|name| **name != pt.name);
        if let Some(name) = rename {
            if inner.pts.values().any(|other| other.name == *name) {
                return Err(BedrockError::conflict(format!(
                    "A Provisioned Throughput with the name {name} already exists. Use a different desiredProvisionedModelName."
                )));
            }
        }
        let changes = rename.is_some() || desired_model_arn.is_some();
        let rename = rename.cloned();
        let Some(pt) = inner.pts.get_mut(&id) else {
            return Err(not_found(identifier));
        };
        if changes {
            let now = now_millis();
            if let Some(name) = rename {
                pt.name = name;
            }
            if let Some(desired) = desired_model_arn {
                pt.desired_model_arn = desired;
            }
            pt.last_modified_time = now;
            pt.phase = Phase::Updating {
                until: now + duration_ms(settings.update_ms),
            };
            pt.settle(now);
        }
        Ok(pt.clone())
    }

    /// Deletes a Provisioned Throughput, unless it is changing or its commitment runs.
    pub fn delete_provisioned(&self, identifier: &str) -> Result<Provisioned, BedrockError> {
        check_identifier(identifier)?;
        let settings = self.settings();
        let mut inner = self.registry.lock();
        let pt = inner
            .find(identifier)
            .cloned()
            .ok_or_else(|| not_found(identifier))?;
        let status = pt.status();
        if matches!(status, Status::Creating | Status::Updating) {
            return Err(BedrockError::conflict(format!(
                "The Provisioned Throughput {} cannot be deleted while its status is {}. Try again when it is InService or Failed.",
                pt.arn,
                status.as_str()
            )));
        }
        if let (Some(commitment), Some(expiration), true) = (
            pt.commitment,
            pt.commitment_expiration_time,
            status != Status::Failed,
        ) {
            if settings.now() < expiration {
                return Err(BedrockError::validation(format!(
                    "You can't delete a Provisioned Throughput with commitment before the commitment term is complete: the {} commitment of {} ends at {}.",
                    commitment.as_str(),
                    pt.arn,
                    timestamp(expiration)
                )));
            }
        }
        inner.pts.remove(&pt.id);
        inner.windows.remove(&pt.arn);
        inner.capacity_throttled.remove(&pt.arn);
        Ok(pt)
    }
}

/// The system clock, to the millisecond.
fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn duration_ms(ms: u64) -> Duration {
    Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}
