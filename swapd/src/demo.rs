//! `swapd demo`: one BTC→ETH swap, done the way a wallet user does it,
//! through the engine's public REST API and the chains' own JSON-RPC:
//! request a quote, accept it with a payout address, pay the deposit from
//! the user's Bitcoin wallet, let blocks be mined, watch the ETH arrive.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use proto::api::{Quote, SwapStatus, SwapView};
use serde_json::{json, Value};

/// What the demo needs to know.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The engine's gateway, e.g. `http://127.0.0.1:8080`.
    pub engine_url: String,
    /// The Bitcoin node the user's wallet uses (bitcoind JSON-RPC).
    pub bitcoin_rpc_url: String,
    /// The Ethereum node the user's wallet uses.
    pub ethereum_rpc_url: String,
    /// BTC to swap, as a decimal string.
    pub amount_btc: String,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The demo's outcome: the last line it prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoOutcome {
    pub swap_id: String,
    pub state: SwapStatus,
    pub deposit_txid: String,
    pub payout_txid: Option<String>,
    pub amount_in: String,
    pub amount_out: String,
    pub payout_address: String,
    pub payout_received_wei: String,
    pub seconds: f64,
}

struct Rpc {
    http: reqwest::Client,
    url: String,
    v2: bool,
}

impl Rpc {
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = if self.v2 {
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        } else {
            json!({"jsonrpc": "1.0", "id": "demo", "method": method, "params": params})
        };
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method}: cannot reach {}", self.url))?
            .json()
            .await
            .with_context(|| format!("{method}: unreadable answer"))?;
        if let Some(err) = resp.get("error").filter(|e| !e.is_null()) {
            bail!("{method} failed: {err}");
        }
        Ok(resp.get("result").cloned().unwrap_or(Value::Null))
    }
}

/// Runs the demo, printing each step; returns the final outcome.
pub async fn run(opts: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let api = opts.engine_url.trim_end_matches('/');
    let btc = Rpc {
        http: http.clone(),
        url: opts.bitcoin_rpc_url.clone(),
        v2: false,
    };
    let eth = Rpc {
        http: http.clone(),
        url: opts.ethereum_rpc_url.clone(),
        v2: true,
    };

    // The user's wallets: a Bitcoin wallet with coins (the node's faucet
    // wallet) and a fresh Ethereum address to receive the payout.
    let refund_address = btc.call("getnewaddress", json!([])).await?;
    let refund_address = refund_address
        .as_str()
        .ok_or_else(|| anyhow!("getnewaddress returned no address"))?
        .to_owned();
    let payout_key = alloy_signer_local::PrivateKeySigner::random();
    let payout_address = payout_key.address().to_checksum(None);
    println!("[1/6] user wallets: refunds to {refund_address}, payout to {payout_address}");

    let quote: Quote = post(
        &http,
        &format!("{api}/v1/quotes"),
        &json!({
            "from": "BTC", "to": "ETH", "amount": opts.amount_btc, "amount_side": "from"
        }),
    )
    .await
    .context("requesting a quote")?;
    println!(
        "[2/6] firm quote {}: {} BTC -> {} ETH (price {} ETH/BTC, network fee {} ETH), expires {}",
        quote.quote_id,
        quote.amount_in,
        quote.amount_out,
        quote.price,
        quote.network_fee,
        quote.expires_at
    );

    let swap: SwapView = post(
        &http,
        &format!("{api}/v1/swaps"),
        &json!({
            "quote_id": quote.quote_id.to_string(),
            "payout_address": payout_address,
            "refund_address": refund_address,
            "idempotency_key": format!("demo-{}", quote.quote_id),
        }),
    )
    .await
    .context("accepting the quote")?;
    println!(
        "[3/6] swap {} opened: send {} BTC to {} before {} ({})",
        swap.swap_id,
        swap.deposit.amount,
        swap.deposit.address,
        swap.deposit.deadline,
        swap.deposit.payment_uri
    );

    // The user's wallet pays the deposit (BIP21 amount in BTC).
    // Bitcoin Core takes the amount as a decimal string too: no float on the way.
    let amount = &swap.deposit.amount;
    let deposit_txid = btc
        .call("sendtoaddress", json!([swap.deposit.address, amount]))
        .await
        .context("paying the deposit from the user's wallet")?;
    let deposit_txid = deposit_txid
        .as_str()
        .ok_or_else(|| anyhow!("sendtoaddress returned no txid"))?
        .to_owned();
    println!("[4/6] deposit broadcast by the user's wallet: {deposit_txid}");

    let miner = btc.call("getnewaddress", json!([])).await?;
    let mut last = swap.status;
    let mut view = swap;
    println!("      status: {}", status_name(last));
    let deadline = Instant::now() + opts.timeout;
    let mut last_mined = Instant::now();
    loop {
        view = get(&http, &format!("{api}/v1/swaps/{}", view.swap_id)).await?;
        if view.status != last {
            last = view.status;
            let confs = view
                .deposits
                .iter()
                .map(|d| d.confirmations)
                .max()
                .unwrap_or(0);
            println!(
                "      status: {} (deposit confirmations {}/{})",
                status_name(last),
                confs,
                view.deposit.required_confirmations
            );
        }
        if view.status.is_terminal() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "swap {} did not complete within {:?}; last status {}",
                view.swap_id,
                opts.timeout,
                status_name(last)
            );
        }
        // Blocks are mined while the deposit waits for confirmations.
        let waiting_for_blocks = matches!(
            view.status,
            SwapStatus::DepositSeen | SwapStatus::Confirming
        );
        if waiting_for_blocks && last_mined.elapsed() > Duration::from_millis(700) {
            btc.call("generatetoaddress", json!([1, miner]))
                .await
                .context("mining a block")?;
            last_mined = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    println!(
        "[5/6] swap {} is {}",
        view.swap_id,
        status_name(view.status)
    );

    let balance = eth
        .call("eth_getBalance", json!([payout_address, "latest"]))
        .await
        .context("reading the payout address's balance")?;
    let balance = parse_quantity(&balance)?;
    let payout_txid = view.payout.as_ref().and_then(|p| p.txid.clone());
    println!(
        "[6/6] payout address {payout_address} holds {balance} wei (quoted {} ETH = {} wei); payout tx {}",
        quote.amount_out,
        quote.amount_out_base_units,
        payout_txid.as_deref().unwrap_or("-")
    );
    let outcome = DemoOutcome {
        swap_id: view.swap_id.to_string(),
        state: view.status,
        deposit_txid,
        payout_txid,
        amount_in: view.amount_in.clone(),
        amount_out: view.amount_out.clone(),
        payout_address,
        payout_received_wei: balance.to_string(),
        seconds: (started.elapsed().as_millis() as f64) / 1000.0,
    };
    if view.status != SwapStatus::Completed {
        bail!(
            "swap ended {}: {}",
            status_name(view.status),
            view.reason.unwrap_or_default()
        );
    }
    if balance != quote.amount_out_base_units.base_units() {
        bail!(
            "payout address holds {balance} wei, but the quote promised {}",
            quote.amount_out_base_units
        );
    }
    Ok(outcome)
}

fn status_name(s: SwapStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{s:?}"))
}

fn parse_quantity(v: &Value) -> anyhow::Result<u128> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("expected a hex quantity, got {v}"))?;
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| anyhow!("expected 0x-hex, got {s}"))?;
    u128::from_str_radix(hex, 16).with_context(|| format!("bad quantity {s}"))
}

async fn post<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
) -> anyhow::Result<T> {
    let resp = http
        .post(url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    decode(resp).await
}

async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let resp = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    decode(resp).await
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("engine answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("unexpected answer: {text}"))
}
