//! Embedded mode: the whole engine in one process on SQLite, the durable
//! in-process bus, a simulated venue and simulated Bitcoin and Ethereum
//! nodes (served over their real JSON-RPC interfaces on loopback).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hot_wallet::keys::Keyring;
use hot_wallet::{HotWalletConfig, HotWalletDeps};
use infra::bus::{LocalBus, LocalConfig, SharedBus};
use infra::db::Db;
use liquidity::LiquidityApi;
use node_gateway::{BitcoinNodeConfig, EthereumNodeConfig, NodeGateway, NodeGatewayConfig};
use proto::event::topics;
use proto::{
    Amount, AssetId, AssetKind, AssetSpec, Assets, BitcoinNetwork, EthereumNetwork, Network, Pair,
};
use simulators::bitcoin::{BitcoinSim, BitcoinSimConfig};
use simulators::ethereum::{EthereumSim, EthereumSimConfig};
use simulators::venue::SimVenue;
use state_machine::machine::Policy;
use state_machine::store::SwapStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapters::{LiquidityExecution, NodeChains};

/// Settings of the embedded engine. `Default` is what `cargo run` uses.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    pub gateway_listen: SocketAddr,
    pub bitcoin_rpc_listen: SocketAddr,
    pub ethereum_rpc_listen: SocketAddr,
    /// The simulated Bitcoin chain mines a block this often.
    pub bitcoin_block_interval: Option<Duration>,
    /// The simulated Ethereum chain mines a block this often (it also mines
    /// one per transaction).
    pub ethereum_block_interval: Option<Duration>,
    /// Mine an Ethereum block for every transaction.
    pub ethereum_automine: bool,
    /// Node polling interval.
    pub poll_interval: Duration,
    /// How long a user has to deposit after accepting.
    pub deposit_window: Duration,
    /// ETH the hot wallet starts with on the simulated chain, in wei.
    pub hot_eth_genesis_wei: u128,
    /// BTC the treasury sends the hot wallet's inventory address on the
    /// first start, as this many outputs of `hot_btc_output_sats` each
    /// (several outputs let payouts run side by side while change waits for
    /// its confirmation).
    pub hot_btc_outputs: u32,
    pub hot_btc_output_sats: u64,
    /// The bearer token of the desk API (`SWAPD_DESK_TOKEN`); `None`: a
    /// random one for this run ([`Embedded::desk_token`]).
    pub desk_token: Option<String>,
    /// The gateway's rate limits and CORS origins.
    pub gateway_limits: gateway::Limits,
    /// How partners' webhooks are retried.
    pub gateway_webhooks: gateway::WebhookConfig,
    /// Seed of the simulated venue's price paths; `None`: a new market
    /// each start.
    pub venue_seed: Option<u64>,
    /// The venue's price paths step every tick by themselves; when false
    /// they move only on [`Embedded::venue`]`.step()` (the books are still
    /// republished every tick, so they do not go stale).
    pub venue_autostep: bool,
    /// Minimum time the user has to decide after an amount mismatch before
    /// the deposit is refunded; `None`: the policy's default.
    pub mismatch_decision_window: Option<Duration>,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            data_dir: PathBuf::from("data"),
            gateway_listen: ([127, 0, 0, 1], 8080).into(),
            bitcoin_rpc_listen: ([127, 0, 0, 1], 18443).into(),
            ethereum_rpc_listen: ([127, 0, 0, 1], 8545).into(),
            bitcoin_block_interval: Some(Duration::from_secs(10)),
            ethereum_block_interval: Some(Duration::from_secs(2)),
            ethereum_automine: true,
            poll_interval: Duration::from_millis(200),
            deposit_window: Duration::from_secs(30 * 60),
            hot_eth_genesis_wei: 10_000 * 10u128.pow(18),
            hot_btc_outputs: 20,
            hot_btc_output_sats: 250_000_000,
            desk_token: None,
            gateway_limits: gateway::Limits::default(),
            gateway_webhooks: gateway::WebhookConfig::default(),
            venue_seed: None,
            venue_autostep: true,
            mismatch_decision_window: None,
        }
    }
}

/// A running embedded engine.
#[derive(Debug)]
pub struct Embedded {
    pub gateway_addr: SocketAddr,
    pub bitcoin_rpc_url: String,
    pub ethereum_rpc_url: String,
    pub bitcoin: BitcoinSim,
    pub ethereum: EthereumSim,
    /// The simulated venue liquidity prices from (scenarios move it, jump
    /// it, take it down).
    pub venue: Arc<SimVenue>,
    pub hot_wallet: hot_wallet::HotWallet,
    /// The node gateway the services share.
    pub nodes: NodeGateway,
    /// The desk API's bearer token (configured or generated for this run).
    pub desk_token: String,
    /// Whether `desk_token` was generated (so the binary prints it).
    pub desk_token_generated: bool,
    /// How the gateway was started and what it talks to: enough to start
    /// another gateway instance on the same database and bus.
    pub gateway_config: gateway::GatewayConfig,
    pub gateway_deps: gateway::GatewayDeps,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

impl Embedded {
    /// Stops every task and waits for them (signing and broadcasting
    /// finish; nothing is aborted mid-step).
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await;
    }
}

pub const BITCOIN: BitcoinNetwork = BitcoinNetwork::Regtest;
pub const ETHEREUM: EthereumNetwork = EthereumNetwork::Dev;

/// The assets embedded mode trades.
pub fn assets() -> Assets {
    Assets::new([
        AssetSpec {
            id: AssetId::new("BTC").expect("ticker"),
            network: Network::Bitcoin(BITCOIN),
            kind: AssetKind::Native,
            decimals: 8,
        },
        AssetSpec {
            id: AssetId::new("ETH").expect("ticker"),
            network: Network::Ethereum(ETHEREUM),
            kind: AssetKind::Native,
            decimals: 18,
        },
    ])
}

/// The swap policy of embedded mode (documented in README).
pub fn policy() -> Policy {
    Policy {
        // 1 confirmation below 0.01 BTC-equivalent base units, 2 up to 1 BTC, 3 above.
        confirmations: vec![
            (Amount::ZERO, 1),
            (Amount::from_base_units(1_000_000), 2),
            (Amount::from_base_units(100_000_000), 3),
        ],
        payout_confirmations: 1,
        underpay_tolerance_bps: 50,
        overpay_tolerance_bps: 500,
        dust_threshold: Amount::from_base_units(1_000),
        mismatch_decision_window_secs: 15 * 60,
    }
}

/// The hot wallet's limits in embedded mode: a payment over them waits for
/// the desk's approval (README).
pub fn payout_limits() -> std::collections::BTreeMap<AssetId, hot_wallet::PayoutLimit> {
    let btc = 100_000_000u128;
    let eth = 10u128.pow(18);
    [("BTC", 2 * btc, 20 * btc), ("ETH", 60 * eth, 600 * eth)]
        .into_iter()
        .map(|(asset, per_payment, per_day)| {
            (
                AssetId::new(asset).expect("ticker"),
                hot_wallet::PayoutLimit {
                    per_payment: Amount::from_base_units(per_payment),
                    per_day: Amount::from_base_units(per_day),
                },
            )
        })
        .collect()
}

/// On the first start, the treasury (the simulated node's faucet) sends the
/// hot wallet its Bitcoin inventory and mines it into a block. A marker file
/// in the data directory records that it was done.
async fn fund_hot_wallet(
    cfg: &EmbeddedConfig,
    node: &BitcoinSim,
    hot_wallet: &hot_wallet::HotWallet,
) -> anyhow::Result<()> {
    let marker = cfg.data_dir.join("hot-wallet-funded");
    if marker.exists() || cfg.hot_btc_outputs == 0 {
        return Ok(());
    }
    let address: bitcoin::Address = hot_wallet
        .btc_inventory_address()
        .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()?
        .require_network(node.network())?;
    for _ in 0..cfg.hot_btc_outputs {
        node.send_to_address(&address, bitcoin::Amount::from_sat(cfg.hot_btc_output_sats))
            .await
            .map_err(|e| anyhow::anyhow!("treasury transfer: {e}"))?;
    }
    node.mine(1, None)
        .await
        .map_err(|e| anyhow::anyhow!("mining the treasury transfer: {e}"))?;
    std::fs::write(&marker, b"")?;
    Ok(())
}

/// Starts the embedded engine.
pub async fn start(cfg: EmbeddedConfig) -> anyhow::Result<Embedded> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let assets = assets();

    let db_path = cfg.data_dir.join("engine.db");
    let db = Db::connect(&format!("sqlite:{}", db_path.display()))
        .await
        .context("opening the engine database")?;
    let local = LocalBus::open(db.clone(), LocalConfig::default())
        .await
        .context("opening the in-process bus")?;
    local
        .ensure_topics(&[
            (topics::CHAIN_EVENTS, 4),
            (topics::SWAP_EVENTS, 4),
            (hot_wallet::SWAP_ACTIONS, 4),
        ])
        .await
        .context("creating bus topics")?;
    let bus: SharedBus = Arc::new(local.clone());
    let store = SwapStore::open(db.clone())
        .await
        .context("opening the swap store")?;

    // The hot wallet's encrypted keystore; its passphrase comes from
    // SWAPD_HOT_WALLET_PASSPHRASE, else a development default (README).
    let seed_path = cfg.data_dir.join("hot-wallet.seed");
    let keystore_passphrase = hot_wallet::keys::embedded_passphrase();
    let hot_eth = Keyring::open_or_create(
        &seed_path,
        &keystore_passphrase,
        BITCOIN,
        hot_wallet::keys::KdfParams::DEFAULT,
    )
    .context("loading the hot wallet's keys")?
    .eth_signer(0)
    .context("deriving the hot Ethereum account")?
    .address();

    let mut btc_cfg = BitcoinSimConfig::new(cfg.data_dir.join("bitcoin"));
    btc_cfg.rpc_addr = cfg.bitcoin_rpc_listen;
    btc_cfg.block_interval = cfg.bitcoin_block_interval;
    // Eleven mature coinbases (550 BTC) for the faucet: the treasury's
    // top-up of the hot wallet and users' deposits come from it.
    btc_cfg.initial_blocks = 111;
    let bitcoin = BitcoinSim::start(btc_cfg, shutdown.clone())
        .await
        .context("starting the simulated Bitcoin node")?;

    let mut eth_cfg = EthereumSimConfig::new(cfg.data_dir.join("ethereum"));
    eth_cfg.rpc_addr = cfg.ethereum_rpc_listen;
    eth_cfg.chain_id = ETHEREUM.chain_id();
    eth_cfg.block_interval = cfg.ethereum_block_interval;
    eth_cfg.automine = cfg.ethereum_automine;
    eth_cfg.genesis_alloc = vec![(
        hot_eth,
        alloy_primitives::U256::from(cfg.hot_eth_genesis_wei),
    )];
    let ethereum = EthereumSim::start(eth_cfg, shutdown.clone())
        .await
        .context("starting the simulated Ethereum node")?;

    let nodes = NodeGateway::start(
        NodeGatewayConfig {
            bitcoin: Some(BitcoinNodeConfig {
                network: BITCOIN,
                rpc_url: bitcoin.rpc_url(),
                rpc_user: None,
                rpc_password: None,
                poll_interval: cfg.poll_interval,
                max_depth: 6,
            }),
            ethereum: Some(EthereumNodeConfig {
                network: ETHEREUM,
                rpc_url: ethereum.rpc_url(),
                poll_interval: cfg.poll_interval,
                max_depth: 6,
                eth_asset: AssetId::new("ETH").expect("ticker"),
            }),
        },
        db.clone(),
        bus.clone(),
        shutdown.clone(),
    )
    .await
    .context("starting the node gateway")?;

    let (liquidity, venue) =
        crate::liquidity::start(&cfg, assets.clone(), &store, shutdown.clone(), &tracker)
            .await
            .context("starting liquidity")?;

    let hot_wallet = hot_wallet::start(
        HotWalletConfig {
            seed_path,
            keystore_passphrase,
            bitcoin_network: BITCOIN,
            ethereum_network: ETHEREUM,
            assets: assets.clone(),
            policy: {
                let mut p = policy();
                if let Some(w) = cfg.mismatch_decision_window {
                    p.mismatch_decision_window_secs =
                        i64::try_from(w.as_secs()).unwrap_or(i64::MAX);
                }
                p
            },
            deposit_window: cfg.deposit_window,
            tick_interval: Duration::from_secs(1),
            eth_max_fee_per_gas_cap: 500_000_000_000,
            btc_min_spend_confirmations: 1,
            btc_max_fee_rate_sat_per_vb: 500,
            btc_max_fee_sats: 1_000_000,
            payment_retry_interval: Duration::from_secs(2),
            payout_limits: payout_limits(),
        },
        HotWalletDeps {
            store: store.clone(),
            bus: bus.clone(),
            chains: Arc::new(NodeChains(nodes.clone())),
            execution: Arc::new(LiquidityExecution(liquidity.clone())),
        },
        shutdown.clone(),
        &tracker,
    )
    .await
    .context("starting the hot wallet")?;

    fund_hot_wallet(&cfg, &bitcoin, &hot_wallet)
        .await
        .context("funding the hot wallet's Bitcoin inventory")?;
    let (desk_token, desk_token_generated) = match cfg.desk_token.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => (t.to_owned(), false),
        _ => (uuid::Uuid::new_v4().simple().to_string(), true),
    };
    let ops = gateway::ops::Ops::new(
        (*liquidity).clone(),
        store.clone(),
        Arc::new(crate::adapters::EngineProbes {
            bus: local,
            nodes: nodes.clone(),
            networks: vec![Network::Bitcoin(BITCOIN), Network::Ethereum(ETHEREUM)],
        }),
        Arc::new(crate::adapters::LiquidityPanels(liquidity.clone())),
        desk_token.clone(),
    );

    let btc = AssetId::new("BTC").expect("ticker");
    let eth = AssetId::new("ETH").expect("ticker");
    let gateway_config = gateway::GatewayConfig {
        listen: cfg.gateway_listen,
        assets,
        pairs: vec![
            Pair::new(btc.clone(), eth.clone()).expect("pair"),
            Pair::new(eth, btc).expect("pair"),
        ],
        price_interval: Duration::from_millis(250),
        instance_id: "gateway-embedded".into(),
        max_body_bytes: 64 * 1024,
        limits: cfg.gateway_limits.clone(),
        webhooks: cfg.gateway_webhooks.clone(),
    };
    let gateway_deps = gateway::GatewayDeps {
        liquidity: liquidity as Arc<dyn LiquidityApi>,
        hot_wallet: Arc::new(hot_wallet.clone()),
        chains: Arc::new(crate::adapters::RelayChains(nodes.clone())),
        bus,
        db: db.clone(),
        // Push, email and SMS go to the log in embedded mode.
        notifier: Arc::new(gateway::LogNotifier),
        ops: Some(ops),
    };
    let gateway_addr = gateway::run(
        gateway_config.clone(),
        gateway_deps.clone(),
        shutdown.clone(),
        &tracker,
    )
    .await
    .context("starting the gateway")?;

    Ok(Embedded {
        gateway_addr,
        bitcoin_rpc_url: bitcoin.rpc_url(),
        ethereum_rpc_url: ethereum.rpc_url(),
        bitcoin,
        ethereum,
        venue,
        hot_wallet,
        nodes,
        desk_token,
        desk_token_generated,
        gateway_config,
        gateway_deps,
        shutdown,
        tracker,
    })
}
