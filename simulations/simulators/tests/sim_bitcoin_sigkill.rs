//! The simulated bitcoind killed with SIGKILL in a child process and
//! restarted on the same data directory: every acknowledged block and
//! transaction is still there.
//!
//! The test runs itself as the child (`SIM_BITCOIN_CHILD_DIR` set): the
//! child starts the node, prints its RPC URL and waits to be killed.

mod common;

use common::Node;

use serde_json::{json, Value};
use simulators::bitcoin::{BitcoinSim, BitcoinSimConfig};
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "SIM_BITCOIN_CHILD_DIR";
const TEST_NAME: &str = "sigkill_keeps_acknowledged_blocks_and_transactions";

fn spawn_node(dir: &std::path::Path) -> (Node, String) {
    common::spawn_node(TEST_NAME, CHILD_ENV, dir)
}

async fn call(http: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    common::call(http, "1.0", url, method, params).await
}

#[tokio::test]
async fn sigkill_keeps_acknowledged_blocks_and_transactions() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        // Child: run the node until killed.
        let mut cfg = BitcoinSimConfig::new(dir);
        cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
        let sim = BitcoinSim::start(cfg, CancellationToken::new())
            .await
            .expect("start");
        println!("RPC_URL={}", sim.rpc_url());
        std::future::pending::<()>().await;
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let (child, url) = spawn_node(dir.path());
    let addr = call(&http, &url, "getnewaddress", json!([])).await;
    let paid = call(&http, &url, "sendtoaddress", json!([addr.clone(), 2.5])).await;
    let mined = call(&http, &url, "generatetoaddress", json!([3, addr.clone()])).await;
    let pending = call(&http, &url, "sendtoaddress", json!([addr.clone(), 0.25])).await;
    let tip = call(&http, &url, "getbestblockhash", json!([])).await;
    child.sigkill();

    let (child, url) = spawn_node(dir.path());
    assert_eq!(call(&http, &url, "getbestblockhash", json!([])).await, tip);
    assert_eq!(mined[2], tip);
    assert_eq!(
        call(&http, &url, "getrawmempool", json!([])).await,
        json!([pending])
    );
    let tx = call(&http, &url, "getrawtransaction", json!([paid, true])).await;
    assert_eq!(tx["confirmations"], 3);
    // The restarted wallet still owns the address: both payments are listed.
    let coins = call(&http, &url, "listunspent", json!([0, 9999999, [addr]])).await;
    assert_eq!(coins.as_array().map(Vec::len), Some(2));
    child.sigkill();
}
