//! The websocket protocol (docs/websocket.md): one connection subscribes to
//! pairs' indicative prices, asks for quotes, accepts them, and watches
//! swaps. A slow client misses price ticks; it never slows anyone else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use proto::api::{AcceptRequest, ClientMessage, ErrorCode, RfqRequest, ServerMessage};
use proto::SwapId;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::error::Failure;
use crate::limits::Caller;
use crate::partners::Partner;
use crate::service::{Frame, Service};

/// Largest client message accepted.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Frames queued for one client before price ticks are skipped.
const OUTBOUND_QUEUE: usize = 64;
const MAX_PAIRS: usize = 32;
const MAX_WATCHED_SWAPS: usize = 256;

pub(crate) async fn upgrade(
    State(service): State<Service>,
    caller: Option<Extension<Caller>>,
    ws: WebSocketUpgrade,
) -> Response {
    let partner = caller.and_then(|Extension(Caller(p))| p);
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection(service, partner, socket))
}

async fn connection(service: Service, partner: Option<Partner>, socket: WebSocket) {
    let limiter = service.limiters().ws_connection();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Frame>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink
                .send(Message::Text(frame.as_ref().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let watched: Arc<Mutex<BTreeSet<SwapId>>> = Arc::default();
    let swap_forwarder =
        spawn_swap_forwarder(service.subscribe_swaps(), watched.clone(), tx.clone());
    let mut price_tasks: BTreeMap<proto::Pair, JoinHandle<()>> = BTreeMap::new();

    while let Some(Ok(msg)) = stream.next().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) {
            if let Err(f) = crate::limits::check_ws(&limiter) {
                reply(&tx, error(None, f)).await;
                continue;
            }
        }
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Binary(_) => {
                reply(
                    &tx,
                    error(
                        None,
                        Failure::bad_request(
                            "binary frames are not part of the protocol; send JSON text",
                        ),
                    ),
                )
                .await;
                continue;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let parsed: ClientMessage = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                reply(
                    &tx,
                    error(
                        None,
                        Failure::bad_request(format!("unreadable message: {e}")),
                    ),
                )
                .await;
                continue;
            }
        };
        let answer = match parsed {
            ClientMessage::Ping { nonce } => Some(ServerMessage::Pong { nonce }),
            ClientMessage::Subscribe { pairs } => {
                let mut ok = Vec::new();
                let mut failure = None;
                for p in pairs {
                    match service.parse_pair(&p) {
                        Ok(pair) => {
                            if !price_tasks.contains_key(&pair) && price_tasks.len() >= MAX_PAIRS {
                                failure = Some(Failure::bad_request(format!(
                                    "at most {MAX_PAIRS} pairs per connection"
                                )));
                                break;
                            }
                            if let Some(rx) = service.subscribe_prices(&pair) {
                                price_tasks
                                    .entry(pair.clone())
                                    .or_insert_with(|| spawn_price_forwarder(rx, tx.clone()));
                                ok.push(pair);
                            }
                        }
                        Err(f) => {
                            failure = Some(f);
                            break;
                        }
                    }
                }
                match failure {
                    Some(f) => Some(error(None, f)),
                    None => Some(ServerMessage::Subscribed { pairs: ok }),
                }
            }
            ClientMessage::Unsubscribe { pairs } => {
                for p in pairs {
                    if let Ok(pair) = p.parse::<proto::Pair>() {
                        if let Some(h) = price_tasks.remove(&pair) {
                            h.abort();
                        }
                    }
                }
                Some(ServerMessage::Subscribed {
                    pairs: price_tasks.keys().cloned().collect(),
                })
            }
            ClientMessage::Rfq {
                request_id,
                from,
                to,
                amount,
                amount_side,
            } => {
                let req = RfqRequest {
                    from,
                    to,
                    amount,
                    amount_side,
                };
                Some(match service.rfq(&req, partner.as_ref()).await {
                    Ok(quote) => ServerMessage::Quote { request_id, quote },
                    Err(f) => error(request_id, f),
                })
            }
            ClientMessage::Accept {
                request_id,
                quote_id,
                payout_address,
                refund_address,
                idempotency_key,
            } => {
                let req = AcceptRequest {
                    quote_id,
                    payout_address,
                    refund_address,
                    idempotency_key,
                };
                Some(match service.accept(&req, partner.as_ref()).await {
                    Ok((_, swap)) => {
                        if let Ok(mut w) = watched.lock() {
                            if w.len() < MAX_WATCHED_SWAPS {
                                w.insert(swap.swap_id);
                            }
                        }
                        ServerMessage::Swap { request_id, swap }
                    }
                    Err(f) => error(request_id, f),
                })
            }
            ClientMessage::WatchSwaps { swap_ids } if swap_ids.is_empty() => Some(error(
                None,
                Failure::bad_request("watch_swaps needs at least one swap id"),
            )),
            ClientMessage::WatchSwaps { swap_ids } => {
                let mut first_error = None;
                for id in swap_ids {
                    match service.swap(&id).await {
                        Ok(view) => {
                            let full = match watched.lock() {
                                Ok(mut w)
                                    if w.len() < MAX_WATCHED_SWAPS || w.contains(&view.swap_id) =>
                                {
                                    w.insert(view.swap_id);
                                    false
                                }
                                _ => true,
                            };
                            if full {
                                first_error.get_or_insert(Failure::bad_request(format!(
                                    "at most {MAX_WATCHED_SWAPS} swaps per connection"
                                )));
                                break;
                            }
                            reply(&tx, ServerMessage::SwapStatus { swap: view }).await;
                        }
                        Err(f) => {
                            first_error.get_or_insert(f);
                        }
                    }
                }
                first_error.map(|f| error(None, f))
            }
        };
        if let Some(answer) = answer {
            reply(&tx, answer).await;
        }
    }

    for (_, h) in price_tasks {
        h.abort();
    }
    swap_forwarder.abort();
    drop(tx);
    let _ = writer.await;
}

fn error(request_id: Option<String>, f: Failure) -> ServerMessage {
    ServerMessage::Error {
        request_id,
        code: f.error.code,
        message: f.error.message,
    }
}

/// Answers to the client's own requests wait for queue space (the client
/// asked for them); ticks do not.
async fn reply(tx: &mpsc::Sender<Frame>, msg: ServerMessage) {
    let text = serde_json::to_string(&msg).unwrap_or_else(|_| {
        serde_json::to_string(&error(
            None,
            Failure::new(ErrorCode::Internal, "could not encode the answer"),
        ))
        .unwrap_or_default()
    });
    let _ = tx.send(Frame::from(text)).await;
}

fn spawn_price_forwarder(
    mut rx: broadcast::Receiver<Frame>,
    tx: mpsc::Sender<Frame>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                // Full queue: this client is slow; skip the tick.
                Ok(frame) => {
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(frame) {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

fn spawn_swap_forwarder(
    mut rx: broadcast::Receiver<(SwapId, Frame)>,
    watched: Arc<Mutex<BTreeSet<SwapId>>>,
    tx: mpsc::Sender<Frame>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok((id, frame)) => {
                    let wanted = watched.lock().map(|w| w.contains(&id)).unwrap_or(false);
                    // Status changes are not skipped: wait for queue space.
                    if wanted && tx.send(frame).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "websocket client lagged on swap events");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}
