//! Deferred requests: work that can wait, answered by a deadline on the cheapest capacity that
//! still meets it.
//!
//! A deferred request is an invoke request with a deadline. It is accepted at once (a cache hit
//! is answered at once), then placed by the schedule ([`decide`]): requests for the same model
//! accumulate into a Bedrock batch job once there are enough of them and the batch's turnaround
//! still meets the earliest of their deadlines; a request that can no longer make a batch in
//! time goes through the flex tier while there is time left for a retry on the default tier,
//! and through the default tier after that. Never priority. Each request moves through its
//! states by conditional writes on its `version`, so it is placed and answered once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::batch::{BudgetHold, Lease, ResultError};
use crate::conversation::ModelAnswer;

/// Where a deferred request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeferredStatus {
    /// Accepted, waiting to be placed.
    Queued,
    /// In a batch job, or being answered on flex or default by a run of the schedule.
    Placed,
    /// Answered (the answer is kept until the record expires).
    Answered,
    /// Bedrock refused the request itself: the same request fails on any capacity.
    Failed,
    /// Its deadline passed before it could be answered.
    Expired,
}

impl DeferredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Placed => "placed",
            Self::Answered => "answered",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// No placement changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Answered | Self::Failed | Self::Expired)
    }
}

/// The capacity a deferred request was (or is being) answered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// A Bedrock batch job (the batch price).
    Batch,
    /// On-demand on the flex tier.
    Flex,
    /// On-demand on the default tier.
    Default,
    /// The response cache, at acceptance: nothing paid.
    Cache,
}

impl Placement {
    pub const ALL: [Self; 4] = [Self::Batch, Self::Flex, Self::Default, Self::Cache];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Flex => "flex",
            Self::Default => "default",
            Self::Cache => "cache",
        }
    }
}

/// One deferred request, as its store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeferredRequest {
    pub id: String,
    /// Who asked: the caller's principal or tenant; only they read it.
    pub owner: String,
    pub model_id: String,
    /// The Converse body sent to the model (`system`, `messages`, `inferenceConfig`, ...),
    /// validated at acceptance.
    pub request: Value,
    /// A digest of what was asked, so a client token reused for another request is refused.
    pub fingerprint: String,
    /// Epoch seconds.
    pub accepted_at: i64,
    /// Epoch seconds by which the answer is needed.
    pub deadline: i64,
    pub status: DeferredStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The batch it was placed in, while and after it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// A batch job failed it once: it is answered on demand from then on.
    #[serde(default)]
    pub batch_failed: bool,
    /// The run that placed it on flex or default and until when; an expired claim (a run that
    /// died) lets the next run place it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Lease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<ModelAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResultError>,
    /// What the answer cost, at its placement's price.
    #[serde(default)]
    pub cost_usd: f64,
    /// What the same answer costs on demand on the default tier.
    #[serde(default)]
    pub on_demand_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<i64>,
    /// Answered after its deadline (a batch that came back late), or expired.
    #[serde(default)]
    pub deadline_missed: bool,
    /// The tenant's budget reservation made at acceptance, settled when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetHold>,
    /// The group it was accepted in (a file of requests, OpenAI's Batch API) and its id there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<String>,
    /// Raised by one with every write; a write is conditional on the version it read.
    #[serde(default)]
    pub version: u64,
}

impl DeferredRequest {
    /// A request just accepted: queued, placed nowhere yet, version 1.
    pub fn queued(
        id: String,
        owner: String,
        model_id: String,
        request: Value,
        fingerprint: String,
        accepted_at: i64,
        deadline: i64,
    ) -> Self {
        Self {
            id,
            owner,
            model_id,
            request,
            fingerprint,
            accepted_at,
            deadline,
            status: DeferredStatus::Queued,
            placement: None,
            batch_id: None,
            batch_failed: false,
            claim: None,
            answer: None,
            error: None,
            cost_usd: 0.0,
            on_demand_usd: 0.0,
            answered_at: None,
            deadline_missed: false,
            budget: None,
            group: None,
            custom_id: None,
            version: 1,
        }
    }

    /// What placing it saved against the same answer on demand.
    pub fn saved_usd(&self) -> f64 {
        (self.on_demand_usd - self.cost_usd).max(0.0)
    }

    /// Placed on flex or default by a run whose claim has run out: the run died or gave up.
    pub fn claim_lapsed(&self, now_epoch: i64) -> bool {
        self.status == DeferredStatus::Placed
            && matches!(self.placement, Some(Placement::Flex | Placement::Default))
            && self.claim.as_ref().is_none_or(|c| c.until <= now_epoch)
    }

    /// Whether the schedule may place it now: queued, or left by a run that died.
    pub fn placeable(&self, now_epoch: i64) -> bool {
        self.status == DeferredStatus::Queued || self.claim_lapsed(now_epoch)
    }
}

/// Where a group of deferred requests stands (OpenAI's batch statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupStatus {
    InProgress,
    Completed,
    Cancelling,
    Cancelled,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

/// Deferred requests accepted together from one file (OpenAI's Batch API): request `i` of the
/// file is the deferred request [`group_member_id`]`(id, i)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeferredGroup {
    pub id: String,
    pub owner: String,
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    pub request_count: usize,
    pub status: GroupStatus,
    /// Epoch seconds.
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelling_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file_id: Option<String>,
    /// Answered and failed requests, as last counted.
    #[serde(default)]
    pub completed: usize,
    #[serde(default)]
    pub failed: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Its requests are still being accepted: the schedule places none of them before all are
    /// in (a batch of them would otherwise take only the first), or [`GROUP_ACCEPTANCE_SECONDS`]
    /// have passed (an acceptance that died).
    #[serde(default)]
    pub accepting: bool,
    #[serde(default)]
    pub version: u64,
}

/// The longest a group's acceptance holds its requests back from placement.
pub const GROUP_ACCEPTANCE_SECONDS: i64 = 900;

impl DeferredGroup {
    /// Whether its requests wait for the rest of the group at `now_epoch`.
    pub fn holds_back(&self, now_epoch: i64) -> bool {
        self.accepting && now_epoch < self.created_at + GROUP_ACCEPTANCE_SECONDS
    }
}

/// The id of request `index` of group `group_id`.
pub fn group_member_id(group_id: &str, index: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(group_id.as_bytes());
    hasher.update((index as u64).to_le_bytes());
    hex::encode(&hasher.finalize()[..10])
}

/// How [`decide`] weighs time (`DEFERRED_*` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRule {
    /// The fewest records a Bedrock batch job takes (`BATCH_MIN_RECORDS`).
    pub min_batch_records: usize,
    /// The most requests one placement puts in a batch (`BATCH_MAX_BATCH_RECORDS`).
    pub max_batch_records: usize,
    /// A batch's turnaround, in seconds, for a model without observed history
    /// (`DEFERRED_BATCH_TURNAROUND`).
    pub default_turnaround: i64,
    /// Seconds left before a deadline for one retry on the default tier
    /// (`DEFERRED_RETRY_MARGIN`): flex is tried only while more than this remains.
    pub retry_margin: i64,
}

impl Default for PlacementRule {
    fn default() -> Self {
        Self {
            min_batch_records: 100,
            max_batch_records: 50_000,
            default_turnaround: 6 * 3600,
            retry_margin: 15 * 60,
        }
    }
}

/// What the schedule does with a placeable request now; a request that waits has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// These requests for `model_id`, earliest deadline first, become one batch.
    Batch { model_id: String, ids: Vec<String> },
    /// Answer on the flex tier now (then default if flex refuses).
    Flex(String),
    /// Answer on the default tier now.
    Default(String),
    /// Its deadline has passed.
    Expire(String),
}

/// The placement rule. `turnarounds` holds each model's observed batch turnaround in seconds;
/// a model without one takes [`PlacementRule::default_turnaround`].
///
/// For each placeable request, with `slack` the seconds left before its deadline:
/// - `slack <= 0`: expired;
/// - it may still make a batch (`slack >= turnaround + retry_margin`, never failed by a job): it
///   waits for others, and once its model has [`PlacementRule::min_batch_records`] of them,
///   they all become a batch;
/// - otherwise, flex while `slack > retry_margin` (a retry on default still fits), else default.
pub fn decide(
    placeable: &[&DeferredRequest],
    now_epoch: i64,
    rule: &PlacementRule,
    turnarounds: &BTreeMap<String, i64>,
) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let mut batchable: BTreeMap<&str, Vec<&DeferredRequest>> = BTreeMap::new();
    for request in placeable {
        let slack = request.deadline - now_epoch;
        let turnaround = turnarounds
            .get(&request.model_id)
            .copied()
            .unwrap_or(rule.default_turnaround);
        if slack <= 0 {
            decisions.push(Decision::Expire(request.id.clone()));
        } else if !request.batch_failed && slack >= turnaround + rule.retry_margin {
            batchable
                .entry(request.model_id.as_str())
                .or_default()
                .push(request);
        } else if slack > rule.retry_margin {
            decisions.push(Decision::Flex(request.id.clone()));
        } else {
            decisions.push(Decision::Default(request.id.clone()));
        }
    }
    for (model_id, mut group) in batchable {
        if group.len() < rule.min_batch_records.max(1) {
            continue;
        }
        group.sort_by(|a, b| a.deadline.cmp(&b.deadline).then(a.id.cmp(&b.id)));
        for chunk in group.chunks(rule.max_batch_records.max(rule.min_batch_records).max(1)) {
            // A remainder under the minimum waits for more (or for flex, nearer its deadline).
            if chunk.len() >= rule.min_batch_records {
                decisions.push(Decision::Batch {
                    model_id: model_id.to_owned(),
                    ids: chunk.iter().map(|r| r.id.clone()).collect(),
                });
            }
        }
    }
    decisions
}

/// A new request id no one can guess (20 hex digits), for a request sent without a client
/// token: each such request is a request of its own.
pub fn random_id() -> Result<String, String> {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness for a deferred id: {e}"))?;
    Ok(hex::encode(random))
}

/// Why a deadline was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    #[error(
        "give either deadline (RFC 3339) or within (an ISO 8601 duration such as PT24H), not both"
    )]
    Both,
    #[error("give deadline (RFC 3339, e.g. 2026-12-05T09:00:00Z) or within (an ISO 8601 duration, e.g. PT24H)")]
    Neither,
    #[error("deadline {0:?} is not an RFC 3339 time such as 2026-12-05T09:00:00Z")]
    NotATime(String),
    #[error("within {0:?} is not an ISO 8601 duration such as PT24H or P1D")]
    NotADuration(String),
    #[error("the deadline is {0} s away; it must be at least {1} s away (DEFERRED_MIN_DEADLINE)")]
    TooSoon(i64, i64),
    #[error("the deadline is {0} s away; it may be at most {1} s away (DEFERRED_MAX_DEADLINE)")]
    TooFar(i64, i64),
}

/// The epoch second a request is needed by, from `deadline` or `within`, held between
/// `min_seconds` and `max_seconds` from `now_epoch`.
pub fn deadline_of(
    deadline: Option<&str>,
    within: Option<&str>,
    now_epoch: i64,
    min_seconds: i64,
    max_seconds: i64,
) -> Result<i64, DeadlineError> {
    let at = match (deadline, within) {
        (Some(_), Some(_)) => return Err(DeadlineError::Both),
        (None, None) => return Err(DeadlineError::Neither),
        (Some(time), None) => chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|_| DeadlineError::NotATime(time.to_owned()))?
            .timestamp(),
        (None, Some(duration)) => {
            let parsed = iso8601::duration(duration)
                .map_err(|_| DeadlineError::NotADuration(duration.to_owned()))?;
            let seconds = std::time::Duration::from(parsed).as_secs();
            now_epoch.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))
        }
    };
    let away = at.saturating_sub(now_epoch);
    if away < min_seconds {
        return Err(DeadlineError::TooSoon(away, min_seconds));
    }
    if away > max_seconds {
        return Err(DeadlineError::TooFar(away, max_seconds));
    }
    Ok(at)
}

/// The next observed turnaround of a model's batches: the mean of the last one and what was
/// known, weighted towards the recent (a slow day moves it quickly, one fast job less so).
pub fn observed_turnaround(known: Option<i64>, latest: i64) -> i64 {
    match known {
        None => latest,
        Some(known) if latest > known => latest,
        Some(known) => (known + latest) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, model: &str, deadline: i64) -> DeferredRequest {
        DeferredRequest::queued(
            id.to_owned(),
            "arn:aws:iam::1:user/a".to_owned(),
            model.to_owned(),
            Value::Null,
            String::new(),
            0,
            deadline,
        )
    }

    fn rule() -> PlacementRule {
        PlacementRule {
            min_batch_records: 100,
            max_batch_records: 1000,
            default_turnaround: 6 * 3600,
            retry_margin: 900,
        }
    }

    fn decide_all(requests: &[DeferredRequest], now: i64) -> Vec<Decision> {
        let refs: Vec<&DeferredRequest> = requests.iter().collect();
        decide(&refs, now, &rule(), &BTreeMap::new())
    }

    #[test]
    fn enough_requests_with_time_for_a_batch_become_one() {
        let requests: Vec<_> = (0..150)
            .map(|i| request(&format!("r{i:03}"), "m", 24 * 3600 + i))
            .collect();
        let decisions = decide_all(&requests, 0);
        assert_eq!(decisions.len(), 1);
        let Decision::Batch { model_id, ids } = &decisions[0] else {
            panic!("not a batch: {decisions:?}");
        };
        assert_eq!(model_id, "m");
        assert_eq!(ids.len(), 150);
        assert_eq!(ids[0], "r000", "earliest deadline first");
    }

    #[test]
    fn too_few_for_a_batch_wait_while_a_batch_can_still_make_it() {
        let requests: Vec<_> = (0..5)
            .map(|i| request(&format!("r{i}"), "m", 24 * 3600))
            .collect();
        assert!(decide_all(&requests, 0).is_empty());
        // Once a batch could no longer make the deadline, flex.
        let later = 24 * 3600 - (6 * 3600 + 900) + 1;
        let decisions = decide_all(&requests, later);
        assert_eq!(decisions.len(), 5);
        assert!(decisions.iter().all(|d| matches!(d, Decision::Flex(_))));
    }

    #[test]
    fn a_deadline_a_batch_cannot_meet_goes_to_flex_then_default_then_expires() {
        let one_hour = [request("r", "m", 3600)];
        assert_eq!(decide_all(&one_hour, 0), vec![Decision::Flex("r".into())]);
        assert_eq!(
            decide_all(&one_hour, 3600 - 900),
            vec![Decision::Default("r".into())],
            "no time left for a retry after flex"
        );
        assert_eq!(
            decide_all(&one_hour, 3600),
            vec![Decision::Expire("r".into())]
        );
    }

    #[test]
    fn observed_turnaround_decides_over_the_default() {
        let requests: Vec<_> = (0..100)
            .map(|i| request(&format!("r{i:03}"), "m", 3 * 3600))
            .collect();
        let refs: Vec<&DeferredRequest> = requests.iter().collect();
        assert!(
            decide(&refs, 0, &rule(), &BTreeMap::new())
                .iter()
                .all(|d| matches!(d, Decision::Flex(_))),
            "the 6 h default cannot meet 3 h"
        );
        let fast = BTreeMap::from([("m".to_owned(), 3600)]);
        assert!(matches!(
            decide(&refs, 0, &rule(), &fast)[..],
            [Decision::Batch { .. }]
        ));
    }

    #[test]
    fn a_request_a_job_failed_is_never_batched_again() {
        let mut requests: Vec<_> = (0..100)
            .map(|i| request(&format!("r{i:03}"), "m", 24 * 3600))
            .collect();
        requests[0].batch_failed = true;
        let decisions = decide_all(&requests, 0);
        assert!(decisions.contains(&Decision::Flex("r000".into())));
        assert!(
            !decisions
                .iter()
                .any(|d| matches!(d, Decision::Batch { .. })),
            "99 left are too few"
        );
    }

    #[test]
    fn models_are_batched_apart() {
        let mut requests: Vec<_> = (0..100)
            .map(|i| request(&format!("a{i:03}"), "a", 24 * 3600))
            .collect();
        requests.extend((0..99).map(|i| request(&format!("b{i:03}"), "b", 24 * 3600)));
        let decisions = decide_all(&requests, 0);
        assert_eq!(decisions.len(), 1);
        assert!(matches!(&decisions[0], Decision::Batch { model_id, .. } if model_id == "a"));
    }

    #[test]
    fn a_lapsed_claim_makes_a_request_placeable_again() {
        let mut placed = request("r", "m", 3600);
        placed.status = DeferredStatus::Placed;
        placed.placement = Some(Placement::Flex);
        placed.claim = Some(Lease {
            holder: "run".into(),
            until: 100,
        });
        assert!(!placed.placeable(99));
        assert!(placed.placeable(100));
        placed.placement = Some(Placement::Batch);
        assert!(!placed.placeable(100), "a batch's requests wait for it");
    }

    #[test]
    fn deadlines_are_read_from_either_form_and_held_to_bounds() {
        assert_eq!(deadline_of(None, Some("PT24H"), 0, 60, 86400), Ok(86400));
        assert_eq!(deadline_of(None, Some("P1D"), 0, 60, 86400), Ok(86400));
        assert_eq!(
            deadline_of(Some("1970-01-01T01:00:00Z"), None, 0, 60, 86400),
            Ok(3600)
        );
        assert_eq!(
            deadline_of(None, Some("PT30S"), 0, 60, 86400),
            Err(DeadlineError::TooSoon(30, 60))
        );
        assert_eq!(
            deadline_of(None, Some("P2D"), 0, 60, 86400),
            Err(DeadlineError::TooFar(172_800, 86400))
        );
        assert!(matches!(
            deadline_of(None, Some("tomorrow"), 0, 60, 86400),
            Err(DeadlineError::NotADuration(_))
        ));
        assert!(matches!(
            deadline_of(Some("soon"), None, 0, 60, 86400),
            Err(DeadlineError::NotATime(_))
        ));
        assert_eq!(
            deadline_of(Some("x"), Some("y"), 0, 60, 86400),
            Err(DeadlineError::Both)
        );
        assert_eq!(
            deadline_of(None, None, 0, 60, 86400),
            Err(DeadlineError::Neither)
        );
    }

    #[test]
    fn a_slower_batch_raises_the_turnaround_at_once_a_faster_one_by_half() {
        assert_eq!(observed_turnaround(None, 100), 100);
        assert_eq!(observed_turnaround(Some(100), 300), 300);
        assert_eq!(observed_turnaround(Some(300), 100), 200);
    }
}
