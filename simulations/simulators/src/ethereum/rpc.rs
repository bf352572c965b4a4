//! Ethereum JSON-RPC 2.0 over HTTP: the execution-API subset the engine and
//! wallets use, plus anvil/hardhat test methods. Objects are built from
//! alloy's RPC types so that their field names and encodings are exactly
//! what alloy clients deserialize.

use std::sync::Arc;

use alloy_consensus::transaction::Recovered;
use alloy_consensus::{ReceiptEnvelope, Transaction as _, TxEnvelope};
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_eth::{
    Block, BlockTransactions, Header as RpcHeader, Transaction, TransactionReceipt, Withdrawals,
};
use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::chain::{
    receipt_envelope, EthBlock, EthChain, TxError, FINALIZED_DEPTH, SAFE_DEPTH, SUGGESTED_TIP,
};
use super::{EthNode, EthShared, SimError};

/// A JSON-RPC error.
#[derive(Debug, Clone)]
struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn invalid(message: impl Into<String>) -> Self {
        RpcError {
            code: -32602,
            message: message.into(),
        }
    }
    fn server(message: impl Into<String>) -> Self {
        RpcError {
            code: -32000,
            message: message.into(),
        }
    }
}

impl From<SimError> for RpcError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Rejected(TxError::Decode(m)) => RpcError::invalid(format!("rlp: {m}")),
            SimError::Rejected(t) => RpcError::server(t.to_string()),
            other => RpcError {
                code: -32603,
                message: other.to_string(),
            },
        }
    }
}

pub(crate) fn router(shared: Arc<EthShared>) -> Router {
    Router::new().route("/", post(handle)).with_state(shared)
}

fn json_response(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(shared): State<Arc<EthShared>>, body: Body) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(&json!({
                "jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": format!("parse error: {e}")},
            }))
        }
    };
    match req {
        Value::Array(items) if items.is_empty() => json_response(&json!({
            "jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "empty batch"},
        })),
        Value::Array(items) => json_response(&Value::Array(
            items.iter().map(|r| reply(&shared, r)).collect(),
        )),
        single => json_response(&reply(&shared, &single)),
    }
}

fn reply(shared: &EthShared, req: &Value) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let result = match req.get("method").and_then(Value::as_str) {
        Some(method) => {
            let params = match req.get("params") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => {
                    return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "params must be an array"}})
                }
            };
            let span = tracing::debug_span!("ethereum_sim.rpc", method);
            let _g = span.enter();
            dispatch(shared, method, &params)
        }
        None => Err(RpcError {
            code: -32600,
            message: "invalid request: missing method".into(),
        }),
    };
    match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err(e) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
        }
    }
}

fn hex_u64(n: u64) -> Value {
    json!(format!("{n:#x}"))
}

fn param(p: &[Value], i: usize) -> Option<&Value> {
    p.get(i).filter(|v| !v.is_null())
}

fn parse_quantity(v: &Value) -> Result<u64, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::invalid("expected a hex quantity"))?;
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| RpcError::invalid(format!("hex string without 0x prefix: {s}")))?;
    u64::from_str_radix(digits, 16)
        .map_err(|_| RpcError::invalid(format!("invalid hex quantity: {s}")))
}

fn parse_u256(v: &Value) -> Result<U256, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::invalid("expected a hex quantity"))?;
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| RpcError::invalid(format!("hex string without 0x prefix: {s}")))?;
    U256::from_str_radix(digits, 16)
        .map_err(|_| RpcError::invalid(format!("invalid hex quantity: {s}")))
}

fn parse_address(v: Option<&Value>) -> Result<Address, RpcError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid("missing address"))?;
    s.parse()
        .map_err(|_| RpcError::invalid(format!("invalid address: {s}")))
}

fn parse_hash(v: Option<&Value>) -> Result<B256, RpcError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid("missing hash"))?;
    s.parse()
        .map_err(|_| RpcError::invalid(format!("invalid hash: {s}")))
}

/// Resolves a block tag, number, or EIP-1898 object to a block number.
/// `Ok(None)` is a number beyond the head.
fn resolve_block(chain: &EthChain, v: Option<&Value>) -> Result<Option<u64>, RpcError> {
    let head = chain.head_number();
    let Some(v) = v else { return Ok(Some(head)) };
    if let Some(obj) = v.as_object() {
        if let Some(h) = obj.get("blockHash") {
            let hash = parse_hash(Some(h))?;
            return chain
                .block_by_hash(&hash)
                .map(|b| Some(b.header.number))
                .ok_or_else(|| RpcError::server(format!("header for hash not found: {hash}")));
        }
        return resolve_block(chain, obj.get("blockNumber"));
    }
    match v.as_str() {
        Some("latest") | Some("pending") => Ok(Some(head)),
        Some("earliest") => Ok(Some(0)),
        Some("safe") => Ok(Some(head.saturating_sub(SAFE_DEPTH))),
        Some("finalized") => Ok(Some(head.saturating_sub(FINALIZED_DEPTH))),
        Some(_) => {
            let n = parse_quantity(v)?;
            Ok((n <= head).then_some(n))
        }
        None => Err(RpcError::invalid("invalid block number or tag")),
    }
}

fn rpc_tx(block: Option<&EthBlock>, index: usize, tx: &TxEnvelope, from: Address) -> Transaction {
    Transaction {
        inner: Recovered::new_unchecked(tx.clone(), from),
        block_hash: block.map(|b| b.hash),
        block_number: block.map(|b| b.header.number),
        transaction_index: block.map(|_| index as u64),
        effective_gas_price: block
            .and_then(|b| b.txs.get(index))
            .map(|m| m.effective_gas_price),
        block_timestamp: block.map(|b| b.header.timestamp),
    }
}

fn block_json(b: &EthBlock, full: bool) -> Result<Value, RpcError> {
    let transactions = if full {
        BlockTransactions::Full(
            b.txs
                .iter()
                .enumerate()
                .map(|(i, m)| rpc_tx(Some(b), i, &m.tx, m.from))
                .collect(),
        )
    } else {
        BlockTransactions::Hashes(b.txs.iter().map(|m| *m.tx.tx_hash()).collect())
    };
    let block: Block<Transaction> = Block {
        header: RpcHeader {
            hash: b.hash,
            inner: b.header.clone(),
            total_difficulty: Some(U256::ZERO),
            size: Some(U256::from(b.size())),
        },
        uncles: Vec::new(),
        transactions,
        withdrawals: Some(Withdrawals::default()),
    };
    serde_json::to_value(&block).map_err(|e| RpcError {
        code: -32603,
        message: e.to_string(),
    })
}

fn receipt_json(b: &EthBlock, index: usize) -> Result<Value, RpcError> {
    let m = &b.txs[index];
    let inner: ReceiptEnvelope<alloy_rpc_types_eth::Log> = receipt_envelope(m);
    let receipt = TransactionReceipt {
        inner,
        transaction_hash: *m.tx.tx_hash(),
        transaction_index: Some(index as u64),
        block_hash: Some(b.hash),
        block_number: Some(b.header.number),
        gas_used: m.gas_used,
        effective_gas_price: m.effective_gas_price,
        blob_gas_used: None,
        blob_gas_price: None,
        from: m.from,
        to: m.tx.to(),
        contract_address: None,
    };
    serde_json::to_value(&receipt).map_err(|e| RpcError {
        code: -32603,
        message: e.to_string(),
    })
}

fn fee_history(chain: &EthChain, p: &[Value]) -> Result<Value, RpcError> {
    let count = match param(p, 0) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(1),
        Some(v) => parse_quantity(v)?,
        None => return Err(RpcError::invalid("missing block count")),
    }
    .clamp(1, 1024);
    let newest = resolve_block(chain, param(p, 1))?.unwrap_or(chain.head_number());
    let percentiles: Vec<f64> = param(p, 2)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let oldest = newest.saturating_sub(count - 1);
    let mut base_fees = Vec::new();
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    for n in oldest..=newest {
        let Some(b) = chain.block(n) else { break };
        let base = b.header.base_fee_per_gas.unwrap_or(0);
        base_fees.push(json!(format!("{base:#x}")));
        ratios.push(json!(b.header.gas_used as f64 / b.header.gas_limit as f64));
        let mut tips: Vec<u128> = b
            .txs
            .iter()
            .map(|m| m.effective_gas_price - u128::from(base))
            .collect();
        tips.sort_unstable();
        rewards.push(Value::Array(
            percentiles
                .iter()
                .map(|pct| {
                    let tip = if tips.is_empty() {
                        0
                    } else {
                        let idx = ((pct / 100.0) * (tips.len() - 1) as f64).round() as usize;
                        tips[idx.min(tips.len() - 1)]
                    };
                    json!(format!("{tip:#x}"))
                })
                .collect(),
        ));
    }
    let next = if newest == chain.head_number() {
        chain.next_base_fee()
    } else {
        chain
            .block(newest + 1)
            .and_then(|b| b.header.base_fee_per_gas)
            .unwrap_or(0)
    };
    base_fees.push(json!(format!("{next:#x}")));
    let mut out = json!({
        "oldestBlock": format!("{oldest:#x}"),
        "baseFeePerGas": base_fees,
        "gasUsedRatio": ratios,
    });
    if !percentiles.is_empty() {
        out["reward"] = Value::Array(rewards);
    }
    Ok(out)
}

fn dispatch(shared: &EthShared, method: &str, p: &[Value]) -> Result<Value, RpcError> {
    let mut guard = shared.lock()?;
    let node: &mut EthNode = &mut guard;
    let chain = &node.chain;
    match method {
        "web3_clientVersion" => Ok(json!(format!(
            "swap-sim-ethereum/v{}",
            env!("CARGO_PKG_VERSION")
        ))),
        "net_version" => Ok(json!(chain.chain_id().to_string())),
        "net_listening" => Ok(json!(true)),
        "net_peerCount" => Ok(hex_u64(0)),
        "eth_chainId" => Ok(hex_u64(chain.chain_id())),
        "eth_syncing" => Ok(json!(false)),
        "eth_mining" => Ok(json!(false)),
        "eth_accounts" => Ok(json!([])),
        "eth_blockNumber" => Ok(hex_u64(chain.head_number())),
        "eth_gasPrice" => Ok(json!(format!(
            "{:#x}",
            u128::from(chain.next_base_fee()) + SUGGESTED_TIP
        ))),
        "eth_maxPriorityFeePerGas" => Ok(json!(format!("{SUGGESTED_TIP:#x}"))),
        "eth_feeHistory" => fee_history(chain, p),
        "eth_getBlockByNumber" => {
            let full = param(p, 1).and_then(Value::as_bool).unwrap_or(false);
            if param(p, 0).is_none() {
                return Err(RpcError::invalid("missing value for required argument 0"));
            }
            match resolve_block(chain, param(p, 0))? {
                Some(n) => chain
                    .block(n)
                    .map(|b| block_json(b, full))
                    .unwrap_or(Ok(Value::Null)),
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockByHash" => {
            let hash = parse_hash(param(p, 0))?;
            let full = param(p, 1).and_then(Value::as_bool).unwrap_or(false);
            chain
                .block_by_hash(&hash)
                .map(|b| block_json(b, full))
                .unwrap_or(Ok(Value::Null))
        }
        "eth_getBlockTransactionCountByNumber" => match resolve_block(chain, param(p, 0))? {
            Some(n) => Ok(chain
                .block(n)
                .map(|b| hex_u64(b.txs.len() as u64))
                .unwrap_or(Value::Null)),
            None => Ok(Value::Null),
        },
        "eth_getBalance" => {
            let a = parse_address(param(p, 0))?;
            let n = resolve_block(chain, param(p, 1))?
                .ok_or_else(|| RpcError::server("header not found"))?;
            Ok(json!(chain.account_at(&a, n).balance))
        }
        "eth_getTransactionCount" => {
            let a = parse_address(param(p, 0))?;
            if param(p, 1).and_then(Value::as_str) == Some("pending") {
                return Ok(hex_u64(chain.pending_nonce(&a)));
            }
            let n = resolve_block(chain, param(p, 1))?
                .ok_or_else(|| RpcError::server("header not found"))?;
            Ok(hex_u64(chain.account_at(&a, n).nonce))
        }
        "eth_getCode" => {
            parse_address(param(p, 0))?;
            Ok(json!("0x"))
        }
        "eth_getStorageAt" => Ok(json!(format!("0x{}", "00".repeat(32)))),
        "eth_call" => {
            if param(p, 0).and_then(Value::as_object).is_none() {
                return Err(RpcError::invalid("missing transaction object"));
            }
            Ok(json!("0x"))
        }
        "eth_estimateGas" => {
            let obj = param(p, 0)
                .and_then(Value::as_object)
                .ok_or_else(|| RpcError::invalid("missing transaction object"))?;
            if obj.get("to").is_none_or(Value::is_null) {
                return Err(RpcError::server(
                    "contract creation is not supported by this node",
                ));
            }
            let data = obj
                .get("input")
                .or_else(|| obj.get("data"))
                .and_then(Value::as_str)
                .map(|s| {
                    s.parse::<Bytes>()
                        .map_err(|_| RpcError::invalid("invalid input data"))
                })
                .transpose()?
                .unwrap_or_default();
            let data_gas: u64 = data.iter().map(|b| if *b == 0 { 4 } else { 16 }).sum();
            Ok(hex_u64(super::chain::TRANSFER_GAS + data_gas))
        }
        "eth_getLogs" => {
            if param(p, 0).and_then(Value::as_object).is_none() {
                return Err(RpcError::invalid("missing filter object"));
            }
            Ok(json!([]))
        }
        "eth_sendRawTransaction" => {
            let s = param(p, 0)
                .and_then(Value::as_str)
                .ok_or_else(|| RpcError::invalid("missing raw transaction"))?;
            let raw: Bytes = s
                .parse()
                .map_err(|_| RpcError::invalid("invalid hex for raw transaction"))?;
            let hash = node.send_raw(&raw)?;
            Ok(json!(hash))
        }
        "eth_getTransactionByHash" => {
            let hash = parse_hash(param(p, 0))?;
            if let Some((b, i)) = chain.find_tx(&hash) {
                let m = &b.txs[i];
                return serde_json::to_value(rpc_tx(Some(b), i, &m.tx, m.from)).map_err(|e| {
                    RpcError {
                        code: -32603,
                        message: e.to_string(),
                    }
                });
            }
            match chain.pending_tx(&hash) {
                Some(pt) => {
                    serde_json::to_value(rpc_tx(None, 0, &pt.tx, pt.from)).map_err(|e| RpcError {
                        code: -32603,
                        message: e.to_string(),
                    })
                }
                None => Ok(Value::Null),
            }
        }
        "eth_getBlockReceipts" => match resolve_block(chain, param(p, 0))? {
            Some(n) => match chain.block(n) {
                Some(b) => Ok(Value::Array(
                    (0..b.txs.len())
                        .map(|i| receipt_json(b, i))
                        .collect::<Result<_, _>>()?,
                )),
                None => Ok(Value::Null),
            },
            None => Ok(Value::Null),
        },
        "eth_sendTransaction" => {
            // Only the faucet (anvil's first dev account) is unlocked.
            let obj = param(p, 0)
                .and_then(Value::as_object)
                .ok_or_else(|| RpcError::invalid("missing transaction object"))?;
            let from = parse_address(obj.get("from"))?;
            if from != node.faucet_address() {
                return Err(RpcError::server(format!("no signer available for {from}")));
            }
            let to = parse_address(obj.get("to"))?;
            let value = match obj.get("value") {
                None | Some(Value::Null) => U256::ZERO,
                Some(v) => parse_u256(v)?,
            };
            Ok(json!(node.fund(to, value)?))
        }
        "eth_getTransactionReceipt" => {
            let hash = parse_hash(param(p, 0))?;
            match chain.find_tx(&hash) {
                Some((b, i)) => receipt_json(b, i),
                None => Ok(Value::Null),
            }
        }
        "txpool_content" => {
            let mut pending = serde_json::Map::new();
            for pt in chain.pool() {
                let entry = pending
                    .entry(pt.from.to_string())
                    .or_insert_with(|| json!({}));
                entry[pt.tx.nonce().to_string()] =
                    serde_json::to_value(rpc_tx(None, 0, &pt.tx, pt.from)).map_err(|e| {
                        RpcError {
                            code: -32603,
                            message: e.to_string(),
                        }
                    })?;
            }
            Ok(json!({"pending": pending, "queued": {}}))
        }
        "evm_mine" => {
            node.mine(1)?;
            Ok(json!("0x0"))
        }
        "anvil_mine" | "hardhat_mine" => {
            let n = match param(p, 0) {
                None => 1,
                Some(Value::Number(n)) => n
                    .as_u64()
                    .ok_or_else(|| RpcError::invalid("invalid block count"))?,
                Some(v) => parse_quantity(v)?,
            };
            if n > 100_000 {
                return Err(RpcError::invalid("block count too large (max 100000)"));
            }
            node.mine(n)?;
            Ok(Value::Null)
        }
        "anvil_setBalance" | "hardhat_setBalance" => {
            let a = parse_address(param(p, 0))?;
            let wei = parse_u256(param(p, 1).ok_or_else(|| RpcError::invalid("missing balance"))?)?;
            node.set_balance(a, wei)?;
            Ok(Value::Null)
        }
        "evm_snapshot" | "anvil_snapshot" => Ok(hex_u64(node.snapshot())),
        "evm_revert" | "anvil_revert" => {
            let id = parse_quantity(
                param(p, 0).ok_or_else(|| RpcError::invalid("missing snapshot id"))?,
            )?;
            Ok(json!(node.revert(id)?))
        }
        _ => Err(RpcError {
            code: -32601,
            message: format!("the method {method} does not exist/is not available"),
        }),
    }
}
