//! Against a simulated bitcoind: a watched deposit is seen in the mempool,
//! confirmed at depth 1..=max_depth, unconfirmed when its block is
//! invalidated, and confirmed again in the new branch; a watched payout of
//! the engine's own is followed by txid.

mod common;

use bitcoin::Amount as Sats;
use common::*;
use proto::event::{ChainEvent, TxStatus};
use proto::Amount;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_seen_confirmed_reorganised_and_confirmed_again() -> anyhow::Result<()> {
    deposit_seen_confirmed_reorganised_and_confirmed_again_on(Bus::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_seen_confirmed_reorganised_and_confirmed_again_on_kafka() -> anyhow::Result<()> {
    deposit_seen_confirmed_reorganised_and_confirmed_again_on(Bus::Kafka).await
}

async fn deposit_seen_confirmed_reorganised_and_confirmed_again_on(bus: Bus) -> anyhow::Result<()> {
    let env = env_on(bus).await?;
    let mut events = Events::open(&env.bus, "test").await?;
    let (gw, stop) = start_gateway(&env, 3).await?;

    let addr = env.sim.new_address().await?;
    let canonical = gw.watch_address(NET, &addr.to_string()).await?;
    assert_eq!(canonical, addr.to_string());
    let deposit = env
        .sim
        .send_to_address(&addr, Sats::from_sat(50_000_000))
        .await?
        .to_string();

    // An unwatched payment to someone else, followed by txid only.
    let other = env.sim.new_address().await?;
    let payout = env
        .sim
        .send_to_address(&other, Sats::from_sat(1_000_000))
        .await?
        .to_string();
    gw.watch_tx(NET, &payout).await?;

    let seen = events
        .wait("deposit seen", |e| {
            matches!(output_status(e, &deposit), Some(TxStatus::Seen))
        })
        .await?;
    let ChainEvent::Output {
        address,
        amount,
        network,
        ..
    } = &seen
    else {
        unreachable!()
    };
    assert_eq!(
        (address.as_str(), *amount, *network),
        (canonical.as_str(), Amount::from_base_units(50_000_000), NET)
    );
    events
        .wait("payout seen", |e| {
            matches!(tx_status(e, &payout), Some(TxStatus::Seen))
        })
        .await?;

    // Mined: depth 1, 2, 3, then nothing more about it.
    let mined = env.sim.mine(4, None).await?;
    let b1 = mined[0].to_string();
    let h1 = env.sim.tip().await.0 as u64 - 3;
    events
        .wait("payout confirmed", |e| {
            confirmed_at(tx_status(e, &payout), &b1, 1)
        })
        .await?;
    for b in &mined {
        events
            .wait("block connected", |e| is_connected(e, &b.to_string()))
            .await?;
    }
    events
        .wait("deposit at depth 3", |e| {
            confirmed_at(output_status(e, &deposit), &b1, 3)
        })
        .await?;
    events.drain(std::time::Duration::from_millis(300)).await?;
    let confirmed = |h: &str, depth: u64| TxStatus::Confirmed {
        block_height: h1,
        block_hash: h.to_owned(),
        depth,
    };
    assert_eq!(
        events.output_statuses(&deposit),
        vec![
            TxStatus::Seen,
            confirmed(&b1, 1),
            confirmed(&b1, 2),
            confirmed(&b1, 3)
        ]
    );

    // Invalidate the deposit's block: four blocks disconnected, deposit unconfirmed.
    env.sim.invalidate_block(&mined[0]).await?;
    for (i, b) in mined.iter().enumerate() {
        let e = events
            .wait("block disconnected", |e| matches!(e, ChainEvent::BlockDisconnected { hash, .. } if *hash == b.to_string()))
            .await?;
        assert!(
            matches!(e, ChainEvent::BlockDisconnected { height, .. } if height == h1 + i as u64)
        );
    }
    events
        .wait("payout unconfirmed", |e| {
            matches!(tx_status(e, &payout), Some(TxStatus::Unconfirmed { .. }))
        })
        .await?;

    // The deposit is back in the mempool; the next block confirms it again.
    let c1 = env.sim.mine(1, None).await?[0].to_string();
    assert_ne!(c1, b1);
    events
        .wait("deposit confirmed again", |e| {
            confirmed_at(output_status(e, &deposit), &c1, 1)
        })
        .await?;
    assert_eq!(
        events.output_statuses(&deposit),
        vec![
            TxStatus::Seen,
            confirmed(&b1, 1),
            confirmed(&b1, 2),
            confirmed(&b1, 3),
            TxStatus::Unconfirmed {
                block_hash: b1.clone()
            },
            confirmed(&c1, 1),
        ],
        "the re-seen deposit has the same event id as the first sighting"
    );
    wait_for(|| {
        gw.tip(NET)
            .is_some_and(|t| (t.height, t.hash.as_str()) == (h1, c1.as_str()))
    })
    .await?;

    stop.cancel();
    gw.stopped().await;
    Ok(())
}
