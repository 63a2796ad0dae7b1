//! Merging the jobs' output into one `results.jsonl` in input order, by record id.

use std::collections::HashMap;

use serde_json::Value;

use domain::batch::{Batch, BatchSummary, ResultLine};
use domain::ports::ObjectStore;

use super::*;

pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = Value> + '_ {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice(l).ok())
}

/// Joins each job's output to its input by `recordId` and writes one `results.jsonl`, every
/// input record once, in input order; a record without output is an error line.
pub async fn merge_results<S: ObjectStore>(
    store: &S,
    batch: &Batch,
    settings: &BatchSettings,
) -> Result<(String, BatchSummary), BatchError> {
    let mut out = Vec::new();
    let mut summary = BatchSummary::default();
    for job in &batch.jobs {
        let mut outputs: HashMap<String, ResultLine> = HashMap::new();
        if let Some(job_id) = job.job_id() {
            let prefix = format!("{}{job_id}/", output_prefix(&batch.batch_id));
            for key in store.list(&prefix).await? {
                if !key.ends_with(".jsonl.out") {
                    continue;
                }
                let bytes = store.get(&key).await?.unwrap_or_default();
                for line in lines(&bytes).filter_map(|l| ResultLine::from_output_line(&l)) {
                    outputs.insert(line.record_id.clone(), line);
                }
            }
        }
        let input = store.get(&job.input_key).await?.unwrap_or_default();
        for record in lines(&input) {
            let Some(id) = record.get("recordId").and_then(Value::as_str) else {
                continue;
            };
            let line = outputs.remove(id).unwrap_or_else(|| {
                let why = job.message.clone().unwrap_or_else(|| {
                    format!(
                        "the job ended {} before this record was answered",
                        job.status
                    )
                });
                ResultLine::failed(id.to_owned(), "NotProcessed", why)
            });
            add_to_summary(&mut summary, &line, &batch.model_id, settings, batch.direct);
            if let Ok(json) = serde_json::to_vec(&line) {
                out.extend_from_slice(&json);
                out.push(b'\n');
            }
        }
    }
    let key = results_key(&batch.batch_id);
    store.put(&key, out).await?;
    Ok((key, summary))
}

pub(crate) fn add_to_summary(
    summary: &mut BatchSummary,
    line: &ResultLine,
    model_id: &str,
    settings: &BatchSettings,
    direct: bool,
) {
    summary.total += 1;
    if line.error.is_some() {
        summary.failed += 1;
        return;
    }
    summary.succeeded += 1;
    if let Some(usage) = line.usage {
        summary.input_tokens += u64::from(usage.input_tokens);
        summary.output_tokens += u64::from(usage.output_tokens);
        let on_demand = settings.prices.cost(model_id, &usage).unwrap_or(0.0);
        summary.on_demand_cost_usd += on_demand;
        summary.cost_usd += if direct {
            on_demand
        } else {
            on_demand * settings.price_factor
        };
    }
}
