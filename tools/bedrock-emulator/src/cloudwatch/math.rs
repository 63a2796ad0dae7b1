//! GetMetricData's metric math, limited to arithmetic: `+ - * /`, parentheses, numbers and
//! other queries' ids, over the series of the queries they name.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Id(String),
    Negate(Box<Expr>),
    Binary(char, Box<Expr>, Box<Expr>),
}

pub(super) enum Value {
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

    pub(super) fn ids(&self, into: &mut Vec<String>) {
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

    pub(super) fn eval(&self, series: &HashMap<&str, BTreeMap<i64, f64>>) -> Value {
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
