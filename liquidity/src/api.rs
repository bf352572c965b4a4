//! The API the gateway and the hot wallet call, in-process today and over
//! HTTP later, and the price lock it hands out.

use async_trait::async_trait;
use proto::api::{IndicativePrices, Quote, RfqRequest};
use proto::{Amount, AssetId, Pair, QuoteId, SwapId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::LiquidityError;
use crate::risk::TradingState;

/// Where a lock stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockStatus {
    /// Inventory of the outgoing asset is reserved for the swap.
    Locked,
    /// The swap's deposit arrived and the price was honoured; the reserved
    /// inventory left for real.
    Executed,
}

/// A firm quote bound to one swap, with the inventory it reserves.
/// Callers persist it and hand it back to [`crate::Liquidity::restore`]
/// after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceLock {
    pub quote_id: QuoteId,
    pub swap_id: SwapId,
    /// The quote as signed; its terms are what the lock honours.
    pub quote: Quote,
    /// The asset the house pays out (`quote.to`).
    pub reserved_asset: AssetId,
    /// The inventory reserved: `quote.amount_out_base_units`.
    pub reserved: Amount,
    pub locked_at: Timestamp,
    pub status: LockStatus,
}

/// The liquidity engine as other services see it.
#[async_trait]
pub trait LiquidityApi: Send + Sync {
    /// Indicative prices for a few sizes of `pair.base` sold for
    /// `pair.quote`; not a commitment.
    async fn indicative(&self, pair: &Pair) -> Result<IndicativePrices, LiquidityError>;

    /// A firm, signed quote for the exact size asked. Validates the asset
    /// tickers and the amount string.
    async fn quote(&self, rfq: &RfqRequest) -> Result<Quote, LiquidityError> {
        self.quote_with_partner_fee(rfq, rust_decimal::Decimal::ZERO)
            .await
    }

    /// A firm quote for a partner app: its fee, in basis points of the
    /// amount out, is added to the client's cost and shown in the quote
    /// (`partner_fee`).
    async fn quote_with_partner_fee(
        &self,
        rfq: &RfqRequest,
        partner_fee_bps: rust_decimal::Decimal,
    ) -> Result<Quote, LiquidityError>;

    /// Binds a live quote to a swap and reserves the payout's inventory.
    /// Locking the same quote for the same swap again returns the same
    /// lock; for another swap it is refused with `QuoteAlreadyUsed`.
    async fn lock(&self, quote_id: QuoteId, swap_id: SwapId) -> Result<PriceLock, LiquidityError>;

    /// Frees the reservation of a lock that will not execute. Releasing a
    /// quote that is not locked is a no-op; an executed one is refused.
    async fn release(&self, quote_id: QuoteId) -> Result<(), LiquidityError>;

    /// Honours a locked quote for a deposit that arrived: the reserved
    /// inventory leaves. Idempotent.
    async fn execute(
        &self,
        quote_id: QuoteId,
        deposit_amount: Amount,
    ) -> Result<(), LiquidityError>;

    async fn get_quote(&self, quote_id: QuoteId) -> Result<Quote, LiquidityError>;

    /// Stops quoting and locking until [`LiquidityApi::resume`].
    fn halt(&self, reason: &str);
    fn resume(&self);
    fn trading_state(&self) -> TradingState;
}
