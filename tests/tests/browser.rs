//! The pages in headless Chromium (Playwright): on a phone-sized screen the
//! swap page completes a whole BTC→ETH swap (this test pays the deposit on
//! the simulated bitcoind and mines); the desk signs in with its token,
//! shows the swap's history, halts quoting and resumes it, and approves an
//! ETH→BTC payout held over the hot wallet's limit, which is then paid. The script is
//! tests/browser/pages.mjs; screenshots go to
//! `$CARGO_TARGET_DIR/test-artifacts/browser/` (printed).
//!
//! Needs `eval "$(scripts/browser.sh)"` (scripts/test.sh does it): without
//! CHROMIUM_BIN and PLAYWRIGHT_CORE_DIR the test fails, it never skips.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hot_wallet::HotWalletApi;
use serde_json::{json, Value};
use tests::btc_rpc;
use tokio::io::{AsyncBufReadExt, BufReader};

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run `eval \"$(scripts/browser.sh)\"` first (scripts/test.sh does)"
        )
    })
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts").join("browser")
}

#[tokio::test]
async fn swap_page_completes_a_swap_and_desk_halts_resumes_and_approves() {
    let chromium = required_env("CHROMIUM_BIN");
    let playwright = required_env("PLAYWRIGHT_CORE_DIR");
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let artifacts = artifacts_dir();
    eprintln!("browser test screenshots: {}", artifacts.display());

    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    let refund = btc_rpc(&engine.bitcoin_rpc_url, "getnewaddress", json!([])).await;
    let held = hold_a_payout(&engine).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/pages.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .env("BASE_URL", format!("http://{}", engine.gateway_addr))
        .env("DESK_TOKEN", &engine.desk_token)
        .env("PAYOUT_ADDRESS", &payout)
        .env("REFUND_ADDRESS", refund.as_str().unwrap())
        .env("CHROMIUM_BIN", chromium)
        .env("PLAYWRIGHT_CORE_DIR", playwright)
        .env("ARTIFACTS_DIR", &artifacts)
        .env("HELD_PAYMENT_ID", &held.payment_id)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (is Node.js installed?)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let mut swap_id = None;
    let mut miner: Option<tokio::task::JoinHandle<()>> = None;
    let mut done = false;
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("browser: {line}");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("SWAP") => swap_id = words.next().map(str::to_owned),
                Some("DEPOSIT") => {
                    let address = words.next().expect("address").to_owned();
                    let amount = words.next().expect("amount").to_owned();
                    // The user's wallet pays; blocks follow until the page is done.
                    btc_rpc(
                        &engine.bitcoin_rpc_url,
                        "sendtoaddress",
                        json!([address, amount]),
                    )
                    .await;
                    let url = engine.bitcoin_rpc_url.clone();
                    miner = Some(tokio::spawn(async move {
                        let to = btc_rpc(&url, "getnewaddress", json!([])).await;
                        loop {
                            tokio::time::sleep(Duration::from_millis(700)).await;
                            btc_rpc(&url, "generatetoaddress", json!([1, to])).await;
                        }
                    }));
                }
                Some("DONE") => done = true,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), reading)
        .await
        .expect("the browser script finished within 5 minutes");
    if let Some(m) = miner {
        m.abort();
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the browser script failed: {status}");
    assert!(done, "the browser script did not reach its end");

    // What the page showed is what the engine did.
    let swap_id = swap_id.expect("the page showed a swap id");
    let view: Value = reqwest::get(format!("http://{}/v1/swaps/{swap_id}", engine.gateway_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["payout_address"], payout);
    // The payout the desk approved is paid.
    let held_swap = held.swap_id.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let view: Value = reqwest::get(format!(
            "http://{}/v1/swaps/{held_swap}",
            engine.gateway_addr
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if view["status"] == "completed" {
            assert!(view["payout"]["txid"].is_string(), "{view}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "approved payout not completed: {view}"
        );
        engine.bitcoin.mine(1, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(engine
        .hot_wallet
        .payments_awaiting_approval()
        .await
        .unwrap()
        .is_empty());
    for shot in [
        "swap-1-quote",
        "swap-2-deposit",
        "swap-3-completed",
        "desk-1-active",
        "desk-2-halted",
        "desk-3-resumed",
        "desk-4-approved",
    ] {
        let file = artifacts.join(format!("{shot}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 1000,
            "screenshot {} missing or empty",
            file.display()
        );
    }
    engine.stop().await;
}

/// An ETH→BTC swap of 3 BTC out (over the embedded per-payment limit of
/// 2 BTC), its deposit paid, mined until its payout waits for approval.
async fn hold_a_payout(engine: &swapd::embedded::Embedded) -> proto::api::DeskPayment {
    let base = format!("http://{}", engine.gateway_addr);
    let http = reqwest::Client::new();
    let quote: Value = http
        .post(format!("{base}/v1/quotes"))
        .json(&json!({"from": "ETH", "to": "BTC", "amount": "3", "amount_side": "to"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payout = btc_rpc(&engine.bitcoin_rpc_url, "getnewaddress", json!([])).await;
    let swap: Value = http
        .post(format!("{base}/v1/swaps"))
        .json(&json!({
            "quote_id": quote["quote_id"],
            "payout_address": payout,
            "refund_address": alloy_signer_local::PrivateKeySigner::random().address().to_checksum(None),
            "idempotency_key": "browser-held",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deposit: alloy_primitives::Address = swap["deposit"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let wei: u128 = swap["deposit"]["amount_base_units"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    engine
        .ethereum
        .fund(deposit, alloy_primitives::U256::from(wei))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = engine
            .hot_wallet
            .payments_awaiting_approval()
            .await
            .unwrap();
        if let Some(p) = waiting.into_iter().next() {
            assert_eq!(p.swap_id.to_string(), swap["swap_id"].as_str().unwrap());
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no payout waits for approval: {swap}"
        );
        engine.ethereum.mine(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
