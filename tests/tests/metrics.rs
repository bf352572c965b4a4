//! `/metrics` of the embedded engine parses as the Prometheus text format
//! (strictly: tests/src/prometheus.rs) and carries the series the engine
//! promises, with values that follow what happened: a quote, a refused
//! quote, a whole BTC→ETH swap. Readiness reports each check.

use std::time::Duration;

use serde_json::{json, Value};
use tests::btc_rpc;
use tests::prometheus::{self, Exposition};

async fn scrape(base: &str) -> Exposition {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn metrics_parse_and_follow_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let base = format!("http://{}", engine.gateway_addr);

    let ready: Value = reqwest::get(format!("{base}/v1/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for check in ["database", "bus", "nodes", "venues"] {
        assert!(ready["checks"][check]["ok"].is_boolean(), "{ready}");
    }

    let (status, quote) = post(
        &base,
        "/v1/quotes",
        json!({"from": "BTC", "to": "ETH", "amount": "0.005"}),
    )
    .await;
    assert_eq!(status, 200, "{quote}");
    let (status, _) = post(
        &base,
        "/v1/quotes",
        json!({"from": "BTC", "to": "ETH", "amount": "0.000000001"}),
    )
    .await;
    assert_eq!(status, 400);

    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    let (status, swap) = post(
        &base,
        "/v1/swaps",
        json!({"quote_id": quote["quote_id"], "payout_address": payout, "idempotency_key": "m-1"}),
    )
    .await;
    assert_eq!(status, 201, "{swap}");
    let swap_id = swap["swap_id"].as_str().unwrap().to_owned();
    btc_rpc(
        &engine.bitcoin_rpc_url,
        "sendtoaddress",
        json!([swap["deposit"]["address"], swap["deposit"]["amount"]]),
    )
    .await;
    let miner = btc_rpc(&engine.bitcoin_rpc_url, "getnewaddress", json!([])).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view: Value = reqwest::get(format!("{base}/v1/swaps/{swap_id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match view["status"].as_str().unwrap() {
            "completed" => break,
            "deposit_seen" => {
                btc_rpc(
                    &engine.bitcoin_rpc_url,
                    "generatetoaddress",
                    json!([1, miner]),
                )
                .await;
            }
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "swap stuck: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let m = scrape(&base).await;
    let kind = |name: &str| m.families.get(name).map(|f| f.kind.as_str());
    // Every family is described.
    for (name, f) in &m.families {
        assert!(
            f.help.as_deref().is_some_and(|h| !h.is_empty()),
            "{name} has no HELP"
        );
    }
    assert_eq!(kind("swap_quotes_served_total"), Some("counter"));
    assert!(m.value("swap_quotes_served_total", &[("pair", "BTC/ETH")]) >= Some(1.0));
    assert_eq!(
        m.value("swap_rfq_requests_total", &[("outcome", "invalid_amount")]),
        Some(1.0)
    );
    assert_eq!(kind("swap_rfq_duration_seconds"), Some("histogram"));
    assert!(m.value("swap_rfq_duration_seconds_count", &[("outcome", "ok")]) >= Some(1.0));
    assert_eq!(kind("swap_swaps"), Some("gauge"));
    assert_eq!(m.value("swap_swaps", &[("state", "completed")]), Some(1.0));
    assert!(
        m.value(
            "swap_deposit_events_total",
            &[("network", "bitcoin-regtest"), ("status", "seen")]
        ) >= Some(1.0)
    );
    assert_eq!(
        m.value(
            "swap_payments_broadcast_total",
            &[("network", "ethereum-dev"), ("kind", "payout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("swap_venue_connected", &[("venue", "simvenue")]),
        Some(1.0)
    );
    let staleness = m
        .value("swap_venue_staleness_seconds", &[("venue", "simvenue")])
        .expect("staleness of the simulated venue");
    assert!((0.0..60.0).contains(&staleness), "{staleness}");
    assert!(m
        .value("swap_bus_lag_messages", &[("topic", "chain-events")])
        .is_some());
    assert_eq!(kind("swap_db_query_duration_seconds"), Some("histogram"));
    assert!(m.value("swap_db_query_duration_seconds_count", &[]) >= Some(1.0));
    assert_eq!(m.value("swap_trading_halted", &[]), Some(0.0));
    assert!(m.value("swap_chain_tip_height", &[("network", "bitcoin-regtest")]) >= Some(102.0));
    engine.stop().await;
}
