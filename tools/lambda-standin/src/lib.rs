//! A local Lambda Runtime API that behaves as Lambda's where latency and wiring are decided,
//! to run a function's real binary, from its `main`, in tests, benchmarks and packaging checks.
//!
//! What it does as Lambda's Runtime API does:
//! - `GET /next` is answered at once when an event is queued (a busy instance), or, with
//!   [`Behaviour::hold_next`], only that long after (an idle instance). The answer carries the
//!   request id, deadline, function ARN and an X-Ray trace header.
//! - A response, buffered or streamed (`Lambda-Runtime-Function-Response-Mode: streaming`,
//!   chunked, with error trailers), is read whole before the `202` is sent.
//! - `TCP_NODELAY` is set on its own side only; ACK timing is left to the kernel, as Go's
//!   `net/http` server in Lambda leaves it. So a client that writes a response in several small
//!   segments with Nagle's algorithm on waits for delayed ACKs here as it would on Lambda.
//! - The function starts with a clean environment: Lambda's reserved variables plus what the
//!   caller gives (the template's variables, the local stack's endpoints and credentials).
//!
//! Timestamps of each invocation (event handed out, first payload byte, whole response read)
//! are taken by the server, so benchmarks measure what Lambda would see.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// The separator between a streamed HTTP response's metadata prelude and its payload.
pub const PRELUDE_SEPARATOR: &[u8] = &[0; 8];

/// What can go wrong running a function under the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    #[error("cannot start the Runtime API stand-in or the function: {0}")]
    Io(#[from] std::io::Error),
    #[error("the function reported an init error: {0}")]
    InitError(String),
    #[error("the function exited before it polled for an event ({0}); its log:\n{1}")]
    Exited(String, String),
    #[error("no answer within {0:?}; the function's log:\n{1}")]
    Timeout(Duration, String),
    #[error("the response is not an HTTP integration response: {0}")]
    NotHttp(String),
}

/// How the stand-in answers `/next`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// How long `/next` is held after an event is available: zero for a busy instance (answered
    /// at once), e.g. 60 ms for an idle one.
    pub hold_next: Duration,
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// `POST /response`.
    Response,
    /// `POST /error`, with its `Lambda-Runtime-Function-Error-Type`.
    Error { error_type: Option<String> },
}

/// One invocation as the Runtime API saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub request_id: String,
    /// The X-Ray trace header handed to the function with the event.
    pub trace_id: String,
    pub kind: OutcomeKind,
    /// Whether the function answered in streaming mode.
    pub streamed: bool,
    /// The whole request body the function posted (for a stream: prelude, separator, payload).
    pub body: Bytes,
    /// Trailers of a streamed response (mid-stream errors).
    pub trailers: Option<HeaderMap>,
    /// When `/next` handed the event out.
    pub handed_out: Instant,
    /// When the first byte of the payload arrived (after the prelude of a stream).
    pub first_payload_byte: Option<Instant>,
    /// When the whole response had been read.
    pub received: Instant,
}

/// An HTTP function's answer, from either response mode.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: serde_json::Map<String, Value>,
    pub body: Bytes,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Result<Value, StandinError> {
        serde_json::from_slice(&self.body).map_err(|e| StandinError::NotHttp(e.to_string()))
    }
}

impl Outcome {
    /// The time from handing the event out to having read the whole response.
    pub fn duration(&self) -> Duration {
        self.received - self.handed_out
    }

    /// The time from handing the event out to the payload's first byte.
    pub fn first_byte(&self) -> Option<Duration> {
        self.first_payload_byte.map(|at| at - self.handed_out)
    }

    /// The body as JSON (a JSON-event function's answer or an error report).
    pub fn json(&self) -> Result<Value, StandinError> {
        serde_json::from_slice(&self.body).map_err(|e| StandinError::NotHttp(e.to_string()))
    }

    /// The HTTP answer of a function behind API Gateway: a streamed prelude and payload, or
    /// `lambda_http`'s buffered JSON (`statusCode`, `headers`, `body`, `isBase64Encoded`).
    pub fn http(&self) -> Result<HttpAnswer, StandinError> {
        if self.kind != OutcomeKind::Response {
            return Err(StandinError::NotHttp(format!(
                "{:?}: {}",
                self.kind,
                String::from_utf8_lossy(&self.body)
            )));
        }
        if self.streamed {
            let at = find(&self.body, PRELUDE_SEPARATOR).ok_or_else(|| {
                StandinError::NotHttp("a stream without the 8-byte separator".into())
            })?;
            let prelude: Value = serde_json::from_slice(&self.body[..at])
                .map_err(|e| StandinError::NotHttp(format!("prelude: {e}")))?;
            return Ok(HttpAnswer {
                status: status_of(&prelude)?,
                headers: headers_of(&prelude),
                body: self.body.slice(at + PRELUDE_SEPARATOR.len()..),
            });
        }
        let response = self.json()?;
        let body = response["body"].as_str().unwrap_or_default();
        let body = if response["isBase64Encoded"] == true {
            return Err(StandinError::NotHttp(
                "base64 bodies are not decoded".into(),
            ));
        } else {
            Bytes::copy_from_slice(body.as_bytes())
        };
        Ok(HttpAnswer {
            status: status_of(&response)?,
            headers: headers_of(&response),
            body,
        })
    }
}

fn status_of(response: &Value) -> Result<u16, StandinError> {
    response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| StandinError::NotHttp(format!("no statusCode in {response}")))
}

/// `headers`, and the first value of each of `multiValueHeaders` (which `lambda_http` fills
/// for REST API events instead).
fn headers_of(response: &Value) -> serde_json::Map<String, Value> {
    let mut headers = response["headers"].as_object().cloned().unwrap_or_default();
    for (name, values) in response["multiValueHeaders"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if let Some(first) = values.get(0) {
            headers.entry(name.clone()).or_insert_with(|| first.clone());
        }
    }
    headers
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Queued {
    request_id: String,
    trace_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
}

struct Waiting {
    trace_id: String,
    reply: oneshot::Sender<Outcome>,
    handed_out: Instant,
}

struct Shared {
    behaviour: Behaviour,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    waiting: Mutex<HashMap<String, Waiting>>,
    first_poll: OnceLock<Instant>,
    init_error: OnceLock<String>,
    clients: Mutex<Vec<SocketAddr>>,
}

/// A running Runtime API stand-in on a free loopback port. Dropping it stops the server.
pub struct RuntimeApi {
    address: SocketAddr,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Queued>,
    sequence: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const API: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    /// Starts the stand-in on `127.0.0.1:0`.
    pub async fn start(behaviour: Behaviour) -> Result<Self, StandinError> {
        let (queue, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            behaviour,
            events: tokio::sync::Mutex::new(events),
            waiting: Mutex::new(HashMap::new()),
            first_poll: OnceLock::new(),
            init_error: OnceLock::new(),
            clients: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(&format!("{API}/invocation/next"), get(next))
            .route(&format!("{API}/invocation/{{id}}/response"), post(response))
            .route(&format!("{API}/invocation/{{id}}/error"), post(error))
            .route(&format!("{API}/init/error"), post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        // Our side only: what the function's side does is what is under test.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        Ok(Self {
            address,
            shared,
            queue,
            sequence: AtomicU64::new(0),
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// When the function first polled for an event (the end of its init).
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    /// The client addresses of the function's connections, in the order they polled.
    pub fn client_addresses(&self) -> Vec<SocketAddr> {
        self.shared
            .clients
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Queues an event; the returned receiver yields its outcome.
    pub fn enqueue(&self, payload: impl Into<Bytes>) -> oneshot::Receiver<Outcome> {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, outcome) = oneshot::channel();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let _ = self.queue.send(Queued {
            request_id: format!("standin-{n:06}-{nanos:x}"),
            trace_id: format!(
                "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=1",
                nanos / 1_000_000_000,
                nanos ^ u128::from(n),
                u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(n) ^ n
            ),
            payload: payload.into(),
            reply,
        });
        outcome
    }

    /// Queues an event and waits for its outcome (at most `within`).
    pub async fn invoke(
        &self,
        function: &Function,
        payload: impl Into<Bytes>,
        within: Duration,
    ) -> Result<Outcome, StandinError> {
        self.wait(function, self.enqueue(payload), within).await
    }

    /// Waits for a queued event's outcome, failing early with the function's log when it
    /// reported an init error or exited.
    pub async fn wait(
        &self,
        function: &Function,
        outcome: oneshot::Receiver<Outcome>,
        within: Duration,
    ) -> Result<Outcome, StandinError> {
        let exited = function.exited.clone();
        tokio::select! {
            outcome = tokio::time::timeout(within, outcome) => match outcome {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(_)) | Err(_) => Err(StandinError::Timeout(within, function.log())),
            },
            status = exited.wait() => Err(match self.shared.init_error.get() {
                Some(report) => StandinError::InitError(report.clone()),
                None => StandinError::Exited(status, function.log()),
            }),
        }
    }

    /// Starts `program` as Lambda starts a function: a clean environment with Lambda's reserved
    /// variables (name, memory, version, log group and stream, `AWS_LAMBDA_RUNTIME_API`,
    /// `TZ=:UTC`) and `env`. Its stdout and stderr are kept (see [`Function::log`]).
    pub fn spawn<I, K, V>(
        &self,
        program: &Path,
        function_name: &str,
        env: I,
    ) -> Result<Function, StandinError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let mut command = tokio::process::Command::new(program);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", self.address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "standin")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("LAMBDA_TASK_ROOT", program.parent().unwrap_or(program))
            .env("TZ", ":UTC")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = command.spawn()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Reader>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Reader>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut log) = log.lock() {
                        log.push(line);
                    }
                }
            });
        }
        let pid = child.id();
        let exited = Exit::default();
        let watcher = exited.clone();
        let waiter = tokio::spawn(async move {
            let status = child.wait().await;
            watcher.set(match status {
                Ok(status) => status.to_string(),
                Err(error) => error.to_string(),
            });
        });
        Ok(Function {
            pid,
            started,
            log,
            exited,
            waiter,
        })
    }
}

trait Reader: tokio::io::AsyncRead + Unpin + Send {}
impl<T: tokio::io::AsyncRead + Unpin + Send> Reader for T {}

/// Set once the process has exited, with its status.
#[derive(Clone, Default)]
struct Exit(Arc<(OnceLock<String>, tokio::sync::Notify)>);

impl Exit {
    fn set(&self, status: String) {
        let _ = self.0 .0.set(status);
        self.0 .1.notify_waiters();
    }

    async fn wait(&self) -> String {
        loop {
            let notified = self.0 .1.notified();
            if let Some(status) = self.0 .0.get() {
                return status.clone();
            }
            notified.await;
        }
    }
}

/// A function process started by [`RuntimeApi::spawn`]; killed when dropped.
pub struct Function {
    pid: Option<u32>,
    /// When the process was started.
    pub started: Instant,
    log: Arc<Mutex<Vec<String>>>,
    exited: Exit,
    waiter: tokio::task::JoinHandle<()>,
}

impl Drop for Function {
    fn drop(&mut self) {
        // Aborting the waiter drops the child, which kills it (kill_on_drop).
        self.waiter.abort();
    }
}

impl Function {
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Everything the process wrote to stdout and stderr so far, one line per entry.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The log as one string (for failure messages).
    pub fn log(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Whether the process has exited, with its status.
    pub fn exit_status(&self) -> Option<String> {
        self.exited.0 .0.get().cloned()
    }
}

async fn next(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Response {
    shared.first_poll.get_or_init(Instant::now);
    if let Ok(mut clients) = shared.clients.lock() {
        if !clients.contains(&client) {
            clients.push(client);
        }
    }
    let Some(event) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    if !shared.behaviour.hold_next.is_zero() {
        tokio::time::sleep(shared.behaviour.hold_next).await;
    }
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 900_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", event.request_id.clone()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:standin".to_owned(),
        ),
        ("lambda-runtime-trace-id", event.trace_id.clone()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    if let Ok(mut waiting) = shared.waiting.lock() {
        waiting.insert(
            event.request_id,
            Waiting {
                trace_id: event.trace_id,
                reply: event.reply,
                handed_out: Instant::now(),
            },
        );
    }
    (headers, event.payload).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    finish(&shared, &id, &headers, body, OutcomeKind::Response).await
}

async fn error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    finish(
        &shared,
        &id,
        &headers,
        body,
        OutcomeKind::Error { error_type },
    )
    .await
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = shared
        .init_error
        .set(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// Reads the whole response (as Lambda does before its 202), noting when the payload began.
async fn finish(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    mut body: Body,
    kind: OutcomeKind,
) -> StatusCode {
    let streamed = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode == "streaming");
    let mut bytes = BytesMut::new();
    let mut first_payload_byte = None;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return StatusCode::BAD_REQUEST;
        };
        match frame.into_data() {
            Ok(data) => {
                bytes.extend_from_slice(&data);
                if first_payload_byte.is_none() {
                    let payload_started = if streamed {
                        find(&bytes, PRELUDE_SEPARATOR)
                            .is_some_and(|at| bytes.len() > at + PRELUDE_SEPARATOR.len())
                    } else {
                        !bytes.is_empty()
                    };
                    if payload_started {
                        first_payload_byte = Some(Instant::now());
                    }
                }
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    let received = Instant::now();
    let Some(waiting) = shared.waiting.lock().ok().and_then(|mut w| w.remove(id)) else {
        return StatusCode::BAD_REQUEST;
    };
    let _ = waiting.reply.send(Outcome {
        request_id: id.to_owned(),
        trace_id: waiting.trace_id,
        kind,
        streamed,
        body: bytes.freeze(),
        trailers,
        handed_out: waiting.handed_out,
        first_payload_byte,
        received,
    });
    StatusCode::ACCEPTED
}
