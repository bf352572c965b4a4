//! `kill -9` of the embedded engine in the middle of a swap, then a
//! restart on the same data directory: the swap continues from its
//! persisted state and completes with exactly one payout transaction.
//!
//! The engine runs as a real child process (the `swapd` binary) and is
//! killed with SIGKILL at a different point of the lifecycle in each case.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use proto::api::{Quote, SwapStatus, SwapView};
use serde_json::{json, Value};

struct Engine {
    child: Child,
    api: String,
    btc: String,
    eth: String,
}

struct Ports {
    api: SocketAddr,
    btc: SocketAddr,
    eth: SocketAddr,
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl Engine {
    async fn start(data: &Path, ports: &Ports) -> anyhow::Result<Engine> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_swapd"))
            .args(["run", "--data-dir"])
            .arg(data)
            .args(["--listen", &ports.api.to_string()])
            .args(["--bitcoin-rpc-listen", &ports.btc.to_string()])
            .args(["--ethereum-rpc-listen", &ports.eth.to_string()])
            .args(["--bitcoin-block-secs", "0"])
            // Payouts wait for the next block, so a kill can land while
            // one is broadcast but not yet confirmed.
            .args(["--ethereum-automine", "false", "--ethereum-block-secs", "4"])
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning swapd")?;
        let engine = Engine {
            child,
            api: format!("http://{}", ports.api),
            btc: format!("http://{}", ports.btc),
            eth: format!("http://{}", ports.eth),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/v1/health", engine.api)).send().await {
                if r.status().is_success() {
                    return Ok(engine);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "swapd did not become healthy; see {}",
                    data.with_extension("log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown path runs.
    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn rpc(url: &str, v2: bool, method: &str, params: Value) -> anyhow::Result<Value> {
    let body = if v2 {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    } else {
        json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params})
    };
    let resp: Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    if let Some(e) = resp.get("error").filter(|e| !e.is_null()) {
        bail!("{method}: {e}");
    }
    Ok(resp["result"].clone())
}

async fn get_swap(api: &str, id: &str) -> anyhow::Result<SwapView> {
    Ok(reqwest::Client::new()
        .get(format!("{api}/v1/swaps/{id}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn hex_u128(v: &Value) -> anyhow::Result<u128> {
    let s = v.as_str().ok_or_else(|| anyhow!("not a quantity: {v}"))?;
    Ok(u128::from_str_radix(s.trim_start_matches("0x"), 16)?)
}

/// Runs one swap and SIGKILLs the engine once the swap reaches any of
/// `kill_at`; restarts it and finishes. Returns (payout wei, hot nonce).
async fn swap_with_kill(kill_at: &[SwapStatus]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("engine");
    let ports = Ports {
        api: free_port(),
        btc: free_port(),
        eth: free_port(),
    };
    let engine = Engine::start(&data, &ports).await?;
    let http = reqwest::Client::new();

    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    let refund = rpc(&engine.btc, false, "getnewaddress", json!([])).await?;
    let quote: Quote = http
        .post(format!("{}/v1/quotes", engine.api))
        .json(&json!({"from": "BTC", "to": "ETH", "amount": "0.02"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let swap: SwapView = http
        .post(format!("{}/v1/swaps", engine.api))
        .json(&json!({
            "quote_id": quote.quote_id.to_string(),
            "payout_address": payout,
            "refund_address": refund,
            "idempotency_key": "kill9",
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = swap.swap_id.to_string();
    let mut engine = Some(engine);
    let mut killed_at = None;
    if kill_at.contains(&SwapStatus::AwaitingDeposit) {
        killed_at = Some(SwapStatus::AwaitingDeposit);
        engine.take().expect("engine").kill9();
        engine = Some(Engine::start(&data, &ports).await?);
    }
    let engine = engine.take().expect("engine");
    let amount = &swap.deposit.amount;
    let deposit_txid = rpc(
        &engine.btc,
        false,
        "sendtoaddress",
        json!([swap.deposit.address, amount]),
    )
    .await?;
    let miner = rpc(&engine.btc, false, "getnewaddress", json!([])).await?;

    // Drive until the kill point, then SIGKILL.
    let mut engine = Some(engine);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut mined = 0u64;
    let mut seen = Vec::new();
    loop {
        let e = engine.as_ref().expect("engine");
        let view = get_swap(&e.api, &id).await?;
        if seen.last() != Some(&view.status) {
            seen.push(view.status);
        }
        if killed_at.is_none() && (kill_at.contains(&view.status) || view.status.is_terminal()) {
            killed_at = Some(view.status);
            engine.take().expect("engine").kill9();
            engine = Some(Engine::start(&data, &ports).await?);
            continue;
        }
        if view.status.is_terminal() {
            assert_eq!(
                view.status,
                SwapStatus::Completed,
                "swap ended {:?}: {:?}",
                view.status,
                view.reason
            );
            break;
        }
        // One block at a time, and only once the engine has seen the last
        // one, so that every intermediate state can be observed.
        let confirmations = view
            .deposits
            .iter()
            .map(|d| d.confirmations)
            .max()
            .unwrap_or(0);
        if matches!(
            view.status,
            SwapStatus::DepositSeen | SwapStatus::Confirming
        ) && confirmations >= mined
        {
            rpc(&e.btc, false, "generatetoaddress", json!([1, miner])).await?;
            mined += 1;
        }
        if Instant::now() > deadline {
            bail!("swap stuck at {:?} (killed at {killed_at:?})", view.status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = engine.as_ref().expect("engine");
    assert!(
        killed_at.is_some_and(|s| kill_at.contains(&s)),
        "the kill point {kill_at:?} was never observed (first seen: {killed_at:?}; statuses {seen:?})"
    );

    // Exactly the quoted amount arrived, in exactly one transaction from
    // the hot wallet.
    let balance = hex_u128(&rpc(&e.eth, true, "eth_getBalance", json!([payout, "latest"])).await?)?;
    assert_eq!(
        balance,
        quote.amount_out_base_units.base_units(),
        "payout amount"
    );
    let keys = hot_wallet::keys::Keyring::load_or_create(
        &data.join("hot-wallet.seed"),
        proto::BitcoinNetwork::Regtest,
    )?;
    let hot = keys.eth_signer(0)?.address().to_checksum(None);
    let nonce = hex_u128(
        &rpc(
            &e.eth,
            true,
            "eth_getTransactionCount",
            json!([hot, "pending"]),
        )
        .await?,
    )?;
    assert_eq!(
        nonce, 1,
        "the hot wallet sent {nonce} transactions; exactly one payout expected"
    );
    let view = get_swap(&e.api, &id).await?;
    let payout_tx = view.payout.and_then(|p| p.txid).context("payout txid")?;
    let receipt = rpc(
        &e.eth,
        true,
        "eth_getTransactionReceipt",
        json!([payout_tx]),
    )
    .await?;
    assert_eq!(receipt["status"], json!("0x1"), "payout receipt {receipt}");
    assert!(deposit_txid.is_string());
    Ok(())
}

#[tokio::test]
async fn kill9_while_confirming_then_completes_with_one_payout() {
    swap_with_kill(&[SwapStatus::Confirming]).await.unwrap();
}

#[tokio::test]
async fn kill9_with_the_payout_broadcast_then_completes_with_one_payout() {
    swap_with_kill(&[SwapStatus::PayoutBroadcast])
        .await
        .unwrap();
}

#[tokio::test]
async fn kill9_before_the_deposit_is_seen_then_completes() {
    swap_with_kill(&[SwapStatus::AwaitingDeposit])
        .await
        .unwrap();
}
