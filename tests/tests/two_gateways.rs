//! Two gateway instances on one database and one bus (the embedded
//! engine's SQLite and its `LocalBus`): a client accepts a swap on A, drops
//! the connection, reconnects to B and follows the swap there to
//! `completed`; B serves the swap over REST too, and a retried accept on B
//! is the same swap. Neither instance holds state of its own about swaps:
//! B learns every status change from `swap-events` under its own consumer
//! group.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_accepted_on_one_gateway_is_followed_to_completion_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let a = engine.gateway_addr;
    let b = gateway::run(
        gateway::GatewayConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            instance_id: "gateway-b".into(),
            ..engine.gateway_config.clone()
        },
        engine.gateway_deps.clone(),
        engine.shutdown.clone(),
        &engine.tracker,
    )
    .await
    .expect("second gateway starts");
    assert_ne!(a, b);

    // On A: quote and accept, then the connection drops.
    let (mut ws_a, _) = tokio_tungstenite::connect_async(format!("ws://{a}/v1/ws"))
        .await
        .unwrap();
    send(
        &mut ws_a,
        json!({"type": "rfq", "request_id": "q", "from": "BTC", "to": "ETH", "amount": "0.004"}),
    )
    .await;
    let quote = next_matching(&mut ws_a, |m| match m {
        ServerMessage::Quote { quote, .. } => Some(quote),
        ServerMessage::Error { message, .. } => panic!("{message}"),
        _ => None,
    })
    .await;
    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    let accept = json!({"type": "accept", "request_id": "a", "quote_id": quote.quote_id.to_string(),
                        "payout_address": payout, "idempotency_key": "two-gateways-1"});
    send(&mut ws_a, accept.clone()).await;
    let swap = next_matching(&mut ws_a, |m| match m {
        ServerMessage::Swap { swap, .. } => Some(swap),
        ServerMessage::Error { message, .. } => panic!("{message}"),
        _ => None,
    })
    .await;
    ws_a.close(None).await.unwrap();
    drop(ws_a);

    // B serves the swap over REST ...
    let http = reqwest::Client::new();
    let view: Value = http
        .get(format!("http://{b}/v1/swaps/{}", swap.swap_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "awaiting_deposit");
    assert_eq!(view["deposit"]["address"], swap.deposit.address.as_str());

    // ... and over its websocket: the client reconnects there and watches.
    let (mut ws_b, _) = tokio_tungstenite::connect_async(format!("ws://{b}/v1/ws"))
        .await
        .unwrap();
    send(
        &mut ws_b,
        json!({"type": "watch_swaps", "swap_ids": [swap.swap_id.to_string()]}),
    )
    .await;
    let now = next_matching(&mut ws_b, |m| match m {
        ServerMessage::SwapStatus { swap: s } if s.swap_id == swap.swap_id => Some(s),
        _ => None,
    })
    .await;
    assert_eq!(now.status, SwapStatus::AwaitingDeposit);

    // The deposit is paid; B's client sees every change.
    btc_rpc(
        &engine.bitcoin_rpc_url,
        "sendtoaddress",
        json!([swap.deposit.address, swap.deposit.amount]),
    )
    .await;
    let miner = btc_rpc(&engine.bitcoin_rpc_url, "getnewaddress", json!([])).await;
    let mut statuses = vec![];
    loop {
        let s = next_matching(&mut ws_b, |m| match m {
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
            break;
        }
    }
    // B replays the swap's history from the start of its consumer group,
    // so its opening status may come again before the new ones.
    statuses.retain(|s| *s != SwapStatus::AwaitingDeposit);
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

    // The client retries its accept on B: the same swap, now completed.
    send(&mut ws_b, accept).await;
    let again = next_matching(&mut ws_b, |m| match m {
        ServerMessage::Swap { swap, .. } => Some(swap),
        _ => None,
    })
    .await;
    assert_eq!(again.swap_id, swap.swap_id);
    assert_eq!(again.status, SwapStatus::Completed);
    engine.stop().await;
}
