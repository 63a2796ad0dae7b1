//! Converse's `serviceTier` (`{"type": "priority" | "default" | "flex" | "reserved"}`) and
//! `performanceConfig` (`{"latency": "standard" | "optimized"}`): checked as Bedrock checks
//! them, and echoed in the answer (the Converse response, the stream's `metadata` event) when
//! the request named them.
//!
//! The runtime serves the tiers differently (see the runtime's `Behaviour`): `flex` may be
//! throttled (`flexThrottleRate`) and is slower (`flexLatencyFactor`), `priority` is faster
//! (`priorityLatencyFactor`), `default` is the usual pace. `reserved` is refused: the emulator
//! holds no reserved capacity. `performanceConfig` is echoed and changes nothing.

use serde_json::{json, Value};

use crate::error::BedrockError;

/// Bedrock's `ServiceTierType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServiceTier {
    Priority,
    Default,
    Flex,
    Reserved,
}

impl ServiceTier {
    const ALL: [ServiceTier; 4] = [
        ServiceTier::Priority,
        ServiceTier::Default,
        ServiceTier::Flex,
        ServiceTier::Reserved,
    ];

    /// Its name on the wire (and in `/_emulator/stats`' `tiers`).
    pub const fn name(self) -> &'static str {
        match self {
            ServiceTier::Priority => "priority",
            ServiceTier::Default => "default",
            ServiceTier::Flex => "flex",
            ServiceTier::Reserved => "reserved",
        }
    }

    /// The answer's `serviceTier` member.
    pub fn echo(self) -> Value {
        json!({ "type": self.name() })
    }
}

/// Bedrock's `PerformanceConfigLatency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    Standard,
    Optimized,
}

impl Latency {
    pub const fn name(self) -> &'static str {
        match self {
            Latency::Standard => "standard",
            Latency::Optimized => "optimized",
        }
    }

    /// The answer's `performanceConfig` member.
    pub fn echo(self) -> Value {
        json!({ "latency": self.name() })
    }
}

/// The message Bedrock's request validation gives a member outside its enum.
pub(crate) fn not_in_enum(value: &Value, at: &str, set: &[&str]) -> BedrockError {
    let shown = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    BedrockError::validation(format!(
        "1 validation error detected: Value '{shown}' at '{at}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        set.join(", ")
    ))
}

/// The message Bedrock's request validation gives a required member left out.
pub(crate) fn missing(at: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value null at '{at}' failed to satisfy constraint: Member must not be null"
    ))
}

fn malformed(member: &str, expected: &str) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: {member}: expected {expected}"
    ))
}

/// The tier a Converse request names (`None` when it names none), or the
/// `ValidationException` Bedrock answers for it. `reserved` is refused.
pub fn requested_tier(request: &Value) -> Result<Option<ServiceTier>, BedrockError> {
    let Some(tier) = request.get("serviceTier").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if !tier.is_object() {
        return Err(malformed("serviceTier", "a structure"));
    }
    let Some(kind) = tier.get("type").filter(|v| !v.is_null()) else {
        return Err(missing("serviceTier.type"));
    };
    let names = ServiceTier::ALL.map(ServiceTier::name);
    let tier = ServiceTier::ALL
        .into_iter()
        .find(|t| kind.as_str() == Some(t.name()))
        .ok_or_else(|| not_in_enum(kind, "serviceTier.type", &names))?;
    if tier == ServiceTier::Reserved {
        return Err(BedrockError::validation(
            "The reserved service tier needs reserved capacity for this model, and this emulator serves none. Try again with the priority, default or flex service tier.",
        ));
    }
    Ok(Some(tier))
}

/// The latency a Converse request's `performanceConfig` asks for (`standard` when it leaves
/// `latency` out; `None` without `performanceConfig`), or the `ValidationException` Bedrock
/// answers for it.
pub fn requested_latency(request: &Value) -> Result<Option<Latency>, BedrockError> {
    let Some(config) = request.get("performanceConfig").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if !config.is_object() {
        return Err(malformed("performanceConfig", "a structure"));
    }
    let Some(latency) = config.get("latency").filter(|v| !v.is_null()) else {
        return Ok(Some(Latency::Standard));
    };
    [Latency::Standard, Latency::Optimized]
        .into_iter()
        .find(|l| latency.as_str() == Some(l.name()))
        .map(Some)
        .ok_or_else(|| {
            not_in_enum(
                latency,
                "performanceConfig.latency",
                &["standard", "optimized"],
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_read_and_checked() {
        assert_eq!(requested_tier(&json!({})).unwrap(), None);
        for tier in ["priority", "default", "flex"] {
            let found = requested_tier(&json!({"serviceTier": {"type": tier}}))
                .unwrap()
                .unwrap();
            assert_eq!(found.echo(), json!({"type": tier}));
        }
        let bogus = requested_tier(&json!({"serviceTier": {"type": "gold"}})).unwrap_err();
        assert_eq!(bogus.error_type, "ValidationException");
        assert!(
            bogus.message.contains(
                "Value 'gold' at 'serviceTier.type' failed to satisfy constraint: Member must satisfy enum value set: [priority, default, flex, reserved]"
            ),
            "{}",
            bogus.message
        );
        let reserved = requested_tier(&json!({"serviceTier": {"type": "reserved"}})).unwrap_err();
        assert!(reserved.message.contains("serves none"), "{reserved:?}");
        let untyped = requested_tier(&json!({"serviceTier": {}})).unwrap_err();
        assert!(untyped.message.contains("Value null at 'serviceTier.type'"));
        assert!(requested_tier(&json!({"serviceTier": "flex"})).is_err());
    }

    #[test]
    fn performance_configs_are_read_and_checked() {
        assert_eq!(requested_latency(&json!({})).unwrap(), None);
        assert_eq!(
            requested_latency(&json!({"performanceConfig": {}})).unwrap(),
            Some(Latency::Standard)
        );
        let optimized = requested_latency(&json!({"performanceConfig": {"latency": "optimized"}}))
            .unwrap()
            .unwrap();
        assert_eq!(optimized.echo(), json!({"latency": "optimized"}));
        let bogus =
            requested_latency(&json!({"performanceConfig": {"latency": "fast"}})).unwrap_err();
        assert!(bogus
            .message
            .contains("Value 'fast' at 'performanceConfig.latency'"));
    }
}
