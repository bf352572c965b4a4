//! A wallet app on the websocket: subscribe to prices, ask for a quote,
//! accept it, pay the deposit on the simulated chain, and receive every
//! status change up to `completed`. Bad messages get typed errors and the
//! connection stays usable.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use proto::api::{ServerMessage, SwapStatus};
use serde_json::{json, Value};
use tests::btc_rpc;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next server message that `pick` accepts, skipping others (price ticks).
async fn next_matching<T>(ws: &mut Ws, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("timed out waiting for a server message")
            .expect("connection closed")
            .expect("websocket error");
        let Message::Text(text) = msg else { continue };
        let parsed: ServerMessage =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if let Some(t) = pick(parsed) {
            return t;
        }
    }
}

#[tokio::test]
async fn websocket_client_swaps_btc_for_eth_and_sees_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", engine.gateway_addr))
            .await
            .unwrap();

    // Garbage and protocol errors are answered, and the connection lives on.
    ws.send(Message::Text("not json".into())).await.unwrap();
    let (code, message) = next_matching(&mut ws, |m| match m {
        ServerMessage::Error { code, message, .. } => Some((code, message)),
        _ => None,
    })
    .await;
    assert_eq!(serde_json::to_value(code).unwrap(), "bad_request");
    assert!(message.contains("unreadable message"), "{message}");
    send(&mut ws, json!({"type": "subscribe", "pairs": ["BTC/DOGE"]})).await;
    let code = next_matching(&mut ws, |m| match m {
        ServerMessage::Error { code, .. } => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(serde_json::to_value(code).unwrap(), "unsupported_pair");
    send(&mut ws, json!({"type": "rfq", "request_id": "bad", "from": "BTC", "to": "ETH", "amount": "0.123456789"})).await;
    let (rid, code) = next_matching(&mut ws, |m| match m {
        ServerMessage::Error {
            request_id, code, ..
        } => Some((request_id, code)),
        _ => None,
    })
    .await;
    assert_eq!(rid.as_deref(), Some("bad"));
    assert_eq!(serde_json::to_value(code).unwrap(), "invalid_amount");

    // Live indicative prices.
    send(&mut ws, json!({"type": "subscribe", "pairs": ["BTC/ETH"]})).await;
    next_matching(&mut ws, |m| {
        matches!(m, ServerMessage::Subscribed { .. }).then_some(())
    })
    .await;
    let prices = next_matching(&mut ws, |m| match m {
        ServerMessage::Prices(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(prices.pair.to_string(), "BTC/ETH");
    assert!(!prices.rungs.is_empty());

    // RFQ → quote → accept → swap.
    send(
        &mut ws,
        json!({"type": "rfq", "request_id": "r1", "from": "BTC", "to": "ETH", "amount": "0.005"}),
    )
    .await;
    let quote = next_matching(&mut ws, |m| match m {
        ServerMessage::Quote { request_id, quote } if request_id.as_deref() == Some("r1") => {
            Some(quote)
        }
        _ => None,
    })
    .await;
    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    send(
        &mut ws,
        json!({"type": "accept", "request_id": "r2", "quote_id": quote.quote_id.to_string(),
               "payout_address": payout, "idempotency_key": "ws-1"}),
    )
    .await;
    let swap = next_matching(&mut ws, |m| match m {
        ServerMessage::Swap { request_id, swap } if request_id.as_deref() == Some("r2") => {
            Some(swap)
        }
        _ => None,
    })
    .await;
    assert_eq!(swap.status, SwapStatus::AwaitingDeposit);
    assert!(swap
        .deposit
        .payment_uri
        .starts_with(&format!("bitcoin:{}?amount=0.005", swap.deposit.address)));

    // The user's wallet pays; blocks come; every status arrives in order.
    let amount = &swap.deposit.amount;
    btc_rpc(
        &engine.bitcoin_rpc_url,
        "sendtoaddress",
        json!([swap.deposit.address, amount]),
    )
    .await;
    let miner = btc_rpc(&engine.bitcoin_rpc_url, "getnewaddress", json!([])).await;
    let mut statuses = vec![];
    loop {
        let s = next_matching(&mut ws, |m| match m {
            ServerMessage::SwapStatus { swap: s } if s.swap_id == swap.swap_id => Some(s),
            _ => None,
        })
        .await;
        if statuses.last() != Some(&s.status) {
            statuses.push(s.status);
        }
        if s.status == SwapStatus::DepositSeen {
            btc_rpc(
                &engine.bitcoin_rpc_url,
                "generatetoaddress",
                json!([1, miner]),
            )
            .await;
        }
        if s.status.is_terminal() {
            assert_eq!(s.payout.and_then(|p| p.txid).map(|t| t.len()), Some(66));
            break;
        }
    }
    // The opening status may be published before the connection starts
    // watching the new swap (the accept answer carried it already).
    statuses.retain(|s| *s != SwapStatus::AwaitingDeposit);
    // 0.005 BTC needs one confirmation under the embedded policy.
    assert_eq!(
        statuses,
        vec![
            SwapStatus::DepositSeen,
            SwapStatus::Executing,
            SwapStatus::PayoutPending,
            SwapStatus::PayoutBroadcast,
            SwapStatus::Completed
        ]
    );

    // A retried accept with the same key is the same swap.
    send(
        &mut ws,
        json!({"type": "accept", "request_id": "r3", "quote_id": quote.quote_id.to_string(),
               "payout_address": payout, "idempotency_key": "ws-1"}),
    )
    .await;
    let again = next_matching(&mut ws, |m| match m {
        ServerMessage::Swap { request_id, swap } if request_id.as_deref() == Some("r3") => {
            Some(swap)
        }
        _ => None,
    })
    .await;
    assert_eq!(again.swap_id, swap.swap_id);
    assert_eq!(again.status, SwapStatus::Completed);
    engine.stop().await;
}
