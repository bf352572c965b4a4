//! New Ethereum heads by websocket: an `eth_subscribe` `newHeads`
//! subscription on a node's websocket endpoint. A notification only wakes
//! the follower, which then connects every block from its cursor up to the
//! node's head over JSON-RPC; every (re)connection wakes it too. So a
//! connection that drops silently, or a notification that never comes,
//! costs latency (the follower still polls), never a block. `ws://` and
//! `wss://` (rustls, Mozilla's roots from `webpki-roots`; a node with a
//! private CA is reached through a TLS-terminating proxy or over `ws://`).
//!
//! Bitcoin has no push trigger here: Bitcoin Core's ZMQ `hashblock` /
//! `rawtx` notifications would be one (optional, never the only source, as
//! ZMQ drops messages silently), but the follower polls at its
//! `poll_interval`, which a ZMQ wake-up could shorten exactly as `newHeads`
//! does for Ethereum.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A subscription that ends when no message arrived for this long (nodes
/// produce a head every few seconds; dev nodes may be idle, which only costs
/// a reconnect).
const IDLE_RECONNECT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
enum HeadsError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the node refused eth_subscribe newHeads: {0}")]
    Refused(String),
    #[error("no message for {} s", IDLE_RECONNECT.as_secs())]
    Idle,
}

/// Keeps a `newHeads` subscription on `url` until `shutdown`, reconnecting
/// with backoff (100 ms doubling to 10 s), waking `wake` on each head and
/// each new subscription.
pub(crate) async fn follow_new_heads(url: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let span = tracing::info_span!("node_gateway.new_heads", %url);
    tracing::Instrument::instrument(
        async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let mut subscribed = false;
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = session(&url, &wake, &mut subscribed) => r,
                };
                match result {
                    Ok(()) => tracing::info!("websocket closed by the node; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "new-heads subscription failed; polling meanwhile"),
                }
                if subscribed {
                    backoff = Duration::from_millis(100);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        },
        span,
    )
    .await
}

async fn session(url: &str, wake: &Notify, subscribed: &mut bool) -> Result<(), HeadsError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let request = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_subscribe",
        "params": ["newHeads"],
    });
    ws.send(Message::Text(request.to_string().into())).await?;
    let mut subscription: Option<String> = None;
    loop {
        let next = tokio::time::timeout(IDLE_RECONNECT, ws.next())
            .await
            .map_err(|_| HeadsError::Idle)?;
        let Some(message) = next else {
            return Ok(());
        };
        let text = match message? {
            Message::Text(t) => t,
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            tracing::debug!("unreadable websocket message ignored");
            continue;
        };
        match parse(&v) {
            Reply::Subscribed(id) => {
                tracing::info!(subscription = %id, "subscribed to new heads");
                subscription = Some(id);
                *subscribed = true;
                // Backfill whatever came while not subscribed.
                wake.notify_one();
            }
            Reply::Refused(reason) => return Err(HeadsError::Refused(reason)),
            Reply::Head(id) if subscription.as_deref() == Some(id.as_str()) => {
                wake.notify_one();
            }
            Reply::Head(_) | Reply::Other => {}
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// The answer to our `eth_subscribe` (id 1): the subscription id.
    Subscribed(String),
    Refused(String),
    /// An `eth_subscription` notification of the given subscription.
    Head(String),
    Other,
}

fn parse(v: &Value) -> Reply {
    if v.get("id").and_then(Value::as_u64) == Some(1) {
        if let Some(id) = v.get("result").and_then(Value::as_str) {
            return Reply::Subscribed(id.to_owned());
        }
        let reason = v
            .get("error")
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no result".into());
        return Reply::Refused(reason);
    }
    if v.get("method").and_then(Value::as_str) == Some("eth_subscription") {
        if let Some(id) = v
            .get("params")
            .and_then(|p| p.get("subscription"))
            .and_then(Value::as_str)
        {
            return Reply::Head(id.to_owned());
        }
    }
    Reply::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wss://` is spoken with TLS: a server that answers the handshake
    /// with plain text fails in TLS, not with "TLS not enabled".
    #[tokio::test]
    async fn wss_urls_are_dialled_with_tls() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let err = tokio_tungstenite::connect_async(format!("wss://localhost:{port}"))
            .await
            .map(|_| ())
            .unwrap_err();
        // rustls refuses the reply as a TLS record (not a TLS handshake);
        // without TLS the error would be `Url(TlsFeatureNotEnabled)`.
        assert!(
            matches!(&err, tokio_tungstenite::tungstenite::Error::Io(e)
                if e.kind() == std::io::ErrorKind::InvalidData
                    && format!("{e:?}").contains("InvalidContentType")),
            "{err:?}"
        );
    }

    #[test]
    fn reads_subscription_answers_and_notifications() {
        let cases = [
            (
                json!({"jsonrpc":"2.0","id":1,"result":"0xcd0c3e8af590364c09d0fa6a1210faf5"}),
                Reply::Subscribed("0xcd0c3e8af590364c09d0fa6a1210faf5".into()),
            ),
            (
                json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}),
                Reply::Refused(r#"{"code":-32601,"message":"no"}"#.into()),
            ),
            (
                json!({"jsonrpc":"2.0","method":"eth_subscription","params":{
                    "subscription":"0xabc","result":{"number":"0x1b4","hash":"0x00"}}}),
                Reply::Head("0xabc".into()),
            ),
            (json!({"jsonrpc":"2.0","id":7,"result":true}), Reply::Other),
        ];
        for (v, want) in cases {
            assert_eq!(parse(&v), want, "{v}");
        }
    }
}
