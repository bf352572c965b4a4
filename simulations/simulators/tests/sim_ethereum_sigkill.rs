//! The simulated Ethereum node killed with SIGKILL in a child process and
//! restarted on the same data directory: blocks, balances, a configured
//! token's contract balances and pending transactions that were
//! acknowledged are all still there.
//!
//! The test runs itself as the child (`SIM_ETHEREUM_CHILD_DIR` set).

mod common;

use common::Node;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde_json::{json, Value};
use simulators::ethereum::token::{balance_of_calldata, transfer_calldata, TokenConfig};
use simulators::ethereum::{EthereumSim, EthereumSimConfig, FAUCET_KEY_HEX};
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "SIM_ETHEREUM_CHILD_DIR";
const TEST_NAME: &str = "sigkill_keeps_blocks_balances_and_pool";

fn spawn_node(dir: &std::path::Path) -> (Node, String) {
    common::spawn_node(TEST_NAME, CHILD_ENV, dir)
}

async fn call(http: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    common::call(http, "2.0", url, method, params).await
}

fn token() -> TokenConfig {
    TokenConfig {
        name: "USD Coin".into(),
        symbol: "USDC".into(),
        decimals: 6,
        supply: U256::from(1_000_000u64),
    }
}

/// The faucet's signed `transfer(to, amount)` of the token at `token_at`.
fn token_transfer(nonce: u64, token_at: Address, to: Address, amount: u64) -> Vec<u8> {
    let faucet: PrivateKeySigner = FAUCET_KEY_HEX.parse().expect("key");
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 100_000,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(token_at),
        value: U256::ZERO,
        access_list: Default::default(),
        input: transfer_calldata(to, U256::from(amount)),
    };
    let sig = faucet.sign_hash_sync(&tx.signature_hash()).expect("sign");
    TxEnvelope::from(tx.into_signed(sig)).encoded_2718()
}

async fn token_balance(
    http: &reqwest::Client,
    url: &str,
    token_at: Address,
    owner: Address,
) -> U256 {
    let out = call(
        http,
        url,
        "eth_call",
        json!([{"to": token_at, "input": balance_of_calldata(owner)}, "latest"]),
    )
    .await;
    let bytes: Bytes = serde_json::from_value(out).expect("bytes");
    U256::from_be_slice(&bytes)
}

#[tokio::test]
async fn sigkill_keeps_blocks_balances_and_pool() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let mut cfg = EthereumSimConfig::new(dir);
        cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
        cfg.tokens = vec![token()];
        let sim = EthereumSim::start(cfg, CancellationToken::new())
            .await
            .expect("start");
        // The first start funds one account; later starts find the chain on disk.
        // Block 1 deploys the token at the first start only.
        if sim.block_number().await == 1 && sim.balance(Address::repeat_byte(0x01)).await.is_zero()
        {
            let token_at = sim.tokens().await[0].address;
            sim.send_raw_transaction(&token_transfer(1, token_at, Address::repeat_byte(0x04), 77))
                .await
                .expect("token transfer");
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
    assert_eq!(head["number"], "0x3");
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
    let faucet: PrivateKeySigner = FAUCET_KEY_HEX.parse().expect("key");
    let token_at = faucet.address().create(0);
    assert_eq!(
        token_balance(&http, &url, token_at, Address::repeat_byte(0x04)).await,
        U256::from(77)
    );
    assert_eq!(
        token_balance(&http, &url, token_at, faucet.address()).await,
        U256::from(1_000_000u64 - 77)
    );
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
