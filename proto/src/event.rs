//! Internal events: the versioned envelope every bus message carries, chain
//! events from the node gateway, and swap events from the hot wallet.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::api::SwapView;
use crate::asset::AssetId;
use crate::chain::Network;
use crate::ids::EventId;
use crate::Timestamp;

/// Bus topics.
pub mod topics {
    /// Chain events, keyed by the watched address (or txid for the engine's
    /// own transactions).
    pub const CHAIN_EVENTS: &str = "chain-events";
    /// Swap status changes, keyed by swap id.
    pub const SWAP_EVENTS: &str = "swap-events";
}

/// The envelope of every message on the bus: who it is, what it is, which
/// version of the payload's schema, when, and the partition key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: EventId,
    /// The payload type, e.g. `chain.output` or `swap.status`.
    pub kind: String,
    pub schema_version: u32,
    pub occurred_at: Timestamp,
    /// The bus partition key (address, txid or swap id).
    pub key: String,
    pub payload: T,
}

/// A payload that travels in an [`Envelope`].
pub trait EventPayload: Serialize + DeserializeOwned {
    const SCHEMA_VERSION: u32;
    fn kind(&self) -> &'static str;
    fn key(&self) -> String;
}

impl<T: EventPayload> Envelope<T> {
    pub fn new(id: EventId, occurred_at: Timestamp, payload: T) -> Self {
        Envelope {
            id,
            kind: payload.kind().to_owned(),
            schema_version: T::SCHEMA_VERSION,
            occurred_at,
            key: payload.key(),
            payload,
        }
    }
}

/// Where a watched transaction stands on its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// In the mempool, not in a block.
    Seen,
    /// In the best chain; `depth` is 1 in the tip block.
    Confirmed {
        block_height: u64,
        block_hash: String,
        depth: u64,
    },
    /// Was in a block that a reorganisation removed from the best chain.
    Unconfirmed { block_hash: String },
    /// Left the mempool without confirming: replaced (RBF), double-spent or
    /// evicted. `replaced_by` names the replacing transaction when known.
    Dropped { replaced_by: Option<String> },
}

impl TxStatus {
    /// The variant's name: `seen`, `confirmed`, `unconfirmed` or `dropped`.
    pub fn kind(&self) -> &'static str {
        match self {
            TxStatus::Seen => "seen",
            TxStatus::Confirmed { .. } => "confirmed",
            TxStatus::Unconfirmed { .. } => "unconfirmed",
            TxStatus::Dropped { .. } => "dropped",
        }
    }
}

/// A fact observed on a chain by the node gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChainEvent {
    /// A transaction output paying a watched address (a deposit). For
    /// Ethereum, `output` is 0 for a native transfer and 1 + n for the n-th
    /// (from 0) ERC-20 `Transfer` log of a configured token in the
    /// transaction: distinct from the native transfer of the same
    /// transaction, and the same wherever the transaction is mined (a block
    /// log index would change when a reorganisation mines it elsewhere). A
    /// pending direct `transfer`/`transferFrom` call is reported seen as
    /// output 1, the index its one `Transfer` log gets when mined.
    Output {
        network: Network,
        txid: String,
        output: u32,
        address: String,
        asset: AssetId,
        amount: Amount,
        #[serde(flatten)]
        status: TxStatus,
    },
    /// A watched transaction of the engine's own (payout, refund, sweep).
    Transaction {
        network: Network,
        txid: String,
        /// Ethereum: the transaction was mined but failed (receipt status
        /// 0): it used its nonce and fee and moved nothing. Only ever true
        /// with a `confirmed` status; always false on Bitcoin. Absent in
        /// events written before it existed (read as false).
        #[serde(default)]
        reverted: bool,
        #[serde(flatten)]
        status: TxStatus,
    },
    BlockConnected {
        network: Network,
        height: u64,
        hash: String,
        parent_hash: String,
    },
    BlockDisconnected {
        network: Network,
        height: u64,
        hash: String,
    },
    /// The best block of the chain followed changed (blocks connected, or
    /// a reorganisation to a shorter chain): reported once per poll that
    /// moved it, after the block events.
    Tip {
        network: Network,
        height: u64,
        hash: String,
    },
    /// The node's finalized block (Ethereum proof of stake): blocks up to
    /// here can no longer be reorganised. Reported when it advances.
    Finalized {
        network: Network,
        height: u64,
        hash: String,
    },
}

impl ChainEvent {
    /// The deterministic id of this fact: the same observation made twice,
    /// by a replay or after a restart, gets the same id.
    pub fn event_id(&self) -> EventId {
        fn status_parts(s: &TxStatus) -> Vec<String> {
            match s {
                TxStatus::Seen => vec!["mempool".into(), "seen".into()],
                TxStatus::Confirmed {
                    block_hash, depth, ..
                } => vec![block_hash.clone(), "confirmed".into(), depth.to_string()],
                TxStatus::Unconfirmed { block_hash } => {
                    vec![block_hash.clone(), "unconfirmed".into()]
                }
                TxStatus::Dropped { replaced_by } => vec![
                    "mempool".into(),
                    "dropped".into(),
                    replaced_by.clone().unwrap_or_default(),
                ],
            }
        }
        let parts: Vec<String> = match self {
            ChainEvent::Output {
                network,
                txid,
                output,
                status,
                ..
            } => {
                let mut p = vec![
                    network.to_string(),
                    "output".into(),
                    txid.clone(),
                    output.to_string(),
                ];
                p.extend(status_parts(status));
                p
            }
            ChainEvent::Transaction {
                network,
                txid,
                status,
                ..
            } => {
                let mut p = vec![network.to_string(), "tx".into(), txid.clone()];
                p.extend(status_parts(status));
                p
            }
            ChainEvent::BlockConnected { network, hash, .. } => {
                vec![network.to_string(), "connected".into(), hash.clone()]
            }
            ChainEvent::BlockDisconnected { network, hash, .. } => {
                vec![network.to_string(), "disconnected".into(), hash.clone()]
            }
            ChainEvent::Tip { network, hash, .. } => {
                vec![network.to_string(), "tip".into(), hash.clone()]
            }
            ChainEvent::Finalized { network, hash, .. } => {
                vec![network.to_string(), "finalized".into(), hash.clone()]
            }
        };
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        EventId::derive(&refs)
    }

    pub fn network(&self) -> Network {
        match self {
            ChainEvent::Output { network, .. }
            | ChainEvent::Transaction { network, .. }
            | ChainEvent::BlockConnected { network, .. }
            | ChainEvent::BlockDisconnected { network, .. }
            | ChainEvent::Tip { network, .. }
            | ChainEvent::Finalized { network, .. } => *network,
        }
    }
}

impl EventPayload for ChainEvent {
    const SCHEMA_VERSION: u32 = 1;

    fn kind(&self) -> &'static str {
        match self {
            ChainEvent::Output { .. } => "chain.output",
            ChainEvent::Transaction { .. } => "chain.transaction",
            ChainEvent::BlockConnected { .. } => "chain.block_connected",
            ChainEvent::BlockDisconnected { .. } => "chain.block_disconnected",
            ChainEvent::Tip { .. } => "chain.tip",
            ChainEvent::Finalized { .. } => "chain.finalized",
        }
    }

    fn key(&self) -> String {
        match self {
            ChainEvent::Output { address, .. } => address.clone(),
            ChainEvent::Transaction { txid, .. } => txid.clone(),
            ChainEvent::BlockConnected { network, .. }
            | ChainEvent::BlockDisconnected { network, .. }
            | ChainEvent::Tip { network, .. }
            | ChainEvent::Finalized { network, .. } => network.to_string(),
        }
    }
}

/// A swap's status changed; carries the swap as clients see it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapStatusChanged {
    /// The swap's version after the change (increases by one per change).
    pub version: u64,
    pub swap: SwapView,
}

impl EventPayload for SwapStatusChanged {
    const SCHEMA_VERSION: u32 = 1;
    fn kind(&self) -> &'static str {
        "swap.status"
    }
    fn key(&self) -> String {
        self.swap.swap_id.to_string()
    }
}
