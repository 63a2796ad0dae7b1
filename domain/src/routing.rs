//! Choosing the capacity: Provisioned Throughput or on-demand, with spillover.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::guardrail::Guardrail;

/// Bedrock's service tier of an on-demand call: the same answer, sooner or later, at a price
/// above or below the default's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceTier {
    Priority,
    Default,
    Flex,
}

impl ServiceTier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Priority => "priority",
            Self::Default => "default",
            Self::Flex => "flex",
        }
    }
}

impl FromStr for ServiceTier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "priority" => Ok(Self::Priority),
            "default" => Ok(Self::Default),
            "flex" => Ok(Self::Flex),
            other => Err(format!(
                "{other:?} is not a service tier: priority, default or flex"
            )),
        }
    }
}

/// Bedrock's latency setting of a call (`performanceConfig.latency`): `optimized` runs the model
/// on faster hardware where Bedrock offers it, at a higher price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Latency {
    Standard,
    Optimized,
}

impl Latency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Optimized => "optimized",
        }
    }
}

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
    /// Equal ends are a whole day from the start.
    pub fn contains(&self, time: NaiveTime) -> bool {
        if self.start == self.end {
            true
        } else if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    fn wraps(&self) -> bool {
        self.start >= self.end
    }
}

/// `HH:MM`, hours 00-23: what the template's AllowedPattern accepts too.
fn parse_time(t: &str) -> Result<NaiveTime, String> {
    let bad = || format!("{t:?} is not a time like 09:00");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m) = (
        h.parse::<u32>().map_err(|_| bad())?,
        m.parse::<u32>().map_err(|_| bad())?,
    );
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

impl FromStr for DailyWindow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (start, end) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a window like 09:00-17:00"))?;
        let window = Self {
            start: parse_time(start)?,
            end: parse_time(end)?,
        };
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

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn parse_day(name: &str) -> Result<usize, String> {
    DAY_NAMES
        .iter()
        .position(|d| *d == name)
        .ok_or_else(|| format!("{name:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

/// A weekly schedule: `[DAYS ]HH:MM-HH:MM`, where DAYS is a comma-separated list of days and
/// day ranges (`Mon-Fri`, `Sat,Sun`, `Fri-Mon`). Without days, every day. A window that wraps
/// past midnight belongs to the day it starts on (`Fri 22:00-06:00` ends Saturday 06:00).
/// Times are wall-clock times in the schedule's zone, so daylight-saving changes move nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Monday first.
    days: [bool; 7],
    window: DailyWindow,
}

impl Schedule {
    /// Whether a local (wall-clock) moment is inside.
    pub fn contains_local(&self, weekday: Weekday, time: NaiveTime) -> bool {
        if !self.window.contains(time) {
            return false;
        }
        let day = weekday.num_days_from_monday() as usize;
        let starting_day = if self.window.wraps() && time < self.window.end {
            (day + 6) % 7
        } else {
            day
        };
        self.days[starting_day]
    }

    pub fn contains(&self, now: DateTime<Utc>, zone: Tz) -> bool {
        let local = now.with_timezone(&zone);
        let time = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second())
            .unwrap_or(NaiveTime::MIN);
        self.contains_local(local.weekday(), time)
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (days_spec, window) = match s.split_once(' ') {
            Some((days, window)) => (Some(days), window),
            None => (None, s),
        };
        let window: DailyWindow = window.parse()?;
        let mut days = [days_spec.is_none(); 7];
        for item in days_spec.into_iter().flat_map(|d| d.split(',')) {
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (parse_day(a)?, parse_day(b)?),
                None => (parse_day(item)?, parse_day(item)?),
            };
            let mut day = first;
            loop {
                days[day] = true;
                if day == last {
                    break;
                }
                day = (day + 1) % 7;
            }
        }
        if !days.contains(&true) {
            return Err(format!("{s:?} names no day"));
        }
        Ok(Self { days, window })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingPolicy {
    /// Provisioned first whenever configured; on-demand when it is unusable.
    Spillover,
    /// Provisioned inside the schedule (in its time zone), on-demand outside; spillover applies.
    Schedule { schedule: Schedule, time_zone: Tz },
}

/// Where one call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What is sent as `modelId`: a model id, an inference profile or a Provisioned
    /// Throughput ARN.
    pub invoke_id: String,
    pub route: Route,
    /// The model whose answer this is: what the answer is cached, priced and reported under.
    pub model: String,
    /// The service tier asked of Bedrock (on-demand only); `None` sends none (Bedrock's default).
    pub service_tier: Option<ServiceTier>,
    /// The guardrail Bedrock applies to the call.
    pub guardrail: Option<Guardrail>,
    /// The latency asked of Bedrock (on-demand only).
    pub latency: Option<Latency>,
}

impl Target {
    /// The model's on-demand target, no tier asked.
    pub fn on_demand(model: &str) -> Self {
        Self {
            invoke_id: model.to_owned(),
            route: Route::OnDemand,
            model: model.to_owned(),
            service_tier: None,
            guardrail: None,
            latency: None,
        }
    }
}

/// The first target, and where to retry if it is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub primary: Target,
    pub spillover: Option<Target>,
}

impl Plan {
    /// The plan's targets: the primary, then the spillover.
    fn targets_mut(&mut self) -> impl Iterator<Item = &mut Target> {
        std::iter::once(&mut self.primary).chain(self.spillover.as_mut())
    }

    /// The plan with `latency` asked of its on-demand targets.
    pub fn with_latency(mut self, latency: Option<Latency>) -> Self {
        for target in self.targets_mut().filter(|t| t.route == Route::OnDemand) {
            target.latency = latency;
        }
        self
    }

    /// The plan with `guardrail` applied to every target.
    pub fn with_guardrail(mut self, guardrail: Option<&Guardrail>) -> Self {
        for target in self.targets_mut() {
            target.guardrail = guardrail.cloned();
        }
        self
    }

    /// The plan with `tier` asked of its on-demand targets (Provisioned Throughput has none).
    pub fn with_service_tier(mut self, tier: Option<ServiceTier>) -> Self {
        for target in self.targets_mut().filter(|t| t.route == Route::OnDemand) {
            target.service_tier = tier;
        }
        self
    }
}

/// A Provisioned Throughput serving a custom model: its own answers, cached apart, and a
/// fallback to a base model only where the configuration names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomModel {
    pub arn: String,
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityRouter {
    /// Base model id → Provisioned Throughput ARN.
    provisioned: HashMap<String, String>,
    /// Custom model name (what callers send as `modelId`) → its Provisioned Throughput.
    custom: HashMap<String, CustomModel>,
    policy: RoutingPolicy,
}

fn check_arn(entry: &str, arn: &str) -> Result<(), String> {
    if arn.starts_with("arn:") && arn.contains(":provisioned-model/") {
        Ok(())
    } else {
        Err(format!(
            "entry {entry:?}: {arn:?} is not a Provisioned Throughput ARN (arn:aws:bedrock:REGION:ACCOUNT:provisioned-model/ID)"
        ))
    }
}

fn entries(spec: &str) -> impl Iterator<Item = &str> {
    spec.split(',').map(str::trim).filter(|e| !e.is_empty())
}

impl CapacityRouter {
    pub fn new(provisioned: HashMap<String, String>, policy: RoutingPolicy) -> Self {
        Self {
            provisioned,
            custom: HashMap::new(),
            policy,
        }
    }

    pub fn with_custom_models(mut self, custom: HashMap<String, CustomModel>) -> Self {
        self.custom = custom;
        self
    }

    /// Parses `MODEL_ID=ARN` entries separated by commas.
    pub fn parse_provisioned(spec: &str) -> Result<HashMap<String, String>, String> {
        entries(spec)
            .map(|entry| {
                let (model, arn) = entry.split_once('=').ok_or_else(|| {
                    format!("entry {entry:?} is not MODEL_ID=PROVISIONED_MODEL_ARN")
                })?;
                check_arn(entry, arn.trim())?;
                Ok((model.trim().to_owned(), arn.trim().to_owned()))
            })
            .collect()
    }

    /// Parses `NAME=ARN` or `NAME=ARN>FALLBACK_MODEL_ID` entries separated by commas.
    pub fn parse_custom(spec: &str) -> Result<HashMap<String, CustomModel>, String> {
        entries(spec)
            .map(|entry| {
                let (name, rest) = entry.split_once('=').ok_or_else(|| {
                    format!("entry {entry:?} is not NAME=PROVISIONED_MODEL_ARN[>FALLBACK_MODEL_ID]")
                })?;
                let (arn, fallback) = match rest.split_once('>') {
                    Some((arn, fallback)) if !fallback.trim().is_empty() => {
                        (arn.trim(), Some(fallback.trim().to_owned()))
                    }
                    Some(_) => {
                        return Err(format!("entry {entry:?}: the fallback after '>' is empty"))
                    }
                    None => (rest.trim(), None),
                };
                check_arn(entry, arn)?;
                let custom = CustomModel {
                    arn: arn.to_owned(),
                    fallback,
                };
                Ok((name.trim().to_owned(), custom))
            })
            .collect()
    }

    /// Custom model names, which callers may send as `modelId`.
    pub fn custom_models(&self) -> impl Iterator<Item = &str> {
        self.custom.keys().map(String::as_str)
    }

    fn on_demand(model: &str) -> Target {
        Target::on_demand(model)
    }

    pub fn plan(&self, model: &str, now: DateTime<Utc>) -> Plan {
        if let Some(custom) = self.custom.get(model) {
            // The custom model exists only on its capacity: the schedule cannot move it.
            return Plan {
                primary: Target {
                    latency: None,
                    guardrail: None,
                    invoke_id: custom.arn.clone(),
                    route: Route::Provisioned,
                    model: model.to_owned(),
                    service_tier: None,
                },
                spillover: custom.fallback.as_deref().map(Self::on_demand),
            };
        }
        let on_demand = Self::on_demand(model);
        let Some(arn) = self.provisioned.get(model) else {
            return Plan {
                primary: on_demand,
                spillover: None,
            };
        };
        let use_provisioned = match &self.policy {
            RoutingPolicy::Spillover => true,
            RoutingPolicy::Schedule {
                schedule,
                time_zone,
            } => schedule.contains(now, *time_zone),
        };
        if use_provisioned {
            Plan {
                primary: Target {
                    latency: None,
                    guardrail: None,
                    invoke_id: arn.clone(),
                    route: Route::Provisioned,
                    model: model.to_owned(),
                    service_tier: None,
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
    const CUSTOM_ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/custom1";

    fn router(policy: RoutingPolicy) -> CapacityRouter {
        CapacityRouter::new(
            CapacityRouter::parse_provisioned(&format!("{MODEL}={ARN}")).unwrap(),
            policy,
        )
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn scheduled(spec: &str, zone: &str) -> CapacityRouter {
        router(RoutingPolicy::Schedule {
            schedule: spec.parse().unwrap(),
            time_zone: zone.parse().unwrap(),
        })
    }

    #[test]
    fn spillover_sends_to_provisioned_then_on_demand() {
        let plan = router(RoutingPolicy::Spillover).plan(MODEL, Utc::now());
        assert_eq!(plan.primary.invoke_id, ARN);
        assert_eq!(plan.primary.model, MODEL);
        assert_eq!(plan.primary.route, Route::Provisioned);
        assert_eq!(plan.spillover.unwrap().invoke_id, MODEL);
        let other = router(RoutingPolicy::Spillover).plan("other", Utc::now());
        assert_eq!(other.primary.route, Route::OnDemand);
        assert!(other.spillover.is_none());
    }

    #[test]
    fn custom_models_are_their_own_and_fall_back_only_where_configured() {
        let custom = CapacityRouter::parse_custom(&format!(
            "support-bot={CUSTOM_ARN}>{MODEL}, legal-bot={CUSTOM_ARN}"
        ))
        .unwrap();
        let r = router(RoutingPolicy::Spillover).with_custom_models(custom);
        let plan = r.plan("support-bot", Utc::now());
        assert_eq!(plan.primary.invoke_id, CUSTOM_ARN);
        assert_eq!(plan.primary.model, "support-bot");
        assert_eq!(plan.spillover.unwrap().model, MODEL);
        assert_eq!(r.plan("legal-bot", Utc::now()).spillover, None);
        for bad in [
            "x",
            "x=arn:aws:bedrock:us-east-1:1:foundation-model/m",
            &format!("x={CUSTOM_ARN}>"),
        ] {
            assert!(CapacityRouter::parse_custom(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedule_follows_the_clock_in_its_time_zone() {
        let r = scheduled("09:00-17:00", "Asia/Tokyo");
        // 01:00 UTC is 10:00 in Tokyo: inside.
        assert_eq!(
            r.plan(MODEL, utc(2026, 11, 23, 1, 0)).primary.route,
            Route::Provisioned
        );
        // 09:00 UTC is 18:00 in Tokyo: outside.
        let plan = r.plan(MODEL, utc(2026, 11, 23, 9, 0));
        assert_eq!(plan.primary.route, Route::OnDemand);
        assert!(plan.spillover.is_none());
    }

    #[test]
    fn weekdays_limit_the_schedule() {
        let r = scheduled("Mon-Fri 09:00-18:00", "Asia/Tokyo");
        // Monday 2026-11-23 10:00 in Tokyo; Saturday 2026-11-28 10:00 in Tokyo.
        assert_eq!(
            r.plan(MODEL, utc(2026, 11, 23, 1, 0)).primary.route,
            Route::Provisioned
        );
        assert_eq!(
            r.plan(MODEL, utc(2026, 11, 28, 1, 0)).primary.route,
            Route::OnDemand
        );
        // A night window belongs to the day it starts on.
        let night: Schedule = "Fri 22:00-06:00".parse().unwrap();
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
        assert!(night.contains_local(Weekday::Fri, t(23)));
        assert!(night.contains_local(Weekday::Sat, t(5)));
        assert!(!night.contains_local(Weekday::Sat, t(23)));
        assert!(!night.contains_local(Weekday::Fri, t(5)));
        let weekend: Schedule = "Fri-Mon 10:00-12:00".parse().unwrap();
        for (day, inside) in [
            (Weekday::Fri, true),
            (Weekday::Sun, true),
            (Weekday::Mon, true),
            (Weekday::Tue, false),
        ] {
            assert_eq!(weekend.contains_local(day, t(11)), inside, "{day}");
        }
    }

    #[test]
    fn windows_hold_across_daylight_saving_changes() {
        // New York: clocks go forward on 2026-03-08 (EST → EDT), back on 2026-11-01.
        let r = scheduled("09:00-17:00", "America/New_York");
        let route = |at| r.plan(MODEL, at).primary.route;
        // The day before spring-forward 09:00 is 14:00 UTC; the day of, 13:00 UTC.
        assert_eq!(route(utc(2026, 3, 7, 13, 30)), Route::OnDemand);
        assert_eq!(route(utc(2026, 3, 7, 14, 0)), Route::Provisioned);
        assert_eq!(route(utc(2026, 3, 8, 13, 0)), Route::Provisioned);
        assert_eq!(route(utc(2026, 3, 8, 12, 59)), Route::OnDemand);
        assert_eq!(route(utc(2026, 3, 8, 21, 0)), Route::OnDemand);
        // Fall-back day: 09:00 EST is 14:00 UTC; the day before, 09:00 EDT was 13:00 UTC.
        assert_eq!(route(utc(2026, 10, 31, 13, 0)), Route::Provisioned);
        assert_eq!(route(utc(2026, 11, 1, 13, 30)), Route::OnDemand);
        assert_eq!(route(utc(2026, 11, 1, 14, 0)), Route::Provisioned);
        assert_eq!(route(utc(2026, 11, 1, 21, 59)), Route::Provisioned);
        assert_eq!(route(utc(2026, 11, 1, 22, 0)), Route::OnDemand);
        // A window inside the repeated hour (01:00-02:00 happens twice on fall-back day).
        let r = scheduled("01:00-02:00", "America/New_York");
        assert_eq!(
            r.plan(MODEL, utc(2026, 11, 1, 5, 30)).primary.route,
            Route::Provisioned
        );
        assert_eq!(
            r.plan(MODEL, utc(2026, 11, 1, 6, 30)).primary.route,
            Route::Provisioned
        );
        assert_eq!(
            r.plan(MODEL, utc(2026, 11, 1, 7, 0)).primary.route,
            Route::OnDemand
        );
    }

    #[test]
    fn windows_parse_and_wrap_midnight() {
        let night: DailyWindow = "22:00-06:00".parse().unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(night.contains(t(23, 0)) && night.contains(t(5, 59)));
        assert!(!night.contains(t(6, 0)) && !night.contains(t(12, 0)));
        assert!("09:00-09:00"
            .parse::<DailyWindow>()
            .unwrap()
            .contains(t(3, 0)));
        let day: DailyWindow = "09:00-17:00".parse().unwrap();
        assert!(day.contains(t(9, 0)) && !day.contains(t(17, 0)));
        assert_eq!(day.to_string(), "09:00-17:00");
        assert!(CapacityRouter::parse_provisioned("m=not-an-arn").is_err());
        assert!(CapacityRouter::parse_provisioned("just-a-model").is_err());
    }

    #[test]
    fn malformed_schedules_are_refused() {
        for bad in [
            "9-5",
            "09:00",
            "25:00-26:00",
            "9:00-17:00",
            "mon-fri 09:00-17:00",
            "Mon-Fri  09:00-17:00",
            "Mon,,Fri 09:00-17:00",
            "09:00-17:00 Mon-Fri",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
        // Equal ends are a whole day from the start.
        let all_day: Schedule = "Mon-Fri 00:00-00:00".parse().unwrap();
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
        assert!(all_day.contains_local(Weekday::Fri, t(23)));
        assert!(!all_day.contains_local(Weekday::Sat, t(1)));
    }
}
