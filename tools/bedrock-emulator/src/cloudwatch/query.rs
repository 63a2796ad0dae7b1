//! GetMetricData: `MetricStat` queries aggregated per period (Sum, Average, Minimum, Maximum,
//! SampleCount, pNN), and metric math over them limited to arithmetic (`+ - * /`, parentheses,
//! numbers, other queries' ids).

use std::collections::{BTreeMap, HashMap};

use super::datum::MetricKey;
use super::doc::{Doc, Fields};
use super::error::CwError;
use super::math::{Expr, Value};
use super::put::{check_dimensions, check_unit};
use super::statistics::{aggregate, Stat};
use super::store::Metrics;

/// Queries in one GetMetricData request.
pub const MAX_QUERIES: usize = 500;

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
