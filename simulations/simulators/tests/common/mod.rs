//! The SIGKILL tests' child process: the test binary runs one of its own
//! tests as the node (an environment variable tells it so), prints its RPC
//! URL, and waits to be killed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// The child node; killed (SIGKILL) when dropped, also if the test panics.
pub struct Node(Child);

impl Node {
    pub fn sigkill(mut self) {
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

/// Runs test `test_name` of this binary as the node, with `child_env` set
/// to `dir`; returns it and the `RPC_URL=` it printed.
pub fn spawn_node(test_name: &str, child_env: &str, dir: &Path) -> (Node, String) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(child_env, dir)
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

/// One JSON-RPC call (`version` "1.0" for bitcoind, "2.0" for Ethereum);
/// panics with the node's answer on error.
pub async fn call(
    http: &reqwest::Client,
    version: &str,
    url: &str,
    method: &str,
    params: Value,
) -> Value {
    let body: Value = http
        .post(url)
        .json(&json!({"jsonrpc": version, "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(body["error"].is_null(), "{method}: {body}");
    body["result"].clone()
}
