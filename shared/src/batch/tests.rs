use serde_json::Value;

use crate::config::Env;
use domain::batch::{Announcement, Batch, BatchRecord, BatchStatus, JobEntry, MAX_REPORTED_CHARS};
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
        ("RESERVE_MAX_TOKENS", "-1"),
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
    // 500,000 records in jobs of 100 would be 5,000 jobs: more than a registry item holds.
    let err = BatchSettings::from_env(&env(&[("BATCH_MAX_RECORDS", "100")])).unwrap_err();
    assert_eq!(err.variable, "BATCH_MAX_BATCH_RECORDS");
    assert!(err.to_string().contains("5000 jobs"), "{err}");
    let settings = BatchSettings::from_env(&env(&[
        ("BATCH_MAX_RECORDS", "100"),
        ("BATCH_MAX_BATCH_RECORDS", "10000"),
    ]))
    .unwrap();
    assert_eq!(settings.max_batch_records, 10_000);
    // Budgets need both tables.
    let err = BatchSettings::from_env(&env(&[("TENANT_KEYS_TABLE_NAME", "keys")])).unwrap_err();
    assert_eq!(err.variable, "SPEND_TABLE_NAME");
    let err = BatchSettings::from_env(&env(&[("SPEND_TABLE_NAME", "spend")])).unwrap_err();
    assert_eq!(err.variable, "TENANT_KEYS_TABLE_NAME");
}

#[test]
fn a_batch_of_the_most_jobs_with_the_longest_messages_fits_a_registry_item() {
    let job = |i: usize| JobEntry {
        name: format!("b{}-{i}", "f".repeat(64)),
        arn: Some(format!(
            "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{}",
            "j".repeat(12)
        )),
        status: "Failed".into(),
        input_key: format!("batch-jobs/{}/{i}.jsonl", "f".repeat(64)),
        record_count: 50_000,
        processed: 50_000,
        succeeded: 49_000,
        failed: 1_000,
        message: Some(domain::batch::truncated(
            &"é".repeat(5_000),
            MAX_REPORTED_CHARS,
        )),
    };
    let jobs: Vec<JobEntry> = (0..domain::batch::MAX_JOBS_PER_BATCH).map(job).collect();
    let bytes = serde_json::to_vec(&jobs).unwrap().len();
    // The rest of the item (ids, counts, a rejection report) is a few kilobytes.
    assert!(bytes < 200 * 1024, "{bytes} bytes of jobs");
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

    /// The schedule's run over the fakes, jobs all completed, no budgets.
    async fn sweep_all(
        bucket: &Bucket,
        registry: &Registry,
        bus: &Bus,
        clock: &ManualClock,
        settings: &BatchSettings,
    ) -> Result<Sweep, BatchError> {
        sweep(
            &Completed,
            bucket,
            registry,
            bus,
            clock,
            None::<&NoBudgets>,
            settings,
        )
        .await
    }

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
        let run = || sweep_all(&bucket, &registry, &bus, &clock, &settings);

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
        let run = || sweep_all(&bucket, &registry, &bus, &clock, &settings);

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
        let run = sweep_all(&bucket, &registry, &bus, &clock, &settings())
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

/// The merge over test-support's in-memory bucket, with outputs larger than a read range and
/// results larger than a part: it reads ranges, writes parts, and joins by id whatever the
/// order and the file of an answer.
mod merging {
    use domain::batch::{BatchSummary, JobEntry};
    use domain::ports::MIN_PART_BYTES;
    use serde_json::json;
    use test_support::batch::Bucket;

    use super::*;

    const BATCH: &str = "0a1b2c";
    const KIB: usize = 1024;

    fn settings() -> BatchSettings {
        BatchSettings::from_env(&Env::from_pairs([(
            "BATCH_ROLE_ARN",
            "arn:aws:iam::123456789012:role/r",
        )]))
        .unwrap()
    }

    fn ids(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    /// The answer's text: the id, then `size` bytes.
    fn text(id: &str, size: usize) -> String {
        format!("answer {id} {}", "x".repeat(size))
    }

    /// Bedrock's output line of an answered record.
    fn answered(id: &str, size: usize) -> String {
        json!({"recordId": id, "modelInput": {}, "modelOutput": {
            "output": {"message": {"role": "assistant", "content": [{"text": text(id, size)}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}}})
        .to_string()
    }

    /// Bedrock's output line of a record it refused.
    fn refused(id: &str) -> String {
        json!({"recordId": id, "modelInput": {},
            "error": {"errorCode": 400, "errorMessage": "bad input"}})
        .to_string()
    }

    /// Job `index` of the batch, its input written; `ran`: it has an ARN, so an output folder.
    async fn job(
        bucket: &Bucket,
        index: usize,
        ids: &[String],
        status: &str,
        ran: bool,
    ) -> JobEntry {
        let records: Vec<BatchRecord> = ids
            .iter()
            .map(|id| BatchRecord {
                record_id: id.clone(),
                model_input: json!({"messages": [{"role": "user", "content": [{"text": "q"}]}]}),
            })
            .collect();
        bucket
            .put(&job_input_key(BATCH, index), jsonl(&records))
            .await
            .unwrap();
        let mut job = queued_job(BATCH, index, ids.len());
        job.status = status.into();
        if ran {
            job.arn = Some(format!(
                "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/job{index}"
            ));
        }
        job
    }

    /// An output file of job `index`, as Bedrock names them under the job's folder.
    async fn output(bucket: &Bucket, index: usize, file: &str, lines: &[String]) {
        let key = format!("{}job{index}/{file}", output_prefix(BATCH));
        let mut body = lines.join("\n").into_bytes();
        body.push(b'\n');
        bucket.put(&key, body).await.unwrap();
    }

    fn batch(jobs: Vec<JobEntry>) -> Batch {
        let mut batch: Batch = serde_json::from_value(json!({
            "batchId": BATCH, "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "source": "api", "status": "InProgress", "jobs": [], "recordCount": 0,
            "createdAt": 1, "updatedAt": 1, "version": 1
        }))
        .unwrap();
        batch.record_count = jobs.iter().map(|j| j.record_count).sum();
        batch.jobs = jobs;
        batch
    }

    /// Merges, checks that no read answered more than a range and that no upload is left
    /// open; the results' lines and the summary.
    async fn merged(bucket: &Bucket, batch: &Batch) -> (Vec<Value>, BatchSummary) {
        let (key, summary) = merge_results(bucket, batch, &settings()).await.unwrap();
        assert_eq!(key, results_key(BATCH));
        assert!(
            bucket.largest_read() as u64 <= MERGE_READ_BYTES,
            "read {} bytes at once",
            bucket.largest_read()
        );
        assert_eq!(bucket.open_uploads(), Vec::<String>::new());
        let bytes = bucket.object(&key).expect("results.jsonl");
        (lines(&bytes).collect(), summary)
    }

    fn record_ids(lines: &[Value]) -> Vec<&str> {
        lines
            .iter()
            .map(|l| l["recordId"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn results_larger_than_a_part_are_written_in_parts_of_the_minimum_size() {
        let bucket = Bucket::default();
        let ids = ids("r", 40);
        let jobs = vec![job(&bucket, 0, &ids, "Completed", true).await];
        // Answers in reverse order; r7's alone is larger than a part.
        let size = |id: &str| {
            if id == "r7" {
                6 * 1024 * KIB
            } else {
                300 * KIB
            }
        };
        let lines: Vec<String> = ids.iter().rev().map(|id| answered(id, size(id))).collect();
        output(&bucket, 0, "part-0000.jsonl.out", &lines).await;

        let (results, summary) = merged(&bucket, &batch(jobs)).await;

        assert_eq!(record_ids(&results), ids);
        for (line, id) in results.iter().zip(&ids) {
            assert_eq!(line["text"], text(id, size(id)), "{id}");
        }
        let parts = bucket
            .completed_parts(&results_key(BATCH))
            .expect("a multipart upload");
        let (last, full) = parts.split_last().unwrap();
        assert!(full.len() >= 3, "{parts:?}");
        assert!(full.iter().all(|p| *p == MIN_PART_BYTES), "{parts:?}");
        assert!(*last > 0 && *last <= MIN_PART_BYTES, "{parts:?}");
        assert_eq!(
            (summary.total, summary.succeeded, summary.failed),
            (40, 40, 0)
        );
        assert_eq!((summary.input_tokens, summary.output_tokens), (120, 200));
    }

    #[tokio::test]
    async fn an_answer_in_a_later_output_file_joins_and_a_record_without_one_is_not_processed() {
        let bucket = Bucket::default();
        let ids = ids("r", 6);
        let jobs = vec![job(&bucket, 0, &ids, "PartiallyCompleted", true).await];
        let big = 600 * KIB;
        let first = [answered("r4", big), answered("r0", big)];
        output(&bucket, 0, "part-0000.jsonl.out", &first).await;
        let later = [answered("r5", big), refused("r2"), answered("r1", big)];
        output(&bucket, 0, "part-0001.jsonl.out", &later).await;
        output(
            &bucket,
            0,
            "manifest.json.out",
            &[json!({"totalRecordCount": 6}).to_string()],
        )
        .await;

        let (results, summary) = merged(&bucket, &batch(jobs)).await;

        assert_eq!(record_ids(&results), ids, "input order");
        for id in ["r0", "r1", "r4", "r5"] {
            let line = &results[ids.iter().position(|i| i == id).unwrap()];
            assert_eq!(line["text"], text(id, big), "{id}");
        }
        assert_eq!(
            results[2]["error"],
            json!({"code": "400", "message": "bad input"})
        );
        assert_eq!(
            results[3]["error"],
            json!({"code": "NotProcessed",
                "message": "the job ended PartiallyCompleted before this record was answered"})
        );
        assert_eq!(
            (summary.total, summary.succeeded, summary.failed),
            (6, 4, 2)
        );
    }

    #[tokio::test]
    async fn every_job_keeps_its_place_and_records_no_job_answered_are_not_processed() {
        let bucket = Bucket::default();
        let (first, second, third) = (ids("a", 3), ids("b", 2), ids("c", 2));
        let mut failed = job(&bucket, 1, &second, "Failed", true).await;
        failed.message = Some("Bedrock stopped the job".into());
        let jobs = vec![
            job(&bucket, 0, &first, "Completed", true).await,
            failed,
            // Queued when the batch was stopped: it never ran.
            job(&bucket, 2, &third, "Stopped", false).await,
        ];
        let lines: Vec<String> = first
            .iter()
            .rev()
            .map(|id| answered(id, 600 * KIB))
            .collect();
        output(&bucket, 0, "part-0000.jsonl.out", &lines).await;

        let (results, summary) = merged(&bucket, &batch(jobs)).await;

        let all: Vec<String> = [first, second, third].concat();
        assert_eq!(record_ids(&results), all);
        assert!(results[..3].iter().all(|l| l["text"].is_string()));
        for line in &results[3..5] {
            assert_eq!(line["error"]["message"], "Bedrock stopped the job");
        }
        for line in &results[5..] {
            assert_eq!(
                line["error"]["message"],
                "the job ended Stopped before this record was answered"
            );
        }
        assert!(results[3..]
            .iter()
            .all(|l| l["error"]["code"] == "NotProcessed"));
        assert_eq!(
            (summary.total, summary.succeeded, summary.failed),
            (7, 3, 4)
        );
    }

    #[tokio::test]
    async fn an_id_given_twice_is_answered_once_and_the_other_is_not_processed() {
        let bucket = Bucket::default();
        let ids: Vec<String> = ["a", "b", "a", "c"].map(String::from).to_vec();
        let jobs = vec![job(&bucket, 0, &ids, "Completed", true).await];
        let lines = ["c", "a", "b"].map(|id| answered(id, 500 * KIB));
        output(&bucket, 0, "part-0000.jsonl.out", &lines).await;

        let (results, summary) = merged(&bucket, &batch(jobs)).await;

        assert_eq!(record_ids(&results), ["a", "b", "a", "c"]);
        assert_eq!(results[0]["text"], text("a", 500 * KIB));
        assert_eq!(results[2]["error"]["code"], "NotProcessed");
        assert_eq!(results[3]["text"], text("c", 500 * KIB));
        assert_eq!((summary.succeeded, summary.failed), (3, 1));
    }

    #[tokio::test]
    async fn a_part_that_fails_aborts_the_upload_and_leaves_no_results() {
        let bucket = Bucket::default();
        let ids = ids("r", 30);
        let jobs = vec![job(&bucket, 0, &ids, "Completed", true).await];
        let lines: Vec<String> = ids.iter().map(|id| answered(id, 400 * KIB)).collect();
        output(&bucket, 0, "part-0000.jsonl.out", &lines).await;
        bucket.fail_parts_from(2, "SlowDown");

        let error = merge_results(&bucket, &batch(jobs), &settings())
            .await
            .unwrap_err();

        assert!(error.to_string().contains("SlowDown"), "{error}");
        assert_eq!(bucket.open_uploads(), Vec::<String>::new(), "aborted");
        assert_eq!(bucket.object(&results_key(BATCH)), None);
        assert_eq!(bucket.completed_parts(&results_key(BATCH)), None);
    }

    #[tokio::test]
    async fn an_object_smaller_than_a_part_is_one_put_and_a_larger_one_readable_once_finished() {
        let bucket = Bucket::default();
        let mut small = ObjectWriter::new(&bucket, "small");
        small.write(b"one line\n").await.unwrap();
        small.finish().await.unwrap();
        assert_eq!(
            bucket.object("small").as_deref(),
            Some(b"one line\n".as_slice())
        );
        assert_eq!(bucket.completed_parts("small"), None, "a put");

        let mut large = ObjectWriter::new(&bucket, "large");
        let line = vec![b'x'; 3 * 1024 * KIB];
        for _ in 0..4 {
            large.write(&line).await.unwrap();
        }
        assert_eq!(
            bucket.object("large"),
            None,
            "nothing readable before finish"
        );
        assert_eq!(bucket.open_uploads(), ["large"]);
        large.finish().await.unwrap();
        assert_eq!(
            bucket.completed_parts("large"),
            Some(vec![
                MIN_PART_BYTES,
                MIN_PART_BYTES,
                12 * 1024 * KIB - 2 * MIN_PART_BYTES
            ])
        );
        assert_eq!(
            bucket.object("large").map(|b| b.len()),
            Some(12 * 1024 * KIB)
        );
        assert_eq!(bucket.open_uploads(), Vec::<String>::new());
    }
}

/// Small batches answered by batch-status's runs: a lease per run, a checkpoint per answer, each
/// call within the run's time, nothing asked of the model twice.
mod answering_directly {
    use std::time::Duration;

    use serde_json::json;
    use test_support::batch::{Bucket, Registry};
    use test_support::model::FakeModel;

    use super::*;
    use domain::batch::Lease;
    use domain::ports::ModelInvoker;

    const T0: i64 = 1_780_000_000;
    const ID: &str = "d1e2f3";

    fn settings(vars: &[(&'static str, &'static str)]) -> BatchSettings {
        BatchSettings::from_env(&Env::from_pairs(
            vars.iter()
                .copied()
                .chain([("BATCH_ROLE_ARN", "arn:aws:iam::123456789012:role/r")]),
        ))
        .unwrap()
    }

    /// A small batch of `count` records as batch-submit registers it.
    async fn registered(bucket: &Bucket, registry: &Registry, count: usize) -> Batch {
        let records: Vec<BatchRecord> = (0..count)
            .map(|i| BatchRecord {
                record_id: format!("r{i}"),
                model_input: json!({"messages": [{"role": "user", "content": [{"text": "q"}]}]}),
            })
            .collect();
        write_direct_input(bucket, ID, &records).await.unwrap();
        let batch: Batch = serde_json::from_value(json!({
            "batchId": ID, "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "source": "api", "status": "Queued", "jobs": [], "recordCount": count,
            "direct": true, "createdAt": T0, "updatedAt": T0, "version": 0
        }))
        .unwrap();
        registry.create(&batch).await.unwrap();
        batch
    }

    async fn run<M: ModelInvoker>(
        model: &M,
        bucket: &Bucket,
        registry: &Registry,
        settings: &BatchSettings,
        run: &Invocation,
    ) -> DirectRun {
        answer_direct(model, bucket, registry, ID, settings, run, T0 + 1)
            .await
            .unwrap()
    }

    fn results(bucket: &Bucket) -> Vec<Value> {
        bucket
            .object(&results_key(ID))
            .unwrap()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn checkpoints(bucket: &Bucket) -> usize {
        let prefix = answers_prefix(ID);
        bucket
            .keys()
            .iter()
            .filter(|k| k.starts_with(&prefix))
            .count()
    }

    #[tokio::test]
    async fn a_small_batch_is_answered_in_order_and_a_later_run_asks_the_model_nothing() {
        let (bucket, registry, model) = (
            Bucket::default(),
            Registry::default(),
            FakeModel::answering(),
        );
        registered(&bucket, &registry, 5).await;
        let settings = settings(&[]);

        let DirectRun::Ended(batch) = run(
            &model,
            &bucket,
            &registry,
            &settings,
            &Invocation::longest(),
        )
        .await
        else {
            panic!("a run with time enough ends the batch");
        };
        assert_eq!(batch.status, BatchStatus::Completed);
        assert_eq!(
            (batch.lease, batch.announcement),
            (None, Some(Announcement::Pending))
        );
        assert_eq!(batch.summary.as_ref().map(|s| s.succeeded), Some(5));
        let ids: Vec<Value> = results(&bucket)
            .iter()
            .map(|l| l["recordId"].clone())
            .collect();
        assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4"]);
        assert_eq!((model.calls().len(), checkpoints(&bucket)), (5, 5));

        // A redelivered message, a retried run: the batch has ended, nothing is asked again.
        let again = run(
            &model,
            &bucket,
            &registry,
            &settings,
            &Invocation::longest(),
        )
        .await;
        assert!(matches!(again, DirectRun::Ended(_)), "{again:?}");
        assert_eq!(model.calls().len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_out_of_time_keeps_its_answers_and_the_next_pays_only_for_the_rest() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, 5).await;
        let settings = settings(&[
            ("BATCH_DIRECT_CONCURRENCY", "2"),
            ("BATCH_DIRECT_CALL_SECONDS", "30"),
        ]);
        // Calls of 10 s, two at a time, a call started only with 30 s (and the write-back's 3)
        // left: 50 s make two rounds, four records.
        let model = FakeModel::answering().taking(Duration::from_secs(10));
        let short = Invocation::lasting(Duration::from_secs(50));
        let DirectRun::OutOfTime(batch) = run(&model, &bucket, &registry, &settings, &short).await
        else {
            panic!("50 s are not enough for five records");
        };
        assert_eq!(
            (batch.status, batch.lease.clone()),
            (BatchStatus::InProgress, None)
        );
        assert_eq!((model.calls().len(), checkpoints(&bucket)), (4, 4));
        assert!(batch.is_open(), "the schedule hands it out again");

        let ended = run(
            &model,
            &bucket,
            &registry,
            &settings,
            &Invocation::longest(),
        )
        .await;
        assert!(
            matches!(ended, DirectRun::Ended(ref b) if b.status == BatchStatus::Completed),
            "{ended:?}"
        );
        assert_eq!(model.calls().len(), 5, "each record asked once");
        assert_eq!(results(&bucket).len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_longer_than_the_run_has_left_is_cut_and_its_record_left_for_the_next() {
        let (bucket, registry) = (Bucket::default(), Registry::default());
        registered(&bucket, &registry, 1).await;
        let settings = settings(&[("BATCH_DIRECT_CALL_SECONDS", "5")]);
        let slow = FakeModel::answering().taking(Duration::from_secs(60));
        let short = Invocation::lasting(Duration::from_secs(20));
        let outcome = run(&slow, &bucket, &registry, &settings, &short).await;
        assert!(matches!(outcome, DirectRun::OutOfTime(_)), "{outcome:?}");
        assert_eq!(checkpoints(&bucket), 0, "a cut call is no answer");
        assert!(
            tokio::time::Instant::now() < short.deadline,
            "stopped before the deadline"
        );

        let model = FakeModel::answering();
        let ended = run(
            &model,
            &bucket,
            &registry,
            &settings,
            &Invocation::longest(),
        )
        .await;
        assert!(matches!(ended, DirectRun::Ended(_)), "{ended:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lambda_deadline_bounds_the_run_and_one_already_past_is_no_deadline() {
        let now_ms = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let start = tokio::time::Instant::now();
        let run = Invocation::of_lambda("req-1", now_ms + 60_000);
        let left = run.deadline - start;
        assert!(
            left <= Duration::from_secs(60) && left > Duration::from_secs(50),
            "{left:?}"
        );
        assert_eq!(run.id, "req-1");
        // cargo lambda watch's fixed deadline header.
        let watch = Invocation::of_lambda("req-2", 600_000);
        assert_eq!(watch.deadline - start, Duration::from_secs(900));
    }

    #[tokio::test]
    async fn a_batch_another_run_holds_is_left_to_it_until_its_lease_ends() {
        let (bucket, registry, model) = (
            Bucket::default(),
            Registry::default(),
            FakeModel::answering(),
        );
        let mut batch = registered(&bucket, &registry, 2).await;
        batch.lease = Some(Lease {
            holder: "another run".into(),
            until: T0 + 60,
        });
        batch.version += 1;
        registry.update(&batch).await.unwrap();
        let settings = settings(&[]);

        let held = run(
            &model,
            &bucket,
            &registry,
            &settings,
            &Invocation::longest(),
        )
        .await;
        assert!(matches!(held, DirectRun::Held(_)), "{held:?}");
        assert!(model.calls().is_empty());

        // Past its end (the other run's invocation is over), the lease holds no one off.
        let outcome = answer_direct(
            &model,
            &bucket,
            &registry,
            ID,
            &settings,
            &Invocation::longest(),
            T0 + 60,
        )
        .await
        .unwrap();
        assert!(matches!(outcome, DirectRun::Ended(_)), "{outcome:?}");
        assert_eq!(model.calls().len(), 2);
    }

    #[tokio::test]
    async fn a_stopped_small_batch_ends_with_its_unanswered_records_not_processed() {
        let (bucket, registry, model) = (
            Bucket::default(),
            Registry::default(),
            FakeModel::answering(),
        );
        let mut batch = registered(&bucket, &registry, 3).await;
        let answered = serde_json::to_vec(&json!({"recordId": "r0", "text": "a"})).unwrap();
        bucket.put(&answer_key(ID, 0), answered).await.unwrap();
        batch.status = BatchStatus::Stopping;
        batch.version += 1;
        registry.update(&batch).await.unwrap();

        let outcome = run(
            &model,
            &bucket,
            &registry,
            &settings(&[]),
            &Invocation::longest(),
        )
        .await;
        let DirectRun::Ended(batch) = outcome else {
            panic!("a stopped batch ends: {outcome:?}");
        };
        assert_eq!(batch.status, BatchStatus::Stopped);
        assert!(model.calls().is_empty(), "nothing asked once stopped");
        let lines = results(&bucket);
        assert_eq!(lines[0]["text"], "a");
        assert_eq!(lines[2]["error"]["code"], "NotProcessed");
    }
}
