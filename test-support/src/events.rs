//! The events the functions are invoked with, from the JSON files in `fixtures/` (as AWS
//! delivers them), and builders that change what a test needs:
//!
//! - API Gateway: [`HTTP_API_V2_IAM`] (HTTP API, payload 2.0, IAM authorizer) and
//!   [`REST_API_V1`] (REST API, payload 1.0, IAM identity), changed by [`ApiEvent`]; the
//!   authorizer contexts [`iam_authorizer`] and [`jwt_authorizer`];
//! - [`S3_OBJECT_CREATED`]: an S3 `ObjectCreated:Put` notification ([`s3_object_created`]);
//! - [`SCHEDULED`]: an EventBridge scheduled event ([`scheduled_event`]);
//! - [`BATCH_JOB_STATE_CHANGE`]: Bedrock's `Batch Inference Job State Change`
//!   ([`batch_job_state_change`]);
//! - [`SQS_RECEIVE_MESSAGE`]: messages of an SQS queue, as its event source mapping delivers
//!   them ([`sqs_messages`]).

use lambda_http::Request;
use serde_json::{json, Map, Value};

/// An HTTP API (payload 2.0) `POST /v1/invoke` with an IAM authorizer (an assumed role's
/// session `alice`) and a JSON body.
pub const HTTP_API_V2_IAM: &str = include_str!("../fixtures/apigw-v2-iam.json");
/// The owner of what [`HTTP_API_V2_IAM`]'s caller creates: its role, whatever the session.
pub const HTTP_API_V2_IAM_OWNER: &str = r#"role:"123456789012"/"app-team""#;
/// A REST API (payload 1.0) `POST /v1/invoke` with an IAM caller (the user `bob`), stage `prod`.
pub const REST_API_V1: &str = include_str!("../fixtures/apigw-rest-v1.json");
/// An S3 notification: `ObjectCreated:Put` of `batch-input/questions.jsonl` in `batch-bucket`.
pub const S3_OBJECT_CREATED: &str = include_str!("../fixtures/s3-object-created.json");
/// An EventBridge rule's scheduled event (`aws.events`, `Scheduled Event`).
pub const SCHEDULED: &str = include_str!("../fixtures/scheduled-event.json");
/// Bedrock's `Batch Inference Job State Change` of the job `b0a1b2c-0`, `Completed`.
pub const BATCH_JOB_STATE_CHANGE: &str = include_str!("../fixtures/batch-job-state-change.json");
/// One message (`{"batchId":"0a1b2c"}`) of the batch work queue, as SQS's event source mapping
/// delivers it.
pub const SQS_RECEIVE_MESSAGE: &str = include_str!("../fixtures/sqs-receive-message.json");

/// A fixture as JSON.
pub fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// An event as `lambda_http` reads it, as the Lambda runtime hands it to a function.
pub fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// An API Gateway event, built from a fixture.
///
/// ```
/// use test_support::events::ApiEvent;
/// let event = ApiEvent::http("GET", "/v1/batches?limit=2").request_id("req-1").json();
/// assert_eq!(event["rawQueryString"], "limit=2");
/// ```
#[derive(Debug, Clone)]
pub struct ApiEvent {
    event: Value,
    rest: bool,
}

impl ApiEvent {
    /// [`HTTP_API_V2_IAM`] for `method path` (a query string after `?` is split off), no body.
    pub fn http(method: &str, path: &str) -> Self {
        let mut event = fixture(HTTP_API_V2_IAM);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        event["rawPath"] = Value::String(path.into());
        event["rawQueryString"] = Value::String(query.into());
        event["routeKey"] = Value::String(format!("{method} {path}"));
        event["requestContext"]["routeKey"] = Value::String(format!("{method} {path}"));
        event["requestContext"]["http"]["method"] = Value::String(method.into());
        event["requestContext"]["http"]["path"] = Value::String(path.into());
        let parameters = query_parameters(query);
        if !parameters.is_empty() {
            event["queryStringParameters"] = Value::Object(parameters);
        }
        event["body"] = Value::Null;
        Self { event, rest: false }
    }

    /// [`REST_API_V1`] for `method path` (a query string after `?` is split off), no body.
    pub fn rest(method: &str, path: &str) -> Self {
        let mut event = fixture(REST_API_V1);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        event["resource"] = Value::String(path.into());
        event["path"] = Value::String(path.into());
        event["httpMethod"] = Value::String(method.into());
        event["requestContext"]["resourcePath"] = Value::String(path.into());
        event["requestContext"]["httpMethod"] = Value::String(method.into());
        event["requestContext"]["path"] = Value::String(format!("/prod{path}"));
        let parameters = query_parameters(query);
        if !parameters.is_empty() {
            let multi: Map<String, Value> = parameters
                .iter()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect();
            event["queryStringParameters"] = Value::Object(parameters);
            event["multiValueQueryStringParameters"] = Value::Object(multi);
        }
        event["body"] = Value::Null;
        Self { event, rest: true }
    }

    /// A JSON body; `Value::Null` for none.
    pub fn body(self, body: &Value) -> Self {
        if body.is_null() {
            self.raw_body(None)
        } else {
            self.raw_body(Some(&body.to_string()))
        }
    }

    /// The body as sent, JSON or not; `None` for none.
    pub fn raw_body(mut self, body: Option<&str>) -> Self {
        self.event["body"] = body.map_or(Value::Null, |b| Value::String(b.into()));
        self
    }

    /// Another HTTP API authorizer context ([`iam_authorizer`], [`jwt_authorizer`]);
    /// `Value::Null` for none.
    pub fn authorizer(mut self, authorizer: Value) -> Self {
        assert!(
            !self.rest,
            "a REST API event has an identity, not an authorizer"
        );
        self.event["requestContext"]["authorizer"] = authorizer;
        self
    }

    /// No authorizer context at all (the field absent), as on a route without authorization.
    pub fn without_authorizer(mut self) -> Self {
        if let Some(context) = self.event["requestContext"].as_object_mut() {
            context.remove("authorizer");
        }
        self
    }

    /// `Authorization: Bearer {key}`, through a route without IAM: the authorizer is null.
    pub fn bearer(mut self, key: &str) -> Self {
        self = self.header("authorization", &format!("Bearer {key}"));
        if !self.rest {
            self.event["requestContext"]["authorizer"] = Value::Null;
        }
        self
    }

    /// A request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.event["headers"][name] = Value::String(value.into());
        if self.rest {
            self.event["multiValueHeaders"][name] = json!([value]);
        }
        self
    }

    /// API Gateway's request id.
    pub fn request_id(mut self, id: &str) -> Self {
        self.event["requestContext"]["requestId"] = Value::String(id.into());
        self
    }

    /// The event as JSON, as a function that reads events as `Value` takes it.
    pub fn json(self) -> Value {
        self.event
    }

    /// The event as `lambda_http` reads it.
    pub fn request(self) -> Request {
        request(&self.event)
    }
}

fn query_parameters(query: &str) -> Map<String, Value> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect()
}

/// A fixture (any API Gateway one) with `body` as its JSON body, the rest as it is.
pub fn event(fixture_text: &str, body: &Value) -> Request {
    let mut event = fixture(fixture_text);
    event["body"] = Value::String(body.to_string());
    request(&event)
}

/// [`HTTP_API_V2_IAM`] with another authorizer context and `body`.
pub fn event_with_authorizer(authorizer: Value, body: &Value) -> Request {
    let mut event = fixture(HTTP_API_V2_IAM);
    event["requestContext"]["authorizer"] = authorizer;
    event["body"] = Value::String(body.to_string());
    request(&event)
}

/// An HTTP API event for `method path`, with a bearer key when given (and then no IAM
/// authorizer), `body` as JSON (`Value::Null` for none).
pub fn http_event(method: &str, path: &str, bearer: Option<&str>, body: &Value) -> Request {
    let mut event = fixture(HTTP_API_V2_IAM);
    event["rawPath"] = Value::String(path.into());
    event["requestContext"]["http"]["path"] = Value::String(path.into());
    event["requestContext"]["http"]["method"] = Value::String(method.into());
    event["routeKey"] = Value::String(format!("{method} {path}"));
    if let Some(key) = bearer {
        event["headers"]["authorization"] = Value::String(format!("Bearer {key}"));
        // Key callers come through a route without IAM.
        event["requestContext"]["authorizer"] = Value::Null;
    }
    event["body"] = if body.is_null() {
        Value::Null
    } else {
        Value::String(body.to_string())
    };
    request(&event)
}

/// An HTTP API IAM authorizer context: the caller's ARN, and its Cognito identity when it
/// came through an identity pool.
pub fn iam_authorizer(user_arn: &str, cognito_identity: Option<&str>) -> Value {
    json!({"iam": {
        "accountId": "123456789012",
        "userArn": user_arn,
        "cognitoIdentity": cognito_identity.map(|id| json!({
            "amr": ["authenticated"], "identityId": id, "identityPoolId": "us-east-1:pool"
        })),
    }})
}

/// An HTTP API JWT authorizer context: the token's issuer and subject.
pub fn jwt_authorizer(iss: &str, sub: &str) -> Value {
    json!({"jwt": {"claims": {"iss": iss, "sub": sub}, "scopes": null}})
}

/// [`S3_OBJECT_CREATED`] for `key` (URL-encoded as S3 sends it: `+` for a space) in `bucket`,
/// of `size` bytes, with `etag` and no version id (an unversioned bucket).
pub fn s3_object_created(bucket: &str, key: &str, size: u64, etag: &str) -> Value {
    let mut event = fixture(S3_OBJECT_CREATED);
    let s3 = &mut event["Records"][0]["s3"];
    s3["bucket"]["name"] = Value::String(bucket.into());
    s3["bucket"]["arn"] = Value::String(format!("arn:aws:s3:::{bucket}"));
    s3["object"]["key"] = Value::String(key.into());
    s3["object"]["size"] = json!(size);
    s3["object"]["eTag"] = Value::String(etag.into());
    if let Some(object) = s3["object"].as_object_mut() {
        object.remove("versionId");
    }
    event
}

/// [`SCHEDULED`] as JSON.
pub fn scheduled_event() -> Value {
    fixture(SCHEDULED)
}

/// [`BATCH_JOB_STATE_CHANGE`] for the job `job_name`, now `status`.
pub fn batch_job_state_change(job_name: &str, status: &str) -> Value {
    let mut event = fixture(BATCH_JOB_STATE_CHANGE);
    event["detail"]["batchJobName"] = Value::String(job_name.into());
    event["detail"]["status"] = Value::String(status.into());
    event
}

/// [`SQS_RECEIVE_MESSAGE`] carrying these messages: (message id, body) each.
pub fn sqs_messages(messages: &[(&str, &str)]) -> Value {
    let mut event = fixture(SQS_RECEIVE_MESSAGE);
    let template = event["Records"][0].clone();
    event["Records"] = messages
        .iter()
        .map(|(id, body)| {
            let mut record = template.clone();
            record["messageId"] = Value::String((*id).into());
            record["body"] = Value::String((*body).into());
            record
        })
        .collect();
    event
}

#[cfg(test)]
mod tests {
    use lambda_http::RequestExt;

    use super::*;

    #[test]
    fn the_builders_give_requests_lambda_http_reads_as_asked() {
        let http = ApiEvent::http("GET", "/v1/batches?limit=2")
            .request_id("req-1")
            .request();
        assert_eq!(
            (http.method().as_str(), http.uri().path()),
            ("GET", "/v1/batches")
        );
        assert_eq!(http.query_string_parameters().first("limit"), Some("2"));

        let rest = ApiEvent::rest("DELETE", "/v1/batches/b1")
            .body(&json!({"a": 1}))
            .request();
        assert_eq!(rest.method().as_str(), "DELETE");
        assert!(
            rest.uri().path().ends_with("/v1/batches/b1"),
            "{}",
            rest.uri()
        );
        assert_eq!(rest.body().as_ref(), br#"{"a":1}"#);

        let jwt = ApiEvent::http("POST", "/v1/invoke")
            .authorizer(jwt_authorizer("https://idp.example", "42"))
            .json();
        assert_eq!(
            jwt["requestContext"]["authorizer"]["jwt"]["claims"]["sub"],
            "42"
        );
    }

    #[test]
    fn the_other_events_carry_what_their_builders_set() {
        let s3 = s3_object_created("b", "batch-input/a+b.jsonl", 10, "e");
        assert_eq!(s3["Records"][0]["eventSource"], "aws:s3");
        assert_eq!(
            s3["Records"][0]["s3"]["object"]["key"],
            "batch-input/a+b.jsonl"
        );
        assert!(s3["Records"][0]["s3"]["object"].get("versionId").is_none());
        assert_eq!(scheduled_event()["detail-type"], "Scheduled Event");
        let job = batch_job_state_change("babc-1", "Failed");
        assert_eq!(job["detail"]["batchJobName"], "babc-1");
        assert_eq!(job["detail-type"], "Batch Inference Job State Change");
    }
}
