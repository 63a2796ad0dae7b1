//! A tenant's batches count against its monthly budget: batch-submit reserves a batch's
//! estimated cost before anything is submitted, and batch-status settles it to what the batch
//! cost once it ended. Batches of IAM callers have no budget.

use chrono::{DateTime, Utc};

use domain::batch::{Batch, BudgetHold};
use domain::error::{RegistryError, TenancyError};
use domain::identity::owner_tenant;
use domain::limits::TokenEstimate;
use domain::ports::{BatchBudgets, BatchRegistry, SpendLedger, TenantKeyStore};
use domain::tenancy::{
    batch_terms, month_of, BatchBudgetAnswer, BatchTerms, Reservation, Reserved,
};

use super::*;

/// The budgets of [`batch_terms`] over the tenant keys, reserved and settled in the spend ledger
/// invoke-with-cache writes: one budget, whichever way a tenant spends it.
pub struct LedgerBudgets<K, L> {
    pub keys: K,
    pub ledger: L,
}

impl<K: TenantKeyStore, L: SpendLedger> BatchBudgets for LedgerBudgets<K, L> {
    async fn reserve(
        &self,
        tenant: &str,
        model: &str,
        month: &str,
        reservation: &Reservation,
        now_epoch: i64,
    ) -> Result<BatchBudgetAnswer, TenancyError> {
        // Every key of every tenant: uploads are rare, and the keys table is small.
        let keys = self.keys.list().await?;
        let budget_usd = match batch_terms(&keys, tenant, model) {
            BatchTerms::Allowed {
                budget_usd: Some(budget),
            } => budget,
            BatchTerms::Allowed { budget_usd: None } => return Ok(BatchBudgetAnswer::Unlimited),
            refused => return Ok(BatchBudgetAnswer::NotAllowed(refused)),
        };
        match self
            .ledger
            .reserve(tenant, month, reservation, budget_usd, now_epoch)
            .await?
        {
            Reserved::Refused { committed_usd } => Ok(BatchBudgetAnswer::Refused {
                budget_usd,
                committed_usd,
            }),
            Reserved::Held | Reserved::HeldLocally => Ok(BatchBudgetAnswer::Held),
        }
    }

    async fn settle(
        &self,
        batch_id: &str,
        hold: &BudgetHold,
        actual_usd: f64,
    ) -> Result<(), TenancyError> {
        self.ledger
            .settle(
                &hold.tenant,
                &hold.month,
                &hold.reservation(batch_id),
                Reserved::Held,
                actual_usd,
            )
            .await
            .map(|_| ())
    }
}

/// No budgets (tenant keys off): a batch of a tenant runs unbudgeted, as its requests would.
#[derive(Debug, Clone, Copy)]
pub enum NoBudgets {}

impl BatchBudgets for NoBudgets {
    async fn reserve(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &Reservation,
        _: i64,
    ) -> Result<BatchBudgetAnswer, TenancyError> {
        match *self {}
    }

    async fn settle(&self, _: &str, _: &BudgetHold, _: f64) -> Result<(), TenancyError> {
        match *self {}
    }
}

/// Reserves a tenant batch's estimated cost (`estimate` at the batch price, on-demand for a
/// direct batch) and records the hold on `batch`. `Ok(Some(reason))`: the batch must be
/// rejected, for that reason; `Err`: the budget could not be read, worth a retry. A batch of
/// anyone but a tenant, or without budgets, passes as it is.
pub async fn hold_budget<B: BatchBudgets>(
    budgets: Option<&B>,
    batch: &mut Batch,
    estimate: TokenEstimate,
    settings: &BatchSettings,
    now: DateTime<Utc>,
) -> Result<Option<String>, BatchError> {
    let (Some(tenant), Some(budgets)) = (owner_tenant(&batch.owner), budgets) else {
        return Ok(None);
    };
    let Some(price) = settings.prices.price(&batch.model_id) else {
        return Ok(Some(format!(
            "model {:?} has no price, so the batch cannot count against tenant {tenant:?}'s budget; the operator must add it to MODEL_PRICES",
            batch.model_id
        )));
    };
    let factor = if batch.direct {
        1.0
    } else {
        settings.price_factor
    };
    let reserved_usd = (estimate.input as f64 / 1000.0 * price.input_per_1k
        + estimate.output as f64 / 1000.0 * price.output_per_1k)
        * factor;
    let hold = BudgetHold {
        tenant: tenant.clone(),
        month: month_of(now),
        reserved_usd,
        // A batch's jobs run for at most `timeout_hours` once started; a day more for the
        // queue and the merge. A reservation never settled stops counting then.
        expires_at: now.timestamp() + (i64::from(settings.timeout_hours) + 24) * 3600,
        settled: false,
    };
    let answer = budgets
        .reserve(
            &tenant,
            &batch.model_id,
            &hold.month,
            &hold.reservation(&batch.batch_id),
            now.timestamp(),
        )
        .await
        .map_err(BatchError::Budget)?;
    Ok(match answer {
        BatchBudgetAnswer::Held => {
            batch.budget = Some(hold);
            None
        }
        BatchBudgetAnswer::Unlimited => None,
        BatchBudgetAnswer::Refused {
            budget_usd,
            committed_usd,
        } => Some(format!(
            "the batch may cost up to ${reserved_usd:.4} ({} input and {} output tokens at most), more than tenant {tenant:?}'s monthly budget of ${budget_usd:.2} leaves (${committed_usd:.4} spent or reserved); give records a smaller inferenceConfig.maxTokens, split the upload, or ask the operator for a larger budget",
            estimate.input, estimate.output
        )),
        BatchBudgetAnswer::NotAllowed(BatchTerms::ModelNotAllowed) => Some(format!(
            "no live key of tenant {tenant:?} may use model {:?}",
            batch.model_id
        )),
        BatchBudgetAnswer::NotAllowed(_) => Some(format!(
            "tenant {tenant:?} has no live key, so it may spend nothing; the operator issues one with tools/tenant-keys"
        )),
    })
}

/// Settles the budget hold of a batch that ended, once: the hold is first marked settled with a
/// conditional write, so of two runs ending the batch at once only the one whose write wins
/// settles. A settlement the ledger then refuses is logged with what it owed (the reservation
/// counted the batch's most until it expires). A conflict leaves the hold for the next run.
pub async fn settle_budget<R: BatchRegistry, B: BatchBudgets>(
    registry: &R,
    budgets: Option<&B>,
    batch: Batch,
) -> Batch {
    let (Some(budgets), Some(hold)) = (budgets, batch.budget.clone()) else {
        return batch;
    };
    if !batch.status.is_final() || hold.settled {
        return batch;
    }
    let actual_usd = batch.summary.as_ref().map_or(0.0, |s| s.cost_usd);
    let mut claimed = batch.clone();
    if let Some(hold) = claimed.budget.as_mut() {
        hold.settled = true;
    }
    claimed.version += 1;
    match registry.update(&claimed).await {
        Ok(()) => {}
        Err(RegistryError::Conflict) => return batch,
        Err(error) => {
            tracing::warn!(batch_id = batch.batch_id, %error, "budget not settled yet; the next run tries again");
            return batch;
        }
    }
    if let Err(error) = budgets.settle(&batch.batch_id, &hold, actual_usd).await {
        tracing::error!(
            batch_id = batch.batch_id,
            tenant = hold.tenant,
            month = hold.month,
            owed_usd = actual_usd,
            %error,
            "batch cost not recorded in the spend ledger; its reservation counts until it expires"
        );
    }
    claimed
}
