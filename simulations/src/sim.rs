//! `swap-sim`: simulated users drive the engine through its public
//! interfaces only (the gateway's REST API, the chains' JSON-RPC to pay
//! deposits and mine), from a seed, on a simulated clock of steps.
//!
//! One step: users whose turn it is act (quote, accept, pay, replace,
//! double-spend…), world events happen (market jumps, venue outages,
//! reorgs, fee spikes, stalls), one Bitcoin block is mined (unless the node
//! is stalled), and the simulation waits until the engine has *settled*:
//! every swap's view agrees with the chain and no swap is between two
//! steps of its own work. Latencies are counted in steps. Every random
//! choice comes from the seed, users act in index order, and the report
//! holds no ids and no wall-clock values, so a seed replays to the same
//! report.

pub mod client;
pub mod engine;
pub mod report;
pub mod scenario;
pub mod wallet;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bitcoin::hashes::{sha256, Hash};
use proto::api::{Quote, SwapStatus, SwapView};
use proto::Pair;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use simulators::venue::SimVenue;

use client::{quantity, Gateway, Rpc};
use engine::{Endpoints, Engine, SimEngineSettings};
use report::{Deposits, Invariant, Ledger, Payouts, Pnl, Report, StepStats};
use scenario::{Scenario, ScenarioChoice};
use wallet::UserWallet;

/// ETH the embedded engine's hot wallet starts with (EmbeddedConfig's default).
const HOT_ETH_GENESIS_WEI: u128 = 10_000 * 10u128.pow(18);
/// Users who wait for their swap to expire look from this many steps on.
const EXPIRY_LOOK_AFTER: u64 = 8;
/// Steps without any user finishing before the run gives up on the rest.
const IDLE_STEPS_LIMIT: u64 = 80;
/// Wall-clock limit on waiting for the engine to settle after one step.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// How `swap-sim` is run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub scenario: ScenarioChoice,
    pub swaps: usize,
    /// A running engine and its chains; `None`: start one.
    pub external: Option<Endpoints>,
    /// SIGKILL the engine (a child process) at this many seeded points.
    pub chaos: u32,
    /// The `swapd` binary for chaos runs (default: next to this program).
    pub swapd: Option<PathBuf>,
    /// New users per step.
    pub users_per_step: usize,
    /// How long users have to deposit (the engine's deposit window).
    pub deposit_window: Duration,
}

/// Wall-clock figures, for the human summary only.
#[derive(Debug, Clone, Default)]
pub struct WallStats {
    pub total: Duration,
    pub rfq_ms: Vec<u64>,
    pub accept_ms: Vec<u64>,
    pub settle_timeouts: u32,
    pub steps: u64,
}

impl WallStats {
    pub fn summary(&self) -> String {
        let pct = |v: &[u64], q: usize| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.get(v.len().saturating_sub(1) * q / 100)
                .copied()
                .unwrap_or(0)
        };
        format!(
            "  {} steps; wall clock: {:.1} s; RFQ p50 {} ms p99 {} ms; accept p50 {} ms p99 {} ms; settle timeouts {}",
            self.steps,
            self.total.as_secs_f64(),
            pct(&self.rfq_ms, 50),
            pct(&self.rfq_ms, 99),
            pct(&self.accept_ms, 50),
            pct(&self.accept_ms, 99),
            self.settle_timeouts
        )
    }
}

/// Where a deposit transaction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Dust,
    /// Replaced by the user (RBF) or double-spent: must not count.
    Replaced,
}

#[derive(Debug, Clone)]
struct Sent {
    txid: String,
    /// The signed transaction, for the wallet to broadcast again.
    raw: String,
    vout: u32,
    sats: u64,
    role: Role,
}

/// One simulated user.
#[derive(Debug)]
struct User {
    index: usize,
    scenario: Scenario,
    start: u64,
    rng: StdRng,
    sats: u64,
    payout_address: String,
    refund_address: Option<String>,
    wallet: Option<UserWallet>,
    funding: Option<(String, u32, u64, String)>,
    quote: Option<Quote>,
    swap_id: Option<String>,
    view: Option<SwapView>,
    sent: Vec<Sent>,
    /// All planned actions done (what remains is the engine's).
    acted: bool,
    finished: bool,
    rfq_tries: u32,
    paid_step: Option<u64>,
    payout_step: Option<u64>,
    /// Mid prices (USD) when quoted, for P&L.
    marks: Option<(Decimal, Decimal)>,
    early_payout: bool,
}

fn sats_str(sats: u64) -> String {
    format!("{}.{:08}", sats / 100_000_000, sats % 100_000_000)
}

fn status_name(s: SwapStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{s:?}"))
}

/// The engine is working on the swap right now (not waiting for the
/// world): the simulation waits for it before the next step.
fn transient(s: SwapStatus) -> bool {
    matches!(
        s,
        SwapStatus::DepositConfirmed
            | SwapStatus::Executing
            | SwapStatus::PayoutPending
            | SwapStatus::PayoutBroadcast
            | SwapStatus::RefundRequired
    )
}

/// Dispositions after which nothing more happens to a deposit.
fn final_disposition(d: &str) -> bool {
    matches!(d, "applied" | "refunded" | "review" | "dust" | "dropped")
}

struct World {
    gw: Gateway,
    btc: Rpc,
    eth: Rpc,
    venue: Option<Arc<SimVenue>>,
    engine: Engine,
    step: u64,
    stall_until: u64,
    events: Vec<String>,
    findings: BTreeSet<String>,
    wall: WallStats,
    miner: String,
    rfq_refusals: BTreeMap<String, usize>,
}

impl World {
    fn log(&mut self, line: String) {
        tracing::debug!("{line}");
        self.events.push(line);
    }

    async fn mine(&mut self, n: u32, to: &str) -> anyhow::Result<()> {
        self.btc
            .call("generatetoaddress", json!([n, to]))
            .await
            .context("mining")?;
        Ok(())
    }

    /// Confirmations of a transaction on the Bitcoin chain: `Some(0)` in
    /// the mempool, `None` unknown (replaced, double-spent, evicted).
    async fn btc_confirmations(&self, txid: &str) -> anyhow::Result<Option<u64>> {
        match self
            .btc
            .call("getrawtransaction", json!([txid, true]))
            .await
        {
            Ok(v) => Ok(Some(
                v.get("confirmations").and_then(Value::as_u64).unwrap_or(0),
            )),
            Err(e) if e.downcast_ref::<client::RpcRefusal>().is_some() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn vout_paying(&self, txid: &str, address: &str) -> anyhow::Result<u32> {
        let tx = self
            .btc
            .call("getrawtransaction", json!([txid, true]))
            .await?;
        tx["vout"]
            .as_array()
            .and_then(|outs| {
                outs.iter()
                    .find(|o| o["scriptPubKey"]["address"] == address)
                    .and_then(|o| o["n"].as_u64())
            })
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| anyhow!("{txid} has no output paying {address}"))
    }

    fn marks(&self) -> Option<(Decimal, Decimal)> {
        let venue = self.venue.as_ref()?;
        let btc = venue.price(&Pair::from_str("BTC/USD").ok()?)?;
        let eth = venue.price(&Pair::from_str("ETH/USD").ok()?)?;
        Some((btc, eth))
    }
}

impl User {
    fn tag(&self) -> String {
        format!("user {} {}", self.index, self.scenario)
    }

    async fn rfq(&mut self, w: &mut World) -> anyhow::Result<bool> {
        let t = Instant::now();
        let amount = sats_str(self.sats);
        let answer = w.gw.rfq("BTC", "ETH", &amount).await?;
        w.wall.rfq_ms.push(t.elapsed().as_millis() as u64);
        self.rfq_tries += 1;
        match answer {
            Ok(q) => {
                w.log(format!(
                    "step {} {}: quote {} BTC -> {} ETH",
                    w.step,
                    self.tag(),
                    q.amount_in,
                    q.amount_out
                ));
                self.marks = w.marks();
                self.quote = Some(q);
                Ok(true)
            }
            Err(e) => {
                let code = serde_json::to_value(e.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                *w.rfq_refusals.entry(code.clone()).or_default() += 1;
                w.log(format!(
                    "step {} {}: rfq refused: {code}",
                    w.step,
                    self.tag()
                ));
                Ok(false)
            }
        }
    }

    async fn accept(&mut self, w: &mut World) -> anyhow::Result<()> {
        let quote = self
            .quote
            .clone()
            .ok_or_else(|| anyhow!("accept without a quote"))?;
        let refund = match &self.wallet {
            Some(wallet) => wallet.change.to_string(),
            None => w.btc.call_str("getnewaddress", json!([])).await?,
        };
        let t = Instant::now();
        let view =
            w.gw.accept(
                &quote,
                &self.payout_address,
                &refund,
                &format!("sim-{}", self.index),
            )
            .await?
            .map_err(|e| anyhow!("{}: accept refused: {}", self.tag(), e.message))?;
        w.wall.accept_ms.push(t.elapsed().as_millis() as u64);
        w.log(format!(
            "step {} {}: swap opened, deposit {} BTC, {} confirmations",
            w.step,
            self.tag(),
            view.deposit.amount,
            view.deposit.required_confirmations
        ));
        self.refund_address = Some(refund);
        self.swap_id = Some(view.swap_id.to_string());
        self.view = Some(view);
        Ok(())
    }

    fn deposit(&self) -> anyhow::Result<(String, u64)> {
        let v = self.view.as_ref().ok_or_else(|| anyhow!("no swap"))?;
        let sats = u64::try_from(v.deposit.amount_base_units.base_units())
            .map_err(|_| anyhow!("deposit amount out of range"))?;
        Ok((v.deposit.address.clone(), sats))
    }

    /// Pays `sats` to the deposit address from the node's wallet.
    async fn pay(
        &mut self,
        w: &mut World,
        sats: u64,
        fee_rate: Option<u64>,
    ) -> anyhow::Result<String> {
        let (address, _) = self.deposit()?;
        let params = match fee_rate {
            None => json!([address, sats_str(sats)]),
            Some(r) => json!([
                address,
                sats_str(sats),
                "",
                "",
                false,
                true,
                null,
                "unset",
                null,
                r
            ]),
        };
        let txid = w.btc.call_str("sendtoaddress", params).await?;
        let vout = w.vout_paying(&txid, &address).await?;
        let raw = w.btc.call_str("getrawtransaction", json!([txid])).await?;
        self.sent.push(Sent {
            txid: txid.clone(),
            raw,
            vout,
            sats,
            role: Role::User,
        });
        self.paid_step.get_or_insert(w.step);
        w.log(format!(
            "step {} {}: paid {} BTC",
            w.step,
            self.tag(),
            sats_str(sats)
        ));
        Ok(txid)
    }

    /// Waits (wall clock) until the engine shows `txid` among the swap's deposits.
    async fn wait_seen(&mut self, w: &mut World, txid: &str) -> anyhow::Result<()> {
        let id = self.swap_id.clone().ok_or_else(|| anyhow!("no swap"))?;
        let until = Instant::now() + SETTLE_TIMEOUT;
        loop {
            if let Ok(v) = w.gw.swap(&id).await? {
                let seen = v.deposits.iter().any(|d| d.txid == txid);
                self.view = Some(v);
                if seen {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                bail!("{}: the engine never saw deposit {txid}", self.tag());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Quote and accept, retrying a refused quote on later steps.
    async fn open(&mut self, w: &mut World) -> anyhow::Result<bool> {
        if self.swap_id.is_some() {
            return Ok(true);
        }
        if !self.rfq(w).await? {
            if self.rfq_tries >= 20 {
                w.log(format!(
                    "{}: gave up after {} refused quotes",
                    self.tag(),
                    self.rfq_tries
                ));
                self.acted = true;
            }
            return Ok(false);
        }
        self.accept(w).await?;
        Ok(true)
    }

    async fn act(&mut self, w: &mut World) -> anyhow::Result<()> {
        if self.acted || w.step < self.start {
            return Ok(());
        }
        let r = w.step - self.start;
        match self.scenario {
            Scenario::Happy
            | Scenario::UnderpayTolerated
            | Scenario::OverpayTolerated
            | Scenario::Underpay
            | Scenario::Overpay
            | Scenario::SeveralDeposits
            | Scenario::Dust
            | Scenario::FeeSpike
            | Scenario::StalledNode
            | Scenario::MarketJump
            | Scenario::VenueOutage
            | Scenario::Reorg => self.act_pay(w, r).await,
            Scenario::AbandonedQuote => {
                self.rfq(w).await?;
                self.acted = true;
                Ok(())
            }
            Scenario::AbandonedSwap | Scenario::LateDeposit => self.act_late(w, r).await,
            Scenario::HardwareWallet | Scenario::DoubleSpend | Scenario::Rbf => {
                self.act_hw(w, r).await
            }
        }
    }

    async fn act_pay(&mut self, w: &mut World, r: u64) -> anyhow::Result<()> {
        if r == 0 {
            match self.scenario {
                Scenario::MarketJump => {
                    if let Some(v) = &w.venue {
                        let bps: i64 = self.rng.gen_range(2000..=5000);
                        let bps = if self.rng.gen_bool(0.5) { bps } else { -bps };
                        let market = Pair::from_str("BTC/USD")?;
                        v.jump(&market, Decimal::from(bps))?;
                        w.log(format!(
                            "step {} {}: BTC/USD jumps {bps} bp",
                            w.step,
                            self.tag()
                        ));
                    } else {
                        w.log(format!("{}: no venue to move (not embedded)", self.tag()));
                    }
                }
                Scenario::VenueOutage => self.outage(w).await?,
                Scenario::FeeSpike => {
                    let to = w.btc.call_str("getnewaddress", json!([])).await?;
                    for _ in 0..20 {
                        w.btc
                            .call(
                                "sendtoaddress",
                                json!([to, "0.001", "", "", false, true, null, "unset", null, 400]),
                            )
                            .await?;
                    }
                    w.log(format!(
                        "step {} {}: 20 transactions at 400 sat/vB",
                        w.step,
                        self.tag()
                    ));
                }
                Scenario::StalledNode => {
                    w.stall_until = w.stall_until.max(w.step + 4);
                    w.log(format!(
                        "step {} {}: node stalls for 4 steps",
                        w.step,
                        self.tag()
                    ));
                }
                _ => {}
            }
        }
        if self.swap_id.is_none() {
            if !self.open(w).await? {
                return Ok(());
            }
            let (_, amount) = self.deposit()?;
            match self.scenario {
                Scenario::Underpay => {
                    self.pay(w, amount - amount / 10, None).await?;
                }
                Scenario::UnderpayTolerated => {
                    self.pay(w, amount - amount * 3 / 1000, None).await?;
                }
                Scenario::Overpay => {
                    self.pay(w, amount + amount / 10, None).await?;
                }
                Scenario::OverpayTolerated => {
                    self.pay(w, amount + amount / 50, None).await?;
                }
                Scenario::SeveralDeposits => {
                    let first = amount * 2 / 5;
                    self.pay(w, first, None).await?;
                    self.pay(w, amount - first, None).await?;
                }
                Scenario::Dust => {
                    // A stranger's "marketing" output first, then the user.
                    let (address, _) = self.deposit()?;
                    let txid = w
                        .btc
                        .call_str("sendtoaddress", json!([address, sats_str(600)]))
                        .await?;
                    let vout = w.vout_paying(&txid, &address).await?;
                    let raw = w.btc.call_str("getrawtransaction", json!([txid])).await?;
                    self.sent.push(Sent {
                        txid,
                        raw,
                        vout,
                        sats: 600,
                        role: Role::Dust,
                    });
                    w.log(format!(
                        "step {} {}: stranger sent 600 sats of dust",
                        w.step,
                        self.tag()
                    ));
                    self.pay(w, amount, None).await?;
                }
                _ => {
                    self.pay(w, amount, None).await?;
                }
            }
            if self.scenario != Scenario::Reorg {
                self.acted = true;
            }
            return Ok(());
        }
        if self.scenario == Scenario::Reorg {
            // One step after the deposit was mined: reorganise it away.
            let depth: u32 = self.rng.gen_range(1..=6);
            let tip = w.btc.call("getblockcount", json!([])).await?;
            let tip = tip
                .as_u64()
                .ok_or_else(|| anyhow!("getblockcount: {tip}"))?;
            let from = tip + 1 - u64::from(depth);
            // The transactions of the blocks about to be disconnected, in
            // order: the node returns what is still valid to its mempool,
            // and the wallets broadcast the rest again once final (a
            // reorg below a lock time evicts a transaction as non-final,
            // as in Bitcoin Core).
            let mut txs = Vec::new();
            for h in from..=tip {
                let hash = w.btc.call_str("getblockhash", json!([h])).await?;
                let block = w.btc.call("getblock", json!([hash, 2])).await?;
                for tx in block["tx"].as_array().into_iter().flatten().skip(1) {
                    if let Some(hex) = tx["hex"].as_str() {
                        txs.push(hex.to_owned());
                    }
                }
            }
            let hash = w.btc.call_str("getblockhash", json!([from])).await?;
            w.btc.call("invalidateblock", json!([hash])).await?;
            let fresh = w.btc.call_str("getnewaddress", json!([])).await?;
            w.mine(depth + 1, &fresh).await?;
            for hex in txs {
                // Already back in the mempool, or no longer valid: fine.
                let _ = w.btc.call("sendrawtransaction", json!([hex])).await;
            }
            w.log(format!(
                "step {} {}: reorg of depth {depth}",
                w.step,
                self.tag()
            ));
            self.acted = true;
        }
        Ok(())
    }

    /// The venue goes down until the engine stops quoting (its books go
    /// stale: a wall-clock time), then comes back until it quotes again,
    /// all within this step, so that what other users see does not depend
    /// on how long a step takes.
    async fn outage(&mut self, w: &mut World) -> anyhow::Result<()> {
        let Some(venue) = w.venue.clone() else {
            w.log(format!(
                "{}: no venue to take down (not embedded)",
                self.tag()
            ));
            return Ok(());
        };
        venue.go_down("simulated outage");
        let amount = sats_str(self.sats);
        let until = Instant::now() + Duration::from_secs(60);
        let code = loop {
            if let Err(e) = w.gw.rfq("BTC", "ETH", &amount).await? {
                break serde_json::to_value(e.code)?;
            }
            if Instant::now() > until {
                bail!(
                    "{}: the engine kept quoting a minute into the venue outage",
                    self.tag()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        w.log(format!(
            "step {} {}: venue down; quotes refused ({code})",
            w.step,
            self.tag()
        ));
        venue.come_back();
        let until = Instant::now() + Duration::from_secs(30);
        while w.gw.rfq("BTC", "ETH", &amount).await?.is_err() {
            if Instant::now() > until {
                bail!(
                    "{}: the engine did not quote again after the venue came back",
                    self.tag()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.log(format!(
            "step {} {}: venue back; quoting again",
            w.step,
            self.tag()
        ));
        Ok(())
    }

    async fn act_late(&mut self, w: &mut World, r: u64) -> anyhow::Result<()> {
        if self.swap_id.is_none() {
            self.open(w).await?;
            return Ok(());
        }
        if r < EXPIRY_LOOK_AFTER {
            return Ok(());
        }
        let expired = self
            .view
            .as_ref()
            .is_some_and(|v| v.status == SwapStatus::Expired);
        if !expired {
            return Ok(());
        }
        if self.scenario == Scenario::LateDeposit {
            let (_, amount) = self.deposit()?;
            let step = w.step;
            self.pay(w, amount, None).await?;
            self.paid_step = None;
            // The step depends on the wall clock (the deadline): not logged.
            let _ = step;
        }
        w.log(format!("{}: swap expired", self.tag()));
        self.acted = true;
        Ok(())
    }

    async fn act_hw(&mut self, w: &mut World, r: u64) -> anyhow::Result<()> {
        if r == 0 {
            let mut seed = [0u8; 32];
            self.rng.fill(&mut seed);
            let wallet = UserWallet::from_seed(seed)?;
            let fund = self.sats + 100_000;
            let txid = w
                .btc
                .call_str(
                    "sendtoaddress",
                    json!([wallet.receive.to_string(), sats_str(fund)]),
                )
                .await?;
            let vout = w.vout_paying(&txid, &wallet.receive.to_string()).await?;
            let raw = w.btc.call_str("getrawtransaction", json!([txid])).await?;
            self.funding = Some((txid, vout, fund, raw));
            self.wallet = Some(wallet);
            w.log(format!(
                "step {} {}: hardware wallet funded",
                w.step,
                self.tag()
            ));
            return Ok(());
        }
        if self.swap_id.is_none() {
            if !self.open(w).await? {
                return Ok(());
            }
            let (txid, vout, fund, raw) =
                self.funding.clone().ok_or_else(|| anyhow!("not funded"))?;
            let wallet = self.wallet.as_ref().ok_or_else(|| anyhow!("no wallet"))?;
            let id = self.swap_id.clone().unwrap_or_default();
            let body = json!({
                "inputs": [{
                    "txid": txid, "vout": vout, "address": wallet.receive.to_string(),
                    "amount": sats_str(fund), "previous_tx": raw,
                    "key_origin": {"fingerprint": wallet.fingerprint.to_string(),
                                   "path": wallet::RECEIVE_PATH, "pubkey": wallet.receive_pubkey}
                }],
                "change_address": wallet.change.to_string(),
                "change_key_origin": {"fingerprint": wallet.fingerprint.to_string(),
                                      "path": wallet::CHANGE_PATH, "pubkey": wallet.change_pubkey},
                "fee_rate_sat_vb": 2,
            });
            let answer =
                w.gw.psbt(&id, &body)
                    .await?
                    .map_err(|e| anyhow!("{}: PSBT refused: {}", self.tag(), e.message))?;
            let psbt = wallet::decode_psbt(answer["psbt"].as_str().unwrap_or_default())?;
            let signed = wallet.sign_and_finalize(psbt.clone())?;
            let raw_tx = wallet::raw_hex(&signed);
            let relayed = match w.gw.relay(&id, &raw_tx).await? {
                Ok(r) => r,
                Err(e) => {
                    // The node refused the user's own transaction (e.g. a
                    // reorganisation evicted the coins it spends): like a
                    // wallet user, this one gives up and the swap expires.
                    w.log(format!(
                        "step {} {}: relay refused ({}); the user gives up",
                        w.step,
                        self.tag(),
                        e.message
                    ));
                    self.acted = true;
                    return Ok(());
                }
            };
            let deposit_txid = relayed["txid"].as_str().unwrap_or_default().to_owned();
            let (address, amount) = self.deposit()?;
            let dvout = w.vout_paying(&deposit_txid, &address).await?;
            self.sent.push(Sent {
                raw: raw_tx.clone(),
                txid: deposit_txid.clone(),
                vout: dvout,
                sats: amount,
                role: Role::User,
            });
            self.paid_step = Some(w.step);
            w.log(format!(
                "step {} {}: signed PSBT relayed",
                w.step,
                self.tag()
            ));
            if self.scenario == Scenario::DoubleSpend {
                self.wait_seen(w, &deposit_txid).await?;
                let wallet = self.wallet.as_ref().ok_or_else(|| anyhow!("no wallet"))?;
                let conflict = wallet.conflicting(&psbt, 5_000)?;
                w.btc
                    .call("sendrawtransaction", json!([wallet::raw_hex(&conflict)]))
                    .await
                    .context("broadcasting the double-spend")?;
                if let Some(s) = self.sent.iter_mut().find(|s| s.txid == deposit_txid) {
                    s.role = Role::Replaced;
                }
                self.paid_step = None;
                w.log(format!(
                    "step {} {}: deposit double-spent back to the user",
                    w.step,
                    self.tag()
                ));
            }
            if self.scenario == Scenario::Rbf {
                // The wallet replaces its own deposit with a higher fee
                // (BIP125); the replacement pays the same deposit.
                self.wait_seen(w, &deposit_txid).await?;
                let wallet = self.wallet.as_ref().ok_or_else(|| anyhow!("no wallet"))?;
                let raw = wallet::raw_hex(&wallet.bumped(&psbt, 5_000)?);
                match w.gw.relay(&id, &raw).await? {
                    Ok(relayed) => {
                        let new_txid = relayed["txid"].as_str().unwrap_or_default().to_owned();
                        if let Some(s) = self.sent.iter_mut().find(|s| s.txid == deposit_txid) {
                            s.role = Role::Replaced;
                        }
                        let vout = w.vout_paying(&new_txid, &address).await?;
                        self.sent.push(Sent {
                            txid: new_txid,
                            raw,
                            vout,
                            sats: amount,
                            role: Role::User,
                        });
                        w.log(format!(
                            "step {} {}: deposit replaced (BIP125)",
                            w.step,
                            self.tag()
                        ));
                    }
                    // A wallet whose replacement is refused keeps the original.
                    Err(e) => w.log(format!(
                        "step {} {}: replacement refused ({}); the original stands",
                        w.step,
                        self.tag(),
                        e.message
                    )),
                }
            }
            self.acted = true;
        }
        Ok(())
    }

    /// Like a wallet after a reorg: broadcasts again its own deposits the
    /// node no longer has (a reorg below a transaction's lock time evicts it
    /// as non-final, as Bitcoin Core does).
    async fn rebroadcast(&mut self, w: &mut World) -> anyhow::Result<()> {
        for i in 0..self.sent.len() {
            if self.sent[i].role == Role::Replaced
                || w.btc_confirmations(&self.sent[i].txid).await?.is_some()
            {
                continue;
            }
            let raw = self.sent[i].raw.clone();
            match w.btc.call("sendrawtransaction", json!([raw])).await {
                Ok(_) => w.log(format!(
                    "step {} {}: deposit broadcast again after it left the node",
                    w.step,
                    self.tag()
                )),
                // Not final yet (lock time above the new tip): next step.
                Err(e) if e.downcast_ref::<client::RpcRefusal>().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads the swap; records the payout step.
    async fn observe(&mut self, w: &mut World) -> anyhow::Result<()> {
        let Some(id) = self.swap_id.clone() else {
            if self.acted {
                self.finished = true;
            }
            return Ok(());
        };
        let v =
            w.gw.swap(&id)
                .await?
                .map_err(|e| anyhow!("{}: swap unreadable: {}", self.tag(), e.message))?;
        if v.payout.as_ref().is_some_and(|p| p.txid.is_some()) && self.payout_step.is_none() {
            self.payout_step = Some(w.step);
            let required = u64::from(v.deposit.required_confirmations);
            let confirmed_enough = v
                .deposits
                .iter()
                .filter(|d| d.disposition == "applied" || d.disposition == "confirmed")
                .all(|d| d.confirmations >= required);
            if !confirmed_enough {
                self.early_payout = true;
            }
        }
        let deposits_final = v.deposits.iter().all(|d| final_disposition(&d.disposition));
        if self.acted && v.status.is_terminal() && deposits_final {
            if !self.finished {
                w.log(format!("{}: ends {}", self.tag(), status_name(v.status)));
            }
            self.finished = true;
        }
        self.view = Some(v);
        Ok(())
    }

    /// Whether the engine has caught up with the chain for this swap.
    async fn settled(&self, w: &World, v: &SwapView) -> anyhow::Result<bool> {
        if transient(v.status) {
            tracing::debug!("{}: engine busy ({:?})", self.tag(), v.status);
            return Ok(false);
        }
        for s in &self.sent {
            let confs = w.btc_confirmations(&s.txid).await?;
            let d = v
                .deposits
                .iter()
                .find(|d| d.txid == s.txid && d.output == s.vout);
            match (confs, d) {
                (None, None) => {}
                (None, Some(d)) => {
                    if d.disposition != "dropped" {
                        tracing::debug!(
                            "{}: {} gone from the chain, engine shows {}",
                            self.tag(),
                            s.txid,
                            d.disposition
                        );
                        return Ok(false);
                    }
                }
                (Some(_), None) => {
                    tracing::debug!("{}: engine has not seen {}", self.tag(), s.txid);
                    return Ok(false);
                }
                (Some(c), Some(d)) => {
                    if final_disposition(&d.disposition) && d.disposition != "dropped" {
                        continue;
                    }
                    if d.confirmations < c.min(6) || d.disposition == "dropped" {
                        tracing::debug!(
                            "{}: engine shows {} at {} confirmations, chain {c}",
                            self.tag(),
                            d.disposition,
                            d.confirmations
                        );
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Waits until every open swap has settled (and twice running looks the same).
async fn settle(w: &mut World, users: &mut [User]) -> anyhow::Result<()> {
    let until = Instant::now() + SETTLE_TIMEOUT;
    let mut last: Option<Vec<String>> = None;
    loop {
        let mut all = true;
        let mut snapshot = Vec::new();
        for u in users
            .iter_mut()
            .filter(|u| u.swap_id.is_some() && !u.finished)
        {
            let id = u.swap_id.clone().unwrap_or_default();
            let v = match w.gw.swap(&id).await? {
                Ok(v) => v,
                Err(e) => bail!("{}: swap unreadable: {}", u.tag(), e.message),
            };
            if !u.settled(w, &v).await? {
                all = false;
            }
            snapshot.push(format!(
                "{:?}{:?}{:?}",
                v.status,
                v.deposits
                    .iter()
                    .map(|d| (&d.disposition, d.confirmations))
                    .collect::<Vec<_>>(),
                v.payout.as_ref().map(|p| &p.status)
            ));
            u.view = Some(v);
        }
        if all && last.as_ref() == Some(&snapshot) {
            return Ok(());
        }
        if Instant::now() > until {
            w.wall.settle_timeouts += 1;
            tracing::warn!(
                step = w.step,
                "engine did not settle within {SETTLE_TIMEOUT:?}"
            );
            return Ok(());
        }
        last = Some(snapshot);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Runs a simulation and returns its report.
pub async fn run(opts: &SimOptions) -> anyhow::Result<(Report, WallStats)> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let chaos = opts.chaos > 0;
    let settings = SimEngineSettings {
        venue_seed: opts.seed,
        // A chaos kill can hold a deposit unseen for a restart's length.
        deposit_window: opts.deposit_window,
        mismatch_window: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
    };
    let dir = tempfile::tempdir().context("creating the engine's data directory")?;
    let (engine, ep) = match (&opts.external, chaos) {
        (Some(ep), false) => (Engine::External, ep.clone()),
        (Some(_), true) => bail!("--chaos needs an engine this program starts (no --engine-url)"),
        (None, false) => engine::start_in_process(dir.path(), &settings).await?,
        (None, true) => {
            let program = opts
                .swapd
                .clone()
                .or_else(engine::sibling_swapd)
                .ok_or_else(|| anyhow!("--chaos runs the swapd binary: build it (cargo build -p swapd) or pass --swapd PATH"))?;
            engine::start_child(&program, dir.path(), &settings).await?
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let gw = Gateway::new(http.clone(), &ep.engine_url);
    gw.wait_healthy(Duration::from_secs(60)).await?;
    let btc = Rpc::bitcoin(http.clone(), ep.bitcoin_rpc.clone());
    wait_rpc(&btc).await?;
    let mut w = World {
        gw,
        eth: Rpc::ethereum(http.clone(), ep.ethereum_rpc.clone()),
        btc,
        venue: engine.venue(),
        engine,
        step: 0,
        stall_until: 0,
        events: vec![],
        findings: BTreeSet::new(),
        wall: WallStats::default(),
        miner: String::new(),
        rfq_refusals: BTreeMap::new(),
    };
    let result = drive(opts, &mut rng, &mut w).await;
    w.wall.total = started.elapsed();
    w.wall.steps = w.step;
    let wall = w.wall.clone();
    w.engine.stop().await;
    result.map(|r| (r, wall))
}

async fn wait_rpc(btc: &Rpc) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    while btc.call("getblockcount", json!([])).await.is_err() {
        if Instant::now() > until {
            bail!("the Bitcoin node at {} does not answer", btc.url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn drive(opts: &SimOptions, rng: &mut StdRng, w: &mut World) -> anyhow::Result<Report> {
    // What the engine can do decides what `mixed` draws: a Bitcoin refund
    // needs Bitcoin payments, which the engine has when it offers a pair
    // paying out BTC.
    let pairs = w.gw.pairs().await?;
    let pays_btc = pairs.iter().any(|p| p.ends_with("/BTC"));
    let mut skipped = BTreeMap::new();
    let allowed: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| {
            if s.needs_btc_refund() && !pays_btc {
                skipped.insert(
                    s.name().to_owned(),
                    "needs a Bitcoin refund; the engine offers no pair paying out BTC".to_owned(),
                );
                return false;
            }
            if s.needs_venue() && w.venue.is_none() {
                skipped.insert(
                    s.name().to_owned(),
                    "moves the simulated venue, which only the in-process engine exposes"
                        .to_owned(),
                );
                return false;
            }
            true
        })
        .collect();
    if opts.scenario != ScenarioChoice::Mixed {
        skipped.clear();
    }

    let per_step = opts.users_per_step.max(1);
    let mut users: Vec<User> = (0..opts.swaps)
        .map(|i| {
            let scenario = match opts.scenario {
                ScenarioChoice::One(s) => s,
                ScenarioChoice::Mixed => scenario::draw(rng, &allowed),
            };
            let mut urng = StdRng::seed_from_u64(rng.gen());
            let sats = if scenario == Scenario::Reorg {
                urng.gen_range(100_000_000..150_000_000)
            } else {
                urng.gen_range(20_000..5_000_000)
            };
            let mut key = [0u8; 32];
            urng.fill(&mut key);
            key[0] |= 1;
            let payout_address = alloy_signer_local::PrivateKeySigner::from_slice(&key)
                .map(|k| k.address().to_checksum(None))
                .unwrap_or_default();
            User {
                index: i,
                scenario,
                start: (i / per_step) as u64 + 1,
                rng: urng,
                sats,
                payout_address,
                refund_address: None,
                wallet: None,
                funding: None,
                quote: None,
                swap_id: None,
                view: None,
                sent: vec![],
                acted: false,
                finished: false,
                rfq_tries: 0,
                paid_step: None,
                payout_step: None,
                marks: None,
                early_payout: false,
            }
        })
        .collect();
    let chaos_points: BTreeSet<u64> = {
        let last = (opts.swaps / per_step) as u64 + 3;
        let mut points = BTreeSet::new();
        let mut tries = 0;
        while (points.len() as u32) < opts.chaos && tries < 100_000 {
            points.insert(rng.gen_range(1..=last.max(1)));
            tries += 1;
        }
        points
    };
    let mut chaos_left: BTreeMap<u64, u32> = BTreeMap::new();
    if opts.chaos > 0 && !chaos_points.is_empty() {
        // More kills than steps: several at a step.
        let per = opts.chaos / chaos_points.len() as u32;
        let extra = opts.chaos % chaos_points.len() as u32;
        for (i, p) in chaos_points.iter().enumerate() {
            chaos_left.insert(*p, per + u32::from((i as u32) < extra));
        }
    }
    let mut chaos_rng = StdRng::seed_from_u64(opts.seed ^ 0x00c4_a05c_4a05);

    // Warm-up: coins for the users' wallet (the node's faucet), all of them
    // mature before the first deposit, and the blocks of the run mined to
    // an address outside it. Otherwise a deposit could spend a coinbase
    // that matured in the last blocks, and a reorg would make it immature
    // and evict the deposit (as Bitcoin Core does), which is not the
    // scenario. The engine also follows these blocks, so a reorg of depth
    // 6 stays within what it has seen.
    let faucet = w.btc.call_str("getnewaddress", json!([])).await?;
    w.mine(110, &faucet).await?;
    w.miner = UserWallet::from_seed([0x42; 32])?.receive.to_string();
    let miner = w.miner.clone();
    w.mine(101, &miner).await?;
    let mut idle = 0u64;
    let mut last_progress = Instant::now();
    let idle_wall = opts.deposit_window + Duration::from_secs(15);
    loop {
        w.step += 1;
        if let Some(v) = &w.venue {
            v.step();
        }
        for u in users.iter_mut() {
            if u.start <= w.step && !u.acted {
                u.act(w)
                    .await
                    .with_context(|| format!("{} at step {}", u.tag(), w.step))?;
            }
        }
        for u in users
            .iter_mut()
            .filter(|u| !u.finished && !u.sent.is_empty())
        {
            u.rebroadcast(w).await?;
        }
        if w.step >= w.stall_until {
            let miner = w.miner.clone();
            w.mine(1, &miner).await?;
        }
        if let Some(kills) = chaos_left.remove(&w.step) {
            for _ in 0..kills {
                let delay = Duration::from_millis(chaos_rng.gen_range(0..400));
                tokio::time::sleep(delay).await;
                if let Engine::Child(c) = &mut w.engine {
                    c.kill_and_restart()?;
                }
                w.log(format!(
                    "step {}: engine killed (SIGKILL) and restarted",
                    w.step
                ));
                w.gw.wait_healthy(Duration::from_secs(120)).await?;
                wait_rpc(&w.btc).await?;
            }
        }
        settle(w, &mut users).await?;
        let before = users.iter().filter(|u| u.finished).count();
        let step = w.step;
        for u in users.iter_mut().filter(|u| !u.finished && u.start <= step) {
            u.observe(w).await?;
        }
        let after = users.iter().filter(|u| u.finished).count();
        if after == users.len() {
            break;
        }
        let all_started = users.iter().all(|u| u.start <= w.step);
        if after > before || !all_started {
            idle = 0;
            last_progress = Instant::now();
        } else {
            idle += 1;
            // Swaps waiting for a deadline wait on the engine's wall
            // clock: pace the steps rather than mine needless blocks.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if idle > IDLE_STEPS_LIMIT && last_progress.elapsed() > idle_wall {
            break;
        }
        if let Engine::Child(c) = &mut w.engine {
            if let Some(status) = c.exited() {
                bail!("the engine exited by itself ({status}) at step {}", w.step);
            }
        }
    }
    build_report(opts, w, &users, skipped).await
}

async fn build_report(
    opts: &SimOptions,
    w: &mut World,
    users: &[User],
    skipped: BTreeMap<String, String>,
) -> anyhow::Result<Report> {
    let mut users_by_scenario = BTreeMap::new();
    let mut final_states: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut totals = BTreeMap::new();
    let mut deposits = Deposits::default();
    let mut payouts = Payouts::default();
    let mut stuck = vec![];
    let mut latencies = vec![];
    let (mut btc_in, mut eth_out, mut usd) = (0u128, 0u128, Decimal::ZERO);
    let mut gas_wei = 0u128;
    let mut hot_address: Option<String> = None;
    let mut payout_total = 0u128;
    for u in users {
        *users_by_scenario
            .entry(u.scenario.name().to_owned())
            .or_insert(0usize) += 1;
        let state = u
            .view
            .as_ref()
            .map(|v| status_name(v.status))
            .unwrap_or_else(|| "no_swap".into());
        *final_states
            .entry(u.scenario.name().to_owned())
            .or_default()
            .entry(state.clone())
            .or_default() += 1;
        *totals.entry(state.clone()).or_insert(0usize) += 1;
        let Some(v) = &u.view else { continue };
        if !u.finished {
            stuck.push(format!(
                "user {} {} stuck in {state}{}",
                u.index,
                u.scenario,
                v.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        // Every deposit sent is in the engine's books with a disposition.
        for s in &u.sent {
            deposits.sent += 1;
            let d = v
                .deposits
                .iter()
                .find(|d| d.txid == s.txid && d.output == s.vout);
            let on_chain = w.btc_confirmations(&s.txid).await?;
            match (d, on_chain) {
                (Some(d), _) => {
                    *deposits
                        .by_disposition
                        .entry(d.disposition.clone())
                        .or_default() += 1;
                    if d.disposition == "dropped" && on_chain.is_some_and(|c| c > 0) {
                        deposits.unaccounted.push(format!(
                            "user {} {}: deposit of {} sats confirmed on chain but marked dropped",
                            u.index, u.scenario, s.sats
                        ));
                    }
                    if d.amount_base_units.base_units() != u128::from(s.sats) {
                        deposits.unaccounted.push(format!(
                            "user {} {}: deposit of {} sats recorded as {}",
                            u.index, u.scenario, s.sats, d.amount_base_units
                        ));
                    }
                }
                (None, None) if s.role == Role::Replaced => {
                    *deposits
                        .by_disposition
                        .entry("replaced_unseen".into())
                        .or_default() += 1;
                }
                (None, _) => deposits.unaccounted.push(format!(
                    "user {} {}: deposit of {} sats ({:?}) not in the swap's deposits",
                    u.index, u.scenario, s.sats, s.role
                )),
            }
        }
        // The payout, on chain: the payout address holds exactly the
        // quoted amount when completed, nothing otherwise.
        let balance = quantity(
            &w.eth
                .call("eth_getBalance", json!([u.payout_address, "latest"]))
                .await?,
        )?;
        let expected = if v.status == SwapStatus::Completed {
            v.payout
                .as_ref()
                .map_or(0, |p| p.amount_base_units.base_units())
        } else {
            0
        };
        if v.status == SwapStatus::Completed {
            payouts.checked_on_chain += 1;
            let quoted = u
                .quote
                .as_ref()
                .map_or(0, |q| q.amount_out_base_units.base_units());
            if expected != quoted {
                payouts.wrong.push(format!(
                    "user {} {}: payout {expected} wei, quote said {quoted}",
                    u.index, u.scenario
                ));
            }
        }
        if balance != expected {
            payouts.wrong.push(format!(
                "user {} {} ({}): payout address holds {balance} wei, expected {expected}",
                u.index,
                u.scenario,
                status_name(v.status)
            ));
        }
        if u.early_payout {
            payouts
                .early
                .push(format!("user {} {}", u.index, u.scenario));
        }
        if let (Some(p), true) = (&v.payout, v.status == SwapStatus::Completed) {
            if let Some(txid) = &p.txid {
                let tx = w
                    .eth
                    .call("eth_getTransactionByHash", json!([txid]))
                    .await?;
                let receipt = w
                    .eth
                    .call("eth_getTransactionReceipt", json!([txid]))
                    .await?;
                let used = quantity(&receipt["gasUsed"]).unwrap_or(0);
                let price = quantity(&receipt["effectiveGasPrice"]).unwrap_or(0);
                gas_wei += used * price;
                payout_total += p.amount_base_units.base_units();
                if let Some(from) = tx["from"].as_str() {
                    hot_address.get_or_insert_with(|| from.to_owned());
                }
            }
            let inn: u128 = v
                .deposits
                .iter()
                .filter(|d| d.disposition == "applied")
                .map(|d| d.amount_base_units.base_units())
                .sum();
            btc_in += inn;
            let out = p.amount_base_units.base_units();
            eth_out += out;
            if let Some((btc_usd, eth_usd)) = u.marks {
                let inn = Decimal::from_i128_with_scale(inn as i128, 8);
                let out = Decimal::from_i128_with_scale(out as i128, 18);
                usd += inn * btc_usd - out * eth_usd;
            }
            if let (Some(paid), Some(done)) = (u.paid_step, u.payout_step) {
                latencies.push(done.saturating_sub(paid));
            }
        }
    }

    // The hot wallet's ETH, on chain: what left it is the payouts plus gas.
    let ledger = match (&hot_address, &w.engine) {
        (Some(addr), Engine::InProcess(_) | Engine::Child(_)) => {
            let bal = quantity(&w.eth.call("eth_getBalance", json!([addr, "latest"])).await?)?;
            let spent = HOT_ETH_GENESIS_WEI.saturating_sub(bal);
            let ok = spent == payout_total + gas_wei;
            Ledger {
                status: if ok { "reconciled" } else { "not_reconciled" }.into(),
                note: format!(
                    "the engine exposes no ledger yet; checked instead on chain: hot wallet ETH spent {spent} wei {} payouts {payout_total} + gas {gas_wei} wei",
                    if ok { "=" } else { "!=" }
                ),
            }
        }
        _ => Ledger {
            status: "not_available".into(),
            note: "the engine exposes no ledger yet, and no payout was made to reconcile the hot wallet against".into(),
        },
    };

    let findings: Vec<String> = stuck
        .iter()
        .cloned()
        .chain(w.findings.iter().cloned())
        .collect();
    let invariants = vec![
        Invariant {
            name: "at_most_one_payout",
            holds: payouts.wrong.is_empty(),
            detail: if payouts.wrong.is_empty() {
                format!(
                    "every payout address read on chain holds exactly its swap's one payout ({} completed, the rest nothing)",
                    payouts.checked_on_chain
                )
            } else {
                payouts.wrong.join("; ")
            },
        },
        Invariant {
            name: "payout_after_confirmations",
            holds: payouts.early.is_empty(),
            detail: if payouts.early.is_empty() {
                "no payout seen before its deposit had the required confirmations".into()
            } else {
                payouts.early.join("; ")
            },
        },
        Invariant {
            name: "every_deposit_accounted",
            holds: deposits.unaccounted.is_empty(),
            detail: if deposits.unaccounted.is_empty() {
                format!(
                    "{} deposits, each with a disposition matching the chain",
                    deposits.sent
                )
            } else {
                deposits.unaccounted.join("; ")
            },
        },
        Invariant {
            name: "no_stuck_swap",
            holds: stuck.is_empty(),
            detail: if stuck.is_empty() {
                "every swap reached a terminal state with every deposit settled".into()
            } else {
                stuck.join("; ")
            },
        },
        Invariant {
            name: "ledger_balanced",
            holds: ledger.status != "not_reconciled",
            detail: ledger.note.clone(),
        },
    ];
    let digest = sha256::Hash::hash(w.events.join("\n").as_bytes());
    Ok(Report {
        seed: opts.seed,
        scenario: opts.scenario.to_string(),
        swaps: opts.swaps,
        mode: w.engine.mode(),
        chaos_kills: match &w.engine {
            Engine::Child(c) => c.kills,
            _ => 0,
        },
        skipped,
        users_by_scenario,
        final_states,
        final_states_total: totals,
        rfq_refusals: w.rfq_refusals.clone(),
        deposits,
        payouts,
        ledger,
        latency_deposit_to_payout_steps: StepStats::of(latencies),
        pnl: Pnl {
            btc_received: proto::Amount::from_base_units(btc_in).to_decimal_string(8),
            eth_paid: proto::Amount::from_base_units(eth_out).to_decimal_string(18),
            eth_gas: proto::Amount::from_base_units(gas_wei).to_decimal_string(18),
            usd: usd.round_dp(2).to_string(),
        },
        events: w.events.len(),
        events_sha256: digest.to_string(),
        invariants,
        findings,
    })
}
