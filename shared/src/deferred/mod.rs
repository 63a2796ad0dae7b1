//! The schedule's placement of deferred requests (`domain::deferred`), run by batch-status.
//!
//! One run at a time holds the schedule's lease ([`DeferredStore::lease`]). A run collects the
//! answers of batches that ended (a record a job failed goes back to the queue, never to a
//! batch again), then places what waits by [`decide`]: a batch of enough requests for a model
//! (its jobs submitted as any batch's), flex or default calls answered within the run's time,
//! expiry for a deadline passed. Every move of a request is a conditional write on its version:
//! a request claimed by another run, answered already, or moved by a redelivered event is left
//! as it is.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use domain::batch::{Batch, BatchRecord, BatchStatus, Lease, ResultError, ResultLine};
use domain::conversation::{Message, ModelAnswer};
use domain::deferred::{
    decide, observed_turnaround, Decision, DeferredGroup, DeferredRequest, DeferredStatus,
    Placement, PlacementRule,
};
use domain::error::{ModelErrorKind, StoreError};
use domain::ports::{
    BatchBudgets, BatchJobs, BatchRegistry, DeferredStore, ModelInvoker, ObjectStore,
};
use domain::routing::{ServiceTier, Target};

use crate::batch::{
    batch_id_for, prepare_jobs, submit_queued, BatchError, BatchSettings, Invocation, LineReader,
};
use crate::config::{ConfigError, Env};

/// The owner of the batches the schedule makes of deferred requests: no caller's principal.
pub const DEFERRED_OWNER: &str = "deferred";
/// How long a run's claim on the requests it puts in a batch holds before the batch is
/// registered; past it, a run that died between the two lets the next place them again.
const BATCH_CLAIM_SECONDS: i64 = 600;
/// What a run leaves after its last call to write its answers back.
const WRITE_BACK: Duration = Duration::from_secs(3);

/// How deferred requests are placed, from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct DeferredSettings {
    pub rule: PlacementRule,
    /// The most pending requests one run reads (`DEFERRED_MAX_PER_RUN`).
    pub max_per_run: usize,
}

impl DeferredSettings {
    /// `DEFERRED_BATCH_TURNAROUND` (ISO 8601, `PT6H`), `DEFERRED_RETRY_MARGIN` (`PT15M`),
    /// `DEFERRED_MAX_PER_RUN` (10000); batch sizes from the batch settings.
    pub fn from_env(env: &Env, batch: &BatchSettings) -> Result<Self, ConfigError> {
        let defaults = PlacementRule::default();
        Ok(Self {
            rule: PlacementRule {
                min_batch_records: batch.min_records,
                max_batch_records: batch.max_batch_records,
                default_turnaround: iso_seconds(
                    env,
                    "DEFERRED_BATCH_TURNAROUND",
                    defaults.default_turnaround,
                )?,
                retry_margin: iso_seconds(env, "DEFERRED_RETRY_MARGIN", defaults.retry_margin)?,
            },
            max_per_run: env.parse_or("DEFERRED_MAX_PER_RUN", 10_000usize)?,
        })
    }
}

/// An ISO 8601 duration variable, in seconds.
pub fn iso_seconds(env: &Env, name: &str, default: i64) -> Result<i64, ConfigError> {
    let Some(value) = env.get(name) else {
        return Ok(default);
    };
    iso8601::duration(value)
        .ok()
        .and_then(|d| i64::try_from(Duration::from(d).as_secs()).ok())
        .ok_or_else(|| {
            ConfigError::new(
                name,
                format!("{value:?} is not an ISO 8601 duration such as PT6H or PT15M"),
            )
        })
}

/// What one run did, by placement: for its log line and its metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScheduleRun {
    /// Another run held the lease: this one did nothing.
    pub held: bool,
    /// Batches made of deferred requests in this run.
    pub batches: Vec<String>,
    /// Requests answered, by placement, with their tokens, cost, savings and time from
    /// acceptance to answer.
    pub answered: BTreeMap<Placement, PlacementTally>,
    /// Requests whose deadline passed unanswered (expired), or that were answered after it.
    pub deadline_misses: usize,
    /// Requests sent back to the queue: a job failed them, a call failed in passing.
    pub requeued: usize,
    /// Requests Bedrock refused (failed for good).
    pub failed: usize,
}

/// Figures of the requests answered on one placement.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PlacementTally {
    pub requests: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub saved_usd: f64,
    /// Seconds from acceptance to answer, summed.
    pub seconds_to_answer: i64,
}

impl ScheduleRun {
    fn count(&mut self, request: &DeferredRequest) {
        let Some(placement) = request.placement else {
            return;
        };
        let tally = self.answered.entry(placement).or_default();
        tally.requests += 1;
        if let Some(answer) = &request.answer {
            tally.input_tokens += u64::from(answer.usage.input_tokens);
            tally.output_tokens += u64::from(answer.usage.output_tokens);
        }
        tally.cost_usd += request.cost_usd;
        tally.saved_usd += request.saved_usd();
        tally.seconds_to_answer +=
            request.answered_at.unwrap_or(request.accepted_at) - request.accepted_at;
        if request.deadline_missed {
            self.deadline_misses += 1;
        }
    }
}

/// The ports a run of the schedule uses.
pub struct Scheduler<'a, D, M, S, R, J, B> {
    pub deferred: &'a D,
    pub model: &'a M,
    pub store: &'a S,
    pub registry: &'a R,
    pub jobs: &'a J,
    /// Tenants' budgets: a request's reservation is settled when it ends.
    pub budgets: Option<&'a B>,
    pub batch: &'a BatchSettings,
    pub settings: &'a DeferredSettings,
}

impl<D, M, S, R, J, B> Scheduler<'_, D, M, S, R, J, B>
where
    D: DeferredStore,
    M: ModelInvoker,
    S: ObjectStore,
    R: BatchRegistry,
    J: BatchJobs,
    B: BatchBudgets,
{
    /// One run: see the module's documentation. `now_epoch` is the run's start.
    pub async fn run(&self, now_epoch: i64, run: &Invocation) -> Result<ScheduleRun, BatchError> {
        let until = now_epoch + i64::try_from(run.remaining().as_secs()).unwrap_or(900);
        if !self.deferred.lease(&run.id, until, now_epoch).await? {
            return Ok(ScheduleRun {
                held: true,
                ..ScheduleRun::default()
            });
        }
        let outcome = self.place(now_epoch, run).await;
        if let Err(error) = self.deferred.release(&run.id).await {
            tracing::warn!(%error, "schedule lease not released; it lapses at the run's deadline");
        }
        outcome
    }

    async fn place(&self, now: i64, run: &Invocation) -> Result<ScheduleRun, BatchError> {
        let mut tally = ScheduleRun::default();
        let pending = self.deferred.pending(self.settings.max_per_run).await?;
        let mut in_batches: BTreeMap<String, Vec<DeferredRequest>> = BTreeMap::new();
        let mut placeable = Vec::new();
        for request in pending {
            match (&request.batch_id, request.status, request.placement) {
                (Some(batch_id), DeferredStatus::Placed, Some(Placement::Batch)) => in_batches
                    .entry(batch_id.clone())
                    .or_default()
                    .push(request),
                _ if request.placeable(now) => placeable.push(request),
                _ => {}
            }
        }
        for (batch_id, requests) in in_batches {
            placeable.extend(self.collect(&batch_id, requests, now, &mut tally).await?);
        }
        let placeable = self.without_groups_being_accepted(placeable, now).await?;
        let turnarounds = self.deferred.turnarounds().await.unwrap_or_else(|error| {
            tracing::warn!(%error, "observed turnarounds unreadable; placing by the default");
            BTreeMap::new()
        });
        let refs: Vec<&DeferredRequest> = placeable.iter().collect();
        let decisions = decide(&refs, now, &self.settings.rule, &turnarounds);
        let mut by_id: HashMap<String, DeferredRequest> =
            placeable.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut calls = Vec::new();
        for decision in decisions {
            match decision {
                Decision::Expire(id) => {
                    if let Some(request) = by_id.remove(&id) {
                        self.expire(request, now, &mut tally).await?;
                    }
                }
                Decision::Batch { model_id, ids } => {
                    let requests: Vec<_> = ids.iter().filter_map(|id| by_id.remove(id)).collect();
                    if let Some(batch_id) = self.batch_of(&model_id, requests, now, run).await? {
                        tally.batches.push(batch_id);
                    }
                }
                Decision::Flex(id) => calls.extend(by_id.remove(&id).map(|r| (r, Placement::Flex))),
                Decision::Default(id) => {
                    calls.extend(by_id.remove(&id).map(|r| (r, Placement::Default)));
                }
            }
        }
        self.answer_on_demand(calls, now, run, &mut tally).await?;
        Ok(tally)
    }

    /// `placeable` but the requests of groups still being accepted.
    async fn without_groups_being_accepted(
        &self,
        placeable: Vec<DeferredRequest>,
        now: i64,
    ) -> Result<Vec<DeferredRequest>, BatchError> {
        let mut held: HashMap<String, bool> = HashMap::new();
        let mut kept = Vec::with_capacity(placeable.len());
        for request in placeable {
            if let Some(group) = &request.group {
                if !held.contains_key(group) {
                    let holds = self
                        .deferred
                        .get_group(group)
                        .await?
                        .is_some_and(|g| g.holds_back(now));
                    held.insert(group.clone(), holds);
                }
                if held.get(group).copied().unwrap_or(false) {
                    continue;
                }
            }
            kept.push(request);
        }
        Ok(kept)
    }

    /// The answers of `batch_id` once it ended; the requests it did not answer come back,
    /// queued again, for on-demand placement.
    async fn collect(
        &self,
        batch_id: &str,
        requests: Vec<DeferredRequest>,
        now: i64,
        tally: &mut ScheduleRun,
    ) -> Result<Vec<DeferredRequest>, BatchError> {
        let Some(batch) = self.registry.get(batch_id).await? else {
            // Claimed by a run that died before registering the batch: placed again once the
            // claim lapses.
            let mut again = Vec::new();
            for request in requests {
                if request.claim.as_ref().is_none_or(|c| c.until <= now) {
                    let request = queued_again(request, false);
                    if self.write(&request).await? {
                        again.push(request);
                    }
                }
            }
            return Ok(again);
        };
        if !batch.status.is_final() {
            return Ok(Vec::new());
        }
        let mut waiting: HashMap<String, DeferredRequest> =
            requests.into_iter().map(|r| (r.id.clone(), r)).collect();
        if let Some(key) = &batch.results_key {
            let size = self.store.info(key).await?.map_or(0, |info| info.size);
            let mut lines = LineReader::new(self.store, key, size);
            while let Some(chunk) = lines.next_lines().await? {
                for (_, line) in chunk {
                    let Ok(result) = serde_json::from_slice::<ResultLine>(&line) else {
                        continue;
                    };
                    // A record the job failed stays waiting: it is queued again below.
                    if result.error.is_some() {
                        continue;
                    }
                    let Some(request) = waiting.remove(&result.record_id) else {
                        continue;
                    };
                    let answered = self.batch_answer(request, &batch, result, now);
                    if self.write(&answered).await? {
                        tally.count(&answered);
                        self.settle(&answered).await;
                    }
                }
            }
        }
        if matches!(
            batch.status,
            BatchStatus::Completed | BatchStatus::PartiallyCompleted
        ) {
            self.observe(&batch).await;
        }
        // What the batch did not answer goes on demand, before its deadline.
        let mut again = Vec::new();
        for request in waiting.into_values() {
            let request = queued_again(request, true);
            if self.write(&request).await? {
                tally.requeued += 1;
                again.push(request);
            }
        }
        Ok(again)
    }

    /// The request answered by its batch's result line, at the batch price.
    fn batch_answer(
        &self,
        mut request: DeferredRequest,
        batch: &Batch,
        result: ResultLine,
        now: i64,
    ) -> DeferredRequest {
        let usage = result.usage.unwrap_or_default();
        let on_demand = self
            .batch
            .prices
            .cost(&batch.model_id, &usage)
            .unwrap_or(0.0);
        request.answer = Some(ModelAnswer {
            message: Message::assistant_text(result.text.unwrap_or_default()),
            stop_reason: result.stop_reason.unwrap_or_else(|| "end_turn".to_owned()),
            usage,
            service_tier: None,
            invoked_model: None,
            latency: None,
        });
        request.on_demand_usd = on_demand;
        request.cost_usd = on_demand * self.batch.price_factor;
        request.status = DeferredStatus::Answered;
        request.answered_at = Some(now);
        request.deadline_missed = now > request.deadline;
        request.claim = None;
        request.version += 1;
        request
    }

    /// Records how long the batch took, for the next placements of its model.
    async fn observe(&self, batch: &Batch) {
        let latest = (batch.updated_at - batch.created_at).max(0);
        let known = self
            .deferred
            .turnarounds()
            .await
            .ok()
            .and_then(|t| t.get(&batch.model_id).copied());
        if let Err(error) = self
            .deferred
            .set_turnaround(&batch.model_id, observed_turnaround(known, latest))
            .await
        {
            tracing::warn!(%error, model_id = batch.model_id, "batch turnaround not recorded");
        }
    }

    async fn expire(
        &self,
        mut request: DeferredRequest,
        now: i64,
        tally: &mut ScheduleRun,
    ) -> Result<(), BatchError> {
        request.status = DeferredStatus::Expired;
        request.deadline_missed = true;
        request.answered_at = Some(now);
        request.claim = None;
        request.version += 1;
        if self.write(&request).await? {
            tracing::warn!(
                deferred_id = request.id,
                model_id = request.model_id,
                "deferred request expired unanswered: its deadline passed"
            );
            tally.deadline_misses += 1;
            self.settle(&request).await;
        }
        Ok(())
    }

    /// Claims the requests for one batch and submits it; `None` when too few were claimed
    /// (another run took some), which are then let go.
    async fn batch_of(
        &self,
        model_id: &str,
        requests: Vec<DeferredRequest>,
        now: i64,
        run: &Invocation,
    ) -> Result<Option<String>, BatchError> {
        let ids: Vec<&[u8]> = requests.iter().map(|r| r.id.as_bytes()).collect();
        let batch_id =
            batch_id_for(&[&[DEFERRED_OWNER.as_bytes(), model_id.as_bytes()], &ids[..]].concat());
        let mut claimed = Vec::new();
        for mut request in requests {
            request.status = DeferredStatus::Placed;
            request.placement = Some(Placement::Batch);
            request.batch_id = Some(batch_id.clone());
            request.claim = Some(Lease {
                holder: run.id.clone(),
                until: now + BATCH_CLAIM_SECONDS,
            });
            request.version += 1;
            if self.write(&request).await? {
                claimed.push(request);
            }
        }
        if claimed.len() < self.settings.rule.min_batch_records {
            for request in claimed {
                self.write(&queued_again(request, false)).await?;
            }
            return Ok(None);
        }
        let records: Vec<BatchRecord> = claimed
            .iter()
            .map(|r| BatchRecord {
                record_id: r.id.clone(),
                model_input: r.request.clone(),
            })
            .collect();
        let mut batch = Batch::queued(
            batch_id.clone(),
            DEFERRED_OWNER.to_owned(),
            model_id.to_owned(),
            "deferred".to_owned(),
            records.len() as u64,
            now,
        );
        batch.name = Some("deferred".to_owned());
        prepare_jobs(self.store, &mut batch, &records, self.batch.max_records).await?;
        if self.registry.create(&batch).await? {
            submit_queued(self.jobs, self.store, &mut batch, self.batch).await;
            batch.status = batch.status_from_jobs();
            batch.version += 1;
            // The batch schedule submits whatever this write leaves queued.
            if let Err(error) = self.registry.update(&batch).await {
                tracing::warn!(%error, batch_id, "deferred batch registered, its job states not yet");
            }
        }
        tracing::info!(
            batch_id,
            model_id,
            records = records.len(),
            "deferred requests placed in a batch"
        );
        Ok(Some(batch_id))
    }

    /// Answers `calls` on flex or default, a group at a time while the run has time for it.
    async fn answer_on_demand(
        &self,
        calls: Vec<(DeferredRequest, Placement)>,
        now: i64,
        run: &Invocation,
        tally: &mut ScheduleRun,
    ) -> Result<(), BatchError> {
        let call_time = Duration::from_secs(self.batch.direct_call_seconds);
        let claim_until = now + i64::try_from(run.remaining().as_secs()).unwrap_or(0);
        let mut calls = calls.into_iter();
        loop {
            let group: Vec<_> = calls
                .by_ref()
                .take(self.batch.direct_concurrency.max(1))
                .collect();
            if group.is_empty() || Instant::now() + call_time + WRITE_BACK > run.deadline {
                return Ok(());
            }
            let mut claimed = Vec::new();
            for (mut request, placement) in group {
                request.status = DeferredStatus::Placed;
                request.placement = Some(placement);
                request.claim = Some(Lease {
                    holder: run.id.clone(),
                    until: claim_until,
                });
                request.version += 1;
                if self.write(&request).await? {
                    claimed.push(request);
                }
            }
            let answers = join_all(claimed.into_iter().map(|r| self.call(r, now, run))).await;
            for request in answers {
                if self.write(&request).await? {
                    match request.status {
                        DeferredStatus::Answered => {
                            tally.count(&request);
                            self.settle(&request).await;
                        }
                        DeferredStatus::Failed => {
                            tally.failed += 1;
                            self.settle(&request).await;
                        }
                        _ => tally.requeued += 1,
                    }
                }
            }
        }
    }

    /// One claimed request's call: flex (then default if flex is throttled) or default. The
    /// request comes back answered, failed for good, or queued again.
    async fn call(
        &self,
        mut request: DeferredRequest,
        run_started: i64,
        run: &Invocation,
    ) -> DeferredRequest {
        let started = Instant::now();
        let conversation = crate::batch::conversation_of(&request.request);
        let cut = run.deadline.checked_sub(WRITE_BACK).unwrap_or(run.deadline);
        let mut placement = request.placement.unwrap_or(Placement::Default);
        loop {
            let mut target = Target::on_demand(&request.model_id);
            if placement == Placement::Flex {
                target.service_tier = Some(ServiceTier::Flex);
            }
            let outcome =
                tokio::time::timeout_at(cut, self.model.converse(&target, &conversation, None))
                    .await;
            request.version += 1;
            request.claim = None;
            match outcome {
                Ok(Ok(answer)) => {
                    let served = answer.service_tier.or(target.service_tier);
                    // On the run's clock: its start, and the time the call took.
                    let now = run_started + i64::try_from(started.elapsed().as_secs()).unwrap_or(0);
                    request.on_demand_usd = self
                        .batch
                        .prices
                        .cost(&request.model_id, &answer.usage)
                        .unwrap_or(0.0);
                    request.cost_usd = self
                        .batch
                        .prices
                        .cost_on_tier(&request.model_id, &answer.usage, served)
                        .unwrap_or(0.0);
                    request.placement = Some(match served {
                        Some(ServiceTier::Flex) => Placement::Flex,
                        _ => Placement::Default,
                    });
                    request.answer = Some(answer);
                    request.status = DeferredStatus::Answered;
                    request.answered_at = Some(now);
                    request.deadline_missed = now > request.deadline;
                    return request;
                }
                Ok(Err(error))
                    if error.kind == ModelErrorKind::Throttled && placement == Placement::Flex =>
                {
                    // Flex is the first to be throttled; the default tier is the retry.
                    placement = Placement::Default;
                    request.version -= 1;
                    continue;
                }
                Ok(Err(error)) if error.kind.is_permanent() => {
                    request.status = DeferredStatus::Failed;
                    request.error = Some(ResultError {
                        code: error.kind.as_str().to_owned(),
                        message: error.message,
                    });
                    return request;
                }
                Ok(Err(error)) => {
                    tracing::info!(
                        deferred_id = request.id,
                        error_kind = error.kind.as_str(),
                        "deferred call failed in passing; queued again"
                    );
                    return queued_again_unversioned(request, false);
                }
                Err(_) => return queued_again_unversioned(request, false),
            }
        }
    }

    /// A write conditional on the request's version; `false` when another came first.
    async fn write(&self, request: &DeferredRequest) -> Result<bool, StoreError> {
        let written = self.deferred.update(request).await?;
        if !written {
            tracing::info!(
                deferred_id = request.id,
                "deferred request moved by another run; left as it is"
            );
        }
        Ok(written)
    }

    /// Settles a tenant's reservation to what the request cost (nothing when it failed).
    async fn settle(&self, request: &DeferredRequest) {
        let (Some(budgets), Some(hold)) = (self.budgets, &request.budget) else {
            return;
        };
        let cost = if request.status == DeferredStatus::Answered {
            request.cost_usd
        } else {
            0.0
        };
        if let Err(error) = budgets.settle(&request.id, hold, cost).await {
            tracing::error!(%error, deferred_id = request.id, tenant = hold.tenant, cost_usd = cost, "deferred request's budget not settled");
        }
    }
}

/// Back in the queue, unplaced; `batch_failed` when a job failed it.
fn queued_again(mut request: DeferredRequest, batch_failed: bool) -> DeferredRequest {
    request.version += 1;
    queued_again_unversioned(request, batch_failed)
}

fn queued_again_unversioned(mut request: DeferredRequest, batch_failed: bool) -> DeferredRequest {
    request.status = DeferredStatus::Queued;
    request.placement = None;
    request.batch_id = None;
    request.claim = None;
    request.batch_failed |= batch_failed;
    request
}

impl ScheduleRun {
    /// The run's metrics as EMF documents: one per placement answered on (by `Placement`),
    /// and the misses, requeues and failures across placements.
    pub fn emf(&self, namespace: &str, timestamp_ms: i64) -> Vec<serde_json::Value> {
        use crate::adapters::emf::{directive, document};
        use serde_json::json;
        let mut documents: Vec<_> = self
            .answered
            .iter()
            .map(|(placement, tally)| {
                let metrics = [
                    ("DeferredRequests", "Count"),
                    ("DeferredInputTokens", "Count"),
                    ("DeferredOutputTokens", "Count"),
                    ("DeferredCostUSD", "None"),
                    ("DeferredSavedUSD", "None"),
                    ("DeferredSecondsToAnswer", "Seconds"),
                ];
                let mean = tally.seconds_to_answer as f64 / tally.requests.max(1) as f64;
                document(
                    timestamp_ms,
                    vec![directive(namespace, &["Placement"], &metrics)],
                    "INFO",
                    json!({
                        "Placement": placement.as_str(),
                        "DeferredRequests": tally.requests,
                        "DeferredInputTokens": tally.input_tokens,
                        "DeferredOutputTokens": tally.output_tokens,
                        "DeferredCostUSD": tally.cost_usd,
                        "DeferredSavedUSD": tally.saved_usd,
                        "DeferredSecondsToAnswer": mean,
                    }),
                )
            })
            .collect();
        documents.push(document(
            timestamp_ms,
            vec![directive(
                namespace,
                &[],
                &[
                    ("DeferredDeadlineMisses", "Count"),
                    ("DeferredRequeued", "Count"),
                    ("DeferredFailed", "Count"),
                    ("DeferredBatches", "Count"),
                ],
            )],
            "INFO",
            json!({
                "DeferredDeadlineMisses": self.deadline_misses,
                "DeferredRequeued": self.requeued,
                "DeferredFailed": self.failed,
                "DeferredBatches": self.batches.len(),
            }),
        ));
        documents
    }

    /// The run in the schedule's answer.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "held": self.held,
            "batches": self.batches,
            "answered": self.answered.iter().map(|(p, t)| (p.as_str(), t.requests)).collect::<BTreeMap<_, _>>(),
            "deadlineMisses": self.deadline_misses,
            "requeued": self.requeued,
            "failed": self.failed,
        })
    }
}

/// No deferred requests in this deployment (`DEFERRED_TABLE_NAME` unset).
#[derive(Debug, Clone, Copy)]
pub enum NoDeferred {}

impl DeferredStore for NoDeferred {
    async fn create(&self, _: &DeferredRequest) -> Result<bool, StoreError> {
        match *self {}
    }
    async fn get(&self, _: &str) -> Result<Option<DeferredRequest>, StoreError> {
        match *self {}
    }
    async fn update(&self, _: &DeferredRequest) -> Result<bool, StoreError> {
        match *self {}
    }
    async fn pending(&self, _: usize) -> Result<Vec<DeferredRequest>, StoreError> {
        match *self {}
    }
    async fn turnarounds(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        match *self {}
    }
    async fn set_turnaround(&self, _: &str, _: i64) -> Result<(), StoreError> {
        match *self {}
    }
    async fn lease(&self, _: &str, _: i64, _: i64) -> Result<bool, StoreError> {
        match *self {}
    }
    async fn release(&self, _: &str) -> Result<(), StoreError> {
        match *self {}
    }
    async fn get_many(&self, _: &[String]) -> Result<Vec<DeferredRequest>, StoreError> {
        match *self {}
    }
    async fn create_group(&self, _: &DeferredGroup) -> Result<bool, StoreError> {
        match *self {}
    }
    async fn get_group(&self, _: &str) -> Result<Option<DeferredGroup>, StoreError> {
        match *self {}
    }
    async fn update_group(&self, _: &DeferredGroup) -> Result<bool, StoreError> {
        match *self {}
    }
    async fn groups(&self, _: &str) -> Result<Vec<DeferredGroup>, StoreError> {
        match *self {}
    }
}

#[cfg(test)]
mod tests;
