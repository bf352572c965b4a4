//! Chain nodes (Bitcoin Core JSON-RPC, Ethereum JSON-RPC) to chain events; broadcast.
//!
//! The node gateway is the only part of the engine that talks to chain
//! nodes. [`NodeGateway::start`] spawns one follower per configured chain;
//! each polls the healthiest of the chain's nodes ([`nodes`]; Ethereum also
//! woken by a `newHeads` websocket subscription), matches blocks (Ethereum:
//! native transfers that did not revert, ERC-20 `Transfer` logs of the
//! configured tokens) and the mempool (Ethereum: the pending pool via
//! `txpool_content`, when the node offers it)
//! against the persisted watch list, and publishes [`proto::event::ChainEvent`]s
//! on [`proto::event::topics::CHAIN_EVENTS`]: seen, confirmed at depth
//! 1..=`max_depth`, unconfirmed by a reorganisation, dropped from the mempool,
//! and the tip after each poll that moved it.
//! The handle watches addresses and transactions, broadcasts, and lends
//! out the typed RPC clients ([`BitcoinRpc`], [`EthRpc`]).
//!
//! The block logic is pure and tested on its own: [`tracker::ChainTracker`],
//! [`tracker::MempoolTracker`] and [`watch::WatchList`].

pub mod bitcoin_rpc;
pub mod eth_rpc;
mod follower;
mod heads;
pub mod nodes;
mod publish;
mod rpc;
pub mod store;
pub mod tracker;
pub mod watch;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use infra::bus::SharedBus;
use infra::db::{Db, DbError};
use proto::{Address, AddressError, AssetId, BitcoinNetwork, EthereumNetwork, Network};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use bitcoin_rpc::{BitcoinRpc, BlockchainInfo, FeeEstimate, TxOutInfo};
pub use eth_rpc::{BlockTag, EthBlock, EthReceipt, EthRpc, FeeHistory};
pub use follower::ChainTip;
pub use nodes::FailoverConfig;
pub use publish::message_for;
pub use rpc::{BroadcastError, RpcError};
pub use store::MIGRATIONS;

/// A Bitcoin Core node to follow.
#[derive(Debug, Clone)]
pub struct BitcoinNodeConfig {
    pub network: BitcoinNetwork,
    /// e.g. `http://127.0.0.1:8332`.
    pub rpc_url: String,
    pub rpc_user: Option<String>,
    pub rpc_password: Option<String>,
    /// How often to ask the node for new blocks and mempool transactions.
    pub poll_interval: Duration,
    /// Confirmations are reported up to this depth (e.g. 6).
    pub max_depth: u64,
}

/// An Ethereum node to follow.
#[derive(Debug, Clone)]
pub struct EthereumNodeConfig {
    pub network: EthereumNetwork,
    /// e.g. `http://127.0.0.1:8545`.
    pub rpc_url: String,
    pub poll_interval: Duration,
    pub max_depth: u64,
    /// The asset native transfers are reported as (normally `ETH`).
    pub eth_asset: AssetId,
}

/// Which nodes the gateway follows, one node per chain (see
/// [`ChainsConfig`] for several nodes per chain and ERC-20 tokens).
#[derive(Debug, Clone, Default)]
pub struct NodeGatewayConfig {
    pub bitcoin: Option<BitcoinNodeConfig>,
    pub ethereum: Option<EthereumNodeConfig>,
}

/// One Bitcoin Core node's JSON-RPC endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoinNode {
    /// e.g. `http://127.0.0.1:8332`.
    pub rpc_url: String,
    pub rpc_user: Option<String>,
    pub rpc_password: Option<String>,
}

/// One Ethereum node's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthereumNode {
    /// e.g. `http://127.0.0.1:8545`.
    pub rpc_url: String,
    /// e.g. `ws://127.0.0.1:8546` or `wss://node.example`: new heads arrive by
    /// an `eth_subscribe` `newHeads` subscription there; polling `rpc_url`
    /// stays the fallback.
    pub ws_url: Option<String>,
}

/// An ERC-20 token whose `Transfer`s to watched addresses are deposits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erc20Token {
    pub contract: alloy_primitives::Address,
    /// The asset its transfers are reported as (e.g. `USDC`).
    pub asset: AssetId,
    /// Decimal places of one whole token, checked against the contract's
    /// `decimals()` when the follower starts (amounts in events are base
    /// units, whatever the decimals).
    pub decimals: u8,
}

/// A Bitcoin chain followed through one or more nodes.
#[derive(Debug, Clone)]
pub struct BitcoinChainConfig {
    pub network: BitcoinNetwork,
    /// At least one; the first is followed first.
    pub nodes: Vec<BitcoinNode>,
    pub poll_interval: Duration,
    /// Confirmations are reported up to this depth (e.g. 6).
    pub max_depth: u64,
    pub failover: FailoverConfig,
}

/// An Ethereum chain followed through one or more nodes.
#[derive(Debug, Clone)]
pub struct EthereumChainConfig {
    pub network: EthereumNetwork,
    /// At least one; the first is followed first.
    pub nodes: Vec<EthereumNode>,
    pub poll_interval: Duration,
    pub max_depth: u64,
    /// The asset native transfers are reported as (normally `ETH`).
    pub eth_asset: AssetId,
    /// Token contracts whose transfers to watched addresses are deposits.
    pub tokens: Vec<Erc20Token>,
    pub failover: FailoverConfig,
}

/// Which chains the gateway follows, through which nodes.
#[derive(Debug, Clone, Default)]
pub struct ChainsConfig {
    pub bitcoin: Option<BitcoinChainConfig>,
    pub ethereum: Option<EthereumChainConfig>,
}

impl ChainsConfig {
    /// Refuses a configuration the followers cannot run with, naming the
    /// setting.
    pub fn validate(&self) -> Result<(), NodeGatewayError> {
        if let Some(b) = &self.bitcoin {
            check_follow("bitcoin", b.poll_interval, b.max_depth, b.nodes.len())?;
        }
        if let Some(e) = &self.ethereum {
            check_follow("ethereum", e.poll_interval, e.max_depth, e.nodes.len())?;
            for n in &e.nodes {
                if let Some(ws) = &n.ws_url {
                    if !ws.starts_with("ws://") && !ws.starts_with("wss://") {
                        return Err(NodeGatewayError::Config(format!(
                            "ethereum.nodes.ws_url {ws:?} is not a ws:// or wss:// URL"
                        )));
                    }
                }
            }
            let mut contracts = std::collections::HashSet::new();
            for t in &e.tokens {
                if !contracts.insert(t.contract) {
                    return Err(NodeGatewayError::Config(format!(
                        "ethereum.tokens names contract {} twice",
                        t.contract
                    )));
                }
                if t.asset == e.eth_asset {
                    return Err(NodeGatewayError::Config(format!(
                        "token {} is configured as the native asset {}",
                        t.contract, t.asset
                    )));
                }
            }
        }
        Ok(())
    }
}

impl From<BitcoinNodeConfig> for BitcoinChainConfig {
    fn from(c: BitcoinNodeConfig) -> Self {
        BitcoinChainConfig {
            network: c.network,
            nodes: vec![BitcoinNode {
                rpc_url: c.rpc_url,
                rpc_user: c.rpc_user,
                rpc_password: c.rpc_password,
            }],
            poll_interval: c.poll_interval,
            max_depth: c.max_depth,
            failover: FailoverConfig::default(),
        }
    }
}

impl From<EthereumNodeConfig> for EthereumChainConfig {
    fn from(c: EthereumNodeConfig) -> Self {
        EthereumChainConfig {
            network: c.network,
            nodes: vec![EthereumNode {
                rpc_url: c.rpc_url,
                ws_url: None,
            }],
            poll_interval: c.poll_interval,
            max_depth: c.max_depth,
            eth_asset: c.eth_asset,
            tokens: Vec::new(),
            failover: FailoverConfig::default(),
        }
    }
}

impl From<NodeGatewayConfig> for ChainsConfig {
    fn from(c: NodeGatewayConfig) -> Self {
        ChainsConfig {
            bitcoin: c.bitcoin.map(Into::into),
            ethereum: c.ethereum.map(Into::into),
        }
    }
}

/// What went wrong starting the gateway or asking it to watch something.
#[derive(Debug, thiserror::Error)]
pub enum NodeGatewayError {
    #[error("invalid node gateway configuration: {0}")]
    Config(String),
    #[error("no node is configured for network {0}")]
    NotConfigured(Network),
    #[error(transparent)]
    InvalidAddress(#[from] AddressError),
    #[error("{txid:?} is not a transaction id on {network}")]
    InvalidTxid { network: Network, txid: String },
    #[error("node gateway database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("node gateway database setup failed: {0}")]
    Migrate(#[from] DbError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// The running gateway. Cheap to clone; all clones share the followers.
#[derive(Debug, Clone)]
pub struct NodeGateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    watch: Arc<watch::WatchList>,
    bitcoin: Option<(Network, nodes::NodeSet<BitcoinRpc>)>,
    ethereum: Option<(Network, nodes::NodeSet<EthRpc>)>,
    tips: follower::SharedTips,
    tasks: TaskTracker,
}

fn check_follow(
    what: &str,
    poll_interval: Duration,
    max_depth: u64,
    nodes: usize,
) -> Result<(), NodeGatewayError> {
    if nodes == 0 {
        return Err(NodeGatewayError::Config(format!(
            "{what}.nodes must name at least one node"
        )));
    }
    if poll_interval.is_zero() {
        return Err(NodeGatewayError::Config(format!(
            "{what}.poll_interval must be more than zero"
        )));
    }
    if max_depth == 0 {
        return Err(NodeGatewayError::Config(format!(
            "{what}.max_depth must be at least 1"
        )));
    }
    Ok(())
}

impl NodeGateway {
    /// Applies the gateway's migrations, loads the watch list and spawns a
    /// follower per configured node. The followers run until `shutdown` is
    /// cancelled (see [`NodeGateway::stopped`]); a node that is down is
    /// retried, not an error here.
    pub async fn start(
        config: impl Into<ChainsConfig>,
        db: Db,
        bus: SharedBus,
        shutdown: CancellationToken,
    ) -> Result<NodeGateway, NodeGatewayError> {
        let config: ChainsConfig = config.into();
        config.validate()?;
        db.migrate(&MIGRATIONS).await?;

        let watch = Arc::new(watch::WatchList::new());
        let mut loaded = 0usize;
        for row in store::load_watches(&db).await? {
            let Ok(network) = Network::from_str(&row.network) else {
                tracing::warn!(network = %row.network, "watched row for an unknown network ignored");
                continue;
            };
            match row.kind.as_str() {
                "address" => match Address::parse(network, &row.value) {
                    Ok(a) => {
                        watch.add_address(network, &a);
                        loaded += 1;
                    }
                    Err(e) => tracing::warn!(error = %e, "watched address ignored"),
                },
                "tx" => {
                    watch.add_txid(network, &row.value);
                    loaded += 1;
                }
                other => tracing::warn!(kind = other, "watched row of unknown kind ignored"),
            }
        }
        tracing::info!(watches = loaded, "node gateway watch list loaded");

        let tips: follower::SharedTips = Arc::new(RwLock::new(HashMap::new()));
        let tasks = TaskTracker::new();
        let publisher = publish::Publisher::new(bus, shutdown.clone());

        let bitcoin = match &config.bitcoin {
            None => None,
            Some(c) => {
                let network = Network::Bitcoin(c.network);
                let mut rpcs = Vec::with_capacity(c.nodes.len());
                for n in &c.nodes {
                    rpcs.push(Arc::new(BitcoinRpc::new(
                        &n.rpc_url,
                        n.rpc_user.as_deref(),
                        n.rpc_password.as_deref(),
                    )?));
                }
                let set = nodes::NodeSet::new(rpcs);
                let asset =
                    AssetId::new("BTC").map_err(|e| NodeGatewayError::Config(e.to_string()))?;
                let f = follower::Follower {
                    finalized: None,
                    finalized_asked_at: None,
                    source: follower::BitcoinSource {
                        network,
                        nodes: nodes::NodePool::new(set.clone(), c.failover),
                        watch: watch.clone(),
                        asset,
                        mempool: tracker::MempoolTracker::new(network),
                    },
                    tracker: tracker::ChainTracker::new(
                        network,
                        c.max_depth,
                        follower::keep_for(c.max_depth),
                    ),
                    db: db.clone(),
                    publisher: publisher.clone(),
                    tips: tips.clone(),
                    poll_interval: c.poll_interval,
                    wake: None,
                    shutdown: shutdown.clone(),
                };
                tasks.spawn(f.run());
                Some((network, set))
            }
        };
        let ethereum = match &config.ethereum {
            None => None,
            Some(c) => {
                let network = Network::Ethereum(c.network);
                let mut rpcs = Vec::with_capacity(c.nodes.len());
                for n in &c.nodes {
                    rpcs.push(Arc::new(EthRpc::new(&n.rpc_url)?));
                }
                let set = nodes::NodeSet::new(rpcs);
                let wake = Arc::new(tokio::sync::Notify::new());
                for url in c.nodes.iter().filter_map(|n| n.ws_url.clone()) {
                    tasks.spawn(heads::follow_new_heads(url, wake.clone(), shutdown.clone()));
                }
                let f = follower::Follower {
                    finalized: None,
                    finalized_asked_at: None,
                    source: follower::EthSource {
                        network,
                        nodes: nodes::NodePool::new(set.clone(), c.failover),
                        watch: watch.clone(),
                        asset: c.eth_asset.clone(),
                        tokens: c.tokens.clone(),
                        tokens_checked: false,
                        mempool: tracker::MempoolTracker::new(network),
                        pool_supported: true,
                    },
                    tracker: tracker::ChainTracker::new(
                        network,
                        c.max_depth,
                        follower::keep_for(c.max_depth),
                    ),
                    db: db.clone(),
                    publisher: publisher.clone(),
                    tips: tips.clone(),
                    poll_interval: c.poll_interval,
                    wake: Some(wake),
                    shutdown: shutdown.clone(),
                };
                tasks.spawn(f.run());
                Some((network, set))
            }
        };
        tasks.close();
        Ok(NodeGateway {
            inner: Arc::new(Inner {
                db,
                watch,
                bitcoin,
                ethereum,
                tips,
                tasks,
            }),
        })
    }

    fn check_configured(&self, network: Network) -> Result<(), NodeGatewayError> {
        let ok = self
            .inner
            .bitcoin
            .as_ref()
            .is_some_and(|(n, _)| *n == network)
            || self
                .inner
                .ethereum
                .as_ref()
                .is_some_and(|(n, _)| *n == network);
        if ok {
            Ok(())
        } else {
            Err(NodeGatewayError::NotConfigured(network))
        }
    }

    /// Watches payments to `address` on `network`. Returns the address as
    /// chain events spell it (Bitcoin as encoded, Ethereum EIP-55). The
    /// watch is persisted and active before this returns.
    pub async fn watch_address(
        &self,
        network: Network,
        address: &str,
    ) -> Result<String, NodeGatewayError> {
        self.check_configured(network)?;
        let parsed = Address::parse(network, address)?;
        let canonical = parsed.to_string();
        store::insert_watch(
            &self.inner.db,
            network,
            store::WatchKind::Address,
            &canonical,
        )
        .await?;
        self.inner.watch.add_address(network, &parsed);
        tracing::debug!(%network, address = %canonical, "watching address");
        Ok(canonical)
    }

    /// Watches the fate of transaction `txid` (the engine's own payouts,
    /// refunds, sweeps): seen, confirmed, unconfirmed, dropped. Call it
    /// before broadcasting. Returns the txid as chain events spell it.
    pub async fn watch_tx(&self, network: Network, txid: &str) -> Result<String, NodeGatewayError> {
        self.check_configured(network)?;
        let canonical =
            canonical_txid(network, txid).ok_or_else(|| NodeGatewayError::InvalidTxid {
                network,
                txid: txid.to_owned(),
            })?;
        store::insert_watch(&self.inner.db, network, store::WatchKind::Tx, &canonical).await?;
        self.inner.watch.add_txid(network, &canonical);
        tracing::debug!(%network, txid = %canonical, "watching transaction");
        Ok(canonical)
    }

    /// Broadcasts a signed, serialised transaction; returns its txid.
    /// `Err(e)` with `e.is_already_known()` means the node already has it.
    pub async fn broadcast(
        &self,
        network: Network,
        raw_tx: &[u8],
    ) -> Result<String, BroadcastError> {
        let span = tracing::info_span!("node_gateway.broadcast", %network, bytes = raw_tx.len());
        tracing::Instrument::instrument(self.broadcast_inner(network, raw_tx), span).await
    }

    async fn broadcast_inner(
        &self,
        network: Network,
        raw_tx: &[u8],
    ) -> Result<String, BroadcastError> {
        let result = match (network, &self.inner.bitcoin, &self.inner.ethereum) {
            (Network::Bitcoin(_), Some((n, set)), _) if *n == network => {
                self.watch_spends(network, raw_tx);
                set.active()
                    .send_raw_transaction_hex(&hex::encode(raw_tx))
                    .await
                    .map(|t| t.to_string())
            }
            (Network::Ethereum(_), _, Some((n, set))) if *n == network => set
                .active()
                .send_raw_transaction(raw_tx)
                .await
                .map(|h| format!("0x{}", hex::encode(h))),
            _ => return Err(BroadcastError::NoNode(network.to_string())),
        };
        match result {
            Ok(txid) => {
                tracing::info!(%txid, "transaction broadcast");
                Ok(txid)
            }
            Err(RpcError::Broadcast(e)) => {
                tracing::warn!(error = %e, "broadcast rejected");
                Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %e, "broadcast failed");
                Err(BroadcastError::Unavailable(e.to_string()))
            }
        }
    }

    /// A watched Bitcoin transaction about to be broadcast: from now on the
    /// followers find it by the outpoints it spends instead of hashing every
    /// transaction they see (see [`watch::WatchList::add_spend`]).
    fn watch_spends(&self, network: Network, raw_tx: &[u8]) {
        let Ok(tx) = bitcoin::consensus::deserialize::<bitcoin::Transaction>(raw_tx) else {
            return; // The node will say what is wrong with it.
        };
        if self
            .inner
            .watch
            .watches_txid(network, &tx.compute_txid().to_string())
        {
            self.inner.watch.add_spend(network, &tx);
        }
    }

    /// The client of the Bitcoin node followed now (fee estimates, outputs,
    /// raw calls).
    pub fn bitcoin_rpc(&self) -> Option<Arc<BitcoinRpc>> {
        self.inner.bitcoin.as_ref().map(|(_, s)| s.active().clone())
    }

    /// The client of the Ethereum node followed now (nonces, fees, balances,
    /// receipts).
    pub fn eth_rpc(&self) -> Option<Arc<EthRpc>> {
        self.inner
            .ethereum
            .as_ref()
            .map(|(_, s)| s.active().clone())
    }

    /// The last block the gateway processed (and published) on `network`.
    pub fn tip(&self, network: Network) -> Option<ChainTip> {
        self.inner
            .tips
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&network)
            .cloned()
    }

    /// Waits until the followers have stopped (after shutdown was cancelled).
    pub async fn stopped(&self) {
        self.inner.tasks.wait().await;
    }
}

/// The canonical spelling of a txid: Bitcoin's display hex, Ethereum's
/// `0x` + lower-case hex. `None` when `txid` is not one.
pub fn canonical_txid(network: Network, txid: &str) -> Option<String> {
    let t = txid.trim();
    match network {
        Network::Bitcoin(_) => bitcoin::Txid::from_str(t).ok().map(|x| x.to_string()),
        Network::Ethereum(_) => alloy_primitives::B256::from_str(t)
            .ok()
            .filter(|_| t.len() == 66 && t.starts_with("0x"))
            .map(|h| format!("0x{}", hex::encode(h))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(nodes: Vec<EthereumNode>, tokens: Vec<Erc20Token>) -> ChainsConfig {
        ChainsConfig {
            bitcoin: None,
            ethereum: Some(EthereumChainConfig {
                network: EthereumNetwork::Dev,
                nodes,
                poll_interval: Duration::from_secs(1),
                max_depth: 3,
                eth_asset: AssetId::new("ETH").unwrap(),
                tokens,
                failover: FailoverConfig::default(),
            }),
        }
    }

    fn node(ws: Option<&str>) -> EthereumNode {
        EthereumNode {
            rpc_url: "http://127.0.0.1:8545".into(),
            ws_url: ws.map(str::to_owned),
        }
    }

    fn token(byte: u8, asset: &str) -> Erc20Token {
        Erc20Token {
            contract: alloy_primitives::Address::repeat_byte(byte),
            asset: AssetId::new(asset).unwrap(),
            decimals: 6,
        }
    }

    #[test]
    fn configurations_are_checked_with_the_setting_named() {
        let cases: Vec<(ChainsConfig, Option<&str>)> = vec![
            (eth(vec![node(None)], vec![token(1, "USDC")]), None),
            (
                eth(vec![node(Some("ws://127.0.0.1:8546")), node(None)], vec![]),
                None,
            ),
            (eth(vec![], vec![]), Some("ethereum.nodes")),
            (
                eth(vec![node(Some("http://127.0.0.1:8546"))], vec![]),
                Some("ws_url"),
            ),
            (eth(vec![node(Some("wss://node.example"))], vec![]), None),
            (
                eth(vec![node(None)], vec![token(1, "USDC"), token(1, "USDT")]),
                Some("twice"),
            ),
            (
                eth(vec![node(None)], vec![token(1, "ETH")]),
                Some("native asset"),
            ),
        ];
        for (config, want) in cases {
            match (config.validate(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) if e.to_string().contains(w) => {}
                (got, want) => panic!("{config:?}: got {got:?}, want {want:?}"),
            }
        }
        let one_node = ChainsConfig::from(NodeGatewayConfig {
            bitcoin: Some(BitcoinNodeConfig {
                network: BitcoinNetwork::Regtest,
                rpc_url: "http://127.0.0.1:18443".into(),
                rpc_user: None,
                rpc_password: None,
                poll_interval: Duration::ZERO,
                max_depth: 6,
            }),
            ethereum: None,
        });
        assert!(one_node
            .validate()
            .is_err_and(|e| e.to_string().contains("poll_interval")));
    }
}
