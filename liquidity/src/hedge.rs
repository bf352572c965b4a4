//! Hedging, the pure part: which venue orders an executed swap calls for,
//! their client order ids, how a venue's answer moves an order, and the
//! hedge position and P&L per asset. No I/O and no clock: the
//! [`crate::hedger::Hedger`] persists and sends, and passes times in.
//!
//! An executed swap bought the incoming asset (the deposit) and sold the
//! outgoing one (the payout). Its hedge is up to two orders on the
//! `asset/usd` markets: sell the incoming asset, buy back the outgoing one
//! (none for the `usd` side itself, nor for an asset without a configured
//! market). Each order's client order id is derived from the quote and the
//! leg, so every retry, and a restart, sends the same id and a venue never
//! fills one hedge twice.

use std::collections::BTreeMap;

use proto::{Amount, AssetId, Pair, QuoteId, SwapId, Timestamp};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::PriceLock;
use crate::config::LiquidityConfig;

/// Decimal places hedge quantities are cut to (towards zero): what venues
/// take for the assets quoted here.
pub const QTY_DP: u32 = 8;

/// Buy or sell the market's base asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HedgeSide {
    Buy,
    Sell,
}

impl HedgeSide {
    pub fn as_str(self) -> &'static str {
        match self {
            HedgeSide::Buy => "buy",
            HedgeSide::Sell => "sell",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buy" => Some(HedgeSide::Buy),
            "sell" => Some(HedgeSide::Sell),
            _ => None,
        }
    }
}

/// Where a hedge order stands. `Pending` is the only state that is sent
/// (again); the others are final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HedgeStatus {
    /// Persisted; not yet answered by the venue (never sent, or sent and the
    /// answer lost: a retry with the same client order id is safe).
    Pending,
    Filled,
    /// The venue filled part and closed the order; the rest is unhedged
    /// exposure for the desk.
    PartiallyFilled,
    /// The venue refused it (no fill).
    Rejected {
        reason: String,
    },
    /// Every attempt failed to get an answer; the order may or may not
    /// exist at the venue (look it up by client order id).
    GaveUp {
        reason: String,
    },
}

impl HedgeStatus {
    pub fn is_final(&self) -> bool {
        !matches!(self, HedgeStatus::Pending)
    }

    /// The name stored and shown to the desk.
    pub fn name(&self) -> &'static str {
        match self {
            HedgeStatus::Pending => "pending",
            HedgeStatus::Filled => "filled",
            HedgeStatus::PartiallyFilled => "partially_filled",
            HedgeStatus::Rejected { .. } => "rejected",
            HedgeStatus::GaveUp { .. } => "gave_up",
        }
    }
}

/// One hedge order and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgeOrder {
    /// The idempotency key at the venue (a UUID, as Kraken's `cl_ord_id`
    /// takes), derived from `quote_id` and `side`.
    pub client_order_id: String,
    pub swap_id: SwapId,
    pub quote_id: QuoteId,
    pub venue: String,
    /// `asset/usd`.
    pub market: Pair,
    pub side: HedgeSide,
    /// Base-asset quantity asked.
    pub qty: Decimal,
    #[serde(flatten)]
    pub status: HedgeStatus,
    pub filled_qty: Decimal,
    /// Volume-weighted price of the fill, in `usd` per unit.
    pub avg_price: Option<Decimal>,
    pub venue_order_id: Option<String>,
    /// Sends so far (each with the same client order id).
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A venue's answer to an order (a fill report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueFill {
    pub venue_order_id: String,
    pub filled_qty: Decimal,
    pub avg_price: Option<Decimal>,
    /// Why nothing (or not everything) filled, when the venue says.
    pub reason: Option<String>,
}

/// The client order id of one leg of the hedge of `quote_id`: a UUID (v5)
/// of the quote id and the side, the same on every call.
pub fn client_order_id(quote_id: &QuoteId, side: HedgeSide) -> String {
    let name = format!("hedge:{}:{}", quote_id.0, side.as_str());
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// Why an executed swap gets no (or fewer) hedge orders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("asset {0} is not configured")]
    UnknownAsset(AssetId),
    #[error("the amount of {asset} does not convert to a decimal: {reason}")]
    Amount { asset: AssetId, reason: String },
}

/// The hedge orders of an executed lock whose deposit was `deposit`
/// (base units of `quote.from`), to send to `venue`: sell the deposit on
/// `from/usd`, buy the payout on `to/usd`, for each such market configured.
/// Quantities are cut to [`QTY_DP`] places; a leg cut to zero is left out.
pub fn plan(
    cfg: &LiquidityConfig,
    lock: &PriceLock,
    deposit: Amount,
    venue: &str,
    now: Timestamp,
) -> Result<Vec<HedgeOrder>, PlanError> {
    let q = &lock.quote;
    let whole = |asset: &AssetId, a: Amount| -> Result<Decimal, PlanError> {
        let spec = cfg
            .assets
            .get(asset)
            .map_err(|_| PlanError::UnknownAsset(asset.clone()))?;
        a.to_decimal(spec.decimals)
            .map_err(|e| PlanError::Amount {
                asset: asset.clone(),
                reason: e.to_string(),
            })
            .map(|d| d.round_dp_with_strategy(QTY_DP, RoundingStrategy::ToZero))
    };
    let legs = [
        (q.from.clone(), HedgeSide::Sell, whole(&q.from, deposit)?),
        (
            q.to.clone(),
            HedgeSide::Buy,
            whole(&q.to, q.amount_out_base_units)?,
        ),
    ];
    let mut out = Vec::new();
    for (asset, side, qty) in legs {
        if asset == cfg.usd || qty.is_zero() {
            continue;
        }
        let Some(market) = cfg
            .markets
            .iter()
            .find(|m| m.base == asset && m.quote == cfg.usd)
        else {
            continue;
        };
        out.push(HedgeOrder {
            client_order_id: client_order_id(&lock.quote_id, side),
            swap_id: lock.swap_id,
            quote_id: lock.quote_id,
            venue: venue.to_owned(),
            market: market.clone(),
            side,
            qty: qty.normalize(),
            status: HedgeStatus::Pending,
            filled_qty: Decimal::ZERO,
            avg_price: None,
            venue_order_id: None,
            attempts: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
        });
    }
    Ok(out)
}

/// What a send of an order came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The venue answered with a fill report (full, partial or none).
    Answered(VenueFill),
    /// The venue refused the order itself (bad request, no liquidity…):
    /// final.
    Refused(String),
    /// No answer (down, timeout, 5xx): may be retried with the same id.
    NoAnswer(String),
}

/// The order after one send (`attempts` counted), given whether another
/// attempt is allowed after a `NoAnswer`.
pub fn after_attempt(
    order: &HedgeOrder,
    attempt: Attempt,
    may_retry: bool,
    now: Timestamp,
) -> HedgeOrder {
    let mut o = order.clone();
    o.attempts += 1;
    o.updated_at = now;
    match attempt {
        Attempt::Answered(fill) => {
            o.venue_order_id = Some(fill.venue_order_id);
            o.filled_qty = fill.filled_qty;
            o.avg_price = fill.avg_price;
            o.status = if fill.filled_qty.is_zero() {
                HedgeStatus::Rejected {
                    reason: fill.reason.unwrap_or_else(|| "nothing filled".into()),
                }
            } else if fill.filled_qty < o.qty {
                HedgeStatus::PartiallyFilled
            } else {
                HedgeStatus::Filled
            };
            o.last_error = None;
        }
        Attempt::Refused(reason) => {
            o.status = HedgeStatus::Rejected {
                reason: reason.clone(),
            };
            o.last_error = Some(reason);
        }
        Attempt::NoAnswer(reason) => {
            if !may_retry {
                o.status = HedgeStatus::GaveUp {
                    reason: reason.clone(),
                };
            }
            o.last_error = Some(reason);
        }
    }
    o
}

/// The hedge book of one asset, in `usd`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetPnl {
    /// Units held from hedge fills (negative: short).
    pub position: Decimal,
    /// Average price of the open position.
    pub avg_cost: Decimal,
    /// Closed against the average cost.
    pub realized: Decimal,
    /// The open position at `mark`; zero without a mark.
    pub unrealized: Decimal,
    /// The price the position was marked at, if one was given.
    pub mark: Option<Decimal>,
}

/// Position and realized/unrealized P&L per asset from the hedge fills of
/// `orders` (in order), average-cost method, marked at `marks` (`usd` per
/// unit, e.g. the mid of the aggregated book). Pure.
pub fn pnl(
    orders: &[HedgeOrder],
    marks: &BTreeMap<AssetId, Decimal>,
) -> BTreeMap<AssetId, AssetPnl> {
    let mut book: BTreeMap<AssetId, AssetPnl> = BTreeMap::new();
    for o in orders {
        let Some(price) = o.avg_price else {
            continue;
        };
        if o.filled_qty.is_zero() {
            continue;
        }
        let p = book.entry(o.market.base.clone()).or_default();
        let signed = match o.side {
            HedgeSide::Buy => o.filled_qty,
            HedgeSide::Sell => -o.filled_qty,
        };
        if p.position.is_zero() || p.position.is_sign_positive() == signed.is_sign_positive() {
            // Opening or adding: a new average cost.
            let total = p.position + signed;
            p.avg_cost = (p.position.abs() * p.avg_cost + signed.abs() * price) / total.abs();
            p.position = total;
        } else {
            // Closing (and perhaps reversing).
            let closed = signed.abs().min(p.position.abs());
            let per_unit = if p.position.is_sign_positive() {
                price - p.avg_cost
            } else {
                p.avg_cost - price
            };
            p.realized += closed * per_unit;
            p.position += signed;
            if p.position.is_zero() {
                p.avg_cost = Decimal::ZERO;
            } else if p.position.is_sign_positive() == signed.is_sign_positive() {
                // Reversed: the rest opens at this price.
                p.avg_cost = price;
            }
        }
    }
    for (asset, p) in book.iter_mut() {
        p.mark = marks.get(asset).copied();
        p.unrealized = match p.mark {
            Some(m) if !p.position.is_zero() => p.position * (m - p.avg_cost),
            _ => Decimal::ZERO,
        };
    }
    book
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn fill(asset: &str, side: HedgeSide, qty: Decimal, price: Decimal) -> HedgeOrder {
        let market = Pair::new(AssetId::new(asset).unwrap(), AssetId::new("USD").unwrap()).unwrap();
        HedgeOrder {
            client_order_id: "x".into(),
            swap_id: SwapId(Uuid::nil()),
            quote_id: QuoteId(Uuid::nil()),
            venue: "sim".into(),
            market,
            side,
            qty,
            status: HedgeStatus::Filled,
            filled_qty: qty,
            avg_price: Some(price),
            venue_order_id: None,
            attempts: 1,
            last_error: None,
            created_at: t(0),
            updated_at: t(0),
        }
    }

    #[test]
    fn client_order_ids_are_stable_per_quote_and_side() {
        let q = QuoteId(Uuid::from_u128(7));
        let a = client_order_id(&q, HedgeSide::Buy);
        assert_eq!(a, client_order_id(&q, HedgeSide::Buy));
        assert_ne!(a, client_order_id(&q, HedgeSide::Sell));
        assert_ne!(
            a,
            client_order_id(&QuoteId(Uuid::from_u128(8)), HedgeSide::Buy)
        );
        assert!(Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn average_cost_pnl_with_partial_close_and_reversal() {
        use HedgeSide::*;
        let orders = vec![
            fill("BTC", Buy, dec!(1), dec!(100)),
            fill("BTC", Buy, dec!(1), dec!(200)),    // avg 150
            fill("BTC", Sell, dec!(0.5), dec!(180)), // +15
            fill("BTC", Sell, dec!(2), dec!(160)),   // closes 1.5 at +10 each, short 0.5 at 160
            fill("ETH", Sell, dec!(3), dec!(10)),
            fill("ETH", Buy, dec!(3), dec!(8)), // +6, flat
        ];
        let marks = BTreeMap::from([(AssetId::new("BTC").unwrap(), dec!(150))]);
        let book = pnl(&orders, &marks);
        let btc = &book[&AssetId::new("BTC").unwrap()];
        assert_eq!(btc.position, dec!(-0.5));
        assert_eq!(btc.avg_cost, dec!(160));
        assert_eq!(btc.realized, dec!(30));
        assert_eq!(btc.unrealized, dec!(5)); // short 0.5 from 160, marked 150
        let eth = &book[&AssetId::new("ETH").unwrap()];
        assert_eq!(
            (eth.position, eth.realized, eth.unrealized, eth.mark),
            (dec!(0), dec!(6), dec!(0), None)
        );
    }

    #[test]
    fn unfilled_orders_move_nothing() {
        let mut o = fill("BTC", HedgeSide::Buy, dec!(1), dec!(100));
        o.filled_qty = Decimal::ZERO;
        o.avg_price = None;
        assert!(pnl(&[o], &BTreeMap::new()).is_empty());
    }

    #[test]
    fn attempts_move_an_order_to_its_final_state() {
        let o = HedgeOrder {
            status: HedgeStatus::Pending,
            filled_qty: Decimal::ZERO,
            avg_price: None,
            attempts: 0,
            ..fill("BTC", HedgeSide::Buy, dec!(2), dec!(1))
        };
        let answered = |qty: Decimal| {
            Attempt::Answered(VenueFill {
                venue_order_id: "V1".into(),
                filled_qty: qty,
                avg_price: (!qty.is_zero()).then_some(dec!(100)),
                reason: qty.is_zero().then(|| "no liquidity".into()),
            })
        };
        let cases = [
            (answered(dec!(2)), true, HedgeStatus::Filled),
            (answered(dec!(1.5)), true, HedgeStatus::PartiallyFilled),
            (
                answered(dec!(0)),
                true,
                HedgeStatus::Rejected {
                    reason: "no liquidity".into(),
                },
            ),
            (
                Attempt::Refused("bad symbol".into()),
                true,
                HedgeStatus::Rejected {
                    reason: "bad symbol".into(),
                },
            ),
            (Attempt::NoAnswer("503".into()), true, HedgeStatus::Pending),
            (
                Attempt::NoAnswer("503".into()),
                false,
                HedgeStatus::GaveUp {
                    reason: "503".into(),
                },
            ),
        ];
        for (attempt, may_retry, want) in cases {
            let next = after_attempt(&o, attempt.clone(), may_retry, t(5));
            assert_eq!(next.status, want, "{attempt:?}");
            assert_eq!(next.attempts, 1);
            assert_eq!(next.client_order_id, o.client_order_id);
        }
    }
}
