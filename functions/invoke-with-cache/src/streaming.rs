//! Streamed answers: a hit replayed as the stream a miss would have written, and a miss's
//! model stream pumped to the client by a task of its own, settled when the model stops.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use domain::cache::{CacheEntry, CacheState};
use domain::conversation::Usage;
use domain::error::{ModelError, ModelErrorKind};
use domain::limits::estimated_tokens;
use domain::ports::{Clock, ModelInvoker, ModelStream};
use domain::routing::Target;
use domain::stream::{replay, AnswerBuilder};

use crate::answered::StreamMeta;
use crate::app::{Adapters, App};
use crate::body::{self, ResponseBody};
use crate::config::StreamLimits;
use crate::context::{elapsed_ms, hit, Ctx, Job, Reply};
use crate::error::ApiError;
use crate::respond::{answered, client_closed, meta, stream_response};
use crate::wire::StreamWriter;

/// How relaying a model's stream to the client ended.
enum Relayed {
    /// The model stopped; `client_gone` when a draining tenant's client left on the way.
    Ended { client_gone: bool },
    /// The client left, and the answer is not worth reading to its end.
    Abandoned,
    /// The model's stream failed or stalled.
    Failed(ModelError),
    /// The stream reached its time limit ([`Ctx::stream_ends_by`]) before the model stopped.
    OutOfTime,
}

impl<A: Adapters> App<A> {
    /// A hit: whole, or replayed as the stream a miss would have written.
    pub(crate) fn answer_hit(&self, entry: CacheEntry, stream: bool, ctx: &mut Ctx) -> Reply {
        let answer = hit(entry, &mut ctx.trace);
        if !stream {
            return Reply::Answer(answer);
        }
        let meta = meta(ctx, CacheState::Hit, self.ports.clock.now().timestamp());
        let mut writer = ctx.wire.writer(&meta);
        let mut frames = vec![writer.opening(&meta)];
        frames.extend(
            replay(&answer.answer)
                .iter()
                .filter_map(|event| writer.event(event)),
        );
        let latency_ms = elapsed_ms(ctx.started);
        frames.push(writer.closing(&answered(&answer, &meta, latency_ms)));
        self.report_answer(ctx, &answer, latency_ms);
        Reply::Stream(stream_response(&meta, body::frames(frames)))
    }

    /// Starts the model's stream (spilling over before its first event if need be), answers
    /// with the stream's headers, and leaves the rest to a task.
    pub(crate) async fn stream_miss(
        self: &Arc<Self>,
        job: Job,
        ctx: &mut Ctx,
    ) -> Result<Response<ResponseBody>, ApiError> {
        let conversation = &job.invoke.conversation;
        let started = self
            .with_spillover(&job.plan, ctx, |target, timeout| async move {
                self.ports
                    .model
                    .converse_stream(&target, conversation, timeout)
                    .await
            })
            .await;
        let (events, target) = match started {
            Ok(started) => started,
            Err(error) => {
                self.release(job.key.as_ref(), job.lease_owner.as_deref())
                    .await;
                return Err(error.into());
            }
        };
        let meta = meta(ctx, job.state, self.ports.clock.now().timestamp());
        let (sender, body) = body::channel();
        let app = Arc::clone(self);
        let task_ctx = ctx.clone();
        // The stream's task gives the tenant's slot and tokens back when the stream ends.
        ctx.held = None;
        let span = tracing::info_span!("invoke", request_id = %ctx.request_id, xrayTraceId = %ctx.xray_trace_id);
        let response = stream_response(&meta, body);
        tokio::spawn(
            async move {
                app.pump(job, target, events, meta, sender, task_ctx).await;
            }
            .instrument(span),
        );
        Ok(response)
    }

    /// Writes the model's events to the client as they come, settles the answer once the
    /// model stopped, and gives back what the request held of its tenant's limits. The body
    /// ends when `sender` is dropped, here, after all of it: the invocation lasts until the
    /// tokens are charged and the slot is free, whether the client stayed or not.
    pub(crate) async fn pump(
        self: Arc<Self>,
        job: Job,
        target: Target,
        events: ModelStream,
        meta: StreamMeta,
        sender: mpsc::Sender<Bytes>,
        mut ctx: Ctx,
    ) {
        let held = ctx.held.take();
        let usage = self
            .relay_and_settle(&job, &target, events, meta, &sender, &ctx)
            .await;
        let cost_usd = self.prices(&target, &usage).0;
        self.give_back(
            held,
            u64::from(usage.input_tokens) + u64::from(usage.output_tokens),
            cost_usd,
        )
        .await;
        drop(sender);
    }

    /// The stream relayed and settled; the tokens the model reported.
    async fn relay_and_settle(
        &self,
        job: &Job,
        target: &Target,
        mut events: ModelStream,
        meta: StreamMeta,
        sender: &mpsc::Sender<Bytes>,
        ctx: &Ctx,
    ) -> Usage {
        let mut writer = ctx.wire.writer(&meta);
        let client_gone = sender.send(writer.opening(&meta)).await.is_err();
        // A tenant's answer is read to its end even when its client left, so the tokens it
        // cost count against the budget; anyone else's is dropped at once, which ends the call.
        let drain = job.caller.tenant.is_some();
        if client_gone && !drain {
            self.abandon(job, ctx).await;
            return Usage::default();
        }
        let mut builder = AnswerBuilder::default();
        let relayed = self
            .relay(
                &mut events,
                &mut writer,
                sender,
                &mut builder,
                (drain, client_gone),
                ctx.stream_ends_by,
            )
            .await;
        let usage = builder.usage();
        match relayed {
            Relayed::Abandoned => {
                self.abandon(job, ctx).await;
                return usage;
            }
            Relayed::Failed(error) => {
                self.charge_partial(job, target, &builder).await;
                self.fail_stream(job, ctx, &writer, sender, error.into())
                    .await;
                return usage;
            }
            Relayed::OutOfTime => {
                // Bedrock reports usage only at the end: a stream cut before it is charged
                // upper bounds, as its reservation was.
                // Counted by Bedrock (`COUNT_TOKENS`) when it was, else the bytes' bound.
                let bound = ctx
                    .counted_input_tokens
                    .unwrap_or_else(|| estimated_tokens(&job.invoke.conversation, 0).input);
                let usage = builder.usage_or_bound(bound);
                self.record_spend(&job.caller, self.prices(target, &usage).0)
                    .await;
                let limit = self.config.stream_limits;
                self.fail_stream(job, ctx, &writer, sender, out_of_time(limit))
                    .await;
                return usage;
            }
            Relayed::Ended { client_gone: true } => {
                self.charge_partial(job, target, &builder).await;
                self.abandon(job, ctx).await;
                return usage;
            }
            Relayed::Ended { client_gone: false } => {}
        }
        let answer = match builder.finish() {
            Ok(answer) => answer,
            Err(error) => {
                self.record_spend(&job.caller, self.prices(target, &usage).0)
                    .await;
                self.fail_stream(job, ctx, &writer, sender, error.into())
                    .await;
                return usage;
            }
        };
        let settled = self.settle(job, answer, target).await;
        let latency_ms = elapsed_ms(ctx.started);
        let meta = StreamMeta {
            cache: settled.cache,
            ..meta
        };
        // The client may be gone by now; the answer is whole and stored all the same.
        let _ = sender
            .send(writer.closing(&answered(&settled, &meta, latency_ms)))
            .await;
        self.report_answer(ctx, &settled, latency_ms);
        usage
    }

    /// Writes each of the model's events to the client as it comes and builds the answer; a
    /// draining tenant's stream is read to its end though its client left.
    async fn relay(
        &self,
        events: &mut ModelStream,
        writer: &mut StreamWriter,
        sender: &mpsc::Sender<Bytes>,
        builder: &mut AnswerBuilder,
        (drain, mut client_gone): (bool, bool),
        ends_by: Instant,
    ) -> Relayed {
        let idle = self.config.bedrock.read_timeout;
        loop {
            let wait = idle.min(ends_by.saturating_duration_since(Instant::now()));
            let item = match tokio::time::timeout(wait, events.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => return Relayed::Ended { client_gone },
                // A stream that stalls, or outlasts its limit, ends with an error event, never
                // a silent cut.
                Err(_) if Instant::now() >= ends_by => return Relayed::OutOfTime,
                Err(_) => Err(ModelError::new(
                    ModelErrorKind::Timeout,
                    format!("no event from the model for {} ms", idle.as_millis()),
                )),
            };
            let event = match item {
                Ok(event) => event,
                Err(error) => return Relayed::Failed(error),
            };
            builder.push(&event);
            if client_gone {
                continue;
            }
            let Some(frame) = writer.event(&event) else {
                continue;
            };
            if sender.send(frame).await.is_err() {
                if !drain {
                    return Relayed::Abandoned;
                }
                client_gone = true;
            }
        }
    }

    pub(crate) async fn fail_stream(
        &self,
        job: &Job,
        ctx: &Ctx,
        writer: &StreamWriter,
        sender: &mpsc::Sender<Bytes>,
        error: ApiError,
    ) {
        let _ = sender.send(writer.failure(&error, &ctx.request_id)).await;
        self.release(job.key.as_ref(), job.lease_owner.as_deref())
            .await;
        self.report_failure(ctx, &error, elapsed_ms(ctx.started));
    }

    /// The client went away mid-stream: the model's stream is dropped (which ends the call),
    /// nothing is stored and the key is given back.
    pub(crate) async fn abandon(&self, job: &Job, ctx: &Ctx) {
        self.release(job.key.as_ref(), job.lease_owner.as_deref())
            .await;
        let error = ApiError::new(
            client_closed(),
            "ClientClosedRequest",
            "the client closed the stream before the answer ended",
        );
        self.report_failure(ctx, &error, elapsed_ms(ctx.started));
    }
}

/// The error event of a stream that reached its time limit.
fn out_of_time(limit: StreamLimits) -> ApiError {
    ApiError::new(
        http::StatusCode::GATEWAY_TIMEOUT,
        "StreamTimeLimit",
        format!(
            "the stream reached its time limit before the model stopped (it ends {} s before API Gateway's {} s or the function's timeout, which would cut it without a word); the tokens it used are charged. Ask for fewer output tokens (maxTokens) or split the request",
            limit.margin.as_secs(),
            limit.max.as_secs()
        ),
    )
}
