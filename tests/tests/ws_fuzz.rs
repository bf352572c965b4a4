//! 1,000,000 random and mutated client frames on one websocket connection:
//! the server never panics or drops the connection, and answers every frame
//! with exactly one typed message (an `error` with a known code, or the
//! reply the protocol gives for a valid request), in order.
//!
//! Frames come from a seeded generator (the seed is printed on failure):
//! random bytes, valid messages with bytes flipped, inserted or cut, valid
//! messages with fields of the wrong type or missing or unknown, and deep or
//! long JSON — all under the 16 KiB frame limit.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use proto::api::ServerMessage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const FRAMES: usize = 1_000_000;
const SEED: u64 = 0x5eed_f022;
const MAX_FRAME: usize = 16 * 1024;

fn templates() -> Vec<Value> {
    vec![
        json!({"type": "subscribe", "pairs": ["BTC/ETH"]}),
        json!({"type": "unsubscribe", "pairs": ["BTC/ETH"]}),
        json!({"type": "rfq", "request_id": "r", "from": "BTC", "to": "ETH", "amount": "0.01"}),
        json!({"type": "rfq", "from": "BTC", "to": "ETH", "amount": "0.3", "amount_side": "to"}),
        json!({"type": "accept", "request_id": "a", "quote_id": "01900000-0000-7000-8000-000000000001",
               "payout_address": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
               "refund_address": "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw",
               "idempotency_key": "k"}),
        json!({"type": "watch_swaps", "swap_ids": ["01900000-0000-7000-8000-000000000002"]}),
        json!({"type": "ping", "nonce": "7"}),
    ]
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 3 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e30),
        4 => {
            let len = rng.gen_range(0..40);
            Value::String((0..len).map(|_| rng.gen::<char>()).collect())
        }
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(
                    format!("f{}", rng.gen_range(0..10)),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// One fuzz frame (valid UTF-8: text frames must be).
fn frame(rng: &mut StdRng, templates: &[Value]) -> String {
    let base = templates[rng.gen_range(0..templates.len())].clone();
    let text = match rng.gen_range(0..10) {
        // Random bytes.
        0 | 1 => {
            let len = rng.gen_range(0..200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // Byte-level mutations of a valid message.
        2..=4 => {
            let mut bytes = base.to_string().into_bytes();
            for _ in 0..rng.gen_range(1..6) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..4) {
                    0 => bytes[at] = rng.gen(),
                    1 => {
                        bytes.remove(at);
                    }
                    2 => {
                        let alphabet = b"{}[]\",:0\\ ";
                        bytes.insert(at, alphabet[rng.gen_range(0..alphabet.len())]);
                    }
                    _ => bytes.truncate(at),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // Field-level mutations: wrong types, missing, unknown fields.
        5..=7 => {
            let mut v = base;
            if let Some(obj) = v.as_object_mut() {
                let keys: Vec<String> = obj.keys().cloned().collect();
                for _ in 0..rng.gen_range(1..3) {
                    let key = &keys[rng.gen_range(0..keys.len())];
                    match rng.gen_range(0..3) {
                        0 => {
                            obj.insert(key.clone(), random_value(rng, 0));
                        }
                        1 => {
                            obj.remove(key);
                        }
                        _ => {
                            obj.insert(format!("x{}", rng.gen_range(0..5)), random_value(rng, 0));
                        }
                    }
                }
            }
            v.to_string()
        }
        // Random JSON, sometimes with a real type.
        8 => {
            let mut v = random_value(rng, 0);
            if rng.gen_bool(0.5) {
                if let Some(obj) = v.as_object_mut() {
                    let t = ["rfq", "accept", "subscribe", "ping", "watch_swaps", "nope"];
                    obj.insert("type".into(), json!(t[rng.gen_range(0..t.len())]));
                }
            }
            v.to_string()
        }
        // Deep nesting and long strings.
        _ => {
            let depth = rng.gen_range(1..2000);
            if rng.gen_bool(0.5) {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                json!({"type": "rfq", "from": "BTC", "to": "ETH", "amount": "9".repeat(depth)})
                    .to_string()
            }
        }
    };
    if text.len() > MAX_FRAME {
        text[..text.floor_char_boundary(MAX_FRAME)].to_owned()
    } else {
        text
    }
}

const CODES: &[&str] = &[
    "bad_request",
    "invalid_amount",
    "invalid_address",
    "unknown_asset",
    "unsupported_pair",
    "amount_too_small",
    "amount_too_large",
    "insufficient_liquidity",
    "quote_not_found",
    "quote_expired",
    "quote_already_used",
    "swap_not_found",
    "idempotency_conflict",
    "trading_halted",
    "rate_limited",
    "unauthorized",
    "forbidden",
    "payload_too_large",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_random_and_mutated_frames_each_get_one_typed_answer() {
    let dir = tempfile::tempdir().unwrap();
    // The per-connection message rate is tested in limits.rs; here every
    // frame must reach the protocol.
    let engine = tests::start_engine_with(dir.path(), |cfg| {
        cfg.gateway_limits.ws_messages = gateway::Rate {
            per_second: 10_000_000,
            burst: 10_000_000,
        };
    })
    .await;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", engine.gateway_addr))
        .await
        .unwrap();
    let (mut sink, mut stream) = ws.split();

    let writer = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(SEED);
        let templates = templates();
        for _ in 0..FRAMES {
            let text = frame(&mut rng, &templates);
            sink.feed(Message::Text(text.into())).await.expect("send");
        }
        sink.flush().await.expect("flush");
        sink
    });

    let mut answers = 0usize;
    let mut errors = 0usize;
    let mut by_type = std::collections::BTreeMap::<&'static str, usize>::new();
    while answers < FRAMES {
        let msg = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .unwrap_or_else(|_| panic!("seed {SEED:#x}: no answer after {answers} answers"))
            .unwrap_or_else(|| panic!("seed {SEED:#x}: connection closed after {answers} answers"))
            .unwrap_or_else(|e| panic!("seed {SEED:#x}: websocket error after {answers}: {e}"));
        let Message::Text(text) = msg else { continue };
        let parsed: ServerMessage = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("seed {SEED:#x}: untyped answer {text}: {e}"));
        let kind = match parsed {
            // Streams the client subscribed to are not answers.
            ServerMessage::Prices(_) => continue,
            ServerMessage::Error { code, message, .. } => {
                let code = serde_json::to_value(code).unwrap();
                assert!(
                    CODES.contains(&code.as_str().unwrap()),
                    "seed {SEED:#x}: unexpected error code {code}: {message}"
                );
                assert!(!message.is_empty());
                errors += 1;
                "error"
            }
            ServerMessage::Quote { .. } => "quote",
            ServerMessage::Swap { .. } => "swap",
            ServerMessage::SwapStatus { .. } => "swap_status",
            ServerMessage::Subscribed { .. } => "subscribed",
            ServerMessage::Pong { .. } => "pong",
        };
        *by_type.entry(kind).or_default() += 1;
        answers += 1;
    }
    let mut sink = writer.await.unwrap();

    // Still the same connection, still answering.
    sink.send(Message::Text(
        json!({"type": "ping", "nonce": "42"}).to_string().into(),
    ))
    .await
    .unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("pong")
            .expect("open")
            .expect("ok");
        let Message::Text(text) = msg else { continue };
        match serde_json::from_str::<ServerMessage>(&text).unwrap() {
            ServerMessage::Pong { nonce } => {
                assert_eq!(
                    nonce.as_deref(),
                    Some("42"),
                    "an earlier frame got a second answer"
                );
                break;
            }
            ServerMessage::Prices(_) => continue,
            other => panic!("seed {SEED:#x}: more answers than frames: {other:?}"),
        }
    }
    println!("{FRAMES} frames: {by_type:?}");
    // The generator reaches the real handlers, not only the parser.
    assert!(errors < FRAMES && by_type.get("pong").copied().unwrap_or(0) > 0);
    engine.stop().await;
}
