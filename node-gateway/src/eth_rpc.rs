//! [`EthRpc`]: a typed client of an Ethereum node's JSON-RPC 2.0 API,
//! parsing only the fields the engine uses (quantities are `0x` hex).

use std::time::Duration;

use alloy_primitives::{Address, Bytes, B256, U128, U256, U64};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::rpc::{BroadcastError, Dialect, RpcError, Transport};

/// Which block a query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTag {
    Number(u64),
    Latest,
    Pending,
    Safe,
    Finalized,
}

impl BlockTag {
    fn to_json(self) -> Value {
        match self {
            BlockTag::Number(n) => json!(format!("{n:#x}")),
            BlockTag::Latest => json!("latest"),
            BlockTag::Pending => json!("pending"),
            BlockTag::Safe => json!("safe"),
            BlockTag::Finalized => json!("finalized"),
        }
    }
}

/// A transaction inside a block fetched with full transactions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthTransaction {
    pub hash: B256,
    pub from: Address,
    /// `None` for a contract creation.
    pub to: Option<Address>,
    /// Wei.
    pub value: U256,
    pub nonce: U64,
    #[serde(default)]
    pub input: Bytes,
}

/// A block with its full transactions (`eth_getBlockByNumber(n, true)`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthBlock {
    pub number: U64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: U64,
    #[serde(default)]
    pub base_fee_per_gas: Option<U128>,
    pub transactions: Vec<EthTransaction>,
}

impl EthBlock {
    pub fn height(&self) -> u64 {
        self.number.to::<u64>()
    }
}

/// One log of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    #[serde(default)]
    pub log_index: Option<U64>,
    /// `None` only for a pending log.
    #[serde(default)]
    pub transaction_hash: Option<B256>,
    #[serde(default)]
    pub block_hash: Option<B256>,
    /// `true` when a reorganisation removed the log (filter changes only).
    #[serde(default)]
    pub removed: bool,
}

/// `keccak256("Transfer(address,address,uint256)")`, the first topic of an
/// ERC-20 `Transfer` log.
pub const ERC20_TRANSFER_TOPIC: B256 = B256::new([
    0xdd, 0xf2, 0x52, 0xad, 0x1b, 0xe2, 0xc8, 0x9b, 0x69, 0xc2, 0xb0, 0x68, 0xfc, 0x37, 0x8d, 0xaa,
    0x95, 0x2b, 0xa7, 0xf1, 0x63, 0xc4, 0xa1, 0x16, 0x28, 0xf5, 0x5a, 0x4d, 0xf5, 0x23, 0xb3, 0xef,
]);

/// A transaction receipt (`eth_getTransactionReceipt`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EthReceipt {
    pub transaction_hash: B256,
    pub block_hash: Option<B256>,
    pub block_number: Option<U64>,
    /// 1 success, 0 reverted.
    pub status: Option<U64>,
    pub gas_used: U64,
    #[serde(default)]
    pub effective_gas_price: Option<U128>,
    #[serde(default)]
    pub logs: Vec<EthLog>,
}

impl EthReceipt {
    pub fn succeeded(&self) -> bool {
        self.status.map(|s| s.to::<u64>() == 1).unwrap_or(false)
    }
}

/// `eth_feeHistory`'s answer (gas-used ratios, which are floats, left out).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeHistory {
    pub oldest_block: U64,
    /// Wei per gas, one per block plus the next block's.
    pub base_fee_per_gas: Vec<U128>,
    /// Per block, the priority fee at each requested percentile (wei per gas).
    #[serde(default)]
    pub reward: Option<Vec<Vec<U128>>>,
}

/// A typed Ethereum JSON-RPC client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EthRpc {
    transport: Transport,
}

impl EthRpc {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:8545`).
    /// Requests time out after 30 s.
    pub fn new(url: &str) -> Result<Self, RpcError> {
        Ok(EthRpc {
            transport: Transport::new(url, None, Dialect::V2, Duration::from_secs(30))?,
        })
    }

    pub fn url(&self) -> &str {
        self.transport.url()
    }

    /// Any method, for what this client has no typed wrapper for.
    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.transport.call(method, params).await
    }

    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let n: U64 = self.transport.call("eth_chainId", json!([])).await?;
        Ok(n.to())
    }

    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let n: U64 = self.transport.call("eth_blockNumber", json!([])).await?;
        Ok(n.to())
    }

    /// The block with full transactions; `None` when there is none yet.
    pub async fn get_block_by_number(&self, tag: BlockTag) -> Result<Option<EthBlock>, RpcError> {
        self.transport
            .call("eth_getBlockByNumber", json!([tag.to_json(), true]))
            .await
    }

    /// The block with full transactions by hash (also off the best chain,
    /// while the node keeps it); `None` when unknown.
    pub async fn get_block_by_hash(&self, hash: &B256) -> Result<Option<EthBlock>, RpcError> {
        self.transport
            .call("eth_getBlockByHash", json!([hash, true]))
            .await
    }

    /// The hash of the best-chain block at `number`; `None` above the head.
    pub async fn get_block_hash(&self, number: u64) -> Result<Option<B256>, RpcError> {
        #[derive(Deserialize)]
        struct Header {
            hash: B256,
        }
        let h: Option<Header> = self
            .transport
            .call(
                "eth_getBlockByNumber",
                json!([BlockTag::Number(number).to_json(), false]),
            )
            .await?;
        Ok(h.map(|h| h.hash))
    }

    /// The account's nonce: `Latest` counts mined transactions, `Pending`
    /// also those in the node's pool.
    pub async fn get_transaction_count(
        &self,
        address: &Address,
        tag: BlockTag,
    ) -> Result<u64, RpcError> {
        let n: U64 = self
            .transport
            .call("eth_getTransactionCount", json!([address, tag.to_json()]))
            .await?;
        Ok(n.to())
    }

    /// Wei held by `address`.
    pub async fn get_balance(&self, address: &Address, tag: BlockTag) -> Result<U256, RpcError> {
        self.transport
            .call("eth_getBalance", json!([address, tag.to_json()]))
            .await
    }

    /// Broadcasts a signed, encoded transaction; node rejections become
    /// [`RpcError::Broadcast`].
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256, RpcError> {
        let hex = format!("0x{}", hex::encode(raw));
        match self
            .transport
            .call("eth_sendRawTransaction", json!([hex]))
            .await
        {
            Ok(h) => Ok(h),
            Err(RpcError::Node { code, message, .. }) => Err(RpcError::Broadcast(
                BroadcastError::from_ethereum(code, &message),
            )),
            Err(e) => Err(e),
        }
    }

    /// The receipt of a mined transaction; `None` while it is pending or unknown.
    pub async fn get_transaction_receipt(
        &self,
        hash: &B256,
    ) -> Result<Option<EthReceipt>, RpcError> {
        self.transport
            .call("eth_getTransactionReceipt", json!([hash]))
            .await
    }

    /// Base fees and priority-fee percentiles (`percentiles` in whole
    /// percent, e.g. `[10, 50, 90]`) of the last `block_count` blocks.
    pub async fn fee_history(
        &self,
        block_count: u64,
        newest: BlockTag,
        percentiles: &[u8],
    ) -> Result<FeeHistory, RpcError> {
        self.transport
            .call(
                "eth_feeHistory",
                json!([format!("{block_count:#x}"), newest.to_json(), percentiles]),
            )
            .await
    }

    /// The node's pending (executable) pool transactions (`txpool_content`,
    /// offered by geth, reth and anvil when the `txpool` namespace is on).
    pub async fn txpool_pending(&self) -> Result<Vec<EthTransaction>, RpcError> {
        #[derive(Deserialize)]
        struct Content {
            #[serde(default)]
            pending: std::collections::BTreeMap<
                String,
                std::collections::BTreeMap<String, EthTransaction>,
            >,
        }
        let c: Content = self.transport.call("txpool_content", json!([])).await?;
        Ok(c.pending
            .into_values()
            .flat_map(|m| m.into_values())
            .collect())
    }

    /// The logs of the block `block_hash` (EIP-234: exactly that block, also
    /// after a reorganisation) emitted by one of `contracts` with first topic
    /// `topic0`.
    pub async fn get_logs_in_block(
        &self,
        block_hash: &B256,
        contracts: &[Address],
        topic0: &B256,
    ) -> Result<Vec<EthLog>, RpcError> {
        self.transport
            .call(
                "eth_getLogs",
                json!([{ "blockHash": block_hash, "address": contracts, "topics": [topic0] }]),
            )
            .await
    }

    /// `eth_call`: runs `data` against contract `to` at `tag` without a
    /// transaction; returns the output.
    pub async fn call(&self, to: &Address, data: &[u8], tag: BlockTag) -> Result<Bytes, RpcError> {
        self.transport
            .call(
                "eth_call",
                json!([{ "to": to, "input": format!("0x{}", hex::encode(data)) }, tag.to_json()]),
            )
            .await
    }

    /// Wei per gas.
    pub async fn gas_price(&self) -> Result<u128, RpcError> {
        let n: U128 = self.transport.call("eth_gasPrice", json!([])).await?;
        Ok(n.to())
    }

    /// Suggested priority fee, wei per gas.
    pub async fn max_priority_fee_per_gas(&self) -> Result<u128, RpcError> {
        let n: U128 = self
            .transport
            .call("eth_maxPriorityFeePerGas", json!([]))
            .await?;
        Ok(n.to())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_block_with_hex_quantities() {
        let v = json!({
            "number": "0x1b4",
            "hash": format!("0x{}", "11".repeat(32)),
            "parentHash": format!("0x{}", "22".repeat(32)),
            "timestamp": "0x5f5e100",
            "baseFeePerGas": "0x3b9aca00",
            "miner": format!("0x{}", "00".repeat(20)),
            "transactions": [{
                "hash": format!("0x{}", "33".repeat(32)),
                "from": format!("0x{}", "44".repeat(20)),
                "to": format!("0x{}", "55".repeat(20)),
                "value": "0xde0b6b3a7640000",
                "nonce": "0x7",
                "input": "0x",
                "gas": "0x5208"
            }, {
                "hash": format!("0x{}", "66".repeat(32)),
                "from": format!("0x{}", "44".repeat(20)),
                "to": null,
                "value": "0x0",
                "nonce": "0x8",
                "input": "0x6080"
            }]
        });
        let b: EthBlock = serde_json::from_value(v).unwrap();
        assert_eq!(b.height(), 436);
        assert_eq!(
            b.base_fee_per_gas.map(|f| f.to::<u128>()),
            Some(1_000_000_000)
        );
        assert_eq!(b.transactions.len(), 2);
        assert_eq!(b.transactions[0].value, U256::from(10u128.pow(18)));
        assert_eq!(b.transactions[1].to, None);
        assert_eq!(BlockTag::Number(436).to_json(), json!("0x1b4"));
    }

    #[test]
    fn transfer_topic_is_the_event_signature_hash() {
        assert_eq!(
            ERC20_TRANSFER_TOPIC,
            alloy_primitives::keccak256("Transfer(address,address,uint256)")
        );
    }

    #[test]
    fn parses_a_log_with_its_transaction() {
        let v = json!({
            "address": format!("0x{}", "aa".repeat(20)),
            "topics": [format!("{ERC20_TRANSFER_TOPIC:#x}")],
            "data": "0x01",
            "logIndex": "0x3",
            "transactionHash": format!("0x{}", "bb".repeat(32)),
            "blockHash": format!("0x{}", "cc".repeat(32)),
            "removed": false
        });
        let l: EthLog = serde_json::from_value(v).unwrap();
        assert_eq!(l.log_index.map(|i| i.to::<u64>()), Some(3));
        assert_eq!(l.transaction_hash, Some(B256::repeat_byte(0xbb)));
        assert!(!l.removed);
    }
}
