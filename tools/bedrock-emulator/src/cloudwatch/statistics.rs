//! The statistics of GetMetricData's `MetricStat` queries (Sum, Average, Minimum, Maximum,
//! SampleCount, pNN), aggregated per period.

use std::collections::BTreeMap;

use super::datum::{Point, Sample};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    Sum,
    Average,
    Minimum,
    Maximum,
    SampleCount,
    /// pNN, 0–100.
    Percentile(f64),
}

impl Stat {
    pub fn parse(stat: &str) -> Option<Stat> {
        Some(match stat {
            "Sum" => Stat::Sum,
            "Average" => Stat::Average,
            "Minimum" => Stat::Minimum,
            "Maximum" => Stat::Maximum,
            "SampleCount" => Stat::SampleCount,
            _ => {
                let digits = stat.strip_prefix('p')?;
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    return None;
                }
                let p: f64 = digits.parse().ok()?;
                if !(0.0..=100.0).contains(&p) {
                    return None;
                }
                Stat::Percentile(p)
            }
        })
    }
}

/// What the datums of one period add up to.
#[derive(Debug, Clone)]
struct Aggregate {
    count: f64,
    sum: f64,
    minimum: f64,
    maximum: f64,
    /// Values with their weights, for percentiles.
    distribution: Vec<(f64, f64)>,
    /// False once a statistic set that hides its values is in the period.
    percentiles: bool,
}

impl Default for Aggregate {
    fn default() -> Self {
        Self {
            count: 0.0,
            sum: 0.0,
            minimum: f64::INFINITY,
            maximum: f64::NEG_INFINITY,
            distribution: Vec::new(),
            percentiles: true,
        }
    }
}

impl Aggregate {
    fn add_value(&mut self, value: f64, count: f64) {
        if count <= 0.0 {
            return;
        }
        self.count += count;
        self.sum += value * count;
        self.minimum = self.minimum.min(value);
        self.maximum = self.maximum.max(value);
        self.distribution.push((value, count));
    }

    fn add(&mut self, sample: &Sample) {
        match sample {
            Sample::Value(v) => self.add_value(*v, 1.0),
            Sample::Values(pairs) => {
                for (v, c) in pairs {
                    self.add_value(*v, *c);
                }
            }
            Sample::Set {
                sample_count,
                sum,
                minimum,
                maximum,
            } => {
                // Percentiles only over sets that stand for one repeated value (CloudWatch's
                // rule for statistic sets).
                if minimum == maximum && *sum == minimum * sample_count {
                    self.add_value(*minimum, *sample_count);
                    return;
                }
                self.percentiles = false;
                self.count += sample_count;
                self.sum += sum;
                self.minimum = self.minimum.min(*minimum);
                self.maximum = self.maximum.max(*maximum);
            }
        }
    }

    fn value(&self, stat: Stat) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        Some(match stat {
            Stat::Sum => self.sum,
            Stat::Average => self.sum / self.count,
            Stat::Minimum => self.minimum,
            Stat::Maximum => self.maximum,
            Stat::SampleCount => self.count,
            Stat::Percentile(p) => {
                if !self.percentiles {
                    return None;
                }
                // Nearest rank over the weighted values.
                let mut sorted = self.distribution.clone();
                sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
                let rank = (p / 100.0 * self.count).ceil().max(1.0);
                let mut seen = 0.0;
                let mut answer = self.maximum;
                for (value, weight) in sorted {
                    seen += weight;
                    if seen >= rank {
                        answer = value;
                        break;
                    }
                }
                answer
            }
        })
    }
}

/// The first period starts at StartTime rounded down: to a multiple of the period below a
/// minute (1, 5, 10, 20, 30 s), to the minute otherwise. Periods run from there, and only datums
/// before EndTime count.
pub fn aggregate(
    points: &[Point],
    start_ms: i64,
    end_ms: i64,
    period_s: i64,
    stat: Stat,
    unit: Option<&str>,
) -> BTreeMap<i64, f64> {
    let period_ms = period_s * 1000;
    let origin = if period_s < 60 {
        start_ms.div_euclid(period_ms) * period_ms
    } else {
        start_ms.div_euclid(60_000) * 60_000
    };
    let mut periods: BTreeMap<i64, Aggregate> = BTreeMap::new();
    for point in points {
        if point.timestamp_ms < origin
            || point.timestamp_ms >= end_ms
            || unit.is_some_and(|u| u != point.unit)
        {
            continue;
        }
        let bucket = origin + (point.timestamp_ms - origin).div_euclid(period_ms) * period_ms;
        periods.entry(bucket).or_default().add(&point.sample);
    }
    periods
        .into_iter()
        .filter_map(|(at, aggregate)| aggregate.value(stat).map(|v| (at, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(seconds: i64, sample: Sample) -> Point {
        Point {
            timestamp_ms: seconds * 1000,
            unit: "Count",
            sample,
        }
    }

    #[test]
    fn periods_start_at_the_rounded_start_time_and_end_before_end_time() {
        let points = vec![
            point(60, Sample::Value(1.0)),
            point(120, Sample::Value(3.0)),
            point(300, Sample::Value(10.0)),
            point(360, Sample::Value(20.0)),
            point(600, Sample::Value(99.0)),
        ];
        // StartTime 01:30 rounds down to 01:00; 5-minute periods from there; EndTime 10:00
        // excludes the datum at 10:00.
        let sums = aggregate(&points, 90_000, 600_000, 300, Stat::Sum, None);
        assert_eq!(sums, BTreeMap::from([(60_000, 14.0), (360_000, 20.0)]));
        let averages = aggregate(&points, 90_000, 600_000, 300, Stat::Average, None);
        assert_eq!(averages[&60_000], 14.0 / 3.0);
        assert!(aggregate(&points, 0, 600_000, 60, Stat::Sum, Some("Seconds")).is_empty());
    }

    #[test]
    fn every_statistic_over_values_counts_and_sets() {
        let mut agg = Aggregate::default();
        agg.add(&Sample::Values(vec![(1.0, 2.0), (10.0, 1.0), (4.0, 0.0)]));
        agg.add(&Sample::Value(5.0));
        agg.add(&Sample::Set {
            sample_count: 2.0,
            sum: 6.0,
            minimum: 3.0,
            maximum: 3.0,
        });
        // Values 1, 1, 3, 3, 5, 10.
        assert_eq!(agg.value(Stat::SampleCount), Some(6.0));
        assert_eq!(agg.value(Stat::Sum), Some(23.0));
        assert_eq!(agg.value(Stat::Minimum), Some(1.0));
        assert_eq!(agg.value(Stat::Maximum), Some(10.0));
        assert_eq!(agg.value(Stat::Percentile(50.0)), Some(3.0));
        assert_eq!(agg.value(Stat::Percentile(99.0)), Some(10.0));
        assert_eq!(agg.value(Stat::Percentile(0.0)), Some(1.0));
        agg.add(&Sample::Set {
            sample_count: 2.0,
            sum: 3.0,
            minimum: 1.0,
            maximum: 2.0,
        });
        assert_eq!(agg.value(Stat::Percentile(50.0)), None);
        assert_eq!(agg.value(Stat::Average), Some(26.0 / 8.0));
        assert_eq!(Stat::parse("p99.9"), Some(Stat::Percentile(99.9)));
        for bad in ["p", "p101", "P50", "tm99", "avg"] {
            assert_eq!(Stat::parse(bad), None, "{bad}");
        }
    }
}
