//! Parsing and checking the values operators give: tenant names, models, budgets, months.

use domain::routing::ServiceTier;
use domain::tenancy::check_tenant_name;

use super::*;

pub(crate) fn parse_tenant(value: &str) -> Result<String, String> {
    check_tenant_name(value)?;
    Ok(value.to_owned())
}

pub(crate) fn parse_model(value: &str) -> Result<String, String> {
    check_model(value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

pub(crate) fn parse_budget(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .map_err(|_| Error::InvalidBudget(value.to_owned()))
        .and_then(check_budget)
        .map_err(|e| e.to_string())
}

pub(crate) fn parse_limit(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(Error::InvalidLimit(value.to_owned()).to_string()),
    }
}

pub(crate) fn parse_limit_value(value: &str) -> Result<LimitValue, String> {
    if value.trim().eq_ignore_ascii_case("none") {
        Ok(LimitValue(None))
    } else {
        parse_limit(value).map(|n| LimitValue(Some(n)))
    }
}

pub(crate) fn parse_service_tier(value: &str) -> Result<ServiceTier, String> {
    value.trim().parse()
}

/// `ID:VERSION`: a guardrail's id (or ARN, whose own colons stay with it) and its version.
pub(crate) fn parse_guardrail(value: &str) -> Result<(String, String), String> {
    match value.trim().rsplit_once(':') {
        Some((id, version))
            if !id.is_empty()
                && (version == "DRAFT"
                    || (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))) =>
        {
            Ok((id.to_owned(), version.to_owned()))
        }
        _ => Err(format!(
            "a guardrail is ID:VERSION, its id (or ARN) and DRAFT or a version number, not {value:?}"
        )),
    }
}

pub(crate) fn parse_month(value: &str) -> Result<String, String> {
    check_month(value).map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

pub(crate) fn check_tenant(name: &str) -> Result<(), Error> {
    check_tenant_name(name).map_err(Error::InvalidTenant)
}

pub(crate) fn check_model(model: &str) -> Result<(), Error> {
    if model.trim().is_empty() {
        Err(Error::EmptyModel)
    } else {
        Ok(())
    }
}

/// A budget is a finite amount, 0 or more (0 stops the tenant's keys that carry it).
pub fn check_budget(usd: f64) -> Result<f64, Error> {
    if usd.is_finite() && usd >= 0.0 {
        Ok(usd)
    } else {
        Err(Error::InvalidBudget(usd.to_string()))
    }
}

/// `YYYY-MM` with a month from 01 to 12, as [`month_of`](domain::tenancy::month_of) writes it.
pub fn check_month(month: &str) -> Result<(), Error> {
    let valid = match month.as_bytes() {
        [y1, y2, y3, y4, b'-', m1, m2] => {
            [y1, y2, y3, y4, m1, m2].iter().all(|b| b.is_ascii_digit())
                && matches!((m1, m2), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidMonth(month.to_owned()))
    }
}
