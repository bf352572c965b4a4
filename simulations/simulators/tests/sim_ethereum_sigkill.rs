//! The simulated Ethereum node killed with SIGKILL in a child process and
//! restarted on the same data directory: blocks, balances and pending
//! transactions that were acknowledged are all still there.
//!
//! The test runs itself as the child (`SIM_ETHEREUM_CHILD_DIR` set).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use alloy_primitives::{Address, U256};
use serde_json::{json, Value};
use simulators::ethereum::{EthereumSim, EthereumSimConfig};
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "SIM_ETHEREUM_CHILD_DIR";
const TEST_NAME: &str = "sigkill_keeps_blocks_balances_and_pool";

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
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(body.get("error").is_none(), "{method}: {body}");
    body["result"].clone()
}

#[tokio::test]
async fn sigkill_keeps_blocks_balances_and_pool() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let mut cfg = EthereumSimConfig::new(dir);
        cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
        let sim = EthereumSim::start(cfg, CancellationToken::new())
            .await
            .expect("start");
        // The first start funds one account; later starts find the chain on disk.
        if sim.block_number().await == 0 && sim.balance(Address::repeat_byte(0x01)).await.is_zero()
        {
            sim.fund(Address::repeat_byte(0x01), U256::from(5u64))
                .await
                .expect("fund");
            sim.mine(2).await.expect("mine");
            sim.fund(Address::repeat_byte(0x02), U256::from(7u64))
                .await
                .expect("fund");
        }
        println!("RPC_URL={}", sim.rpc_url());
        std::future::pending::<()>().await;
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let (child, url) = spawn_node(dir.path());
    call(
        &http,
        &url,
        "anvil_setBalance",
        json!([Address::repeat_byte(0x03), "0x2a"]),
    )
    .await;
    let head = call(
        &http,
        &url,
        "eth_getBlockByNumber",
        json!(["latest", false]),
    )
    .await;
    assert_eq!(head["number"], "0x2");
    child.sigkill();

    let (child, url) = spawn_node(dir.path());
    let again = call(
        &http,
        &url,
        "eth_getBlockByNumber",
        json!(["latest", false]),
    )
    .await;
    assert_eq!(again["hash"], head["hash"]);
    let b1 = call(
        &http,
        &url,
        "eth_getBalance",
        json!([Address::repeat_byte(0x01), "latest"]),
    )
    .await;
    assert_eq!(b1, "0x5");
    let b3 = call(
        &http,
        &url,
        "eth_getBalance",
        json!([Address::repeat_byte(0x03), "latest"]),
    )
    .await;
    assert_eq!(b3, "0x2a");
    // The pending faucet transfer survived and mines now.
    call(&http, &url, "evm_mine", json!([])).await;
    let b2 = call(
        &http,
        &url,
        "eth_getBalance",
        json!([Address::repeat_byte(0x02), "latest"]),
    )
    .await;
    assert_eq!(b2, "0x7");
    child.sigkill();
}
