//! A partner app: its API key (401 unknown, 403 revoked), its fee in its
//! quotes, and its swaps' status changes posted to its webhook, signed with
//! HMAC-SHA256 over the exact body, retried with backoff after the receiver
//! fails twice, and recorded in the delivery log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

/// What the receiver saw: (signature header, delivery header, body).
type Seen = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// A webhook receiver on loopback that answers 500 to its first `fail`
/// requests and 200 after.
async fn receiver(fail: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let mut seen = s.lock().unwrap();
                seen.push((header("x-swap-signature"), header("x-swap-delivery"), body));
                if seen.len() <= fail {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

async fn call(req: reqwest::RequestBuilder, key: Option<&str>) -> (u16, Value) {
    let req = match key {
        Some(k) => req.header("x-api-key", k),
        None => req,
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_quotes_carry_its_fee_and_its_webhook_is_signed_retried_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine_with(dir.path(), |cfg| {
        cfg.gateway_webhooks = gateway::WebhookConfig {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            max_attempts: 10,
            timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(50),
        };
    })
    .await;
    let base = format!("http://{}", engine.gateway_addr);
    let http = reqwest::Client::new();
    let (hook_url, seen) = receiver(2).await;
    let partners = gateway::Partners::open(engine.gateway_deps.db.clone())
        .await
        .unwrap();
    let created = partners
        .create(gateway::NewPartner {
            name: "Pocket Wallet".into(),
            fee_bps: 40,
            webhook_url: Some(hook_url),
        })
        .await
        .unwrap();
    let key = created.api_key.clone();
    let secret = created.partner.webhook.clone().unwrap().secret;

    // Keys: unknown is 401, and the log needs one.
    let (status, body) = call(
        http.post(format!("{base}/v1/quotes"))
            .json(&json!({"from": "BTC", "to": "ETH", "amount": "0.01"})),
        Some("swk_nope"),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, body) = call(
        http.get(format!("{base}/v1/partner/webhook-deliveries")),
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));

    // The partner's quote shows its fee, and pays the client less than an
    // anonymous quote of the same size (the books do not move in between
    // by more than the fee: compare against the partner fee itself).
    let rfq = json!({"from": "BTC", "to": "ETH", "amount": "0.01"});
    let (status, anon) = call(http.post(format!("{base}/v1/quotes")).json(&rfq), None).await;
    assert_eq!(status, 200, "{anon}");
    assert!(anon.get("partner_fee").is_none(), "{anon}");
    let (status, quote) = call(
        http.post(format!("{base}/v1/quotes")).json(&rfq),
        Some(&key),
    )
    .await;
    assert_eq!(status, 200, "{quote}");
    let fee: f64 = quote["partner_fee"].as_str().unwrap().parse().unwrap();
    let out: f64 = quote["amount_out"].as_str().unwrap().parse().unwrap();
    let anon_out: f64 = anon["amount_out"].as_str().unwrap().parse().unwrap();
    // 40 bp of the gross out, within rounding.
    assert!(
        fee > 0.0 && (fee / (out + fee) - 0.004).abs() < 0.0005,
        "{quote}"
    );
    assert!(out < anon_out, "partner {out} vs anonymous {anon_out}");

    // Accept as the partner: the swap's first status goes to the webhook.
    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    let (status, swap) = call(
        http.post(format!("{base}/v1/swaps")).json(&json!({
            "quote_id": quote["quote_id"], "payout_address": payout,
            "refund_address": null, "idempotency_key": "partner-1"
        })),
        Some(&key),
    )
    .await;
    assert_eq!(status, 201, "{swap}");
    let swap_id = swap["swap_id"].as_str().unwrap().to_owned();

    // Two failures, then delivered: three requests, the same bytes, the
    // same delivery id, each signed over the exact body.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if seen.lock().unwrap().len() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhook not retried to success: {} requests",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = seen.lock().unwrap().clone();
    let (sig, delivery, body) = &requests[0];
    for (s, d, b) in &requests[..3] {
        assert_eq!((s, d, b), (sig, delivery, body), "a retry changed");
    }
    assert!(gateway::notify::verify(&secret, body, sig));
    assert!(!gateway::notify::verify(&secret, &body[1..], sig));
    // The signature is plain HMAC-SHA256(secret, body), as docs/webhooks.md
    // tells receivers to check it.
    assert_eq!(sig, &gateway::notify::sign(&secret, body));
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["kind"], "swap.status");
    assert_eq!(payload["swap"]["swap_id"], swap_id.as_str());
    assert_eq!(payload["swap"]["status"], "awaiting_deposit");
    assert!(payload["event_id"].as_str().is_some());

    // The delivery log says so.
    let log = loop {
        let (status, log) = call(
            http.get(format!("{base}/v1/partner/webhook-deliveries")),
            Some(&key),
        )
        .await;
        assert_eq!(status, 200, "{log}");
        let first = log
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["delivery_id"] == delivery.as_str())
            .cloned();
        if first.as_ref().is_some_and(|d| d["status"] == "delivered") {
            break first.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(log["attempts"], 3, "{log}");
    assert_eq!(log["last_status_code"], 200, "{log}");
    assert_eq!(log["swap_id"], swap_id.as_str());
    // Every attempt is in the attempts table, the two failures with their code.
    let codes: Vec<Option<i64>> = {
        use sqlx::Row;
        sqlx::query(
            "SELECT status_code FROM gw_webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(delivery.as_str())
        .fetch_all(engine.gateway_deps.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get(0).unwrap())
        .collect()
    };
    assert_eq!(codes, [Some(500), Some(500), Some(200)]);

    // A revoked key is 403 on every instance once its cached lookup (ten
    // seconds) runs out.
    partners
        .set_active(&created.partner.partner_id, false)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = call(
            http.post(format!("{base}/v1/quotes")).json(&rfq),
            Some(&key),
        )
        .await;
        if status == 403 {
            assert_eq!(body["code"], "forbidden");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    engine.stop().await;
}
