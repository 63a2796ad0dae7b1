use serde_json::Value;

use crate::config::Env;
use domain::batch::{Announcement, Batch, BatchRecord, BatchStatus};
use domain::error::StoreError;
use domain::ports::{BatchRegistry, ObjectStore};

use super::*;

#[test]
fn settings_name_the_variable_they_refuse() {
    let env = |pairs: &[(&'static str, &'static str)]| {
        Env::from_pairs(
            pairs
                .iter()
                .copied()
                .chain([("BATCH_ROLE_ARN", "arn:aws:iam::1:role/r")]),
        )
    };
    let settings = BatchSettings::from_env(&env(&[])).unwrap();
    assert_eq!((settings.min_records, settings.max_records), (100, 50_000));
    assert_eq!(settings.small_policy, SmallPolicy::Direct);
    assert_eq!(
        (
            settings.max_batch_records,
            settings.max_upload_bytes,
            settings.max_line_bytes
        ),
        (500_000, 1 << 30, 1 << 20)
    );
    for (name, value) in [
        ("BATCH_MAX_RECORDS", "10"),
        ("BATCH_TIMEOUT_HOURS", "12"),
        ("BATCH_SMALL_POLICY", "drop"),
        ("BATCH_PRICE_FACTOR", "2"),
        ("BATCH_MIN_RECORDS", "many"),
        ("BATCH_MAX_BATCH_RECORDS", "0"),
        ("BATCH_MAX_UPLOAD_BYTES", "-1"),
        ("BATCH_MAX_LINE_BYTES", "0"),
        ("BATCH_MAX_LINE_BYTES", "2000000000000"),
        ("LOCAL_CALLER_ARN", "alice"),
    ] {
        let err = BatchSettings::from_env(&env(&[(name, value)])).unwrap_err();
        assert_eq!(err.variable, name);
    }
    assert_eq!(
        BatchSettings::from_env(&Env::default())
            .unwrap_err()
            .variable,
        "BATCH_ROLE_ARN"
    );
}

#[test]
fn job_names_name_their_batch() {
    let name = job_name("0a1b2c", 3);
    assert_eq!(name, "b0a1b2c-3");
    assert_eq!(batch_id_of_job(&name), Some("0a1b2c"));
    assert_eq!(batch_id_of_job("other"), None);
    assert_ne!(batch_id_for(&[b"ab", b"c"]), batch_id_for(&[b"a", b"bc"]));
    assert_eq!(batch_id_for(&[b"x"]).len(), 20);
}

#[tokio::test]
async fn a_line_over_the_limit_is_handed_out_cut_and_the_reader_goes_on_past_it() {
    let bucket = test_support::batch::Bucket::default();
    // The long line spans two chunks and has no end before the file's; the next is short.
    let long = "x".repeat(usize::try_from(READ_CHUNK_BYTES).unwrap() + 10);
    let text = format!("{{\"a\":1}}\n{long}\nshort\n{long}");
    bucket.put("k", text.clone().into_bytes()).await.unwrap();
    let mut reader = LineReader::new(&bucket, "k", text.len() as u64).with_max_line(16);
    let mut seen = Vec::new();
    while let Some(lines) = reader.next_lines().await.unwrap() {
        seen.extend(lines.into_iter().map(|(n, l)| (n, l.len())));
    }
    assert_eq!(seen, [(1, 7), (2, 17), (3, 5), (4, 17)]);
}

/// The batch flow over test-support's in-memory ports: a registry that writes conditionally as
/// DynamoDB does, a bucket, jobs that have all completed, and a publisher that can fail.
mod announcing {
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use test_support::batch::{Bucket, Bus, Completed, Registry};

    use super::*;
    use crate::adapters::clock::ManualClock;

    const T0: i64 = 1_780_000_000;

    fn settings() -> BatchSettings {
        BatchSettings::from_env(&Env::from_pairs([(
            "BATCH_ROLE_ARN",
            "arn:aws:iam::123456789012:role/r",
        )]))
        .unwrap()
    }

    fn records() -> Vec<BatchRecord> {
        (0..3)
            .map(|i| BatchRecord {
                record_id: format!("r{i}"),
                model_input: json!({"messages": [{"role": "user", "content": [{"text": "q"}]}]}),
            })
            .collect()
    }

    /// A registered batch of one job that Bedrock has finished, its output written out of
    /// order; `submitted` false leaves the job queued (never started).
    async fn registered(bucket: &Bucket, registry: &Registry, submitted: bool) -> Batch {
        registered_as("0a1b2c", bucket, registry, submitted).await
    }

    async fn registered_as(
        batch_id: &str,
        bucket: &Bucket,
        registry: &Registry,
        submitted: bool,
    ) -> Batch {
        let mut batch: Batch = serde_json::from_value(json!({
            "batchId": batch_id, "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "source": "api", "status": "InProgress", "jobs": [], "recordCount": 3,
            "createdAt": T0 - 600, "updatedAt": T0 - 600, "version": 1
        }))
        .unwrap();
        prepare_jobs(bucket, &mut batch, &records(), 100)
            .await
            .unwrap();
        if submitted {
            let job = &mut batch.jobs[0];
            job.arn = Some(format!(
                "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{}",
                job.name
            ));
            job.status = "InProgress".into();
            let out: Vec<String> = ["r2", "r0", "r1"]
                .iter()
                .map(|id| {
                    json!({"recordId": id, "modelInput": {}, "modelOutput": {
                        "output": {"message": {"role": "assistant", "content": [{"text": format!("answer {id}")}]}},
                        "stopReason": "end_turn",
                        "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}}})
                    .to_string()
                })
                .collect();
            let key = format!(
                "{}{}/part-0000.jsonl.out",
                output_prefix(&batch.batch_id),
                batch.jobs[0].job_id().unwrap()
            );
            bucket.put(&key, out.join("\n").into_bytes()).await.unwrap();
        } else {
            batch.status = BatchStatus::Queued;
        }
        assert!(registry.create(&batch).await.unwrap());
        batch
    }

    async fn results(bucket: &Bucket, batch: &Batch) -> Vec<Value> {
        let bytes = bucket
            .get(batch.results_key.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        lines(&bytes).collect()
    }

    #[tokio::test]
    async fn a_failed_announcement_leaves_the_batch_ended_readable_and_pending() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, true).await;
        let bus = Bus::failing(&registry, 1);

        let batch = refresh(
            &Completed,
            &bucket,
            &registry,
            &bus,
            "0a1b2c",
            &settings(),
            T0,
        )
        .await
        .expect("a failed announcement does not fail the refresh");

        assert_eq!(batch.status, BatchStatus::Completed);
        assert_eq!(batch.announcement, Some(Announcement::Pending));
        assert_eq!(
            registry.stored("0a1b2c"),
            batch,
            "the final state is written"
        );
        let writes = registry.writes();
        assert_eq!(
            writes.len(),
            1,
            "one write: the end, with its announcement pending"
        );
        assert!(writes[0].status.is_final() && writes[0].announcement_pending());
        let lines = results(&bucket, &batch).await;
        let ids: Vec<&str> = lines
            .iter()
            .map(|l| l["recordId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["r0", "r1", "r2"], "merged, in input order");
        assert_eq!(lines[1]["text"], "answer r1");
        assert_eq!(batch.summary.as_ref().map(|s| s.succeeded), Some(3));
        assert_eq!((bus.calls(), bus.published().len()), (1, 0));
    }

    #[tokio::test]
    async fn the_next_refresh_announces_a_pending_end_once() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, true).await;
        let bus = Bus::failing(&registry, 1);
        let ended = refresh(
            &Completed,
            &bucket,
            &registry,
            &bus,
            "0a1b2c",
            &settings(),
            T0,
        )
        .await
        .unwrap();
        assert!(ended.announcement_pending());

        // A later run (a job event or the schedule) publishes it and records it.
        let later = T0 + 300;
        let announced = refresh(
            &Completed,
            &bucket,
            &registry,
            &bus,
            "0a1b2c",
            &settings(),
            later,
        )
        .await
        .unwrap();
        assert_eq!(announced.announcement, Some(Announcement::Announced));
        assert_eq!(registry.stored("0a1b2c"), announced);
        assert_eq!(announced.version, ended.version + 1, "a conditional write");
        assert_eq!(
            announced.updated_at, ended.updated_at,
            "recording the announcement leaves the end where it was"
        );
        assert_eq!(announced.results_key, ended.results_key);
        let published = bus.published();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0]["status"], "Completed");
        assert_eq!(published[0]["resultsKey"], json!(ended.results_key));

        // Announced once: later runs publish nothing and write nothing.
        let writes = registry.writes().len();
        refresh(
            &Completed,
            &bucket,
            &registry,
            &bus,
            "0a1b2c",
            &settings(),
            later + 300,
        )
        .await
        .unwrap();
        assert_eq!((bus.calls(), bus.published().len()), (2, 1));
        assert_eq!(registry.writes().len(), writes);
    }

    #[tokio::test]
    async fn the_schedule_retries_a_pending_announcement_once_a_run_until_it_goes_out() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, true).await;
        let bus = Bus::failing(&registry, 2);
        let clock = ManualClock::at(Utc.timestamp_opt(T0, 0).unwrap());
        let settings = settings();
        let run = || sweep(&Completed, &bucket, &registry, &bus, &clock, &settings);

        let first = run().await.unwrap();
        assert_eq!(
            first,
            Sweep {
                advanced: 1,
                unannounced: 1,
                failed: 0
            },
            "ended and merged; EventBridge refused"
        );
        assert!(registry.stored("0a1b2c").status.is_final());
        let writes = registry.writes().len();
        clock.advance(chrono::Duration::minutes(5));
        let second = run().await.unwrap();
        assert_eq!(
            second,
            Sweep {
                advanced: 1,
                unannounced: 1,
                failed: 0
            }
        );
        assert_eq!(
            registry.writes().len(),
            writes,
            "a failed try writes nothing"
        );
        clock.advance(chrono::Duration::minutes(5));
        let third = run().await.unwrap();
        assert_eq!(
            third,
            Sweep {
                advanced: 1,
                unannounced: 0,
                failed: 0
            }
        );
        assert_eq!(
            registry.stored("0a1b2c").announcement,
            Some(Announcement::Announced)
        );
        assert_eq!(
            run().await.unwrap(),
            Sweep::default(),
            "nothing left to follow"
        );
        assert_eq!((bus.calls(), bus.published().len()), (3, 1));
    }

    #[tokio::test]
    async fn a_run_stops_announcing_at_eventbridges_first_failure() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        for id in ["0a1b2c", "3d4e5f"] {
            registered_as(id, &bucket, &registry, true).await;
        }
        let bus = Bus::failing(&registry, 1);
        let clock = ManualClock::at(Utc.timestamp_opt(T0, 0).unwrap());
        let settings = settings();
        let run = || sweep(&Completed, &bucket, &registry, &bus, &clock, &settings);

        let down = run().await.unwrap();
        assert_eq!(
            down,
            Sweep {
                advanced: 2,
                unannounced: 2,
                failed: 0
            },
            "both ended and merged"
        );
        assert_eq!(bus.calls(), 1, "one failed call, not one a batch");
        for id in ["0a1b2c", "3d4e5f"] {
            let stored = registry.stored(id);
            assert!(
                stored.status.is_final() && stored.announcement_pending(),
                "{id}"
            );
        }
        let up = run().await.unwrap();
        assert_eq!(
            up,
            Sweep {
                advanced: 2,
                unannounced: 0,
                failed: 0
            }
        );
        assert_eq!((bus.calls(), bus.published().len()), (3, 2));
    }

    #[tokio::test]
    async fn an_announcement_failure_names_eventbridge() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, true).await;
        let bus = Bus::failing(&registry, 2);
        let ended = refresh(
            &Completed,
            &bucket,
            &registry,
            &bus,
            "0a1b2c",
            &settings(),
            T0,
        )
        .await
        .unwrap();
        let error = announce(&registry, &bus, &ended).await.unwrap_err();
        assert!(matches!(error, BatchError::Events(_)), "{error:?}");
        assert_eq!(error.to_string(), "EventBridge PutEvents: dispatch failure");
        // Not the bucket's failure, which reads like this:
        assert_eq!(
            BatchError::from(StoreError("dispatch failure".into())).to_string(),
            "object store: dispatch failure"
        );
        assert!(registry.stored("0a1b2c").announcement_pending());
    }

    #[tokio::test]
    async fn a_batch_another_run_announced_meanwhile_is_recorded_once() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, true).await;
        let bus = Bus::failing(&registry, 1);
        let ended = refresh(
            &Completed,
            &bucket,
            &registry,
            &bus,
            "0a1b2c",
            &settings(),
            T0,
        )
        .await
        .unwrap();
        let announced = announce(&registry, &bus, &ended).await.unwrap();
        assert_eq!(announced.announcement, Some(Announcement::Announced));
        let writes = registry.writes().len();
        // A run that read the batch before: it publishes again (at least once), but finds
        // the record written and writes nothing.
        let stale = announce(&registry, &bus, &ended).await.unwrap();
        assert_eq!(stale, announced);
        assert_eq!(registry.writes().len(), writes);
        assert_eq!(bus.published().len(), 2);
    }

    #[tokio::test]
    async fn an_item_written_before_announcements_were_recorded_is_not_announced_again() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        let old: Batch = serde_json::from_value(json!({
            "batchId": "old", "modelId": "m", "source": "api", "status": "Completed",
            "jobs": [], "recordCount": 1, "resultsKey": "batch-results/old/results.jsonl",
            "createdAt": 1, "updatedAt": 2, "version": 3
        }))
        .unwrap();
        registry.create(&old).await.unwrap();
        let bus = Bus::failing(&registry, 0);
        let read = refresh(&Completed, &bucket, &registry, &bus, "old", &settings(), T0)
            .await
            .unwrap();
        assert_eq!(read, old);
        let clock = ManualClock::at(Utc.timestamp_opt(T0, 0).unwrap());
        let run = sweep(&Completed, &bucket, &registry, &bus, &clock, &settings())
            .await
            .unwrap();
        assert_eq!(run, Sweep::default());
        assert_eq!(bus.calls(), 0);
    }

    #[tokio::test]
    async fn a_stopped_batch_whose_jobs_never_started_is_merged_and_announced() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, false).await;
        let stopped = stop_batch(&Completed, &registry, "0a1b2c", T0)
            .await
            .unwrap();
        assert_eq!(
            stopped.status,
            BatchStatus::Stopping,
            "not ended before its results are written"
        );
        let bus = Bus::failing(&registry, 0);
        let batch = refresh(
            &Completed,
            &bucket,
            &registry,
            &bus,
            "0a1b2c",
            &settings(),
            T0 + 60,
        )
        .await
        .unwrap();
        assert_eq!(batch.status, BatchStatus::Stopped);
        assert_eq!(batch.announcement, Some(Announcement::Announced));
        let lines = results(&bucket, &batch).await;
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l["error"]["code"] == "NotProcessed"));
        assert_eq!(bus.published().len(), 1);
    }
}
