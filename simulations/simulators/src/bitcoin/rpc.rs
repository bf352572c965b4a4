//! bitcoind's JSON-RPC over HTTP: JSON-RPC 1.0 (errors with HTTP 500) and
//! 2.0, batches, basic auth, positional or named parameters, and Bitcoin
//! Core's method names, field names and error codes.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::script::Instruction;
use bitcoin::{Amount, Block, BlockHash, OutPoint, Script, Transaction, Txid};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::chain::{format_btc, Chain};
use super::DEFAULT_MAX_SAT_PER_KVB;
use super::{parse_regtest_address, Node, RpcError, Shared, WALLET_SAT_PER_VB};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/wallet/{name}", post(handle))
        .with_state(shared)
}

/// Standard base64 (for the basic-auth header).
pub(crate) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut text = write_amounts(&body.to_string());
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(expected) = &shared.auth {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            tracing::warn!("bitcoin sim RPC: incorrect or missing credentials");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"jsonrpc\"")],
                "",
            )
                .into_response();
        }
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"result": null, "error": {"code": -32700, "message": "Parse error"}, "id": null}),
            )
        }
    };
    match request {
        Value::Array(items) => {
            let replies: Vec<Value> = items.iter().map(|r| reply(&shared, r).1).collect();
            json_response(StatusCode::OK, &Value::Array(replies))
        }
        single => {
            let (status, body) = reply(&shared, &single);
            json_response(status, &body)
        }
    }
}

/// Answers one request object: the HTTP status (for a lone request) and the reply.
fn reply(shared: &Shared, req: &Value) -> (StatusCode, Value) {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let v2 = req.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let result = match (req.as_object(), req.get("method").and_then(Value::as_str)) {
        (Some(_), Some(method)) => {
            let params = req.get("params").cloned().unwrap_or(Value::Null);
            let span = tracing::debug_span!("bitcoin_sim.rpc", method);
            let _g = span.enter();
            dispatch(shared, method, &params)
        }
        (Some(_), None) => Err(RpcError::new(-32600, "Method must be a string")),
        _ => Err(RpcError::new(-32600, "Invalid Request object")),
    };
    match result {
        Ok(value) if v2 => (
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "result": value, "id": id}),
        ),
        Ok(value) => (
            StatusCode::OK,
            json!({"result": value, "error": null, "id": id}),
        ),
        Err(e) => {
            let err = json!({"code": e.code, "message": e.message});
            if v2 {
                (
                    StatusCode::OK,
                    json!({"jsonrpc": "2.0", "error": err, "id": id}),
                )
            } else {
                let status = match e.code {
                    -32601 => StatusCode::NOT_FOUND,
                    -32600 => StatusCode::BAD_REQUEST,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (status, json!({"result": null, "error": err, "id": id}))
            }
        }
    }
}

/// Parameter names per method, for requests with named parameters.
fn param_names(method: &str) -> &'static [&'static str] {
    match method {
        "getblockhash" => &["height"],
        "getblock" => &["blockhash", "verbosity"],
        "getblockheader" => &["blockhash", "verbose"],
        "getrawmempool" => &["verbose", "mempool_sequence"],
        "getrawtransaction" => &["txid", "verbose", "blockhash"],
        "getmempoolentry" => &["txid"],
        "sendrawtransaction" => &["hexstring", "maxfeerate", "maxburnamount"],
        "testmempoolaccept" => &["rawtxs", "maxfeerate"],
        "decoderawtransaction" => &["hexstring", "iswitness"],
        "estimatesmartfee" => &["conf_target", "estimate_mode"],
        "generatetoaddress" => &["nblocks", "address", "maxtries"],
        "generateblock" => &["output", "transactions", "submit"],
        "invalidateblock" | "reconsiderblock" => &["blockhash"],
        "getnewaddress" => &["label", "address_type"],
        "sendtoaddress" => &[
            "address",
            "amount",
            "comment",
            "comment_to",
            "subtractfeefromamount",
            "replaceable",
            "conf_target",
            "estimate_mode",
            "avoid_reuse",
            "fee_rate",
            "verbose",
        ],
        "listunspent" => &[
            "minconf",
            "maxconf",
            "addresses",
            "include_unsafe",
            "query_options",
        ],
        "getbalance" => &["dummy", "minconf", "include_watchonly", "avoid_reuse"],
        "gettxout" => &["txid", "n", "include_mempool"],
        "bumpfee" => &["txid", "options"],
        "scantxoutset" => &["action", "scanobjects"],
        _ => &[],
    }
}

struct Params(Vec<Value>);

impl Params {
    fn new(method: &str, raw: &Value) -> Result<Params, RpcError> {
        match raw {
            Value::Null => Ok(Params(Vec::new())),
            Value::Array(a) => Ok(Params(a.clone())),
            Value::Object(m) => {
                let names = param_names(method);
                for k in m.keys() {
                    if !names.contains(&k.as_str()) {
                        return Err(RpcError::new(-8, format!("Unknown named parameter {k}")));
                    }
                }
                let mut v: Vec<Value> = names
                    .iter()
                    .map(|n| m.get(*n).cloned().unwrap_or(Value::Null))
                    .collect();
                while v.last() == Some(&Value::Null) {
                    v.pop();
                }
                Ok(Params(v))
            }
            _ => Err(RpcError::new(-32600, "Params must be an array or object")),
        }
    }

    fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i).filter(|v| !v.is_null())
    }

    fn required(&self, i: usize, name: &str) -> Result<&Value, RpcError> {
        self.get(i)
            .ok_or_else(|| RpcError::new(-1, format!("missing required parameter {name}")))
    }

    fn str(&self, i: usize, name: &str) -> Result<&str, RpcError> {
        self.required(i, name)?
            .as_str()
            .ok_or_else(|| RpcError::new(-3, format!("Expected type string for {name}")))
    }

    fn u64_or(&self, i: usize, name: &str, default: u64) -> Result<u64, RpcError> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| RpcError::new(-3, format!("Expected type number for {name}"))),
        }
    }

    fn i64_or(&self, i: usize, name: &str, default: i64) -> Result<i64, RpcError> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| RpcError::new(-3, format!("Expected type number for {name}"))),
        }
    }

    fn bool_or(&self, i: usize, default: bool) -> bool {
        match self.get(i) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
            Some(_) => default,
        }
    }

    fn hash<T: FromStr>(&self, i: usize, name: &str) -> Result<T, RpcError> {
        let s = self.str(i, name)?;
        if s.len() != 64 {
            return Err(RpcError::new(
                -8,
                format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
            ));
        }
        T::from_str(s).map_err(|_| {
            RpcError::new(-8, format!("{name} must be hexadecimal string (not '{s}')"))
        })
    }
}

/// Marks a string that [`write_amounts`] turns into a bare JSON number.
const AMOUNT_MARK: &str = "\u{1}btc:";
/// How [`AMOUNT_MARK`] looks once serde_json has escaped it, with its quote.
const AMOUNT_MARK_JSON: &str = "\"\\u0001btc:";

/// An amount of BTC for a reply. bitcoind prints amounts as JSON numbers
/// with exactly eight decimals (`50.00000000`); serde_json cannot emit such
/// a number without going through f64, so the reply carries a marked string
/// that [`write_amounts`] rewrites into the exact decimal text.
fn btc(amount: Amount) -> Value {
    Value::String(format!("{AMOUNT_MARK}{}", format_btc(amount.to_sat())))
}

/// Rewrites marked amount strings in serialized JSON into bare numbers.
/// A marked string whose payload is not a plain decimal is left alone.
fn write_amounts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(AMOUNT_MARK_JSON) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + AMOUNT_MARK_JSON.len()..];
        let digits = after
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(after.len());
        if digits > 0 && after[digits..].starts_with('"') {
            out.push_str(&after[..digits]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(AMOUNT_MARK_JSON);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Parses a BTC amount given as a JSON number or string, exactly.
fn parse_btc(v: &Value) -> Result<Amount, RpcError> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(RpcError::new(-3, "Amount is not a number or string")),
    };
    let d = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| RpcError::new(-3, "Invalid amount"))?;
    let sats = d * Decimal::from(100_000_000u64);
    if sats.fract() != Decimal::ZERO || sats.is_sign_negative() {
        return Err(RpcError::new(-3, "Invalid amount"));
    }
    sats.to_u64()
        .map(Amount::from_sat)
        .ok_or_else(|| RpcError::new(-3, "Amount out of range"))
}

/// Parses a fee rate in BTC/kvB into sat/kvB.
fn parse_btc_per_kvb(v: &Value) -> Result<u64, RpcError> {
    Ok(parse_btc(v)?.to_sat())
}

fn decode_tx(hex: &str) -> Result<Transaction, RpcError> {
    deserialize_hex::<Transaction>(hex).map_err(|_| {
        RpcError::new(
            -22,
            "TX decode failed. Make sure the tx has at least one input.",
        )
    })
}

fn dispatch(shared: &Shared, method: &str, raw: &Value) -> Result<Value, RpcError> {
    let p = Params::new(method, raw)?;
    // Methods that need no chain state.
    match method {
        "uptime" => return Ok(json!(shared.started.elapsed().as_secs())),
        "getnetworkinfo" => return Ok(network_info()),
        "listwallets" => return Ok(json!([""])),
        "help" => return Ok(json!("simulated bitcoind (regtest)")),
        "decoderawtransaction" => {
            let tx = decode_tx(p.str(0, "hexstring")?)?;
            return Ok(tx_json(&tx, false));
        }
        _ => {}
    }
    let mut node = shared.lock()?;
    let node: &mut Node = &mut node;
    match method {
        "getblockcount" => Ok(json!(node.chain.height())),
        "getbestblockhash" => Ok(json!(node.chain.tip_hash().to_string())),
        "getblockchaininfo" => Ok(blockchain_info(&node.chain)),
        "getblockhash" => {
            let h = p.i64_or(0, "height", -1)?;
            let hash = u32::try_from(h)
                .ok()
                .and_then(|h| node.chain.hash_at(h))
                .ok_or_else(|| RpcError::new(-8, "Block height out of range"))?;
            Ok(json!(hash.to_string()))
        }
        "getblock" => {
            let hash: BlockHash = p.hash(0, "blockhash")?;
            let verbosity = match p.get(1) {
                None => 1,
                Some(Value::Bool(b)) => i64::from(*b),
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| RpcError::new(-3, "Expected type number for verbosity"))?,
            };
            let entry = node
                .chain
                .block(&hash)
                .ok_or_else(|| RpcError::new(-5, "Block not found"))?;
            match verbosity {
                0 => Ok(json!(serialize_hex(&entry.block))),
                1..=3 => Ok(block_json(&node.chain, &hash, verbosity >= 2)),
                _ => Err(RpcError::new(-8, "Verbosity must be in range 0..3")),
            }
        }
        "getblockheader" => {
            let hash: BlockHash = p.hash(0, "blockhash")?;
            let entry = node
                .chain
                .block(&hash)
                .ok_or_else(|| RpcError::new(-5, "Block not found"))?;
            if p.bool_or(1, true) {
                Ok(header_json(&node.chain, &hash))
            } else {
                Ok(json!(serialize_hex(&entry.block.header)))
            }
        }
        "getrawmempool" => {
            let entries = node.chain.mempool_in_order();
            if p.bool_or(0, false) {
                let mut m = Map::new();
                for e in entries {
                    let txid = e.tx.compute_txid();
                    m.insert(txid.to_string(), mempool_entry_json(&node.chain, &txid));
                }
                Ok(Value::Object(m))
            } else {
                Ok(json!(entries
                    .iter()
                    .map(|e| e.tx.compute_txid().to_string())
                    .collect::<Vec<_>>()))
            }
        }
        "getmempoolentry" => {
            let txid: Txid = p.hash(0, "txid")?;
            if node.chain.mempool_entry(&txid).is_none() {
                return Err(RpcError::new(-5, "Transaction not in mempool"));
            }
            Ok(mempool_entry_json(&node.chain, &txid))
        }
        "getmempoolinfo" => {
            let entries = node.chain.mempool_in_order();
            let bytes: u64 = entries.iter().map(|e| e.vsize).sum();
            let fees: u64 = entries.iter().map(|e| e.fee.to_sat()).sum();
            Ok(json!({
                "loaded": true,
                "size": entries.len(),
                "bytes": bytes,
                "usage": bytes * 4,
                "total_fee": btc(Amount::from_sat(fees)),
                "maxmempool": 300_000_000,
                "mempoolminfee": btc(Amount::from_sat(node.chain.params().min_relay_sat_per_kvb)),
                "minrelaytxfee": btc(Amount::from_sat(node.chain.params().min_relay_sat_per_kvb)),
                "incrementalrelayfee": btc(Amount::from_sat(node.chain.params().incremental_relay_sat_per_kvb)),
                "unbroadcastcount": 0,
                "fullrbf": node.chain.params().full_rbf,
            }))
        }
        "getrawtransaction" => getrawtransaction(&node.chain, &p),
        "gettxout" => {
            let txid: Txid = p.hash(0, "txid")?;
            let n = p.u64_or(1, "n", 0)? as u32;
            let op = OutPoint::new(txid, n);
            let include_mempool = p.bool_or(2, true);
            let tip = node.chain.tip_hash().to_string();
            if include_mempool && node.chain.mempool_spender(&op).is_some() {
                return Ok(Value::Null);
            }
            if let Some(c) = node.chain.utxo(&op) {
                return Ok(json!({
                    "bestblock": tip,
                    "confirmations": node.chain.height() - c.height + 1,
                    "value": btc(c.txout.value),
                    "scriptPubKey": spk_json(&c.txout.script_pubkey),
                    "coinbase": c.is_coinbase,
                }));
            }
            if include_mempool {
                if let Some(e) = node.chain.mempool_entry(&txid) {
                    if let Some(o) = e.tx.output.get(n as usize) {
                        return Ok(json!({
                            "bestblock": tip,
                            "confirmations": 0,
                            "value": btc(o.value),
                            "scriptPubKey": spk_json(&o.script_pubkey),
                            "coinbase": false,
                        }));
                    }
                }
            }
            Ok(Value::Null)
        }
        "sendrawtransaction" => {
            let tx = decode_tx(p.str(0, "hexstring")?)?;
            let max = match p.get(1) {
                None => DEFAULT_MAX_SAT_PER_KVB,
                Some(v) => parse_btc_per_kvb(v)?,
            };
            Ok(json!(node.send_raw(tx, max)?.to_string()))
        }
        "testmempoolaccept" => {
            let raws = p
                .required(0, "rawtxs")?
                .as_array()
                .ok_or_else(|| RpcError::new(-3, "Expected type array for rawtxs"))?;
            if raws.len() != 1 {
                return Err(RpcError::new(-8, "Array must contain between 1 and 25 transactions; this node tests one at a time."));
            }
            let max = match p.get(1) {
                None => DEFAULT_MAX_SAT_PER_KVB,
                Some(v) => parse_btc_per_kvb(v)?,
            };
            let hex = raws[0]
                .as_str()
                .ok_or_else(|| RpcError::new(-3, "Expected type string"))?;
            let tx = decode_tx(hex)?;
            let txid = tx.compute_txid().to_string();
            let wtxid = tx.compute_wtxid().to_string();
            Ok(json!([match node.chain.check_tx(&tx) {
                Ok(plan)
                    if max > 0
                        && u128::from(plan.fee.to_sat()) * 1000
                            > u128::from(max) * u128::from(plan.vsize) =>
                {
                    json!({
                        "txid": txid, "wtxid": wtxid, "allowed": false, "reject-reason": "max-fee-exceeded",
                    })
                }
                Ok(plan) => json!({
                    "txid": txid,
                    "wtxid": wtxid,
                    "allowed": true,
                    "vsize": plan.vsize,
                    "fees": {
                        "base": btc(plan.fee),
                        "effective-feerate": btc(Amount::from_sat(plan.fee.to_sat() * 1000 / plan.vsize.max(1))),
                        "effective-includes": [wtxid],
                    },
                }),
                Err(r) =>
                    json!({"txid": txid, "wtxid": wtxid, "allowed": false, "reject-reason": r.reason()}),
            }]))
        }
        "estimatesmartfee" => {
            let target = p.u64_or(0, "conf_target", 6)?.clamp(1, 1008);
            let mut rates = node.chain.recent_fee_rates(10);
            rates.extend(
                node.chain
                    .mempool_in_order()
                    .iter()
                    .map(|e| e.fee.to_sat() * 1000 / e.vsize.max(1)),
            );
            rates.sort_unstable();
            let median = rates.get(rates.len() / 2).copied().unwrap_or(0);
            let rate = median.max(node.chain.params().min_relay_sat_per_kvb);
            Ok(json!({"feerate": btc(Amount::from_sat(rate)), "blocks": target.max(2)}))
        }
        "generatetoaddress" => {
            let n = p.u64_or(0, "nblocks", 1)?;
            let addr = parse_regtest_address(p.str(1, "address")?)
                .map_err(|_| RpcError::new(-5, "Error: Invalid address"))?;
            let n = u32::try_from(n)
                .ok()
                .filter(|n| *n <= 100_000)
                .ok_or_else(|| {
                    RpcError::new(-8, "nblocks out of range (at most 100000 per call)")
                })?;
            let hashes = node.mine(n, &addr.script_pubkey())?;
            Ok(json!(hashes
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()))
        }
        "generateblock" => {
            let addr = parse_regtest_address(p.str(0, "output")?)
                .map_err(|_| RpcError::new(-5, "Error: Invalid address or descriptor"))?;
            let list = p
                .get(1)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut txs = Vec::new();
            for item in list {
                let s = item
                    .as_str()
                    .ok_or_else(|| RpcError::new(-3, "Expected type string"))?;
                if let Ok(txid) = Txid::from_str(s) {
                    let e = node.chain.mempool_entry(&txid).ok_or_else(|| {
                        RpcError::new(-5, format!("Transaction {s} not in mempool."))
                    })?;
                    txs.push(e.tx.clone());
                } else {
                    txs.push(deserialize_hex::<Transaction>(s).map_err(|_| {
                        RpcError::new(-22, format!("Transaction decode failed for {s}. Make sure the tx has at least one input."))
                    })?);
                }
            }
            let hash = node.mine_with(&addr.script_pubkey(), txs)?;
            Ok(json!({"hash": hash.to_string()}))
        }
        "getchaintips" => Ok(Value::Array(
            node.chain
                .chain_tips()
                .into_iter()
                .map(|t| {
                    json!({
                        "height": t.height,
                        "hash": t.hash.to_string(),
                        "branchlen": t.branchlen,
                        "status": t.status,
                    })
                })
                .collect(),
        )),
        "bumpfee" => {
            let txid: Txid = p.hash(0, "txid")?;
            let rate = match p.get(1).and_then(|o| o.get("fee_rate")) {
                None | Some(Value::Null) => None,
                Some(v) => Some(parse_btc(v)?.to_sat() / 100_000_000),
            };
            let (new_txid, origfee, fee) = node.bump_fee(&txid, rate).map_err(RpcError::from)?;
            Ok(
                json!({"txid": new_txid.to_string(), "origfee": btc(origfee), "fee": btc(fee), "errors": []}),
            )
        }
        "invalidateblock" => {
            let hash: BlockHash = p.hash(0, "blockhash")?;
            node.invalidate(&hash)?;
            Ok(Value::Null)
        }
        "reconsiderblock" => {
            let hash: BlockHash = p.hash(0, "blockhash")?;
            node.reconsider(&hash)?;
            Ok(Value::Null)
        }
        "getnewaddress" => {
            if let Some(t) = p.get(1).and_then(Value::as_str) {
                if t != "bech32" {
                    return Err(RpcError::new(
                        -5,
                        format!("Unknown address type '{t}' (this wallet gives bech32 only)"),
                    ));
                }
            }
            Ok(json!(node.new_address()?.to_string()))
        }
        "sendtoaddress" => {
            let addr = parse_regtest_address(p.str(0, "address")?)
                .map_err(|_| RpcError::new(-5, "Invalid address"))?;
            let amount = parse_btc(p.required(1, "amount")?)?;
            if amount == Amount::ZERO {
                return Err(RpcError::new(-3, "Invalid amount for send"));
            }
            let subtract = p.bool_or(4, false);
            let sat_per_vb = match p.get(9) {
                None => WALLET_SAT_PER_VB,
                // fee_rate is in sat/vB; parsed as an exact decimal, fractions dropped.
                Some(v) => parse_btc(v)?.to_sat() / 100_000_000,
            }
            .max(1);
            let txid = node
                .send_to(&addr.script_pubkey(), amount, sat_per_vb, subtract)
                .map_err(RpcError::from)?;
            if p.bool_or(10, false) {
                Ok(json!({"txid": txid.to_string(), "fee_reason": "Fallback fee"}))
            } else {
                Ok(json!(txid.to_string()))
            }
        }
        "listunspent" => {
            let minconf = p.u64_or(0, "minconf", 1)?;
            let maxconf = p.u64_or(1, "maxconf", 9_999_999)?;
            let filter: Option<Vec<String>> = p.get(2).and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            });
            let mut out = Vec::new();
            for c in node.wallet.coins(&node.chain, true) {
                let conf = u64::from(c.confirmations);
                if conf < minconf || conf > maxconf {
                    continue;
                }
                let address = node.wallet.address(c.key_index).to_string();
                if filter.as_ref().is_some_and(|f| !f.contains(&address)) {
                    continue;
                }
                out.push(json!({
                    "txid": c.outpoint.txid.to_string(),
                    "vout": c.outpoint.vout,
                    "address": address,
                    "label": "",
                    "scriptPubKey": c.txout.script_pubkey.to_hex_string(),
                    "amount": btc(c.txout.value),
                    "confirmations": conf,
                    "spendable": true,
                    "solvable": true,
                    "safe": true,
                }));
            }
            Ok(Value::Array(out))
        }
        "getbalance" => {
            let minconf = p.u64_or(1, "minconf", 0)?;
            let total: Amount = node
                .wallet
                .coins(&node.chain, true)
                .iter()
                .filter(|c| u64::from(c.confirmations) >= minconf)
                .map(|c| c.txout.value)
                .sum();
            Ok(btc(total))
        }
        "getbalances" => {
            let coins = node.wallet.coins(&node.chain, true);
            let trusted: Amount = coins
                .iter()
                .filter(|c| c.confirmations > 0)
                .map(|c| c.txout.value)
                .sum();
            let pending: Amount = coins
                .iter()
                .filter(|c| c.confirmations == 0)
                .map(|c| c.txout.value)
                .sum();
            Ok(
                json!({"mine": {"trusted": btc(trusted), "untrusted_pending": btc(pending), "immature": 0}}),
            )
        }
        "scantxoutset" => scan_tx_out_set(&node.chain, &p),
        _ => Err(RpcError::new(-32601, "Method not found")),
    }
}

/// `scantxoutset "start" [scanobjects]`: the confirmed UTXOs (not the
/// mempool) whose scripts the descriptors stand for, in Bitcoin Core's
/// shape. Scans are instant here, so `status` has none to report and
/// `abort` none to stop.
fn scan_tx_out_set(chain: &Chain, p: &Params) -> Result<Value, RpcError> {
    use super::descriptor;
    match p.str(0, "action")? {
        "start" => {}
        "status" => return Ok(Value::Null),
        "abort" => return Ok(json!(false)),
        other => return Err(RpcError::new(-8, format!("Invalid action '{other}'"))),
    }
    let objects = p
        .required(1, "scanobjects")?
        .as_array()
        .ok_or_else(|| RpcError::new(-3, "Expected type array for scanobjects"))?;
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let network = bitcoin::Network::Regtest;
    let mut wanted: std::collections::HashMap<bitcoin::ScriptBuf, String> =
        std::collections::HashMap::new();
    for obj in objects {
        let (text, range) = match obj {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) => (
                o.get("desc").and_then(Value::as_str).ok_or_else(|| {
                    RpcError::new(-8, "Scan object needs to be either a string or an object")
                })?,
                o.get("range"),
            ),
            _ => {
                return Err(RpcError::new(
                    -8,
                    "Scan object needs to be either a string or an object",
                ))
            }
        };
        let desc = descriptor::parse(text, network).map_err(|m| RpcError::new(-5, m))?;
        let range = match range {
            None => 0..=999,
            Some(Value::Number(n)) => {
                let end = n
                    .as_u64()
                    .and_then(|e| u32::try_from(e).ok())
                    .ok_or_else(|| RpcError::new(-8, "Range should be greater or equal than 0"))?;
                0..=end
            }
            Some(Value::Array(a)) if a.len() == 2 => {
                let b = |v: &Value| v.as_u64().and_then(|e| u32::try_from(e).ok());
                match (b(&a[0]), b(&a[1])) {
                    (Some(lo), Some(hi)) if lo <= hi => lo..=hi,
                    _ => {
                        return Err(RpcError::new(
                            -8,
                            "Range specified as [begin,end] must not have begin after end",
                        ))
                    }
                }
            }
            Some(_) => {
                return Err(RpcError::new(
                    -8,
                    "Range must be specified as end or as [begin,end]",
                ))
            }
        };
        if desc.is_ranged() && range.end() - range.start() >= 1_000_000 {
            return Err(RpcError::new(-8, "Range is too large"));
        }
        for e in desc
            .expand(range, network, &secp)
            .map_err(|m| RpcError::new(-5, m))?
        {
            wanted.entry(e.script).or_insert(e.desc);
        }
    }
    let mut unspents = Vec::new();
    let mut scanned = 0u64;
    let mut total = Amount::ZERO;
    for (outpoint, coin) in chain.utxos() {
        scanned += 1;
        let Some(desc) = wanted.get(&coin.txout.script_pubkey) else {
            continue;
        };
        total += coin.txout.value;
        unspents.push((
            (coin.height, outpoint.txid, outpoint.vout),
            json!({
                "txid": outpoint.txid.to_string(),
                "vout": outpoint.vout,
                "scriptPubKey": coin.txout.script_pubkey.to_hex_string(),
                "desc": desc,
                "amount": btc(coin.txout.value),
                "coinbase": coin.is_coinbase,
                "height": coin.height,
                "blockhash": chain.hash_at(coin.height).map(|h| h.to_string()),
            }),
        ));
    }
    unspents.sort_by_key(|u| u.0);
    Ok(json!({
        "success": true,
        "txouts": scanned,
        "height": chain.height(),
        "bestblock": chain.tip_hash().to_string(),
        "unspents": unspents.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "total_amount": btc(total),
    }))
}

fn network_info() -> Value {
    json!({
        "version": 280000,
        "subversion": "/Satoshi:28.0.0(simulated)/",
        "protocolversion": 70016,
        "localservices": "0000000000000c09",
        "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED", "P2P_V2"],
        "localrelay": true,
        "timeoffset": 0,
        "networkactive": true,
        "connections": 0,
        "connections_in": 0,
        "connections_out": 0,
        "networks": [],
        "relayfee": btc(Amount::from_sat(1_000)),
        "incrementalfee": btc(Amount::from_sat(1_000)),
        "localaddresses": [],
        "warnings": [],
    })
}

fn chainwork_hex(chain: &Chain, hash: &BlockHash) -> String {
    chain
        .block(hash)
        .map(|e| hex::encode(e.chainwork.to_be_bytes()))
        .unwrap_or_default()
}

fn blockchain_info(chain: &Chain) -> Value {
    let tip = chain.tip_hash();
    let header = &chain.tip().block.header;
    json!({
        "chain": "regtest",
        "blocks": chain.height(),
        "headers": chain.height(),
        "bestblockhash": tip.to_string(),
        "bits": format!("{:08x}", header.bits.to_consensus()),
        "target": hex::encode(header.target().to_be_bytes()),
        "difficulty": header.difficulty_float(),
        "time": header.time,
        "mediantime": chain.median_time_past(&tip),
        "verificationprogress": 1,
        "initialblockdownload": false,
        "chainwork": chainwork_hex(chain, &tip),
        "size_on_disk": 0,
        "pruned": false,
        "warnings": [],
    })
}

fn header_json(chain: &Chain, hash: &BlockHash) -> Value {
    let Some(e) = chain.block(hash) else {
        return Value::Null;
    };
    let h = &e.block.header;
    let mut v = json!({
        "hash": hash.to_string(),
        "confirmations": chain.confirmations(hash),
        "height": e.height,
        "version": h.version.to_consensus(),
        "versionHex": format!("{:08x}", h.version.to_consensus()),
        "merkleroot": h.merkle_root.to_string(),
        "time": h.time,
        "mediantime": chain.median_time_past(hash),
        "nonce": h.nonce,
        "bits": format!("{:08x}", h.bits.to_consensus()),
        "difficulty": h.difficulty_float(),
        "chainwork": chainwork_hex(chain, hash),
        "nTx": e.block.txdata.len(),
    });
    if e.height > 0 {
        v["previousblockhash"] = json!(h.prev_blockhash.to_string());
    }
    if chain.is_active(hash) {
        if let Some(next) = chain.hash_at(e.height + 1) {
            v["nextblockhash"] = json!(next.to_string());
        }
    }
    v
}

fn block_json(chain: &Chain, hash: &BlockHash, decoded: bool) -> Value {
    let Some(e) = chain.block(hash) else {
        return Value::Null;
    };
    let block: &Block = &e.block;
    let mut v = header_json(chain, hash);
    v["strippedsize"] = json!(block.txdata.iter().map(|t| t.base_size()).sum::<usize>() + 80 + 1);
    v["size"] = json!(bitcoin::consensus::serialize(block).len());
    v["weight"] = json!(block.weight().to_wu());
    let txs: Vec<Value> = if decoded {
        block
            .txdata
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                let mut t = tx_json(tx, true);
                if let Some(fee) = chain.confirmed_fee(hash, i) {
                    t["fee"] = btc(fee);
                }
                t
            })
            .collect()
    } else {
        block
            .txdata
            .iter()
            .map(|t| json!(t.compute_txid().to_string()))
            .collect()
    };
    v["tx"] = Value::Array(txs);
    v
}

fn getrawtransaction(chain: &Chain, p: &Params) -> Result<Value, RpcError> {
    let txid: Txid = p.hash(0, "txid")?;
    let verbosity = match p.get(1) {
        None => 0,
        Some(Value::Bool(b)) => i64::from(*b),
        Some(v) => v.as_i64().unwrap_or(0),
    };
    let (tx, block): (Transaction, Option<BlockHash>) = if let Some(bh) = p.get(2) {
        let bh: BlockHash = p.hash(2, "blockhash").map_err(|_| {
            RpcError::new(
                -8,
                format!("blockhash must be hexadecimal string (not '{bh}')"),
            )
        })?;
        let e = chain
            .block(&bh)
            .ok_or_else(|| RpcError::new(-5, "Block hash not found"))?;
        let tx = e
            .block
            .txdata
            .iter()
            .find(|t| t.compute_txid() == txid)
            .ok_or_else(|| {
                RpcError::new(-5, "No such transaction found in the provided block. Use gettransaction for wallet transactions.")
            })?;
        (tx.clone(), Some(bh))
    } else if let Some(e) = chain.mempool_entry(&txid) {
        (e.tx.clone(), None)
    } else if let Some((bh, pos)) = chain.find_tx(&txid) {
        let e = chain
            .block(&bh)
            .ok_or_else(|| RpcError::new(-1, "index inconsistent"))?;
        (e.block.txdata[pos].clone(), Some(bh))
    } else {
        return Err(RpcError::new(
            -5,
            "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
        ));
    };
    if verbosity == 0 {
        return Ok(json!(serialize_hex(&tx)));
    }
    let mut v = tx_json(&tx, true);
    if let Some(bh) = block {
        v["in_active_chain"] = json!(chain.is_active(&bh));
        v["blockhash"] = json!(bh.to_string());
        let conf = chain.confirmations(&bh);
        v["confirmations"] = json!(conf.max(0));
        if let Some(e) = chain.block(&bh) {
            v["time"] = json!(e.block.header.time);
            v["blocktime"] = json!(e.block.header.time);
        }
    }
    Ok(v)
}

fn mempool_entry_json(chain: &Chain, txid: &Txid) -> Value {
    let Some(e) = chain.mempool_entry(txid) else {
        return Value::Null;
    };
    let ancestors = chain.mempool_ancestors(txid);
    let descendants = chain.mempool_descendants(txid);
    let sum = |ids: &[Txid], f: &dyn Fn(&super::chain::MempoolEntry) -> u64| -> u64 {
        ids.iter()
            .filter_map(|t| chain.mempool_entry(t))
            .map(f)
            .sum()
    };
    let replaceable = ancestors
        .iter()
        .filter_map(|t| chain.mempool_entry(t))
        .any(|a| a.signals_rbf());
    json!({
        "vsize": e.vsize,
        "weight": e.weight,
        "time": e.time,
        "height": e.height,
        "descendantcount": descendants.len(),
        "descendantsize": sum(&descendants, &|x| x.vsize),
        "ancestorcount": ancestors.len(),
        "ancestorsize": sum(&ancestors, &|x| x.vsize),
        "wtxid": e.wtxid.to_string(),
        "fees": {
            "base": btc(e.fee),
            "modified": btc(e.fee),
            "ancestor": btc(Amount::from_sat(sum(&ancestors, &|x| x.fee.to_sat()))),
            "descendant": btc(Amount::from_sat(sum(&descendants, &|x| x.fee.to_sat()))),
        },
        "depends": chain.mempool_parents(txid).iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "spentby": chain.mempool_children(txid).iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "bip125-replaceable": replaceable,
        "unbroadcast": false,
    })
}

/// Core's `TxToUniv` without wallet fields.
fn tx_json(tx: &Transaction, with_hex: bool) -> Value {
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|i| {
            let mut v = if tx.is_coinbase() {
                json!({"coinbase": i.script_sig.to_hex_string()})
            } else {
                json!({
                    "txid": i.previous_output.txid.to_string(),
                    "vout": i.previous_output.vout,
                    "scriptSig": {"asm": script_asm(&i.script_sig), "hex": i.script_sig.to_hex_string()},
                })
            };
            if !i.witness.is_empty() {
                v["txinwitness"] = json!(i.witness.iter().map(hex::encode).collect::<Vec<_>>());
            }
            v["sequence"] = json!(i.sequence.0);
            v
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, o)| json!({"value": btc(o.value), "n": n, "scriptPubKey": spk_json(&o.script_pubkey)}))
        .collect();
    let mut v = json!({
        "txid": tx.compute_txid().to_string(),
        "hash": tx.compute_wtxid().to_string(),
        "version": tx.version.0,
        "size": tx.total_size(),
        "vsize": tx.vsize(),
        "weight": tx.weight().to_wu(),
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": vout,
    });
    if with_hex {
        v["hex"] = json!(serialize_hex(tx));
    }
    v
}

fn spk_type(spk: &Script) -> &'static str {
    if spk.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if spk.is_p2tr() {
        "witness_v1_taproot"
    } else if spk.is_p2wsh() {
        "witness_v0_scripthash"
    } else if spk.is_p2pkh() {
        "pubkeyhash"
    } else if spk.is_p2sh() {
        "scripthash"
    } else if spk.is_op_return() {
        "nulldata"
    } else if spk.is_p2pk() {
        "pubkey"
    } else if spk.is_multisig() {
        "multisig"
    } else if spk.is_witness_program() {
        "witness_unknown"
    } else {
        "nonstandard"
    }
}

fn spk_json(spk: &Script) -> Value {
    let mut v = json!({"asm": script_asm(spk), "hex": spk.to_hex_string(), "type": spk_type(spk)});
    if let Ok(a) = bitcoin::Address::from_script(spk, bitcoin::Network::Regtest) {
        v["address"] = json!(a.to_string());
    }
    v
}

/// Script disassembly in Core's style (small pushes as numbers, `OP_`-names).
fn script_asm(script: &Script) -> String {
    use bitcoin::opcodes::all as op;
    let mut parts = Vec::new();
    for ins in script.instructions() {
        match ins {
            Ok(Instruction::PushBytes(b)) => {
                let b = b.as_bytes();
                if b.len() <= 4 {
                    parts.push(script_num(b).to_string());
                } else {
                    parts.push(hex::encode(b));
                }
            }
            Ok(Instruction::Op(o)) => {
                let code = o.to_u8();
                let s = if o == op::OP_PUSHBYTES_0 {
                    "0".to_string()
                } else if (op::OP_PUSHNUM_1.to_u8()..=op::OP_PUSHNUM_16.to_u8()).contains(&code) {
                    (code - op::OP_PUSHNUM_1.to_u8() + 1).to_string()
                } else if o == op::OP_PUSHNUM_NEG1 {
                    "-1".to_string()
                } else if o == op::OP_CLTV {
                    "OP_CHECKLOCKTIMEVERIFY".to_string()
                } else if o == op::OP_CSV {
                    "OP_CHECKSEQUENCEVERIFY".to_string()
                } else {
                    o.to_string()
                };
                parts.push(s);
            }
            Err(_) => {
                parts.push("[error]".to_string());
                break;
            }
        }
    }
    parts.join(" ")
}

fn script_num(b: &[u8]) -> i64 {
    if b.is_empty() {
        return 0;
    }
    let mut v: i64 = 0;
    for (i, byte) in b.iter().enumerate() {
        v |= i64::from(*byte) << (8 * i);
    }
    let last = b[b.len() - 1];
    if last & 0x80 != 0 {
        -(v & !(0x80i64 << (8 * (b.len() - 1))))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::fee_for;
    use super::*;
    use bitcoin::hashes::Hash;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn amounts_round_trip_exactly() {
        assert_eq!(parse_btc(&json!(0.00001)).unwrap(), Amount::from_sat(1000));
        assert_eq!(
            parse_btc(&json!("1.23456789")).unwrap(),
            Amount::from_sat(123_456_789)
        );
        assert_eq!(parse_btc(&json!(1e-8)).unwrap(), Amount::from_sat(1));
        assert!(parse_btc(&json!(0.000000001)).is_err());
        assert!(parse_btc(&json!(-1)).is_err());
        let reply = json!({"value": btc(Amount::from_sat(5_000_000_000)), "fee": btc(Amount::from_sat(282))});
        let text = write_amounts(&reply.to_string());
        assert_eq!(text, r#"{"fee":0.00000282,"value":50.00000000}"#);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parse_btc(&back["fee"]).unwrap(), Amount::from_sat(282));
        // A client-chosen string that only looks marked stays a string.
        let odd = json!({"id": format!("{AMOUNT_MARK}x1"), "v": format!("{AMOUNT_MARK}")});
        let text = write_amounts(&odd.to_string());
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), odd);
    }

    #[test]
    fn asm_like_core() {
        let spk = bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::all_zeros());
        assert_eq!(script_asm(&spk), format!("0 {}", "00".repeat(20)));
        assert_eq!(script_num(&[0x81]), -1);
        assert_eq!(script_num(&[0x65, 0x00]), 101);
    }

    #[test]
    fn fee_rounding() {
        assert_eq!(fee_for(1000, 141), 141);
        assert_eq!(fee_for(1, 10), 1);
    }
}
