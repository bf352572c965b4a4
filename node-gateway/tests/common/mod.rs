//! Shared setup of the node gateway's integration tests: a simulated
//! bitcoind, the event bus (a LocalBus on a temporary SQLite database, or a
//! KafkaBus on the broker in `TEST_KAFKA_BROKERS` with topics private to the
//! test), and a reader of the chain-events topic that deduplicates by event
//! id like a consumer.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use async_trait::async_trait;
use infra::bus::{
    BusError, EventBus, KafkaBus, KafkaConfig, LocalBus, LocalConfig, Message, SharedBus,
    Subscription,
};
use infra::db::Db;
use node_gateway::{BitcoinNodeConfig, NodeGateway, NodeGatewayConfig};
use proto::event::{topics, ChainEvent, Envelope, TxStatus};
use proto::{BitcoinNetwork, Network};
use simulators::bitcoin::{BitcoinSim, BitcoinSimConfig};
use tokio_util::sync::CancellationToken;

pub const NET: Network = Network::Bitcoin(BitcoinNetwork::Regtest);
pub const USER: &str = "engine";
pub const PASSWORD: &str = "s3cret";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: BitcoinSim,
    pub sim_stop: CancellationToken,
    pub db: Db,
    pub bus: SharedBus,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.sim_stop.cancel();
    }
}

/// Which bus a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Local,
    Kafka,
}

/// A bus whose topic names carry a suffix unique to one test, so tests on
/// the shared broker never read each other's (or earlier runs') events.
struct PrivateTopics {
    inner: SharedBus,
    suffix: String,
}

#[async_trait]
impl EventBus for PrivateTopics {
    async fn publish(&self, topic: &str, message: Message) -> Result<(), BusError> {
        self.inner
            .publish(&format!("{topic}-{}", self.suffix), message)
            .await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.inner
            .subscribe(&format!("{topic}-{}", self.suffix), group)
            .await
    }
}

/// The Kafka bus on `TEST_KAFKA_BROKERS`, with topics private to this call.
pub fn kafka_bus() -> anyhow::Result<SharedBus> {
    let brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_default();
    if brokers.trim().is_empty() {
        bail!(
            "TEST_KAFKA_BROKERS is not set: start a local broker with `eval \"$(scripts/kafka.sh)\"` \
             and run the tests again"
        );
    }
    let mut config = KafkaConfig::new(brokers);
    config.default_partitions = 4;
    config.publish_timeout = Duration::from_secs(15);
    config.session_timeout = Duration::from_secs(6);
    Ok(Arc::new(PrivateTopics {
        inner: Arc::new(KafkaBus::connect(config)?),
        suffix: uuid::Uuid::new_v4().simple().to_string(),
    }))
}

/// The bus of kind `bus` (a LocalBus lives in `db`).
pub async fn open_bus(bus: Bus, db: &Db) -> anyhow::Result<SharedBus> {
    Ok(match bus {
        Bus::Local => Arc::new(
            LocalBus::open(
                db.clone(),
                LocalConfig {
                    poll_interval: Duration::from_millis(20),
                    ..LocalConfig::default()
                },
            )
            .await?,
        ),
        Bus::Kafka => kafka_bus()?,
    })
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub async fn env() -> anyhow::Result<Env> {
    env_on(Bus::Local).await
}

pub async fn env_on(bus: Bus) -> anyhow::Result<Env> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let mut cfg = BitcoinSimConfig::new(dir.path().join("bitcoind"));
    cfg.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.rpc_user = Some(USER.into());
    cfg.rpc_password = Some(PASSWORD.into());
    let sim_stop = CancellationToken::new();
    let sim = BitcoinSim::start(cfg, sim_stop.clone()).await?;
    let url = format!("sqlite:{}", dir.path().join("engine.db").display());
    let db = Db::connect(&url).await?;
    let bus = open_bus(bus, &db).await?;
    Ok(Env {
        dir,
        sim,
        sim_stop,
        db,
        bus,
    })
}

pub fn config(sim: &BitcoinSim, max_depth: u64) -> NodeGatewayConfig {
    NodeGatewayConfig {
        bitcoin: Some(BitcoinNodeConfig {
            network: BitcoinNetwork::Regtest,
            rpc_url: sim.rpc_url(),
            rpc_user: Some(USER.into()),
            rpc_password: Some(PASSWORD.into()),
            poll_interval: Duration::from_millis(30),
            max_depth,
        }),
        ethereum: None,
    }
}

/// Starts a gateway and waits until it has followed the node's tip.
pub async fn start_gateway(
    env: &Env,
    max_depth: u64,
) -> anyhow::Result<(NodeGateway, CancellationToken)> {
    let stop = CancellationToken::new();
    let gw = NodeGateway::start(
        config(&env.sim, max_depth),
        env.db.clone(),
        env.bus.clone(),
        stop.clone(),
    )
    .await?;
    let (height, hash) = env.sim.tip().await;
    wait_for(|| {
        gw.tip(NET)
            .is_some_and(|t| t.height == u64::from(height) && t.hash == hash.to_string())
    })
    .await?;
    Ok((gw, stop))
}

pub async fn wait_for(mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..1500 {
        if cond() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("condition not met within 30 s")
}

/// Reads `chain-events` as one consumer group, skipping duplicates and
/// keeping everything read. Order holds only among events of one key (one
/// partition), so waits search everything received so far.
pub struct Events {
    sub: Box<dyn Subscription>,
    ids: HashSet<String>,
    pub all: Vec<ChainEvent>,
}

impl Events {
    pub async fn open(bus: &SharedBus, group: &str) -> anyhow::Result<Self> {
        Ok(Events {
            sub: bus.subscribe(topics::CHAIN_EVENTS, group).await?,
            ids: HashSet::new(),
            all: Vec::new(),
        })
    }

    /// Reads the next new event into [`Events::all`]; `false` after `wait`
    /// without one.
    async fn read(&mut self, wait: Duration) -> anyhow::Result<bool> {
        loop {
            let Ok(d) = tokio::time::timeout(wait, self.sub.next()).await else {
                return Ok(false);
            };
            let d = d?;
            self.sub.commit(&d).await?;
            let env: Envelope<ChainEvent> = serde_json::from_slice(&d.message.payload)?;
            assert_eq!(
                d.message.id,
                env.id.to_string(),
                "message id is the event id"
            );
            assert_eq!(env.id, env.payload.event_id());
            assert_eq!(d.message.key, env.key);
            if self.ids.insert(d.message.id.clone()) {
                self.all.push(env.payload);
                return Ok(true);
            }
        }
    }

    /// The first event received that `want` accepts, reading up to 30 s more
    /// (a Kafka consumer joins its group in a few seconds).
    pub async fn wait(
        &mut self,
        what: &str,
        want: impl Fn(&ChainEvent) -> bool,
    ) -> anyhow::Result<ChainEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.all.iter().find(|e| want(e)) {
                return Ok(e.clone());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.read(left).await? {
                bail!("no event {what} within 30 s; received: {:#?}", self.all);
            }
        }
    }

    /// Reads whatever arrives within `quiet` of the last event.
    pub async fn drain(&mut self, quiet: Duration) -> anyhow::Result<()> {
        while self.read(quiet).await? {}
        Ok(())
    }

    /// The statuses of the output events of `txid`, in publish order.
    pub fn output_statuses(&self, txid: &str) -> Vec<TxStatus> {
        self.all
            .iter()
            .filter_map(|e| output_status(e, txid))
            .cloned()
            .collect()
    }
}

/// The status of an output event for `txid`, else `None`.
pub fn output_status<'a>(e: &'a ChainEvent, txid: &str) -> Option<&'a TxStatus> {
    match e {
        ChainEvent::Output {
            txid: t, status, ..
        } if t == txid => Some(status),
        _ => None,
    }
}

pub fn tx_status<'a>(e: &'a ChainEvent, txid: &str) -> Option<&'a TxStatus> {
    match e {
        ChainEvent::Transaction {
            txid: t, status, ..
        } if t == txid => Some(status),
        _ => None,
    }
}

pub fn confirmed_at(s: Option<&TxStatus>, hash: &str, want_depth: u64) -> bool {
    matches!(s, Some(TxStatus::Confirmed { block_hash, depth, .. }) if block_hash == hash && *depth == want_depth)
}

pub fn is_connected(e: &ChainEvent, hash: &str) -> bool {
    matches!(e, ChainEvent::BlockConnected { hash: h, .. } if h == hash)
}

/// A TCP proxy to `upstream` until its token is cancelled, which also cuts
/// every connection through it; returns its `http://` URL.
pub async fn proxy(upstream: SocketAddr) -> anyhow::Result<(String, CancellationToken)> {
    let (addr, stop) = proxy_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await?;
    Ok((format!("http://{addr}"), stop))
}

/// A TCP proxy listening on `listen` (port 0: any free port) to `upstream`.
pub async fn proxy_on(
    listen: SocketAddr,
    upstream: SocketAddr,
) -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = tokio::select! {
                _ = s.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
            };
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = s.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    Ok((addr, stop))
}
