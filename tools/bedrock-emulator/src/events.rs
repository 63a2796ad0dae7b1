//! Job-state events in the shape EventBridge delivers them, kept for `GET /_emulator/events`
//! and POSTed (JSON) to a configured target, in order, by one delivery task: a slow or failing
//! target is logged and never holds a job back.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

/// How many events `GET /_emulator/events` keeps (the most recent).
pub const KEPT_EVENTS: usize = 1000;

#[derive(Debug, Default)]
pub struct Events {
    recent: Mutex<VecDeque<Value>>,
    delivery: OnceLock<mpsc::UnboundedSender<(String, Value)>>,
}

impl Events {
    /// Records the event and, with a target, queues its delivery.
    pub fn publish(&self, target: Option<&str>, event: Value) {
        if let Some(target) = target {
            self.deliver(target.to_owned(), event.clone());
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == KEPT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// Oldest first.
    pub fn recent(&self) -> Vec<Value> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn deliver(&self, target: String, event: Value) {
        // The delivery task needs a runtime; outside one (unit tests) events are only kept.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sender = self.delivery.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            runtime.spawn(deliver_all(receiver));
            sender
        });
        if sender.send((target, event)).is_err() {
            tracing::warn!("event delivery task is gone; event not delivered");
        }
    }
}

async fn deliver_all(mut receiver: mpsc::UnboundedReceiver<(String, Value)>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the event delivery client; events stay local");
            return;
        }
    };
    while let Some((target, event)) = receiver.recv().await {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        match client.post(&target).json(&event).send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(%target, event_id = %id, "event delivered");
            }
            Ok(response) => {
                tracing::warn!(%target, event_id = %id, status = %response.status(), "event target refused the event");
            }
            Err(error) => {
                tracing::warn!(%target, event_id = %id, %error, "event delivery failed");
            }
        }
    }
}
