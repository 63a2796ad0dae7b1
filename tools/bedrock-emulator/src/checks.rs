//! What the control-plane operations (batch inference, Provisioned Throughput) share when they
//! check a request against botocore's `bedrock` service model: pattern matching, constraint
//! violations reported together, and the checks of a list operation's query (filters, sort
//! order, page size and pagination token) with the paging of its answer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::error::BedrockError;
use crate::time::parse_time;

/// Whether the whole value matches a model pattern.
pub fn full_match(pattern: &str, value: &str) -> bool {
    regex_lite::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

/// A `1 validation error detected` for one query parameter.
pub fn invalid(value: &str, name: &str, constraint: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: Member must {constraint}"
    ))
}

/// Constraint violations, reported together as Bedrock does:
/// `2 validation errors detected: Value … at 'jobName' failed to satisfy constraint: …; …`.
#[derive(Default)]
pub struct Violations(Vec<String>);

impl Violations {
    pub fn add(&mut self, value: Option<&str>, path: &str, constraint: impl AsRef<str>) {
        let value = match value {
            Some(v) => format!("'{v}'"),
            None => "null".to_owned(),
        };
        self.0.push(format!(
            "Value {value} at '{path}' failed to satisfy constraint: Member must {}",
            constraint.as_ref()
        ));
    }

    /// A violation worded in full (one without a value, such as a list's length).
    pub fn push(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    pub fn required(&mut self, path: &str) {
        self.add(None, path, "not be null");
    }

    /// Length (in characters) and pattern of a string member.
    pub fn string(&mut self, value: &str, path: &str, (min, max): (usize, usize), pattern: &str) {
        let length = value.chars().count();
        if length < min {
            self.add(
                Some(value),
                path,
                format!("have length greater than or equal to {min}"),
            );
        }
        if length > max {
            self.add(
                Some(value),
                path,
                format!("have length less than or equal to {max}"),
            );
        }
        if !full_match(pattern, value) {
            self.add(
                Some(value),
                path,
                format!("satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    pub fn into_result(self) -> Result<(), BedrockError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(BedrockError::validation(format!(
                "{n} validation error{} detected: {}",
                if n == 1 { "" } else { "s" },
                self.0.join("; ")
            ))),
        }
    }
}

/// `statusEquals`, one of a status enum's values.
pub fn status_equals<S>(
    params: &HashMap<String, String>,
    names: &[&str],
    parse: impl Fn(&str) -> Option<S>,
) -> Result<Option<S>, BedrockError> {
    let Some(value) = params.get("statusEquals") else {
        return Ok(None);
    };
    parse(value).map(Some).ok_or_else(|| {
        invalid(
            value,
            "statusEquals",
            &format!("satisfy enum value set: [{}]", names.join(", ")),
        )
    })
}

/// How one list operation names what [`ListPage`] checks.
pub struct ListSpec {
    /// The pattern `nameContains` must match.
    pub name_pattern: &'static str,
    /// The parameters of the time filters: (after, before).
    pub time_params: (&'static str, &'static str),
    /// `nextToken` is this prefix and the creation order of the previous page's last item.
    pub token_prefix: &'static str,
}

const DEFAULT_MAX_RESULTS: usize = 1000;

/// The part of a list operation's query both list operations share, checked: the name and
/// time filters, the sort order, the page size and the page token.
#[derive(Debug)]
pub struct ListPage {
    name_contains: Option<String>,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
    ascending: bool,
    max_results: usize,
    /// The creation order (`seq`) of the last item of the previous page.
    after_seq: Option<u64>,
    token_prefix: &'static str,
}

impl ListPage {
    /// Checks `nameContains`, the time filters, `sortBy`, `sortOrder`, `maxResults` and
    /// `nextToken`, in that order (the first one refused is reported).
    pub fn parse(params: &HashMap<String, String>, spec: &ListSpec) -> Result<Self, BedrockError> {
        let mut page = ListPage {
            name_contains: None,
            after: None,
            before: None,
            ascending: false,
            max_results: DEFAULT_MAX_RESULTS,
            after_seq: None,
            token_prefix: spec.token_prefix,
        };
        if let Some(value) = params.get("nameContains") {
            if value.is_empty() || value.chars().count() > 63 {
                return Err(invalid(
                    value,
                    "nameContains",
                    "have length between 1 and 63",
                ));
            }
            if !full_match(spec.name_pattern, value) {
                return Err(invalid(
                    value,
                    "nameContains",
                    &format!("satisfy regular expression pattern: {}", spec.name_pattern),
                ));
            }
            page.name_contains = Some(value.clone());
        }
        let (after, before) = spec.time_params;
        for (name, slot) in [(after, &mut page.after), (before, &mut page.before)] {
            if let Some(value) = params.get(name) {
                *slot = Some(
                    parse_time(value)
                        .ok_or_else(|| invalid(value, name, "be an ISO-8601 timestamp"))?,
                );
            }
        }
        if let Some(value) = params.get("sortBy") {
            if value != "CreationTime" {
                return Err(invalid(
                    value,
                    "sortBy",
                    "satisfy enum value set: [CreationTime]",
                ));
            }
        }
        if let Some(value) = params.get("sortOrder") {
            page.ascending = match value.as_str() {
                "Ascending" => true,
                "Descending" => false,
                _ => {
                    return Err(invalid(
                        value,
                        "sortOrder",
                        "satisfy enum value set: [Ascending, Descending]",
                    ))
                }
            };
        }
        if let Some(value) = params.get("maxResults") {
            let n: i64 = value
                .parse()
                .map_err(|_| invalid(value, "maxResults", "be an integer"))?;
            if n < 1 {
                return Err(invalid(
                    value,
                    "maxResults",
                    "have value greater than or equal to 1",
                ));
            }
            if n > 1000 {
                return Err(invalid(
                    value,
                    "maxResults",
                    "have value less than or equal to 1000",
                ));
            }
            page.max_results = usize::try_from(n).unwrap_or(DEFAULT_MAX_RESULTS);
        }
        if let Some(value) = params.get("nextToken") {
            let seq = value
                .strip_prefix(spec.token_prefix)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    BedrockError::validation("The provided pagination token is invalid.")
                })?;
            page.after_seq = Some(seq);
        }
        Ok(page)
    }

    /// Whether an item with this name and creation (or submit) time passes the filters.
    pub fn admits(&self, name: &str, time: DateTime<Utc>) -> bool {
        self.name_contains
            .as_deref()
            .is_none_or(|n| name.contains(n))
            && self.after.is_none_or(|t| time > t)
            && self.before.is_none_or(|t| time < t)
    }

    /// The answer: the page of `items` (given in creation order) after the token, in the sort
    /// order, as `{key: [summary…]}`, with a `nextToken` when more follow.
    pub fn answer<T>(
        &self,
        key: &str,
        mut items: Vec<T>,
        seq: impl Fn(&T) -> u64,
        summary: impl Fn(&T) -> Value,
    ) -> Value {
        if !self.ascending {
            items.reverse();
        }
        if let Some(after) = self.after_seq {
            items.retain(|item| {
                if self.ascending {
                    seq(item) > after
                } else {
                    seq(item) < after
                }
            });
        }
        let more = items.len() > self.max_results;
        items.truncate(self.max_results);
        let mut answer = json!({
            key: items.iter().map(summary).collect::<Vec<_>>(),
        });
        if more {
            if let Some(last) = items.last() {
                answer["nextToken"] = json!(format!("{}{}", self.token_prefix, seq(last)));
            }
        }
        answer
    }
}
