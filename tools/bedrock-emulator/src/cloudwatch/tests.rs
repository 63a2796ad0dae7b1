//! Both protocols end to end through the handlers: bodies, compression, headers, errors.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::doc::{from_cbor, to_cbor, Doc, Fields};
use super::*;

/// CloudWatch's state: its metrics (and its fault knob).
fn state() -> Arc<Metrics> {
    Arc::new(Metrics::default())
}

/// The start of the current minute, in epoch seconds.
fn minute() -> f64 {
    (now_ms() / 60_000 * 60) as f64
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn cbor(&self) -> Doc {
        from_cbor(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn answer(response: Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn cbor_call(state: &Arc<Metrics>, op: &str, body: Vec<u8>, gzipped: bool) -> Answer {
    let mut request = Request::builder()
        .method("POST")
        .uri(format!("/service/{SERVICE}/operation/{op}"))
        .header("smithy-protocol", "rpc-v2-cbor")
        .header("content-type", "application/cbor");
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    let request = request.body(Body::from(body)).unwrap();
    answer(rpc_v2_cbor(State(state.clone()), Path(op.to_owned()), request).await).await
}

async fn json_call(state: &Arc<Metrics>, target: &str, body: Value) -> Answer {
    let request = Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(body.to_string()))
        .unwrap();
    answer(aws_json(State(state.clone()), request).await).await
}

fn datum(name: &str, value: f64, at: f64, dims: &[(&str, &str)]) -> Doc {
    Doc::structure([
        ("MetricName", Some(Doc::text(name))),
        (
            "Dimensions",
            Some(Doc::List(
                dims.iter()
                    .map(|(n, v)| {
                        Doc::structure([
                            ("Name", Some(Doc::text(*n))),
                            ("Value", Some(Doc::text(*v))),
                        ])
                    })
                    .collect(),
            )),
        ),
        ("Timestamp", Some(Doc::Timestamp(at))),
        ("Value", Some(Doc::Float(value))),
        ("Unit", Some(Doc::text("Count"))),
    ])
}

fn put(namespace: &str, datums: Vec<Doc>) -> Doc {
    Doc::structure([
        ("Namespace", Some(Doc::text(namespace))),
        ("MetricData", Some(Doc::List(datums))),
    ])
}

fn get_request(
    id: &str,
    name: &str,
    dims: &[(&str, &str)],
    stat: &str,
    start: f64,
    end: f64,
) -> Doc {
    let dimensions = dims
        .iter()
        .map(|(n, v)| {
            Doc::structure([
                ("Name", Some(Doc::text(*n))),
                ("Value", Some(Doc::text(*v))),
            ])
        })
        .collect();
    Doc::structure([
        (
            "MetricDataQueries",
            Some(Doc::List(vec![Doc::structure([
                ("Id", Some(Doc::text(id))),
                (
                    "MetricStat",
                    Some(Doc::structure([
                        (
                            "Metric",
                            Some(Doc::structure([
                                ("Namespace", Some(Doc::text("App"))),
                                ("MetricName", Some(Doc::text(name))),
                                ("Dimensions", Some(Doc::List(dimensions))),
                            ])),
                        ),
                        ("Period", Some(Doc::Int(60))),
                        ("Stat", Some(Doc::text(stat))),
                    ])),
                ),
            ])])),
        ),
        ("StartTime", Some(Doc::Timestamp(start))),
        ("EndTime", Some(Doc::Timestamp(end))),
    ])
}

fn result_points(output: &Doc) -> (Vec<f64>, Vec<f64>) {
    let output = Fields::root(output).unwrap();
    let results = output.list("MetricDataResults").unwrap().unwrap();
    let result = Fields::at(&results[0], "r").unwrap();
    assert_eq!(result.string("StatusCode").unwrap(), Some("Complete"));
    let timestamps = result
        .list("Timestamps")
        .unwrap()
        .unwrap()
        .iter()
        .map(|t| match t {
            Doc::Timestamp(t) => *t,
            other => panic!("a tag-1 timestamp, got {other:?}"),
        })
        .collect();
    let values = result
        .list("Values")
        .unwrap()
        .unwrap()
        .iter()
        .map(|v| super::doc::double("v", v).unwrap())
        .collect();
    (timestamps, values)
}

#[tokio::test]
async fn cbor_put_then_get_reads_back_sums_per_period_newest_first() {
    let state = state();
    let t0 = minute() - 600.0;
    let body = put(
        "App",
        vec![
            datum(
                "Requests",
                1.0,
                t0 + 5.0,
                &[("ModelId", "m"), ("Route", "pt")],
            ),
            datum(
                "Requests",
                2.0,
                t0 + 50.0,
                &[("Route", "pt"), ("ModelId", "m")],
            ),
            datum(
                "Requests",
                4.0,
                t0 + 65.0,
                &[("ModelId", "m"), ("Route", "pt")],
            ),
            datum("Requests", 100.0, t0 + 65.0, &[("ModelId", "other")]),
        ],
    );
    let answer = cbor_call(&state, "PutMetricData", gzip(&to_cbor(&body)), true).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.header("smithy-protocol"), Some("rpc-v2-cbor"));
    assert!(answer.body.is_empty());

    let request = get_request(
        "m1",
        "Requests",
        &[("Route", "pt"), ("ModelId", "m")],
        "Sum",
        t0,
        t0 + 600.0,
    );
    let answer = cbor_call(&state, "GetMetricData", to_cbor(&request), false).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("application/cbor"));
    let (timestamps, values) = result_points(&answer.cbor());
    assert_eq!(timestamps, [t0 + 60.0, t0]);
    assert_eq!(values, [4.0, 3.0]);
}

#[tokio::test]
async fn cbor_errors_carry_type_message_and_query_error_header() {
    let state = state();
    let body = put("AWS/Bedrock", vec![datum("Requests", 1.0, minute(), &[])]);
    let answer = cbor_call(&state, "PutMetricData", to_cbor(&body), false).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.header("x-amzn-query-error"),
        Some("InvalidParameterValue;Sender")
    );
    let error = answer.cbor();
    let error = Fields::root(&error).unwrap();
    assert_eq!(
        error.string("__type").unwrap(),
        Some("com.amazonaws.cloudwatch#InvalidParameterValueException")
    );
    assert_eq!(
        error.string("message").unwrap(),
        Some("The value AWS/Bedrock for parameter Namespace is invalid.")
    );

    let answer = cbor_call(
        &state,
        "PutMetricAlarm",
        to_cbor(&Doc::Map(Vec::new())),
        false,
    )
    .await;
    assert_eq!(
        answer.header("x-amzn-query-error"),
        Some("InvalidAction;Sender")
    );
    let answer = cbor_call(&state, "ListMetrics", vec![0xff, 0x00], false).await;
    assert_eq!(
        answer.header("x-amzn-query-error"),
        Some("SerializationException;Sender")
    );
    let answer = cbor_call(&state, "ListMetrics", b"not gzip".to_vec(), true).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn requests_above_one_megabyte_uncompressed_are_refused_even_gzipped() {
    let state = state();
    let values = Doc::List((0..150).map(|v| Doc::Float(f64::from(v) + 0.5)).collect());
    let datums = (0..1000)
        .map(|i| {
            Doc::structure([
                ("MetricName", Some(Doc::text(format!("M{i}")))),
                ("Values", Some(values.clone())),
            ])
        })
        .collect();
    let body = to_cbor(&put("App", datums));
    assert!(body.len() > MAX_REQUEST_BYTES);
    let answer = cbor_call(&state, "PutMetricData", gzip(&body), true).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        answer.header("x-amzn-query-error"),
        Some("RequestEntityTooLarge;Sender")
    );
    assert_eq!(state.counts(), (0, 0));
    // A gzip bomb is cut at the read limit, not inflated whole.
    let bomb = gzip(&vec![0u8; 3 * READ_LIMIT]);
    assert_eq!(inflate(&bomb).unwrap().len(), READ_LIMIT + 1);
}

#[tokio::test]
async fn json_protocol_put_get_list_and_typed_errors() {
    let state = state();
    let t0 = minute() - 120.0;
    let target = |op: &str| format!("{SERVICE}.{op}");
    let put_body = json!({
        "Namespace": "App",
        "MetricData": [
            {"MetricName": "Latency", "Dimensions": [{"Name": "ModelId", "Value": "m"}],
             "Timestamp": t0, "Values": [10.0, 30.0], "Counts": [3.0, 1.0], "Unit": "Milliseconds"},
            {"MetricName": "Latency", "Dimensions": [{"Name": "ModelId", "Value": "m"}],
             "Timestamp": t0 + 1.0,
             "StatisticValues": {"SampleCount": 2, "Sum": 20, "Minimum": 10, "Maximum": 10},
             "Unit": "Milliseconds"},
        ],
    });
    let answer = json_call(&state, &target("PutMetricData"), put_body).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-amz-json-1.0")
    );

    let query = |stat: &str| {
        json!({
            "MetricDataQueries": [
                {"Id": "avg", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Latency",
                  "Dimensions": [{"Name": "ModelId", "Value": "m"}]}, "Period": 60, "Stat": stat}},
                {"Id": "double", "Expression": "avg * 2", "Label": "twice"},
            ],
            "StartTime": t0, "EndTime": t0 + 120.0, "ScanBy": "TimestampAscending",
        })
    };
    let answer = json_call(&state, &target("GetMetricData"), query("Average")).await;
    let output = answer.json();
    assert_eq!(output["MetricDataResults"][0]["Label"], "Latency");
    assert_eq!(output["MetricDataResults"][0]["Timestamps"], json!([t0]));
    // (3×10 + 30 + 20) / 6
    assert_eq!(
        output["MetricDataResults"][0]["Values"],
        json!([80.0 / 6.0])
    );
    assert_eq!(output["MetricDataResults"][1]["Label"], "twice");
    assert_eq!(
        output["MetricDataResults"][1]["Values"],
        json!([160.0 / 6.0])
    );
    let answer = json_call(&state, &target("GetMetricData"), query("p50")).await;
    assert_eq!(
        answer.json()["MetricDataResults"][0]["Values"],
        json!([10.0])
    );

    let answer = json_call(&state, &target("ListMetrics"), json!({"Namespace": "App"})).await;
    assert_eq!(
        answer.json(),
        json!({"Metrics": [{"Namespace": "App", "MetricName": "Latency",
                            "Dimensions": [{"Name": "ModelId", "Value": "m"}]}]})
    );

    let incomplete = json!({"Namespace": "App", "MetricData": [
        {"MetricName": "X", "StatisticValues": {"SampleCount": 1, "Sum": 1, "Minimum": 1}}]});
    let answer = json_call(&state, &target("PutMetricData"), incomplete).await;
    assert_eq!(
        answer.header("x-amzn-query-error"),
        Some("MissingParameter;Sender")
    );
    assert_eq!(
        answer.json(),
        json!({"__type": "com.amazonaws.cloudwatch#MissingRequiredParameterException",
               "message": "The parameter MetricData.member.1.StatisticValues.Maximum is required."})
    );
    let nan = json!({"Namespace": "App", "MetricData": [{"MetricName": "X", "Value": "NaN"}]});
    let answer = json_call(&state, &target("PutMetricData"), nan).await;
    assert_eq!(
        answer.json()["message"],
        "The value NaN for parameter MetricData.member.1.Value is invalid."
    );
    let answer = json_call(&state, "DynamoDB_20120810.ListTables", json!({})).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_metrics_pages_by_500_with_a_token() {
    let state = state();
    let at = minute();
    for chunk in 0..2 {
        let datums = (0..300)
            .map(|i| datum(&format!("M{:04}", chunk * 300 + i), 1.0, at, &[]))
            .collect();
        let answer = cbor_call(&state, "PutMetricData", to_cbor(&put("App", datums)), false).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let first = cbor_call(&state, "ListMetrics", Vec::new(), false)
        .await
        .cbor();
    let first = Fields::root(&first).unwrap();
    assert_eq!(first.list("Metrics").unwrap().unwrap().len(), 500);
    let token = first.string("NextToken").unwrap().unwrap().to_owned();
    let next = Doc::structure([("NextToken", Some(Doc::text(token)))]);
    let second = cbor_call(&state, "ListMetrics", to_cbor(&next), false)
        .await
        .cbor();
    let second = Fields::root(&second).unwrap();
    assert_eq!(second.list("Metrics").unwrap().unwrap().len(), 100);
    assert_eq!(second.string("NextToken").unwrap(), None);
    let bad = Doc::structure([("NextToken", Some(Doc::text("bogus")))]);
    let answer = cbor_call(&state, "ListMetrics", to_cbor(&bad), false).await;
    assert_eq!(
        answer.header("x-amzn-query-error"),
        Some("InvalidParameterValue;Sender")
    );

    // What `/_emulator/reset` does to CloudWatch.
    state.clear();
    let empty = cbor_call(&state, "ListMetrics", Vec::new(), false)
        .await
        .cbor();
    assert_eq!(
        Fields::root(&empty)
            .unwrap()
            .list("Metrics")
            .unwrap()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn emf_feed_records_valid_documents_and_reports_the_rest() {
    let metrics = Metrics::default();
    let now = now_ms();
    let line = |namespace: &str, latency: Value| {
        json!({
            "_aws": {"Timestamp": now, "CloudWatchMetrics": [{
                "Namespace": namespace, "Dimensions": [["ModelId"]],
                "Metrics": [{"Name": "Requests", "Unit": "Count"},
                            {"Name": "InferenceLatency", "Unit": "Milliseconds"}]}]},
            "ModelId": "m", "Requests": 1, "InferenceLatency": latency,
        })
        .to_string()
    };
    let text = [
        "   Compiling invoke-with-cache".to_owned(),
        line("Custom/Bedrock", json!(12)),
        r#"{"level":"INFO","message":"served"}"#.to_owned(),
        line("AWS/Bedrock", json!(12)),
        line("Custom/Bedrock", json!("slow")),
        line("Custom/Bedrock", json!([20, 40])),
    ]
    .join("\n");
    let report = feed_emf(&metrics, &text, now);
    assert_eq!(
        report,
        json!({"lines": 6, "documents": 4, "datums": 4, "errors": [
            {"line": 4, "message": "The value AWS/Bedrock for parameter Namespace is invalid."},
            {"line": 5, "message": "metric InferenceLatency has no numeric member in the document"},
        ]})
    );
    let key = datum::MetricKey::new(
        "Custom/Bedrock",
        "InferenceLatency",
        vec![("ModelId".into(), "m".into())],
    );
    let sum = metrics.with_points(&key, |points| {
        statistics::aggregate(
            points,
            now - 60_000,
            now + 60_000,
            60,
            statistics::Stat::Sum,
            None,
        )
    });
    assert_eq!(sum.values().sum::<f64>(), 72.0);
}

#[tokio::test]
async fn fail_put_metric_data_throttles_the_next_puts_then_lets_them_through() {
    let state = state();
    // The `"cloudwatch"` part of a `/_emulator/config` body.
    let patch: FaultPatch = serde_json::from_value(json!({"failPutMetricData": 2})).unwrap();
    patch.apply(&state);
    let body = put("App", vec![datum("Requests", 1.0, minute(), &[])]);
    for _ in 0..2 {
        let answer = cbor_call(&state, "PutMetricData", to_cbor(&body), false).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            answer.header("x-amzn-query-error"),
            Some("Throttling;Sender")
        );
        let error = answer.cbor();
        let fields = Fields::root(&error).unwrap();
        assert_eq!(fields.string("message").unwrap(), Some("Rate exceeded"));
    }
    let answer = cbor_call(&state, "PutMetricData", to_cbor(&body), false).await;
    assert_eq!(answer.status, StatusCode::OK);
    // Throttled calls recorded nothing; awsJson is throttled alike; reset clears the knob.
    let get = get_request(
        "r",
        "Requests",
        &[],
        "SampleCount",
        minute(),
        minute() + 60.0,
    );
    let answer = cbor_call(&state, "GetMetricData", to_cbor(&get), false).await;
    assert_eq!(result_points(&answer.cbor()).1, [1.0]);
    state.fail_puts(1);
    let target = format!("{SERVICE}.PutMetricData");
    let refused = json_call(
        &state,
        &target,
        json!({"Namespace": "App", "MetricData": []}),
    )
    .await;
    assert_eq!(
        refused.json()["__type"],
        "com.amazonaws.cloudwatch#Throttling"
    );
    // What `/_emulator/reset` does to CloudWatch (the config endpoint's own handling of
    // `"cloudwatch"` is tested with the services composed, in `state`).
    state.fail_puts(5);
    state.clear();
    assert!(!state.take_put_fault());
    let unknown: Result<FaultPatch, _> = serde_json::from_value(json!({"failPut": 1}));
    assert!(unknown.is_err());
}
