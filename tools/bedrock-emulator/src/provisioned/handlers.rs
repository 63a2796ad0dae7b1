//! The control-plane operations over HTTP: create, get, update, delete and list Provisioned
//! Throughputs, and the tagging operations for their ARNs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::check::{
    body, check_create, check_tags_request, CreateRequest, Tag, TagsRequest, UpdateRequest,
    MAX_TAGS_PER_RESOURCE, MODEL_ARN_PATTERN, NAME_PATTERN,
};
use super::errors::too_many_tags;
use super::throughput::{Provisioned, Status};
use super::ProvisionedState;
use crate::checks::{full_match, invalid, status_equals, ListPage, ListSpec};
use crate::error::BedrockError;

pub async fn create(
    State(state): State<Arc<ProvisionedState>>,
    bytes: Bytes,
) -> Result<Response, BedrockError> {
    let request: CreateRequest = body(&bytes)?;
    let accepted = check_create(request)?;
    let pt = state.create_provisioned(accepted)?;
    tracing::info!(arn = %pt.arn, name = %pt.name, model_id = %pt.model_id, units = pt.model_units, "provisioned throughput created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "provisionedModelArn": pt.arn })),
    )
        .into_response())
}

pub async fn get(
    State(state): State<Arc<ProvisionedState>>,
    Path(identifier): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    Ok(Json(state.find_provisioned(&identifier)?.describe()))
}

pub async fn update(
    State(state): State<Arc<ProvisionedState>>,
    Path(identifier): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: UpdateRequest = body(&bytes)?;
    state.update_provisioned(&identifier, &request)?;
    Ok(Json(json!({})))
}

pub async fn delete(
    State(state): State<Arc<ProvisionedState>>,
    Path(identifier): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    let pt = state.delete_provisioned(&identifier)?;
    tracing::info!(arn = %pt.arn, name = %pt.name, "provisioned throughput deleted");
    Ok(Json(json!({})))
}

/// How `ListProvisionedModelThroughputs` names its filters and page tokens.
const LIST_SPEC: ListSpec = ListSpec {
    name_pattern: NAME_PATTERN,
    time_params: ("creationTimeAfter", "creationTimeBefore"),
    token_prefix: "pt-after-",
};

/// `modelArnEquals`, checked.
fn model_arn_equals(params: &HashMap<String, String>) -> Result<Option<String>, BedrockError> {
    let Some(value) = params.get("modelArnEquals") else {
        return Ok(None);
    };
    let length = value.chars().count();
    if !(20..=1011).contains(&length) {
        return Err(invalid(
            value,
            "modelArnEquals",
            "have length between 20 and 1011",
        ));
    }
    if !full_match(MODEL_ARN_PATTERN, value) {
        return Err(invalid(
            value,
            "modelArnEquals",
            &format!("satisfy regular expression pattern: {MODEL_ARN_PATTERN}"),
        ));
    }
    Ok(Some(value.clone()))
}

pub async fn list(
    State(state): State<Arc<ProvisionedState>>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, BedrockError> {
    let Query(params) =
        params.map_err(|e| BedrockError::validation(format!("Malformed query string: {e}")))?;
    let names = Status::ALL.map(Status::as_str);
    let status = status_equals(&params, &names, Status::parse)?;
    let model_arn = model_arn_equals(&params)?;
    let page = ListPage::parse(&params, &LIST_SPEC)?;
    let pts: Vec<Provisioned> = state
        .all()
        .into_iter()
        .filter(|pt| status.is_none_or(|s| pt.status() == s))
        .filter(|pt| model_arn.as_ref().is_none_or(|a| pt.model_arn == *a))
        .filter(|pt| page.admits(&pt.name, pt.creation_time))
        .collect();
    Ok(Json(page.answer(
        "provisionedModelSummaries",
        pts,
        |pt| pt.seq,
        Provisioned::summary,
    )))
}

fn tags_json(tags: &[Tag]) -> Value {
    json!(tags
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value}))
        .collect::<Vec<_>>())
}

/// `ListTagsForResource` (`POST /listTagsForResource`).
pub async fn list_tags(
    State(state): State<Arc<ProvisionedState>>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: TagsRequest = body(&bytes)?;
    let (arn, _, _) = check_tags_request(&request, false, false)?;
    let pt = state.tagged(&arn)?;
    Ok(Json(json!({ "tags": tags_json(&pt.tags) })))
}

/// `TagResource` (`POST /tagResource`): a key already there takes the new value.
pub async fn tag(
    State(state): State<Arc<ProvisionedState>>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: TagsRequest = body(&bytes)?;
    let (arn, new_tags, _) = check_tags_request(&request, true, false)?;
    state.retag(&arn, |tags| {
        for tag in new_tags {
            match tags.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value,
                None => tags.push(tag),
            }
        }
    })?;
    Ok(Json(json!({})))
}

/// `UntagResource` (`POST /untagResource`): keys not there are ignored.
pub async fn untag(
    State(state): State<Arc<ProvisionedState>>,
    bytes: Bytes,
) -> Result<Json<Value>, BedrockError> {
    let request: TagsRequest = body(&bytes)?;
    let (arn, _, keys) = check_tags_request(&request, false, true)?;
    state.retag(&arn, |tags| tags.retain(|t| !keys.contains(&t.key)))?;
    Ok(Json(json!({})))
}

impl ProvisionedState {
    /// The tags of a resource the tagging operations name (Provisioned Throughputs only).
    fn tagged(&self, arn: &str) -> Result<Provisioned, BedrockError> {
        self.registry.lock().by_arn(arn).cloned().ok_or_else(|| {
            BedrockError::resource_not_found(format!(
                "The specified resource {arn} could not be found."
            ))
        })
    }

    fn retag(&self, arn: &str, change: impl FnOnce(&mut Vec<Tag>)) -> Result<(), BedrockError> {
        let mut inner = self.registry.lock();
        let pt = inner
            .pts
            .values_mut()
            .find(|pt| pt.arn == arn)
            .ok_or_else(|| {
                BedrockError::resource_not_found(format!(
                    "The specified resource {arn} could not be found."
                ))
            })?;
        let mut tags = pt.tags.clone();
        change(&mut tags);
        if tags.len() > MAX_TAGS_PER_RESOURCE {
            return Err(too_many_tags(arn, tags.len()));
        }
        pt.tags = tags;
        Ok(())
    }
}
