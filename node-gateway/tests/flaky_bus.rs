//! A bus that refuses every other publish: the gateway retries each event
//! until it is acknowledged, so consumers still see every event, in order.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::Amount as Sats;
use common::*;
use infra::bus::{BusError, EventBus, Message, SharedBus, Subscription};
use node_gateway::NodeGateway;
use proto::event::TxStatus;
use tokio_util::sync::CancellationToken;

struct FlakyBus {
    inner: SharedBus,
    calls: AtomicU64,
    refused: AtomicU64,
}

#[async_trait]
impl EventBus for FlakyBus {
    async fn publish(&self, topic: &str, message: Message) -> Result<(), BusError> {
        if self.calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(BusError::Closed);
        }
        self.inner.publish(topic, message).await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(topic, group).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publishes_are_retried_and_nothing_is_skipped() -> anyhow::Result<()> {
    let env = env().await?;
    let flaky = Arc::new(FlakyBus {
        inner: env.bus.clone(),
        calls: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    let bus: SharedBus = flaky.clone();
    let mut events = Events::open(&env.bus, "test").await?;
    let stop = CancellationToken::new();
    let gw = NodeGateway::start(config(&env.sim, 3), env.db.clone(), bus, stop.clone()).await?;

    let addr = env.sim.new_address().await?;
    gw.watch_address(NET, &addr.to_string()).await?;
    let d = env
        .sim
        .send_to_address(&addr, Sats::from_sat(3_000_000))
        .await?
        .to_string();
    events
        .wait("seen", |e| {
            matches!(output_status(e, &d), Some(TxStatus::Seen))
        })
        .await?;
    let mined = env.sim.mine(3, None).await?;
    let b1 = mined[0].to_string();
    events
        .wait("depth 3", |e| confirmed_at(output_status(e, &d), &b1, 3))
        .await?;
    for b in &mined {
        events
            .wait("block connected", |e| is_connected(e, &b.to_string()))
            .await?;
    }
    events.drain(Duration::from_millis(200)).await?;
    let depths: Vec<u64> = events
        .output_statuses(&d)
        .iter()
        .filter_map(|s| match s {
            TxStatus::Confirmed { depth, .. } => Some(*depth),
            _ => None,
        })
        .collect();
    assert_eq!(depths, vec![1, 2, 3]);
    assert!(
        flaky.refused.load(Ordering::SeqCst) >= 5,
        "the bus did refuse publishes"
    );
    stop.cancel();
    gw.stopped().await;
    Ok(())
}
