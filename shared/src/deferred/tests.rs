#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use domain::batch::{BatchStatus, ResultLine};
use domain::conversation::Usage;
use domain::deferred::{DeferredRequest, DeferredStatus, Placement};
use domain::error::ModelErrorKind;
use domain::ports::{BatchRegistry, DeferredStore, ObjectStore};
use domain::routing::ServiceTier;
use serde_json::json;
use test_support::batch::{Bucket, Jobs, Registry};
use test_support::model::FakeModel;

use super::*;
use crate::adapters::memory_deferred::MemoryDeferredStore;
use crate::batch::{results_key, BatchSettings, NoBudgets};
use crate::config::Env;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const NOW: i64 = 1_795_435_200;
const HOUR: i64 = 3600;

struct World {
    deferred: MemoryDeferredStore,
    model: FakeModel,
    bucket: Bucket,
    registry: Registry,
    jobs: Jobs,
    batch: BatchSettings,
    settings: DeferredSettings,
}

fn world(model: FakeModel) -> World {
    let env = Env::from_pairs([("BATCH_ROLE_ARN", "arn:aws:iam::123456789012:role/batch")]);
    let batch = BatchSettings::from_env(&env).unwrap();
    let settings = DeferredSettings::from_env(&env, &batch).unwrap();
    World {
        deferred: MemoryDeferredStore::default(),
        model,
        bucket: Bucket::default(),
        registry: Registry::default(),
        jobs: Jobs::default(),
        batch,
        settings,
    }
}

impl World {
    fn scheduler(
        &self,
    ) -> Scheduler<'_, MemoryDeferredStore, FakeModel, Bucket, Registry, Jobs, NoBudgets> {
        Scheduler {
            deferred: &self.deferred,
            model: &self.model,
            store: &self.bucket,
            registry: &self.registry,
            jobs: &self.jobs,
            budgets: None,
            batch: &self.batch,
            settings: &self.settings,
        }
    }

    async fn run(&self, now: i64) -> ScheduleRun {
        self.scheduler()
            .run(now, &Invocation::longest())
            .await
            .expect("schedule run")
    }

    async fn accept(&self, count: usize, deadline_in: i64) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..count {
            let id = format!("{deadline_in:08}{i:04}");
            let request = DeferredRequest::queued(
                id.clone(),
                "arn:aws:iam::123456789012:user/alice".into(),
                HAIKU.into(),
                json!({"messages": [{"role": "user", "content": [{"text": format!("question {i}")}]}]}),
                String::new(),
                NOW,
                NOW + deadline_in,
            );
            assert!(self.deferred.create(&request).await.unwrap());
            ids.push(id);
        }
        ids
    }

    /// Ends the batch as Bedrock would have: its merged results with `failed` of its records
    /// answered by an error line.
    async fn end_batch(&self, batch_id: &str, failed: usize) {
        let mut batch = self.registry.get(batch_id).await.unwrap().unwrap();
        let ids: Vec<String> = self
            .deferred
            .all()
            .into_iter()
            .filter(|r| r.batch_id.as_deref() == Some(batch_id))
            .map(|r| r.id)
            .collect();
        let mut lines = Vec::new();
        for (position, id) in ids.iter().enumerate() {
            let line = if position < failed {
                ResultLine::failed(id.clone(), "ModelError", "the job could not answer it")
            } else {
                ResultLine {
                    record_id: id.clone(),
                    text: Some(format!("answer to {id}")),
                    stop_reason: Some("end_turn".into()),
                    usage: Some(Usage::new(1000, 1000)),
                    error: None,
                }
            };
            lines.extend(serde_json::to_vec(&line).unwrap());
            lines.push(b'\n');
        }
        let key = results_key(batch_id);
        self.bucket.put(&key, lines).await.unwrap();
        batch.status = if failed > 0 {
            BatchStatus::PartiallyCompleted
        } else {
            BatchStatus::Completed
        };
        batch.results_key = Some(key);
        batch.updated_at = batch.created_at + 2 * HOUR;
        batch.version += 1;
        self.registry.update(&batch).await.unwrap();
    }

    fn by_status(&self, status: DeferredStatus) -> Vec<DeferredRequest> {
        self.deferred
            .all()
            .into_iter()
            .filter(|r| r.status == status)
            .collect()
    }
}

#[tokio::test]
async fn a_hundred_and_fifty_requests_with_a_day_become_one_batch_answered_at_the_batch_price() {
    let w = world(FakeModel::answering());
    w.accept(150, 24 * HOUR).await;
    let run = w.run(NOW).await;
    assert_eq!(run.batches.len(), 1);
    assert_eq!(w.jobs.created().len(), 1, "one Bedrock job");
    assert!(w.model.calls().is_empty(), "nothing on demand");
    let placed = w.by_status(DeferredStatus::Placed);
    assert_eq!(placed.len(), 150);
    assert!(placed.iter().all(|r| r.placement == Some(Placement::Batch)));

    // The job has not ended: a run leaves them be.
    let waiting = w.run(NOW + 60).await;
    assert_eq!(waiting.answered, BTreeMap::new());

    w.end_batch(&run.batches[0], 0).await;
    let collected = w.run(NOW + 2 * HOUR).await;
    assert_eq!(collected.answered[&Placement::Batch].requests, 150);
    let answered = w.by_status(DeferredStatus::Answered);
    assert_eq!(answered.len(), 150);
    let one = &answered[0];
    assert!((one.cost_usd - one.on_demand_usd * w.batch.price_factor).abs() < 1e-12);
    assert!(one.saved_usd() > 0.0);
    assert_eq!(one.answered_at, Some(NOW + 2 * HOUR));
    assert_eq!(
        w.deferred.turnarounds().await.unwrap()[HAIKU],
        2 * HOUR,
        "the batch's turnaround is observed for the next placements"
    );
}

#[tokio::test]
async fn five_requests_due_within_the_hour_go_through_flex() {
    let w = world(FakeModel::answering());
    w.accept(5, HOUR).await;
    let run = w.run(NOW).await;
    assert_eq!(run.answered[&Placement::Flex].requests, 5);
    assert_eq!(w.model.tiers(), vec![Some(ServiceTier::Flex); 5]);
    let answered = w.by_status(DeferredStatus::Answered);
    assert_eq!(answered.len(), 5);
    assert!(answered.iter().all(|r| r.placement == Some(Placement::Flex)
        && (r.cost_usd * 2.0 - r.on_demand_usd).abs() < 1e-9));
    assert!(
        answered
            .iter()
            .all(|r| r.answered_at == Some(NOW) && !r.deadline_missed),
        "answered on the run's clock, in time"
    );
}

#[tokio::test]
async fn a_throttled_flex_call_is_answered_on_the_default_tier() {
    let w = world(FakeModel::answering().throttling_flex());
    w.accept(1, HOUR).await;
    let run = w.run(NOW).await;
    assert_eq!(run.answered[&Placement::Default].requests, 1);
    assert_eq!(
        w.model.tiers(),
        vec![Some(ServiceTier::Flex), None],
        "flex, then default"
    );
    let answered = &w.by_status(DeferredStatus::Answered)[0];
    assert!((answered.cost_usd - answered.on_demand_usd).abs() < 1e-12);
}

#[tokio::test]
async fn too_few_for_a_batch_wait_then_go_through_flex_before_their_deadline() {
    let w = world(FakeModel::answering());
    w.accept(5, 24 * HOUR).await;
    assert_eq!(w.run(NOW).await.answered, BTreeMap::new());
    assert_eq!(
        w.by_status(DeferredStatus::Queued).len(),
        5,
        "waiting for more"
    );
    // Once a batch (6 h by default, plus the retry margin) could no longer make it: flex.
    let run = w.run(NOW + 18 * HOUR - 15 * 60 + 1).await;
    assert_eq!(run.answered[&Placement::Flex].requests, 5);
}

#[tokio::test]
async fn a_job_that_fails_half_its_records_ends_with_every_request_answered_once() {
    let w = world(FakeModel::answering());
    w.accept(150, 24 * HOUR).await;
    let batch_id = w.run(NOW).await.batches.remove(0);
    w.end_batch(&batch_id, 75).await;
    let run = w.run(NOW + 2 * HOUR).await;
    assert_eq!(run.answered[&Placement::Batch].requests, 75);
    assert_eq!(run.requeued, 75);
    // The failed ones cannot be batched again: flex, in the same run.
    assert_eq!(run.answered[&Placement::Flex].requests, 75);
    assert_eq!(w.model.calls().len(), 75);
    let answered = w.by_status(DeferredStatus::Answered);
    assert_eq!(answered.len(), 150);
    assert_eq!(
        answered.iter().filter(|r| r.batch_failed).count(),
        75,
        "the failed records are marked, never batched again"
    );

    // The same end seen again (a redelivered event, another run): nothing moves, nothing paid.
    let again = w.run(NOW + 3 * HOUR).await;
    assert_eq!(again.answered, BTreeMap::new());
    assert_eq!(w.model.calls().len(), 75);
    assert_eq!(w.jobs.created().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn two_runs_at_once_place_each_request_once() {
    // Calls that take a while: the first run is still answering when the second starts.
    let w = world(FakeModel::answering().taking(Duration::from_secs(1)));
    w.accept(150, 24 * HOUR).await;
    w.accept(4, HOUR).await;
    let (one, other) = (w.scheduler(), w.scheduler());
    let (run_one, run_other) = (Invocation::longest(), Invocation::longest());
    let (first, second) = tokio::join!(one.run(NOW, &run_one), other.run(NOW, &run_other));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(
        first.held != second.held,
        "one run holds the lease, the other does nothing"
    );
    assert_eq!(first.batches.len() + second.batches.len(), 1);
    assert_eq!(w.jobs.created().len(), 1);
    assert_eq!(w.model.calls().len(), 4, "each flex request called once");
}

#[tokio::test]
async fn a_claim_taken_by_another_run_is_left_to_it() {
    let w = world(FakeModel::answering());
    let ids = w.accept(1, HOUR).await;
    // Another run claimed it since this one read it: this run's write is refused.
    let mut stale = w.deferred.get(&ids[0]).await.unwrap().unwrap();
    let mut theirs = stale.clone();
    theirs.status = DeferredStatus::Placed;
    theirs.placement = Some(Placement::Flex);
    theirs.claim = Some(domain::batch::Lease {
        holder: "other-run".into(),
        until: NOW + 600,
    });
    theirs.version += 1;
    assert!(w.deferred.update(&theirs).await.unwrap());
    stale.version += 1;
    assert!(!w.deferred.update(&stale).await.unwrap());
    // A run while their claim holds leaves it; once it lapses (the run died), it is placed.
    assert_eq!(w.run(NOW).await.answered, BTreeMap::new());
    assert!(w.model.calls().is_empty());
    let later = w.run(NOW + 601).await;
    assert_eq!(later.answered[&Placement::Flex].requests, 1);
}

#[tokio::test]
async fn a_batch_claimed_by_a_run_that_died_before_registering_it_is_placed_again() {
    let w = world(FakeModel::answering());
    w.accept(120, 24 * HOUR).await;
    for mut request in w.deferred.all() {
        request.status = DeferredStatus::Placed;
        request.placement = Some(Placement::Batch);
        request.batch_id = Some("never-registered".into());
        request.claim = Some(domain::batch::Lease {
            holder: "dead-run".into(),
            until: NOW + 600,
        });
        request.version += 1;
        assert!(w.deferred.update(&request).await.unwrap());
    }
    assert!(
        w.run(NOW + 60).await.batches.is_empty(),
        "the claim still holds"
    );
    let run = w.run(NOW + 601).await;
    assert_eq!(run.batches.len(), 1);
    assert_eq!(w.jobs.created().len(), 1);
}

#[tokio::test]
async fn a_deadline_passed_unanswered_is_reported_missed() {
    let w = world(FakeModel::failing(ModelErrorKind::ServiceUnavailable));
    w.accept(1, HOUR).await;
    let failing = w.run(NOW).await;
    assert_eq!(failing.requeued, 1, "a passing failure is queued again");
    let expired = w.run(NOW + HOUR).await;
    assert_eq!(expired.deadline_misses, 1);
    let request = &w.by_status(DeferredStatus::Expired)[0];
    assert!(request.deadline_missed);
    let emf = expired.emf("Custom/Bedrock", NOW * 1000);
    assert!(emf
        .iter()
        .any(|doc| doc["DeferredDeadlineMisses"] == json!(1)));
}

#[tokio::test]
async fn a_refused_request_fails_for_good_and_is_not_asked_again() {
    let w = world(FakeModel::failing(ModelErrorKind::Validation));
    w.accept(1, HOUR).await;
    assert_eq!(w.run(NOW).await.failed, 1);
    assert_eq!(w.by_status(DeferredStatus::Failed).len(), 1);
    w.run(NOW + 60).await;
    assert_eq!(w.model.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_run_without_time_for_a_call_leaves_its_requests_queued() {
    let w = world(FakeModel::answering());
    w.accept(3, HOUR).await;
    let run = w
        .scheduler()
        .run(NOW, &Invocation::lasting(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(run.answered, BTreeMap::new());
    assert!(w.model.calls().is_empty());
    assert_eq!(w.by_status(DeferredStatus::Queued).len(), 3);
}

#[tokio::test]
async fn placement_metrics_are_by_placement() {
    let w = world(FakeModel::answering());
    w.accept(2, HOUR).await;
    let run = w.run(NOW).await;
    let emf = run.emf("Custom/Bedrock", NOW * 1000);
    let flex = emf
        .iter()
        .find(|doc| doc["Placement"] == json!("flex"))
        .expect("a document for flex");
    assert_eq!(flex["DeferredRequests"], json!(2));
    assert_eq!(flex["DeferredInputTokens"], json!(2000));
    assert!(flex["DeferredSavedUSD"].as_f64().unwrap() > 0.0);
    assert_eq!(
        flex["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Placement"]])
    );
}

#[tokio::test]
async fn a_group_still_being_accepted_is_not_placed_until_all_its_requests_are_in() {
    let w = world(FakeModel::answering());
    let mut group = domain::deferred::DeferredGroup {
        id: "batch_1".into(),
        owner: "tenant:acme".into(),
        input_file_id: "file-1".into(),
        endpoint: "/v1/chat/completions".into(),
        completion_window: "24h".into(),
        request_count: 150,
        status: domain::deferred::GroupStatus::InProgress,
        created_at: NOW,
        expires_at: NOW + 24 * HOUR,
        cancelling_at: None,
        ended_at: None,
        output_file_id: None,
        error_file_id: None,
        completed: 0,
        failed: 0,
        metadata: None,
        accepting: true,
        version: 1,
    };
    assert!(w.deferred.create_group(&group).await.unwrap());
    for id in w.accept(150, 24 * HOUR).await {
        let mut request = w.deferred.get(&id).await.unwrap().unwrap();
        request.group = Some("batch_1".into());
        request.version += 1;
        assert!(w.deferred.update(&request).await.unwrap());
    }
    assert!(
        w.run(NOW).await.batches.is_empty(),
        "the file is still being read"
    );
    group.accepting = false;
    group.version += 1;
    assert!(w.deferred.update_group(&group).await.unwrap());
    assert_eq!(w.run(NOW + 60).await.batches.len(), 1, "all in: one batch");
}

/// Budgets that record what is settled (tenant, reservation id, cost).
#[derive(Default)]
struct Settled(std::sync::Mutex<Vec<(String, String, f64)>>);

impl domain::ports::BatchBudgets for Settled {
    async fn reserve(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &domain::tenancy::Reservation,
        _: i64,
    ) -> Result<domain::tenancy::BatchBudgetAnswer, domain::error::TenancyError> {
        Ok(domain::tenancy::BatchBudgetAnswer::Held)
    }

    async fn settle(
        &self,
        id: &str,
        hold: &domain::batch::BudgetHold,
        actual_usd: f64,
    ) -> Result<(), domain::error::TenancyError> {
        self.0
            .lock()
            .unwrap()
            .push((hold.tenant.clone(), id.to_owned(), actual_usd));
        Ok(())
    }
}

#[tokio::test]
async fn a_tenants_reservation_is_settled_once_to_what_the_answer_cost() {
    let w = world(FakeModel::answering());
    let ids = w.accept(2, HOUR).await;
    for (id, reserved) in ids.iter().zip([0.01, 0.02]) {
        let mut request = w.deferred.get(id).await.unwrap().unwrap();
        request.budget = Some(domain::batch::BudgetHold {
            tenant: "acme".into(),
            month: "2026-11".into(),
            reserved_usd: reserved,
            expires_at: request.deadline + 86_400,
            settled: false,
        });
        request.version += 1;
        assert!(w.deferred.update(&request).await.unwrap());
    }
    let budgets = Settled::default();
    let scheduler = Scheduler {
        deferred: &w.deferred,
        model: &w.model,
        store: &w.bucket,
        registry: &w.registry,
        jobs: &w.jobs,
        budgets: Some(&budgets),
        batch: &w.batch,
        settings: &w.settings,
    };
    scheduler.run(NOW, &Invocation::longest()).await.unwrap();
    scheduler
        .run(NOW + 60, &Invocation::longest())
        .await
        .unwrap();
    let settled = budgets.0.lock().unwrap().clone();
    assert_eq!(settled.len(), 2, "once each: {settled:?}");
    for (tenant, id, cost) in settled {
        assert_eq!(tenant, "acme");
        let request = w.deferred.get(&id).await.unwrap().unwrap();
        assert_eq!(cost, request.cost_usd, "settled to the flex price");
        assert!(cost > 0.0);
    }
}
