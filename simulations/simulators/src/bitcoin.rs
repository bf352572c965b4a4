//! A bitcoind-compatible regtest node: real blocks and transactions, script
//! verification, a mempool with BIP125 replacement, a faucet wallet, a
//! JSON-RPC server speaking Bitcoin Core's dialect, and crash-safe
//! persistence in a data directory.
//!
//! The chain logic lives in [`chain`] (pure), the faucet in [`wallet`]
//! (pure), persistence in `store` and the HTTP server in `rpc`.
//!
//! RPC methods: getblockchaininfo, getbestblockhash, getblockcount,
//! getblockhash, getblock (0/1/2), getblockheader, getchaintips,
//! getrawmempool, getmempoolentry, getmempoolinfo, getrawtransaction (as with
//! `-txindex=1`), gettxout, decoderawtransaction, sendrawtransaction,
//! testmempoolaccept (one transaction), estimatesmartfee, generatetoaddress,
//! generateblock, invalidateblock, reconsiderblock, getnewaddress,
//! sendtoaddress, bumpfee, listunspent, getbalance, getbalances,
//! listwallets, getnetworkinfo, uptime. Wallet methods also answer on
//! `/wallet/<name>`.
//!
//! Deliberate differences from bitcoind:
//! - Scripts verified: P2WPKH, P2SH-P2WPKH, P2WSH m-of-n multisig, P2TR key
//!   path, P2PKH. Other spends (other P2WSH scripts, bare scripts, taproot
//!   script paths) are refused with `bad-txns-nonstandard-inputs (...)`
//!   rather than interpreted.
//! - Full RBF is on (Core 28's default); [`BitcoinSim::set_full_rbf`] turns
//!   it off. No ancestor/descendant count limits, no BIP68 relative locks,
//!   no package relay; locktime finality is checked.
//! - `chainwork` and difficulty are computed; there are no peers, headers
//!   arrive only through the node's own miner.
//! - Amounts are printed exactly with eight decimals, as bitcoind does.

pub mod chain;
pub mod descriptor;
mod rpc;
mod store;
pub mod verify;
pub mod wallet;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::bip32::Xpriv;
use bitcoin::{Address, Amount, BlockHash, Network, ScriptBuf, Transaction, Txid};
use tokio_util::sync::CancellationToken;

use chain::{AcceptPlan, Chain, ChainParams, TxReject};
use store::{PersistedState, Store};
use wallet::{Wallet, WalletError};

/// Fee rate the faucet wallet pays by default, sat/vB.
pub const WALLET_SAT_PER_VB: u64 = 2;
/// Default `maxfeerate` of `sendrawtransaction`, sat/kvB (0.10 BTC/kvB).
pub const DEFAULT_MAX_SAT_PER_KVB: u64 = 10_000_000;

/// Errors of the simulated Bitcoin node.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Reading or writing the data directory failed.
    #[error("bitcoin sim data file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory holds something that does not decode.
    #[error("bitcoin sim data file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The RPC address is not a loopback address.
    #[error("bitcoin sim RPC must bind to a loopback address, not {0}")]
    NotLoopback(SocketAddr),
    /// The RPC server could not bind.
    #[error("bitcoin sim cannot bind RPC server on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The address is for another network.
    #[error("address {0} is not a regtest address")]
    WrongNetwork(String),
    /// The faucet wallet could not pay.
    #[error("faucet wallet: {0}")]
    Wallet(#[from] WalletError),
    /// The node rejected a transaction or request, with bitcoind's code and message.
    #[error("bitcoin sim rejected the request (code {code}): {message}")]
    Rejected {
        /// bitcoind's RPC error code.
        code: i64,
        /// bitcoind's message.
        message: String,
    },
    /// A mined block failed to connect (a bug in the simulator).
    #[error("mined block failed validation: {0}")]
    BadBlock(String),
    /// The node's lock was poisoned by a panic in another task.
    #[error("bitcoin sim state lock poisoned")]
    Poisoned,
}

/// Configuration of the simulated node.
#[derive(Debug, Clone)]
pub struct BitcoinSimConfig {
    /// Where blocks, mempool and wallet are kept.
    pub data_dir: PathBuf,
    /// RPC listen address (loopback only; port 0 picks a free port).
    pub rpc_addr: SocketAddr,
    /// Basic-auth user; with `rpc_password`, required on every request.
    pub rpc_user: Option<String>,
    /// Basic-auth password.
    pub rpc_password: Option<String>,
    /// Mine one block to the faucet every interval; `None` mines only on demand.
    pub block_interval: Option<Duration>,
    /// Blocks mined to the faucet on first start (101 makes one coinbase spendable).
    pub initial_blocks: u32,
}

impl BitcoinSimConfig {
    /// Regtest defaults: 127.0.0.1:18443, no auth, no auto-miner, 101 initial blocks.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BitcoinSimConfig {
            data_dir: data_dir.into(),
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 18443)),
            rpc_user: None,
            rpc_password: None,
            block_interval: None,
            initial_blocks: 101,
        }
    }
}

/// A bitcoind-style RPC error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

impl From<SimError> for RpcError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Rejected { code, message } => RpcError { code, message },
            SimError::Wallet(WalletError::InsufficientFunds) => {
                RpcError::new(-6, "Insufficient funds")
            }
            SimError::Wallet(w @ WalletError::NotInMempool(_)) => RpcError::new(-5, w.to_string()),
            SimError::Wallet(w) => RpcError::new(-4, w.to_string()),
            SimError::WrongNetwork(_) => RpcError::new(-5, "Invalid address"),
            other => RpcError::new(-1, other.to_string()),
        }
    }
}

impl From<RpcError> for SimError {
    fn from(e: RpcError) -> Self {
        SimError::Rejected {
            code: e.code,
            message: e.message,
        }
    }
}

/// Maps a mempool rejection to bitcoind's RPC error.
pub(crate) fn reject_to_rpc(r: TxReject) -> RpcError {
    match r {
        TxReject::Rejected(reason) => RpcError::new(-26, reason),
        TxReject::MissingInputs => RpcError::new(-25, "bad-txns-inputs-missingorspent"),
        TxReject::AlreadyInChain => RpcError::new(-27, "Transaction already in block chain"),
        TxReject::AlreadyInMempool => RpcError::new(-26, "txn-already-in-mempool"),
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The node's state behind its lock: chain, wallet and store.
#[derive(Debug)]
pub(crate) struct Node {
    pub chain: Chain,
    pub wallet: Wallet,
    store: Store,
    extra_nonce: u64,
}

impl Node {
    fn load(data_dir: &Path, initial_blocks: u32) -> Result<Node, SimError> {
        let (store, loaded) = Store::open(data_dir)?;
        let now = unix_now();
        let mut chain = Chain::new(ChainParams::default());
        let n_blocks = loaded.blocks.len();
        for b in loaded.blocks {
            if !chain.add_block(b) {
                tracing::warn!("stored block with unknown parent ignored");
            }
        }
        let (wallet, fresh) = match &loaded.state {
            Some(s) => {
                let master = Xpriv::from_str(&s.wallet_master).map_err(|e| SimError::Corrupt {
                    path: data_dir.join("state.json"),
                    reason: format!("wallet key: {e}"),
                })?;
                for h in &s.invalidated {
                    chain.mark_invalid(*h);
                }
                (Wallet::new(master, s.wallet_next_index), false)
            }
            None => (Wallet::random(), true),
        };
        chain.activate_best_chain(now);
        let mut node = Node {
            chain,
            wallet,
            store,
            extra_nonce: n_blocks as u64,
        };
        if fresh {
            node.persist_state()?;
        }
        for tx in loaded.mempool {
            let _ = node.chain.accept_tx(tx, now);
        }
        node.rewrite_mempool()?;
        if n_blocks == 0 && initial_blocks > 0 {
            let spk = node.wallet.mining_address().script_pubkey();
            node.mine(initial_blocks, &spk)?;
        }
        tracing::info!(
            height = node.chain.height(),
            tip = %node.chain.tip_hash(),
            mempool = node.chain.mempool_len(),
            "bitcoin sim loaded"
        );
        Ok(node)
    }

    fn persist_state(&self) -> Result<(), SimError> {
        self.store.write_state(&PersistedState {
            wallet_master: self.wallet.master().to_string(),
            wallet_next_index: self.wallet.next_index(),
            invalidated: self.chain.invalidated(),
        })
    }

    fn rewrite_mempool(&mut self) -> Result<(), SimError> {
        let txs: Vec<Transaction> = self
            .chain
            .mempool_in_order()
            .into_iter()
            .map(|e| e.tx.clone())
            .collect();
        self.store.rewrite_mempool(&txs)
    }

    /// Mines `n` blocks paying to `spk`; all are fsynced before it returns.
    pub(crate) fn mine(&mut self, n: u32, spk: &ScriptBuf) -> Result<Vec<BlockHash>, SimError> {
        let mut hashes = Vec::with_capacity(n as usize);
        for _ in 0..n {
            self.extra_nonce += 1;
            let block = self
                .chain
                .build_block(spk, unix_now() as u32, self.extra_nonce);
            self.store.append_block(&block, false)?;
            let hash = self.chain.submit_block(block).map_err(SimError::BadBlock)?;
            tracing::debug!(%hash, height = self.chain.height(), "mined block");
            hashes.push(hash);
        }
        if n > 0 {
            self.store.sync_blocks()?;
            self.rewrite_mempool()?;
        }
        Ok(hashes)
    }

    /// Mines one block with exactly `txs` (`generateblock`).
    pub(crate) fn mine_with(
        &mut self,
        spk: &ScriptBuf,
        txs: Vec<Transaction>,
    ) -> Result<BlockHash, SimError> {
        self.extra_nonce += 1;
        let block = self
            .chain
            .build_block_with(spk, txs, unix_now() as u32, self.extra_nonce);
        // Validate on a copy first: a block that fails must not be stored.
        let hash = block.block_hash();
        self.chain
            .submit_block(block.clone())
            .map_err(|e| SimError::Rejected {
                code: -25,
                message: format!("TestBlockValidity failed: {e}"),
            })?;
        self.store.append_block(&block, true)?;
        self.rewrite_mempool()?;
        Ok(hash)
    }

    /// `sendrawtransaction`: validates, admits and persists a transaction.
    pub(crate) fn send_raw(
        &mut self,
        tx: Transaction,
        max_sat_per_kvb: u64,
    ) -> Result<Txid, RpcError> {
        let plan: AcceptPlan = match self.chain.check_tx(&tx) {
            Ok(p) => p,
            Err(TxReject::AlreadyInMempool) => return Ok(tx.compute_txid()),
            Err(r) => return Err(reject_to_rpc(r)),
        };
        if max_sat_per_kvb > 0
            && u128::from(plan.fee.to_sat()) * 1000
                > u128::from(max_sat_per_kvb) * u128::from(plan.vsize)
        {
            return Err(RpcError::new(
                -25,
                "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)",
            ));
        }
        let plan = self
            .chain
            .accept_tx(tx.clone(), unix_now())
            .map_err(reject_to_rpc)?;
        self.store.append_mempool_tx(&tx).map_err(RpcError::from)?;
        tracing::debug!(txid = %plan.txid, fee = plan.fee.to_sat(), replaced = plan.replaces.len(), "accepted to mempool");
        Ok(plan.txid)
    }

    /// The faucet pays `amount` to `to`.
    pub(crate) fn send_to(
        &mut self,
        to: &ScriptBuf,
        amount: Amount,
        sat_per_vb: u64,
        subtract_fee: bool,
    ) -> Result<Txid, SimError> {
        let tx = self
            .wallet
            .build_payment(&self.chain, to, amount, sat_per_vb, subtract_fee)?;
        Ok(self.send_raw(tx, 0)?)
    }

    /// `bumpfee`: replaces a faucet transaction with a higher-fee copy.
    pub(crate) fn bump_fee(
        &mut self,
        txid: &Txid,
        sat_per_vb: Option<u64>,
    ) -> Result<(Txid, Amount, Amount), SimError> {
        let old_fee = self
            .chain
            .mempool_entry(txid)
            .map(|e| e.fee)
            .ok_or(WalletError::NotInMempool(*txid))?;
        let (tx, fee) = self.wallet.bump_fee(&self.chain, txid, sat_per_vb)?;
        Ok((self.send_raw(tx, 0)?, old_fee, fee))
    }

    /// Replaces a faucet transaction with one sending the same coins to `to`.
    pub(crate) fn double_spend(&mut self, txid: &Txid, to: &ScriptBuf) -> Result<Txid, SimError> {
        let tx = self.wallet.double_spend(&self.chain, txid, to)?;
        Ok(self.send_raw(tx, 0)?)
    }

    pub(crate) fn new_address(&mut self) -> Result<Address, SimError> {
        let a = self.wallet.new_address();
        self.persist_state()?;
        Ok(a)
    }

    pub(crate) fn invalidate(&mut self, hash: &BlockHash) -> Result<(), RpcError> {
        self.chain
            .invalidate_block(hash, unix_now())
            .map_err(|m| RpcError::new(-5, m))?;
        self.persist_state()?;
        self.rewrite_mempool()?;
        Ok(())
    }

    pub(crate) fn reconsider(&mut self, hash: &BlockHash) -> Result<(), RpcError> {
        self.chain
            .reconsider_block(hash, unix_now())
            .map_err(|m| RpcError::new(-5, m))?;
        self.persist_state()?;
        self.rewrite_mempool()?;
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    node: Mutex<Node>,
    rpc_addr: SocketAddr,
    /// Expected `Authorization` header value, if auth is on.
    auth: Option<String>,
    started: Instant,
}

impl Shared {
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Node>, SimError> {
        self.node.lock().map_err(|_| SimError::Poisoned)
    }
}

/// Handle to a running simulated bitcoind (cheap to clone).
#[derive(Debug, Clone)]
pub struct BitcoinSim {
    shared: Arc<Shared>,
}

/// Parses an address and checks that it is for regtest.
pub fn parse_regtest_address(s: &str) -> Result<Address, SimError> {
    Address::from_str(s)
        .map_err(|_| SimError::WrongNetwork(s.to_string()))?
        .require_network(Network::Regtest)
        .map_err(|_| SimError::WrongNetwork(s.to_string()))
}

impl BitcoinSim {
    /// Loads (or creates) the chain in `cfg.data_dir`, binds the RPC server
    /// and starts the auto-miner if configured. Everything stops when
    /// `shutdown` is cancelled.
    pub async fn start(
        cfg: BitcoinSimConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, SimError> {
        if !cfg.rpc_addr.ip().is_loopback() {
            return Err(SimError::NotLoopback(cfg.rpc_addr));
        }
        let node = Node::load(&cfg.data_dir, cfg.initial_blocks)?;
        let listener = tokio::net::TcpListener::bind(cfg.rpc_addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: cfg.rpc_addr,
                source,
            })?;
        let rpc_addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: cfg.rpc_addr,
            source,
        })?;
        let auth = match (&cfg.rpc_user, &cfg.rpc_password) {
            (Some(u), Some(p)) => Some(format!(
                "Basic {}",
                rpc::base64(format!("{u}:{p}").as_bytes())
            )),
            _ => None,
        };
        let shared = Arc::new(Shared {
            node: Mutex::new(node),
            rpc_addr,
            auth,
            started: Instant::now(),
        });
        let sim = BitcoinSim {
            shared: shared.clone(),
        };

        let router = rpc::router(shared);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let server =
                axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = server.await {
                tracing::error!(error = %e, "bitcoin sim RPC server failed");
            }
        });
        if let Some(interval) = cfg.block_interval {
            let miner = sim.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {
                            if let Err(e) = miner.mine(1, None).await {
                                tracing::error!(error = %e, "bitcoin sim auto-miner failed");
                            }
                        }
                    }
                }
            });
        }
        tracing::info!(url = %sim.rpc_url(), "bitcoin sim listening");
        Ok(sim)
    }

    /// The RPC URL, e.g. `http://127.0.0.1:18443`.
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.shared.rpc_addr)
    }

    /// The bound RPC address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.shared.rpc_addr
    }

    /// Always [`Network::Regtest`].
    pub fn network(&self) -> Network {
        Network::Regtest
    }

    /// Mines `n` blocks to `to` (the faucet if `None`), like `generatetoaddress`.
    pub async fn mine(&self, n: u32, to: Option<&Address>) -> Result<Vec<BlockHash>, SimError> {
        let mut node = self.shared.lock()?;
        let spk = match to {
            Some(a) => a.script_pubkey(),
            None => node.wallet.mining_address().script_pubkey(),
        };
        node.mine(n, &spk)
    }

    /// The faucet pays `amount` to `addr` (like `sendtoaddress`), returning the txid.
    pub async fn send_to_address(&self, addr: &Address, amount: Amount) -> Result<Txid, SimError> {
        let mut node = self.shared.lock()?;
        node.send_to(&addr.script_pubkey(), amount, WALLET_SAT_PER_VB, false)
    }

    /// Submits a raw transaction (like `sendrawtransaction`).
    pub async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, SimError> {
        let mut node = self.shared.lock()?;
        Ok(node.send_raw(tx.clone(), 0)?)
    }

    /// A new faucet address.
    pub async fn new_address(&self) -> Result<Address, SimError> {
        self.shared.lock()?.new_address()
    }

    /// The faucet's spendable balance.
    pub async fn balance(&self) -> Amount {
        match self.shared.lock() {
            Ok(node) => node.wallet.balance(&node.chain),
            Err(_) => Amount::ZERO,
        }
    }

    /// Height and hash of the active tip.
    pub async fn tip(&self) -> (u32, BlockHash) {
        match self.shared.lock() {
            Ok(node) => (node.chain.height(), node.chain.tip_hash()),
            Err(_) => (
                0,
                bitcoin::constants::genesis_block(Network::Regtest).block_hash(),
            ),
        }
    }

    /// Bumps the fee of an unconfirmed faucet transaction (BIP125
    /// replacement, like the wallet RPC `bumpfee`); returns the new txid.
    pub async fn bump_fee(&self, txid: &Txid) -> Result<Txid, SimError> {
        Ok(self.shared.lock()?.bump_fee(txid, None)?.0)
    }

    /// Double-spends an unconfirmed faucet transaction: the same coins, all
    /// sent to `to` with a higher fee, replacing it in the mempool. Models a
    /// payer who takes a deposit back before it confirms.
    pub async fn double_spend(&self, txid: &Txid, to: &Address) -> Result<Txid, SimError> {
        self.shared.lock()?.double_spend(txid, &to.script_pubkey())
    }

    /// Mempool policy for conflicting spends: with full RBF on (Bitcoin
    /// Core 28's default, and this node's) any unconfirmed transaction can be
    /// replaced; off, only those signalling BIP125, others are refused with
    /// `txn-mempool-conflict`. Not persisted: a restart turns it back on.
    pub async fn set_full_rbf(&self, on: bool) -> Result<(), SimError> {
        self.shared.lock()?.chain.set_full_rbf(on);
        Ok(())
    }

    /// Ids of the transactions in the mempool.
    pub async fn mempool(&self) -> Vec<Txid> {
        match self.shared.lock() {
            Ok(node) => node
                .chain
                .mempool_in_order()
                .iter()
                .map(|e| e.tx.compute_txid())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// `invalidateblock`.
    pub async fn invalidate_block(&self, hash: &BlockHash) -> Result<(), SimError> {
        Ok(self.shared.lock()?.invalidate(hash)?)
    }

    /// `reconsiderblock`.
    pub async fn reconsider_block(&self, hash: &BlockHash) -> Result<(), SimError> {
        Ok(self.shared.lock()?.reconsider(hash)?)
    }
}
