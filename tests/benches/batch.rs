//! `make bench`: batch-submit and batch-status's merge at 5,000 and 500,000 records, against
//! the local stack: records a second and peak memory, beside baselines measured in the same run
//! (a serde round trip of the same records; the size of the input), and the merge's peak at
//! 500,000 records over its peak at 5,000 beside the goal (issue 17: at most 1.2).
//!
//! Peak memory is the process's resident high-water mark (`VmHWM`), reset before each phase
//! through `/proc/self/clear_refs`, so each row is that phase's own peak.
//!
//! The merge's batch is written by the bench straight to the local S3 (moto), not run through
//! the emulator: each job's input as batch-submit writes it (jobs of `BATCH_MAX_RECORDS`) and
//! each job's output as Bedrock writes it (one `.jsonl.out` a job, the lines shuffled, answers
//! in Converse's shape), through the same part-by-part writer the merge uses, so preparing
//! it holds one part. Through the emulator (a debug build under `scripts/with-stack.sh`) half
//! a million answers and ten jobs take minutes before the merge starts, and the submit phase
//! before it would leave its own memory in the process the merge is measured in. The merges
//! run first, both sizes, then the baselines and the submits (the emulator leaves those jobs
//! waiting); every merge's batch is written before the first merge, so that the two merges
//! start from the same state of the process. Each size's submit runs before its baseline, whose
//! freed heap would otherwise stay resident under the submit's peak. The table shows the phases
//! in their usual order.
//! `BATCH_BENCH_RECORDS` (e.g. `5000,50000`) sets other sizes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use domain::batch::{job_sizes, Batch, BatchRecord};
use domain::ports::ObjectStore;
use integration_tests::batch::BatchHarness;
use integration_tests::invoke::{unique, HAIKU};
use integration_tests::Emulator;
use serde_json::{json, Value};
use shared::batch::{
    batch_id_for, merge_results, output_prefix, queued_job, BatchSettings, ObjectWriter,
};

/// The merge's goal: its peak at the largest size over its peak at the smallest.
const GOAL_RATIO: f64 = 1.2;

fn reset_peak_memory() {
    // "5" resets the peak resident set size (Linux 4.0+); without it, peaks only grow.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_memory_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn prompt(run: &str, i: usize) -> String {
    format!("{run}: summarise ticket {i} in one line")
}

/// The upload, as bytes only: the bench holds nothing else that would count in the peaks.
fn input(count: usize) -> Vec<u8> {
    let run = unique("bench");
    (0..count)
        .map(|i| {
            let record = json!({"recordId": format!("rec-{i:06}"), "prompt": prompt(&run, i)});
            format!("{record}\n")
        })
        .collect::<String>()
        .into_bytes()
}

const WORDS: [&str; 16] = [
    "the", "customer", "asks", "for", "a", "refund", "of", "their", "order", "which", "arrived",
    "late", "and", "damaged", "after", "shipping",
];

/// Record `i` of the merge's batch as batch-submit writes it, and its output line as Bedrock
/// writes it (the emulator's shape: the input echoed, the answer, usage, latency).
fn record_and_output(run: &str, i: usize) -> (String, String) {
    let record = BatchRecord {
        record_id: format!("rec-{i:06}"),
        model_input: json!({"messages": [{"role": "user", "content": [{"text": prompt(run, i)}]}]}),
    };
    let text: Vec<&str> = (0..40).map(|w| WORDS[(i + w * 7) % WORDS.len()]).collect();
    let output = json!({
        "recordId": record.record_id,
        "modelInput": record.model_input,
        "modelOutput": {
            "output": {"message": {"role": "assistant", "content": [{"text": format!("Ticket {i}: {}.", text.join(" "))}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 14, "outputTokens": 52, "totalTokens": 66},
            "metrics": {"latencyMs": 350 + i % 400},
        },
    });
    (serde_json::to_string(&record).unwrap(), output.to_string())
}

/// A deterministic shuffle of `0..n`, as Bedrock's output is in no particular order.
fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut state = seed | 1;
    for i in (1..n).rev() {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let j = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Writes a batch of `count` records whose jobs have all completed: each job's input and its
/// shuffled output, part by part. The batch, as batch-status finds it once every job ended.
async fn completed_batch<S: ObjectStore>(
    store: &S,
    settings: &BatchSettings,
    count: usize,
) -> Batch {
    let run = unique("merge bench");
    let batch_id = batch_id_for(&[run.as_bytes(), &count.to_le_bytes()]);
    let mut batch: Batch = serde_json::from_value(json!({
        "batchId": batch_id, "modelId": HAIKU, "source": "api", "status": "InProgress",
        "jobs": [], "recordCount": count, "createdAt": 1, "updatedAt": 1, "version": 1
    }))
    .unwrap();
    let mut first = 0;
    for (index, size) in job_sizes(count, settings.max_records)
        .into_iter()
        .enumerate()
    {
        let mut job = queued_job(&batch_id, index, size);
        let job_id = format!("bench{index}");
        job.arn = Some(format!(
            "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{job_id}"
        ));
        job.status = "Completed".into();
        let mut inputs = ObjectWriter::new(store, job.input_key.clone());
        for i in first..first + size {
            let (record, _) = record_and_output(&run, i);
            inputs
                .write(format!("{record}\n").as_bytes())
                .await
                .unwrap();
        }
        inputs.finish().await.unwrap();
        let prefix = format!("{}{job_id}/", output_prefix(&batch_id));
        let mut outputs = ObjectWriter::new(store, format!("{prefix}part-{index:04}.jsonl.out"));
        for offset in shuffled(size, index as u64 + 1) {
            let (_, output) = record_and_output(&run, first + offset as usize);
            outputs
                .write(format!("{output}\n").as_bytes())
                .await
                .unwrap();
        }
        outputs.finish().await.unwrap();
        let manifest = json!({"totalRecordCount": size, "processedRecordCount": size,
            "successRecordCount": size, "errorRecordCount": 0});
        store
            .put(
                &format!("{prefix}manifest.json.out"),
                manifest.to_string().into_bytes(),
            )
            .await
            .unwrap();
        batch.jobs.push(job);
        first += size;
    }
    batch
}

struct Row {
    phase: String,
    records: usize,
    seconds: f64,
    peak_mib: f64,
}

fn counts() -> Vec<usize> {
    std::env::var("BATCH_BENCH_RECORDS")
        .ok()
        .map(|v| v.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| vec![5_000, 500_000])
}

#[tokio::main]
async fn main() {
    let emulator = Emulator::reset().await;
    // The submitted jobs wait: nothing runs beside the phases measured.
    emulator.configure(json!({"batchStepMs": 3_600_000})).await;
    let harness = BatchHarness::new(&[]).await;
    let counts = counts();

    // Every batch first, then the merges one after the other: each merge starts from the same
    // state of the process, and only the batch's size differs between them.
    let mut batches = Vec::new();
    for &count in &counts {
        let started = Instant::now();
        let batch = completed_batch(&harness.status.store, &harness.status.settings, count).await;
        batches.push((batch, started.elapsed().as_secs_f64()));
    }
    let mut merges = Vec::new();
    for (&count, (batch, prepared)) in counts.iter().zip(batches) {
        reset_peak_memory();
        let started = Instant::now();
        let (key, summary) = merge_results(&harness.status.store, &batch, &harness.status.settings)
            .await
            .unwrap();
        let row = Row {
            phase: "merge (read outputs, join by id, write results)".into(),
            records: count,
            seconds: started.elapsed().as_secs_f64(),
            peak_mib: peak_memory_mib(),
        };
        assert_eq!(
            (summary.total, summary.succeeded),
            (count as u64, count as u64)
        );
        let size = harness.status.store.info(&key).await.unwrap().unwrap().size;
        println!(
            "merge of {count} records ({} jobs, prepared in {prepared:.1} s): results.jsonl {:.1} MiB",
            batch.jobs.len(),
            size as f64 / (1024.0 * 1024.0)
        );
        merges.push(row);
    }

    let mut rows = Vec::new();
    for (&count, merge) in counts.iter().zip(merges) {
        let bytes = input(count);
        let input_mib = bytes.len() as f64 / (1024.0 * 1024.0);

        // The submit first: the baseline's freed heap stays resident, and a peak measured
        // after it would be the baseline's.
        let key = format!(
            "batch-input/tenant/bench/{count}-{}.jsonl",
            unique("b").replace([' ', ':', '#'], "-")
        );
        reset_peak_memory();
        let started = Instant::now();
        harness.upload(&key, bytes, Some(HAIKU), 1).await;
        let submit = Row {
            phase: "submit (upload event: read, check, write, create job)".into(),
            records: count,
            seconds: started.elapsed().as_secs_f64(),
            peak_mib: peak_memory_mib(),
        };

        let bytes = input(count);
        reset_peak_memory();
        let started = Instant::now();
        let round_trip: Vec<Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let _ = serde_json::to_vec(&round_trip).unwrap();
        rows.push(Row {
            phase: "baseline: parse + serialise".into(),
            records: count,
            seconds: started.elapsed().as_secs_f64(),
            peak_mib: peak_memory_mib(),
        });
        drop(round_trip);
        rows.push(submit);
        rows.push(merge);
        println!("input of {count} records: {input_mib:.1} MiB");
    }
    println!(
        "\nBatch throughput and peak memory (bench profile; moto and the emulator on loopback)"
    );
    println!(
        "{:<56} {:>8} {:>9} {:>12} {:>14} {:>10}",
        "phase", "records", "seconds", "records/s", "rate/baseline", "peak MiB"
    );
    for chunk in rows.chunks(3) {
        let baseline = chunk[0].records as f64 / chunk[0].seconds;
        for row in chunk {
            let rate = row.records as f64 / row.seconds;
            println!(
                "{:<56} {:>8} {:>9.2} {:>12.0} {:>14.3} {:>10.1}",
                row.phase,
                row.records,
                row.seconds,
                rate,
                rate / baseline,
                row.peak_mib
            );
        }
    }
    let merge_peak = |count: usize| {
        rows.iter()
            .find(|r| r.records == count && r.phase.starts_with("merge"))
            .map_or(f64::NAN, |r| r.peak_mib)
    };
    if let (Some(&smallest), Some(&largest)) = (counts.first(), counts.last()) {
        let ratio = merge_peak(largest) / merge_peak(smallest);
        println!(
            "\nmerge peak at {largest} records / at {smallest}: {:.1} / {:.1} MiB = {ratio:.2} (goal: at most {GOAL_RATIO:.1}: {})",
            merge_peak(largest),
            merge_peak(smallest),
            if ratio <= GOAL_RATIO { "met" } else { "NOT met" }
        );
    }
}
