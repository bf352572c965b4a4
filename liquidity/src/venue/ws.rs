//! The connection loop every websocket venue shares: connect, subscribe,
//! read with an idle timeout, hand each frame to the venue's protocol
//! (Kraken, Coinbase), publish the books it produces stamped with the time
//! of receipt, and on any loss reconnect after an exponential backoff with
//! jitter, capped. The protocols themselves are pure: text in, actions out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use proto::{Pair, Timestamp};
use rand::Rng;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::venue::{Book, BookReceiver, VenueFeed, VenueHealth, VenueStatus};

/// A frame a venue sent that the adapter could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed {venue} message: {reason}")]
    Malformed { venue: &'static str, reason: String },
    #[error("{venue} sent {field} {text:?}, not a plain non-negative decimal")]
    BadNumber {
        venue: &'static str,
        field: &'static str,
        text: String,
    },
}

/// What a protocol asks the connection to do after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A market's book changed: publish it.
    Publish(Book),
    /// A market's book can no longer be trusted: withdraw it from pricing
    /// until a new snapshot arrives.
    Drop(Pair),
    /// Send a frame (a subscription, a resubscription).
    Send(String),
    /// The protocol dropped and resubscribed a book (checksum mismatch,
    /// sequence gap); counted for the desk.
    Resync { reason: String },
    /// The venue's sequence number of this frame.
    Sequence(u64),
    /// The venue's own time of this frame, for latency.
    VenueTime(Timestamp),
    /// Something the desk should know; the connection carries on.
    Problem(String),
}

/// A venue's wire protocol: which frames to send on connect and what each
/// received frame means. No I/O, no clock: `now` is the time of receipt.
pub trait Protocol: Send + 'static {
    /// The venue's name, e.g. `kraken`.
    fn venue(&self) -> &str;

    /// The markets the protocol subscribes to.
    fn markets(&self) -> Vec<Pair>;

    /// Frames to send once connected. Forgets every book of an earlier
    /// connection.
    fn on_connect(&mut self) -> Vec<String>;

    /// Handles one text frame received at `now`.
    fn on_text(&mut self, text: &str, now: Timestamp) -> Vec<Action>;
}

/// How a websocket venue connects and when it gives up on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    pub url: String,
    /// The first wait before reconnecting; doubled on each failure in a row.
    pub backoff_initial: Duration,
    /// The longest wait before reconnecting.
    pub backoff_max: Duration,
    /// No frame at all (heartbeats included) for this long: reconnect.
    pub idle_timeout: Duration,
    /// Opening the connection (TCP, TLS, upgrade) may take this long.
    pub connect_timeout: Duration,
}

impl ConnectionConfig {
    /// Waits from 0.5 s up to 30 s; both Kraken and Coinbase send a
    /// heartbeat every second, so 10 s of silence means the connection is
    /// dead.
    pub fn new(url: &str) -> Self {
        ConnectionConfig {
            url: url.to_owned(),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The wait before reconnect attempt `attempt` (0 for the first): the
/// capped exponential `min(max, initial * 2^attempt)`, of which the upper
/// half is scaled by `jitter` in `[0, 1)` ("equal jitter"), so that many
/// clients that lost the same venue do not return in step.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
    let capped = initial.saturating_mul(factor).min(max);
    let half = capped / 2;
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    half + half.mul_f64(jitter)
}

/// A venue reached over a websocket: a [`VenueFeed`] whose books come
/// from a [`Protocol`] run by a connection task.
#[derive(Debug)]
pub struct WsVenue {
    name: String,
    books: BTreeMap<Pair, watch::Sender<Option<Arc<Book>>>>,
    status: Mutex<VenueStatus>,
}

enum SessionEnd {
    Shutdown,
    Lost { reason: String, heard: bool },
}

impl WsVenue {
    /// Starts the connection task of `protocol` until `shutdown`.
    pub fn start<P: Protocol>(
        protocol: P,
        cfg: ConnectionConfig,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let name = protocol.venue().to_owned();
        let books = protocol
            .markets()
            .into_iter()
            .map(|m| (m, watch::channel(None).0))
            .collect();
        let venue = Arc::new(WsVenue {
            status: Mutex::new(VenueStatus {
                venue: name.clone(),
                ..VenueStatus::default()
            }),
            name,
            books,
        });
        let this = Arc::clone(&venue);
        tokio::spawn(async move { this.run(protocol, cfg, clock, shutdown).await });
        venue
    }

    fn status_mut(&self) -> MutexGuard<'_, VenueStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run<P: Protocol>(
        self: Arc<Self>,
        mut protocol: P,
        cfg: ConnectionConfig,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) {
        let mut attempt = 0u32;
        loop {
            let end = tokio::select! {
                _ = shutdown.cancelled() => SessionEnd::Shutdown,
                end = self.session(&mut protocol, &cfg, clock.as_ref(), &shutdown) => end,
            };
            let (reason, heard) = match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost { reason, heard } => (reason, heard),
            };
            if heard {
                attempt = 0;
            }
            let wait = backoff_delay(
                attempt,
                cfg.backoff_initial,
                cfg.backoff_max,
                rand::thread_rng().gen(),
            );
            attempt = attempt.saturating_add(1);
            tracing::warn!(venue = %self.name, %reason, wait_ms = wait.as_millis() as u64, "venue connection lost, reconnecting");
            {
                let mut st = self.status_mut();
                st.connected = false;
                st.last_error = Some(reason);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            self.status_mut().reconnects += 1;
        }
        self.status_mut().connected = false;
        tracing::debug!(venue = %self.name, "venue connection stopped");
    }

    async fn session<P: Protocol>(
        &self,
        protocol: &mut P,
        cfg: &ConnectionConfig,
        clock: &dyn Clock,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let lost = |reason: String, heard: bool| SessionEnd::Lost { reason, heard };
        let connect = tokio_tungstenite::connect_async(cfg.url.as_str());
        let mut ws = match tokio::time::timeout(cfg.connect_timeout, connect).await {
            Err(_) => return lost(format!("connecting to {} timed out", cfg.url), false),
            Ok(Err(e)) => return lost(format!("connecting to {}: {e}", cfg.url), false),
            Ok(Ok((ws, _response))) => ws,
        };
        for frame in protocol.on_connect() {
            if let Err(e) = ws.send(Message::text(frame)).await {
                return lost(format!("subscribing: {e}"), false);
            }
        }
        self.status_mut().connected = true;
        tracing::info!(venue = %self.name, url = %cfg.url, "venue connected");
        let mut heard = false;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = ws.close(None).await;
                    return SessionEnd::Shutdown;
                }
                next = tokio::time::timeout(cfg.idle_timeout, ws.next()) => next,
            };
            let msg = match next {
                Err(_) => {
                    return lost(
                        format!("no message for {} ms", cfg.idle_timeout.as_millis()),
                        heard,
                    )
                }
                Ok(None) => return lost("the venue ended the stream".into(), heard),
                Ok(Some(Err(e))) => return lost(format!("websocket error: {e}"), heard),
                Ok(Some(Ok(msg))) => msg,
            };
            heard = true;
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(frame) => {
                    return lost(format!("closed by the venue: {frame:?}"), heard);
                }
                // Pings are answered by the websocket layer; binary frames
                // are not part of either protocol.
                _ => continue,
            };
            let now = clock.now();
            for action in protocol.on_text(text.as_str(), now) {
                if let Action::Send(frame) = action {
                    if let Err(e) = ws.send(Message::text(frame)).await {
                        return lost(format!("sending: {e}"), heard);
                    }
                } else {
                    self.apply(action, now);
                }
            }
        }
    }

    fn apply(&self, action: Action, now: Timestamp) {
        match action {
            Action::Publish(book) => {
                if let Some(tx) = self.books.get(&book.market) {
                    self.status_mut().last_update_at = Some(now);
                    tx.send_replace(Some(Arc::new(book)));
                }
            }
            Action::Drop(market) => {
                if let Some(tx) = self.books.get(&market) {
                    tx.send_replace(None);
                }
            }
            Action::Resync { reason } => {
                tracing::warn!(venue = %self.name, %reason, "book resync");
                let mut st = self.status_mut();
                st.resyncs += 1;
                st.last_error = Some(reason);
            }
            Action::Sequence(seq) => self.status_mut().last_sequence = Some(seq),
            Action::VenueTime(at) => {
                self.status_mut().latency_ms =
                    Some(now.signed_duration_since(at).num_milliseconds().max(0));
            }
            Action::Problem(reason) => {
                tracing::warn!(venue = %self.name, %reason, "venue problem");
                self.status_mut().last_error = Some(reason);
            }
            Action::Send(_) => {}
        }
    }
}

impl VenueFeed for WsVenue {
    fn name(&self) -> &str {
        &self.name
    }

    fn markets(&self) -> Vec<Pair> {
        self.books.keys().cloned().collect()
    }

    fn subscribe(&self, market: &Pair) -> Option<BookReceiver> {
        self.books.get(market).map(|tx| tx.subscribe())
    }

    fn health(&self) -> VenueHealth {
        let st = self.status_mut();
        if st.connected {
            VenueHealth::Up
        } else {
            VenueHealth::Down {
                reason: st
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not connected yet".into()),
            }
        }
    }

    fn status(&self) -> VenueStatus {
        self.status_mut().clone()
    }
}

/// Parses a price or size as the venue wrote it (a JSON number or a
/// string), keeping its exact digits and scale.
pub(crate) fn wire_decimal(
    venue: &'static str,
    field: &'static str,
    raw: &str,
) -> Result<rust_decimal::Decimal, WireError> {
    let text = raw.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let bad = || WireError::BadNumber {
        venue,
        field,
        text: text.to_owned(),
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    text.parse::<rust_decimal::Decimal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_in_the_upper_half() {
        let (i, m) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(backoff_delay(0, i, m, 0.0), Duration::from_millis(250));
        assert!(backoff_delay(0, i, m, 0.999) < Duration::from_millis(500));
        assert_eq!(backoff_delay(1, i, m, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(3, i, m, 0.5), Duration::from_secs(3));
        for attempt in [6, 7, 30, u32::MAX] {
            let d = backoff_delay(attempt, i, m, 0.0);
            assert_eq!(d, Duration::from_secs(15), "attempt {attempt}");
            assert!(backoff_delay(attempt, i, m, 1.0) <= m);
        }
        assert_eq!(backoff_delay(2, i, m, f64::NAN), Duration::from_secs(1));
    }

    #[test]
    fn wire_decimals_keep_their_scale_and_refuse_anything_else() {
        let ok = |s: &str| wire_decimal("test", "price", s).unwrap().to_string();
        assert_eq!(ok("45281.0"), "45281.0");
        assert_eq!(ok("\"0.00100000\""), "0.00100000");
        for bad in ["-1", "1e5", "", "\"\"", "abc", "null", "1.2.3"] {
            assert!(wire_decimal("test", "price", bad).is_err(), "{bad}");
        }
    }
}
