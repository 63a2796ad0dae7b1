//! The Provisioned Throughput control plane, lifecycle and capacity window. (Runtime calls
//! through Provisioned Throughputs, and the settings as `/_emulator/config` shows them, are
//! tested with the services composed, in `state`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{Duration, Months};
use serde_json::{json, Value};

use super::capacity::Window;
use super::*;
use crate::checks::full_match;
use crate::error::BedrockError;
use crate::time::{parse_time, timestamp};

pub(crate) const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
pub(crate) const SONNET_4_5: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

fn state() -> Arc<ProvisionedState> {
    let state = Arc::new(ProvisionedState::new(
        Catalog::default(),
        Identity::default(),
        ProvisionedSettings::default(),
    ));
    configure(
        &state,
        json!({"provisioned": {"createMs": 0, "updateMs": 0}}),
    );
    state
}

/// Applies the `"provisioned"` part of a `/_emulator/config` body.
fn configure(state: &ProvisionedState, patch: Value) {
    let patch: ProvisionedPatch = serde_json::from_value(patch["provisioned"].clone()).unwrap();
    state.apply(&patch).unwrap();
}

pub(crate) async fn create(
    state: &Arc<ProvisionedState>,
    body: Value,
) -> Result<String, BedrockError> {
    let response = super::create(State(state.clone()), Bytes::from(body.to_string())).await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    Ok(answer["provisionedModelArn"].as_str().unwrap().to_owned())
}

pub(crate) fn request(name: &str, units: u32) -> Value {
    json!({"provisionedModelName": name, "modelId": HAIKU, "modelUnits": units})
}

pub(crate) async fn get(
    state: &Arc<ProvisionedState>,
    identifier: &str,
) -> Result<Value, BedrockError> {
    super::get(State(state.clone()), Path(identifier.to_owned()))
        .await
        .map(|j| j.0)
}

pub(crate) async fn list(
    state: &Arc<ProvisionedState>,
    query: &[(&str, &str)],
) -> Result<Value, BedrockError> {
    let params: HashMap<String, String> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    super::list(State(state.clone()), Ok(Query(params)))
        .await
        .map(|j| j.0)
}

pub(crate) async fn update(
    state: &Arc<ProvisionedState>,
    identifier: &str,
    body: Value,
) -> Result<Value, BedrockError> {
    super::update(
        State(state.clone()),
        Path(identifier.to_owned()),
        Bytes::from(body.to_string()),
    )
    .await
    .map(|j| j.0)
}

pub(crate) async fn delete(
    state: &Arc<ProvisionedState>,
    identifier: &str,
) -> Result<Value, BedrockError> {
    super::delete(State(state.clone()), Path(identifier.to_owned()))
        .await
        .map(|j| j.0)
}

pub(crate) fn names(list: &Value) -> Vec<String> {
    list["provisionedModelSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["provisionedModelName"].as_str().unwrap().to_owned())
        .collect()
}

/// Moves a Provisioned Throughput's timed phase to its end, as time would.
fn finish_phase(state: &ProvisionedState, arn: &str) {
    state.finish_phase(arn);
}

#[tokio::test]
async fn create_describes_a_provisioned_throughput_in_bedrocks_shape() {
    let state = state();
    let arn = create(&state, request("haiku-pt", 2)).await.unwrap();
    assert!(
        full_match(
            r"arn:aws:bedrock:us-east-1:123456789012:provisioned-model/[a-z0-9]{12}",
            &arn
        ),
        "{arn}"
    );
    let pt = get(&state, &arn).await.unwrap();
    let foundation = format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}");
    assert_eq!(pt["provisionedModelArn"], arn);
    assert_eq!(pt["provisionedModelName"], "haiku-pt");
    assert_eq!(pt["status"], "InService", "createMs 0: in service at once");
    assert_eq!(pt["modelUnits"], 2);
    assert_eq!(pt["desiredModelUnits"], 2);
    assert_eq!(pt["modelArn"], foundation);
    assert_eq!(pt["desiredModelArn"], foundation);
    assert_eq!(pt["foundationModelArn"], foundation);
    assert!(pt.get("commitmentDuration").is_none());
    assert!(pt.get("commitmentExpirationTime").is_none());
    assert!(pt.get("failureMessage").is_none());
    assert!(pt["creationTime"].as_str().unwrap().ends_with('Z'));
    // By name and by id as well as by ARN.
    assert_eq!(get(&state, "haiku-pt").await.unwrap(), pt);
    let id = arn.rsplit('/').next().unwrap();
    assert_eq!(get(&state, id).await.unwrap(), pt);
}

#[tokio::test]
async fn a_new_one_is_creating_until_its_delay_has_passed() {
    let state = state();
    configure(&state, json!({"provisioned": {"createMs": 3_600_000}}));
    let arn = create(&state, request("slow", 1)).await.unwrap();
    let creating = get(&state, &arn).await.unwrap();
    assert_eq!(creating["status"], "Creating");
    finish_phase(&state, &arn);
    let ready = get(&state, &arn).await.unwrap();
    assert_eq!(ready["status"], "InService");
    assert_ne!(ready["lastModifiedTime"], creating["lastModifiedTime"]);
}

#[tokio::test]
async fn creation_checks_the_models_constraints_and_the_model() {
    let state = state();
    let cases = [
        (json!({}), "3 validation errors detected"),
        (
            json!({"provisionedModelName": "has space", "modelId": HAIKU, "modelUnits": 1}),
            "provisionedModelName",
        ),
        (
            json!({"provisionedModelName": "a".repeat(64), "modelId": HAIKU, "modelUnits": 1}),
            "length less than or equal to 63",
        ),
        (
            json!({"provisionedModelName": "ok", "modelId": HAIKU, "modelUnits": 0}),
            "greater than or equal to 1",
        ),
        (
            json!({"provisionedModelName": "ok", "modelId": HAIKU, "modelUnits": 1, "commitmentDuration": "OneYear"}),
            "[OneMonth, SixMonths]",
        ),
        (
            json!({"provisionedModelName": "ok", "modelId": HAIKU, "modelUnits": 1, "clientRequestToken": "bad token"}),
            "clientRequestToken",
        ),
        (
            json!({"provisionedModelName": "ok", "modelId": "Not A Model!", "modelUnits": 1}),
            "modelId",
        ),
        (
            json!({"provisionedModelName": "ok", "modelId": HAIKU, "modelUnits": 1, "tags": [{"key": "k"}]}),
            "Value null at 'tags.1.member.value'",
        ),
        (
            json!({"provisionedModelName": "ok", "modelId": "vendor.unknown-v1", "modelUnits": 1}),
            "The provided model identifier is invalid.",
        ),
        (
            json!({"provisionedModelName": "ok", "modelId": format!("us.{HAIKU}"), "modelUnits": 1}),
            "The provided model identifier is invalid.",
        ),
    ];
    for (body, expected) in cases {
        let error = create(&state, body.clone()).await.unwrap_err();
        assert_eq!(error.error_type, "ValidationException", "{body}");
        assert!(
            error.message.contains(expected),
            "{body}: {}",
            error.message
        );
    }
    let malformed = super::create(State(state.clone()), Bytes::from_static(b"{"))
        .await
        .unwrap_err();
    assert_eq!(malformed.error_type, "ValidationException");
    // A provisioning id with its context suffix, and a model served on demand only through
    // profiles, are fine.
    create(
        &state,
        json!({"provisionedModelName": "ctx", "modelId": format!("{HAIKU}:200k"), "modelUnits": 1}),
    )
    .await
    .unwrap();
    create(
        &state,
        json!({"provisionedModelName": "sonnet", "modelId": SONNET_4_5, "modelUnits": 1}),
    )
    .await
    .unwrap();
    assert!(state.all().iter().all(|pt| !pt.arn.is_empty()));
}

#[tokio::test]
async fn the_same_token_gives_the_same_arn_and_a_taken_name_conflicts() {
    let state = state();
    let mut body = request("token-pt", 1);
    body["clientRequestToken"] = json!("token-1");
    let first = create(&state, body.clone()).await.unwrap();
    assert_eq!(create(&state, body.clone()).await.unwrap(), first);
    assert_eq!(state.all().len(), 1);

    body["clientRequestToken"] = json!("token-2");
    let conflict = create(&state, body).await.unwrap_err();
    assert_eq!(conflict.error_type, "ConflictException");
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
    assert!(
        conflict.message.contains("token-pt"),
        "{}",
        conflict.message
    );
}

#[tokio::test]
async fn no_commitment_units_are_bounded_by_the_quota() {
    let state = state();
    configure(
        &state,
        json!({"provisioned": {"noCommitmentUnitQuota": 3, "failOn": ["doomed"]}}),
    );
    create(&state, request("a", 2)).await.unwrap();
    let over = create(&state, request("b", 2)).await.unwrap_err();
    assert_eq!(over.error_type, "ServiceQuotaExceededException");
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert!(
        over.message.contains("quota of 3 model units"),
        "{}",
        over.message
    );
    // Committed capacity is not counted, nor capacity that failed.
    let mut committed = request("c", 5);
    committed["commitmentDuration"] = json!("OneMonth");
    create(&state, committed).await.unwrap();
    create(&state, request("doomed", 1)).await.unwrap();
    create(&state, request("b", 1)).await.unwrap();
    // Deleting frees the units.
    assert!(create(&state, request("d", 1)).await.is_err());
    delete(&state, "a").await.unwrap();
    create(&state, request("d", 2)).await.unwrap();
}

#[tokio::test]
async fn committed_capacity_refuses_deletion_before_its_term_ends() {
    let state = state();
    let mut body = request("committed", 1);
    body["commitmentDuration"] = json!("SixMonths");
    let arn = create(&state, body).await.unwrap();
    let pt = get(&state, &arn).await.unwrap();
    assert_eq!(pt["commitmentDuration"], "SixMonths");
    let created = parse_time(pt["creationTime"].as_str().unwrap()).unwrap();
    let expires = parse_time(pt["commitmentExpirationTime"].as_str().unwrap()).unwrap();
    assert_eq!(created.checked_add_months(Months::new(6)), Some(expires));

    let refused = delete(&state, &arn).await.unwrap_err();
    assert_eq!(refused.error_type, "ValidationException");
    assert!(
        refused
            .message
            .contains("before the commitment term is complete"),
        "{}",
        refused.message
    );
    // The emulator's present moves past the term: deletion is allowed.
    configure(
        &state,
        json!({"provisioned": {"now": timestamp(expires - Duration::seconds(1))}}),
    );
    assert!(delete(&state, &arn).await.is_err());
    configure(&state, json!({"provisioned": {"now": timestamp(expires)}}));
    delete(&state, &arn).await.unwrap();
    let gone = get(&state, &arn).await.unwrap_err();
    assert_eq!(gone.error_type, "ResourceNotFoundException");
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_filters_sorts_and_paginates() {
    let state = state();
    for name in ["alpha-1", "beta-1", "alpha-2", "gamma"] {
        create(&state, request(name, 1)).await.unwrap();
    }
    let sonnet = format!("arn:aws:bedrock:us-east-1::foundation-model/{SONNET_4_5}");
    create(
        &state,
        json!({"provisionedModelName": "sonnet", "modelId": SONNET_4_5, "modelUnits": 1}),
    )
    .await
    .unwrap();
    let all = list(&state, &[]).await.unwrap();
    assert_eq!(
        names(&all),
        ["sonnet", "gamma", "alpha-2", "beta-1", "alpha-1"],
        "newest first by default"
    );
    assert!(all.get("nextToken").is_none());
    let ascending = list(
        &state,
        &[("sortBy", "CreationTime"), ("sortOrder", "Ascending")],
    )
    .await
    .unwrap();
    assert_eq!(names(&ascending)[0], "alpha-1");
    let alphas = list(&state, &[("nameContains", "alpha")]).await.unwrap();
    assert_eq!(names(&alphas), ["alpha-2", "alpha-1"]);
    let by_model = list(&state, &[("modelArnEquals", &sonnet)]).await.unwrap();
    assert_eq!(names(&by_model), ["sonnet"]);
    let in_service = list(&state, &[("statusEquals", "InService")])
        .await
        .unwrap();
    assert_eq!(names(&in_service).len(), 5);
    let creating = list(&state, &[("statusEquals", "Creating")]).await.unwrap();
    assert!(names(&creating).is_empty());

    // Pages of two, in order, then the end.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..5 {
        let mut query = vec![("maxResults", "2"), ("sortOrder", "Ascending")];
        if let Some(t) = &token {
            query.push(("nextToken", t));
        }
        let page = list(&state, &query).await.unwrap();
        seen.extend(names(&page));
        token = page["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["alpha-1", "beta-1", "alpha-2", "gamma", "sonnet"]);

    // Creation times, exclusive.
    let first = state.all()[0].creation_time;
    let after = list(&state, &[("creationTimeAfter", &timestamp(first))])
        .await
        .unwrap();
    assert!(!names(&after).contains(&"alpha-1".to_owned()));
    let before = list(&state, &[("creationTimeBefore", &timestamp(first))])
        .await
        .unwrap();
    assert!(names(&before).is_empty());

    for bad in [
        ("statusEquals", "Deleting"),
        ("sortBy", "Name"),
        ("sortOrder", "Up"),
        ("maxResults", "0"),
        ("maxResults", "1001"),
        ("nameContains", "has space"),
        ("modelArnEquals", "not-an-arn-of-a-model"),
        ("creationTimeAfter", "yesterday"),
        ("nextToken", "bogus"),
    ] {
        let error = list(&state, &[bad]).await.unwrap_err();
        assert_eq!(error.error_type, "ValidationException", "{bad:?}");
    }
}

#[tokio::test]
async fn unknown_or_malformed_identifiers_are_refused() {
    let state = state();
    let missing = get(&state, "nobody").await.unwrap_err();
    assert_eq!(missing.error_type, "ResourceNotFoundException");
    let other = get(
        &state,
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefabcdef",
    )
    .await
    .unwrap_err();
    assert_eq!(other.error_type, "ResourceNotFoundException");
    for bad in [
        "has space",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/SHORT",
    ] {
        let error = get(&state, bad).await.unwrap_err();
        assert_eq!(error.error_type, "ValidationException", "{bad}");
        assert_eq!(
            delete(&state, bad).await.unwrap_err().error_type,
            "ValidationException"
        );
    }
}

#[test]
fn the_window_forgets_calls_older_than_a_minute() {
    let start = Instant::now();
    let mut window = Window::default();
    window.push(start, 50);
    window.push(start + StdDuration::from_secs(30), 20);
    window.prune(start + StdDuration::from_secs(59));
    assert_eq!(window.total, 70);
    window.prune(start + StdDuration::from_secs(60));
    assert_eq!(window.total, 20);
    window.prune(start + StdDuration::from_secs(91));
    assert_eq!(window.total, 0);
    assert!(window.calls.is_empty());
}

#[tokio::test]
async fn tags_are_kept_listed_changed_and_bounded() {
    let state = state();
    let mut body = request("tagged", 1);
    body["tags"] = json!([{"key": "team", "value": "search"}]);
    let arn = create(&state, body).await.unwrap();
    let tags = |state: Arc<ProvisionedState>, arn: String| async move {
        super::list_tags(
            State(state),
            Bytes::from(json!({"resourceARN": arn}).to_string()),
        )
        .await
        .map(|j| j.0["tags"].clone())
    };
    assert_eq!(
        tags(state.clone(), arn.clone()).await.unwrap(),
        json!([{"key": "team", "value": "search"}])
    );
    let answer = super::tag(
        State(state.clone()),
        Bytes::from(
            json!({"resourceARN": arn, "tags": [{"key": "team", "value": "ads"}, {"key": "window", "value": "tokyo-office"}]})
                .to_string(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, json!({}));
    assert_eq!(
        tags(state.clone(), arn.clone()).await.unwrap(),
        json!([{"key": "team", "value": "ads"}, {"key": "window", "value": "tokyo-office"}])
    );
    let answer = super::untag(
        State(state.clone()),
        Bytes::from(json!({"resourceARN": arn, "tagKeys": ["team", "absent"]}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(answer.0, json!({}));
    assert_eq!(
        tags(state.clone(), arn.clone()).await.unwrap(),
        json!([{"key": "window", "value": "tokyo-office"}])
    );
    let many: Vec<Value> = (0..50)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    let error = super::tag(
        State(state.clone()),
        Bytes::from(json!({"resourceARN": arn, "tags": many}).to_string()),
    )
    .await
    .unwrap_err();
    assert_eq!(error.error_type, "TooManyTagsException");
    let unknown = tags(
        state.clone(),
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefabcdef".to_owned(),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.error_type, "ResourceNotFoundException");
    let missing = super::tag(
        State(state.clone()),
        Bytes::from(json!({"resourceARN": arn}).to_string()),
    )
    .await
    .unwrap_err();
    assert!(
        missing.message.contains("Value null at 'tags'"),
        "{}",
        missing.message
    );
}

#[tokio::test]
async fn errors_carry_bedrocks_shape() {
    let state = state();
    let response = super::get(State(state.clone()), Path("nobody".to_owned()))
        .await
        .unwrap_err()
        .into_response();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "ResourceNotFoundException"
    );
}
