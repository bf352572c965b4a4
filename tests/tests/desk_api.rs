//! The desk API: every call needs the desk token; halt stops quoting for
//! REST and websocket clients alike and resume brings it back; swaps are
//! listed by state with their event history; the live feed authenticates
//! its first frame; the approval queue checks what it is given; panels no
//! service provides yet say so (501) instead of inventing data.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Desk {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Desk {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(&self.token), None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(&self.token), Some(body)).await
    }
}

#[tokio::test]
async fn desk_api_halts_resumes_and_shows_swaps() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    assert!(engine.desk_token_generated);
    assert!(engine.desk_token.len() >= 32);
    let desk = Desk {
        base: format!("http://{}", engine.gateway_addr),
        token: engine.desk_token.clone(),
        http: reqwest::Client::new(),
    };

    // No token, a wrong token, a token of another length: refused.
    for token in [None, Some("wrong"), Some(&engine.desk_token[1..])] {
        for path in ["/v1/desk/overview", "/v1/desk/swaps", "/v1/desk/custody"] {
            let (status, body) = desk.call("GET", path, token, None).await;
            assert_eq!(status, 401, "{path} {token:?}: {body}");
        }
        let (status, _) = desk
            .call("POST", "/v1/desk/halt", token, Some(json!({"reason": "x"})))
            .await;
        assert_eq!(status, 401);
    }
    let (_, overview) = desk.get("/v1/desk/overview").await;
    assert_eq!(overview["trading"]["state"], "active", "{overview}");

    // An open quote, then a swap holding a lock.
    let rfq = json!({"from": "BTC", "to": "ETH", "amount": "0.01"});
    let (status, quote) = desk.post("/v1/quotes", rfq.clone()).await;
    assert_eq!(status, 200, "{quote}");
    let (_, overview) = desk.get("/v1/desk/overview").await;
    let quotes = overview["quotes"].as_array().unwrap();
    assert!(quotes
        .iter()
        .any(|q| q["quote_id"] == quote["quote_id"] && q["status"] == "open"));
    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    let (status, swap) = desk
        .post(
            "/v1/swaps",
            json!({"quote_id": quote["quote_id"], "payout_address": payout, "idempotency_key": "d-1"}),
        )
        .await;
    assert_eq!(status, 201, "{swap}");
    let (_, overview) = desk.get("/v1/desk/overview").await;
    let lock = overview["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quote_id"] == quote["quote_id"])
        .cloned()
        .unwrap();
    assert_eq!(lock["status"], "locked");
    assert_eq!(lock["swap_id"], swap["swap_id"]);
    let eth = overview["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["asset"] == "ETH")
        .cloned()
        .unwrap();
    assert_eq!(eth["reserved"], quote["amount_out"], "{eth}");
    assert!(overview["venues"][0]["connected"].as_bool().unwrap());
    assert!(overview["markets"][0]["mid"].is_string(), "{overview}");
    assert_eq!(
        overview["swaps_by_state"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>(),
        1
    );

    // The swap in the list and its history.
    let (status, swaps) = desk.get("/v1/desk/swaps?limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(swaps[0]["swap_id"], swap["swap_id"]);
    let state = swaps[0]["state"].as_str().unwrap().to_owned();
    let (_, same) = desk.get(&format!("/v1/desk/swaps?state={state}")).await;
    assert_eq!(same.as_array().unwrap().len(), 1);
    let (_, none) = desk.get("/v1/desk/swaps?state=no_such_state").await;
    assert_eq!(none.as_array().unwrap().len(), 0);
    let (status, _) = desk.get("/v1/desk/swaps?limit=0").await;
    assert_eq!(status, 400);
    let (status, history) = desk
        .get(&format!(
            "/v1/desk/swaps/{}",
            swap["swap_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{history}");
    assert!(
        !history["events"].as_array().unwrap().is_empty(),
        "{history}"
    );
    assert_eq!(history["events"][0]["version"], 1);
    let (status, _) = desk
        .get("/v1/desk/swaps/00000000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
    let (status, _) = desk.get("/v1/desk/swaps/not-an-id").await;
    assert_eq!(status, 400);

    // Halt: REST and websocket quoting stop; resume brings them back.
    let (status, _) = desk.post("/v1/desk/halt", json!({"reason": ""})).await;
    assert_eq!(status, 400);
    let (status, state) = desk
        .post("/v1/desk/halt", json!({"reason": "desk test"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(state["state"], "halted");
    assert_eq!(state["manual"], true);
    let (status, err) = desk.post("/v1/quotes", rfq.clone()).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (503, Some("trading_halted"))
    );
    let (_, ready) = desk.call("GET", "/v1/ready", None, None).await;
    assert!(
        ready["checks"]["database"]["ok"].as_bool().unwrap(),
        "{ready}"
    );
    let (status, state) = desk
        .call("POST", "/v1/desk/resume", Some(&desk.token), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(state["state"], "active");
    let (status, _) = desk.post("/v1/quotes", rfq).await;
    assert_eq!(status, 200);

    // The approval queue is the hot wallet's: empty here, and an unknown
    // payment or a missing approver is refused.
    let (status, queue) = desk.get("/v1/desk/approvals").await;
    assert_eq!((status, queue), (200, json!([])));
    let (status, body) = desk
        .post(
            "/v1/desk/approvals/payout:nope/approve",
            json!({"approver": "alice"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = desk
        .post(
            "/v1/desk/approvals/payout:nope/approve",
            json!({"approver": " "}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = desk
        .call(
            "POST",
            "/v1/desk/approvals/payout:nope/approve",
            None,
            Some(json!({"approver": "a"})),
        )
        .await;
    assert_eq!(status, 401);

    // Panels other services will back: not invented.
    for path in ["/v1/desk/custody", "/v1/desk/hedges", "/v1/desk/pnl"] {
        let (status, body) = desk.get(path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (501, Some("unavailable")),
            "{path}"
        );
    }

    // The live feed: a wrong first frame closes it; the token opens it.
    let url = format!("ws://{}/v1/desk/ws", engine.gateway_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "auth", "token": "wrong"}).to_string().into(),
    ))
    .await
    .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "error");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "auth", "token": desk.token})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "snapshot", "{v}");
    assert_eq!(v["trading"]["state"], "active");
    engine.stop().await;
}
