//! Bad input over REST gets a clear, typed error and writes nothing:
//! malformed, out-of-range and over-precise amounts, unknown assets and
//! pairs, wrong-network and mistyped addresses, unknown or reused quotes,
//! malformed JSON and unknown fields.

use serde_json::{json, Value};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// (HTTP status, body) of a POST with a raw body.
    async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string()).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// Checks one answer: HTTP status, error code, and words of the message.
fn check(got: (u16, Value), status: u16, code: &str, words: &str) {
    let (s, body) = got;
    assert_eq!(s, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{message:?} should say {words:?}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let api = Api {
        base: format!("http://{}", engine.gateway_addr),
        http: reqwest::Client::new(),
    };
    let (s, doc) = api.get("/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    assert!(doc["paths"].get("/v1/swaps").is_some());

    let rfq = |amount: &str| json!({"from": "BTC", "to": "ETH", "amount": amount});

    check(
        api.post("/v1/quotes", rfq("0.000000001")).await,
        400,
        "invalid_amount",
        "9 decimal places, but the asset has only 8",
    );
    check(
        api.post("/v1/quotes", rfq("-1")).await,
        400,
        "invalid_amount",
        "negative",
    );
    check(
        api.post("/v1/quotes", rfq("1e3")).await,
        400,
        "invalid_amount",
        "not a decimal number",
    );
    check(
        api.post("/v1/quotes", rfq("")).await,
        400,
        "invalid_amount",
        "empty",
    );
    check(
        api.post("/v1/quotes", rfq("5000")).await,
        400,
        "amount_too_large",
        "maximum",
    );
    check(
        api.post("/v1/quotes", rfq("0.00000001")).await,
        400,
        "amount_too_small",
        "minimum",
    );
    check(
        api.post(
            "/v1/quotes",
            json!({"from": "DOGE", "to": "ETH", "amount": "1"}),
        )
        .await,
        400,
        "unknown_asset",
        "DOGE",
    );
    check(
        api.post(
            "/v1/quotes",
            json!({"from": "BTC", "to": "BTC", "amount": "1"}),
        )
        .await,
        400,
        "unsupported_pair",
        "same asset twice",
    );
    check(
        api.post(
            "/v1/quotes",
            json!({"from": "BTC", "to": "ETH", "amount": "1", "amount_sid": "to"}),
        )
        .await,
        400,
        "bad_request",
        "unknown field `amount_sid`",
    );
    check(
        api.post_raw("/v1/quotes", "{\"from\":").await,
        400,
        "bad_request",
        "request body",
    );
    check(
        api.get("/v1/prices?pair=BTC/DOGE").await,
        400,
        "unsupported_pair",
        "not offered",
    );
    check(
        api.get("/v1/swaps/not-a-uuid").await,
        400,
        "bad_request",
        "not a valid swap id",
    );
    check(
        api.get("/v1/swaps/01900000-0000-7000-8000-000000000001")
            .await,
        404,
        "swap_not_found",
        "not found",
    );

    let (s, quote) = api.post("/v1/quotes", rfq("0.01")).await;
    assert_eq!(s, 200, "{quote}");
    let quote_id = quote["quote_id"].as_str().unwrap().to_owned();
    let accept = |payout: &str, refund: Option<&str>, key: &str| json!({"quote_id": quote_id, "payout_address": payout, "refund_address": refund, "idempotency_key": key});
    let eth_ok = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    check(
        api.post(
            "/v1/swaps",
            accept("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", None, "k"),
        )
        .await,
        400,
        "invalid_address",
        "payout_address",
    );
    check(
        api.post(
            "/v1/swaps",
            accept("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", None, "k"),
        )
        .await,
        400,
        "invalid_address",
        "EIP-55 checksum",
    );
    check(
        api.post(
            "/v1/swaps",
            accept(
                eth_ok,
                Some("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"),
                "k",
            ),
        )
        .await,
        400,
        "invalid_address",
        "is a bitcoin-mainnet address, but this engine runs on bitcoin-regtest",
    );
    check(
        api.post("/v1/swaps", accept(eth_ok, None, "")).await,
        400,
        "bad_request",
        "idempotency_key",
    );
    check(
        api.post(
            "/v1/swaps",
            json!({"quote_id": "01900000-0000-7000-8000-000000000001", "payout_address": eth_ok, "idempotency_key": "k"}),
        )
        .await,
        404,
        "quote_not_found",
        "not found",
    );
    // Nothing was written by any refused accept.
    let counts = engine.hot_wallet.store().count_by_state().await.unwrap();
    assert!(counts.is_empty(), "refused accepts wrote swaps: {counts:?}");

    // The quote is still usable after all that, once; a retry with the same
    // key is the same swap; another key is refused.
    let (s, first) = api.post("/v1/swaps", accept(eth_ok, None, "k1")).await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = api.post("/v1/swaps", accept(eth_ok, None, "k1")).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(first["swap_id"], again["swap_id"]);
    check(
        api.post("/v1/swaps", accept(eth_ok, None, "k2")).await,
        409,
        "quote_already_used",
        "already used",
    );
    let counts = engine.hot_wallet.store().count_by_state().await.unwrap();
    assert_eq!(counts.values().sum::<i64>(), 1, "{counts:?}");
    engine.stop().await;
}
