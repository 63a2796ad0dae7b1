//! Choosing the capacity: Provisioned Throughput or on-demand, with spillover.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    OnDemand,
    Provisioned,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::Provisioned => "provisioned",
        }
    }
}

/// A daily window `HH:MM-HH:MM`, start included, end excluded; a start after the end wraps
/// past midnight (`22:00-06:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyWindow {
    start: NaiveTime,
    end: NaiveTime,
}

impl DailyWindow {
    pub fn contains(&self, time: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

impl FromStr for DailyWindow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (start, end) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a window like 09:00-17:00"))?;
        let parse = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("{t:?} is not a time like 09:00"))
        };
        let window = Self {
            start: parse(start)?,
            end: parse(end)?,
        };
        if window.start == window.end {
            return Err(format!("{s:?} is an empty window"));
        }
        Ok(window)
    }
}

impl fmt::Display for DailyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingPolicy {
    /// Provisioned first whenever configured; on-demand when it throttles or is unavailable.
    Spillover,
    /// Provisioned inside the window (in the time zone), on-demand outside; spillover applies.
    Schedule { window: DailyWindow, time_zone: Tz },
}

/// Where one call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What is sent as `modelId`: the base model or a Provisioned Throughput ARN.
    pub model_id: String,
    pub route: Route,
}

/// The first target, and where to retry if it throttles or is unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub primary: Target,
    pub spillover: Option<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityRouter {
    /// Base model id → Provisioned Throughput ARN.
    provisioned: HashMap<String, String>,
    policy: RoutingPolicy,
}

impl CapacityRouter {
    pub fn new(provisioned: HashMap<String, String>, policy: RoutingPolicy) -> Self {
        Self {
            provisioned,
            policy,
        }
    }

    /// Parses `MODEL_ID=ARN` entries separated by commas.
    pub fn parse_provisioned(spec: &str) -> Result<HashMap<String, String>, String> {
        spec.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (model, arn) = entry.split_once('=').ok_or_else(|| {
                    format!("entry {entry:?} is not MODEL_ID=PROVISIONED_MODEL_ARN")
                })?;
                let arn = arn.trim();
                if !arn.starts_with("arn:") {
                    return Err(format!("entry {entry:?}: {arn:?} is not an ARN"));
                }
                Ok((model.trim().to_owned(), arn.to_owned()))
            })
            .collect()
    }

    pub fn provisioned_arns(&self) -> impl Iterator<Item = &str> {
        self.provisioned.values().map(String::as_str)
    }

    pub fn plan(&self, base_model_id: &str, now: DateTime<Utc>) -> Plan {
        let on_demand = Target {
            model_id: base_model_id.to_owned(),
            route: Route::OnDemand,
        };
        let Some(arn) = self.provisioned.get(base_model_id) else {
            return Plan {
                primary: on_demand,
                spillover: None,
            };
        };
        let use_provisioned = match &self.policy {
            RoutingPolicy::Spillover => true,
            RoutingPolicy::Schedule { window, time_zone } => {
                window.contains(now.with_timezone(time_zone).time())
            }
        };
        if use_provisioned {
            Plan {
                primary: Target {
                    model_id: arn.clone(),
                    route: Route::Provisioned,
                },
                spillover: Some(on_demand),
            }
        } else {
            Plan {
                primary: on_demand,
                spillover: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/pt1";

    fn router(policy: RoutingPolicy) -> CapacityRouter {
        CapacityRouter::new(
            CapacityRouter::parse_provisioned(&format!("{MODEL}={ARN}")).unwrap(),
            policy,
        )
    }

    #[test]
    fn spillover_sends_to_provisioned_then_on_demand() {
        let plan = router(RoutingPolicy::Spillover).plan(MODEL, Utc::now());
        assert_eq!(plan.primary.model_id, ARN);
        assert_eq!(plan.primary.route, Route::Provisioned);
        assert_eq!(plan.spillover.unwrap().model_id, MODEL);
        let other = router(RoutingPolicy::Spillover).plan("other", Utc::now());
        assert_eq!(other.primary.route, Route::OnDemand);
        assert!(other.spillover.is_none());
    }

    #[test]
    fn schedule_follows_the_clock_in_its_time_zone() {
        let policy = RoutingPolicy::Schedule {
            window: "09:00-17:00".parse().unwrap(),
            time_zone: "Asia/Tokyo".parse().unwrap(),
        };
        let r = router(policy);
        // 01:00 UTC is 10:00 in Tokyo: inside.
        let inside = Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap();
        assert_eq!(r.plan(MODEL, inside).primary.route, Route::Provisioned);
        // 09:00 UTC is 18:00 in Tokyo: outside.
        let outside = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        let plan = r.plan(MODEL, outside);
        assert_eq!(plan.primary.route, Route::OnDemand);
        assert!(plan.spillover.is_none());
    }

    #[test]
    fn windows_parse_and_wrap_midnight() {
        let night: DailyWindow = "22:00-06:00".parse().unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(night.contains(t(23, 0)) && night.contains(t(5, 59)));
        assert!(!night.contains(t(6, 0)) && !night.contains(t(12, 0)));
        let day: DailyWindow = "09:00-17:00".parse().unwrap();
        assert!(day.contains(t(9, 0)) && !day.contains(t(17, 0)));
        assert_eq!(day.to_string(), "09:00-17:00");
        for bad in ["9-5", "09:00", "09:00-09:00", "25:00-26:00"] {
            assert!(bad.parse::<DailyWindow>().is_err(), "{bad}");
        }
        assert!(CapacityRouter::parse_provisioned("m=not-an-arn").is_err());
        assert!(CapacityRouter::parse_provisioned("just-a-model").is_err());
    }
}
