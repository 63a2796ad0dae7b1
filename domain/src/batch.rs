//! Batch inference: the records a user hands in, their validation, the batch and its jobs in
//! the registry, and the merge of Bedrock's out-of-order output back into input order.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::identity::{tenant_owner, Principal};
use crate::limits::TokenEstimate;
use crate::tenancy::{check_tenant_name, Reservation};

use super::conversation::{
    check_inference, check_messages, check_texts, check_tools, InferenceConfig, Message, TextBlock,
    Usage,
};

/// Problems listed in a rejection report; the rest are only counted.
pub const MAX_LISTED_PROBLEMS: usize = 20;
/// Longest record id accepted, in characters.
pub const MAX_RECORD_ID_CHARS: usize = 256;
/// What a report keeps of a problem's reason (and of an over-long id), in characters: with
/// [`MAX_LISTED_PROBLEMS`] listed, a report stays a few kilobytes whatever the input, far
/// under DynamoDB's 400 KB item.
pub const MAX_REPORTED_CHARS: usize = 300;

/// The most jobs a batch may have: with job messages cut to [`MAX_REPORTED_CHARS`], a batch's
/// registry item stays far under DynamoDB's 400 KB whatever its jobs (batch settings that could
/// split a batch into more are refused at start).
pub const MAX_JOBS_PER_BATCH: usize = 100;

/// `text` cut to `max` characters, marked with `…` when cut.
pub fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// One line of Bedrock's batch input: a record id and a Converse request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    pub record_id: String,
    pub model_input: Value,
}

/// A record that was refused: its position (index from 0 in an API call, line from 1 in a
/// file), its id if it had one, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordProblem {
    pub position: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    pub reason: String,
}

/// Why a batch was refused as a whole: a capped list of problems and their count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub problems: Vec<RecordProblem>,
    pub problem_count: usize,
}

impl Rejection {
    /// Counts the problem and lists it among the first [`MAX_LISTED_PROBLEMS`], its id and
    /// reason cut to [`MAX_REPORTED_CHARS`].
    pub fn add(&mut self, problem: RecordProblem) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(RecordProblem {
                position: problem.position,
                record_id: problem
                    .record_id
                    .map(|id| truncated(&id, MAX_REPORTED_CHARS)),
                reason: truncated(&problem.reason, MAX_REPORTED_CHARS),
            });
        }
        self.problem_count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.problem_count == 0
    }
}

/// The invoke form: what `POST /v1/invoke` takes, with an optional record id.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvokeForm {
    record_id: Option<String>,
    messages: Option<Vec<Message>>,
    prompt: Option<String>,
    system: Option<Vec<TextBlock>>,
    inference_config: Option<InferenceConfig>,
}

/// The parts of a Converse body that are checked; the rest passes through as given.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseBody {
    messages: Vec<Message>,
    #[serde(default)]
    system: Vec<TextBlock>,
    #[serde(default)]
    inference_config: InferenceConfig,
}

fn record_id(value: &Value) -> Option<String> {
    value
        .get("recordId")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn check_body(body: &ConverseBody) -> Result<(), String> {
    // Batch records are text: tool calls need a caller to run the tools.
    check_messages(&body.messages)
        .and_then(|()| check_tools(None, &body.messages))
        .and_then(|()| check_texts("system", &body.system))
        .and_then(|()| check_inference(&body.inference_config))
        .map_err(|invalid| invalid.to_string())
}

/// A record in Bedrock's form (`recordId`, `modelInput`) or the invoke form (`messages` or
/// `prompt`, `system`, `inferenceConfig`), as a batch line; the id is `None` when absent.
pub fn parse_record(value: Value) -> Result<(Option<String>, Value), String> {
    if !value.is_object() {
        return Err("a record must be a JSON object".to_owned());
    }
    let id = record_id(&value);
    if value.get("recordId").is_some_and(|v| !v.is_string()) {
        return Err("recordId must be a string".to_owned());
    }
    if let Some(input) = value.get("modelInput") {
        if let Some(extra) = value
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "recordId" && *k != "modelInput"))
        {
            return Err(format!("unknown field {extra:?} beside modelInput"));
        }
        let body: ConverseBody = serde_json::from_value(input.clone())
            .map_err(|e| format!("modelInput is not a Converse request: {e}"))?;
        check_body(&body).map_err(|e| format!("modelInput.{e}"))?;
        return Ok((id, input.clone()));
    }
    let form: InvokeForm = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let messages = match (form.messages, form.prompt) {
        (Some(_), Some(_)) => return Err("send either messages or prompt, not both".to_owned()),
        (None, None) => return Err("messages or prompt is required".to_owned()),
        (Some(messages), None) => messages,
        (None, Some(prompt)) => vec![Message::user_text(prompt)],
    };
    let body = ConverseBody {
        messages,
        system: form.system.unwrap_or_default(),
        inference_config: form.inference_config.unwrap_or_default(),
    };
    check_body(&body)?;
    let mut input = Map::new();
    input.insert("messages".into(), json!(body.messages));
    if !body.system.is_empty() {
        input.insert("system".into(), json!(body.system));
    }
    if body.inference_config != InferenceConfig::default() {
        input.insert("inferenceConfig".into(), json!(body.inference_config));
    }
    Ok((form.record_id, Value::Object(input)))
}

/// Checks records in order, assigning missing ids and refusing duplicates. It keeps only the
/// ids it has seen, so a file can be checked a chunk at a time and its records kept or not.
#[derive(Debug, Default)]
pub struct RecordCollector {
    /// Records accepted so far.
    pub accepted: usize,
    pub rejection: Rejection,
    seen: std::collections::HashSet<String>,
    /// Bytes of the accepted records' model inputs: a bound on their input tokens.
    input_bytes: u64,
    /// The output caps (`inferenceConfig.maxTokens`) the accepted records give.
    declared_output: u64,
    /// Accepted records that give no output cap.
    undeclared_outputs: u64,
}

impl RecordCollector {
    /// Checks the record at `position` (index from 0, or line from 1); the record as a batch
    /// line when it is valid. Missing ids are assigned by the record's place among all.
    pub fn add(&mut self, position: usize, value: Result<Value, String>) -> Option<BatchRecord> {
        let index = self.accepted + self.rejection.problem_count;
        let id = value.as_ref().ok().and_then(record_id);
        let model_input = match value.and_then(parse_record) {
            Ok((_, model_input)) => model_input,
            Err(reason) => {
                self.rejection.add(RecordProblem {
                    position,
                    record_id: id,
                    reason,
                });
                return None;
            }
        };
        let record_id = id.unwrap_or_else(|| format!("auto-{index:08}"));
        let chars = record_id.chars().count();
        let refused = if record_id.is_empty() {
            Some("recordId must not be empty".to_owned())
        } else if chars > MAX_RECORD_ID_CHARS {
            Some(format!(
                "recordId is {chars} characters; at most {MAX_RECORD_ID_CHARS}"
            ))
        } else if !self.seen.insert(record_id.clone()) {
            Some("duplicate recordId: ids must be unique within a batch".to_owned())
        } else {
            None
        };
        if let Some(reason) = refused {
            self.rejection.add(RecordProblem {
                position,
                record_id: Some(record_id),
                reason,
            });
            return None;
        }
        self.accepted += 1;
        self.input_bytes += serde_json::to_vec(&model_input).map_or(0, |b| b.len() as u64);
        match model_input
            .pointer("/inferenceConfig/maxTokens")
            .and_then(Value::as_u64)
        {
            Some(cap) => self.declared_output += cap,
            None => self.undeclared_outputs += 1,
        }
        Some(BatchRecord {
            record_id,
            model_input,
        })
    }

    /// The most tokens the accepted records may use, as a budget reserves them: their model
    /// inputs' bytes (no token is shorter than a byte) and their output caps, `default_output`
    /// for a record that gives none.
    pub fn estimate(&self, default_output: u32) -> TokenEstimate {
        TokenEstimate {
            input: self.input_bytes,
            output: self
                .declared_output
                .saturating_add(self.undeclared_outputs * u64::from(default_output)),
        }
    }
}

/// The body of the message a fanned-out batch travels in: `{"batchId":"…"}`.
pub fn queued_batch_body(batch_id: &str) -> String {
    json!({ "batchId": batch_id }).to_string()
}

/// The batch a queued message names; `None` for a body of another shape.
pub fn queued_batch_id(body: &str) -> Option<String> {
    let body: Value = serde_json::from_str(body).ok()?;
    body.get("batchId")?.as_str().map(str::to_owned)
}

/// The claim of one run (a Lambda invocation) on a direct batch it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The run's id (its Lambda request id).
    pub holder: String,
    /// Epoch seconds: the run's deadline, after which the lease no longer holds.
    pub until: i64,
}

impl Lease {
    /// Whether it keeps a run other than `holder` out at `now_epoch`.
    pub fn excludes(&self, holder: &str, now_epoch: i64) -> bool {
        self.holder != holder && now_epoch < self.until
    }
}

/// What a tenant's batch holds of the tenant's monthly budget: its estimated cost, reserved when
/// it was submitted, settled to what it cost when it ends (batch-status, after the merge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetHold {
    pub tenant: String,
    /// The month whose spend it counts in (`2026-11`): the month it was submitted.
    pub month: String,
    /// The most the batch may cost, in USD.
    pub reserved_usd: f64,
    /// Epoch seconds after which the reservation stops counting, if never settled.
    pub expires_at: i64,
    /// Set once settled, so a later run never settles it twice.
    #[serde(default)]
    pub settled: bool,
}

impl BudgetHold {
    /// The ledger's reservation of the batch `batch_id`.
    pub fn reservation(&self, batch_id: &str) -> Reservation {
        Reservation {
            id: format!("batch:{batch_id}"),
            usd: self.reserved_usd,
            expires_at: self.expires_at,
        }
    }
}

/// A batch's life, across its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchStatus {
    /// Every job waits for a free slot under the concurrent-jobs quota.
    Queued,
    InProgress,
    Completed,
    PartiallyCompleted,
    Failed,
    Stopping,
    Stopped,
    /// Refused as a whole: nothing was submitted.
    Rejected,
}

impl BatchStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::PartiallyCompleted
                | Self::Failed
                | Self::Stopped
                | Self::Rejected
        )
    }
}

/// Statuses Bedrock reports for a job, plus `Queued` for one not submitted yet.
pub const JOB_QUEUED: &str = "Queued";

pub fn job_has_ended(status: &str) -> bool {
    matches!(
        status,
        "Completed" | "PartiallyCompleted" | "Failed" | "Stopped" | "Expired"
    )
}

/// One Bedrock job of a batch, with the input it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub status: String,
    /// S3 key of the job's input file.
    pub input_key: String,
    pub record_count: u64,
    #[serde(default)]
    pub processed: u64,
    #[serde(default)]
    pub succeeded: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl JobEntry {
    /// The job id at the end of its ARN, which names its output folder.
    pub fn job_id(&self) -> Option<&str> {
        self.arn.as_deref().and_then(|a| a.rsplit('/').next())
    }
}

/// Uploads under this prefix become batches, owned by whom the next segments name:
/// `batch-input/tenant/{tenant}/….jsonl` (a tenant: the owner its keys' callers are) or
/// `batch-input/role/{account}/{role}/….jsonl` (an IAM role: the owner its callers of the
/// batch API are). Who may write under a prefix is the bucket's and writers' IAM policies'
/// decision; see docs/api-batch.md.
pub const UPLOAD_PREFIX: &str = "batch-input/";

/// The owner of an upload at `key`, or `None` when its path names none (such an upload is
/// nobody's batch, never everyone's).
pub fn upload_owner(key: &str) -> Option<String> {
    let path = key.strip_prefix(UPLOAD_PREFIX)?;
    let mut segments = path.split('/');
    let owner = match segments.next()? {
        "tenant" => {
            let tenant = segments.next()?;
            check_tenant_name(tenant).ok()?;
            tenant_owner(tenant)
        }
        "role" => {
            let (account, role) = (segments.next()?, segments.next()?);
            let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
            // IAM role names: 1 to 64 of letters, digits and +=,.@_-
            let role_ok = (1..=64).contains(&role.len())
                && role
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
            if !(account_ok && role_ok) {
                return None;
            }
            Principal::Role {
                account: account.to_owned(),
                role: role.to_owned(),
            }
            .to_string()
        }
        _ => return None,
    };
    // The object's own name follows the owner's segments.
    let name = segments.next_back()?;
    (!name.is_empty()).then_some(owner)
}

/// A batch as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub batch_id: String,
    /// Who it belongs to, the only caller who may read, list or stop it: the namespace form of
    /// the principal that created it ([`crate::identity::Principal`]'s `Display`), or
    /// [`crate::identity::tenant_owner`] for an upload under `batch-input/{tenant}/`. Empty
    /// on items written before batches had owners: such a batch is nobody's to read.
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub model_id: String,
    /// `api`, or the `s3://` URI of the uploaded file.
    pub source: String,
    pub status: BatchStatus,
    pub jobs: Vec<JobEntry>,
    pub record_count: u64,
    /// Answered through on-demand Converse because it was under the per-job minimum.
    #[serde(default)]
    pub direct: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// Key of the merged `results.jsonl`, once every job has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_key: Option<String>,
    #[serde(default)]
    pub summary: Option<BatchSummary>,
    /// Where the announcement of its end stands, once batch-status ended it. `None` before, for
    /// a batch rejected in batch-submit (never announced), and on items written before this was
    /// recorded (announced before their final write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<Announcement>,
    /// What a tenant's batch holds of its monthly budget, when the tenant has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetHold>,
    /// A direct batch being answered: which run answers it, and until when. Another run leaves
    /// it alone meanwhile, so no record is answered (and paid for) twice at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Epoch seconds.
    pub created_at: i64,
    /// The last change of its state: once ended, its end (recording the announcement leaves it).
    pub updated_at: i64,
    /// Bumped by every update: a write is accepted only over the version it read.
    pub version: u64,
}

impl Batch {
    /// A batch just registered: queued, no job yet, version 0.
    pub fn queued(
        batch_id: String,
        owner: String,
        model_id: String,
        source: String,
        record_count: u64,
        now_epoch: i64,
    ) -> Self {
        Self {
            batch_id,
            owner,
            name: None,
            model_id,
            source,
            status: BatchStatus::Queued,
            jobs: Vec::new(),
            record_count,
            direct: false,
            rejection: None,
            results_key: None,
            summary: None,
            announcement: None,
            budget: None,
            lease: None,
            created_at: now_epoch,
            updated_at: now_epoch,
            version: 0,
        }
    }

    /// The status its jobs add up to (results not yet merged count as in progress).
    pub fn status_from_jobs(&self) -> BatchStatus {
        if self.status == BatchStatus::Rejected {
            return BatchStatus::Rejected;
        }
        let statuses: Vec<&str> = self.jobs.iter().map(|j| j.status.as_str()).collect();
        if statuses.iter().all(|s| *s == JOB_QUEUED) {
            return BatchStatus::Queued;
        }
        if !statuses.iter().all(|s| job_has_ended(s)) {
            return if statuses.contains(&"Stopping") {
                BatchStatus::Stopping
            } else {
                BatchStatus::InProgress
            };
        }
        if statuses.contains(&"Stopped") {
            BatchStatus::Stopped
        } else if statuses.iter().all(|s| *s == "Completed") {
            BatchStatus::Completed
        } else if statuses.iter().all(|s| *s == "Failed" || *s == "Expired") {
            BatchStatus::Failed
        } else {
            BatchStatus::PartiallyCompleted
        }
    }

    pub fn all_jobs_ended(&self) -> bool {
        self.jobs.iter().all(|j| job_has_ended(&j.status))
    }

    /// Its end is written but not yet announced.
    pub fn announcement_pending(&self) -> bool {
        self.announcement == Some(Announcement::Pending)
    }

    /// What batch-status's schedule follows: a batch not yet ended, or one whose end is still to
    /// be announced or whose budget hold is still to be settled.
    pub fn is_open(&self) -> bool {
        !self.status.is_final() || self.announcement_pending() || self.budget_unsettled()
    }

    /// Ended, with its tenant's budget hold not yet settled to what it cost.
    pub fn budget_unsettled(&self) -> bool {
        self.status.is_final() && self.budget.as_ref().is_some_and(|hold| !hold.settled)
    }
}

/// The announcement of a batch's end (EventBridge `Batch Ended`), recorded on the batch: it is
/// published after the final state is written, so a failure to publish never holds the results
/// back, and a later run publishes what is still pending (at least once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Announcement {
    /// Written with the final state; not published yet.
    Pending,
    /// Published (and recorded by a conditional write).
    Announced,
}

/// Totals of a finished batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the batch price (half of on-demand), or on-demand for a direct batch.
    pub cost_usd: f64,
    pub on_demand_cost_usd: f64,
}

/// One line of `results.jsonl`: the record's answer or its error, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultLine {
    pub record_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResultError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultError {
    pub code: String,
    pub message: String,
}

impl ResultLine {
    /// A line of a job's `.out` file (`modelOutput` in Converse's shape, or `error`).
    pub fn from_output_line(line: &Value) -> Option<Self> {
        let record_id = line.get("recordId")?.as_str()?.to_owned();
        if let Some(error) = line.get("error") {
            let code = match error.get("errorCode") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "Error".to_owned(),
            };
            let message = error
                .get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            return Some(Self::failed(record_id, code, message));
        }
        let output = line.get("modelOutput")?;
        let text = output
            .pointer("/output/message/content")
            .and_then(Value::as_array)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<String>()
            });
        let usage = output
            .get("usage")
            .and_then(|u| serde_json::from_value(u.clone()).ok());
        Some(Self {
            record_id,
            text,
            stop_reason: output
                .get("stopReason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            usage,
            error: None,
        })
    }

    pub fn failed(record_id: String, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            record_id,
            text: None,
            stop_reason: None,
            usage: None,
            error: Some(ResultError {
                code: code.into(),
                message: message.into(),
            }),
        }
    }
}

/// Splits `count` records into the fewest jobs of at most `max` records, evenly, so that no
/// job falls under `min` when the whole is at least `min`.
pub fn job_sizes(count: usize, max: usize) -> Vec<usize> {
    if count == 0 || max == 0 {
        return Vec::new();
    }
    let jobs = count.div_ceil(max);
    let base = count / jobs;
    let extra = count % jobs;
    (0..jobs).map(|i| base + usize::from(i < extra)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_bounds_accepted_records_inputs_by_bytes_and_outputs_by_their_caps() {
        let mut collector = RecordCollector::default();
        let capped =
            json!({"recordId": "a", "prompt": "hello", "inferenceConfig": {"maxTokens": 100}});
        let uncapped = json!({"recordId": "b", "prompt": "hi"});
        let refused = json!({"recordId": "a", "prompt": "a duplicate id is not counted"});
        let inputs: u64 = [&capped, &uncapped]
            .iter()
            .map(|r| {
                let (_, input) = parse_record((*r).clone()).unwrap();
                serde_json::to_vec(&input).unwrap().len() as u64
            })
            .sum();
        for (line, record) in [capped, uncapped, refused].into_iter().enumerate() {
            collector.add(line + 1, Ok(record));
        }
        assert_eq!(collector.accepted, 2);
        assert_eq!(
            collector.estimate(4096),
            TokenEstimate {
                input: inputs,
                output: 100 + 4096
            }
        );
    }

    #[test]
    fn a_batch_reserves_under_an_id_of_its_own() {
        let hold = BudgetHold {
            tenant: "acme".into(),
            month: "2026-12".into(),
            reserved_usd: 1.5,
            expires_at: 10,
            settled: false,
        };
        let reservation = hold.reservation("0a1b");
        assert_eq!(reservation.id, "batch:0a1b");
        assert_eq!((reservation.usd, reservation.expires_at), (1.5, 10));
    }

    #[test]
    fn a_report_stays_small_whatever_the_ids_and_reasons() {
        let mut collector = RecordCollector::default();
        let huge_id = "x".repeat(30_000);
        for line in 1..=50 {
            let record = json!({"recordId": format!("{huge_id}{line}"), "prompt": "q"});
            assert!(collector.add(line, Ok(record)).is_none());
        }
        let rejection = &collector.rejection;
        assert_eq!(
            (rejection.problem_count, rejection.problems.len()),
            (50, MAX_LISTED_PROBLEMS)
        );
        assert!(rejection.problems[0]
            .reason
            .starts_with("recordId is 30001 characters; at most 256"));
        let stored = serde_json::to_vec(rejection).unwrap();
        assert!(stored.len() < 20_000, "{} bytes", stored.len());
        let id = rejection.problems[0].record_id.as_deref().unwrap();
        assert_eq!(id.chars().count(), MAX_REPORTED_CHARS + 1);
        assert!(id.ends_with('…'));
        assert_eq!(truncated("héllo", 2), "hé…");
        assert_eq!(truncated("hé", 2), "hé");
    }

    #[test]
    fn an_upload_belongs_to_the_tenant_or_role_its_prefix_names_and_never_to_anyone() {
        assert_eq!(
            upload_owner("batch-input/tenant/team-a/questions.jsonl"),
            Some(r#"tenant:"team-a""#.to_owned())
        );
        assert_eq!(
            upload_owner("batch-input/role/123456789012/app-team/2026/12/q.jsonl"),
            Some(
                Principal::Role {
                    account: "123456789012".into(),
                    role: "app-team".into()
                }
                .to_string()
            )
        );
        for nobodys in [
            "batch-input/questions.jsonl",
            "batch-input/tenant/questions.jsonl",
            "batch-input/tenant/team-a/",
            "batch-input/tenant/te\"am/q.jsonl",
            "batch-input/tenant//q.jsonl",
            "batch-input/role/123/app-team/q.jsonl",
            "batch-input/role/123456789012/q.jsonl",
            "batch-input/role/123456789012/a b/q.jsonl",
            "batch-input/user/bob/q.jsonl",
            "elsewhere/tenant/team-a/q.jsonl",
        ] {
            assert_eq!(upload_owner(nobodys), None, "{nobodys}");
        }
    }

    #[test]
    fn both_record_forms_become_converse_bodies() {
        let (id, input) = parse_record(json!({"recordId": "a", "prompt": "hi"})).unwrap();
        assert_eq!(id.as_deref(), Some("a"));
        assert_eq!(
            input,
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
        );
        let bedrock = json!({"recordId": "b", "modelInput": {"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": 5}}});
        let (id, input) = parse_record(bedrock.clone()).unwrap();
        assert_eq!((id.as_deref(), &input), (Some("b"), &bedrock["modelInput"]));
        let with_system = parse_record(json!({"prompt": "x", "system": [{"text": "be brief"}], "inferenceConfig": {"maxTokens": 9}})).unwrap();
        assert_eq!(with_system.0, None);
        assert_eq!(with_system.1["inferenceConfig"]["maxTokens"], 9);
    }

    #[test]
    fn bad_records_say_why() {
        for (record, why) in [
            (json!("text"), "JSON object"),
            (json!({"prompt": ""}), "whitespace"),
            (
                json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}),
                "user",
            ),
            (json!({"prompt": "x", "colour": 1}), "colour"),
            (
                json!({"modelInput": {"messages": []}}),
                "modelInput.messages",
            ),
            (json!({"recordId": 5, "prompt": "x"}), "recordId"),
            (json!({}), "messages or prompt"),
        ] {
            let err = parse_record(record.clone()).unwrap_err();
            assert!(err.contains(why), "{record}: {err}");
        }
    }

    #[test]
    fn ids_are_assigned_and_must_be_unique() {
        let mut collector = RecordCollector::default();
        let kept: Vec<BatchRecord> = [
            Ok(json!({"recordId": "x", "prompt": "a"})),
            Ok(json!({"prompt": "b"})),
            Ok(json!({"recordId": "x", "prompt": "c"})),
            Err("not JSON".to_owned()),
        ]
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| collector.add(i, v))
        .collect();
        assert_eq!((kept.len(), collector.accepted), (2, 2));
        assert_eq!(kept[1].record_id, "auto-00000001");
        assert_eq!(collector.rejection.problem_count, 2);
        assert_eq!(collector.rejection.problems[0].position, 2);
        assert!(collector.rejection.problems[0].reason.contains("duplicate"));
        let mut many = Rejection::default();
        for i in 0..50 {
            many.add(RecordProblem {
                position: i,
                record_id: None,
                reason: "bad".into(),
            });
        }
        assert_eq!(
            (many.problems.len(), many.problem_count),
            (MAX_LISTED_PROBLEMS, 50)
        );
    }

    #[test]
    fn jobs_are_split_evenly_under_the_maximum() {
        assert_eq!(job_sizes(250, 50_000), vec![250]);
        assert_eq!(job_sizes(120_000, 50_000), vec![40_000, 40_000, 40_000]);
        assert_eq!(job_sizes(100_001, 50_000), vec![33_334, 33_334, 33_333]);
        assert!(job_sizes(0, 10).is_empty());
    }

    #[test]
    fn output_lines_become_result_lines() {
        let ok = json!({"recordId": "r1", "modelInput": {}, "modelOutput": {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}});
        let line = ResultLine::from_output_line(&ok).unwrap();
        assert_eq!(
            (line.text.as_deref(), line.usage.unwrap().total_tokens),
            (Some("hi"), 3)
        );
        let failed = json!({"recordId": "r2", "modelInput": {}, "error": {"errorCode": 400, "errorMessage": "bad"}});
        let line = ResultLine::from_output_line(&failed).unwrap();
        assert_eq!(line.error.unwrap().code, "400");
    }

    fn job(status: &str) -> JobEntry {
        JobEntry {
            name: "j".into(),
            arn: None,
            status: status.into(),
            input_key: "k".into(),
            record_count: 1,
            processed: 0,
            succeeded: 0,
            failed: 0,
            message: None,
        }
    }

    #[test]
    fn a_batch_status_adds_up_its_jobs() {
        let mut batch = Batch {
            batch_id: "b".into(),
            owner: String::new(),
            name: None,
            model_id: "m".into(),
            source: "api".into(),
            status: BatchStatus::Queued,
            jobs: vec![job(JOB_QUEUED), job(JOB_QUEUED)],
            record_count: 2,
            direct: false,
            rejection: None,
            results_key: None,
            summary: None,
            announcement: None,
            budget: None,
            lease: None,
            created_at: 0,
            updated_at: 0,
            version: 0,
        };
        assert_eq!(batch.status_from_jobs(), BatchStatus::Queued);
        batch.jobs[0].status = "InProgress".into();
        assert_eq!(batch.status_from_jobs(), BatchStatus::InProgress);
        batch.jobs[0].status = "Completed".into();
        batch.jobs[1].status = "Completed".into();
        assert_eq!(batch.status_from_jobs(), BatchStatus::Completed);
        batch.jobs[1].status = "Failed".into();
        assert_eq!(batch.status_from_jobs(), BatchStatus::PartiallyCompleted);
        batch.jobs[1].status = "Stopped".into();
        assert_eq!(batch.status_from_jobs(), BatchStatus::Stopped);
    }

    #[test]
    fn an_item_without_an_announcement_counts_as_announced() {
        // An item written before announcements were recorded: announced before its final write.
        let old: Batch = serde_json::from_value(json!({
            "batchId": "b", "modelId": "m", "source": "api", "status": "Completed", "jobs": [],
            "recordCount": 1, "createdAt": 1, "updatedAt": 2, "version": 3
        }))
        .unwrap();
        assert_eq!(old.announcement, None);
        assert!(!old.announcement_pending());
        assert!(!old.is_open(), "the schedule leaves it alone");
        assert!(!serde_json::to_string(&old)
            .unwrap()
            .contains("announcement"));

        let mut pending = old.clone();
        pending.announcement = Some(Announcement::Pending);
        assert!(
            pending.is_open(),
            "ended, but its end is still to be announced"
        );
        let json = serde_json::to_value(&pending).unwrap();
        assert_eq!(json["announcement"], "Pending");
        let read: Batch = serde_json::from_value(json).unwrap();
        assert_eq!(read, pending);

        let mut running = old;
        running.status = BatchStatus::InProgress;
        assert!(running.is_open());
    }
}
