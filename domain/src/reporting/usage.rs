//! What a period's requests and batches did, per model: tokens, cost, savings, batches ended
//! and the backlog of batches still running.

use std::collections::BTreeMap;

use crate::batch::{job_has_ended, Batch, BatchStatus, JOB_QUEUED};

/// One model's per-request metrics summed over a period (the `ModelId` series of invoke-with-cache's EMF).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelUsage {
    pub requests: f64,
    pub hits: f64,
    pub throttles: f64,
    pub client_errors: f64,
    pub server_errors: f64,
    pub timeouts: f64,
    pub cost_usd: f64,
    pub saved_usd: f64,
    pub on_demand_equivalent_usd: f64,
    /// What Bedrock's prompt cache saved against the same input uncached.
    pub prompt_cache_saved_usd: f64,
}

impl ModelUsage {
    /// The EMF metric each field sums, for the queries.
    pub const METRICS: [&'static str; 10] = [
        "Requests",
        "CacheHit",
        "Throttles",
        "ClientErrors",
        "ServerErrors",
        "Timeouts",
        "EstimatedCostUSD",
        "EstimatedSavingsUSD",
        "OnDemandEquivalentUSD",
        "PromptCacheSavingsUSD",
    ];

    /// Sets the field of one of [`Self::METRICS`].
    pub fn set(&mut self, metric: &str, value: f64) {
        let field = match metric {
            "Requests" => &mut self.requests,
            "CacheHit" => &mut self.hits,
            "Throttles" => &mut self.throttles,
            "ClientErrors" => &mut self.client_errors,
            "ServerErrors" => &mut self.server_errors,
            "Timeouts" => &mut self.timeouts,
            "EstimatedCostUSD" => &mut self.cost_usd,
            "EstimatedSavingsUSD" => &mut self.saved_usd,
            "OnDemandEquivalentUSD" => &mut self.on_demand_equivalent_usd,
            "PromptCacheSavingsUSD" => &mut self.prompt_cache_saved_usd,
            _ => return,
        };
        *field = value;
    }

    /// Requests that got an answer (hit, miss, bypass or refresh): the ones the cache could
    /// have served.
    pub fn answered(&self) -> f64 {
        (self.requests - self.throttles - self.client_errors - self.server_errors - self.timeouts)
            .max(0.0)
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.throttles += other.throttles;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.timeouts += other.timeouts;
        self.cost_usd += other.cost_usd;
        self.saved_usd += other.saved_usd;
        self.on_demand_equivalent_usd += other.on_demand_equivalent_usd;
        self.prompt_cache_saved_usd += other.prompt_cache_saved_usd;
    }
}

/// Deferred requests answered on one placement in the period (batch-status's EMF by
/// `Placement`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeferredTotals {
    pub requests: f64,
    pub cost_usd: f64,
    pub saved_usd: f64,
}

impl DeferredTotals {
    /// The EMF metric each field sums, for the queries.
    pub const METRICS: [&'static str; 3] =
        ["DeferredRequests", "DeferredCostUSD", "DeferredSavedUSD"];

    /// Sets the field of one of [`Self::METRICS`].
    pub fn set(&mut self, metric: &str, value: f64) {
        match metric {
            "DeferredRequests" => self.requests = value,
            "DeferredCostUSD" => self.cost_usd = value,
            "DeferredSavedUSD" => self.saved_usd = value,
            _ => {}
        }
    }
}

/// Batches of one model that ended in the period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchTotals {
    pub batches: u64,
    /// At the batch price (or on-demand for a batch answered directly).
    pub cost_usd: f64,
    pub on_demand_cost_usd: f64,
}

impl BatchTotals {
    pub fn saved_usd(&self) -> f64 {
        (self.on_demand_cost_usd - self.cost_usd).max(0.0)
    }
}

/// Batches that ended in `[start, end)` (their last registry write, which is their end), by model.
pub fn batches_ended(batches: &[Batch], start: i64, end: i64) -> BTreeMap<String, BatchTotals> {
    let mut totals: BTreeMap<String, BatchTotals> = BTreeMap::new();
    for batch in batches {
        if !batch.status.is_final() || batch.status == BatchStatus::Rejected {
            continue;
        }
        let Some(summary) = &batch.summary else {
            continue;
        };
        if batch.updated_at < start || batch.updated_at >= end {
            continue;
        }
        let entry = totals.entry(batch.model_id.clone()).or_default();
        entry.batches += 1;
        entry.cost_usd += summary.cost_usd;
        entry.on_demand_cost_usd += summary.on_demand_cost_usd;
    }
    totals
}

/// The batch backlog at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Jobs Bedrock holds that have not ended (submitted, validating, scheduled, in progress, stopping).
    pub jobs_in_progress: u64,
    /// Jobs waiting for a slot under the concurrent-jobs quota, not yet submitted.
    pub jobs_queued: u64,
    /// Records of jobs not ended that Bedrock has not processed yet.
    pub records_pending: u64,
}

/// The backlog of the unfinished batches.
pub fn backlog(unfinished: &[Batch]) -> Backlog {
    let mut backlog = Backlog::default();
    for job in unfinished
        .iter()
        .filter(|b| !b.status.is_final())
        .flat_map(|b| &b.jobs)
        .filter(|j| !job_has_ended(&j.status))
    {
        if job.status == JOB_QUEUED {
            backlog.jobs_queued += 1;
        } else {
            backlog.jobs_in_progress += 1;
        }
        backlog.records_pending += job.record_count.saturating_sub(job.processed);
    }
    backlog
}
