//! Bitcoin payouts end to end, checked on chain: an ETH→BTC swap pays the
//! quoted satoshis once; an extra BTC deposit after completion is refunded
//! in BTC once; a payout over the hot wallet's limit waits for the desk's
//! approval and pays once approved.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::U256;
use alloy_signer_local::PrivateKeySigner;
use hot_wallet::HotWalletApi;
use proto::api::{Quote, SwapStatus, SwapView};
use serde_json::{json, Value};
use swapd::embedded::Embedded;
use tests::{btc_rpc, start_engine};

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(engine: &Embedded) -> Self {
        Api {
            http: reqwest::Client::new(),
            base: format!("http://{}", engine.gateway_addr),
        }
    }

    async fn post<T: serde::de::DeserializeOwned>(&self, path: &str, body: Value) -> T {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn swap(&self, id: &str) -> SwapView {
        self.http
            .get(format!("{}/v1/swaps/{id}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Quote and accept; returns the swap.
    async fn open(&self, rfq: Value, payout: &str, refund: &str) -> SwapView {
        let quote: Quote = self.post("/v1/quotes", rfq).await;
        self.post(
            "/v1/swaps",
            json!({
                "quote_id": quote.quote_id.to_string(),
                "payout_address": payout,
                "refund_address": refund,
                "idempotency_key": format!("k-{}", quote.quote_id),
            }),
        )
        .await
    }
}

/// Mines on both chains until `done` holds for the swap, or panics.
async fn drive_until(
    engine: &Embedded,
    api: &Api,
    swap_id: &str,
    what: &str,
    done: impl Fn(&SwapView) -> bool,
) -> SwapView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let view = api.swap(swap_id).await;
        if done(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: swap stuck at {:?}: {view:?}",
            view.status
        );
        engine.bitcoin.mine(1, None).await.unwrap();
        engine.ethereum.mine(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every output in the best chain paying `address`: (txid, value in sats).
async fn outputs_paying(engine: &Embedded, address: &str) -> Vec<(String, u64)> {
    let url = &engine.bitcoin_rpc_url;
    let tip = btc_rpc(url, "getblockcount", json!([]))
        .await
        .as_u64()
        .unwrap();
    let mut found = Vec::new();
    for height in 0..=tip {
        let hash = btc_rpc(url, "getblockhash", json!([height])).await;
        let block = btc_rpc(url, "getblock", json!([hash, 2])).await;
        for tx in block["tx"].as_array().unwrap() {
            for out in tx["vout"].as_array().unwrap() {
                if out["scriptPubKey"]["address"].as_str() == Some(address) {
                    // The BTC amount as the node wrote it, read exactly.
                    let sats = proto::Amount::parse_decimal(&out["value"].to_string(), 8)
                        .unwrap()
                        .base_units();
                    let sats = u64::try_from(sats).unwrap();
                    found.push((tx["txid"].as_str().unwrap().to_owned(), sats));
                }
            }
        }
    }
    found
}

/// A fresh regtest address that belongs to nobody in the test.
fn fresh_btc_address() -> String {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let (_, pk) = secp.generate_keypair(&mut bitcoin::secp256k1::rand::thread_rng());
    let pk = bitcoin::CompressedPublicKey(pk);
    bitcoin::Address::p2wpkh(&pk, bitcoin::Network::Regtest).to_string()
}

fn sats(base_units: proto::Amount) -> u64 {
    u64::try_from(base_units.base_units()).unwrap()
}

#[tokio::test]
async fn eth_to_btc_pays_once_and_an_extra_btc_deposit_is_refunded_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start_engine(dir.path()).await;
    let api = Api::new(&engine);
    // The treasury's top-up of the hot wallet is in a block already.
    let utxos = engine.hot_wallet.bitcoin_utxos().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut utxos = utxos;
    while utxos.iter().filter(|u| u.confirmations >= 1).count() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "inventory not seen: {utxos:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        utxos = engine.hot_wallet.bitcoin_utxos().await.unwrap();
    }

    // ETH→BTC: the user sends ETH, the engine pays BTC.
    let payout = fresh_btc_address();
    let refund = PrivateKeySigner::random().address().to_checksum(None);
    let swap = api
        .open(
            json!({"from": "ETH", "to": "BTC", "amount": "1.5"}),
            &payout,
            &refund,
        )
        .await;
    let deposit: alloy_primitives::Address = swap.deposit.address.parse().unwrap();
    engine
        .ethereum
        .fund(
            deposit,
            U256::from(swap.deposit.amount_base_units.base_units()),
        )
        .await
        .unwrap();
    let done = drive_until(&engine, &api, &swap.swap_id.to_string(), "ETH→BTC", |v| {
        v.status == SwapStatus::Completed
    })
    .await;
    let quote_out: proto::Amount = done
        .payout
        .as_ref()
        .map(|p| p.amount_base_units)
        .expect("payout recorded");
    let paid = outputs_paying(&engine, &payout).await;
    assert_eq!(paid.len(), 1, "exactly one payout output: {paid:?}");
    assert_eq!(paid[0].1, sats(quote_out));
    assert_eq!(
        Some(paid[0].0.as_str()),
        done.payout.as_ref().unwrap().txid.as_deref()
    );

    // BTC→ETH, then a second BTC deposit to the finished swap's address:
    // it is refunded in BTC to the refund address, once.
    let user_refund = fresh_btc_address();
    let eth_payout = PrivateKeySigner::random().address().to_checksum(None);
    let swap = api
        .open(
            json!({"from": "BTC", "to": "ETH", "amount": "0.01"}),
            &eth_payout,
            &user_refund,
        )
        .await;
    let url = &engine.bitcoin_rpc_url;
    btc_rpc(
        url,
        "sendtoaddress",
        json!([swap.deposit.address, swap.deposit.amount]),
    )
    .await;
    let id = swap.swap_id.to_string();
    drive_until(&engine, &api, &id, "BTC→ETH", |v| {
        v.status == SwapStatus::Completed
    })
    .await;
    btc_rpc(url, "sendtoaddress", json!([swap.deposit.address, "0.002"])).await;
    let view = drive_until(&engine, &api, &id, "extra deposit refund", |v| {
        v.refunds.iter().any(|r| r.status == "confirmed")
    })
    .await;
    assert_eq!(view.status, SwapStatus::Completed);
    let refunded = outputs_paying(&engine, &user_refund).await;
    assert_eq!(refunded.len(), 1, "exactly one refund: {refunded:?}");
    assert_eq!(refunded[0].1, 200_000);
    // Nothing paid twice on the first swap either, after all these blocks.
    assert_eq!(outputs_paying(&engine, &payout).await.len(), 1);
    engine.stop().await;
}

#[tokio::test]
async fn a_payout_over_the_hot_limit_waits_for_approval_then_pays_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start_engine(dir.path()).await;
    let api = Api::new(&engine);
    let payout = fresh_btc_address();
    let refund = PrivateKeySigner::random().address().to_checksum(None);
    // 3 BTC out: over the embedded per-payment limit of 2 BTC.
    let swap = api
        .open(
            json!({"from": "ETH", "to": "BTC", "amount": "3", "amount_side": "to"}),
            &payout,
            &refund,
        )
        .await;
    let deposit: alloy_primitives::Address = swap.deposit.address.parse().unwrap();
    engine
        .ethereum
        .fund(
            deposit,
            U256::from(swap.deposit.amount_base_units.base_units()),
        )
        .await
        .unwrap();
    let id = swap.swap_id.to_string();
    let mut waiting = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while waiting.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no approval requested"
        );
        engine.ethereum.mine(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        waiting = engine
            .hot_wallet
            .payments_awaiting_approval()
            .await
            .unwrap();
    }
    assert_eq!(waiting.len(), 1);
    let held = &waiting[0];
    assert_eq!(held.swap_id.to_string(), id);
    assert_eq!(held.status, "approval");
    assert_eq!(held.amount, "3");
    assert!(
        held.reason
            .as_deref()
            .unwrap_or("")
            .contains("per-payment limit"),
        "{held:?}"
    );
    // Waiting: more blocks change nothing, nothing is paid.
    for _ in 0..3 {
        engine.bitcoin.mine(1, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(outputs_paying(&engine, &payout).await.is_empty());
    assert_ne!(api.swap(&id).await.status, SwapStatus::Completed);

    // An approval must say who approves; an unknown payment is an error.
    assert!(engine
        .hot_wallet
        .approve_payment(&held.payment_id, " ")
        .await
        .is_err());
    assert!(engine
        .hot_wallet
        .approve_payment("payout:nope", "desk")
        .await
        .is_err());
    let approved = engine
        .hot_wallet
        .approve_payment(&held.payment_id, "alice@desk")
        .await
        .unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("alice@desk"));
    assert!(approved.txid.is_some(), "{approved:?}");
    // Approving twice is refused and pays nothing more.
    assert!(engine
        .hot_wallet
        .approve_payment(&held.payment_id, "alice@desk")
        .await
        .is_err());
    drive_until(&engine, &api, &id, "approved payout", |v| {
        v.status == SwapStatus::Completed
    })
    .await;
    let paid = outputs_paying(&engine, &payout).await;
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(paid[0].1, 300_000_000);
    let by_status: BTreeMap<_, _> = engine
        .hot_wallet
        .payments_awaiting_approval()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.payment_id, p.status))
        .collect();
    assert!(by_status.is_empty());
    engine.stop().await;
}
