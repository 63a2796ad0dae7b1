//! A batch's life after submission: advancing it, writing it back conditionally, announcing
//! its end (retried, never at the cost of the merge), the schedule's sweep or fan-out, and
//! stopping.

use domain::batch::{job_has_ended, Announcement, Batch, BatchStatus};
use domain::error::RegistryError;
use domain::ports::{
    BatchBudgets, BatchJobs, BatchQueue, BatchRegistry, Clock, EventPublisher, ObjectStore,
};

use super::*;

/// One follow-up of a batch: poll its jobs, submit queued ones, and merge once all ended.
pub async fn advance<J: BatchJobs, S: ObjectStore>(
    jobs: &J,
    store: &S,
    batch: &mut Batch,
    settings: &BatchSettings,
) -> Result<(), BatchError> {
    // A direct batch has no jobs: its runs answer it ([`answer_direct`]).
    if batch.status.is_final() || batch.direct {
        return Ok(());
    }
    poll_jobs(jobs, batch).await;
    submit_queued(jobs, store, batch, settings).await;
    if batch.all_jobs_ended() && batch.results_key.is_none() {
        let (key, summary) = merge_results(store, batch, settings).await?;
        batch.results_key = Some(key);
        batch.summary = Some(summary);
    }
    batch.status = if batch.results_key.is_some() || !batch.all_jobs_ended() {
        batch.status_from_jobs()
    } else {
        BatchStatus::InProgress
    };
    Ok(())
}

/// Reads an unfinished batch, lets `change` change it (answering whether it did), and writes
/// it back over the version it read; again, from a fresh read, when another writer got there
/// first. A finished batch is returned as it is.
pub(crate) async fn update_batch<R, F, Fut>(
    registry: &R,
    batch_id: &str,
    now_epoch: i64,
    mut change: F,
) -> Result<Batch, BatchError>
where
    R: BatchRegistry,
    F: FnMut(Batch) -> Fut,
    Fut: std::future::Future<Output = Result<(Batch, bool), BatchError>>,
{
    for _ in 0..3 {
        let batch = registry
            .get(batch_id)
            .await?
            .ok_or_else(|| BatchError::NotFound(batch_id.to_owned()))?;
        if batch.status.is_final() {
            return Ok(batch);
        }
        let (mut batch, changed) = change(batch).await?;
        if !changed {
            return Ok(batch);
        }
        batch.version += 1;
        batch.updated_at = now_epoch;
        match registry.update(&batch).await {
            Ok(()) => return Ok(batch),
            Err(RegistryError::Conflict) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(RegistryError::Conflict.into())
}

/// Advances a batch and writes it back. The run that ends a batch writes its final state (its
/// merged results, in the same conditional write as ever) with its announcement pending, and
/// only then announces it ([`announce`]); a batch that ended earlier with its announcement still
/// pending is announced again. A failed announcement is logged naming the service and left
/// pending for the next run: it never fails the refresh, nor holds the results back.
pub async fn refresh<J: BatchJobs, S: ObjectStore, R: BatchRegistry, E: EventPublisher>(
    jobs: &J,
    store: &S,
    registry: &R,
    events: &E,
    batch_id: &str,
    settings: &BatchSettings,
    now_epoch: i64,
) -> Result<Batch, BatchError> {
    let batch = write_advanced(jobs, store, registry, batch_id, settings, now_epoch).await?;
    Ok(announce_or_log(registry, events, batch).await.0)
}

/// Advances an unfinished batch and writes it back; the write that ends it records its
/// announcement as pending. A finished batch is returned as it is.
async fn write_advanced<J: BatchJobs, S: ObjectStore, R: BatchRegistry>(
    jobs: &J,
    store: &S,
    registry: &R,
    batch_id: &str,
    settings: &BatchSettings,
    now_epoch: i64,
) -> Result<Batch, BatchError> {
    update_batch(registry, batch_id, now_epoch, |mut batch| async move {
        let before = batch.clone();
        advance(jobs, store, &mut batch, settings).await?;
        if batch.status.is_final() {
            batch.announcement = Some(Announcement::Pending);
        }
        let changed = batch != before;
        Ok((batch, changed))
    })
    .await
}

/// [`announce`], its failure logged: the batch as it now stands, and whether EventBridge itself
/// failed (not the registry).
async fn announce_or_log<R: BatchRegistry, E: EventPublisher>(
    registry: &R,
    events: &E,
    batch: Batch,
) -> (Batch, bool) {
    match announce(registry, events, &batch).await {
        Ok(announced) => (announced, false),
        Err(error) => {
            tracing::warn!(
                batch_id = batch.batch_id,
                %error,
                "batch end announcement still pending; the next run of batch-status tries again"
            );
            (batch, matches!(error, BatchError::Events(_)))
        }
    }
}

/// Publishes the end of a batch whose announcement is pending, then records it as announced: a
/// conditional write over the version read, again from a fresh read when another writer got
/// there first (a batch another run has announced meanwhile is left as it is). Any other batch
/// is returned as it is. On an error the announcement stays pending; an event published whose
/// record then failed is published again by the next run (at least once, as EventBridge
/// subscribers expect).
pub async fn announce<R: BatchRegistry, E: EventPublisher>(
    registry: &R,
    events: &E,
    batch: &Batch,
) -> Result<Batch, BatchError> {
    if !batch.announcement_pending() {
        return Ok(batch.clone());
    }
    events.batch_ended(batch).await?;
    let mut current = batch.clone();
    for _ in 0..3 {
        if !current.announcement_pending() {
            return Ok(current);
        }
        current.announcement = Some(Announcement::Announced);
        current.version += 1;
        // `updated_at` stays the end: metrics-publisher counts a batch in the period of its end
        // by it, and the registry's retention runs from it.
        match registry.update(&current).await {
            Ok(()) => return Ok(current),
            Err(RegistryError::Conflict) => {
                current = registry
                    .get(&batch.batch_id)
                    .await?
                    .ok_or_else(|| BatchError::NotFound(batch.batch_id.clone()))?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(RegistryError::Conflict.into())
}

/// What one run of the schedule did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Batches brought up to date (each advanced and written without error).
    pub advanced: usize,
    /// Of those, batches ended whose announcement is still pending after this run.
    pub unannounced: usize,
    /// Batches whose refresh failed: logged, and tried again by the next run.
    pub failed: usize,
}

/// The schedule's run: advances every open batch ([`Batch::is_open`]: not yet ended, or ended
/// with its announcement pending) and announces the ends still pending, so a missed event never
/// leaves a batch stuck and a failed announcement is retried by every run for as long as the
/// registry keeps the batch. Once EventBridge fails in a run, the run announces nothing more
/// (the rest waits for the next run): an outage costs one failed call a run, not one a batch.
#[allow(clippy::too_many_arguments)] // the ports of a run, and its settings
pub async fn sweep<J, S, R, E, C, B>(
    jobs: &J,
    store: &S,
    registry: &R,
    events: &E,
    clock: &C,
    budgets: Option<&B>,
    settings: &BatchSettings,
) -> Result<Sweep, BatchError>
where
    J: BatchJobs,
    S: ObjectStore,
    R: BatchRegistry,
    E: EventPublisher,
    C: Clock,
    B: BatchBudgets,
{
    let mut sweep = Sweep::default();
    let mut eventbridge_failed = false;
    for open in registry.unfinished().await? {
        let batch_id = open.batch_id.as_str();
        let now = clock.now().timestamp();
        let mut batch = match write_advanced(jobs, store, registry, batch_id, settings, now).await {
            Ok(batch) => batch,
            Err(error) => {
                sweep.failed += 1;
                tracing::warn!(batch_id, %error, "batch not advanced; the next run tries again");
                continue;
            }
        };
        if batch.announcement_pending() && !eventbridge_failed {
            let (announced, failed) = announce_or_log(registry, events, batch).await;
            batch = announced;
            eventbridge_failed |= failed;
        }
        let batch = settle_budget(registry, budgets, batch).await;
        sweep.advanced += 1;
        if batch.announcement_pending() {
            sweep.unannounced += 1;
        }
        tracing::info!(batch_id, status = ?batch.status, announcement = ?batch.announcement, "batch advanced");
    }
    Ok(sweep)
}

/// No queue: the schedule advances every batch itself ([`sweep`]), as under `make dev`.
#[derive(Debug, Clone, Copy)]
pub enum NoQueue {}

impl BatchQueue for NoQueue {
    async fn enqueue(&self, _: &[String]) -> Result<Vec<String>, domain::error::QueueError> {
        match *self {}
    }
}

/// What a run of the schedule that fans batches out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Open batches handed to the queue, one message each.
    pub queued: usize,
    /// Open batches the queue refused: the next run hands them out again.
    pub not_queued: usize,
}

/// The schedule's run when batches are fanned out ([`BatchQueue`]): every open batch
/// ([`Batch::is_open`]) becomes a message, and each is advanced (and its end announced) in an
/// invocation of its own, so one failing or huge batch never holds back another.
pub async fn fan_out<R: BatchRegistry, Q: BatchQueue>(
    registry: &R,
    queue: &Q,
) -> Result<FanOut, BatchError> {
    let open: Vec<String> = registry
        .unfinished()
        .await?
        .into_iter()
        .map(|batch| batch.batch_id)
        .collect();
    let refused = queue.enqueue(&open).await?;
    for batch_id in &refused {
        tracing::warn!(batch_id, "batch not queued; the next run queues it");
    }
    Ok(FanOut {
        queued: open.len() - refused.len(),
        not_queued: refused.len(),
    })
}

/// Stops a batch: queued jobs never start, running ones are asked to stop. The schedule and
/// events then follow them to `Stopped` and merge what was answered.
pub async fn stop_batch<J: BatchJobs, R: BatchRegistry>(
    jobs: &J,
    registry: &R,
    batch_id: &str,
    now_epoch: i64,
) -> Result<Batch, BatchError> {
    update_batch(registry, batch_id, now_epoch, |mut batch| async move {
        for job in batch.jobs.iter_mut().filter(|j| !job_has_ended(&j.status)) {
            match job.arn.as_deref() {
                None => job.status = "Stopped".to_owned(),
                Some(arn) => match jobs.stop(arn).await {
                    Ok(()) => job.status = "Stopping".to_owned(),
                    // Ended meanwhile: the next poll reads how.
                    Err(error) => tracing::info!(job = job.name, %error, "job not stopped"),
                },
            }
        }
        // Jobs that never started end at once; their batch still waits for the next run to
        // merge what was answered (every record, `NotProcessed`) and announce its end.
        batch.status = if batch.all_jobs_ended() {
            BatchStatus::Stopping
        } else {
            batch.status_from_jobs()
        };
        Ok((batch, true))
    })
    .await
}
