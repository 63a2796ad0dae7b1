//! What the HTTP functions share of API Gateway requests and responses.

use http::{header, HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

use domain::identity::{CallerClaims, Principal};

/// API Gateway's request id when there is one, else the Lambda request id.
pub fn request_id(request: &Request) -> String {
    let from_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What API Gateway's authorizer says about the caller (HTTP API or REST API event).
pub fn caller_claims(request: &Request) -> CallerClaims {
    let claim = |claims: Option<&std::collections::HashMap<String, String>>, name: &str| {
        claims.and_then(|c| c.get(name)).cloned()
    };
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let Some(authorizer) = ctx.authorizer.as_ref() else {
                return CallerClaims::default();
            };
            let iam = authorizer.iam.as_ref();
            let jwt = authorizer.jwt.as_ref().map(|j| &j.claims);
            CallerClaims {
                user_arn: iam.and_then(|i| i.user_arn.clone()),
                cognito_identity_id: iam
                    .and_then(|i| i.cognito_identity.as_ref())
                    .and_then(|c| c.identity_id.clone()),
                jwt_issuer: claim(jwt, "iss"),
                jwt_subject: claim(jwt, "sub"),
            }
        }
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            let jwt = ctx.authorizer.jwt.as_ref().map(|j| &j.claims);
            // A Cognito user-pool authorizer puts its claims under `claims`.
            let pool_claim = |name: &str| {
                ctx.authorizer
                    .fields
                    .get("claims")
                    .and_then(|c| c.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            CallerClaims {
                user_arn: ctx.identity.user_arn.clone(),
                cognito_identity_id: ctx.identity.cognito_identity_id.clone(),
                jwt_issuer: claim(jwt, "iss").or_else(|| pool_claim("iss")),
                jwt_subject: claim(jwt, "sub").or_else(|| pool_claim("sub")),
            }
        }
        _ => CallerClaims::default(),
    }
}

/// The stable principal API Gateway's authorizer names, or `None` when the request carries no
/// identity (a route without IAM or JWT authorization).
pub fn caller_principal(request: &Request) -> Option<Principal> {
    Principal::from_claims(&caller_claims(request))
}

/// A JSON answer of an HTTP function: its status and body, and the `Retry-After` an error
/// asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonAnswer {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u32>,
}

impl JsonAnswer {
    pub fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            retry_after: None,
        }
    }

    /// The error in the `{"error": {"code", "message", "requestId"}}` shape, with its
    /// `Retry-After`.
    pub fn error(error: &crate::api::ApiError, request_id: &str) -> Self {
        Self {
            status: error.status,
            body: error.body(request_id),
            retry_after: error.retry_after,
        }
    }

    pub fn response(&self) -> Response<Body> {
        let mut response = json_response(self.status, &self.body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response as API Gateway (REST or HTTP API payload) takes it from a function that reads
/// its events as JSON, with every field either payload version has (`cargo lambda watch`'s
/// router refuses an answer without `multiValueHeaders` and `cookies`).
pub fn gateway_response(response: &Response<Body>) -> Value {
    let body = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    };
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_owned(),
                Value::String(v.to_str().ok()?.to_owned()),
            ))
        })
        .collect();
    serde_json::json!({
        "statusCode": response.status().as_u16(),
        "headers": headers,
        "multiValueHeaders": {},
        "cookies": [],
        "body": body,
        "isBase64Encoded": false,
    })
}

/// Reads an API Gateway event given as JSON and answers it with `answer`'s status and JSON
/// body; an event that is not an API Gateway request gets a 400 in the API's error shape.
pub async fn answer_gateway_event<F, Fut>(event: &Value, answer: F) -> Value
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = JsonAnswer>,
{
    let answered = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => answer(request).await,
        Err(error) => {
            let refused = crate::api::ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                format!("not an API Gateway request: {error}"),
            );
            JsonAnswer::error(&refused, "unknown")
        }
    };
    gateway_response(&answered.response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_carry_every_field_of_both_payload_versions() {
        let answer = answer_gateway_event(&serde_json::json!({"not": "a request"}), |_| async {
            JsonAnswer::new(StatusCode::OK, Value::Null)
        })
        .await;
        assert_eq!(answer["statusCode"], 400);
        assert_eq!(answer["multiValueHeaders"], serde_json::json!({}));
        assert_eq!(answer["cookies"], serde_json::json!([]));
        assert_eq!(answer["headers"]["content-type"], "application/json");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "InvalidRequest");
    }
}
