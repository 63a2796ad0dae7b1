//! What can go wrong, each message saying what to do.

use domain::error::TenancyError;

/// Why a command failed. Each is printed on stderr and ends the tool with a non-zero status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no key with id {0:?} (`tenant-keys list` shows the key ids)")]
    UnknownKey(String),
    #[error("{0}")]
    InvalidTenant(String),
    #[error("a monthly budget is an amount of US dollars, 0 or more, not {0:?}")]
    InvalidBudget(String),
    #[error("a limit is a whole number from 1 to 4294967295 (or `none` with set-limits), not {0:?}; to stop a key, revoke it")]
    InvalidLimit(String),
    #[error("{0}")]
    Limits(String),
    #[error("a month is YYYY-MM, such as 2026-11, not {0:?}")]
    InvalidMonth(String),
    #[error("a model id cannot be empty")]
    EmptyModel,
    #[error("no {what} table: pass {flag} TABLE or set {env}")]
    MissingTable {
        what: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error("cannot make a key: {0}")]
    Issue(String),
    #[error("{0}")]
    Store(TenancyError),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<TenancyError> for Error {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::NoSuchKey(id) => Self::UnknownKey(id),
            other => Self::Store(other),
        }
    }
}

pub(crate) const KEYS_TABLE: Error = Error::MissingTable {
    what: "tenant keys",
    flag: "--keys-table",
    env: "TENANT_KEYS_TABLE_NAME",
};
pub(crate) const SPEND_TABLE: Error = Error::MissingTable {
    what: "spend",
    flag: "--spend-table",
    env: "SPEND_TABLE_NAME",
};
