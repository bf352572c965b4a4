//! Client API messages, shared by REST and the websocket protocol.
//!
//! Amounts go out twice: as a decimal string in whole units for people
//! (`"0.015"`) and as base units for signers (`"1500000"`). Amounts come in
//! as decimal strings, checked against the asset's precision.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::amount::Amount;
use crate::asset::{AssetId, Pair, Price};
use crate::chain::Network;
use crate::ids::{QuoteId, SwapId};
use crate::Timestamp;

/// Which side of a swap the client's amount fixes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AmountSide {
    /// The client says how much it sends; the engine says how much it pays.
    #[default]
    From,
    /// The client says how much it wants to receive.
    To,
}

/// A request for a firm quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RfqRequest {
    pub from: String,
    pub to: String,
    /// Decimal string in whole units of the side's asset.
    pub amount: String,
    #[serde(default)]
    pub amount_side: AmountSide,
}

/// A firm quote: the engine will honour it once, before `expires_at`, for
/// exactly this size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quote {
    #[schema(value_type = String, format = Uuid)]
    pub quote_id: QuoteId,
    #[schema(value_type = String, example = "BTC")]
    pub from: AssetId,
    #[schema(value_type = String, example = "ETH")]
    pub to: AssetId,
    pub amount_in: String,
    #[schema(value_type = String, pattern = "^[0-9]+$")]
    pub amount_in_base_units: Amount,
    pub amount_out: String,
    #[schema(value_type = String, pattern = "^[0-9]+$")]
    pub amount_out_base_units: Amount,
    /// Units of `to` per unit of `from`, all costs included.
    #[schema(value_type = String, example = "29.87")]
    pub price: Price,
    /// The payout's network fee, in `to`, already taken out of `amount_out`.
    pub network_fee: String,
    /// The fee of the partner app that asked for the quote, in `to`, already
    /// taken out of `amount_out`; absent without a partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_fee: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// The engine's signature over the quote's terms (hex), so services can
    /// check a quote they did not make.
    pub signature: String,
}

/// Accept a firm quote and open a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    pub quote_id: String,
    /// Where the engine pays `to`.
    pub payout_address: String,
    /// Where the engine returns `from` if the swap cannot complete.
    #[serde(default)]
    pub refund_address: Option<String>,
    /// A key of the client's choosing: retrying an accept with the same key
    /// returns the same swap.
    pub idempotency_key: String,
}

/// Give a refund address to a swap that needs one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundAddressRequest {
    pub refund_address: String,
}

/// What the user must send, where, and by when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DepositInstructions {
    #[schema(value_type = String, example = "bitcoin-regtest")]
    pub network: Network,
    #[schema(value_type = String, example = "BTC")]
    pub asset: AssetId,
    pub address: String,
    pub amount: String,
    #[schema(value_type = String, pattern = "^[0-9]+$")]
    pub amount_base_units: Amount,
    #[schema(value_type = String, format = DateTime)]
    pub deadline: Timestamp,
    /// BIP21 (Bitcoin) or EIP-681 (Ethereum) URI for wallets and QR codes.
    pub payment_uri: String,
    pub required_confirmations: u32,
}

/// Where a key comes from in the client's wallet (BIP32), so that a
/// hardware wallet recognises the input or change as its own and signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyOrigin {
    /// Master key fingerprint, 8 hex digits.
    #[schema(example = "d34db33f")]
    pub fingerprint: String,
    #[schema(example = "m/84'/1'/0'/0/0")]
    pub path: String,
    /// Hex public key: 33 bytes compressed, or the 32-byte x-only internal
    /// key for P2TR.
    pub pubkey: String,
}

/// One UTXO of the client's to spend in the deposit PSBT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PsbtInput {
    pub txid: String,
    pub vout: u32,
    /// The address the UTXO pays (P2WPKH, P2TR or P2PKH).
    pub address: String,
    /// Its value in BTC, as a decimal string.
    pub amount: String,
    /// The whole funding transaction, hex: required for P2PKH, recommended
    /// for P2WPKH (signers check the amount against it).
    #[serde(default)]
    pub previous_tx: Option<String>,
    #[serde(default)]
    pub key_origin: Option<KeyOrigin>,
}

/// Ask for a PSBT (BIP174) paying a swap's Bitcoin deposit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PsbtRequest {
    /// Every listed UTXO is spent (the wallet chooses its coins). Give
    /// these or `descriptors`, not both.
    #[serde(default)]
    pub inputs: Vec<PsbtInput>,
    /// Output descriptors of the wallet (`wpkh([d34db33f/84h/1h/0h]tpub…/0/*)`,
    /// `tr(…)`, `addr(…)`; a bare xpub/tpub is read as a BIP84 account:
    /// `wpkh(KEY/0/*)` and `wpkh(KEY/1/*)`, indexes 0 to 999): the node finds
    /// their confirmed UTXOs (`scantxoutset`) and all of them are spent, with
    /// key origins from the descriptors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptors: Vec<String>,
    /// Where the change goes (dropped to the fee when below dust).
    pub change_address: String,
    #[serde(default)]
    pub change_key_origin: Option<KeyOrigin>,
    /// sat/vB; the node's estimate for 2 blocks when absent.
    #[serde(default)]
    pub fee_rate_sat_vb: Option<u64>,
}

/// An unsigned PSBT paying the deposit's exact amount, base64 (BIP174).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PsbtResponse {
    pub psbt: String,
    /// Network fee in BTC.
    pub fee: String,
    #[schema(value_type = String, pattern = "^[0-9]+$")]
    pub fee_base_units: Amount,
    pub fee_rate_sat_vb: u64,
    /// Estimated virtual size once signed.
    pub vsize: u64,
    /// Change in BTC, if any.
    pub change: Option<String>,
}

/// A signed transaction paying a swap's deposit, for the engine to
/// broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// The serialised transaction, hex (Bitcoin consensus encoding, or an
    /// EIP-2718 Ethereum envelope).
    pub raw_tx: String,
}

/// The relayed transaction's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayResponse {
    pub txid: String,
}

/// Ask for the unsigned Ethereum transaction paying a swap's ETH or token
/// deposit from the user's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EthTransactionRequest {
    /// The user's address (EIP-55 or lowercase); nonce and gas are for it.
    pub from: String,
}

/// An unsigned EIP-1559 transaction, filled from the node: the fields in
/// JSON-RPC form (hex quantities, as `eth_signTransaction` takes them) and
/// the EIP-2718 payload a hardware wallet signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsignedEthTransaction {
    /// Always `0x2`.
    #[serde(rename = "type")]
    pub tx_type: String,
    pub chain_id: String,
    pub nonce: String,
    pub from: String,
    pub to: String,
    /// Wei, hex quantity.
    pub value: String,
    /// Call data (`0x` for ETH, `transfer(deposit, amount)` for a token).
    pub data: String,
    pub gas: String,
    pub max_fee_per_gas: String,
    pub max_priority_fee_per_gas: String,
    /// `0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas,
    /// gas, to, value, data, accessList])`, hex.
    pub unsigned_payload: String,
    /// keccak256 of `unsigned_payload`: what the key signs.
    pub signing_hash: String,
}

/// Where a swap stands, as clients see it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SwapStatus {
    AwaitingDeposit,
    DepositSeen,
    Confirming,
    DepositConfirmed,
    AmountMismatch,
    Executing,
    PayoutPending,
    PayoutBroadcast,
    Completed,
    Expired,
    RefundRequired,
    Refunding,
    Refunded,
    ManualReview,
    Failed,
}

impl SwapStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SwapStatus::Completed | SwapStatus::Expired | SwapStatus::Refunded | SwapStatus::Failed
        )
    }
}

/// One deposit transaction output seen for a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DepositView {
    pub txid: String,
    pub output: u32,
    pub amount: String,
    #[schema(value_type = String, pattern = "^[0-9]+$")]
    pub amount_base_units: Amount,
    pub confirmations: u64,
    /// `pending`, `confirmed`, `applied` (paid out), `refunding`,
    /// `refunded`, `review`, `dust`, `dropped`.
    pub disposition: String,
}

/// A payment the engine makes: the payout, or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: String,
    #[schema(value_type = String, example = "BTC")]
    pub asset: AssetId,
    pub address: String,
    pub amount: String,
    #[schema(value_type = String, pattern = "^[0-9]+$")]
    pub amount_base_units: Amount,
    pub txid: Option<String>,
    /// `pending`, `broadcast`, `confirmed`.
    pub status: String,
    pub confirmations: u64,
}

/// A swap, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SwapView {
    #[schema(value_type = String, format = Uuid)]
    pub swap_id: SwapId,
    pub status: SwapStatus,
    #[schema(value_type = String, format = Uuid)]
    pub quote_id: QuoteId,
    #[schema(value_type = String, example = "BTC")]
    pub from: AssetId,
    #[schema(value_type = String, example = "ETH")]
    pub to: AssetId,
    pub amount_in: String,
    pub amount_out: String,
    #[schema(value_type = String, example = "29.87")]
    pub price: Price,
    pub deposit: DepositInstructions,
    pub payout_address: String,
    pub refund_address: Option<String>,
    pub deposits: Vec<DepositView>,
    pub payout: Option<PaymentView>,
    pub refunds: Vec<PaymentView>,
    /// Why the swap is where it is, when that needs saying (a short deposit,
    /// an expiry, a review).
    pub reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// One rung of an indicative price ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LadderRung {
    pub amount_in: String,
    pub amount_out: String,
    #[schema(value_type = String, example = "29.87")]
    pub price: Price,
}

/// Indicative prices of a pair for a few sizes; not a commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IndicativePrices {
    #[schema(value_type = String, example = "BTC/ETH")]
    pub pair: Pair,
    pub rungs: Vec<LadderRung>,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// A machine-readable error code; the message says it for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidAmount,
    InvalidAddress,
    UnknownAsset,
    UnsupportedPair,
    AmountTooSmall,
    AmountTooLarge,
    InsufficientLiquidity,
    QuoteNotFound,
    QuoteExpired,
    QuoteAlreadyUsed,
    SwapNotFound,
    IdempotencyConflict,
    TradingHalted,
    /// Too many requests or messages; wait `Retry-After` seconds (REST) or
    /// as the message says (websocket).
    RateLimited,
    /// No such API key (or an unreadable one).
    Unauthorized,
    /// The API key is known but revoked.
    Forbidden,
    /// The request body is larger than the gateway accepts.
    PayloadTooLarge,
    /// The node refused a relayed transaction; the message says why.
    TransactionRejected,
    Unavailable,
    Internal,
}

/// An error answer: a code and a sentence saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Messages a client sends on the websocket. Every request may carry a
/// `request_id`, echoed in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe {
        pairs: Vec<String>,
    },
    Unsubscribe {
        pairs: Vec<String>,
    },
    Rfq {
        #[serde(default)]
        request_id: Option<String>,
        from: String,
        to: String,
        amount: String,
        #[serde(default)]
        amount_side: AmountSide,
    },
    Accept {
        #[serde(default)]
        request_id: Option<String>,
        quote_id: String,
        payout_address: String,
        #[serde(default)]
        refund_address: Option<String>,
        idempotency_key: String,
    },
    WatchSwaps {
        swap_ids: Vec<String>,
    },
    Ping {
        #[serde(default)]
        nonce: Option<String>,
    },
}

/// Messages the server sends on the websocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Prices(IndicativePrices),
    Quote {
        request_id: Option<String>,
        quote: Quote,
    },
    Swap {
        request_id: Option<String>,
        swap: SwapView,
    },
    SwapStatus {
        swap: SwapView,
    },
    Subscribed {
        pairs: Vec<Pair>,
    },
    Pong {
        nonce: Option<String>,
    },
    Error {
        request_id: Option<String>,
        code: ErrorCode,
        message: String,
    },
}

/// One of the engine's payments as the desk sees it (the approval queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeskPayment {
    pub payment_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub swap_id: SwapId,
    /// `payout` or `refund`.
    pub kind: String,
    #[schema(value_type = String, example = "BTC")]
    pub asset: AssetId,
    #[schema(value_type = String, example = "bitcoin-regtest")]
    pub network: Network,
    pub address: String,
    /// In whole units.
    pub amount: String,
    #[schema(value_type = String, pattern = "^[0-9]+$")]
    pub amount_base_units: Amount,
    /// `intent`, `approval` (waiting for the desk), `signed`, `broadcast`,
    /// `confirmed`.
    pub status: String,
    pub txid: Option<String>,
    /// Why it waits, when it does.
    pub reason: Option<String>,
    pub approved_by: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}
