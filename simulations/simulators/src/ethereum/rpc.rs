//! Ethereum JSON-RPC 2.0 over HTTP: the execution-API subset the engine and
//! wallets use, plus anvil/hardhat test methods. Objects are built from
//! alloy's RPC types so that their field names and encodings are exactly
//! what alloy clients deserialize.

use std::sync::Arc;

use alloy_consensus::transaction::Recovered;
use alloy_consensus::{ReceiptEnvelope, Transaction as _, TxEnvelope};
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
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
    receipt_with_logs, EthBlock, EthChain, MinedTx, TxError, FINALIZED_DEPTH, SAFE_DEPTH,
    SUGGESTED_TIP,
};
use super::evm::{self, CallError, CallRequest};
use super::{EthNode, EthShared, SimError};

/// A JSON-RPC error.
#[derive(Debug, Clone)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        RpcError::new(-32602, message)
    }
    fn server(message: impl Into<String>) -> Self {
        RpcError::new(-32000, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        RpcError::new(-32603, message)
    }
}

impl From<CallError> for RpcError {
    fn from(e: CallError) -> Self {
        match &e {
            // geth: code 3, the revert data as hex in `data`.
            CallError::Reverted(data) => RpcError {
                code: 3,
                message: e.to_string(),
                data: Some(json!(data)),
            },
            _ => RpcError::server(e.to_string()),
        }
    }
}

impl From<SimError> for RpcError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Rejected(TxError::Decode(m)) => RpcError::invalid(format!("rlp: {m}")),
            SimError::Rejected(t) => RpcError::server(t.to_string()),
            other => RpcError::internal(other.to_string()),
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
        None => Err(RpcError::new(-32600, "invalid request: missing method")),
    };
    match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err(e) => {
            let mut error = json!({"code": e.code, "message": e.message});
            if let Some(data) = e.data {
                error["data"] = data;
            }
            json!({"jsonrpc": "2.0", "id": id, "error": error})
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
    serde_json::to_value(&block).map_err(|e| RpcError::internal(e.to_string()))
}

fn receipt_json(b: &EthBlock, index: usize) -> Result<Value, RpcError> {
    let m = &b.txs[index];
    let inner: ReceiptEnvelope<alloy_rpc_types_eth::Log> =
        receipt_with_logs(m, rpc_logs(b, index, m));
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
        contract_address: m.contract_address,
    };
    serde_json::to_value(&receipt).map_err(|e| RpcError::internal(e.to_string()))
}

/// The logs of transaction `index` of block `b` as RPC objects.
fn rpc_logs(b: &EthBlock, index: usize, m: &MinedTx) -> Vec<alloy_rpc_types_eth::Log> {
    m.logs
        .iter()
        .enumerate()
        .map(|(i, log)| alloy_rpc_types_eth::Log {
            inner: log.clone(),
            block_hash: Some(b.hash),
            block_number: Some(b.header.number),
            block_timestamp: Some(b.header.timestamp),
            transaction_hash: Some(*m.tx.tx_hash()),
            transaction_index: Some(index as u64),
            log_index: Some(m.first_log_index + i as u64),
            removed: false,
        })
        .collect()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::internal(e.to_string()))
}

fn opt_quantity(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<U256>, RpcError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_u256(v)
            .map(Some)
            .map_err(|e| RpcError::invalid(format!("{key}: {}", e.message))),
    }
}

fn narrow<T: TryFrom<U256>>(v: Option<U256>, key: &str) -> Result<Option<T>, RpcError> {
    v.map(|x| T::try_from(x).map_err(|_| RpcError::invalid(format!("{key}: value too large"))))
        .transpose()
}

/// geth's transaction arguments of eth_call / eth_estimateGas.
fn parse_call(p: &[Value]) -> Result<CallRequest, RpcError> {
    let obj = param(p, 0)
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid("missing transaction object"))?;
    if param(p, 2).is_some() {
        return Err(RpcError::invalid("state overrides are not supported"));
    }
    let bytes = |key: &str| -> Result<Option<Bytes>, RpcError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|s| s.parse::<Bytes>().ok())
                .map(Some)
                .ok_or_else(|| RpcError::invalid(format!("{key}: invalid hex data"))),
        }
    };
    let input = match (bytes("input")?, bytes("data")?) {
        (Some(i), Some(d)) if i != d => {
            return Err(RpcError::invalid(
                r#"both "data" and "input" are set and not equal. Please use "input" to pass transaction call data"#,
            ))
        }
        (Some(i), _) => i,
        (None, Some(d)) => d,
        (None, None) => Bytes::new(),
    };
    let address = |key: &str| -> Result<Option<Address>, RpcError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            v => parse_address(v).map(Some),
        }
    };
    Ok(CallRequest {
        from: address("from")?,
        to: address("to")?,
        gas: narrow(opt_quantity(obj, "gas")?, "gas")?,
        gas_price: narrow(opt_quantity(obj, "gasPrice")?, "gasPrice")?,
        max_fee_per_gas: narrow(opt_quantity(obj, "maxFeePerGas")?, "maxFeePerGas")?,
        max_priority_fee_per_gas: narrow(
            opt_quantity(obj, "maxPriorityFeePerGas")?,
            "maxPriorityFeePerGas",
        )?,
        value: opt_quantity(obj, "value")?.unwrap_or_default(),
        input,
    })
}

/// A 32-byte hash or quantity (storage slots, topics).
fn parse_word(v: &Value) -> Result<B256, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| RpcError::invalid("expected a hex string"))?;
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| RpcError::invalid(format!("hex string without 0x prefix: {s}")))?;
    if digits.len() > 64 {
        return Err(RpcError::invalid(format!("hex string too long: {s}")));
    }
    let n = U256::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16)
        .map_err(|_| RpcError::invalid(format!("invalid hex string: {s}")))?;
    Ok(B256::from(n))
}

/// One position of a topic filter: `None` matches anything.
type TopicFilter = Option<Vec<B256>>;

/// eth_getLogs, with geth's filter semantics.
fn get_logs(chain: &EthChain, p: &[Value]) -> Result<Value, RpcError> {
    let f = param(p, 0)
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid("missing filter object"))?;
    let present = |k: &str| f.get(k).is_some_and(|v| !v.is_null());
    let head = chain.head_number();
    let (from, to) = if present("blockHash") {
        if present("fromBlock") || present("toBlock") {
            return Err(RpcError::invalid(
                "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other",
            ));
        }
        let hash = parse_hash(f.get("blockHash"))?;
        let n = chain
            .block_by_hash(&hash)
            .map(|b| b.header.number)
            .ok_or_else(|| RpcError::server("unknown block"))?;
        (n, n)
    } else {
        let bound = |k: &str| -> Result<u64, RpcError> {
            if !present(k) {
                return Ok(head);
            }
            Ok(resolve_block(chain, f.get(k))?.unwrap_or(u64::MAX))
        };
        let (from, to) = (bound("fromBlock")?, bound("toBlock")?);
        if from > to {
            return Err(RpcError::invalid("invalid block range params"));
        }
        (from, to.min(head))
    };
    let addresses: Vec<Address> = match f.get("address") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| parse_address(Some(v)))
            .collect::<Result<_, _>>()?,
        v => vec![parse_address(v)?],
    };
    let topics: Vec<TopicFilter> = match f.get("topics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| match t {
                Value::Null => Ok(None),
                Value::Array(alts) => {
                    let alts: Vec<B256> = alts
                        .iter()
                        .filter(|v| !v.is_null())
                        .map(parse_word)
                        .collect::<Result<_, _>>()?;
                    // An empty or all-null list matches anything.
                    Ok((!alts.is_empty()).then_some(alts))
                }
                v => parse_word(v).map(|h| Some(vec![h])),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(RpcError::invalid("topics must be an array")),
    };
    if topics.len() > 4 {
        return Err(RpcError::invalid("too many topics, max is 4"));
    }
    let mut out = Vec::new();
    for n in from..=to {
        let Some(b) = chain.block(n) else { break };
        if b.header.logs_bloom.is_zero() {
            continue;
        }
        for (i, m) in b.txs.iter().enumerate() {
            if m.logs.is_empty() {
                continue;
            }
            for log in rpc_logs(b, i, m) {
                let l = &log.inner;
                if !addresses.is_empty() && !addresses.contains(&l.address) {
                    continue;
                }
                let t = l.data.topics();
                if topics.len() > t.len() {
                    continue;
                }
                let matches = topics.iter().zip(t).all(|(want, have)| match want {
                    None => true,
                    Some(alts) => alts.contains(have),
                });
                if matches {
                    out.push(log);
                }
            }
        }
    }
    to_json(&out)
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
            let a = parse_address(param(p, 0))?;
            let n = resolve_block(chain, param(p, 1))?
                .ok_or_else(|| RpcError::server("header not found"))?;
            let code = chain
                .code_view(&a, Some(n))
                .map(|(_, c)| c.original_bytes())
                .unwrap_or_default();
            Ok(json!(code))
        }
        "eth_getStorageAt" => {
            let a = parse_address(param(p, 0))?;
            let slot =
                parse_word(param(p, 1).ok_or_else(|| RpcError::invalid("missing storage slot"))?)?;
            let n = resolve_block(chain, param(p, 2))?
                .ok_or_else(|| RpcError::server("header not found"))?;
            let v = chain.storage_view(&a, &slot.into(), Some(n));
            Ok(json!(B256::from(v)))
        }
        "eth_call" => {
            let req = parse_call(p)?;
            let n = resolve_block(chain, param(p, 1))?
                .ok_or_else(|| RpcError::server("header not found"))?;
            Ok(json!(evm::call_output(chain, n, &req)?))
        }
        "eth_estimateGas" => {
            let req = parse_call(p)?;
            let n = resolve_block(chain, param(p, 1))?
                .ok_or_else(|| RpcError::server("header not found"))?;
            Ok(hex_u64(evm::estimate_gas(chain, n, &req)?))
        }
        "eth_getLogs" => get_logs(chain, p),
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
                return serde_json::to_value(rpc_tx(Some(b), i, &m.tx, m.from))
                    .map_err(|e| RpcError::internal(e.to_string()));
            }
            match chain.pending_tx(&hash) {
                Some(pt) => serde_json::to_value(rpc_tx(None, 0, &pt.tx, pt.from))
                    .map_err(|e| RpcError::internal(e.to_string())),
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
            let req = parse_call(p)?;
            let from = req
                .from
                .ok_or_else(|| RpcError::invalid("missing value for required argument: from"))?;
            if from != node.faucet_address() {
                return Err(RpcError::server(format!("no signer available for {from}")));
            }
            let gas = match req.gas {
                Some(gas) => gas,
                None => evm::estimate_gas(chain, chain.head_number(), &req)?,
            };
            let to = req.to.map_or(TxKind::Create, TxKind::Call);
            Ok(json!(node.sign_and_send(to, req.value, req.input, gas)?))
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
                    serde_json::to_value(rpc_tx(None, 0, &pt.tx, pt.from))
                        .map_err(|e| RpcError::internal(e.to_string()))?;
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
        _ => Err(RpcError::new(
            -32601,
            format!("the method {method} does not exist/is not available"),
        )),
    }
}
