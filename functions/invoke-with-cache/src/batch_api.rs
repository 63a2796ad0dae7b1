//! OpenAI's Batch API on the OpenAI-compatible route: `POST /openai/v1/batches` turns a file of
//! `/v1/chat/completions` requests into deferred requests (a group, the completion window as
//! their deadline), placed by the schedule as any other; `GET /openai/v1/batches/{id}` counts
//! them and, once all have ended, writes the output and error files in OpenAI's formats;
//! `POST /openai/v1/batches/{id}/cancel` fails those not yet placed; `GET /openai/v1/batches`
//! lists the caller's. The files routes are in [`crate::files`].

use http::{Method, StatusCode};
use lambda_http::Request;
use serde::Deserialize;
use serde_json::{json, Value};

use domain::batch::ResultError;
use domain::deferred::{
    group_member_id, random_id, DeferredGroup, DeferredRequest, DeferredStatus, GroupStatus,
};
use domain::ports::{Clock, DeferredStore};

use crate::app::{Adapters, App};
use crate::context::{Caller, Ctx, Reply};
use crate::deferred::{answer_body, digest, unavailable, Acceptance};
use crate::error::ApiError;
use crate::files::{FileRecord, FilesAnswer};
use crate::intake::not_served_here;
use crate::openai::{self, OpenAiOptions};
use crate::request::InvokeRequest;
use crate::wire::Wire;

/// The one endpoint a batch's requests may call, and the one window it may take.
const ENDPOINT: &str = "/v1/chat/completions";
const WINDOW: &str = "24h";
const WINDOW_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Deserialize)]
struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    #[serde(default)]
    metadata: Option<Value>,
}

/// One line of a batch input file.
#[derive(Debug, Deserialize)]
struct InputLine {
    custom_id: String,
    method: String,
    url: String,
    body: Value,
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).with_param(param)
}

fn batch_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!("No such Batch object: {id}"),
    )
    .with_param("batch_id")
}

impl<A: Adapters> App<A> {
    /// `/openai/v1/files…` and `/openai/v1/batches…` for a tenant key's caller.
    pub(crate) async fn batch_api(
        &self,
        request: &Request,
        caller: &Caller,
        ctx: &mut Ctx,
    ) -> Result<Reply, ApiError> {
        let owner = caller.namespace.clone();
        let path = request.uri().path().trim_end_matches('/');
        let tail = path.split_once("/openai/v1/").map_or("", |(_, t)| t);
        let parts: Vec<&str> = tail.split('/').collect();
        match parts.as_slice() {
            ["files", rest @ ..] => match self.files_route(request, &owner, rest).await? {
                FilesAnswer::Json(body) => Ok(Reply::Json(body)),
                FilesAnswer::Bytes(bytes) => Ok(Reply::Bytes(bytes)),
            },
            ["batches", rest @ ..] => match (request.method(), rest) {
                (&Method::POST, []) => self.create_batch(request, caller, ctx).await,
                (&Method::GET, []) => self.list_batches(request, &owner).await,
                (&Method::GET, [id]) => {
                    let group = self.group(&owner, id).await?;
                    Ok(Reply::Json(batch_object(&self.refresh(group).await?)))
                }
                (&Method::POST, [id, "cancel"]) => self.cancel_batch(&owner, id).await,
                _ => Err(not_served_here(request)),
            },
            _ => Err(not_served_here(request)),
        }
    }

    async fn create_batch(
        &self,
        request: &Request,
        caller: &Caller,
        ctx: &mut Ctx,
    ) -> Result<Reply, ApiError> {
        crate::intake::json_post(request)?;
        let store = self.enabled_deferred_store()?;
        let asked: CreateBatch = serde_json::from_slice(request.body().as_ref())
            .map_err(|e| invalid("body", format!("the body is not a batch to create: {e}")))?;
        if asked.endpoint != ENDPOINT {
            return Err(invalid(
                "endpoint",
                format!(
                    "endpoint {:?} is not served here; use {ENDPOINT}",
                    asked.endpoint
                ),
            ));
        }
        if asked.completion_window != WINDOW {
            return Err(invalid(
                "completion_window",
                format!(
                    "completion_window {:?} is not served; use \"{WINDOW}\"",
                    asked.completion_window
                ),
            ));
        }
        let owner = caller.namespace.clone();
        let content = self.file_content(&owner, &asked.input_file_id).await?;
        let requests = self.read_input(&content, caller, ctx)?;

        let now = self.ports.clock.now().timestamp();
        let id = format!(
            "batch_{}",
            random_id().map_err(|error| {
                tracing::error!(%error, "no batch id");
                unavailable()
            })?
        );
        let group = DeferredGroup {
            id: id.clone(),
            owner: owner.clone(),
            input_file_id: asked.input_file_id,
            endpoint: ENDPOINT.to_owned(),
            completion_window: WINDOW.to_owned(),
            request_count: requests.len(),
            status: GroupStatus::InProgress,
            created_at: now,
            expires_at: now + WINDOW_SECONDS,
            cancelling_at: None,
            ended_at: None,
            output_file_id: None,
            error_file_id: None,
            completed: 0,
            failed: 0,
            metadata: asked.metadata,
            accepting: true,
            version: 1,
        };
        store.create_group(&group).await.map_err(|error| {
            tracing::error!(%error, "batch not stored");
            unavailable()
        })?;
        for (index, (custom_id, invoke, model)) in requests.into_iter().enumerate() {
            let acceptance = Acceptance {
                id: group_member_id(&id, index),
                owner: owner.clone(),
                model,
                deadline: group.expires_at,
                group: Some(id.clone()),
                custom_id: Some(custom_id),
            };
            // A request refused here (its budget, say) ends in the error file as not accepted.
            if let Err(error) = self
                .accept_one(store, caller, &invoke, acceptance, false, ctx)
                .await
            {
                tracing::warn!(
                    batch_id = id,
                    index,
                    code = error.code,
                    "batch request not accepted"
                );
            }
        }
        // All in: the schedule may place them.
        let mut group = group;
        group.accepting = false;
        group.version += 1;
        if let Err(error) = store.update_group(&group).await {
            tracing::warn!(%error, batch_id = id, "batch's acceptance not closed; its requests wait until it lapses");
        }
        tracing::info!(
            batch_id = id,
            requests = group.request_count,
            "batch accepted"
        );
        Ok(Reply::Json(batch_object(&group)))
    }

    /// Every line of the input file, checked: its custom id, and the request as
    /// `/v1/chat/completions` reads it, on a model the caller may use.
    fn read_input(
        &self,
        content: &[u8],
        caller: &Caller,
        ctx: &mut Ctx,
    ) -> Result<Vec<(String, InvokeRequest, String)>, ApiError> {
        let mut requests = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let max = self.config.deferred.max_batch_requests;
        for (number, line) in content
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        {
            let at = |message: String| {
                invalid(
                    "input_file_id",
                    format!("line {number} of the input file: {message}"),
                )
            };
            let line: InputLine = serde_json::from_slice(line).map_err(|e| {
                at(format!(
                    "not a batch request ({{custom_id, method, url, body}}): {e}"
                ))
            })?;
            if line.method != "POST" || line.url != ENDPOINT {
                return Err(at(format!(
                    "{} {} is not served; every line must be POST {ENDPOINT}",
                    line.method, line.url
                )));
            }
            if !seen.insert(line.custom_id.clone()) {
                return Err(at(format!("custom_id {:?} is used twice", line.custom_id)));
            }
            if requests.len() == max {
                return Err(at(format!(
                    "the file holds more than the {max} requests a batch may (OPENAI_BATCH_MAX_REQUESTS); split it"
                )));
            }
            let body = serde_json::to_vec(&line.body).unwrap_or_default();
            let (mut invoke, model, _) = openai::parse(&body).map_err(|e| at(e.message.clone()))?;
            if invoke.stream {
                return Err(at("stream is not served in a batch".into()));
            }
            invoke.model_id = self
                .openai_model(&model)
                .map_err(|e| at(e.message.clone()))?;
            let model = self.choose_model(&invoke, &mut ctx.trace);
            self.check_model(caller, &model)
                .map_err(|e| at(e.message.clone()))?;
            requests.push((line.custom_id, invoke, model));
        }
        if requests.is_empty() {
            return Err(invalid(
                "input_file_id",
                "the input file holds no request".into(),
            ));
        }
        Ok(requests)
    }

    async fn group(&self, owner: &str, id: &str) -> Result<DeferredGroup, ApiError> {
        let store = self.enabled_deferred_store()?;
        if !id.starts_with("batch_") || id.len() > 64 {
            return Err(batch_not_found(id));
        }
        match store.get_group(id).await.map_err(|error| {
            tracing::error!(%error, "batch unreadable");
            unavailable()
        })? {
            Some(group) if group.owner == owner => Ok(group),
            _ => Err(batch_not_found(id)),
        }
    }

    /// The group with its requests counted; once every one has ended, its output and error
    /// files written and the group ended (a conditional write: a concurrent refresh's is kept).
    async fn refresh(&self, mut group: DeferredGroup) -> Result<DeferredGroup, ApiError> {
        if group.status.is_final() {
            return Ok(group);
        }
        let store = self.enabled_deferred_store()?;
        let ids: Vec<String> = (0..group.request_count)
            .map(|i| group_member_id(&group.id, i))
            .collect();
        let found = store.get_many(&ids).await.map_err(|error| {
            tracing::error!(%error, "batch requests unreadable");
            unavailable()
        })?;
        let mut by_id: std::collections::HashMap<String, DeferredRequest> =
            found.into_iter().map(|r| (r.id.clone(), r)).collect();
        let members: Vec<(String, Option<DeferredRequest>)> = ids
            .into_iter()
            .map(|id| {
                let r = by_id.remove(&id);
                (id, r)
            })
            .collect();
        group.completed = members
            .iter()
            .filter(|(_, r)| {
                r.as_ref()
                    .is_some_and(|r| r.status == DeferredStatus::Answered)
            })
            .count();
        group.failed = members
            .iter()
            .filter(|(_, r)| {
                r.as_ref()
                    .is_none_or(|r| r.status.is_final() && r.status != DeferredStatus::Answered)
            })
            .count();
        if group.completed + group.failed < group.request_count {
            return Ok(group);
        }
        let (output, errors) = output_files(&members);
        let files = self.files()?;
        let now = self.ports.clock.now().timestamp();
        let write = |kind: &str, lines: Vec<u8>| {
            let record = FileRecord {
                id: format!("file-{}", digest(&[group.id.as_bytes(), kind.as_bytes()])),
                owner: group.owner.clone(),
                bytes: lines.len(),
                created_at: now,
                filename: format!("{}_{kind}.jsonl", group.id),
                purpose: "batch_output".to_owned(),
            };
            (record, lines)
        };
        let mut ended = group.clone();
        for (kind, lines) in [("output", output), ("error", errors)] {
            if lines.is_empty() {
                continue;
            }
            let (record, lines) = write(kind, lines);
            self.put_file(files, &record, lines).await?;
            match kind {
                "output" => ended.output_file_id = Some(record.id),
                _ => ended.error_file_id = Some(record.id),
            }
        }
        ended.status = match group.status {
            GroupStatus::Cancelling => GroupStatus::Cancelled,
            _ => GroupStatus::Completed,
        };
        ended.ended_at = Some(now);
        ended.version += 1;
        match store.update_group(&ended).await {
            Ok(true) => Ok(ended),
            // Another refresh (or a cancel) wrote first: theirs stands.
            Ok(false) => self.group(&group.owner, &group.id).await,
            Err(error) => {
                tracing::error!(%error, "batch end not written");
                Err(unavailable())
            }
        }
    }

    async fn cancel_batch(&self, owner: &str, id: &str) -> Result<Reply, ApiError> {
        let store = self.enabled_deferred_store()?;
        let mut group = self.group(owner, id).await?;
        if group.status == GroupStatus::InProgress {
            group.status = GroupStatus::Cancelling;
            group.cancelling_at = Some(self.ports.clock.now().timestamp());
            group.version += 1;
            if !store
                .update_group(&group)
                .await
                .map_err(|_| unavailable())?
            {
                group = self.group(owner, id).await?;
            }
        }
        if group.status == GroupStatus::Cancelling {
            // What is not yet placed is not answered; what is placed ends as it will.
            let ids: Vec<String> = (0..group.request_count)
                .map(|i| group_member_id(&group.id, i))
                .collect();
            for mut request in store.get_many(&ids).await.map_err(|_| unavailable())? {
                if request.status != DeferredStatus::Queued {
                    continue;
                }
                request.status = DeferredStatus::Failed;
                request.error = Some(ResultError {
                    code: "batch_cancelled".into(),
                    message: "the batch was cancelled before this request was placed".into(),
                });
                request.version += 1;
                // A request placed meanwhile is left to its placement.
                let _ = store.update(&request).await.map_err(|_| unavailable())?;
            }
        }
        Ok(Reply::Json(batch_object(&self.refresh(group).await?)))
    }

    async fn list_batches(&self, request: &Request, owner: &str) -> Result<Reply, ApiError> {
        let store = self.enabled_deferred_store()?;
        let query = request.uri().query().unwrap_or_default();
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        };
        let limit = match param("limit") {
            None => 20,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "limit",
                        format!("limit {text:?} is not a number from 1 to 100"),
                    )
                })?,
        };
        let groups = store.groups(owner).await.map_err(|_| unavailable())?;
        let start = match param("after") {
            None => 0,
            Some(after) => groups
                .iter()
                .position(|g| g.id == after)
                .map_or(groups.len(), |i| i + 1),
        };
        let page: Vec<&DeferredGroup> = groups.iter().skip(start).take(limit).collect();
        Ok(Reply::Json(json!({
            "object": "list",
            "data": page.iter().map(|g| batch_object(g)).collect::<Vec<_>>(),
            "first_id": page.first().map(|g| &g.id),
            "last_id": page.last().map(|g| &g.id),
            "has_more": start + page.len() < groups.len(),
        })))
    }
}

/// OpenAI's Batch object.
fn batch_object(group: &DeferredGroup) -> Value {
    let ended = |status: GroupStatus| (group.status == status).then_some(group.ended_at).flatten();
    json!({
        "id": group.id,
        "object": "batch",
        "endpoint": group.endpoint,
        "errors": null,
        "input_file_id": group.input_file_id,
        "completion_window": group.completion_window,
        "status": group.status.as_str(),
        "output_file_id": group.output_file_id,
        "error_file_id": group.error_file_id,
        "created_at": group.created_at,
        "in_progress_at": group.created_at,
        "expires_at": group.expires_at,
        "finalizing_at": group.ended_at,
        "completed_at": ended(GroupStatus::Completed),
        "failed_at": null,
        "expired_at": null,
        "cancelling_at": group.cancelling_at,
        "cancelled_at": ended(GroupStatus::Cancelled),
        "request_counts": {
            "total": group.request_count,
            "completed": group.completed,
            "failed": group.failed,
        },
        "metadata": group.metadata,
    })
}

/// The output file (answered requests, OpenAI's `{id, custom_id, response, error}` lines) and
/// the error file (the others), in the input's order.
fn output_files(members: &[(String, Option<DeferredRequest>)]) -> (Vec<u8>, Vec<u8>) {
    let (mut output, mut errors) = (Vec::new(), Vec::new());
    let openai_wire = Wire::OpenAi(OpenAiOptions::default());
    for (id, request) in members {
        let custom_id = request.as_ref().and_then(|r| r.custom_id.clone());
        let line = match request {
            Some(request) => match answer_body(request, &request.id, &openai_wire)
                .filter(|_| request.status == DeferredStatus::Answered)
            {
                Some(body) => {
                    let line = json!({
                        "id": format!("batch_req_{id}"),
                        "custom_id": custom_id,
                        "response": {"status_code": 200, "request_id": request.id, "body": body},
                        "error": null,
                    });
                    push_line(&mut output, &line);
                    continue;
                }
                None => {
                    let (code, message) = match (&request.error, request.status) {
                        (Some(error), _) => (error.code.clone(), error.message.clone()),
                        (None, DeferredStatus::Expired) => (
                            "batch_expired".to_owned(),
                            "the request's window ended before it could be answered".to_owned(),
                        ),
                        (None, _) => (
                            "failed".to_owned(),
                            "the request was not answered".to_owned(),
                        ),
                    };
                    json!({"code": code, "message": message})
                }
            },
            None => json!({
                "code": "not_accepted",
                "message": "the request was refused when the batch was created (its budget or limits)",
            }),
        };
        push_line(
            &mut errors,
            &json!({"id": format!("batch_req_{id}"), "custom_id": custom_id, "response": null, "error": line}),
        );
    }
    (output, errors)
}

fn push_line(file: &mut Vec<u8>, line: &Value) {
    file.extend(line.to_string().as_bytes());
    file.push(b'\n');
}
