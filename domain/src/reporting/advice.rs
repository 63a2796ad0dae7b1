//! One period's report: the figures of the other modules together, the datums they become and
//! the advice (keep, add or remove model units) they support.

use std::collections::BTreeMap;

use super::*;

/// Everything known of one period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodReport {
    pub start: i64,
    pub usage: BTreeMap<String, ModelUsage>,
    pub batches: BTreeMap<String, BatchTotals>,
    pub provisioned: Vec<(ProvisionedThroughput, ProvisionedFigures)>,
    /// The backlog now: published with the newest period of a run only.
    pub backlog: Option<Backlog>,
    /// On-demand cost by the service tier that served it (`flex`, `default`, `priority`), of
    /// the requests that asked for one.
    pub cost_by_tier: BTreeMap<String, f64>,
    /// Deferred requests answered, by placement (`batch`, `flex`, `default`, `cache`).
    pub deferred: BTreeMap<String, DeferredTotals>,
    /// Deferred requests whose deadline passed unanswered, or answered late.
    pub deferred_misses: f64,
}

pub(crate) fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| 100.0 * part / whole)
}

impl PeriodReport {
    /// The datums to publish, all at the period's start:
    ///
    /// - by `ModelId`, for each model with requests or ended batches: `EstimatedCostUSD`,
    ///   `SavedByCacheUSD`, `SavedByBatchUSD`, `SavedByPromptCacheUSD`, `CacheHitRate` (when it
    ///   answered any request);
    /// - by `ServiceTier`: `EstimatedCostUSD` of the requests served on that tier;
    /// - by `Placement`: `DeferredRequests`, `DeferredCostUSD`, `SavedByDeferredUSD` of the
    ///   deferred requests answered there (a batch placement's cost is the registry's batch
    ///   cost, counted once in `EstimatedCostUSD`; flex and default are added to it);
    ///   `DeferredDeadlineMisses` without dimensions;
    /// - without dimensions: the same over all models, `TotalCostUSD` (with the Provisioned
    ///   Throughputs' hours), `ProvisionedUtilization` (the busiest one's), the backlog;
    /// - by `ProvisionedModelArn`: `ProvisionedModelUnits`, `ProvisionedUtilization`,
    ///   `ProvisionedPeakUtilization`, `ProvisionedHourlyCostUSD` (when priced),
    ///   `ProvisionedOnDemandEquivalentUSD`, `RecommendedModelUnits`.
    pub fn datums(&self) -> Vec<Datum> {
        let t = self.start;
        let mut out = Vec::new();
        let mut total = ModelUsage::default();
        let mut batch_total = BatchTotals::default();
        let mut models: Vec<&String> = self.usage.keys().chain(self.batches.keys()).collect();
        models.sort();
        models.dedup();
        for model in models.into_iter().filter(|m| *m != NO_MODEL) {
            let usage = self.usage.get(model).copied().unwrap_or_default();
            let batch = self.batches.get(model).copied().unwrap_or_default();
            if usage.requests <= 0.0 && batch.batches == 0 {
                continue;
            }
            total.add(&usage);
            batch_total.batches += batch.batches;
            batch_total.cost_usd += batch.cost_usd;
            batch_total.on_demand_cost_usd += batch.on_demand_cost_usd;
            let dims = || vec![(MODEL_DIMENSION.to_owned(), model.clone())];
            out.push(Datum::value(
                "EstimatedCostUSD",
                dims(),
                t,
                usage.cost_usd + batch.cost_usd,
                Unit::None,
            ));
            out.push(Datum::value(
                "SavedByCacheUSD",
                dims(),
                t,
                usage.saved_usd,
                Unit::None,
            ));
            out.push(Datum::value(
                "SavedByBatchUSD",
                dims(),
                t,
                batch.saved_usd(),
                Unit::None,
            ));
            out.push(Datum::value(
                "SavedByPromptCacheUSD",
                dims(),
                t,
                usage.prompt_cache_saved_usd,
                Unit::None,
            ));
            if let Some(rate) = percent(usage.hits, usage.answered()) {
                out.push(Datum::value("CacheHitRate", dims(), t, rate, Unit::Percent));
            }
        }

        // Deferred requests answered on demand by batch-status (its batches are the registry's).
        let deferred_on_demand: f64 = self
            .deferred
            .iter()
            .filter(|(placement, _)| matches!(placement.as_str(), "flex" | "default"))
            .map(|(_, d)| d.cost_usd)
            .sum();
        for (placement, totals) in &self.deferred {
            let dims = || vec![(PLACEMENT_DIMENSION.to_owned(), placement.clone())];
            out.push(Datum::value(
                "DeferredRequests",
                dims(),
                t,
                totals.requests,
                Unit::Count,
            ));
            out.push(Datum::value(
                "DeferredCostUSD",
                dims(),
                t,
                totals.cost_usd,
                Unit::None,
            ));
            out.push(Datum::value(
                "SavedByDeferredUSD",
                dims(),
                t,
                totals.saved_usd,
                Unit::None,
            ));
        }
        if !self.deferred.is_empty() || self.deferred_misses > 0.0 {
            out.push(Datum::value(
                "DeferredDeadlineMisses",
                vec![],
                t,
                self.deferred_misses,
                Unit::Count,
            ));
            out.push(Datum::value(
                "SavedByDeferredUSD",
                vec![],
                t,
                self.deferred.values().map(|d| d.saved_usd).sum(),
                Unit::None,
            ));
        }
        let estimated = total.cost_usd + batch_total.cost_usd + deferred_on_demand;
        let period_hours = PERIOD_SECONDS as f64 / 3600.0;
        let provisioned_cost: f64 = self
            .provisioned
            .iter()
            .filter_map(|(_, f)| f.hourly_cost_usd)
            .sum::<f64>()
            * period_hours;
        out.push(Datum::value(
            "EstimatedCostUSD",
            vec![],
            t,
            estimated,
            Unit::None,
        ));
        out.push(Datum::value(
            "SavedByCacheUSD",
            vec![],
            t,
            total.saved_usd,
            Unit::None,
        ));
        out.push(Datum::value(
            "SavedByBatchUSD",
            vec![],
            t,
            batch_total.saved_usd(),
            Unit::None,
        ));
        out.push(Datum::value(
            "SavedByPromptCacheUSD",
            vec![],
            t,
            total.prompt_cache_saved_usd,
            Unit::None,
        ));
        for (tier, cost) in &self.cost_by_tier {
            out.push(Datum::value(
                "EstimatedCostUSD",
                vec![(SERVICE_TIER_DIMENSION.to_owned(), tier.clone())],
                t,
                *cost,
                Unit::None,
            ));
        }
        if let Some(rate) = percent(total.hits, total.answered()) {
            out.push(Datum::value("CacheHitRate", vec![], t, rate, Unit::Percent));
        }
        out.push(Datum::value(
            "TotalCostUSD",
            vec![],
            t,
            estimated + provisioned_cost,
            Unit::None,
        ));

        if let Some(busiest) = self
            .provisioned
            .iter()
            .map(|(_, f)| f.utilization_pct)
            .reduce(f64::max)
        {
            out.push(Datum::value(
                "ProvisionedUtilization",
                vec![],
                t,
                busiest,
                Unit::Percent,
            ));
        }
        for (pt, f) in &self.provisioned {
            let dims = || vec![(PROVISIONED_DIMENSION.to_owned(), pt.arn.clone())];
            out.push(Datum::value(
                "ProvisionedModelUnits",
                dims(),
                t,
                f64::from(f.model_units),
                Unit::Count,
            ));
            out.push(Datum::value(
                "ProvisionedUtilization",
                dims(),
                t,
                f.utilization_pct,
                Unit::Percent,
            ));
            out.push(Datum::value(
                "ProvisionedPeakUtilization",
                dims(),
                t,
                f.peak_utilization_pct,
                Unit::Percent,
            ));
            if let Some(cost) = f.hourly_cost_usd {
                out.push(Datum::value(
                    "ProvisionedHourlyCostUSD",
                    dims(),
                    t,
                    cost,
                    Unit::None,
                ));
            }
            out.push(Datum::value(
                "ProvisionedOnDemandEquivalentUSD",
                dims(),
                t,
                f.on_demand_equivalent_usd,
                Unit::None,
            ));
            out.push(Datum::value(
                "RecommendedModelUnits",
                dims(),
                t,
                f64::from(f.recommended_units),
                Unit::Count,
            ));
        }

        if let Some(b) = self.backlog {
            out.push(Datum::value(
                "BatchJobsInProgress",
                vec![],
                t,
                b.jobs_in_progress as f64,
                Unit::Count,
            ));
            out.push(Datum::value(
                "BatchJobsQueued",
                vec![],
                t,
                b.jobs_queued as f64,
                Unit::Count,
            ));
            out.push(Datum::value(
                "BatchRecordsPending",
                vec![],
                t,
                b.records_pending as f64,
                Unit::Count,
            ));
        }
        out
    }
}
