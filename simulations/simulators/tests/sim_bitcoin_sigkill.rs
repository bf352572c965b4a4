//! The simulated bitcoind killed with SIGKILL in a child process and
//! restarted on the same data directory: every acknowledged block and
//! transaction is still there.
//!
//! The test runs itself as the child (`SIM_BITCOIN_CHILD_DIR` set): the
//! child starts the node, prints its RPC URL and waits to be killed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use simulators::bitcoin::{BitcoinSim, BitcoinSimConfig};
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "SIM_BITCOIN_CHILD_DIR";
const TEST_NAME: &str = "sigkill_keeps_acknowledged_blocks_and_transactions";

/// The child node; killed (SIGKILL) when dropped, also if the test panics.
struct Node(Child);

impl Node {
    fn sigkill(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_node(dir: &std::path::Path) -> (Node, String) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child node");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("child printed its url")
            .expect("read line");
        // libtest may print "test <name> ... " on the same line first.
        if let Some(pos) = line.find("RPC_URL=") {
            break line[pos + "RPC_URL=".len()..].trim().to_string();
        }
    };
    (Node(child), url)
}

async fn call(http: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    let body: Value = http
        .post(url)
        .json(&json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(body["error"].is_null(), "{method}: {body}");
    body["result"].clone()
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
