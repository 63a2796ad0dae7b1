//! Serving prompt routers: which model a runtime call goes to when its `modelId` is a router's
//! ARN, and the control plane's `GetPromptRouter` and `ListPromptRouters`. Apart from
//! [`crate::prompt_router`] (what a router is and how it picks), which the runtime's state holds.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::checks::{full_match, invalid};
use crate::error::BedrockError;
use crate::identity::Identity;
use crate::prompt_router::{invoked_model_arn, is_prompt_router_arn, PromptRouter, ARN_PATTERN};
use crate::runtime::RuntimeState;

/// The model a runtime call is served by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The identifier the call is answered and counted as: the one sent, or the model a
    /// prompt router picked.
    pub model_id: String,
    /// The picked model's ARN when a prompt router picked it.
    pub invoked_model_arn: Option<String>,
}

/// The model a Converse or ConverseStream call is served by: `model_id` itself, or, for a
/// prompt router's ARN, the model the router picks for the request's length. An unknown router
/// ARN, or a body that is not JSON, is answered (and counted under the ARN) here.
pub fn target(
    state: &RuntimeState,
    model_id: &str,
    body: &[u8],
    input_chars: impl FnOnce(&Value) -> usize,
) -> Result<Target, BedrockError> {
    if !is_prompt_router_arn(model_id) {
        return Ok(Target {
            model_id: model_id.to_owned(),
            invoked_model_arn: None,
        });
    }
    let refused = |error: BedrockError| {
        state.record_validation_error(model_id);
        error
    };
    let router = state.prompt_router(model_id).ok_or_else(|| {
        refused(BedrockError::validation(
            "The provided model identifier is invalid.",
        ))
    })?;
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        refused(BedrockError::validation(format!(
            "Malformed input request: {e}"
        )))
    })?;
    let picked = router.pick(input_chars(&request)).to_owned();
    Ok(Target {
        invoked_model_arn: Some(invoked_model_arn(state.identity(), &picked)),
        model_id: picked,
    })
}

/// A router as `GetPromptRouter` and `ListPromptRouters` describe it (botocore's
/// `GetPromptRouterResponse` and `PromptRouterSummary`).
fn describe(arn: &str, router: &PromptRouter, identity: &Identity) -> Value {
    let model = |id: &str| json!({"modelArn": invoked_model_arn(identity, id)});
    let name = router
        .name
        .clone()
        .unwrap_or_else(|| arn.rsplit('/').next().unwrap_or(arn).to_owned());
    let kind = if arn.contains(":default-prompt-router/") {
        "default"
    } else {
        "custom"
    };
    json!({
        "promptRouterName": name,
        "routingCriteria": {"responseQualityDifference": 0.0},
        "promptRouterArn": arn,
        "models": [model(&router.models[0]), model(&router.models[1])],
        "fallbackModel": model(&router.models[1]),
        "status": "AVAILABLE",
        "type": kind,
    })
}

fn check_arn(arn: &str) -> Result<(), BedrockError> {
    if arn.is_empty() || arn.chars().count() > 2048 {
        return Err(invalid(
            arn,
            "promptRouterArn",
            "have length between 1 and 2048",
        ));
    }
    if !full_match(ARN_PATTERN, arn) {
        return Err(invalid(
            arn,
            "promptRouterArn",
            &format!("satisfy regular expression pattern: {ARN_PATTERN}"),
        ));
    }
    Ok(())
}

/// `GetPromptRouter` (`GET /prompt-routers/{promptRouterArn}`).
pub async fn get(
    State(state): State<Arc<RuntimeState>>,
    Path(arn): Path<String>,
) -> Result<Json<Value>, BedrockError> {
    check_arn(&arn)?;
    let router = state.prompt_router(&arn).ok_or_else(|| {
        BedrockError::resource_not_found(format!("The prompt router {arn} could not be found."))
    })?;
    Ok(Json(describe(&arn, &router, state.identity())))
}

/// `ListPromptRouters` (`GET /prompt-routers`): every router by ARN, `type` filtering
/// (`default`, `custom`), `maxResults` (1–1000, default 1000) a page, `nextToken` the last ARN of
/// the previous page.
pub async fn list(
    State(state): State<Arc<RuntimeState>>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, BedrockError> {
    let Query(params) =
        params.map_err(|e| BedrockError::validation(format!("Malformed query string: {e}")))?;
    let kind = match params.get("type").map(String::as_str) {
        None => None,
        Some(kind @ ("default" | "custom")) => Some(kind),
        Some(other) => {
            return Err(invalid(
                other,
                "type",
                "satisfy enum value set: [custom, default]",
            ))
        }
    };
    let max_results = match params.get("maxResults") {
        None => 1000,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(invalid(
                    value,
                    "maxResults",
                    "have value between 1 and 1000",
                ))
            }
        },
    };
    let after = match params.get("nextToken") {
        None => None,
        Some(token) if full_match(ARN_PATTERN, token) => Some(token.clone()),
        Some(_) => {
            return Err(BedrockError::validation(
                "The provided pagination token is invalid.",
            ))
        }
    };
    let identity = state.identity();
    let mut summaries: Vec<(String, Value)> = state
        .prompt_routers()
        .into_iter()
        .filter(|(arn, _)| after.as_ref().is_none_or(|after| arn > after))
        .map(|(arn, router)| {
            let summary = describe(&arn, &router, identity);
            (arn, summary)
        })
        .filter(|(_, summary)| kind.is_none_or(|kind| summary["type"] == kind))
        .collect();
    let more = summaries.len() > max_results;
    summaries.truncate(max_results);
    let mut answer = json!({
        "promptRouterSummaries": summaries.iter().map(|(_, s)| s).collect::<Vec<_>>(),
    });
    if more {
        if let Some((last, _)) = summaries.last() {
            answer["nextToken"] = json!(last);
        }
    }
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt_router::{default_router_arn, DEFAULT_ROUTER_NAME};

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:prompt-router/abc123";

    #[test]
    fn a_router_is_described_in_the_models_shape() {
        let identity = Identity::default();
        let arn = default_router_arn(&identity);
        let described = describe(&arn, &PromptRouter::builtin(), &identity);
        assert_eq!(described["promptRouterName"], DEFAULT_ROUTER_NAME);
        assert_eq!(described["type"], "default");
        assert_eq!(described["status"], "AVAILABLE");
        assert_eq!(
            described["fallbackModel"]["modelArn"],
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        let custom = PromptRouter {
            name: None,
            ..PromptRouter::builtin()
        };
        let described = describe(ARN, &custom, &identity);
        assert_eq!(
            (
                described["type"].as_str(),
                described["promptRouterName"].as_str()
            ),
            (Some("custom"), Some("abc123"))
        );
        assert!(check_arn(ARN).is_ok());
        assert!(check_arn("arn:aws:bedrock:us-east-1:123456789012:guardrail/x").is_err());
    }
}
