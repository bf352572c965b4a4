//! Several Bitcoin nodes: the node followed is killed mid-run and the
//! gateway fails over to another with nothing missed and nothing emitted
//! twice; a node far behind the others is never followed. The two "nodes"
//! of the first test are TCP proxies in front of one simulated bitcoind, so
//! they share a chain as redundant nodes do; killing a proxy kills that
//! node for the gateway.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::Amount as Sats;
use common::*;
use node_gateway::{BitcoinChainConfig, BitcoinNode, ChainsConfig, FailoverConfig, NodeGateway};
use proto::event::{ChainEvent, TxStatus};
use proto::BitcoinNetwork;
use simulators::bitcoin::{BitcoinSim, BitcoinSimConfig};
use tokio_util::sync::CancellationToken;

fn node(url: &str) -> BitcoinNode {
    BitcoinNode {
        rpc_url: url.to_owned(),
        rpc_user: Some(USER.into()),
        rpc_password: Some(PASSWORD.into()),
    }
}

fn chains(nodes: Vec<BitcoinNode>, max_depth: u64) -> ChainsConfig {
    ChainsConfig {
        bitcoin: Some(BitcoinChainConfig {
            network: BitcoinNetwork::Regtest,
            nodes,
            poll_interval: Duration::from_millis(30),
            max_depth,
            failover: FailoverConfig {
                max_lag_blocks: 2,
                stall_after: Duration::from_secs(2),
                check_timeout: Duration::from_millis(500),
            },
        }),
        ethereum: None,
    }
}

/// The hashes of the connected blocks, in publish order.
fn connected(events: &Events) -> Vec<String> {
    events
        .all
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockConnected { hash, .. } => Some(hash.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_over_with_nothing_missed() -> anyhow::Result<()> {
    a_killed_node_fails_over_with_nothing_missed_on(Bus::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_over_with_nothing_missed_on_kafka() -> anyhow::Result<()> {
    a_killed_node_fails_over_with_nothing_missed_on(Bus::Kafka).await
}

async fn a_killed_node_fails_over_with_nothing_missed_on(bus: Bus) -> anyhow::Result<()> {
    let env = env_on(bus).await?;
    let mut events = Events::open(&env.bus, "test").await?;
    let (url_a, kill_a) = proxy(env.sim.rpc_addr()).await?;
    let (url_b, kill_b) = proxy(env.sim.rpc_addr()).await?;
    let stop = CancellationToken::new();
    let gw = NodeGateway::start(
        chains(vec![node(&url_a), node(&url_b)], 3),
        env.db.clone(),
        env.bus.clone(),
        stop.clone(),
    )
    .await?;
    let (h0, tip0) = env.sim.tip().await;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.hash == tip0.to_string())).await?;
    assert_eq!(gw.bitcoin_rpc().expect("bitcoin").url(), url_a);

    let addr = env.sim.new_address().await?;
    gw.watch_address(NET, &addr.to_string()).await?;
    let d = env
        .sim
        .send_to_address(&addr, Sats::from_sat(30_000_000))
        .await?
        .to_string();
    events
        .wait("deposit seen", |e| {
            matches!(output_status(e, &d), Some(TxStatus::Seen))
        })
        .await?;
    let b1 = env.sim.mine(1, None).await?[0].to_string();
    events
        .wait("deposit at depth 1", |e| {
            confirmed_at(output_status(e, &d), &b1, 1)
        })
        .await?;

    // The followed node dies; the chain goes on.
    kill_a.cancel();
    let more = env.sim.mine(2, None).await?;
    let b3 = more[1].to_string();
    events
        .wait("deposit at depth 3", |e| {
            confirmed_at(output_status(e, &d), &b1, 3)
        })
        .await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.hash == b3)).await?;
    assert_eq!(gw.bitcoin_rpc().expect("bitcoin").url(), url_b);
    events.drain(Duration::from_millis(300)).await?;

    let h1 = u64::from(h0) + 1;
    let c = |depth| TxStatus::Confirmed {
        block_height: h1,
        block_hash: b1.clone(),
        depth,
    };
    assert_eq!(
        events.output_statuses(&d),
        vec![TxStatus::Seen, c(1), c(2), c(3)]
    );
    let blocks = connected(&events);
    assert_eq!(
        blocks,
        vec![
            tip0.to_string(),
            b1.clone(),
            more[0].to_string(),
            b3.clone()
        ],
        "every block once, none skipped"
    );
    assert!(!events
        .all
        .iter()
        .any(|e| matches!(e, ChainEvent::BlockDisconnected { .. })));

    stop.cancel();
    gw.stopped().await;
    kill_b.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_is_never_followed() -> anyhow::Result<()> {
    let env = env().await?;
    let mut events = Events::open(&env.bus, "test").await?;
    // A second node, 10 blocks behind the first, listed first.
    let mut cfg = BitcoinSimConfig::new(env.dir.path().join("behind"));
    cfg.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.rpc_user = Some(USER.into());
    cfg.rpc_password = Some(PASSWORD.into());
    let behind = BitcoinSim::start(cfg, env.sim_stop.clone()).await?;
    env.sim.mine(10, None).await?;
    let (h_behind, _) = behind.tip().await;
    let (h, tip) = env.sim.tip().await;
    assert_eq!(h, h_behind + 10);

    let stop = CancellationToken::new();
    let gw = NodeGateway::start(
        chains(vec![node(&behind.rpc_url()), node(&env.sim.rpc_url())], 3),
        env.db.clone(),
        env.bus.clone(),
        stop.clone(),
    )
    .await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.hash == tip.to_string())).await?;
    let next = env.sim.mine(1, None).await?[0].to_string();
    wait_for(|| gw.tip(NET).is_some_and(|t| t.hash == next)).await?;
    events.drain(Duration::from_millis(300)).await?;
    assert_eq!(connected(&events), vec![tip.to_string(), next]);
    let heights: HashSet<u64> = events
        .all
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockConnected { height, .. } => Some(*height),
            _ => None,
        })
        .collect();
    assert!(heights.iter().all(|x| *x >= u64::from(h)), "{heights:?}");
    assert_eq!(gw.bitcoin_rpc().expect("bitcoin").url(), env.sim.rpc_url());
    stop.cancel();
    gw.stopped().await;
    Ok(())
}
