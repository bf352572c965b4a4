//! Restarting the gateway: blocks mined while it was down are connected
//! from the persisted cursor with every confirmation they bring, and a
//! reorganisation that happened while it was down is walked back with its
//! deposits unconfirmed.

mod common;

use std::time::Duration;

use bitcoin::Amount as Sats;
use common::*;
use proto::event::{ChainEvent, TxStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_blocks_and_a_missed_reorg_are_caught_up_after_restart() -> anyhow::Result<()> {
    missed_blocks_and_a_missed_reorg_are_caught_up_after_restart_on(Bus::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_blocks_and_a_missed_reorg_are_caught_up_after_restart_on_kafka(
) -> anyhow::Result<()> {
    missed_blocks_and_a_missed_reorg_are_caught_up_after_restart_on(Bus::Kafka).await
}

async fn missed_blocks_and_a_missed_reorg_are_caught_up_after_restart_on(
    bus: Bus,
) -> anyhow::Result<()> {
    let env = env_on(bus).await?;
    let mut events = Events::open(&env.bus, "test").await?;
    let (gw, stop) = start_gateway(&env, 3).await?;
    let addr = env.sim.new_address().await?;
    gw.watch_address(NET, &addr.to_string()).await?;
    let d1 = env
        .sim
        .send_to_address(&addr, Sats::from_sat(10_000_000))
        .await?
        .to_string();
    events
        .wait("d1 seen", |e| {
            matches!(output_status(e, &d1), Some(TxStatus::Seen))
        })
        .await?;
    let b1 = env.sim.mine(1, None).await?[0].to_string();
    let h1 = u64::from(env.sim.tip().await.0);
    events
        .wait("d1 at depth 1", |e| {
            confirmed_at(output_status(e, &d1), &b1, 1)
        })
        .await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.hash == b1)).await?;
    stop.cancel();
    gw.stopped().await;

    // While the gateway is down: a second deposit, two blocks.
    let d2 = env
        .sim
        .send_to_address(&addr, Sats::from_sat(20_000_000))
        .await?
        .to_string();
    let mined = env.sim.mine(2, None).await?;
    let (b2, b3) = (mined[0].to_string(), mined[1].to_string());

    let (gw, stop) = start_gateway(&env, 3).await?;
    events
        .wait("d1 at depth 3", |e| {
            confirmed_at(output_status(e, &d1), &b1, 3)
        })
        .await?;
    events
        .wait("d2 at depth 2", |e| {
            confirmed_at(output_status(e, &d2), &b2, 2)
        })
        .await?;
    events.drain(Duration::from_millis(300)).await?;
    let c = |h: &str, height: u64, depth: u64| TxStatus::Confirmed {
        block_height: height,
        block_hash: h.to_owned(),
        depth,
    };
    assert_eq!(
        events.output_statuses(&d1),
        vec![TxStatus::Seen, c(&b1, h1, 1), c(&b1, h1, 2), c(&b1, h1, 3)]
    );
    assert_eq!(
        events.output_statuses(&d2),
        vec![c(&b2, h1 + 1, 1), c(&b2, h1 + 1, 2)]
    );
    for b in [&b2, &b3] {
        events
            .wait("missed block connected", |e| is_connected(e, b))
            .await?;
    }
    stop.cancel();
    gw.stopped().await;

    // While down again: the node drops b2 and b3.
    env.sim.invalidate_block(&mined[0]).await?;
    let (gw, stop) = start_gateway(&env, 3).await?;
    events
        .wait("d2 unconfirmed", |e| matches!(output_status(e, &d2), Some(TxStatus::Unconfirmed { block_hash }) if *block_hash == b2))
        .await?;
    for b in [&b2, &b3] {
        events
            .wait(
                "block disconnected",
                |e| matches!(e, ChainEvent::BlockDisconnected { hash, .. } if hash == b),
            )
            .await?;
    }
    // d2 is back in the mempool.
    events
        .wait("d2 seen again", |e| {
            matches!(output_status(e, &d2), Some(TxStatus::Seen))
        })
        .await?;
    assert!(gw.tip(NET).is_some_and(|t| t.hash == b1));
    stop.cancel();
    gw.stopped().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_our_cursor_is_waited_for_not_taken_as_a_reorg() -> anyhow::Result<()> {
    let env = env().await?;
    let mut events = Events::open(&env.bus, "test").await?;
    let (gw, stop) = start_gateway(&env, 3).await?;
    let addr = env.sim.new_address().await?;
    gw.watch_address(NET, &addr.to_string()).await?;
    let d1 = env
        .sim
        .send_to_address(&addr, Sats::from_sat(10_000_000))
        .await?
        .to_string();
    let tip = env.sim.mine(2, None).await?[1].to_string();
    events
        .wait("d1 at depth 2", |e| {
            matches!(
                output_status(e, &d1),
                Some(TxStatus::Confirmed { depth: 2, .. })
            )
        })
        .await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.hash == tip)).await?;
    stop.cancel();
    gw.stopped().await;

    // Restart against a fresh node that has not seen our blocks (101 blocks).
    let other_dir = tempfile::tempdir()?;
    let mut cfg = simulators::bitcoin::BitcoinSimConfig::new(other_dir.path());
    cfg.rpc_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.rpc_user = Some(USER.into());
    cfg.rpc_password = Some(PASSWORD.into());
    let other_stop = tokio_util::sync::CancellationToken::new();
    let other = simulators::bitcoin::BitcoinSim::start(cfg, other_stop.clone()).await?;
    assert!(u64::from(other.tip().await.0) < gw.tip(NET).map(|t| t.height).unwrap_or(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let gw = node_gateway::NodeGateway::start(
        config(&other, 3),
        env.db.clone(),
        env.bus.clone(),
        stop.clone(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    events.drain(Duration::from_millis(200)).await?;
    assert!(
        !events
            .all
            .iter()
            .any(|e| matches!(e, ChainEvent::BlockDisconnected { .. })
                || matches!(output_status(e, &d1), Some(TxStatus::Unconfirmed { .. }))),
        "{:#?}",
        events.all
    );
    assert!(
        gw.tip(NET).is_some_and(|t| t.hash == tip),
        "still at our tip"
    );
    stop.cancel();
    gw.stopped().await;
    other_stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_blocks_of_downtime_are_caught_up() -> anyhow::Result<()> {
    a_hundred_blocks_of_downtime_are_caught_up_on(Bus::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_blocks_of_downtime_are_caught_up_on_kafka() -> anyhow::Result<()> {
    a_hundred_blocks_of_downtime_are_caught_up_on(Bus::Kafka).await
}

/// Down for 100 blocks: a deposit in the first missed block and one in the
/// last are each confirmed at every depth, and every missed block is
/// connected once, in order.
async fn a_hundred_blocks_of_downtime_are_caught_up_on(bus: Bus) -> anyhow::Result<()> {
    let env = env_on(bus).await?;
    let mut events = Events::open(&env.bus, "test").await?;
    let (gw, stop) = start_gateway(&env, 3).await?;
    let addr = env.sim.new_address().await?;
    gw.watch_address(NET, &addr.to_string()).await?;
    let (h0, _) = env.sim.tip().await;
    let h0 = u64::from(h0);
    stop.cancel();
    gw.stopped().await;

    let first = env
        .sim
        .send_to_address(&addr, Sats::from_sat(1_000_000))
        .await?
        .to_string();
    let mut missed = env.sim.mine(1, None).await?;
    missed.extend(env.sim.mine(98, None).await?);
    let last = env
        .sim
        .send_to_address(&addr, Sats::from_sat(2_000_000))
        .await?
        .to_string();
    missed.extend(env.sim.mine(1, None).await?);
    assert_eq!(missed.len(), 100);

    let (gw, stop) = start_gateway(&env, 3).await?;
    let tip = missed[99].to_string();
    events
        .wait("the last missed block", |e| is_connected(e, &tip))
        .await?;
    events
        .wait("the last deposit at depth 1", |e| {
            confirmed_at(output_status(e, &last), &tip, 1)
        })
        .await?;
    events.drain(Duration::from_millis(500)).await?;

    let connected: Vec<String> = events
        .all
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockConnected { hash, .. } => Some(hash.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<String> = missed.iter().map(|h| h.to_string()).collect();
    assert_eq!(
        connected[connected.len() - 100..],
        want[..],
        "every missed block connected once, in order"
    );
    let c = |h: &str, height: u64, depth: u64| TxStatus::Confirmed {
        block_height: height,
        block_hash: h.to_owned(),
        depth,
    };
    let b1 = want[0].as_str();
    assert_eq!(
        events.output_statuses(&first),
        vec![c(b1, h0 + 1, 1), c(b1, h0 + 1, 2), c(b1, h0 + 1, 3)]
    );
    assert_eq!(events.output_statuses(&last), vec![c(&tip, h0 + 100, 1)]);
    stop.cancel();
    gw.stopped().await;
    Ok(())
}
