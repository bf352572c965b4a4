//! Publishing chain events on the bus: one envelope per event, id = the
//! event's deterministic id, retried with backoff until acknowledged.

use std::time::Duration;

use infra::bus::{Message, SharedBus};
use proto::event::{topics, ChainEvent, Envelope, EventPayload};
use tokio_util::sync::CancellationToken;

/// Publishing stopped because the gateway is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("publishing stopped: shutting down")]
pub struct ShuttingDown;

/// Publishes chain events, never skipping one.
#[derive(Clone)]
pub(crate) struct Publisher {
    bus: SharedBus,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// The bus message carrying `event`.
pub fn message_for(event: &ChainEvent) -> Message {
    let id = event.event_id();
    let envelope = Envelope::new(id, chrono::Utc::now(), event.clone());
    let payload = match serde_json::to_vec(&envelope) {
        Ok(p) => p,
        // Chain events hold only strings and integers; this cannot fail.
        Err(e) => format!("{{\"error\":\"{e}\"}}").into_bytes(),
    };
    Message {
        id: id.to_string(),
        key: event.key(),
        payload,
    }
}

impl Publisher {
    pub(crate) fn new(bus: SharedBus, shutdown: CancellationToken) -> Self {
        Publisher { bus, shutdown }
    }

    /// Publishes `event`, retrying with backoff (100 ms doubling to 5 s) until
    /// the bus acknowledges it or the gateway shuts down.
    pub(crate) async fn publish(&self, event: &ChainEvent) -> Result<(), ShuttingDown> {
        let message = message_for(event);
        let mut backoff = Duration::from_millis(100);
        loop {
            match self
                .bus
                .publish(topics::CHAIN_EVENTS, message.clone())
                .await
            {
                Ok(()) => {
                    tracing::debug!(id = %message.id, kind = event.kind(), key = %message.key, "chain event published");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(id = %message.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "publishing chain event failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(ShuttingDown),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    pub(crate) async fn publish_all(&self, events: &[ChainEvent]) -> Result<(), ShuttingDown> {
        for e in events {
            self.publish(e).await?;
        }
        Ok(())
    }
}
