//! The model: [`FakeModel`], and [`GatedModel`] whose streams wait mid-way until let go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::conversation::{ContentBlock, Conversation, Message, ModelAnswer, Role, Usage};
use domain::error::{ModelError, ModelErrorKind};
use domain::ports::{ModelInvoker, ModelStream};
use domain::routing::{ServiceTier, Target};
use domain::stream::{replay, StreamEvent};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// A call the fake received: the identifier and the time it was given.
type Call = (String, Option<Duration>);

/// A model (Bedrock Converse and ConverseStream) whose answer or failure is set per identifier;
/// clones share their call log.
///
/// [`answering`](Self::answering) answers every call with `"secret answer text"`, stop reason
/// `end_turn`, 1,000 input and 1,000 output tokens; [`ending`](Self::ending) sets another text
/// and stop reason, [`taking`](Self::taking) a delay before each answer. A stream replays the
/// answer as ConverseStream would ([`replayed`]).
///
/// Records every call's identifier ([`calls`](Self::calls)) and time budget
/// ([`timeouts`](Self::timeouts)). To make it fail: [`failing`](Self::failing) fails every call,
/// [`failing_on`](Self::failing_on) the calls to one identifier, and
/// [`cutting_streams`](Self::cutting_streams) ends streams with an error after their first text.
#[derive(Clone)]
pub struct FakeModel {
    calls: Arc<Mutex<Vec<Call>>>,
    failures: HashMap<String, ModelError>,
    failure: Option<ModelError>,
    stop_reason: String,
    text: String,
    delay: Duration,
    /// A stream fails with this after its first events.
    cut: Option<ModelError>,
    /// Flex calls are throttled, as Bedrock throttles flex first.
    flex_throttled: bool,
    /// The service tier of each call, in order.
    tiers: Arc<Mutex<Vec<Option<ServiceTier>>>>,
}

impl FakeModel {
    pub fn answering() -> Self {
        Self {
            calls: Arc::default(),
            failures: HashMap::new(),
            failure: None,
            stop_reason: "end_turn".into(),
            text: "secret answer text".into(),
            delay: Duration::ZERO,
            cut: None,
            flex_throttled: false,
            tiers: Arc::default(),
        }
    }

    /// Throttles every call on the flex tier; answers the others, served on the tier asked.
    pub fn throttling_flex(mut self) -> Self {
        self.flex_throttled = true;
        self
    }

    /// The service tier each call asked for, in order.
    pub fn tiers(&self) -> Vec<Option<ServiceTier>> {
        self.tiers.lock().unwrap().clone()
    }

    /// Streams fail mid-way with `kind`, after the first text delta.
    pub fn cutting_streams(mut self, kind: ModelErrorKind) -> Self {
        self.cut = Some(ModelError::new(kind, "cut by the fake"));
        self
    }

    /// Every call fails with `kind`.
    pub fn failing(kind: ModelErrorKind) -> Self {
        Self {
            failure: Some(ModelError::new(kind, format!("{kind:?} from the fake"))),
            ..Self::answering()
        }
    }

    /// Fails calls to one identifier (a Provisioned Throughput ARN, say) only.
    pub fn failing_on(mut self, invoke_id: &str, kind: ModelErrorKind) -> Self {
        self.failures.insert(
            invoke_id.to_owned(),
            ModelError::new(kind, "fake failure on this id"),
        );
        self
    }

    /// Answers `text`, stopping for `stop_reason`.
    pub fn ending(mut self, stop_reason: &str, text: &str) -> Self {
        self.stop_reason = stop_reason.into();
        self.text = text.into();
        self
    }

    /// Waits `delay` (on tokio's clock) before each answer.
    pub fn taking(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The identifiers called, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The time each call was given, in order.
    pub fn timeouts(&self) -> Vec<Option<Duration>> {
        self.calls.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }
}

/// The events a model's stream gives for `answer`.
pub fn replayed(answer: &ModelAnswer) -> Vec<Result<StreamEvent, ModelError>> {
    replay(answer).into_iter().map(Ok).collect()
}

impl ModelInvoker for FakeModel {
    async fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        let answer = self.converse(target, conversation, timeout).await?;
        let mut events = replayed(&answer);
        if let Some(cut) = &self.cut {
            let first_text = events
                .iter()
                .position(|e| matches!(e, Ok(StreamEvent::Text { .. })))
                .unwrap_or(0);
            events.truncate(first_text + 1);
            events.push(Err(cut.clone()));
        }
        Ok(Box::pin(futures_util::stream::iter(events)))
    }

    async fn converse(
        &self,
        target: &Target,
        _: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        self.calls
            .lock()
            .unwrap()
            .push((target.invoke_id.clone(), timeout));
        self.tiers.lock().unwrap().push(target.service_tier);
        if self.flex_throttled && target.service_tier == Some(ServiceTier::Flex) {
            return Err(ModelError::new(
                ModelErrorKind::Throttled,
                "flex capacity is busy (the fake)",
            ));
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(error) = self
            .failures
            .get(&target.invoke_id)
            .or(self.failure.as_ref())
        {
            return Err(error.clone());
        }
        Ok(ModelAnswer {
            latency: None,
            invoked_model: None,
            service_tier: target.service_tier,
            message: Message {
                role: Role::Assistant,
                content: vec![ContentBlock::text(self.text.clone())],
            },
            stop_reason: self.stop_reason.clone(),
            usage: Usage::new(1000, 1000),
        })
    }
}

/// A model whose stream gives its first events (the start and the first text), then waits
/// until `gate` is notified before giving the rest; it answers as `model` does.
#[derive(Clone)]
pub struct GatedModel {
    pub gate: Arc<Notify>,
    pub model: FakeModel,
}

impl ModelInvoker for GatedModel {
    async fn converse(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelAnswer, ModelError> {
        self.model.converse(target, conversation, timeout).await
    }

    async fn converse_stream(
        &self,
        target: &Target,
        conversation: &Conversation,
        timeout: Option<Duration>,
    ) -> Result<ModelStream, ModelError> {
        let answer = self.model.converse(target, conversation, timeout).await?;
        let mut events = replay(&answer);
        let rest = events.split_off(2);
        let gate = self.gate.clone();
        let later = futures_util::stream::once(async move { gate.notified().await })
            .flat_map(move |()| futures_util::stream::iter(rest.clone().into_iter().map(Ok)));
        Ok(Box::pin(
            futures_util::stream::iter(events.into_iter().map(Ok)).chain(later),
        ))
    }
}
