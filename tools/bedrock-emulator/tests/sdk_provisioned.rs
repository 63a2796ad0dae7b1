#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The emulator's Provisioned Throughput control plane through the AWS SDK for Rust
//! (`aws-sdk-bedrock` by endpoint alone), and the runtime (`aws-sdk-bedrockruntime`) following
//! it: served only while it serves, throttled beyond its tokens per minute (the emulator
//! in-process, one per test).

mod common;

use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::operation::create_provisioned_model_throughput::builders::CreateProvisionedModelThroughputFluentBuilder;
use aws_sdk_bedrock::operation::delete_provisioned_model_throughput::{
    DeleteProvisionedModelThroughputError, DeleteProvisionedModelThroughputOutput,
};
use aws_sdk_bedrock::operation::get_provisioned_model_throughput::{
    GetProvisionedModelThroughputError, GetProvisionedModelThroughputOutput,
};
use aws_sdk_bedrock::types::{
    CommitmentDuration, ProvisionedModelStatus, SortByProvisionedModels, SortOrder, Tag,
};
use aws_sdk_bedrockruntime::error::SdkError as RuntimeSdkError;
use aws_sdk_bedrockruntime::operation::converse_stream::{
    ConverseStreamError, ConverseStreamOutput,
};
use aws_sdk_bedrockruntime::operation::invoke_model::{InvokeModelError, InvokeModelOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use common::{wait_in_service, Emulator};
use serde_json::{json, Value};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SONNET: &str = "anthropic.claude-3-sonnet-20240229-v1:0";

struct Stack {
    emulator: Emulator,
    bedrock: aws_sdk_bedrock::Client,
    runtime: aws_sdk_bedrockruntime::Client,
}

/// A fresh emulator whose Provisioned Throughputs are created and updated at once unless a
/// test says otherwise.
async fn stack() -> Stack {
    let emulator = Emulator::start().await;
    emulator
        .configure(json!({"provisioned": {"createMs": 0, "updateMs": 0}}))
        .await;
    let sdk = emulator.sdk_config();
    Stack {
        emulator,
        bedrock: aws_sdk_bedrock::Client::new(&sdk),
        runtime: aws_sdk_bedrockruntime::Client::new(&sdk),
    }
}

/// A user message of one text block.
fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .unwrap()
}

fn foundation_arn(model: &str) -> String {
    format!("arn:aws:bedrock:us-east-1::foundation-model/{model}")
}

impl Stack {
    /// CreateProvisionedModelThroughput of a name, a model and model units, to complete.
    fn create_request(
        &self,
        name: &str,
        model: &str,
        units: i32,
    ) -> CreateProvisionedModelThroughputFluentBuilder {
        self.bedrock
            .create_provisioned_model_throughput()
            .provisioned_model_name(name)
            .model_id(model)
            .model_units(units)
    }

    async fn create(&self, name: &str, model: &str, units: i32) -> String {
        self.create_request(name, model, units)
            .send()
            .await
            .expect("CreateProvisionedModelThroughput")
            .provisioned_model_arn
    }

    async fn try_get(
        &self,
        identifier: &str,
    ) -> Result<GetProvisionedModelThroughputOutput, SdkError<GetProvisionedModelThroughputError>>
    {
        self.bedrock
            .get_provisioned_model_throughput()
            .provisioned_model_id(identifier)
            .send()
            .await
    }

    async fn get(&self, identifier: &str) -> GetProvisionedModelThroughputOutput {
        self.try_get(identifier)
            .await
            .expect("GetProvisionedModelThroughput")
    }

    /// The error GetProvisionedModelThroughput answers for an identifier it does not find.
    async fn get_error(&self, identifier: &str) -> GetProvisionedModelThroughputError {
        self.try_get(identifier)
            .await
            .unwrap_err()
            .into_service_error()
    }

    async fn delete(
        &self,
        identifier: &str,
    ) -> Result<
        DeleteProvisionedModelThroughputOutput,
        SdkError<DeleteProvisionedModelThroughputError>,
    > {
        self.bedrock
            .delete_provisioned_model_throughput()
            .provisioned_model_id(identifier)
            .send()
            .await
    }

    /// ConverseStream with a "hi".
    async fn converse_stream(
        &self,
        model_id: &str,
    ) -> Result<ConverseStreamOutput, RuntimeSdkError<ConverseStreamError>> {
        self.runtime
            .converse_stream()
            .model_id(model_id)
            .messages(user("hi"))
            .send()
            .await
    }

    async fn invoke_model(
        &self,
        model_id: &str,
        body: &Value,
    ) -> Result<InvokeModelOutput, RuntimeSdkError<InvokeModelError>> {
        self.runtime
            .invoke_model()
            .model_id(model_id)
            .body(aws_sdk_bedrockruntime::primitives::Blob::new(
                body.to_string(),
            ))
            .send()
            .await
    }

    /// A short Converse call; its total tokens.
    async fn converse(
        &self,
        model_id: &str,
        text: &str,
        max_tokens: i32,
    ) -> Result<i32, aws_sdk_bedrockruntime::operation::converse::ConverseError> {
        self.runtime
            .converse()
            .model_id(model_id)
            .messages(user(text))
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(max_tokens)
                    .build(),
            )
            .send()
            .await
            .map(|answer| answer.usage.unwrap().total_tokens)
            .map_err(|e| e.into_service_error())
    }

    /// `POST /_emulator/config` of these Provisioned Throughput settings.
    async fn configure(&self, provisioned: Value) {
        self.emulator
            .configure(json!({ "provisioned": provisioned }))
            .await;
    }

    async fn stats(&self) -> Value {
        self.emulator
            .http()
            .get(self.emulator.url("/_emulator/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_new_provisioned_throughput_is_creating_then_in_service_by_name_and_arn() {
    let stack = stack().await;
    stack.configure(json!({"createMs": 1500})).await;
    let arn = stack.create("haiku-lifecycle", HAIKU, 2).await;
    assert!(
        arn.starts_with("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/"),
        "{arn}"
    );
    let creating = stack.get(&arn).await;
    assert_eq!(creating.status, ProvisionedModelStatus::Creating);
    // Not served before it is in service.
    let early = stack.converse(&arn, "too early", 20).await.unwrap_err();
    assert!(early.is_model_not_ready_exception(), "{early:?}");

    wait_in_service(&stack.bedrock, &arn).await;
    let pt = stack.get("haiku-lifecycle").await;
    assert_eq!(pt.status, ProvisionedModelStatus::InService);
    assert_eq!(pt.provisioned_model_arn, arn);
    assert_eq!(pt.provisioned_model_name, "haiku-lifecycle");
    assert_eq!((pt.model_units, pt.desired_model_units), (2, 2));
    assert_eq!(pt.model_arn, foundation_arn(HAIKU));
    assert_eq!(pt.desired_model_arn, foundation_arn(HAIKU));
    assert_eq!(pt.foundation_model_arn, foundation_arn(HAIKU));
    assert!(pt.commitment_duration.is_none() && pt.commitment_expiration_time.is_none());
    assert!(pt.failure_message.is_none());
    assert!(pt.last_modified_time > pt.creation_time);
    assert_eq!(pt.creation_time, creating.creation_time);

    // Served once in service, with the base model's answers, and counted by ARN.
    let tokens = stack.converse(&arn, "now please", 20).await.unwrap();
    assert!(tokens > 0);
    assert_eq!(stack.emulator.calls(&arn).await, 2);
    let stats = stack.stats().await;
    assert_eq!(stats["provisionedThroughputs"][&arn]["status"], "InService");
    assert_eq!(stats["provisionedThroughputs"][&arn]["served"], 1);
}

#[tokio::test]
async fn list_filters_sorts_and_paginates() {
    let stack = stack().await;
    for name in ["list-alpha-1", "list-beta", "list-alpha-2"] {
        stack.create(name, HAIKU, 1).await;
    }
    let sonnet = stack.create("list-sonnet", SONNET, 1).await;
    let first = stack.get("list-alpha-1").await.creation_time;

    let names = |summaries: &[aws_sdk_bedrock::types::ProvisionedModelSummary]| -> Vec<String> {
        summaries
            .iter()
            .map(|s| s.provisioned_model_name.clone())
            .collect()
    };
    let all = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .send()
        .await
        .unwrap();
    assert_eq!(
        names(all.provisioned_model_summaries()),
        ["list-sonnet", "list-alpha-2", "list-beta", "list-alpha-1"],
        "newest first by default"
    );
    let alphas = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .name_contains("alpha")
        .sort_by(SortByProvisionedModels::CreationTime)
        .sort_order(SortOrder::Ascending)
        .send()
        .await
        .unwrap();
    assert_eq!(
        names(alphas.provisioned_model_summaries()),
        ["list-alpha-1", "list-alpha-2"]
    );
    let by_model = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .model_arn_equals(foundation_arn(SONNET))
        .send()
        .await
        .unwrap();
    let summaries = by_model.provisioned_model_summaries();
    assert_eq!(names(summaries), ["list-sonnet"]);
    assert_eq!(summaries[0].provisioned_model_arn, sonnet);
    assert_eq!(summaries[0].status, ProvisionedModelStatus::InService);
    let creating = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .status_equals(ProvisionedModelStatus::Creating)
        .send()
        .await
        .unwrap();
    assert!(creating.provisioned_model_summaries().is_empty());
    let after = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .creation_time_after(first)
        .send()
        .await
        .unwrap();
    assert!(!names(after.provisioned_model_summaries()).contains(&"list-alpha-1".to_owned()));
    let before = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .creation_time_before(first)
        .send()
        .await
        .unwrap();
    assert!(before.provisioned_model_summaries().is_empty());

    // Pages of one, followed by the SDK's paginator.
    let pages: Vec<_> = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .sort_order(SortOrder::Ascending)
        .max_results(1)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|page| names(page.unwrap().provisioned_model_summaries()))
        .collect();
    assert_eq!(
        pages.concat(),
        ["list-alpha-1", "list-beta", "list-alpha-2", "list-sonnet"]
    );
    assert!(pages.iter().all(|page| page.len() <= 1), "{pages:?}");

    let bad = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .max_results(1001)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(bad.is_validation_exception(), "{bad:?}");
}

#[tokio::test]
async fn update_renames_through_updating_and_serves_meanwhile() {
    let stack = stack().await;
    let arn = stack.create("before-rename", HAIKU, 1).await;
    stack.configure(json!({"updateMs": 1500})).await;
    stack
        .bedrock
        .update_provisioned_model_throughput()
        .provisioned_model_id("before-rename")
        .desired_provisioned_model_name("after-rename")
        .send()
        .await
        .unwrap();
    let updating = stack.get(&arn).await;
    assert_eq!(updating.status, ProvisionedModelStatus::Updating);
    assert_eq!(updating.provisioned_model_name, "after-rename");
    // Bedrock serves during an update.
    stack.converse(&arn, "during the update", 20).await.unwrap();
    let missing = stack.get_error("before-rename").await;
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
    wait_in_service(&stack.bedrock, "after-rename").await;

    // A Provisioned Throughput of a base model keeps its model.
    let other_model = stack
        .bedrock
        .update_provisioned_model_throughput()
        .provisioned_model_id(&arn)
        .desired_model_id(SONNET)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(other_model.is_validation_exception(), "{other_model:?}");
    assert!(
        other_model
            .message()
            .unwrap()
            .contains("You can't change the model"),
        "{other_model:?}"
    );
}

#[tokio::test]
async fn delete_removes_it_and_the_runtime_refuses_it_afterwards() {
    let stack = stack().await;
    let arn = stack.create("to-delete", HAIKU, 1).await;
    stack.converse(&arn, "while it lasts", 20).await.unwrap();
    stack.delete(&arn).await.unwrap();
    let gone = stack.get_error(&arn).await;
    assert!(gone.is_resource_not_found_exception(), "{gone:?}");
    let again = stack
        .delete("to-delete")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(again.is_resource_not_found_exception(), "{again:?}");

    let after = stack.converse(&arn, "too late", 20).await.unwrap_err();
    assert!(after.is_resource_not_found_exception(), "{after:?}");
    // So is an ARN that never existed.
    let made_up = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdefabcdef";
    let unknown = stack.converse(made_up, "anyone?", 20).await.unwrap_err();
    assert!(unknown.is_resource_not_found_exception(), "{unknown:?}");
}

#[tokio::test]
async fn the_same_client_request_token_gives_the_same_arn_and_a_taken_name_conflicts() {
    let stack = stack().await;
    let create = |token: &str| {
        stack
            .create_request("idempotent", HAIKU, 1)
            .client_request_token(token)
            .send()
    };
    let first = create("token-one").await.unwrap().provisioned_model_arn;
    let second = create("token-one").await.unwrap().provisioned_model_arn;
    assert_eq!(first, second);
    let listed = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .send()
        .await
        .unwrap();
    assert_eq!(listed.provisioned_model_summaries().len(), 1);

    // Another request (the SDK fills in a new token) for the same name conflicts.
    let conflict = stack
        .create_request("idempotent", HAIKU, 1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(conflict.code(), Some("ConflictException"), "{conflict:?}");
    assert!(
        conflict.message().unwrap().contains("idempotent"),
        "{conflict:?}"
    );
}

#[tokio::test]
async fn committed_capacity_refuses_deletion_until_its_term_ends() {
    let stack = stack().await;
    let arn = stack
        .create_request("committed", HAIKU, 1)
        .commitment_duration(CommitmentDuration::OneMonth)
        .send()
        .await
        .unwrap()
        .provisioned_model_arn;
    let pt = stack.get(&arn).await;
    assert_eq!(pt.commitment_duration, Some(CommitmentDuration::OneMonth));
    let expires = pt.commitment_expiration_time.expect("an expiration time");
    let term = expires.secs() - pt.creation_time.secs();
    assert!(
        (28 * 86_400..=31 * 86_400).contains(&term),
        "one calendar month: {term} s"
    );

    let refused = stack.delete(&arn).await.unwrap_err().into_service_error();
    assert!(refused.is_validation_exception(), "{refused:?}");
    assert!(
        refused
            .message()
            .unwrap()
            .contains("before the commitment term is complete"),
        "{refused:?}"
    );
    // The emulator's present, moved past the term.
    let later = chrono::DateTime::from_timestamp(expires.secs() + 1, 0).unwrap();
    stack.configure(json!({"now": later.to_rfc3339()})).await;
    stack.delete(&arn).await.unwrap();
}

#[tokio::test]
async fn no_commitment_units_beyond_the_quota_are_refused() {
    let stack = stack().await;
    stack.configure(json!({"noCommitmentUnitQuota": 3})).await;
    stack.create("quota-a", HAIKU, 2).await;
    let over = stack
        .create_request("quota-b", HAIKU, 2)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(over.is_service_quota_exceeded_exception(), "{over:?}");
    stack.create("quota-b", HAIKU, 1).await;
}

#[tokio::test]
async fn an_injected_failure_ends_failed_with_its_message_and_is_not_served() {
    let stack = stack().await;
    stack
        .configure(
            json!({"failOn": ["doomed-pt"], "failureMessage": "No capacity in this Region."}),
        )
        .await;
    let arn = stack.create("doomed-pt", HAIKU, 1).await;
    let pt = stack.get(&arn).await;
    assert_eq!(pt.status, ProvisionedModelStatus::Failed);
    assert_eq!(
        pt.failure_message.as_deref(),
        Some("No capacity in this Region.")
    );
    let refused = stack.converse(&arn, "hello?", 20).await.unwrap_err();
    assert!(refused.is_model_not_ready_exception(), "{refused:?}");
    // A failed one can be deleted.
    stack.delete("doomed-pt").await.unwrap();
}

#[tokio::test]
async fn calls_beyond_the_tokens_per_minute_are_throttled_while_a_smaller_load_passes() {
    let stack = stack().await;
    // 400 tokens a minute per model unit: two units serve 800.
    stack
        .configure(json!({"tokensPerMinuteByModel": {HAIKU: 400}}))
        .await;
    let arn = stack.create("small-capacity", HAIKU, 2).await;

    // A load well within the capacity: ten calls of at most about 15 tokens each.
    let mut used = 0;
    for i in 0..10 {
        used += stack
            .converse(&arn, &format!("small {i}"), 10)
            .await
            .unwrap_or_else(|e| panic!("call {i} of the small load: {e:?}"));
    }
    assert!(used < 800, "{used}");

    // Then larger calls until the minute's tokens are used up.
    let mut throttled = 0;
    for i in 0..40 {
        match stack.converse(&arn, &format!("large {i}"), 200).await {
            Ok(tokens) => used += tokens,
            Err(e) => {
                assert!(e.is_throttling_exception(), "{e:?}");
                assert_eq!(
                    e.meta().message(),
                    Some("Too many tokens, please wait before trying again.")
                );
                throttled += 1;
            }
        }
    }
    assert!(throttled > 0, "never throttled with {used} tokens");
    assert!(used <= 800, "{used}");
    let stats = stack.stats().await;
    let pt = &stats["provisionedThroughputs"][&arn];
    assert_eq!(pt["tokensPerMinute"], 800);
    assert_eq!(pt["tokensLastMinute"], used);
    assert_eq!(pt["capacityThrottled"], throttled);
    assert_eq!(stats["models"][&arn]["throttled"], throttled);
    assert_eq!(stats["models"][&arn]["calls"], 50);
    // On-demand capacity of the same model is another matter.
    stack.converse(HAIKU, "on demand", 20).await.unwrap();
}

#[tokio::test]
async fn streams_and_invoke_model_follow_the_provisioned_throughput_too() {
    let stack = stack().await;
    stack.configure(json!({"createMs": 60_000})).await;
    let arn = stack.create("other-apis", HAIKU, 1).await;
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]});
    let early = stack
        .invoke_model(&arn, &body)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(early.is_model_not_ready_exception(), "{early:?}");
    let stream = stack
        .converse_stream(&arn)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(stream.is_model_not_ready_exception(), "{stream:?}");

    // Deleting while Creating is a conflict; once in service it serves both APIs.
    let busy = stack.delete(&arn).await.unwrap_err().into_service_error();
    assert!(busy.is_conflict_exception(), "{busy:?}");
    stack.configure(json!({"createMs": 0})).await;
    let arn = stack.create("other-apis-2", HAIKU, 1).await;
    let answer = stack.invoke_model(&arn, &body).await.unwrap();
    let answer: Value = serde_json::from_slice(answer.body.as_ref()).unwrap();
    assert_eq!(answer["type"], "message");
    let mut stream = stack.converse_stream(&arn).await.unwrap().stream;
    let mut events = 0;
    while let Some(_event) = stream.recv().await.unwrap() {
        events += 1;
    }
    assert!(events > 2, "{events}");
}

#[tokio::test]
async fn tags_are_listed_added_and_removed() {
    let stack = stack().await;
    let arn = stack
        .create_request("tagged", HAIKU, 1)
        .tags(
            Tag::builder()
                .key("capacity-plan")
                .value("tokyo-office")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .provisioned_model_arn;
    let tags = || async {
        stack
            .bedrock
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tags().await,
        [("capacity-plan".to_owned(), "tokyo-office".to_owned())]
    );
    stack
        .bedrock
        .tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("team").value("search").build().unwrap())
        .send()
        .await
        .unwrap();
    stack
        .bedrock
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("capacity-plan")
        .send()
        .await
        .unwrap();
    assert_eq!(tags().await, [("team".to_owned(), "search".to_owned())]);
}

#[tokio::test]
async fn reset_forgets_every_provisioned_throughput() {
    let stack = stack().await;
    let arn = stack.create("forgotten", HAIKU, 1).await;
    let stats = stack.stats().await;
    assert_eq!(stats["provisionedThroughputs"][&arn]["modelUnits"], 1);
    stack.emulator.reset().await;
    let listed = stack
        .bedrock
        .list_provisioned_model_throughputs()
        .send()
        .await
        .unwrap();
    assert!(listed.provisioned_model_summaries().is_empty());
    let stats = stack.stats().await;
    assert_eq!(stats["provisionedThroughputs"], json!({}));
}
