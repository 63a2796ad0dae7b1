//! The function's answers to refused requests: the shared [`ApiError`], and how a refused
//! body maps to it.

pub use shared::api::{internal, ApiError};

use http::StatusCode;

use crate::request::RequestError;

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error.code(), error.to_string())
    }
}
