//! What can go wrong in liquidity, each case mapped onto an API error code.

use proto::api::ErrorCode;
use proto::{AssetId, Pair, QuoteId, SwapId, Timestamp};
use rust_decimal::Decimal;

/// An error of the liquidity engine. The message tells a client what was
/// wrong with its request (which asset, what limit, when it expired); the
/// code says it for machines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiquidityError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("invalid amount {input:?} for {asset}: {reason}")]
    InvalidAmount {
        asset: String,
        input: String,
        reason: String,
    },
    #[error("unknown asset {0:?}")]
    UnknownAsset(String),
    #[error("pair {from}/{to} is not traded: {reason}")]
    UnsupportedPair {
        from: String,
        to: String,
        reason: String,
    },
    #[error("amount {amount} {asset} is below the minimum of {min} {asset}")]
    AmountTooSmall {
        asset: AssetId,
        amount: String,
        min: Decimal,
    },
    #[error("amount {amount} {asset} is above the maximum of {max} {asset}")]
    AmountTooLarge {
        asset: AssetId,
        amount: String,
        max: Decimal,
    },
    #[error(
        "the swap is worth about {notional_usd} USD, above the maximum of {max_usd} USD per quote"
    )]
    NotionalTooLarge {
        notional_usd: Decimal,
        max_usd: Decimal,
    },
    #[error("{amount} {asset} does not cover the payout's network fee of {network_fee} {asset}")]
    BelowNetworkFee {
        asset: AssetId,
        amount: Decimal,
        network_fee: Decimal,
    },
    #[error("not enough liquidity on {market}: {side} has {available} {unit} of depth, {wanted} {unit} needed")]
    InsufficientLiquidity {
        market: Pair,
        /// `bids` or `asks`.
        side: &'static str,
        unit: AssetId,
        wanted: Decimal,
        available: Decimal,
    },
    #[error(
        "not enough {asset} inventory to pay out {wanted} {asset}: {available} {asset} available"
    )]
    InsufficientInventory {
        asset: AssetId,
        wanted: Decimal,
        available: Decimal,
    },
    #[error("no fresh prices for {market}: {reason}")]
    MarketUnavailable { market: Pair, reason: String },
    #[error("quote {0} not found")]
    QuoteNotFound(QuoteId),
    #[error("quote {quote_id} expired at {expired_at}")]
    QuoteExpired {
        quote_id: QuoteId,
        expired_at: Timestamp,
    },
    #[error("quote {quote_id} is already used by swap {swap_id}")]
    QuoteAlreadyUsed { quote_id: QuoteId, swap_id: SwapId },
    #[error("quote {0} is not locked")]
    NotLocked(QuoteId),
    #[error("quote {0} has a signature that does not match its terms")]
    BadSignature(QuoteId),
    #[error("trading is halted: {reason}")]
    TradingHalted { reason: String },
    /// Trading is `Reducing` and this quote would not reduce an exposure
    /// beyond its limit.
    #[error("only quotes that reduce exposure are given now ({reason})")]
    ExposureLimit { reason: String },
    #[error("invalid liquidity configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl LiquidityError {
    /// The API error code of this error.
    pub fn code(&self) -> ErrorCode {
        use LiquidityError as E;
        match self {
            E::BadRequest(_) | E::NotLocked(_) | E::BadSignature(_) => ErrorCode::BadRequest,
            E::InvalidAmount { .. } => ErrorCode::InvalidAmount,
            E::UnknownAsset(_) => ErrorCode::UnknownAsset,
            E::UnsupportedPair { .. } => ErrorCode::UnsupportedPair,
            E::AmountTooSmall { .. } | E::BelowNetworkFee { .. } => ErrorCode::AmountTooSmall,
            E::AmountTooLarge { .. } | E::NotionalTooLarge { .. } => ErrorCode::AmountTooLarge,
            E::InsufficientLiquidity { .. } | E::InsufficientInventory { .. } => {
                ErrorCode::InsufficientLiquidity
            }
            E::MarketUnavailable { .. } => ErrorCode::Unavailable,
            E::QuoteNotFound(_) => ErrorCode::QuoteNotFound,
            E::QuoteExpired { .. } => ErrorCode::QuoteExpired,
            E::QuoteAlreadyUsed { .. } => ErrorCode::QuoteAlreadyUsed,
            E::TradingHalted { .. } | E::ExposureLimit { .. } => ErrorCode::TradingHalted,
            E::Config(_) | E::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The error as the API sends it.
    pub fn to_api_error(&self) -> proto::api::ApiError {
        proto::api::ApiError::new(self.code(), self.to_string())
    }
}
