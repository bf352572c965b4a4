//! An Ethereum dev node (a JSON-RPC subset, anvil-flavoured): accounts,
//! EIP-1559 blocks with real header hashes whose transactions execute in an
//! in-process EVM (revm, Cancun rules), a pool with geth's admission rules
//! and messages, a faucet holding anvil's first dev key, ERC-20 test tokens
//! deployed at start, and persistence of every step to a data directory.
//!
//! The chain logic is in [`chain`] (pure), execution in `evm` (revm over a
//! read-only view of the chain's state), the ERC-20 `TestToken` in
//! [`token`]; persistence is an append-only event log (`store`) that
//! restart and `evm_revert` replay, re-executing every transaction
//! deterministically (each block hash is checked); the HTTP server is `rpc`.
//!
//! RPC methods: web3_clientVersion, net_version, net_listening, eth_chainId,
//! eth_blockNumber, eth_getBlockByNumber, eth_getBlockByHash,
//! eth_getBlockReceipts, eth_getBlockTransactionCountByNumber,
//! eth_getBalance (historical too), eth_getTransactionCount (latest,
//! pending, historical), eth_sendRawTransaction, eth_sendTransaction (from
//! the faucet only; gas estimated when not given), eth_getTransactionByHash,
//! eth_getTransactionReceipt (status, contractAddress, logs, logsBloom),
//! eth_gasPrice, eth_maxPriorityFeePerGas, eth_feeHistory, eth_estimateGas
//! (binary search; revert is error code 3 with the revert data), eth_call
//! (at a block; revert is error code 3 with the revert data, as geth),
//! eth_getCode, eth_getStorageAt, eth_getLogs (address or list of
//! addresses, topics with null wildcards and OR-lists, fromBlock/toBlock or
//! blockHash), eth_syncing, eth_accounts, txpool_content, evm_mine,
//! anvil_mine / hardhat_mine, anvil_setBalance / hardhat_setBalance,
//! evm_snapshot / evm_revert (contract state included). Tags: latest,
//! pending (= latest), earliest, safe (head - 32), finalized (head - 64).
//!
//! Deliberate differences from geth/anvil: execution follows Cancun, but
//! headers carry no blob-gas or beacon-root fields; blob and set-code
//! (EIP-7702) transactions are refused; future nonces are refused (`nonce
//! too high`) rather than queued; `stateRoot` is a keccak of accounts, code
//! hashes and storage, not a trie root, and keeps touched empty accounts;
//! eth_call and eth_estimateGas take no state overrides and cap gas at the
//! block gas limit; eth_getLogs clamps a range end beyond the head to the
//! head; snapshots are not kept across restarts.

pub mod chain;
mod evm;
mod rpc;
mod store;
pub mod token;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use tokio_util::sync::CancellationToken;

use chain::{EthChain, Event, TxError, DEFAULT_CHAIN_ID, SUGGESTED_TIP, TRANSFER_GAS};
use evm::CallRequest;
use store::EventLog;
pub use token::{DeployedToken, TokenConfig};

/// Anvil's first dev account key (well known; test networks only). The
/// node's faucet signs with it.
pub const FAUCET_KEY_HEX: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Balance of the faucet at genesis: 1,000,000 ETH.
pub fn faucet_genesis_balance() -> U256 {
    U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18u64))
}

/// Errors of the simulated Ethereum node.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Reading or writing the data directory failed.
    #[error("ethereum sim data file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory holds something that does not replay.
    #[error("ethereum sim data file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The RPC address is not loopback.
    #[error("ethereum sim RPC must bind to a loopback address, not {0}")]
    NotLoopback(SocketAddr),
    /// The RPC server could not bind.
    #[error("ethereum sim cannot bind RPC server on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A transaction was refused, with geth's message.
    #[error("ethereum sim rejected the transaction: {0}")]
    Rejected(#[from] TxError),
    /// Signing with the faucet key failed.
    #[error("faucet signing failed: {0}")]
    Signing(String),
    /// The node's lock was poisoned by a panic in another task.
    #[error("ethereum sim state lock poisoned")]
    Poisoned,
    /// A configured token could not be deployed.
    #[error("ethereum sim could not deploy token {symbol}: {reason}")]
    TokenDeploy {
        /// The token's symbol.
        symbol: String,
        /// What went wrong.
        reason: String,
    },
}

/// Configuration of the simulated node.
#[derive(Debug, Clone)]
pub struct EthereumSimConfig {
    /// Where the event log is kept.
    pub data_dir: PathBuf,
    /// RPC listen address (loopback only; port 0 picks a free port).
    pub rpc_addr: SocketAddr,
    /// Chain id (31337 by default, like anvil).
    pub chain_id: u64,
    /// Mine a block every interval; `None` mines only on demand.
    pub block_interval: Option<Duration>,
    /// Mine a block for every accepted transaction (anvil's default mode).
    pub automine: bool,
    /// Prefunded accounts at genesis (the faucet is always funded too).
    /// Ignored when the data directory already holds a chain.
    pub genesis_alloc: Vec<(Address, U256)>,
    /// ERC-20 tokens (TestToken) the faucet deploys at start, at its next
    /// nonces; a token already on the chain (same name, symbol and
    /// decimals, created by the faucet) is found again, not redeployed.
    pub tokens: Vec<TokenConfig>,
}

impl EthereumSimConfig {
    /// Defaults: 127.0.0.1:8545, chain 31337, no automine, no interval.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EthereumSimConfig {
            data_dir: data_dir.into(),
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 8545)),
            chain_id: DEFAULT_CHAIN_ID,
            block_interval: None,
            automine: false,
            genesis_alloc: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The node's state behind its lock.
#[derive(Debug)]
pub(crate) struct EthNode {
    pub chain: EthChain,
    events: Vec<Event>,
    log: EventLog,
    snapshots: Vec<(u64, usize)>,
    next_snapshot: u64,
    faucet: PrivateKeySigner,
    automine: bool,
    tokens: Vec<DeployedToken>,
}

fn replay(events: &[Event], path: &Path) -> Result<EthChain, SimError> {
    let Some(Event::Genesis {
        chain_id,
        timestamp,
        alloc,
    }) = events.first()
    else {
        return Err(SimError::Corrupt {
            path: path.to_path_buf(),
            reason: "log does not start with genesis".into(),
        });
    };
    let mut chain = EthChain::genesis(*chain_id, *timestamp, alloc);
    for (i, ev) in events.iter().enumerate().skip(1) {
        chain.apply(ev).map_err(|reason| SimError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("event {i}: {reason}"),
        })?;
    }
    Ok(chain)
}

impl EthNode {
    fn load(cfg: &EthereumSimConfig) -> Result<EthNode, SimError> {
        let faucet: PrivateKeySigner = FAUCET_KEY_HEX
            .parse()
            .map_err(|e| SimError::Signing(format!("faucet key: {e}")))?;
        let (mut log, mut events) = EventLog::open(&cfg.data_dir)?;
        if events.is_empty() {
            let mut alloc = cfg.genesis_alloc.clone();
            if !alloc.iter().any(|(a, _)| *a == faucet.address()) {
                alloc.push((faucet.address(), faucet_genesis_balance()));
            }
            let genesis = Event::Genesis {
                chain_id: cfg.chain_id,
                timestamp: unix_now(),
                alloc,
            };
            log.append(&genesis)?;
            events.push(genesis);
        }
        let chain = replay(&events, log.path())?;
        if chain.chain_id() != cfg.chain_id {
            tracing::warn!(
                stored = chain.chain_id(),
                configured = cfg.chain_id,
                "data dir holds another chain id; keeping the stored chain"
            );
        }
        tracing::info!(
            head = chain.head_number(),
            pending = chain.pool().count(),
            "ethereum sim loaded"
        );
        let mut node = EthNode {
            chain,
            events,
            log,
            snapshots: Vec::new(),
            next_snapshot: 1,
            faucet,
            automine: cfg.automine,
            tokens: Vec::new(),
        };
        node.deploy_tokens(&cfg.tokens)?;
        Ok(node)
    }

    /// Finds each configured token among the faucet's contracts, deploys
    /// the missing ones and mines them into a block.
    fn deploy_tokens(&mut self, configs: &[TokenConfig]) -> Result<(), SimError> {
        let faucet = self.faucet.address();
        let head = self.chain.head_number();
        let mut found: Vec<Option<Address>> = Vec::new();
        for cfg in configs {
            let existing = (0..self.chain.account(&faucet).nonce)
                .map(|n| faucet.create(n))
                .find(|a| !found.contains(&Some(*a)) && self.token_matches(*a, cfg, head));
            found.push(existing);
        }
        let deployed = found.contains(&None);
        for (cfg, slot) in configs.iter().zip(found.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let deploy_err = |reason: String| SimError::TokenDeploy {
                symbol: cfg.symbol.clone(),
                reason,
            };
            let input = token::creation_code(cfg).map_err(|e| deploy_err(e.to_string()))?;
            let req = CallRequest {
                from: Some(faucet),
                input: input.clone(),
                ..Default::default()
            };
            let gas = evm::estimate_gas(&self.chain, head, &req)
                .map_err(|e| deploy_err(e.to_string()))?;
            let nonce = self.chain.pending_nonce(&faucet);
            self.sign_and_send(TxKind::Create, U256::ZERO, input, gas)?;
            let address = faucet.create(nonce);
            tracing::info!(symbol = %cfg.symbol, %address, "deploying token");
            *slot = Some(address);
        }
        if deployed && !self.automine {
            self.mine(1)?;
        }
        let found: Vec<DeployedToken> = configs
            .iter()
            .zip(found)
            .filter_map(|(cfg, a)| {
                a.map(|address| DeployedToken {
                    config: cfg.clone(),
                    address,
                })
            })
            .collect();
        let head = self.chain.head_number();
        for t in &found {
            if !self.token_matches(t.address, &t.config, head) {
                return Err(SimError::TokenDeploy {
                    symbol: t.config.symbol.clone(),
                    reason: format!("no matching contract at {} after deployment", t.address),
                });
            }
        }
        self.tokens = found;
        Ok(())
    }

    /// Whether `a` holds a TestToken with `cfg`'s name, symbol and decimals.
    fn token_matches(&self, a: Address, cfg: &TokenConfig, at: u64) -> bool {
        if self.chain.code_view(&a, Some(at)).is_none() {
            return false;
        }
        let call = |sig: &str| {
            let req = CallRequest {
                to: Some(a),
                input: token::no_args_calldata(sig),
                ..Default::default()
            };
            evm::call_output(&self.chain, at, &req).ok()
        };
        let string = |sig: &str| call(sig).and_then(|r| evm::decode_abi_string(&r));
        string("name()").as_deref() == Some(cfg.name.as_str())
            && string("symbol()").as_deref() == Some(cfg.symbol.as_str())
            && call("decimals()").and_then(|r| token::decode_u256(&r))
                == Some(U256::from(cfg.decimals))
    }

    fn record(&mut self, ev: Event) -> Result<(), SimError> {
        self.log.append(&ev)?;
        self.events.push(ev);
        Ok(())
    }

    /// Admits a raw transaction, persists it, and mines it if automining.
    pub(crate) fn send_raw(&mut self, raw: &[u8]) -> Result<B256, SimError> {
        let hash = self.chain.add_raw(raw)?;
        self.record(Event::Tx {
            raw: Bytes::copy_from_slice(raw),
        })?;
        tracing::debug!(%hash, "transaction admitted");
        if self.automine {
            self.mine(1)?;
        }
        Ok(hash)
    }

    /// Mines `n` blocks.
    pub(crate) fn mine(&mut self, n: u64) -> Result<(), SimError> {
        for _ in 0..n {
            let hash = self.chain.mine_block(unix_now());
            let timestamp = self.chain.head().header.timestamp;
            let ev = Event::Block { timestamp, hash };
            self.log.append_unsynced(&ev)?;
            self.events.push(ev);
        }
        self.log.sync()
    }

    pub(crate) fn set_balance(&mut self, a: Address, wei: U256) -> Result<(), SimError> {
        self.chain.set_balance(a, wei);
        self.record(Event::SetBalance {
            address: a,
            balance: wei,
        })
    }

    pub(crate) fn fund(&mut self, to: Address, wei: U256) -> Result<B256, SimError> {
        self.sign_and_send(TxKind::Call(to), wei, Bytes::new(), TRANSFER_GAS)
    }

    /// Signs an EIP-1559 transaction with the faucet key and submits it.
    pub(crate) fn sign_and_send(
        &mut self,
        to: TxKind,
        value: U256,
        input: Bytes,
        gas_limit: u64,
    ) -> Result<B256, SimError> {
        let tx = TxEip1559 {
            chain_id: self.chain.chain_id(),
            nonce: self.chain.pending_nonce(&self.faucet.address()),
            gas_limit,
            max_fee_per_gas: 2 * u128::from(self.chain.next_base_fee()) + SUGGESTED_TIP,
            max_priority_fee_per_gas: SUGGESTED_TIP,
            to,
            value,
            access_list: Default::default(),
            input,
        };
        let sig = self
            .faucet
            .sign_hash_sync(&tx.signature_hash())
            .map_err(|e| SimError::Signing(e.to_string()))?;
        let envelope = TxEnvelope::from(tx.into_signed(sig));
        self.send_raw(&envelope.encoded_2718())
    }

    pub(crate) fn snapshot(&mut self) -> u64 {
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        self.snapshots.push((id, self.events.len()));
        id
    }

    /// Returns the chain to snapshot `id` (which, like anvil, is consumed).
    pub(crate) fn revert(&mut self, id: u64) -> Result<bool, SimError> {
        let Some(pos) = self.snapshots.iter().position(|(s, _)| *s == id) else {
            return Ok(false);
        };
        let len = self.snapshots[pos].1;
        self.snapshots.truncate(pos);
        self.events.truncate(len);
        self.chain = replay(&self.events, self.log.path())?;
        self.log.rewrite(&self.events)?;
        tracing::info!(head = self.chain.head_number(), "reverted to snapshot");
        Ok(true)
    }

    pub(crate) fn faucet_address(&self) -> Address {
        self.faucet.address()
    }
}

#[derive(Debug)]
pub(crate) struct EthShared {
    node: Mutex<EthNode>,
    rpc_addr: SocketAddr,
}

impl EthShared {
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, EthNode>, SimError> {
        self.node.lock().map_err(|_| SimError::Poisoned)
    }
}

/// Handle to a running simulated Ethereum node (cheap to clone).
#[derive(Debug, Clone)]
pub struct EthereumSim {
    shared: Arc<EthShared>,
}

impl EthereumSim {
    /// Loads (or creates) the chain, binds the RPC server and starts the
    /// interval miner if configured; all stop when `shutdown` is cancelled.
    pub async fn start(
        cfg: EthereumSimConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, SimError> {
        if !cfg.rpc_addr.ip().is_loopback() {
            return Err(SimError::NotLoopback(cfg.rpc_addr));
        }
        let node = EthNode::load(&cfg)?;
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
        let shared = Arc::new(EthShared {
            node: Mutex::new(node),
            rpc_addr,
        });
        let sim = EthereumSim {
            shared: shared.clone(),
        };
        let router = rpc::router(shared);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let server =
                axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = server.await {
                tracing::error!(error = %e, "ethereum sim RPC server failed");
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
                            if let Err(e) = miner.mine(1).await {
                                tracing::error!(error = %e, "ethereum sim interval miner failed");
                            }
                        }
                    }
                }
            });
        }
        tracing::info!(url = %sim.rpc_url(), "ethereum sim listening");
        Ok(sim)
    }

    /// The RPC URL, e.g. `http://127.0.0.1:8545`.
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.shared.rpc_addr)
    }

    /// Mines `n` blocks.
    pub async fn mine(&self, n: u64) -> Result<(), SimError> {
        self.shared.lock()?.mine(n)
    }

    /// Latest balance of `a` in wei.
    pub async fn balance(&self, a: Address) -> U256 {
        self.shared
            .lock()
            .map(|n| n.chain.account(&a).balance)
            .unwrap_or_default()
    }

    /// Sends `wei` from the faucet to `to` with a real signed transfer.
    pub async fn fund(&self, to: Address, wei: U256) -> Result<B256, SimError> {
        self.shared.lock()?.fund(to, wei)
    }

    /// Submits a raw EIP-2718 transaction.
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256, SimError> {
        self.shared.lock()?.send_raw(raw)
    }

    /// Head block number.
    pub async fn block_number(&self) -> u64 {
        self.shared
            .lock()
            .map(|n| n.chain.head_number())
            .unwrap_or(0)
    }

    /// The faucet's address (anvil's first dev account).
    pub async fn faucet_address(&self) -> Address {
        self.shared
            .lock()
            .map(|n| n.faucet_address())
            .unwrap_or(Address::ZERO)
    }

    /// The configured tokens and their addresses, in configuration order.
    /// An `evm_revert` to before their deployment removes the contracts;
    /// the next start deploys them again.
    pub async fn tokens(&self) -> Vec<DeployedToken> {
        self.shared
            .lock()
            .map(|n| n.tokens.clone())
            .unwrap_or_default()
    }

    /// `evm_snapshot`: an id to return to with [`EthereumSim::revert`].
    pub async fn snapshot(&self) -> Result<u64, SimError> {
        Ok(self.shared.lock()?.snapshot())
    }

    /// `evm_revert`: drops every block and transaction since the snapshot.
    pub async fn revert(&self, id: u64) -> Result<bool, SimError> {
        self.shared.lock()?.revert(id)
    }
}
