//! End-to-end tests live in `tests/`; this library holds their shared harness.

pub mod prometheus;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};
use swapd::embedded::{self, Embedded, EmbeddedConfig};

/// An embedded engine in this process on loopback ports the OS picks, its
/// data in `dir`; Bitcoin blocks are mined only when a test asks.
pub async fn start_engine(dir: &Path) -> Embedded {
    start_engine_with(dir, |_| {}).await
}

/// [`start_engine`] with the configuration changed by `adjust` first.
pub async fn start_engine_with(dir: &Path, adjust: impl FnOnce(&mut EmbeddedConfig)) -> Embedded {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut cfg = EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        gateway_listen: any,
        bitcoin_rpc_listen: any,
        ethereum_rpc_listen: any,
        bitcoin_block_interval: None,
        ..EmbeddedConfig::default()
    };
    adjust(&mut cfg);
    embedded::start(cfg).await.expect("embedded engine starts")
}

/// One Bitcoin Core JSON-RPC call; panics with the node's answer on error.
pub async fn btc_rpc(url: &str, method: &str, params: Value) -> Value {
    let resp: Value = reqwest::Client::new()
        .post(url)
        .json(&json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params}))
        .send()
        .await
        .expect("node reachable")
        .json()
        .await
        .expect("JSON answer");
    assert!(resp["error"].is_null(), "{method}: {resp}");
    resp["result"].clone()
}
