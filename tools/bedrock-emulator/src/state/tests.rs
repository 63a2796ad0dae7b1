//! The services composed: the admin config's shapes and checks, reset, and what crosses
//! services (runtime calls through Provisioned Throughputs, their stats).

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::*;
use crate::batch::storage::MemoryStorage;
use crate::converse::{admit_checked, check_value};
use crate::error::BedrockError;
use crate::generate::StopReason;
use crate::provisioned::tests as pt;
use crate::provisioned::tests::{names, request, HAIKU, SONNET_4_5};

fn patch(json: &str) -> ConfigPatch {
    serde_json::from_str(json).unwrap()
}

#[test]
fn throttle_rate_fires_on_that_share_of_calls() {
    let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
    state.apply(&patch(r#"{"throttleRate":0.25}"#)).unwrap();
    let throttled = (0..100)
        .filter(|_| state.runtime.admit("m").is_err())
        .count();
    assert_eq!(throttled, 25);
    assert_eq!(state.stats()["m"].calls, 100);
}

#[test]
fn model_override_applies_to_that_model_only() {
    let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
    state
        .apply(&patch(r#"{"models":{"pt":{"throttleRate":1.0}}}"#))
        .unwrap();
    assert_eq!(
        state.runtime.admit("pt").err().map(|e| e.error_type),
        Some("ThrottlingException")
    );
    assert!(state.runtime.admit("other").is_ok());
    state.reset();
    assert!(state.runtime.admit("pt").is_ok());
}

#[test]
fn rates_out_of_range_and_unknown_fields_are_refused() {
    let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
    assert!(state.apply(&patch(r#"{"throttleRate":1.5}"#)).is_err());
    assert!(state.apply(&patch(r#"{"throttleRate":1}"#)).is_ok());
    assert!(state
        .apply(&patch(r#"{"models":{"m":{"modelErrorRate":-0.1}}}"#))
        .is_err());
    for bogus in [
        r#"{"bogus":1}"#,
        r#"{"models":{"m":{"bogus":1}}}"#,
        r#"{"models":{"m":{"models":{}}}}"#,
        r#"{"stopReason":"tired"}"#,
        r#"{"streamError":{"exception":"throttlingException","after":1}}"#,
    ] {
        assert!(
            serde_json::from_str::<ConfigPatch>(bogus).is_err(),
            "{bogus}"
        );
    }
}

#[test]
fn each_new_fault_answers_its_exception_for_its_model_and_is_counted() {
    let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
    let expected = [
        (
            "accessDeniedRate",
            "AccessDeniedException",
            403,
            "accessDenied",
        ),
        (
            "resourceNotFoundRate",
            "ResourceNotFoundException",
            404,
            "resourceNotFound",
        ),
        (
            "modelTimeoutRate",
            "ModelTimeoutException",
            408,
            "modelTimeout",
        ),
        ("modelErrorRate", "ModelErrorException", 424, "modelError"),
        (
            "internalServerRate",
            "InternalServerException",
            500,
            "internalServer",
        ),
    ];
    for (field, error_type, status, stat) in expected {
        state.reset();
        state
            .apply(&patch(&format!(
                r#"{{"models":{{"pt":{{"{field}":0.5}}}}}}"#
            )))
            .unwrap();
        let errors: Vec<_> = (0..4)
            .filter_map(|_| state.runtime.admit("pt").err())
            .collect();
        assert_eq!(errors.len(), 2, "{field}");
        assert_eq!(
            (errors[0].error_type, errors[0].status.as_u16()),
            (error_type, status)
        );
        assert!(
            state.runtime.admit("other").is_ok(),
            "{field} applies to pt only"
        );
        let stats = serde_json::to_value(&state.stats()["pt"]).unwrap();
        assert_eq!(stats[stat], 2, "{stats}");
        assert_eq!(stats["calls"], 4, "{stats}");
    }
}

#[test]
fn stop_reason_and_stream_error_are_set_and_cleared() {
    let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
    let config = state
        .apply(&patch(
            r#"{"stopReason":"content_filtered","streamError":{"exception":"throttlingException","afterDeltas":2}}"#,
        ))
        .unwrap();
    assert_eq!(config.global.stop_reason, Some(StopReason::ContentFiltered));
    let shown = serde_json::to_value(&config).unwrap();
    assert_eq!(shown["stopReason"], "content_filtered");
    assert_eq!(
        shown["streamError"],
        serde_json::json!({"exception": "throttlingException", "afterDeltas": 2})
    );
    // Absent keeps, null clears.
    let kept = state.apply(&patch(r#"{"ttftMs":1}"#)).unwrap();
    assert_eq!(kept.global.stop_reason, Some(StopReason::ContentFiltered));
    let cleared = state
        .apply(&patch(r#"{"stopReason":null,"streamError":null}"#))
        .unwrap();
    assert_eq!(
        (cleared.global.stop_reason, cleared.global.stream_error),
        (None, None)
    );
}

#[test]
fn guardrails_and_prompt_routers_are_shown_checked_and_reset() {
    let state =
        EmulatorState::new(Catalog::default(), RuntimeConfig::default()).with_identity(Identity {
            account: "210987654321".to_owned(),
            region: "eu-west-1".to_owned(),
        });
    let shown = serde_json::to_value(state.config()).unwrap();
    assert_eq!(shown["guardrails"], json!({}));
    assert_eq!(shown["promptRouters"], json!({}));
    let router = "arn:aws:bedrock:eu-west-1:210987654321:prompt-router/r1";
    let config = state
        .apply(&patch(&format!(
            r#"{{"guardrails":{{"gr1":{{"blockedWords":["x"]}}}},
               "promptRouters":{{"{router}":{{"models":["{HAIKU}","anthropic.claude-3-5-sonnet-20240620-v1:0"]}}}}}}"#
        )))
        .unwrap();
    let shown = serde_json::to_value(&config).unwrap();
    assert_eq!(
        shown["guardrails"]["gr1"],
        json!({"blockedWords": ["x"], "blockedOutputWords": [],
               "blockedInputMessage": "Sorry, the model cannot answer this question.",
               "blockedOutputMessage": "Sorry, the model cannot answer this question.",
               "versions": 1})
    );
    assert_eq!(shown["promptRouters"][router]["thresholdChars"], 2000);
    // The built-in router answers in the emulator's account and region.
    let builtin = "arn:aws:bedrock:eu-west-1:210987654321:default-prompt-router/anthropic.claude:1";
    assert!(state.runtime.prompt_router(builtin).is_some());
    assert_eq!(state.runtime.prompt_routers().len(), 2);
    // A refused patch changes nothing, in any service.
    for bad in [
        r#"{"guardrails":{"gr1":{"blockedWord":["x"]}}}"#,
        r#"{"guardrails":{"GR":{}}}"#,
        r#"{"promptRouters":{"not-an-arn":{"models":["a","b"]}}}"#,
    ] {
        let refused = serde_json::from_str::<ConfigPatch>(bad)
            .map_err(|e| e.to_string())
            .and_then(|p| state.apply(&p).map(|_| ()));
        assert!(refused.is_err(), "{bad}");
    }
    state
        .apply(&patch(
            r#"{"batchStepMs":5,"guardrails":{"gr2":{"versions":0}},"promptRouters":{"x":{}}}"#,
        ))
        .unwrap_err();
    assert!(!state.config().guardrails.contains_key("gr2"));
    assert_ne!(state.config().batch.batch_step_ms, 5);
    state.reset();
    let shown = serde_json::to_value(state.config()).unwrap();
    assert_eq!(shown["guardrails"], json!({}));
    assert_eq!(shown["promptRouters"], json!({}));
}

// ---------------------------------------------------------------------------------------------
// Batch's settings through the config endpoint

/// Every service, batch jobs over memory, one step a millisecond.
struct Fixture {
    state: EmulatorState,
}

fn fixture() -> Fixture {
    let storage = Arc::new(MemoryStorage::default());
    let state =
        EmulatorState::new(Catalog::default(), RuntimeConfig::default()).with_storage(storage);
    let fixture = Fixture { state };
    fixture.configure(json!({"batchStepMs": 1}));
    fixture
}

impl Fixture {
    fn configure(&self, patch: Value) {
        let patch: ConfigPatch = serde_json::from_value(patch).unwrap();
        self.state.apply(&patch).unwrap();
    }
}

#[test]
fn batch_settings_are_checked() {
    let f = fixture();
    for bad in [
        json!({"batchRecordErrorRate": 1.5}),
        json!({"batchMinRecords": 10, "batchMaxRecords": 5}),
        json!({"eventTarget": "not a url"}),
        json!({"eventTarget": "ftp://host/x"}),
    ] {
        let patch: ConfigPatch = serde_json::from_value(bad.clone()).unwrap();
        assert!(f.state.apply(&patch).is_err(), "{bad}");
    }
    for bogus in [
        json!({"models": {"m": {"batchStepMs": 1}}}),
        json!({"batchStepMs": -1}),
    ] {
        assert!(
            serde_json::from_value::<ConfigPatch>(bogus.clone()).is_err(),
            "{bogus}"
        );
    }
    f.configure(json!({"eventTarget": "http://127.0.0.1:9/events", "batchConcurrentJobQuota": 3}));
    let shown = serde_json::to_value(f.state.config()).unwrap();
    assert_eq!(shown["eventTarget"], "http://127.0.0.1:9/events");
    assert_eq!(shown["batchConcurrentJobQuota"], 3);
    assert_eq!(shown["batchStepMs"], 1);
    assert_eq!(shown["eventsEnabled"], true);
    f.configure(json!({"eventTarget": null}));
    assert_eq!(f.state.config().batch.event_target, None);
    f.state.reset();
    assert_eq!(f.state.config().batch.batch_step_ms, 1000);
}

#[test]
fn batch_record_ms_is_configured_checked_and_shown() {
    let f = fixture();
    assert_eq!(
        serde_json::to_value(f.state.config()).unwrap()["batchRecordMs"],
        0
    );
    f.configure(json!({"batchRecordMs": 10, "batchStepMs": 20}));
    let shown = serde_json::to_value(f.state.config()).unwrap();
    assert_eq!(shown["batchRecordMs"], 10);
    assert_eq!(shown["batchStepMs"], 20);
    // null, as an absent field, keeps the value.
    f.configure(json!({"batchRecordMs": null}));
    assert_eq!(f.state.config().batch.batch_record_ms, 10);
    f.configure(json!({"batchRecordMs": 60000}));
    assert_eq!(f.state.config().batch.batch_record_ms, 60000);

    // Out of bounds: refused by the settings, naming the field; nothing changes.
    let refused = f
        .state
        .apply(&patch(r#"{"batchRecordMs": 60001, "batchStepMs": 5}"#))
        .unwrap_err();
    assert!(refused.contains("batchRecordMs"), "{refused}");
    assert_eq!(f.state.config().batch.batch_record_ms, 60000);
    assert_eq!(f.state.config().batch.batch_step_ms, 20);
    // Not a non-negative integer: refused as the body is read, naming the field.
    for bad in [
        r#"{"batchRecordMs": -1}"#,
        r#"{"batchRecordMs": 1.5}"#,
        r#"{"batchRecordMs": "10"}"#,
    ] {
        let error = serde_json::from_str::<ConfigPatch>(bad)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("expected batchRecordMs as an integer between 0 and 60000"),
            "{bad}: {error}"
        );
    }
    // Global only.
    assert!(
        serde_json::from_str::<ConfigPatch>(r#"{"models": {"m": {"batchRecordMs": 1}}}"#).is_err()
    );
    f.state.reset();
    assert_eq!(f.state.config().batch.batch_record_ms, 0);
}

// ---------------------------------------------------------------------------------------------
// CloudWatch's faults through the config endpoint

#[test]
fn cloudwatch_faults_are_configured_under_their_key_and_reset() {
    let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
    state
        .apply(&patch(r#"{"cloudwatch":{"failPutMetricData":2}}"#))
        .unwrap();
    assert!(state.cloudwatch.take_put_fault());
    assert!(state.cloudwatch.take_put_fault());
    assert!(!state.cloudwatch.take_put_fault());
    state.cloudwatch.fail_puts(5);
    state.reset();
    assert!(!state.cloudwatch.take_put_fault());
    let unknown: Result<ConfigPatch, _> =
        serde_json::from_value(json!({"cloudwatch": {"failPut": 1}}));
    assert!(unknown.is_err());
}

// ---------------------------------------------------------------------------------------------
// Runtime calls through Provisioned Throughputs, and their settings through the config endpoint

fn state() -> EmulatorState {
    let state = EmulatorState::new(Catalog::default(), RuntimeConfig::default());
    configure(
        &state,
        json!({"provisioned": {"createMs": 0, "updateMs": 0}}),
    );
    state
}

fn configure(state: &EmulatorState, patch: Value) {
    let patch: ConfigPatch = serde_json::from_value(patch).unwrap();
    state.apply(&patch).unwrap();
}

async fn create(state: &EmulatorState, body: Value) -> Result<String, BedrockError> {
    pt::create(&state.provisioned, body).await
}

async fn get(state: &EmulatorState, identifier: &str) -> Result<Value, BedrockError> {
    pt::get(&state.provisioned, identifier).await
}

async fn list(state: &EmulatorState, query: &[(&str, &str)]) -> Result<Value, BedrockError> {
    pt::list(&state.provisioned, query).await
}

async fn update(
    state: &EmulatorState,
    identifier: &str,
    body: Value,
) -> Result<Value, BedrockError> {
    pt::update(&state.provisioned, identifier, body).await
}

async fn delete(state: &EmulatorState, identifier: &str) -> Result<Value, BedrockError> {
    pt::delete(&state.provisioned, identifier).await
}

/// A runtime Converse call, as the handlers admit it.
fn call(state: &EmulatorState, model_id: &str, text: &str) -> Result<u64, BedrockError> {
    let runtime = &state.runtime;
    let body = json!({"messages": [{"role": "user", "content": [{"text": text}]}]});
    let (checked, _) = admit_checked(runtime, model_id, || {
        check_value(runtime, model_id, body.clone())
    })?;
    Ok(u64::from(checked.input_tokens) + u64::from(checked.answer.output_tokens))
}

/// Moves a Provisioned Throughput's timed phase to its end, as time would.
fn finish_phase(state: &EmulatorState, arn: &str) {
    state.provisioned.finish_phase(arn);
}

/// `provisionedThroughputs` in `/_emulator/stats`.
fn stats(state: &EmulatorState) -> Value {
    state.provisioned_stats()
}

#[tokio::test]
async fn listed_names_and_models_fail_with_the_configured_message() {
    let state = state();
    configure(
        &state,
        json!({"provisioned": {"failOn": ["doomed", SONNET_4_5], "failureMessage": "No capacity."}}),
    );
    let doomed = create(&state, request("doomed", 1)).await.unwrap();
    let pt = get(&state, &doomed).await.unwrap();
    assert_eq!(pt["status"], "Failed");
    assert_eq!(pt["failureMessage"], "No capacity.");
    let by_model = create(
        &state,
        json!({"provisionedModelName": "sonnet", "modelId": format!("arn:aws:bedrock:us-east-1::foundation-model/{SONNET_4_5}"), "modelUnits": 1}),
    )
    .await
    .unwrap();
    assert_eq!(get(&state, &by_model).await.unwrap()["status"], "Failed");
    // A failed one is not served, and can be deleted.
    let error = call(&state, &doomed, "hi").unwrap_err();
    assert_eq!(error.error_type, "ModelNotReadyException");
    delete(&state, &doomed).await.unwrap();
    // A summary has no failureMessage.
    let listed = list(&state, &[("statusEquals", "Failed")]).await.unwrap();
    assert_eq!(names(&listed), ["sonnet"]);
    assert!(listed["provisionedModelSummaries"][0]
        .get("failureMessage")
        .is_none());
}

#[tokio::test]
async fn update_renames_through_updating_and_keeps_base_models() {
    let state = state();
    configure(&state, json!({"provisioned": {"updateMs": 3_600_000}}));
    let arn = create(&state, request("old-name", 1)).await.unwrap();
    create(&state, request("taken", 1)).await.unwrap();

    let conflict = update(
        &state,
        &arn,
        json!({"desiredProvisionedModelName": "taken"}),
    )
    .await
    .unwrap_err();
    assert_eq!(conflict.error_type, "ConflictException");
    let bad = update(&state, &arn, json!({"desiredProvisionedModelName": "a b"}))
        .await
        .unwrap_err();
    assert_eq!(bad.error_type, "ValidationException");
    let other_model = update(
        &state,
        &arn,
        json!({"desiredModelId": "anthropic.claude-3-sonnet-20240229-v1:0"}),
    )
    .await
    .unwrap_err();
    assert_eq!(other_model.error_type, "ValidationException");
    assert!(
        other_model.message.contains("You can't change the model"),
        "{}",
        other_model.message
    );

    assert_eq!(
        update(
            &state,
            &arn,
            json!({"desiredProvisionedModelName": "new-name", "desiredModelId": HAIKU})
        )
        .await
        .unwrap(),
        json!({})
    );
    let updating = get(&state, "new-name").await.unwrap();
    assert_eq!(updating["status"], "Updating");
    assert_eq!(updating["provisionedModelArn"], arn);
    assert!(get(&state, "old-name").await.is_err());
    // Bedrock serves during an update; a second update or a deletion waits for its end.
    call(&state, &arn, "still served").unwrap();
    let again = update(
        &state,
        &arn,
        json!({"desiredProvisionedModelName": "third"}),
    )
    .await
    .unwrap_err();
    assert_eq!(again.error_type, "ValidationException");
    let busy = delete(&state, &arn).await.unwrap_err();
    assert_eq!(busy.error_type, "ConflictException");

    finish_phase(&state, &arn);
    assert_eq!(get(&state, &arn).await.unwrap()["status"], "InService");
    delete(&state, "new-name").await.unwrap();
    let missing = update(&state, &arn, json!({"desiredProvisionedModelName": "x"}))
        .await
        .unwrap_err();
    assert_eq!(missing.error_type, "ResourceNotFoundException");
}

#[tokio::test]
async fn the_runtime_serves_only_what_exists_and_serves() {
    let state = state();
    let unknown = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefabcdef";
    let error = call(&state, unknown, "hi").unwrap_err();
    assert_eq!(
        (error.error_type, error.status),
        ("ResourceNotFoundException", StatusCode::NOT_FOUND)
    );

    configure(&state, json!({"provisioned": {"createMs": 3_600_000}}));
    let arn = create(&state, request("runtime", 1)).await.unwrap();
    let early = call(&state, &arn, "hi").unwrap_err();
    assert_eq!(
        (early.error_type, early.status),
        ("ModelNotReadyException", StatusCode::TOO_MANY_REQUESTS)
    );
    assert!(early.message.contains("Creating"), "{}", early.message);
    finish_phase(&state, &arn);
    call(&state, &arn, "hi").unwrap();

    // The base model's limit applies.
    let body = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 4097}});
    let Err(too_long) = check_value(&state.runtime, &arn, body) else {
        panic!("maxTokens beyond the base model's limit was accepted");
    };
    assert!(
        too_long.message.contains("model limit of 4096"),
        "{}",
        too_long.message
    );

    // Faults configured for the ARN still apply.
    configure(
        &state,
        json!({"models": {arn.as_str(): {"throttleRate": 1.0}}}),
    );
    assert_eq!(
        call(&state, &arn, "hi").unwrap_err().error_type,
        "ThrottlingException"
    );
    configure(&state, json!({"models": {arn.as_str(): null}}));

    delete(&state, &arn).await.unwrap();
    let after = call(&state, &arn, "hi").unwrap_err();
    assert_eq!(after.error_type, "ResourceNotFoundException");

    let stats = serde_json::to_value(&state.stats()[&arn]).unwrap();
    assert_eq!(stats["calls"], 4, "{stats}");
    assert_eq!(stats["served"], 0, "served is counted by the handlers");
    assert_eq!(stats["modelNotReady"], 1, "{stats}");
    assert_eq!(stats["resourceNotFound"], 1, "{stats}");
    assert_eq!(stats["throttled"], 1, "{stats}");
    assert_eq!(stats["validationErrors"], 0, "{stats}");
}

#[tokio::test]
async fn calls_beyond_the_tokens_per_minute_are_throttled() {
    let state = state();
    configure(
        &state,
        json!({"provisioned": {"tokensPerMinute": 1_000_000, "tokensPerMinuteByModel": {HAIKU: 100}}}),
    );
    let arn = create(&state, request("small", 2)).await.unwrap();
    let mut used = 0;
    let mut served = 0;
    let mut throttled = 0;
    for i in 0..20 {
        match call(&state, &arn, &format!("question {i}")) {
            Ok(tokens) => {
                used += tokens;
                served += 1;
            }
            Err(e) => {
                assert_eq!(e.error_type, "ThrottlingException");
                assert_eq!(
                    e.message,
                    "Too many tokens, please wait before trying again."
                );
                throttled += 1;
            }
        }
    }
    assert!(
        served > 0 && throttled > 0,
        "{served} served, {throttled} throttled"
    );
    assert!(
        used <= 200,
        "two model units of 100 tokens a minute: {used}"
    );
    let shown = stats(&state);
    assert_eq!(shown[&arn]["tokensPerMinute"], 200);
    assert_eq!(shown[&arn]["tokensLastMinute"], used);
    assert_eq!(shown[&arn]["capacityThrottled"], throttled);
    assert_eq!(shown[&arn]["calls"], 20);
    assert_eq!(shown[&arn]["status"], "InService");

    // On-demand calls of the same model are not counted against it.
    call(&state, HAIKU, "on demand").unwrap();
    // A bigger table entry gives room again.
    configure(
        &state,
        json!({"provisioned": {"tokensPerMinuteByModel": {HAIKU: null}}}),
    );
    call(&state, &arn, "room again").unwrap();
}

#[tokio::test]
async fn settings_are_patched_shown_and_reset() {
    let state = state();
    configure(
        &state,
        json!({"provisioned": {"noCommitmentUnitQuota": 4, "now": "2030-01-01T00:00:00Z", "tokensPerMinuteByModel": {HAIKU: 7}}}),
    );
    let shown = serde_json::to_value(state.config()).unwrap();
    assert_eq!(shown["provisioned"]["noCommitmentUnitQuota"], 4);
    assert_eq!(shown["provisioned"]["now"], "2030-01-01T00:00:00.000Z");
    assert_eq!(shown["provisioned"]["tokensPerMinuteByModel"][HAIKU], 7);
    assert_eq!(shown["provisioned"]["createMs"], 0);
    configure(&state, json!({"provisioned": {"now": null}}));
    assert_eq!(state.config().provisioned.now, None);

    for bogus in [
        json!({"provisioned": {"bogus": 1}}),
        json!({"provisioned": {"createMs": -1}}),
    ] {
        assert!(
            serde_json::from_value::<ConfigPatch>(bogus.clone()).is_err(),
            "{bogus}"
        );
    }
    let bad_time: ConfigPatch =
        serde_json::from_value(json!({"provisioned": {"now": "tomorrow"}})).unwrap();
    assert!(state.apply(&bad_time).is_err());

    create(&state, request("to-forget", 1)).await.unwrap();
    state.reset();
    assert!(state.provisioned.all().is_empty());
    assert_eq!(state.config().provisioned, ProvisionedSettings::default());
}
