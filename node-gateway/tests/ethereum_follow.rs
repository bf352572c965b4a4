//! Against the simulated Ethereum dev node: a native transfer to a watched
//! address is confirmed to max depth, and unconfirmed when the node reverts
//! to a snapshot and builds a different chain; the typed client reads
//! what the hot wallet needs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use common::{wait_for, Events};
use infra::bus::{LocalBus, LocalConfig, SharedBus};
use infra::db::Db;
use node_gateway::{BlockTag, BroadcastError, EthereumNodeConfig, NodeGateway, NodeGatewayConfig};
use proto::event::{ChainEvent, TxStatus};
use proto::{Amount, AssetId, EthereumNetwork, Network};
use simulators::ethereum::{EthereumSim, EthereumSimConfig};
use tokio_util::sync::CancellationToken;

const NET: Network = Network::Ethereum(EthereumNetwork::Dev);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_deposit_confirmed_then_reorganised_away() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = EthereumSimConfig::new(dir.path().join("eth"));
    cfg.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let sim_stop = CancellationToken::new();
    let sim = EthereumSim::start(cfg, sim_stop.clone()).await?;
    let db = Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await?;
    let bus: SharedBus =
        std::sync::Arc::new(LocalBus::open(db.clone(), LocalConfig::default()).await?);
    let mut events = Events::open(&bus, "test").await?;

    let stop = CancellationToken::new();
    let eth = AssetId::new("ETH")?;
    let config = NodeGatewayConfig {
        bitcoin: None,
        ethereum: Some(EthereumNodeConfig {
            network: EthereumNetwork::Dev,
            rpc_url: sim.rpc_url(),
            poll_interval: Duration::from_millis(30),
            max_depth: 2,
            eth_asset: eth.clone(),
        }),
    };
    let gw = NodeGateway::start(config, db.clone(), bus.clone(), stop.clone()).await?;
    let head = sim.block_number().await;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head)).await?;

    let rpc = gw.eth_rpc().expect("ethereum configured");
    assert_eq!(rpc.chain_id().await?, 31_337);
    assert_eq!(rpc.block_number().await?, head);

    let to = Address::repeat_byte(0x42);
    let canonical = gw.watch_address(NET, &format!("{to:#x}")).await?;
    assert_eq!(canonical, to.to_checksum(None));
    let snapshot = sim.snapshot().await?;
    let wei = U256::from(1_500_000_000_000_000_000u128);
    let hash = sim.fund(to, wei).await?;
    let txid = format!("0x{}", hex::encode(hash));
    events
        .wait("deposit pending", |e| matches!(e, ChainEvent::Output { txid: t, status: TxStatus::Seen, .. } if *t == txid))
        .await?;
    sim.mine(3).await?;

    let txid_ref = txid.as_str();
    let at = |depth: u64| move |e: &ChainEvent| matches!(e, ChainEvent::Output { txid: t, status: TxStatus::Confirmed { depth: d, .. }, .. } if t == txid_ref && *d == depth);
    let first = events.wait("deposit at depth 1", at(1)).await?;
    let ChainEvent::Output {
        output,
        address,
        amount,
        asset,
        status:
            TxStatus::Confirmed {
                block_hash,
                block_height,
                ..
            },
        ..
    } = first
    else {
        unreachable!()
    };
    assert_eq!(
        (output, address.as_str(), amount, &asset),
        (
            0,
            canonical.as_str(),
            Amount::from_base_units(1_500_000_000_000_000_000),
            &eth
        )
    );
    assert_eq!(block_height, head + 1);
    events.wait("deposit at depth 2", at(2)).await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head + 3)).await?;
    events.drain(Duration::from_millis(200)).await?;
    assert!(!events.all.iter().any(at(3)), "no depth beyond max_depth");

    // The typed client agrees with the chain.
    assert_eq!(rpc.get_balance(&to, BlockTag::Latest).await?, wei);
    let receipt = rpc.get_transaction_receipt(&hash).await?.expect("mined");
    assert!(receipt.succeeded());
    assert_eq!(receipt.block_number.map(|n| n.to::<u64>()), Some(head + 1));
    let faucet = sim.faucet_address().await;
    assert!(
        rpc.get_transaction_count(&faucet, BlockTag::Pending)
            .await?
            >= 1
    );
    assert!(rpc.gas_price().await? > 0);
    let fees = rpc.fee_history(2, BlockTag::Latest, &[50]).await?;
    assert_eq!(fees.base_fee_per_gas.len(), 3);
    rpc.max_priority_fee_per_gas().await?;

    // Garbage is refused as malformed, through the handle.
    let err = gw.broadcast(NET, &[0xde, 0xad]).await.unwrap_err();
    assert!(
        matches!(
            err,
            BroadcastError::Malformed(_) | BroadcastError::Other(..)
        ),
        "{err:?}"
    );

    // The node goes back before the deposit and builds another chain.
    assert!(sim.revert(snapshot).await?);
    sim.mine(4).await?;
    events
        .wait("deposit unconfirmed", |e| {
            matches!(e, ChainEvent::Output { txid: t, status: TxStatus::Unconfirmed { block_hash: b }, .. } if *t == txid && *b == block_hash)
        })
        .await?;
    events
        .wait(
            "its block disconnected",
            |e| matches!(e, ChainEvent::BlockDisconnected { hash, .. } if *hash == block_hash),
        )
        .await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head + 4)).await?;

    stop.cancel();
    gw.stopped().await;
    sim_stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_finalized_block_is_reported_as_it_advances() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = EthereumSimConfig::new(dir.path().join("eth"));
    cfg.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let sim_stop = CancellationToken::new();
    let sim = EthereumSim::start(cfg, sim_stop.clone()).await?;
    // The simulated node finalizes 64 blocks below its head, as anvil does.
    sim.mine(70).await?;
    let db = Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await?;
    let bus: SharedBus =
        std::sync::Arc::new(LocalBus::open(db.clone(), LocalConfig::default()).await?);
    let mut events = Events::open(&bus, "test").await?;
    let stop = CancellationToken::new();
    let config = NodeGatewayConfig {
        bitcoin: None,
        ethereum: Some(EthereumNodeConfig {
            network: EthereumNetwork::Dev,
            rpc_url: sim.rpc_url(),
            poll_interval: Duration::from_millis(30),
            max_depth: 2,
            eth_asset: AssetId::new("ETH")?,
        }),
    };
    let gw = NodeGateway::start(config, db.clone(), bus.clone(), stop.clone()).await?;
    let rpc = gw.eth_rpc().expect("ethereum configured");
    for _ in 0..2 {
        let finalized = rpc
            .get_block_by_number(BlockTag::Finalized)
            .await?
            .expect("the node has a finalized block");
        let (height, hash) = (finalized.height(), format!("{:#x}", finalized.hash));
        assert_eq!(height, sim.block_number().await - 64);
        events
            .wait("finalized", |e| {
                matches!(e, ChainEvent::Finalized { height: h, hash: x, .. } if *h == height && *x == hash)
            })
            .await?;
        sim.mine(5).await?;
    }
    // Reported as it advances, in order.
    events.drain(Duration::from_millis(300)).await?;
    let finalized: Vec<u64> = events
        .all
        .iter()
        .filter_map(|e| match e {
            ChainEvent::Finalized { height, .. } => Some(*height),
            _ => None,
        })
        .collect();
    assert!(finalized.len() >= 2, "{finalized:?}");
    assert!(finalized.windows(2).all(|w| w[0] < w[1]), "{finalized:?}");
    stop.cancel();
    gw.stopped().await;
    sim_stop.cancel();
    Ok(())
}
