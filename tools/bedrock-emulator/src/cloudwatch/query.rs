//! GetMetricData: `MetricStat` queries aggregated per period (Sum, Average, Minimum, Maximum,
//! SampleCount, pNN), and metric math over them limited to arithmetic (`+ - * /`, parentheses,
//! numbers, other queries' ids).

use std::collections::{BTreeMap, HashMap};

use super::doc::{Doc, Fields};
use super::error::CwError;
use super::store::{check_dimensions, check_unit, MetricKey, Metrics, Point, Sample};

/// Queries in one GetMetricData request.
pub const MAX_QUERIES: usize = 500;

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

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Stat {
        key: MetricKey,
        period: i64,
        stat: Stat,
        unit: Option<&'static str>,
    },
    Expression(Expr),
}

#[derive(Debug, Clone, PartialEq)]
struct Query {
    id: String,
    label: Option<String>,
    return_data: bool,
    source: Source,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    queries: Vec<Query>,
    start_ms: i64,
    end_ms: i64,
    ascending: bool,
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// GetMetricDataInput, checked.
pub fn parse(doc: &Doc) -> Result<Request, CwError> {
    let input = Fields::root(doc)?;
    let items = input
        .list("MetricDataQueries")?
        .filter(|items| !items.is_empty())
        .ok_or_else(|| CwError::missing("MetricDataQueries"))?;
    if items.len() > MAX_QUERIES {
        return Err(CwError::too_many("MetricDataQueries", MAX_QUERIES));
    }
    let start = input
        .timestamp("StartTime")?
        .ok_or_else(|| CwError::missing("StartTime"))?;
    let end = input
        .timestamp("EndTime")?
        .ok_or_else(|| CwError::missing("EndTime"))?;
    if start >= end {
        return Err(CwError::invalid_value(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    if input.string("NextToken")?.is_some() {
        // The emulator answers every data point at once and never hands out a token.
        return Err(CwError::invalid_next_token("The NextToken is invalid."));
    }
    let ascending = match input.string("ScanBy")? {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(other) => return Err(CwError::invalid_value_for("ScanBy", other)),
    };
    let mut queries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("MetricDataQueries.member.{}", i + 1);
        let query = parse_query(item, &path)?;
        if queries.iter().any(|q: &Query| q.id == query.id) {
            return Err(CwError::validation(format!(
                "The value {} for parameter {path}.Id is not unique.",
                query.id
            )));
        }
        queries.push(query);
    }
    // Every id an expression names must be another query's.
    for query in &queries {
        if let Source::Expression(expr) = &query.source {
            let mut ids = Vec::new();
            expr.ids(&mut ids);
            if let Some(unknown) = ids.iter().find(|id| !queries.iter().any(|q| &q.id == *id)) {
                return Err(CwError::validation(format!(
                    "Error in expression {}: Unrecognized metric or expression id {unknown}",
                    query.id
                )));
            }
        }
    }
    Ok(Request {
        queries,
        start_ms: (start * 1000.0).floor() as i64,
        end_ms: (end * 1000.0).floor() as i64,
        ascending,
    })
}

fn parse_query(item: &Doc, path: &str) -> Result<Query, CwError> {
    let query = Fields::at(item, path)?;
    let id = query
        .string("Id")?
        .ok_or_else(|| CwError::missing(&format!("{path}.Id")))?;
    if !valid_id(id) {
        return Err(CwError::validation(format!(
            "The value {id} for parameter {path}.Id is invalid: an id starts with a lowercase letter and holds only letters, digits and underscores."
        )));
    }
    let source = match (query.get("MetricStat"), query.string("Expression")?) {
        (Some(_), Some(_)) => {
            return Err(CwError::invalid_combination(format!(
                "The parameters {path}.MetricStat and {path}.Expression are mutually exclusive and you have specified both."
            )))
        }
        (None, None) => {
            return Err(CwError::validation(format!(
                "The parameter {path}.MetricStat is required."
            )))
        }
        (Some(stat), None) => parse_metric_stat(stat, &format!("{path}.MetricStat"))?,
        (None, Some(expression)) => Source::Expression(
            Expr::parse(expression)
                .map_err(|e| CwError::validation(format!("Error in expression {id}: {e}")))?,
        ),
    };
    Ok(Query {
        id: id.to_owned(),
        label: query.string("Label")?.map(str::to_owned),
        return_data: query.boolean("ReturnData")?.unwrap_or(true),
        source,
    })
}

fn parse_metric_stat(doc: &Doc, path: &str) -> Result<Source, CwError> {
    let stat = Fields::at(doc, path)?;
    let metric_path = format!("{path}.Metric");
    let metric = stat
        .get("Metric")
        .ok_or_else(|| CwError::missing(&metric_path))?;
    let metric = Fields::at(metric, &metric_path)?;
    let namespace = metric
        .string("Namespace")?
        .ok_or_else(|| CwError::missing(&format!("{metric_path}.Namespace")))?;
    let name = metric
        .string("MetricName")?
        .ok_or_else(|| CwError::missing(&format!("{metric_path}.MetricName")))?;
    let mut dimensions = Vec::new();
    for (i, dimension) in metric.list("Dimensions")?.unwrap_or(&[]).iter().enumerate() {
        let dimension_path = format!("{metric_path}.Dimensions.member.{}", i + 1);
        let dimension = Fields::at(dimension, &dimension_path)?;
        dimensions.push((
            dimension.string("Name")?.map(str::to_owned),
            dimension.string("Value")?.map(str::to_owned),
        ));
    }
    let dimensions = check_dimensions(&metric_path, &dimensions)?;
    let period = stat
        .integer("Period")?
        .ok_or_else(|| CwError::missing(&format!("{path}.Period")))?;
    if period <= 0
        || (period < 60 && ![1, 5, 10, 20, 30].contains(&period))
        || (period >= 60 && period % 60 != 0)
    {
        return Err(CwError::invalid_value(format!(
            "The parameter {path}.Period must be 1, 5, 10, 20, 30, or a multiple of 60."
        )));
    }
    let stat_name = stat
        .string("Stat")?
        .ok_or_else(|| CwError::missing(&format!("{path}.Stat")))?;
    let parsed = Stat::parse(stat_name)
        .ok_or_else(|| CwError::invalid_value_for(&format!("{path}.Stat"), stat_name))?;
    let unit = match stat.string("Unit")? {
        None => None,
        Some(unit) => Some(check_unit(&format!("{path}.Unit"), Some(unit))?),
    };
    Ok(Source::Stat {
        key: MetricKey::new(namespace, name, dimensions),
        period,
        stat: parsed,
        unit,
    })
}

/// Answers a checked request from the store: GetMetricDataOutput.
pub fn run(request: &Request, metrics: &Metrics) -> Result<Doc, CwError> {
    let mut series: HashMap<&str, BTreeMap<i64, f64>> = HashMap::new();
    for query in &request.queries {
        if let Source::Stat {
            key,
            period,
            stat,
            unit,
        } = &query.source
        {
            let points = metrics.with_points(key, |points| {
                aggregate(
                    points,
                    request.start_ms,
                    request.end_ms,
                    *period,
                    *stat,
                    *unit,
                )
            });
            series.insert(&query.id, points);
        }
    }
    // Expressions, each once its inputs are known; what never resolves is a cycle.
    let mut pending: Vec<&Query> = request
        .queries
        .iter()
        .filter(|q| matches!(q.source, Source::Expression(_)))
        .collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut waiting = Vec::new();
        for query in pending {
            let Source::Expression(expr) = &query.source else {
                continue;
            };
            let mut ids = Vec::new();
            expr.ids(&mut ids);
            if ids.iter().all(|id| series.contains_key(id.as_str())) {
                let value = expr.eval(&series);
                match value {
                    Value::Series(points) => {
                        series.insert(&query.id, points);
                    }
                    Value::Scalar(_) => {
                        return Err(CwError::validation(format!(
                        "Error in expression {}: the expression must reference at least one metric",
                        query.id
                    )))
                    }
                }
            } else {
                waiting.push(query);
            }
        }
        if waiting.len() == before {
            let ids: Vec<&str> = waiting.iter().map(|q| q.id.as_str()).collect();
            return Err(CwError::validation(format!(
                "Circular dependency between expressions: {}",
                ids.join(", ")
            )));
        }
        pending = waiting;
    }
    let mut results = Vec::new();
    for query in request.queries.iter().filter(|q| q.return_data) {
        let points = series.get(query.id.as_str());
        let mut ordered: Vec<(i64, f64)> = points
            .map(|p| p.iter().map(|(t, v)| (*t, *v)).collect())
            .unwrap_or_default();
        if !request.ascending {
            ordered.reverse();
        }
        let label = query.label.clone().unwrap_or_else(|| match &query.source {
            Source::Stat { key, .. } => key.name.clone(),
            Source::Expression(_) => query.id.clone(),
        });
        results.push(Doc::structure([
            ("Id", Some(Doc::text(&query.id))),
            ("Label", Some(Doc::text(label))),
            (
                "Timestamps",
                Some(Doc::List(
                    ordered
                        .iter()
                        .map(|(t, _)| Doc::Timestamp(*t as f64 / 1000.0))
                        .collect(),
                )),
            ),
            (
                "Values",
                Some(Doc::List(
                    ordered.iter().map(|(_, v)| Doc::Float(*v)).collect(),
                )),
            ),
            ("StatusCode", Some(Doc::text("Complete"))),
            ("Messages", Some(Doc::List(Vec::new()))),
        ]));
    }
    Ok(Doc::structure([
        ("MetricDataResults", Some(Doc::List(results))),
        ("Messages", Some(Doc::List(Vec::new()))),
    ]))
}

// ---------------------------------------------------------------------------------------------
// Metric math (arithmetic only)

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Id(String),
    Negate(Box<Expr>),
    Binary(char, Box<Expr>, Box<Expr>),
}

enum Value {
    Scalar(f64),
    Series(BTreeMap<i64, f64>),
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0 };
        let expr = parser.sum()?;
        match parser.tokens.get(parser.at) {
            None => Ok(expr),
            Some(token) => Err(format!("Unexpected token {token:?}")),
        }
    }

    fn ids(&self, into: &mut Vec<String>) {
        match self {
            Expr::Number(_) => {}
            Expr::Id(id) => into.push(id.clone()),
            Expr::Negate(inner) => inner.ids(into),
            Expr::Binary(_, a, b) => {
                a.ids(into);
                b.ids(into);
            }
        }
    }

    fn eval(&self, series: &HashMap<&str, BTreeMap<i64, f64>>) -> Value {
        match self {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Id(id) => Value::Series(series.get(id.as_str()).cloned().unwrap_or_default()),
            Expr::Negate(inner) => apply('*', Value::Scalar(-1.0), inner.eval(series)),
            Expr::Binary(op, a, b) => apply(*op, a.eval(series), b.eval(series)),
        }
    }
}

/// A series with a series: at the timestamps both have. A result that is not a number (a
/// division by zero) is no data point.
fn apply(op: char, a: Value, b: Value) -> Value {
    let f = |x: f64, y: f64| match op {
        '+' => x + y,
        '-' => x - y,
        '*' => x * y,
        _ => x / y,
    };
    let finite = |points: BTreeMap<i64, f64>| -> BTreeMap<i64, f64> {
        points.into_iter().filter(|(_, v)| v.is_finite()).collect()
    };
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(f(x, y)),
        (Value::Series(s), Value::Scalar(y)) => {
            Value::Series(finite(s.into_iter().map(|(t, x)| (t, f(x, y))).collect()))
        }
        (Value::Scalar(x), Value::Series(s)) => {
            Value::Series(finite(s.into_iter().map(|(t, y)| (t, f(x, y))).collect()))
        }
        (Value::Series(s), Value::Series(r)) => Value::Series(finite(
            s.into_iter()
                .filter_map(|(t, x)| r.get(&t).map(|y| (t, f(x, *y))))
                .collect(),
        )),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Id(String),
    Op(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if "+-*/()".contains(c) {
            tokens.push(Token::Op(c));
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            let n = literal
                .parse()
                .map_err(|_| format!("Invalid number {literal}"))?;
            tokens.push(Token::Number(n));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if chars.get(i) == Some(&'(') || word.starts_with(|c: char| c.is_ascii_uppercase()) {
                return Err(format!(
                    "{word} is not supported by the emulator, whose metric math is arithmetic (+ - * /, parentheses, numbers, query ids) only"
                ));
            }
            tokens.push(Token::Id(word));
        } else {
            return Err(format!("Unrecognized token {c}"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn next_op(&self, ops: &str) -> Option<char> {
        match self.tokens.get(self.at) {
            Some(Token::Op(c)) if ops.contains(*c) => Some(*c),
            _ => None,
        }
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        while let Some(op) = self.next_op("+-") {
            self.at += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        while let Some(op) = self.next_op("*/") {
            self.at += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Id(id)) => Ok(Expr::Id(id)),
            Some(Token::Op('-')) => Ok(Expr::Negate(Box::new(self.factor()?))),
            Some(Token::Op('(')) => {
                let inner = self.sum()?;
                if self.next_op(")").is_none() {
                    return Err("Missing closing parenthesis".to_owned());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(token) => Err(format!("Unexpected token {token:?}")),
            None => Err("Unexpected end of expression".to_owned()),
        }
    }
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

    #[test]
    fn arithmetic_expressions_over_series() {
        let expr = Expr::parse("100 * (errors / requests) - -1").unwrap();
        let mut ids = Vec::new();
        expr.ids(&mut ids);
        assert_eq!(ids, ["errors", "requests"]);
        let series = HashMap::from([
            ("errors", BTreeMap::from([(0, 1.0), (60, 0.0), (120, 5.0)])),
            ("requests", BTreeMap::from([(0, 4.0), (60, 0.0)])),
        ]);
        let Value::Series(points) = expr.eval(&series) else {
            panic!("a series")
        };
        // 120 is in one series only; 0/0 at 60 is no data point.
        assert_eq!(points, BTreeMap::from([(0, 26.0)]));
        for bad in [
            "SUM(METRICS())",
            "m1 +",
            "(m1",
            "m1 $ m2",
            "SELECT AVG(x) FROM y",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
    }
}
