//! `POST /v1/deferred` and `GET /v1/deferred/{id}`: an invoke request that can wait until its
//! deadline, accepted at once (answered at once from the cache when it can be) and placed by
//! batch-status's schedule (`shared::deferred`) on the cheapest capacity that meets it.

use http::StatusCode;
use lambda_http::Request;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use domain::batch::BudgetHold as DeferredHold;
use domain::cache::{CacheMode, CacheState, StoredRecord};
use domain::deferred::{deadline_of, random_id, DeferredRequest, DeferredStatus, Placement};
use domain::ports::{CacheStore, Clock, DeferredStore, SpendLedger};
use domain::tenancy::{month_of, Reservation, Reserved};

use crate::answered::{Answered, StreamMeta};
use crate::app::{Adapters, App};
use crate::context::{Caller, Ctx, Reply};
use crate::error::ApiError;
use crate::wire::Wire;

/// The fields `/v1/deferred` adds to an invoke body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Deferral {
    deadline: Option<String>,
    within: Option<String>,
    client_token: Option<String>,
}

/// Who a deferred request is for, by when, and where it was accepted from.
pub(crate) struct Acceptance {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) model: String,
    pub(crate) deadline: i64,
    /// The group (OpenAI batch) and the request's id in it.
    pub(crate) group: Option<String>,
    pub(crate) custom_id: Option<String>,
}

/// A reservation outlives its deadline by this much: the answer of a late batch is settled.
const HOLD_BEYOND_DEADLINE: i64 = 24 * 3600;

impl<A: Adapters> App<A> {
    pub(crate) fn enabled_deferred_store(&self) -> Result<&A::Deferred, ApiError> {
        self.ports.deferred.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "deferred requests are not enabled in this deployment (DEFERRED_TABLE_NAME is unset); use /v1/invoke",
            )
        })
    }

    /// Who owns what `caller` defers: the tenant, or the IAM (or JWT) principal.
    pub(crate) fn deferred_owner(
        &self,
        request: &Request,
        caller: &Caller,
    ) -> Result<String, ApiError> {
        if caller.tenant.is_some() {
            return Ok(caller.namespace.clone());
        }
        shared::http::caller_principal(request)
            .map(|principal| principal.to_string())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "MissingCallerIdentity",
                    "a deferred request belongs to its caller, but this request carries no IAM or JWT identity; call through the authorized API",
                )
            })
    }

    /// `POST /v1/deferred`: 202 with the request's id and status, at once.
    pub(crate) async fn accept_deferred(
        &self,
        request: &Request,
        caller: Caller,
        ctx: &mut Ctx,
    ) -> Result<Reply, ApiError> {
        let store = self.enabled_deferred_store()?;
        let owner = self.deferred_owner(request, &caller)?;
        let (deferral, invoke_body) = split_body(request.body().as_ref())?;
        let invoke = self.read_body(request, &invoke_body)?;
        if invoke.stream {
            return Err(invalid(
                "stream",
                "a deferred request is answered later, never streamed; remove stream",
            ));
        }
        if invoke.service_tier.is_some() || invoke.latency.is_some() {
            return Err(invalid(
                "serviceTier",
                "a deferred request's capacity is chosen by its deadline; remove serviceTier and performanceConfig",
            ));
        }
        if invoke.conversation.tool_config.is_some() {
            return Err(invalid(
                "toolConfig",
                "deferred requests take no tools (Bedrock batch jobs do not run them); use /v1/invoke",
            ));
        }
        let now = self.ports.clock.now();
        let limits = &self.config.deferred;
        let deadline = deadline_of(
            deferral.deadline.as_deref(),
            deferral.within.as_deref(),
            now.timestamp(),
            limits.min_seconds,
            limits.max_seconds,
        )
        .map_err(|e| invalid("deadline", &e.to_string()))?;
        let model = self.choose_model(&invoke, &mut ctx.trace);
        self.check_model(&caller, &model)?;
        let id = match &deferral.client_token {
            Some(token) => digest(&[owner.as_bytes(), b"token", token.as_bytes()]),
            None => random_id().map_err(|error| {
                tracing::error!(%error, "no deferred id");
                unavailable()
            })?,
        };
        let acceptance = Acceptance {
            id,
            owner,
            model,
            deadline,
            group: None,
            custom_id: None,
        };
        let deferred = self
            .accept_one(store, &caller, &invoke, acceptance, true, ctx)
            .await?;
        Ok(accepted(&deferred))
    }

    /// Stores one deferred request, answered at once when its answer is cached, its budget
    /// reserved otherwise; the request already stored under the id when there is one (the same
    /// client token again), a conflict when that one asked something else. `count_limits`:
    /// the request counts against the caller's rate limits (a file's requests do not).
    pub(crate) async fn accept_one(
        &self,
        store: &A::Deferred,
        caller: &Caller,
        invoke: &crate::request::InvokeRequest,
        acceptance: Acceptance,
        count_limits: bool,
        ctx: &mut Ctx,
    ) -> Result<DeferredRequest, ApiError> {
        let Acceptance {
            id,
            owner,
            model,
            deadline,
            group,
            custom_id,
        } = acceptance;
        let converse = converse_body(&invoke.conversation);
        let fingerprint = digest(&[model.as_bytes(), converse.to_string().as_bytes()]);
        if let Some(existing) = self.read_deferred(store, &id).await? {
            return same_request(existing, &fingerprint);
        }
        if count_limits {
            self.admit_limits(caller, &invoke.conversation, ctx).await?;
        }
        let now = self.ports.clock.now();
        let mut deferred = DeferredRequest::queued(
            id,
            owner,
            model.clone(),
            converse,
            fingerprint,
            now.timestamp(),
            deadline,
        );
        deferred.group = group;
        deferred.custom_id = custom_id;
        // An answer already cached costs nothing and waits for nothing.
        if invoke.cache_mode == CacheMode::Use {
            if let Some(key) = self.cache_key(invoke, &caller.namespace, &model) {
                if let Ok(Some(StoredRecord::Answer(entry))) = self.ports.store.get(&key).await {
                    if entry.is_live(now.timestamp()) {
                        deferred.status = DeferredStatus::Answered;
                        deferred.placement = Some(Placement::Cache);
                        deferred.on_demand_usd = entry.cached.cost_usd;
                        deferred.answer = Some(entry.cached.answer);
                        deferred.answered_at = Some(now.timestamp());
                    }
                }
            }
        }
        if deferred.status == DeferredStatus::Queued {
            deferred.budget = self
                .hold_for_deferred(caller, &deferred, &invoke.conversation, ctx)
                .await?;
        }
        let created = store.create(&deferred).await.map_err(|error| {
            tracing::error!(%error, "deferred request not stored");
            unavailable()
        })?;
        if !created {
            // The same token, sent twice at once: the first one's request stands.
            if let Some(existing) = self.read_deferred(store, &deferred.id).await? {
                return same_request(existing, &deferred.fingerprint);
            }
        }
        tracing::info!(
            deferred_id = deferred.id,
            model_id = deferred.model_id,
            deadline,
            status = deferred.status.as_str(),
            "deferred request accepted"
        );
        Ok(deferred)
    }

    /// The invoke body as `/v1/invoke` reads it, with the deployment's allowed models.
    fn read_body(
        &self,
        request: &Request,
        body: &[u8],
    ) -> Result<crate::request::InvokeRequest, ApiError> {
        crate::intake::json_post(request)?;
        if body.len() > self.config.max_body_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!(
                    "the body is {} bytes; the limit is {}",
                    body.len(),
                    self.config.max_body_bytes
                ),
            ));
        }
        let invoke = crate::request::parse(body)?;
        if let Some(model) = &invoke.model_id {
            if !self.config.allowed_models.contains(model) {
                return Err(invalid(
                    "modelId",
                    &format!(
                        "{model:?} is not enabled here; use one of {:?} or omit it",
                        self.config.allowed_models
                    ),
                ));
            }
        }
        Ok(invoke)
    }

    /// A tenant's reservation of the request's most cost, held until it ends (settled by the
    /// schedule); `None` for callers without a budget.
    async fn hold_for_deferred(
        &self,
        caller: &Caller,
        deferred: &DeferredRequest,
        conversation: &domain::conversation::Conversation,
        ctx: &mut Ctx,
    ) -> Result<Option<DeferredHold>, ApiError> {
        let (Some(tenant), Some(tenancy)) = (&caller.tenant, &self.ports.tenancy) else {
            return Ok(None);
        };
        let Some(budget) = tenant.monthly_budget_usd else {
            return Ok(None);
        };
        let now = self.ports.clock.now();
        let estimate = self.reservation_for(&deferred.model_id, conversation, ctx, now)?;
        let reservation = Reservation {
            id: deferred.id.clone(),
            usd: estimate.usd,
            expires_at: deferred.deadline + HOLD_BEYOND_DEADLINE,
        };
        let month = month_of(now);
        match tenancy
            .ledger
            .reserve(&tenant.name, &month, &reservation, budget, now.timestamp())
            .await
        {
            Ok(Reserved::Refused { committed_usd }) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "BudgetExceeded",
                format!(
                    "this request may cost up to ${:.6}; tenant {:?} has ${committed_usd:.6} spent or reserved of its ${budget} budget for {month}. Lower maxTokens or ask the operator to raise the budget",
                    reservation.usd, tenant.name
                ),
            )),
            Ok(_) => Ok(Some(DeferredHold {
                tenant: tenant.name.clone(),
                month,
                reserved_usd: reservation.usd,
                expires_at: reservation.expires_at,
                settled: false,
            })),
            Err(error) => {
                tracing::error!(%error, tenant = tenant.name, "deferred request's budget not reserved; refused");
                Err(crate::caller::spend_unavailable())
            }
        }
    }

    pub(crate) async fn read_deferred(
        &self,
        store: &A::Deferred,
        id: &str,
    ) -> Result<Option<DeferredRequest>, ApiError> {
        store.get(id).await.map_err(|error| {
            tracing::error!(%error, "deferred request unreadable");
            unavailable()
        })
    }

    /// `GET /v1/deferred/{id}`: the caller's own request, or 404.
    pub(crate) async fn deferred_status(
        &self,
        request: &Request,
        caller: &Caller,
        ctx: &Ctx,
    ) -> Result<Reply, ApiError> {
        let store = self.enabled_deferred_store()?;
        let owner = self.deferred_owner(request, caller)?;
        let id = request
            .uri()
            .path()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "no deferred request {id:?} of yours; use the id POST /v1/deferred answered"
                ),
            )
        };
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        match self.read_deferred(store, id).await? {
            // Another owner's request is as absent as one that never was.
            Some(deferred) if deferred.owner == owner => {
                Ok(Reply::Json(status_body(&deferred, &ctx.request_id)))
            }
            _ => Err(not_found()),
        }
    }
}

/// The body without the deferral's fields, and those fields.
fn split_body(body: &[u8]) -> Result<(Deferral, Vec<u8>), ApiError> {
    let mut object: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!("the body must be a JSON object with messages or prompt and a deadline or within: {e}"),
        )
    })?;
    let mut deferral = Deferral::default();
    for (field, slot) in [
        ("deadline", &mut deferral.deadline),
        ("within", &mut deferral.within),
        ("clientToken", &mut deferral.client_token),
    ] {
        match object.remove(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => *slot = Some(text),
            Some(_) => return Err(invalid(field, "must be a string")),
        }
    }
    if let Some(token) = &deferral.client_token {
        if token.is_empty()
            || token.len() > 256
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(invalid(
                "clientToken",
                "must be 1 to 256 letters, digits, '-', '_', '.' or ':'",
            ));
        }
    }
    let rest = serde_json::to_vec(&object).unwrap_or_default();
    Ok((deferral, rest))
}

/// The conversation as the Converse body a batch record or a call carries.
fn converse_body(conversation: &domain::conversation::Conversation) -> Value {
    let mut body = json!({
        "messages": conversation.messages,
        "inferenceConfig": conversation.inference_config,
    });
    if !conversation.system.is_empty() {
        body["system"] = json!(conversation.system);
    }
    if let Some(fields) = &conversation.additional_model_request_fields {
        body["additionalModelRequestFields"] = fields.clone();
    }
    body
}

pub(crate) fn digest(parts: &[&[u8]]) -> String {
    shared::batch::batch_id_for(parts)
}

/// A client token already used: the same request answers as it did; another is a conflict.
fn same_request(existing: DeferredRequest, fingerprint: &str) -> Result<DeferredRequest, ApiError> {
    if existing.fingerprint == fingerprint {
        Ok(existing)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "IdempotencyConflict",
            format!(
                "clientToken was already used for another request (deferred {}); use a new token for a new request",
                existing.id
            ),
        ))
    }
}

fn accepted(deferred: &DeferredRequest) -> Reply {
    Reply::Accepted(json!({
        "id": deferred.id,
        "status": deferred.status.as_str(),
        "placement": deferred.placement.map(Placement::as_str),
        "modelId": deferred.model_id,
        "deadline": rfc3339(deferred.deadline),
        "acceptedAt": rfc3339(deferred.accepted_at),
    }))
}

fn rfc3339(epoch: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(epoch, 0).map(|t| t.to_rfc3339())
}

/// The request's status; once answered, `/v1/invoke`'s 200 body in `answer`, with its
/// placement, cost and savings against on-demand.
fn status_body(deferred: &DeferredRequest, request_id: &str) -> Value {
    let mut body = json!({
        "id": deferred.id,
        "status": deferred.status.as_str(),
        "placement": deferred.placement.map(Placement::as_str),
        "modelId": deferred.model_id,
        "acceptedAt": rfc3339(deferred.accepted_at),
        "deadline": rfc3339(deferred.deadline),
        "deadlineMissed": deferred.deadline_missed,
    });
    if let Some(batch_id) = &deferred.batch_id {
        body["batchId"] = json!(batch_id);
    }
    if let Some(error) = &deferred.error {
        body["error"] = json!({"code": error.code, "message": error.message});
    }
    if let Some(answer) = answer_body(deferred, request_id, &Wire::Native) {
        body["answeredAt"] = json!(deferred.answered_at.and_then(rfc3339));
        body["answer"] = answer;
        body["costUsd"] = json!(deferred.cost_usd);
        body["savedUsd"] = json!(deferred.saved_usd());
    }
    body
}

/// An answered request's answer as `wire` writes a 200 (`/v1/invoke`'s body, or OpenAI's
/// `chat.completion`), with its cost, savings and the time from acceptance to answer.
pub(crate) fn answer_body(
    deferred: &DeferredRequest,
    request_id: &str,
    wire: &Wire,
) -> Option<Value> {
    let (Some(answer), Some(answered_at)) = (&deferred.answer, deferred.answered_at) else {
        return None;
    };
    let meta = StreamMeta {
        request_id: request_id.to_owned(),
        created: answered_at,
        cache: if deferred.placement == Some(Placement::Cache) {
            CacheState::Hit
        } else {
            CacheState::Miss
        },
        model_id: Some(deferred.model_id.clone()),
        route: None,
        tier: None,
        spilled_over: false,
    };
    let answered = Answered {
        answer,
        meta: &meta,
        cost_usd: deferred.cost_usd,
        saved_usd: deferred.saved_usd(),
        on_demand_equivalent_usd: deferred.on_demand_usd,
        latency_ms: u64::try_from(answered_at - deferred.accepted_at)
            .unwrap_or(0)
            .saturating_mul(1000),
    };
    Some(wire.answer_body(&answered))
}

fn invalid(field: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ValidationError",
        format!("{field}: {reason}"),
    )
}

pub(crate) fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "DeferredStoreUnavailable",
        "deferred requests cannot be read or stored just now; retry in a few seconds",
    )
    .retry_after(2)
}
