//! [`BitcoinRpc`]: a typed client of Bitcoin Core's JSON-RPC (1.0, basic auth).

use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Block, BlockHash, Transaction, Txid};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::rpc::{BroadcastError, Dialect, RpcError, Transport};

/// Bitcoin Core's "no such transaction / block" code (RPC_INVALID_ADDRESS_OR_KEY).
const RPC_INVALID_ADDRESS_OR_KEY: i64 = -5;

/// Most requests sent in one JSON-RPC batch.
const BATCH_SIZE: usize = 100;

/// Part of `getblockchaininfo`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockchainInfo {
    /// `main`, `test`, `signet` or `regtest`.
    pub chain: String,
    pub blocks: u64,
    pub headers: u64,
    pub bestblockhash: BlockHash,
    #[serde(default)]
    pub initialblockdownload: bool,
    #[serde(default)]
    pub pruned: bool,
}

/// Part of `getblockheader <hash> true`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockHeaderInfo {
    pub hash: BlockHash,
    pub height: u64,
    /// -1 when the block is not in the best chain.
    pub confirmations: i64,
    pub previousblockhash: Option<BlockHash>,
}

/// `estimatesmartfee`'s answer, the rate in satoshis per 1000 virtual bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeEstimate {
    /// `None` when the node has too little data to estimate.
    pub sat_per_kvb: Option<u64>,
    /// The confirmation target the estimate is for.
    pub blocks: u32,
    pub errors: Vec<String>,
}

/// One unspent output as `gettxout` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutInfo {
    pub bestblock: BlockHash,
    /// 0 for an output of a mempool transaction.
    pub confirmations: u64,
    pub value_sats: u64,
    pub script_pubkey: bitcoin::ScriptBuf,
    pub coinbase: bool,
}

/// What to look for with `scantxoutset`: an output descriptor, and for a
/// ranged one (`/*`) the child indexes (Core's default is 0 to 999).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanObject {
    pub desc: String,
    pub range: Option<(u32, u32)>,
}

/// One unspent output `scantxoutset` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedUtxo {
    pub txid: Txid,
    pub vout: u32,
    pub script_pubkey: bitcoin::ScriptBuf,
    /// The descriptor of this one output, keys with their origins.
    pub desc: String,
    pub value_sats: u64,
    pub coinbase: bool,
    pub height: u64,
}

/// `scantxoutset start`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtxoScan {
    pub height: u64,
    pub bestblock: BlockHash,
    pub unspents: Vec<ScannedUtxo>,
    pub total_sats: u64,
}

/// A typed Bitcoin Core JSON-RPC client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct BitcoinRpc {
    transport: Transport,
}

impl BitcoinRpc {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:18443`), with
    /// basic auth when `user` is given. Requests time out after 30 s.
    pub fn new(url: &str, user: Option<&str>, password: Option<&str>) -> Result<Self, RpcError> {
        let auth = user.map(|u| (u.to_owned(), password.unwrap_or_default().to_owned()));
        Ok(BitcoinRpc {
            transport: Transport::new(url, auth, Dialect::V1, Duration::from_secs(30))?,
        })
    }

    pub fn url(&self) -> &str {
        self.transport.url()
    }

    /// Any method, for what this client has no typed wrapper for.
    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.transport.call(method, params).await
    }

    pub async fn get_blockchain_info(&self) -> Result<BlockchainInfo, RpcError> {
        self.transport.call("getblockchaininfo", json!([])).await
    }

    pub async fn get_best_block_hash(&self) -> Result<BlockHash, RpcError> {
        self.transport.call("getbestblockhash", json!([])).await
    }

    pub async fn get_block_count(&self) -> Result<u64, RpcError> {
        self.transport.call("getblockcount", json!([])).await
    }

    /// The hash of the best-chain block at `height`; `None` above the tip.
    pub async fn get_block_hash(&self, height: u64) -> Result<Option<BlockHash>, RpcError> {
        match self.transport.call("getblockhash", json!([height])).await {
            Ok(h) => Ok(Some(h)),
            // -8: "Block height out of range".
            Err(RpcError::Node { code: -8, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The full block (`getblock <hash> 0`, decoded from hex); `None` when
    /// the node does not know it.
    pub async fn get_block(&self, hash: &BlockHash) -> Result<Option<Block>, RpcError> {
        let hex: String = match self.transport.call("getblock", json!([hash, 0])).await {
            Ok(h) => h,
            Err(e) if e.node_code() == Some(RPC_INVALID_ADDRESS_OR_KEY) => return Ok(None),
            Err(e) => return Err(e),
        };
        deserialize_hex::<Block>(&hex)
            .map(Some)
            .map_err(|e| RpcError::Decode {
                method: "getblock".into(),
                reason: format!("block {hash}: {e}"),
            })
    }

    /// The raw 80-byte header (`getblockheader <hash> false`).
    pub async fn get_block_header(&self, hash: &BlockHash) -> Result<Header, RpcError> {
        let hex: String = self
            .transport
            .call("getblockheader", json!([hash, false]))
            .await?;
        deserialize_hex::<Header>(&hex).map_err(|e| RpcError::Decode {
            method: "getblockheader".into(),
            reason: e.to_string(),
        })
    }

    /// Height, confirmations and parent of a block (`getblockheader <hash> true`).
    pub async fn get_block_header_info(
        &self,
        hash: &BlockHash,
    ) -> Result<BlockHeaderInfo, RpcError> {
        self.transport
            .call("getblockheader", json!([hash, true]))
            .await
    }

    pub async fn get_raw_mempool(&self) -> Result<Vec<Txid>, RpcError> {
        self.transport.call("getrawmempool", json!([])).await
    }

    /// A transaction from the mempool (or the chain, with `-txindex`);
    /// `None` when the node does not have it.
    pub async fn get_raw_transaction(&self, txid: &Txid) -> Result<Option<Transaction>, RpcError> {
        match self
            .transport
            .call::<String>("getrawtransaction", json!([txid, false]))
            .await
        {
            Ok(hex) => decode_tx(&hex).map(Some),
            Err(e) if e.node_code() == Some(RPC_INVALID_ADDRESS_OR_KEY) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Several transactions, fetched in batches; `None` for each the node
    /// does not have. Falls back to one call each if batches are refused.
    pub async fn get_raw_transactions(
        &self,
        txids: &[Txid],
    ) -> Result<Vec<Option<Transaction>>, RpcError> {
        let mut out = Vec::with_capacity(txids.len());
        for chunk in txids.chunks(BATCH_SIZE) {
            let params = chunk.iter().map(|t| json!([t, false])).collect();
            match self
                .transport
                .batch::<String>("getrawtransaction", params)
                .await
            {
                Ok(results) => {
                    for r in results {
                        match r {
                            Ok(hex) => out.push(Some(decode_tx(&hex)?)),
                            Err(e) if e.node_code() == Some(RPC_INVALID_ADDRESS_OR_KEY) => {
                                out.push(None)
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(_) => {
                    for t in chunk {
                        out.push(self.get_raw_transaction(t).await?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Broadcasts `tx`; node rejections become [`RpcError::Broadcast`].
    pub async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        self.send_raw_transaction_hex(&serialize_hex(tx)).await
    }

    /// Broadcasts a hex-encoded transaction.
    pub async fn send_raw_transaction_hex(&self, hex: &str) -> Result<Txid, RpcError> {
        match self
            .transport
            .call("sendrawtransaction", json!([hex]))
            .await
        {
            Ok(txid) => Ok(txid),
            Err(RpcError::Node { code, message, .. }) => Err(RpcError::Broadcast(
                BroadcastError::from_bitcoin(code, &message),
            )),
            Err(e) => Err(e),
        }
    }

    /// `estimatesmartfee <conf_target>` with the rate converted to sat/kvB
    /// exactly (the node writes it as a decimal BTC amount).
    pub async fn estimate_smart_fee(&self, conf_target: u32) -> Result<FeeEstimate, RpcError> {
        #[derive(Deserialize)]
        struct Raw {
            feerate: Option<serde_json::Number>,
            #[serde(default)]
            errors: Vec<String>,
            blocks: u32,
        }
        let raw: Raw = self
            .transport
            .call("estimatesmartfee", json!([conf_target]))
            .await?;
        let sat_per_kvb = match raw.feerate {
            None => None,
            Some(n) => Some(btc_to_sats(&n.to_string()).ok_or_else(|| RpcError::Decode {
                method: "estimatesmartfee".into(),
                reason: format!("fee rate {n} is not a BTC amount"),
            })?),
        };
        Ok(FeeEstimate {
            sat_per_kvb,
            blocks: raw.blocks,
            errors: raw.errors,
        })
    }

    /// An unspent output (`gettxout`); `None` when spent or unknown.
    pub async fn get_tx_out(
        &self,
        txid: &Txid,
        vout: u32,
        include_mempool: bool,
    ) -> Result<Option<TxOutInfo>, RpcError> {
        #[derive(Deserialize)]
        struct Spk {
            hex: String,
        }
        #[derive(Deserialize)]
        struct Raw {
            bestblock: BlockHash,
            confirmations: u64,
            value: serde_json::Number,
            #[serde(rename = "scriptPubKey")]
            script_pub_key: Spk,
            #[serde(default)]
            coinbase: bool,
        }
        let raw: Option<Raw> = self
            .transport
            .call("gettxout", json!([txid, vout, include_mempool]))
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let bad = |reason: String| RpcError::Decode {
            method: "gettxout".into(),
            reason,
        };
        let value_sats = btc_to_sats(&raw.value.to_string())
            .ok_or_else(|| bad(format!("value {} is not a BTC amount", raw.value)))?;
        let script = hex::decode(&raw.script_pub_key.hex).map_err(|e| bad(e.to_string()))?;
        Ok(Some(TxOutInfo {
            bestblock: raw.bestblock,
            confirmations: raw.confirmations,
            value_sats,
            script_pubkey: bitcoin::ScriptBuf::from_bytes(script),
            coinbase: raw.coinbase,
        }))
    }

    /// Scans the UTXO set (confirmed outputs only) for the descriptors'
    /// scripts: `scantxoutset "start" [{"desc": …, "range": [a, b]}, …]`.
    pub async fn scan_tx_out_set(&self, objects: &[ScanObject]) -> Result<UtxoScan, RpcError> {
        #[derive(Deserialize)]
        struct RawUtxo {
            txid: Txid,
            vout: u32,
            #[serde(rename = "scriptPubKey")]
            script_pub_key: String,
            desc: String,
            amount: serde_json::Number,
            #[serde(default)]
            coinbase: bool,
            height: u64,
        }
        #[derive(Deserialize)]
        struct Raw {
            success: bool,
            height: u64,
            bestblock: BlockHash,
            unspents: Vec<RawUtxo>,
            total_amount: serde_json::Number,
        }
        let params: Vec<Value> = objects
            .iter()
            .map(|o| match o.range {
                Some((a, b)) => json!({"desc": o.desc, "range": [a, b]}),
                None => json!({"desc": o.desc}),
            })
            .collect();
        let raw: Raw = self
            .transport
            .call("scantxoutset", json!(["start", params]))
            .await?;
        let bad = |reason: String| RpcError::Decode {
            method: "scantxoutset".into(),
            reason,
        };
        if !raw.success {
            return Err(bad("the scan did not complete".into()));
        }
        let unspents = raw
            .unspents
            .into_iter()
            .map(|u| {
                Ok(ScannedUtxo {
                    txid: u.txid,
                    vout: u.vout,
                    script_pubkey: bitcoin::ScriptBuf::from_bytes(
                        hex::decode(&u.script_pub_key).map_err(|e| bad(e.to_string()))?,
                    ),
                    desc: u.desc,
                    value_sats: btc_to_sats(&u.amount.to_string())
                        .ok_or_else(|| bad(format!("amount {} is not a BTC amount", u.amount)))?,
                    coinbase: u.coinbase,
                    height: u.height,
                })
            })
            .collect::<Result<Vec<_>, RpcError>>()?;
        Ok(UtxoScan {
            height: raw.height,
            bestblock: raw.bestblock,
            unspents,
            total_sats: btc_to_sats(&raw.total_amount.to_string())
                .ok_or_else(|| bad(format!("total {} is not a BTC amount", raw.total_amount)))?,
        })
    }

    /// Mines `n` blocks paying `address` (regtest only).
    pub async fn generate_to_address(
        &self,
        n: u32,
        address: &Address,
    ) -> Result<Vec<BlockHash>, RpcError> {
        self.transport
            .call("generatetoaddress", json!([n, address.to_string()]))
            .await
    }
}

fn decode_tx(hex: &str) -> Result<Transaction, RpcError> {
    deserialize_hex::<Transaction>(hex).map_err(|e| RpcError::Decode {
        method: "getrawtransaction".into(),
        reason: e.to_string(),
    })
}

/// Converts a JSON number written in BTC (`0.00012`, `1e-05`, `21`) to
/// satoshis without going through a float; `None` when it is negative, has
/// more than 8 decimals or overflows.
pub fn btc_to_sats(s: &str) -> Option<u64> {
    let s = s.trim();
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    if mantissa.starts_with('-') {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits * 10^(exp - frac.len()); sats = value * 10^8.
    let digits: String = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let scale = exp + 8 - frac.len() as i32;
    let mut n: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if scale >= 0 {
        for _ in 0..scale {
            n = n.checked_mul(10)?;
        }
        Some(n)
    } else {
        for _ in 0..(-scale) {
            if !n.is_multiple_of(10) {
                return None;
            }
            n /= 10;
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&BroadcastError) -> bool;

    #[test]
    fn btc_amounts_convert_exactly() {
        let cases = [
            ("0.00001", Some(1_000)),
            ("1e-05", Some(1_000)),
            ("1E-5", Some(1_000)),
            ("0.00012345", Some(12_345)),
            ("21", Some(2_100_000_000)),
            ("0", Some(0)),
            ("0.0", Some(0)),
            ("1.5e2", Some(15_000_000_000)),
            ("0.000000001", None),
            ("-1", None),
            ("abc", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(btc_to_sats(input), want, "{input}");
        }
    }

    #[test]
    fn broadcast_errors_are_classified_from_bitcoin_core_answers() {
        let cases: &[(i64, &str, Check)] = &[
            (-26, "min relay fee not met, 100 < 141", |e| {
                matches!(e, BroadcastError::FeeTooLow(_))
            }),
            (-26, "mempool min fee not met, 1 < 2", |e| {
                matches!(e, BroadcastError::FeeTooLow(_))
            }),
            (-26, "insufficient fee, rejecting replacement abc", |e| {
                matches!(e, BroadcastError::FeeTooLow(_))
            }),
            (-26, "txn-mempool-conflict", |e| {
                matches!(e, BroadcastError::MempoolConflict(_))
            }),
            (
                -26,
                "mandatory-script-verify-flag-failed (Signature must be zero)",
                |e| matches!(e, BroadcastError::InvalidScript(_)),
            ),
            (
                -26,
                "non-mandatory-script-verify-flag (Witness program hash mismatch)",
                |e| matches!(e, BroadcastError::InvalidScript(_)),
            ),
            (-26, "dust", |e| matches!(e, BroadcastError::NonStandard(_))),
            (-26, "scriptpubkey", |e| {
                matches!(e, BroadcastError::NonStandard(_))
            }),
            (-26, "tx-size", |e| {
                matches!(e, BroadcastError::NonStandard(_))
            }),
            (-26, "txn-already-in-mempool", |e| {
                matches!(e, BroadcastError::AlreadyInMempool(_))
            }),
            (-25, "bad-txns-inputs-missingorspent", |e| {
                matches!(e, BroadcastError::MissingInputs(_))
            }),
            (-25, "Missing inputs", |e| {
                matches!(e, BroadcastError::MissingInputs(_))
            }),
            (-27, "Transaction already in block chain", |e| {
                matches!(e, BroadcastError::AlreadyInChain(_))
            }),
            (-27, "Transaction outputs already in utxo set", |e| {
                matches!(e, BroadcastError::AlreadyInChain(_))
            }),
            (-22, "TX decode failed", |e| {
                matches!(e, BroadcastError::Malformed(_))
            }),
            (-26, "bad-txns-vout-negative", |e| {
                matches!(e, BroadcastError::Other(-26, _))
            }),
        ];
        for (code, message, check) in cases {
            let e = BroadcastError::from_bitcoin(*code, message);
            assert!(check(&e), "{code} {message:?} classified as {e:?}");
        }
        assert!(BroadcastError::from_bitcoin(-27, "x").is_already_known());
        assert!(!BroadcastError::from_bitcoin(-26, "dust").is_already_known());
    }

    #[test]
    fn broadcast_errors_are_classified_from_ethereum_answers() {
        let cases: &[(&str, Check)] = &[
            ("already known", |e| {
                matches!(e, BroadcastError::AlreadyInMempool(_))
            }),
            ("nonce too low: next nonce 5, tx nonce 3", |e| {
                matches!(e, BroadcastError::NonceTooLow(_))
            }),
            ("replacement transaction underpriced", |e| {
                matches!(e, BroadcastError::FeeTooLow(_))
            }),
            ("max fee per gas less than block base fee", |e| {
                matches!(e, BroadcastError::FeeTooLow(_))
            }),
            ("insufficient funds for gas * price + value", |e| {
                matches!(e, BroadcastError::InsufficientFunds(_))
            }),
            ("rlp: expected input list", |e| {
                matches!(e, BroadcastError::Malformed(_))
            }),
            ("intrinsic gas too low", |e| {
                matches!(e, BroadcastError::Other(-32000, _))
            }),
        ];
        for (message, check) in cases {
            let e = BroadcastError::from_ethereum(-32000, message);
            assert!(check(&e), "{message:?} classified as {e:?}");
        }
    }
}
