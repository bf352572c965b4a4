//! A client that floods requests and never reads its answers fills its
//! own queue and socket; the gateway blocks only that connection. Another
//! client subscribed to the same pair keeps getting its price ticks on time
//! and its answers at once.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use proto::api::ServerMessage;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_delay_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let url = format!("ws://{}/v1/ws", engine.gateway_addr);
    let subscribe = json!({"type": "subscribe", "pairs": ["BTC/ETH"]}).to_string();

    // The slow client: subscribes, then only writes. Every frame gets an
    // answer (a pong or a rate_limited error) that it never reads, so its
    // socket buffers and its queue on the server fill up.
    let (slow, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut slow_sink, slow_stream) = slow.split();
    slow_sink
        .send(Message::Text(subscribe.clone().into()))
        .await
        .unwrap();
    let flood = tokio::spawn(async move {
        let ping = json!({"type": "ping", "nonce": "x".repeat(1000)}).to_string();
        let until = Instant::now() + Duration::from_secs(6);
        let mut sent = 0u64;
        while Instant::now() < until {
            // The server stops reading this connection once its answers
            // back up: a send that does not complete is the proof.
            match tokio::time::timeout(
                Duration::from_millis(200),
                slow_sink.send(Message::Text(ping.clone().into())),
            )
            .await
            {
                Ok(Ok(())) => sent += 1,
                Ok(Err(_)) => break,
                Err(_) => return (sent, true),
            }
        }
        (sent, false)
    });

    // The fast client, at the same time.
    let (mut fast, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    fast.send(Message::Text(subscribe.into())).await.unwrap();
    let start = Instant::now();
    let mut last_tick = None::<Instant>;
    let mut ticks = 0;
    let mut worst_gap = Duration::ZERO;
    let mut ping_sent = None::<Instant>;
    let mut pong_latency = None;
    while start.elapsed() < Duration::from_secs(8) {
        if ping_sent.is_none() && start.elapsed() > Duration::from_secs(5) {
            fast.send(Message::Text(
                json!({"type": "ping", "nonce": "fast"}).to_string().into(),
            ))
            .await
            .unwrap();
            ping_sent = Some(Instant::now());
        }
        let msg = tokio::time::timeout(Duration::from_secs(3), fast.next())
            .await
            .expect("the fast client waited 3 s for anything")
            .unwrap()
            .unwrap();
        let Message::Text(text) = msg else { continue };
        match serde_json::from_str::<ServerMessage>(&text).unwrap() {
            ServerMessage::Prices(_) => {
                let now = Instant::now();
                if let Some(prev) = last_tick {
                    worst_gap = worst_gap.max(now - prev);
                }
                last_tick = Some(now);
                ticks += 1;
            }
            ServerMessage::Pong { nonce } if nonce.as_deref() == Some("fast") => {
                pong_latency = ping_sent.map(|t| t.elapsed());
            }
            _ => {}
        }
    }
    let (sent, blocked) = flood.await.unwrap();
    println!(
        "slow client: {sent} frames sent, blocked: {blocked}; fast client: {ticks} ticks, worst gap {worst_gap:?}, pong in {pong_latency:?}"
    );
    assert!(
        blocked,
        "the slow client never backed up ({sent} frames): the test proves nothing"
    );
    // Ticks every 250 ms: 8 s gives about 32.
    assert!(ticks >= 20, "{ticks} ticks");
    assert!(worst_gap < Duration::from_millis(1500), "{worst_gap:?}");
    assert!(
        pong_latency.is_some_and(|l| l < Duration::from_secs(1)),
        "{pong_latency:?}"
    );
    drop(slow_stream);
    engine.stop().await;
}
