//! Submitting queued jobs within the quota of concurrent jobs, and following submitted ones.

use domain::batch::{job_has_ended, truncated, Batch, JOB_QUEUED, MAX_REPORTED_CHARS};
use domain::error::JobError;
use domain::ports::{BatchJobs, JobRequest, ObjectStore};

use super::*;

/// Submits queued jobs in order until the quota says wait. A job refused outright fails; one
/// that met a quota or a passing fault stays queued for the next run.
pub async fn submit_queued<J: BatchJobs, S: ObjectStore>(
    jobs: &J,
    store: &S,
    batch: &mut Batch,
    settings: &BatchSettings,
) {
    let output_uri = store.uri(&output_prefix(&batch.batch_id));
    for job in batch.jobs.iter_mut().filter(|j| j.status == JOB_QUEUED) {
        let request = JobRequest {
            name: job.name.clone(),
            model_id: batch.model_id.clone(),
            role_arn: settings.role_arn.clone(),
            input_uri: store.uri(&job.input_key),
            output_uri: output_uri.clone(),
            client_request_token: job.name.clone(),
            timeout_hours: settings.timeout_hours,
        };
        match jobs.create(&request).await {
            Ok(arn) => {
                job.arn = Some(arn);
                job.status = "Submitted".to_owned();
            }
            Err(JobError::Refused(message)) => {
                tracing::warn!(job = job.name, %message, "batch job refused");
                job.status = "Failed".to_owned();
                job.message = Some(truncated(&message, MAX_REPORTED_CHARS));
            }
            Err(error) => {
                tracing::info!(job = job.name, %error, "batch job stays queued");
                break;
            }
        }
    }
}

/// Brings every unended job's state up to date from Bedrock.
pub async fn poll_jobs<J: BatchJobs>(jobs: &J, batch: &mut Batch) {
    for job in batch.jobs.iter_mut() {
        let Some(arn) = job.arn.clone().filter(|_| !job_has_ended(&job.status)) else {
            continue;
        };
        match jobs.get(&arn).await {
            Ok(state) => {
                job.status = state.status;
                job.message = state
                    .message
                    .map(|message| truncated(&message, MAX_REPORTED_CHARS));
                job.processed = state.processed;
                job.succeeded = state.succeeded;
                job.failed = state.failed;
            }
            Err(error) => tracing::warn!(job = job.name, %error, "could not read batch job"),
        }
    }
}
