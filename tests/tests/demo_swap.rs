//! The demo as a test: a whole BTC→ETH swap through the public API of an
//! in-process embedded engine, with the user's wallet on the simulated
//! bitcoind, ending with the quoted ETH at the user's address.

use std::time::Duration;

use proto::api::SwapStatus;
use swapd::demo::{self, DemoOptions};

#[tokio::test]
async fn demo_completes_a_btc_to_eth_swap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let outcome = demo::run(&DemoOptions {
        engine_url: format!("http://{}", engine.gateway_addr),
        bitcoin_rpc_url: engine.bitcoin_rpc_url.clone(),
        ethereum_rpc_url: engine.ethereum_rpc_url.clone(),
        amount_btc: "0.05".into(),
        timeout: Duration::from_secs(60),
    })
    .await
    .unwrap();
    assert_eq!(outcome.state, SwapStatus::Completed);
    assert_eq!(outcome.deposit_txid.len(), 64);
    assert!(outcome
        .payout_txid
        .as_deref()
        .is_some_and(|t| t.starts_with("0x") && t.len() == 66));
    // 0.05 BTC needs 2 confirmations under the embedded policy.
    let swap = engine
        .hot_wallet
        .store()
        .get(outcome.swap_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(swap.state, "completed");
    engine.stop().await;
}
