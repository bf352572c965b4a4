//! The gateway's limits from outside: anonymous requests rate-limited per
//! client IP (429 with Retry-After) while a partner's key has its own
//! budget, bodies over the limit refused with a typed 413, websocket
//! messages rate-limited per connection with a typed error, and CORS for
//! the configured origins only.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use proto::api::ServerMessage;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_sizes_and_origins_are_limited_with_typed_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine_with(dir.path(), |cfg| {
        cfg.gateway_limits = gateway::Limits {
            anonymous_per_ip: gateway::Rate {
                per_second: 1,
                burst: 3,
            },
            per_partner: gateway::Rate {
                per_second: 100,
                burst: 100,
            },
            ws_messages: gateway::Rate {
                per_second: 1,
                burst: 2,
            },
            cors_origins: vec!["https://wallet.example".into()],
        };
    })
    .await;
    let base = format!("http://{}", engine.gateway_addr);
    let http = reqwest::Client::new();
    let partners = gateway::Partners::open(engine.gateway_deps.db.clone())
        .await
        .unwrap();
    let key = partners
        .create(gateway::NewPartner {
            name: "Limits".into(),
            fee_bps: 0,
            webhook_url: None,
        })
        .await
        .unwrap()
        .api_key;

    // Anonymous: a burst of 3, then 429 with the wait.
    for _ in 0..3 {
        let r = http.get(format!("{base}/v1/pairs")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http.get(format!("{base}/v1/pairs")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    // The partner's key has its own budget.
    for _ in 0..10 {
        let r = http
            .get(format!("{base}/v1/pairs"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // After the wait, anonymous requests pass again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = http.get(format!("{base}/v1/pairs")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A body over the limit: 413, typed.
    let big = json!({"from": "BTC", "to": "ETH", "amount": "1".repeat(100 * 1024)});
    let r = http
        .post(format!("{base}/v1/quotes"))
        .header("x-api-key", &key)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large", "{body}");

    // CORS: the configured origin may call with its key; another may not.
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}/v1/quotes"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-api-key")
            .send()
    };
    let r = preflight("https://wallet.example").await.unwrap();
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://wallet.example")
    );
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-api-key"), "{allowed}");
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Websocket: two messages at once, the third is refused with a typed
    // error, and the connection goes on.
    let mut req = format!("ws://{}/v1/ws", engine.gateway_addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("x-api-key", key.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    for n in 0..3 {
        let ping = json!({"type": "ping", "nonce": n.to_string()});
        ws.send(Message::Text(ping.to_string().into()))
            .await
            .unwrap();
    }
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("ok");
        let Message::Text(text) = msg else { continue };
        answers.push(serde_json::from_str::<ServerMessage>(&text).unwrap());
    }
    assert!(matches!(&answers[0], ServerMessage::Pong { nonce } if nonce.as_deref() == Some("0")));
    assert!(matches!(&answers[1], ServerMessage::Pong { nonce } if nonce.as_deref() == Some("1")));
    match &answers[2] {
        ServerMessage::Error { code, .. } => {
            assert_eq!(serde_json::to_value(code).unwrap(), "rate_limited")
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.send(Message::Text(
        json!({"type": "ping", "nonce": "later"}).to_string().into(),
    ))
    .await
    .unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("ok");
        let Message::Text(text) = msg else { continue };
        match serde_json::from_str::<ServerMessage>(&text).unwrap() {
            ServerMessage::Pong { nonce } => {
                assert_eq!(nonce.as_deref(), Some("later"));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    engine.stop().await;
}
