//! `make bench`: batch-submit and batch-status's merge at 5,000 and 50,000 records, against the
//! local stack: records a second and peak memory, beside baselines measured in the same run
//! (a serde round trip of the same records; the size of the input).
//!
//! Peak memory is the process's resident high-water mark (`VmHWM`), reset before each phase
//! through `/proc/self/clear_refs`, so each row is that phase's own peak.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use integration_tests::batch::BatchHarness;
use integration_tests::invoke::{unique, HAIKU};
use integration_tests::Emulator;
use serde_json::{json, Value};
use shared::batch::merge_results;

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

/// The upload, as bytes only: the bench holds nothing else that would count in the peaks.
fn input(count: usize) -> Vec<u8> {
    let run = unique("bench");
    (0..count)
        .map(|i| {
            let record = json!({"recordId": format!("rec-{i:06}"), "prompt": format!("{run}: summarise ticket {i} in one line")});
            format!("{record}\n")
        })
        .collect::<String>()
        .into_bytes()
}

struct Row {
    phase: String,
    records: usize,
    seconds: f64,
    peak_mib: f64,
}

#[tokio::main]
async fn main() {
    let emulator = Emulator::reset().await;
    emulator.configure(json!({"batchStepMs": 10})).await;
    let harness = BatchHarness::new(&[]).await;
    let mut rows = Vec::new();
    for count in [5_000usize, 50_000] {
        let bytes = input(count);
        let input_mib = bytes.len() as f64 / (1024.0 * 1024.0);

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

        let key = format!(
            "batch-input/tenant/bench/{count}-{}.jsonl",
            unique("b").replace([' ', ':', '#'], "-")
        );
        reset_peak_memory();
        let started = Instant::now();
        let batch_ids = harness.upload(&key, bytes, Some(HAIKU), 1).await;
        rows.push(Row {
            phase: "submit (upload event: read, check, write, create job)".into(),
            records: count,
            seconds: started.elapsed().as_secs_f64(),
            peak_mib: peak_memory_mib(),
        });

        let batch = harness.schedule_until_ended(&batch_ids[0]).await;
        reset_peak_memory();
        let started = Instant::now();
        merge_results(&harness.status.store, &batch, &harness.status.settings)
            .await
            .unwrap();
        rows.push(Row {
            phase: "merge (read outputs, join by id, write results)".into(),
            records: count,
            seconds: started.elapsed().as_secs_f64(),
            peak_mib: peak_memory_mib(),
        });
        println!("input of {count} records: {input_mib:.1} MiB");
    }
    println!(
        "\nBatch throughput and peak memory (bench profile; moto and the emulator on loopback)"
    );
    println!(
        "{:<56} {:>8} {:>12} {:>14} {:>10}",
        "phase", "records", "records/s", "rate/baseline", "peak MiB"
    );
    for chunk in rows.chunks(3) {
        let baseline = chunk[0].records as f64 / chunk[0].seconds;
        for row in chunk {
            let rate = row.records as f64 / row.seconds;
            println!(
                "{:<56} {:>8} {:>12.0} {:>14.3} {:>10.1}",
                row.phase,
                row.records,
                rate,
                rate / baseline,
                row.peak_mib
            );
        }
    }
}
