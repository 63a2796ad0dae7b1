//! Per-tenant limits: requests and tokens per minute, counted in fixed one-minute windows, and
//! concurrent requests, held as leases that expire by themselves. The rules are here; the
//! counters live behind the `TenantLimiter` port.
//!
//! A window is the calendar minute in UTC (epoch seconds divided by 60). A request is counted
//! in the window it is admitted in, and reserves its estimated tokens there (the serialized
//! conversation's byte length, an upper bound of its input tokens, plus its output cap); once
//! answered, the reservation is replaced by the tokens the model reported.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::conversation::Conversation;

/// The length of a rate window, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

/// A tenant key's optional limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    /// Requests admitted per one-minute window (cache hits included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Tokens (input + output) per one-minute window, reserved at admission by estimate and
    /// corrected to the model's count after the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// Requests in flight at once, streams included until their last event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_requests: Option<u32>,
}

impl TenantLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.has_rate() || self.concurrent_requests.is_some()
    }

    /// Whether a per-minute limit is set.
    pub fn has_rate(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }

    /// Every limit given must be at least 1 (0 would refuse everything: revoke the key instead).
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("requests per minute", self.requests_per_minute),
            ("tokens per minute", self.tokens_per_minute),
            ("concurrent requests", self.concurrent_requests),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "a limit of 0 {name} would refuse every request; give at least 1, or revoke the key"
                ));
            }
        }
        Ok(())
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    RequestsPerMinute,
    TokensPerMinute,
    ConcurrentRequests,
}

impl LimitKind {
    /// The error code of the refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "RequestsPerMinuteExceeded",
            Self::TokensPerMinute => "TokensPerMinuteExceeded",
            Self::ConcurrentRequests => "ConcurrentRequestsExceeded",
        }
    }

    /// The limit's name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "requests per minute",
            Self::TokensPerMinute => "tokens per minute",
            Self::ConcurrentRequests => "concurrent requests",
        }
    }
}

/// A refusal: which limit, its value, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub kind: LimitKind,
    pub limit: u32,
    /// Seconds until the limit may have room again (the window's end; for concurrency, a
    /// second, as slots free as requests end).
    pub retry_after_seconds: u32,
}

/// The window a time falls in: its first second (epoch seconds).
pub fn window_start(now_epoch: i64) -> i64 {
    now_epoch.div_euclid(WINDOW_SECONDS) * WINDOW_SECONDS
}

/// Seconds until the window of `now_epoch` ends, 1 to 60.
pub fn seconds_to_window_end(now_epoch: i64) -> u32 {
    let left = WINDOW_SECONDS - now_epoch.rem_euclid(WINDOW_SECONDS);
    u32::try_from(left).unwrap_or(60)
}

/// The tokens a request may use at most, by estimate: its serialized conversation's byte
/// length (no token is shorter than a byte, so this bounds the input tokens from above) and
/// its output cap (`maxTokens`, or `default_output` when the request gives none).
pub fn estimated_tokens(conversation: &Conversation, default_output: u32) -> TokenEstimate {
    let input = serde_json::to_vec(conversation).map_or(0, |bytes| bytes.len());
    let output = conversation
        .inference_config
        .max_tokens
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(u64::from(default_output));
    TokenEstimate {
        input: u64::try_from(input).unwrap_or(u64::MAX),
        output,
    }
}

/// The most tokens a request may use, input and output apart (pricing differs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenEstimate {
    pub input: u64,
    pub output: u64,
}

impl TokenEstimate {
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// The counts of the window a request was admitted in, after its admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// The window's first second (epoch seconds).
    pub window_start: i64,
    /// Requests counted in the window, this one included.
    pub requests: u64,
    /// Tokens counted or reserved in the window, this request's reservation included.
    pub tokens: u64,
}

/// What the OpenAI route reports in its `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    pub limit_requests: Option<u32>,
    pub remaining_requests: u64,
    pub limit_tokens: Option<u32>,
    pub remaining_tokens: u64,
    /// Seconds until the window ends and both counts reset.
    pub reset_seconds: u32,
}

impl RateStatus {
    /// The status after an admission counted in `counts`, at `now_epoch`.
    pub fn after(limits: &TenantLimits, counts: &WindowCounts, now_epoch: i64) -> Self {
        let remaining = |limit: Option<u32>, used: u64| {
            limit.map_or(0, |limit| u64::from(limit).saturating_sub(used))
        };
        Self {
            limit_requests: limits.requests_per_minute,
            remaining_requests: remaining(limits.requests_per_minute, counts.requests),
            limit_tokens: limits.tokens_per_minute,
            remaining_tokens: remaining(limits.tokens_per_minute, counts.tokens),
            reset_seconds: seconds_to_window_end(now_epoch),
        }
    }

    /// The status of a refusal: nothing of the exceeded limit remains.
    pub fn refused(limits: &TenantLimits, exceeded: &Exceeded, now_epoch: i64) -> Self {
        let mut status = Self::after(limits, &WindowCounts::default(), now_epoch);
        match exceeded.kind {
            LimitKind::RequestsPerMinute => status.remaining_requests = 0,
            LimitKind::TokensPerMinute => status.remaining_tokens = 0,
            LimitKind::ConcurrentRequests => {}
        }
        status
    }
}

/// A duration as OpenAI writes its `x-ratelimit-reset-*` headers: `12s`, `1m0s`.
pub fn openai_duration(seconds: u32) -> String {
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m{}s", seconds / 60, seconds % 60)
    }
}

/// A tenant's concurrency leases: lease id → expiry (epoch seconds), with the version every
/// write is conditional on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    pub leases: BTreeMap<String, i64>,
    pub version: u64,
}

impl Leases {
    /// The leases still live at `now_epoch` (an expired lease is a request whose instance
    /// died or froze: it holds no slot).
    pub fn live(&self, now_epoch: i64) -> BTreeMap<String, i64> {
        self.leases
            .iter()
            .filter(|(_, expiry)| **expiry > now_epoch)
            .map(|(id, expiry)| (id.clone(), *expiry))
            .collect()
    }

    /// The leases to write for a new one, expired ones dropped; `None` when `limit` live
    /// leases are held already.
    pub fn with_new(
        &self,
        lease_id: &str,
        expires_at: i64,
        limit: u32,
        now_epoch: i64,
    ) -> Option<BTreeMap<String, i64>> {
        let mut live = self.live(now_epoch);
        if live.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return None;
        }
        live.insert(lease_id.to_owned(), expires_at);
        Some(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{InferenceConfig, Message};

    #[test]
    fn windows_are_utc_minutes() {
        assert_eq!(window_start(120), 120);
        assert_eq!(window_start(179), 120);
        assert_eq!(seconds_to_window_end(120), 60);
        assert_eq!(seconds_to_window_end(179), 1);
        assert_eq!(window_start(-1), -60);
    }

    #[test]
    fn resets_read_as_openai_writes_them() {
        assert_eq!(openai_duration(12), "12s");
        assert_eq!(openai_duration(60), "1m0s");
        assert_eq!(openai_duration(61), "1m1s");
    }

    #[test]
    fn a_zero_limit_is_refused_by_its_name() {
        let limits = TenantLimits {
            tokens_per_minute: Some(0),
            ..TenantLimits::default()
        };
        assert!(limits.check().unwrap_err().contains("tokens per minute"));
        assert!(TenantLimits::default().check().is_ok());
        assert!(!TenantLimits::default().any());
    }

    #[test]
    fn the_estimate_bounds_input_by_bytes_and_output_by_max_tokens() {
        let mut conversation = Conversation {
            system: vec![],
            messages: vec![Message::user_text("hello there")],
            inference_config: InferenceConfig::default(),
            additional_model_request_fields: None,
            tool_config: None,
        };
        let without = estimated_tokens(&conversation, 4096);
        assert_eq!(without.output, 4096);
        assert!(without.input >= "hello there".len() as u64);
        conversation.inference_config.max_tokens = Some(100);
        assert_eq!(estimated_tokens(&conversation, 4096).output, 100);
    }

    #[test]
    fn expired_leases_hold_no_slot() {
        let leases = Leases {
            leases: [("dead".to_owned(), 100), ("live".to_owned(), 300)].into(),
            version: 4,
        };
        assert_eq!(leases.live(200).len(), 1);
        assert_eq!(leases.with_new("new", 500, 1, 200), None);
        let written = leases.with_new("new", 500, 2, 200).unwrap();
        assert_eq!(written.keys().collect::<Vec<_>>(), ["live", "new"]);
    }

    #[test]
    fn headers_count_down_and_a_refusal_shows_none_left() {
        let limits = TenantLimits {
            requests_per_minute: Some(10),
            tokens_per_minute: Some(1000),
            concurrent_requests: None,
        };
        let counts = WindowCounts {
            window_start: 120,
            requests: 3,
            tokens: 400,
        };
        let status = RateStatus::after(&limits, &counts, 130);
        assert_eq!(status.remaining_requests, 7);
        assert_eq!(status.remaining_tokens, 600);
        assert_eq!(status.reset_seconds, 50);
        let exceeded = Exceeded {
            kind: LimitKind::RequestsPerMinute,
            limit: 10,
            retry_after_seconds: 50,
        };
        assert_eq!(
            RateStatus::refused(&limits, &exceeded, 130).remaining_requests,
            0
        );
    }
}
