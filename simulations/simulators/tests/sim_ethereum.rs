//! The simulated Ethereum node, driven over HTTP JSON-RPC with transactions
//! signed by alloy, and its answers decoded with alloy's RPC types.

use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_rpc_types_eth::{Block, BlockTransactions, Transaction, TransactionReceipt};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde_json::{json, Value};
use simulators::ethereum::{EthereumSim, EthereumSimConfig};
use tokio_util::sync::CancellationToken;

const ETH: u128 = 1_000_000_000_000_000_000;
const GWEI: u128 = 1_000_000_000;

struct Rpc {
    http: reqwest::Client,
    url: String,
}

impl Rpc {
    async fn raw(&self, method: &str, params: Value) -> Value {
        self.http
            .post(&self.url)
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
            .send()
            .await
            .expect("http")
            .json()
            .await
            .expect("json")
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        let r = self.raw(method, params.clone()).await;
        assert_eq!(r["jsonrpc"], "2.0");
        assert_eq!(r["id"], 7);
        assert!(r.get("error").is_none(), "{method} {params}: {r}");
        r["result"].clone()
    }

    /// The error (code, message) of a call that must fail.
    async fn fail(&self, method: &str, params: Value) -> (i64, String) {
        let r = self.raw(method, params.clone()).await;
        let e = r
            .get("error")
            .unwrap_or_else(|| panic!("{method} {params} succeeded: {r}"));
        (
            e["code"].as_i64().expect("code"),
            e["message"].as_str().expect("message").to_string(),
        )
    }

    async fn send(&self, tx: &TxEnvelope) -> Result<B256, (i64, String)> {
        let r = self
            .raw(
                "eth_sendRawTransaction",
                json!([format!("0x{}", hex::encode(tx.encoded_2718()))]),
            )
            .await;
        match r.get("error") {
            Some(e) => Err((
                e["code"].as_i64().expect("code"),
                e["message"].as_str().expect("msg").to_string(),
            )),
            None => Ok(serde_json::from_value(r["result"].clone()).expect("hash")),
        }
    }

    async fn balance(&self, a: Address) -> U256 {
        serde_json::from_value(self.call("eth_getBalance", json!([a, "latest"])).await)
            .expect("quantity")
    }
}

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("quantity")
}

async fn start(
    dir: &std::path::Path,
    alloc: Vec<(Address, U256)>,
    automine: bool,
) -> (EthereumSim, Rpc, CancellationToken) {
    let mut cfg = EthereumSimConfig::new(dir);
    cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
    cfg.genesis_alloc = alloc;
    cfg.automine = automine;
    let stop = CancellationToken::new();
    let sim = EthereumSim::start(cfg, stop.clone())
        .await
        .expect("sim starts");
    let rpc = Rpc {
        http: reqwest::Client::new(),
        url: sim.rpc_url(),
    };
    (sim, rpc, stop)
}

fn transfer(
    signer: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: u128,
    max_fee: u128,
    tip: u128,
) -> TxEnvelope {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value: U256::from(value),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    TxEnvelope::from(tx.into_signed(sig))
}

#[tokio::test]
async fn transfer_is_mined_with_receipt_and_fee() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = PrivateKeySigner::random();
    let bob = Address::repeat_byte(0xb0);
    let (_sim, rpc, _stop) = start(
        dir.path(),
        vec![(alice.address(), U256::from(10 * ETH))],
        false,
    )
    .await;
    assert_eq!(rpc.call("eth_chainId", json!([])).await, "0x7a69");
    assert_eq!(rpc.call("net_version", json!([])).await, "31337");
    assert_eq!(rpc.call("eth_blockNumber", json!([])).await, "0x0");
    assert_eq!(rpc.balance(alice.address()).await, U256::from(10 * ETH));

    let tx = transfer(&alice, 31337, 0, bob, ETH, 10 * GWEI, GWEI);
    let hash = rpc.send(&tx).await.expect("accepted");
    assert_eq!(hash, *tx.tx_hash());
    let pending: Transaction =
        serde_json::from_value(rpc.call("eth_getTransactionByHash", json!([hash])).await)
            .expect("tx");
    assert_eq!(pending.block_hash, None);
    assert_eq!(pending.inner.signer(), alice.address());
    assert_eq!(
        rpc.call("eth_getTransactionReceipt", json!([hash])).await,
        Value::Null
    );
    assert_eq!(
        rpc.call(
            "eth_getTransactionCount",
            json!([alice.address(), "pending"])
        )
        .await,
        "0x1"
    );
    assert_eq!(
        rpc.call(
            "eth_getTransactionCount",
            json!([alice.address(), "latest"])
        )
        .await,
        "0x0"
    );

    rpc.call("evm_mine", json!([])).await;
    let receipt: TransactionReceipt =
        serde_json::from_value(rpc.call("eth_getTransactionReceipt", json!([hash])).await)
            .expect("receipt");
    assert!(receipt.status());
    assert_eq!(receipt.gas_used, 21_000);
    assert_eq!(receipt.block_number, Some(1));
    assert_eq!(receipt.from, alice.address());
    assert_eq!(receipt.to, Some(bob));

    let block: Block =
        serde_json::from_value(rpc.call("eth_getBlockByNumber", json!(["0x1", true])).await)
            .expect("block");
    assert_eq!(
        block.header.hash,
        block.header.inner.hash_slow(),
        "hash is keccak of the RLP header"
    );
    assert_eq!(Some(block.header.hash), receipt.block_hash);
    let base_fee = u128::from(block.header.inner.base_fee_per_gas.expect("base fee"));
    assert_eq!(receipt.effective_gas_price, base_fee + GWEI);
    let BlockTransactions::Full(txs) = &block.transactions else {
        panic!("full transactions")
    };
    assert_eq!(*txs[0].inner.tx_hash(), hash);
    let by_hash: Block = serde_json::from_value(
        rpc.call("eth_getBlockByHash", json!([block.header.hash, false]))
            .await,
    )
    .expect("block");
    assert_eq!(
        by_hash.transactions.hashes().collect::<Vec<_>>(),
        vec![hash]
    );
    let genesis: Block = serde_json::from_value(
        rpc.call("eth_getBlockByNumber", json!(["earliest", false]))
            .await,
    )
    .expect("genesis");
    assert_eq!(block.header.inner.parent_hash, genesis.header.hash);

    let fee = U256::from(21_000u128 * receipt.effective_gas_price);
    assert_eq!(rpc.balance(bob).await, U256::from(ETH));
    assert_eq!(
        rpc.balance(alice.address()).await,
        U256::from(9 * ETH) - fee
    );
    // History: at block 0 alice still had everything.
    let then: U256 = serde_json::from_value(
        rpc.call("eth_getBalance", json!([alice.address(), "0x0"]))
            .await,
    )
    .expect("q");
    assert_eq!(then, U256::from(10 * ETH));
    assert_eq!(
        rpc.call(
            "eth_getTransactionCount",
            json!([alice.address(), "latest"])
        )
        .await,
        "0x1"
    );

    let history = rpc
        .call("eth_feeHistory", json!(["0x2", "latest", [50.0]]))
        .await;
    assert_eq!(history["oldestBlock"], "0x0");
    assert_eq!(history["baseFeePerGas"].as_array().expect("fees").len(), 3);
    assert_eq!(history["reward"][1][0], "0x3b9aca00");
    assert_eq!(
        rpc.call(
            "eth_estimateGas",
            json!([{"from": alice.address(), "to": bob, "value": "0x1"}])
        )
        .await,
        "0x5208"
    );
    assert_eq!(rpc.call("eth_getCode", json!([bob, "latest"])).await, "0x");
    assert_eq!(
        rpc.call("eth_getLogs", json!([{"fromBlock": "0x0"}])).await,
        json!([])
    );
    assert_eq!(rpc.call("eth_syncing", json!([])).await, false);
    assert_eq!(
        rpc.call("eth_getBlockByNumber", json!(["0x5", false]))
            .await,
        Value::Null
    );
}

#[tokio::test]
async fn invalid_transactions_get_geths_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = PrivateKeySigner::random();
    let bob = Address::repeat_byte(0xb1);
    let (_sim, rpc, _stop) =
        start(dir.path(), vec![(alice.address(), U256::from(ETH))], false).await;

    let (code, msg) = rpc
        .send(&transfer(&alice, 1, 0, bob, 1, 10 * GWEI, GWEI))
        .await
        .unwrap_err();
    assert_eq!(code, -32000);
    assert!(msg.starts_with("invalid chain id for signer"), "{msg}");

    let (code, msg) = rpc
        .send(&transfer(&alice, 31337, 3, bob, 1, 10 * GWEI, GWEI))
        .await
        .unwrap_err();
    assert_eq!(code, -32000);
    assert!(msg.starts_with("nonce too high"), "{msg}");

    let (code, msg) = rpc
        .send(&transfer(&alice, 31337, 0, bob, 2 * ETH, 10 * GWEI, GWEI))
        .await
        .unwrap_err();
    assert_eq!(code, -32000);
    assert!(
        msg.starts_with("insufficient funds for gas * price + value"),
        "{msg}"
    );

    let (_, msg) = rpc
        .send(&transfer(&alice, 31337, 0, bob, 1, 1, 1))
        .await
        .unwrap_err();
    assert!(
        msg.starts_with("max fee per gas less than block base fee"),
        "{msg}"
    );

    let low_gas = TxEip1559 {
        chain_id: 31337,
        nonce: 0,
        gas_limit: 20_000,
        max_fee_per_gas: 10 * GWEI,
        max_priority_fee_per_gas: GWEI,
        to: TxKind::Call(bob),
        value: U256::from(1),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let sig = alice
        .sign_hash_sync(&low_gas.signature_hash())
        .expect("sign");
    let (_, msg) = rpc
        .send(&TxEnvelope::from(low_gas.into_signed(sig)))
        .await
        .unwrap_err();
    assert!(msg.starts_with("intrinsic gas too low"), "{msg}");

    // Legacy EIP-155 transactions work too.
    let legacy = TxLegacy {
        chain_id: Some(31337),
        nonce: 0,
        gas_price: 5 * GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(bob),
        value: U256::from(5),
        input: Bytes::new(),
    };
    let sig = alice
        .sign_hash_sync(&legacy.signature_hash())
        .expect("sign");
    rpc.send(&TxEnvelope::from(legacy.into_signed(sig)))
        .await
        .expect("legacy accepted");
    rpc.call("anvil_mine", json!(["0x2"])).await;
    assert_eq!(rpc.call("eth_blockNumber", json!([])).await, "0x2");
    assert_eq!(rpc.balance(bob).await, U256::from(5));

    let (_, msg) = rpc
        .send(&transfer(&alice, 31337, 0, bob, 1, 10 * GWEI, GWEI))
        .await
        .unwrap_err();
    assert!(msg.starts_with("nonce too low"), "{msg}");

    let (code, _) = rpc
        .fail("eth_sendRawTransaction", json!(["0x02deadbeef"]))
        .await;
    assert_eq!(code, -32602);
    let (code, _) = rpc
        .fail("eth_getBalance", json!(["0x1234", "latest"]))
        .await;
    assert_eq!(code, -32602);
    let (code, _) = rpc.fail("eth_noSuchMethod", json!([])).await;
    assert_eq!(code, -32601);
}

#[tokio::test]
async fn same_nonce_replacement_needs_a_ten_percent_bump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = PrivateKeySigner::random();
    let (bob, carol) = (Address::repeat_byte(0xb2), Address::repeat_byte(0xc2));
    let (_sim, rpc, _stop) =
        start(dir.path(), vec![(alice.address(), U256::from(ETH))], false).await;

    let first = transfer(&alice, 31337, 0, bob, 100, 10 * GWEI, 2 * GWEI);
    rpc.send(&first).await.expect("first");
    let small = transfer(&alice, 31337, 0, carol, 100, 10_500_000_000, 2_100_000_000);
    let (code, msg) = rpc.send(&small).await.unwrap_err();
    assert_eq!(
        (code, msg.as_str()),
        (-32000, "replacement transaction underpriced")
    );
    let (_, msg) = rpc.send(&first).await.unwrap_err();
    assert_eq!(msg, "already known");

    let bumped = transfer(&alice, 31337, 0, carol, 100, 11 * GWEI, 2_200_000_000);
    let hash = rpc.send(&bumped).await.expect("replacement");
    assert_eq!(
        rpc.call("eth_getTransactionByHash", json!([first.tx_hash()]))
            .await,
        Value::Null
    );
    rpc.call("evm_mine", json!([])).await;
    let receipt: TransactionReceipt =
        serde_json::from_value(rpc.call("eth_getTransactionReceipt", json!([hash])).await)
            .expect("receipt");
    assert!(receipt.status());
    assert_eq!(rpc.balance(carol).await, U256::from(100));
    assert_eq!(rpc.balance(bob).await, U256::ZERO);
}

#[tokio::test]
async fn restart_keeps_blocks_balances_and_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = PrivateKeySigner::random();
    let dave = Address::repeat_byte(0xd0);
    let (head, head_hash, pending_hash) = {
        let (sim, rpc, stop) =
            start(dir.path(), vec![(alice.address(), U256::from(ETH))], false).await;
        sim.fund(dave, U256::from(3 * ETH)).await.expect("fund");
        sim.mine(2).await.expect("mine");
        rpc.call(
            "anvil_setBalance",
            json!([Address::repeat_byte(0xee), "0x64"]),
        )
        .await;
        let pending = rpc
            .send(&transfer(&alice, 31337, 0, dave, 7, 10 * GWEI, GWEI))
            .await
            .expect("send");
        let head = sim.block_number().await;
        let block = rpc
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await;
        stop.cancel();
        (head, block["hash"].clone(), pending)
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (sim, rpc, _stop) = start(dir.path(), vec![], false).await;
    assert_eq!(sim.block_number().await, head);
    assert_eq!(
        rpc.call("eth_getBlockByNumber", json!(["latest", false]))
            .await["hash"],
        head_hash
    );
    assert_eq!(sim.balance(dave).await, U256::from(3 * ETH));
    assert_eq!(
        rpc.balance(Address::repeat_byte(0xee)).await,
        U256::from(100)
    );
    let tx = rpc
        .call("eth_getTransactionByHash", json!([pending_hash]))
        .await;
    assert_eq!(tx["blockHash"], Value::Null);
    sim.mine(1).await.expect("mine");
    assert_eq!(sim.balance(dave).await, U256::from(3 * ETH + 7));
}

#[tokio::test]
async fn automine_snapshot_and_revert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, rpc, _stop) = start(dir.path(), vec![], true).await;
    let erin = Address::repeat_byte(0xe1);
    let hash = sim.fund(erin, U256::from(ETH)).await.expect("fund");
    // Automine: already in block 1.
    let receipt = rpc.call("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(receipt["blockNumber"], "0x1");
    assert_eq!(receipt["status"], "0x1");

    let snap = rpc.call("evm_snapshot", json!([])).await;
    sim.fund(erin, U256::from(ETH)).await.expect("fund");
    rpc.call("anvil_mine", json!([3])).await;
    assert_eq!(sim.block_number().await, 5);
    assert_eq!(sim.balance(erin).await, U256::from(2 * ETH));
    assert_eq!(rpc.call("evm_revert", json!([snap.clone()])).await, true);
    assert_eq!(sim.block_number().await, 1);
    assert_eq!(sim.balance(erin).await, U256::from(ETH));
    // The faucet is unlocked for eth_sendTransaction, like anvil's dev accounts.
    let faucet = sim.faucet_address().await;
    let sent = rpc
        .call(
            "eth_sendTransaction",
            json!([{"from": faucet, "to": erin, "value": "0x10"}]),
        )
        .await;
    let receipts = rpc.call("eth_getBlockReceipts", json!(["latest"])).await;
    assert_eq!(receipts[0]["transactionHash"], sent);
    assert_eq!(sim.balance(erin).await, U256::from(ETH + 16));
    let (code, _) = rpc
        .fail(
            "eth_sendTransaction",
            json!([{"from": erin, "to": faucet, "value": "0x1"}]),
        )
        .await;
    assert_eq!(code, -32000);
    // ... also to deploy a contract, its gas estimated by the node.
    let nonce = quantity(
        &rpc.call("eth_getTransactionCount", json!([faucet, "latest"]))
            .await,
    );
    let code_hex = simulators::ethereum::token::creation_code(&tusd()).expect("bytecode");
    let deployed = rpc
        .call(
            "eth_sendTransaction",
            json!([{"from": faucet, "data": code_hex}]),
        )
        .await;
    let receipts = rpc.call("eth_getBlockReceipts", json!(["latest"])).await;
    assert_eq!(receipts[0]["transactionHash"], deployed);
    assert_eq!(receipts[0]["status"], "0x1");
    assert_eq!(receipts[0]["contractAddress"], json!(faucet.create(nonce)));
    // A snapshot is used up by reverting to it.
    assert_eq!(rpc.call("evm_revert", json!([snap])).await, false);

    for tag in ["latest", "safe", "finalized", "pending"] {
        let b = rpc.call("eth_getBlockByNumber", json!([tag, false])).await;
        assert!(quantity(&b["number"]) <= 3, "{tag}");
    }
}

#[tokio::test]
async fn torn_last_log_line_is_dropped_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head_hash = {
        let (sim, rpc, stop) = start(dir.path(), vec![], false).await;
        sim.fund(Address::repeat_byte(0xf1), U256::from(ETH))
            .await
            .expect("fund");
        sim.mine(1).await.expect("mine");
        let h = rpc
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await["hash"]
            .clone();
        stop.cancel();
        h
    };
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("chain.jsonl"))
            .expect("open");
        f.write_all(b"{\"block\":{\"timest").expect("write");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (sim, rpc, _stop) = start(dir.path(), vec![], false).await;
    assert_eq!(
        rpc.call("eth_getBlockByNumber", json!(["latest", false]))
            .await["hash"],
        head_hash
    );
    sim.mine(1).await.expect("mine after repair");
    assert_eq!(sim.block_number().await, 2);
}

// ---- Contracts: TestToken through revm ----

use simulators::ethereum::token::{
    balance_of_calldata, creation_code, transfer_calldata, transfer_topic, TokenConfig,
};
use simulators::ethereum::FAUCET_KEY_HEX;

fn signed_1559(
    signer: &PrivateKeySigner,
    nonce: u64,
    to: TxKind,
    gas_limit: u64,
    input: Bytes,
) -> TxEnvelope {
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit,
        max_fee_per_gas: 10 * GWEI,
        max_priority_fee_per_gas: GWEI,
        to,
        value: U256::ZERO,
        access_list: Default::default(),
        input,
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
    TxEnvelope::from(tx.into_signed(sig))
}

fn word(a: Address) -> B256 {
    B256::left_padding_from(a.as_slice())
}

fn tusd() -> TokenConfig {
    TokenConfig {
        name: "Test USD".into(),
        symbol: "TUSD".into(),
        decimals: 6,
        supply: U256::from(1_000_000_000_000u64),
    }
}

impl Rpc {
    async fn receipt(&self, hash: B256) -> TransactionReceipt {
        serde_json::from_value(self.call("eth_getTransactionReceipt", json!([hash])).await)
            .expect("receipt")
    }

    async fn token_balance(&self, token: Address, owner: Address, block: Value) -> U256 {
        let out = self
            .call(
                "eth_call",
                json!([{"to": token, "input": balance_of_calldata(owner)}, block]),
            )
            .await;
        let bytes: Bytes = serde_json::from_value(out).expect("bytes");
        U256::from_be_slice(&bytes)
    }

    async fn nonce(&self, a: Address) -> u64 {
        quantity(
            &self
                .call("eth_getTransactionCount", json!([a, "pending"]))
                .await,
        )
    }

    /// The JSON-RPC error object of a call that must fail.
    async fn error(&self, method: &str, params: Value) -> Value {
        let r = self.raw(method, params.clone()).await;
        r.get("error")
            .unwrap_or_else(|| panic!("{method} {params} succeeded: {r}"))
            .clone()
    }
}

#[tokio::test]
async fn token_deploy_transfer_logs_calls_and_revert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = PrivateKeySigner::random();
    let bob = Address::repeat_byte(0xb0);
    let (_sim, rpc, stop) = start(
        dir.path(),
        vec![(alice.address(), U256::from(10 * ETH))],
        false,
    )
    .await;
    let supply = tusd().supply;

    // Deploy by a signed EIP-1559 creation transaction.
    let code = creation_code(&tusd()).expect("bytecode");
    let estimate = quantity(
        &rpc.call(
            "eth_estimateGas",
            json!([{"from": alice.address(), "input": code}]),
        )
        .await,
    );
    assert!(estimate > 53_000 && estimate < 3_000_000, "{estimate}");
    let deploy = rpc
        .send(&signed_1559(&alice, 0, TxKind::Create, estimate, code))
        .await
        .expect("creation admitted");
    rpc.call("evm_mine", json!([])).await;
    let receipt = rpc.receipt(deploy).await;
    let token = alice.address().create(0);
    assert!(receipt.status());
    assert_eq!(receipt.contract_address, Some(token));
    assert!(receipt.gas_used > 53_000 && receipt.gas_used <= estimate);
    let logs = receipt.inner.logs();
    assert_eq!(logs.len(), 1, "mint emits Transfer(0, alice, supply)");
    assert_eq!(
        logs[0].topics(),
        &[transfer_topic(), word(Address::ZERO), word(alice.address())]
    );
    assert_ne!(
        rpc.call("eth_getCode", json!([token, "latest"])).await,
        "0x"
    );
    assert_eq!(rpc.call("eth_getCode", json!([token, "0x0"])).await, "0x");
    assert_eq!(
        rpc.token_balance(token, alice.address(), json!("latest"))
            .await,
        supply
    );

    // Transfer 250 units to bob.
    let data = transfer_calldata(bob, U256::from(250));
    let gas = quantity(
        &rpc.call(
            "eth_estimateGas",
            json!([{"from": alice.address(), "to": token, "input": data}]),
        )
        .await,
    );
    // The estimate is the smallest limit that works: one less runs out.
    let (code, message) = rpc
        .fail(
            "eth_call",
            json!([{"from": alice.address(), "to": token, "input": data, "gas": format!("{:#x}", gas - 1)}]),
        )
        .await;
    assert_eq!((code, message.as_str()), (-32000, "out of gas"));
    let exact = signed_1559(&alice, 1, TxKind::Call(token), gas, data.clone());
    assert!(gas > 21_000 + 16 * 4);
    let sent = rpc.send(&exact).await.expect("transfer admitted");
    rpc.call("evm_mine", json!([])).await;
    let r = rpc.receipt(sent).await;
    assert!(r.status(), "estimate {gas} is enough");
    assert!(r.gas_used <= gas);
    let block: Block<Transaction> = serde_json::from_value(
        rpc.call("eth_getBlockByNumber", json!(["0x2", false]))
            .await,
    )
    .expect("block");
    let log = &r.inner.logs()[0];
    assert_eq!(log.address(), token);
    assert_eq!(
        log.topics(),
        &[transfer_topic(), word(alice.address()), word(bob)]
    );
    assert_eq!(U256::from_be_slice(&log.data().data), U256::from(250));
    assert_eq!(log.block_hash, Some(block.header.hash));
    assert_eq!(log.block_number, Some(2));
    assert_eq!(log.transaction_index, Some(0));
    assert_eq!(log.log_index, Some(0));
    assert_eq!(log.transaction_hash, Some(sent));
    assert_eq!(block.header.inner.logs_bloom, *r.inner.logs_bloom());
    assert!(block
        .header
        .inner
        .logs_bloom
        .contains_input(alloy_primitives::BloomInput::Raw(token.as_slice())));
    assert_eq!(
        rpc.token_balance(token, bob, json!("latest")).await,
        U256::from(250)
    );
    assert_eq!(
        rpc.token_balance(token, bob, json!("0x1")).await,
        U256::ZERO
    );
    // balanceOf is the mapping at slot 3 (name, symbol, totalSupply first).
    let mut key = [0u8; 64];
    key[12..32].copy_from_slice(bob.as_slice());
    key[63] = 3;
    let slot = alloy_primitives::keccak256(key);
    assert_eq!(
        rpc.call("eth_getStorageAt", json!([token, slot, "latest"]))
            .await,
        json!(B256::from(U256::from(250)))
    );
    assert_eq!(
        rpc.call("eth_getStorageAt", json!([token, "0x2", "latest"]))
            .await,
        json!(B256::from(supply))
    );

    // eth_getLogs: address (one or many), topics with null and OR-lists,
    // block ranges and blockHash.
    let get_logs = |filter: Value| {
        let rpc = &rpc;
        async move {
            let v = rpc.call("eth_getLogs", json!([filter])).await;
            v.as_array().expect("array").clone()
        }
    };
    let found = get_logs(json!({
        "fromBlock": "0x0", "address": token,
        "topics": [transfer_topic(), null, word(bob)],
    }))
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["transactionHash"], json!(sent));
    assert_eq!(found[0]["logIndex"], "0x0");
    assert_eq!(found[0]["removed"], false);
    let all = get_logs(json!({"fromBlock": "earliest", "topics": [transfer_topic()]})).await;
    assert_eq!(all.len(), 2, "mint and transfer");
    assert_eq!(all[0]["blockNumber"], "0x1");
    let either = get_logs(json!({
        "fromBlock": "0x0",
        "address": [Address::repeat_byte(0x77), token],
        "topics": [null, [word(Address::ZERO), word(alice.address())]],
    }))
    .await;
    assert_eq!(either.len(), 2);
    let by_hash = get_logs(json!({"blockHash": block.header.hash})).await;
    assert_eq!(by_hash.len(), 1);
    assert!(
        get_logs(json!({"fromBlock": "0x0", "address": Address::repeat_byte(0x77)}))
            .await
            .is_empty()
    );
    assert!(
        get_logs(json!({"fromBlock": "0x0", "topics": [null, null, null, null]}))
            .await
            .is_empty(),
        "Transfer has three topics, the filter asks for four"
    );
    assert!(
        get_logs(json!({})).await.len() == 1,
        "default range is the head block"
    );
    let (code, _) = rpc
        .fail(
            "eth_getLogs",
            json!([{"fromBlock": "0x2", "toBlock": "0x1"}]),
        )
        .await;
    assert_eq!(code, -32602);
    let (code, _) = rpc
        .fail(
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "blockHash": block.header.hash}]),
        )
        .await;
    assert_eq!(code, -32602);

    // A transfer beyond the balance: error code 3 with the revert data from
    // eth_call and eth_estimateGas; mined, it fails with status 0, no log,
    // its fee charged and its nonce used.
    let too_much = transfer_calldata(bob, supply);
    for method in ["eth_call", "eth_estimateGas"] {
        let e = rpc
            .error(
                method,
                json!([{"from": alice.address(), "to": token, "input": too_much}, "latest"]),
            )
            .await;
        assert_eq!(e["code"], 3, "{method}: {e}");
        assert_eq!(
            e["message"],
            "execution reverted: ERC20: transfer amount exceeds balance"
        );
        let data = e["data"].as_str().expect("revert data");
        assert!(data.starts_with("0x08c379a0"), "{data}");
    }
    let eth_before = rpc.balance(alice.address()).await;
    let failed = rpc
        .send(&signed_1559(
            &alice,
            2,
            TxKind::Call(token),
            100_000,
            too_much,
        ))
        .await
        .expect("admitted");
    rpc.call("evm_mine", json!([])).await;
    let r = rpc.receipt(failed).await;
    assert!(!r.status());
    assert!(r.inner.logs().is_empty());
    assert_eq!(*r.inner.logs_bloom(), alloy_primitives::Bloom::ZERO);
    assert!(r.gas_used > 21_000 && r.gas_used < 100_000);
    assert_eq!(
        rpc.balance(alice.address()).await,
        eth_before - U256::from(r.gas_used) * U256::from(r.effective_gas_price)
    );
    assert_eq!(rpc.nonce(alice.address()).await, 3);
    assert_eq!(
        rpc.token_balance(token, bob, json!("latest")).await,
        U256::from(250)
    );
    assert_eq!(
        rpc.token_balance(token, alice.address(), json!("latest"))
            .await,
        supply - U256::from(250)
    );

    // evm_snapshot / evm_revert restore contract storage too.
    let snap = rpc.call("evm_snapshot", json!([])).await;
    rpc.send(&signed_1559(
        &alice,
        3,
        TxKind::Call(token),
        gas,
        transfer_calldata(bob, U256::from(100)),
    ))
    .await
    .expect("admitted");
    rpc.call("evm_mine", json!([])).await;
    assert_eq!(
        rpc.token_balance(token, bob, json!("latest")).await,
        U256::from(350)
    );
    assert_eq!(rpc.call("evm_revert", json!([snap])).await, true);
    assert_eq!(
        rpc.token_balance(token, bob, json!("latest")).await,
        U256::from(250)
    );
    stop.cancel();
}

#[tokio::test]
async fn configured_tokens_are_deployed_once_and_found_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faucet: PrivateKeySigner = FAUCET_KEY_HEX.parse().expect("key");
    let usdc = TokenConfig {
        name: "USD Coin".into(),
        symbol: "USDC".into(),
        decimals: 6,
        supply: U256::from(10u64).pow(U256::from(15u64)),
    };
    let start_with = |tokens: Vec<TokenConfig>| {
        let dir = dir.path().to_path_buf();
        async move {
            let mut cfg = EthereumSimConfig::new(dir);
            cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
            cfg.tokens = tokens;
            let stop = CancellationToken::new();
            let sim = EthereumSim::start(cfg, stop.clone()).await.expect("start");
            let rpc = Rpc {
                http: reqwest::Client::new(),
                url: sim.rpc_url(),
            };
            (sim, rpc, stop)
        }
    };
    let (sim, rpc, stop) = start_with(vec![usdc.clone(), tusd()]).await;
    let tokens = sim.tokens().await;
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0].config, usdc);
    assert_eq!(tokens[0].address, faucet.address().create(0));
    assert_eq!(tokens[1].address, faucet.address().create(1));
    assert_eq!(sim.block_number().await, 1, "both deployed in one block");
    assert_eq!(
        rpc.token_balance(tokens[0].address, faucet.address(), json!("latest"))
            .await,
        usdc.supply
    );
    let bob = Address::repeat_byte(0xb0);
    let nonce = rpc.nonce(faucet.address()).await;
    rpc.send(&signed_1559(
        &faucet,
        nonce,
        TxKind::Call(tokens[1].address),
        100_000,
        transfer_calldata(bob, U256::from(42)),
    ))
    .await
    .expect("admitted");
    sim.mine(1).await.expect("mine");
    stop.cancel();
    drop(sim);

    // Same configuration: nothing deployed again.
    let (sim, rpc, stop) = start_with(vec![usdc.clone(), tusd()]).await;
    assert_eq!(sim.tokens().await, tokens);
    assert_eq!(sim.block_number().await, 2);
    assert_eq!(
        rpc.token_balance(tokens[1].address, bob, json!("latest"))
            .await,
        U256::from(42)
    );
    stop.cancel();
    drop(sim);

    // A token added to the configuration is deployed at the next nonce.
    let eurc = TokenConfig {
        name: "Euro Coin".into(),
        symbol: "EURC".into(),
        decimals: 6,
        supply: U256::from(5u64),
    };
    let (sim, _rpc, stop) = start_with(vec![usdc, eurc.clone(), tusd()]).await;
    let again = sim.tokens().await;
    assert_eq!(again[0], tokens[0]);
    assert_eq!(again[2], tokens[1]);
    assert_eq!(again[1].config, eurc);
    assert_eq!(again[1].address, faucet.address().create(3));
    assert_eq!(sim.block_number().await, 3);
    stop.cancel();
}
