//! Pure pricing: a request for an exact size, the aggregated books and the
//! house's exposure in; the amounts, in base units, out.
//!
//! A pair is priced on its direct market when one is configured, otherwise
//! through the `usd` legs (BTC→ETH sells BTC on BTC/USD bids, then buys ETH
//! with the USD on ETH/USD asks). Each leg walks the book for the exact size
//! (volume-weighted) and never extrapolates past the depth it sees. Then come
//! the venue fee on every leg, the spread, the inventory skew, and the
//! payout's network fee. The amount the house pays is rounded down, the
//! amount it asks for is rounded up.

use std::collections::BTreeMap;

use proto::api::{AmountSide, IndicativePrices, LadderRung};
use proto::{Amount, AssetId, AssetSpec, Pair, Price, Timestamp};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::book::AggregatedBook;
use crate::config::{AssetPolicy, LiquidityConfig};
use crate::error::LiquidityError;
use crate::venue::Level;

/// Aggregated books by market.
pub type Books = BTreeMap<Pair, AggregatedBook>;

/// Signed exposure per asset in whole units (positive: the house holds
/// more than it wants to).
pub type Exposure = BTreeMap<AssetId, Decimal>;

const BPS: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

/// Which way a leg trades its market.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegSide {
    /// Sell the market's base asset into its bids, receiving its quote asset.
    SellBase,
    /// Buy the market's base asset from its asks, paying its quote asset.
    BuyBase,
}

/// One trade of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub market: Pair,
    pub side: LegSide,
}

impl Leg {
    fn input_asset(&self) -> &AssetId {
        match self.side {
            LegSide::SellBase => &self.market.base,
            LegSide::BuyBase => &self.market.quote,
        }
    }

    fn output_asset(&self) -> &AssetId {
        match self.side {
            LegSide::SellBase => &self.market.quote,
            LegSide::BuyBase => &self.market.base,
        }
    }
}

/// The legs that turn `from` into `to`: the direct market if configured,
/// otherwise through `usd`.
pub fn route(
    cfg: &LiquidityConfig,
    from: &AssetId,
    to: &AssetId,
) -> Result<Vec<Leg>, LiquidityError> {
    let has = |base: &AssetId, quote: &AssetId| {
        cfg.markets
            .iter()
            .any(|m| m.base == *base && m.quote == *quote)
    };
    let pair = |base: &AssetId, quote: &AssetId| Pair {
        base: base.clone(),
        quote: quote.clone(),
    };
    if from == to {
        return Err(LiquidityError::UnsupportedPair {
            from: from.to_string(),
            to: to.to_string(),
            reason: "both sides are the same asset".into(),
        });
    }
    if has(from, to) {
        return Ok(vec![Leg {
            market: pair(from, to),
            side: LegSide::SellBase,
        }]);
    }
    if has(to, from) {
        return Ok(vec![Leg {
            market: pair(to, from),
            side: LegSide::BuyBase,
        }]);
    }
    let usd = &cfg.usd;
    if has(from, usd) && has(to, usd) {
        return Ok(vec![
            Leg {
                market: pair(from, usd),
                side: LegSide::SellBase,
            },
            Leg {
                market: pair(to, usd),
                side: LegSide::BuyBase,
            },
        ]);
    }
    Err(LiquidityError::UnsupportedPair {
        from: from.to_string(),
        to: to.to_string(),
        reason: format!(
            "no market {from}/{to}, and no {from}/{usd} and {to}/{usd} markets to cross"
        ),
    })
}

/// The markets a pair needs books for.
pub fn markets_for(
    cfg: &LiquidityConfig,
    from: &AssetId,
    to: &AssetId,
) -> Result<Vec<Pair>, LiquidityError> {
    Ok(route(cfg, from, to)?
        .into_iter()
        .map(|l| l.market)
        .collect())
}

/// What a walk had to cover, when it could not.
struct Short {
    wanted: Decimal,
    available: Decimal,
}

/// Walks `levels` for `base` units of the base asset; returns the quote
/// asset exchanged.
fn walk_by_base(levels: &[Level], base: Decimal) -> Result<Decimal, Short> {
    let mut left = base;
    let mut quote = Decimal::ZERO;
    let mut depth = Decimal::ZERO;
    for l in levels {
        if left.is_zero() {
            break;
        }
        let take = left.min(l.size);
        quote += take * l.price;
        left -= take;
        depth += l.size;
    }
    if left > Decimal::ZERO {
        return Err(Short {
            wanted: base,
            available: depth,
        });
    }
    Ok(quote)
}

/// Walks `levels` for `quote` units of the quote asset; returns the base
/// asset exchanged.
fn walk_by_quote(levels: &[Level], quote: Decimal) -> Result<Decimal, Short> {
    let mut left = quote;
    let mut base = Decimal::ZERO;
    let mut depth = Decimal::ZERO;
    for l in levels {
        if left.is_zero() {
            break;
        }
        let level_quote = l.size * l.price;
        depth += level_quote;
        if level_quote <= left {
            base += l.size;
            left -= level_quote;
        } else {
            base += left / l.price;
            left = Decimal::ZERO;
        }
    }
    if left > Decimal::ZERO {
        return Err(Short {
            wanted: quote,
            available: depth,
        });
    }
    Ok(base)
}

fn book<'a>(books: &'a Books, market: &Pair) -> Result<&'a AggregatedBook, LiquidityError> {
    books
        .get(market)
        .ok_or_else(|| LiquidityError::MarketUnavailable {
            market: market.clone(),
            reason: "no fresh book".into(),
        })
}

fn short(leg: &Leg, by_base: bool, s: Short) -> LiquidityError {
    LiquidityError::InsufficientLiquidity {
        market: leg.market.clone(),
        side: match leg.side {
            LegSide::SellBase => "bids",
            LegSide::BuyBase => "asks",
        },
        unit: if by_base {
            leg.market.base.clone()
        } else {
            leg.market.quote.clone()
        },
        wanted: s.wanted,
        available: s.available,
    }
}

/// The output of a leg for an exact input (before fees).
fn forward(books: &Books, leg: &Leg, input: Decimal) -> Result<Decimal, LiquidityError> {
    let b = book(books, &leg.market)?;
    match leg.side {
        LegSide::SellBase => walk_by_base(&b.bids, input).map_err(|s| short(leg, true, s)),
        LegSide::BuyBase => walk_by_quote(&b.asks, input).map_err(|s| short(leg, false, s)),
    }
}

/// The input a leg needs for an exact output (before fees).
fn reverse(books: &Books, leg: &Leg, output: Decimal) -> Result<Decimal, LiquidityError> {
    let b = book(books, &leg.market)?;
    match leg.side {
        LegSide::SellBase => walk_by_quote(&b.bids, output).map_err(|s| short(leg, false, s)),
        LegSide::BuyBase => walk_by_base(&b.asks, output).map_err(|s| short(leg, true, s)),
    }
}

/// A request to price an exact size.
#[derive(Debug, Clone, Copy)]
pub struct PriceRequest<'a> {
    pub from: &'a AssetSpec,
    pub to: &'a AssetSpec,
    /// In `from` when `side` is `From`, in `to` when it is `To`.
    pub amount: Amount,
    pub side: AmountSide,
}

/// A priced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub from: AssetId,
    pub to: AssetId,
    /// What the client sends, in base units of `from` (rounded up).
    pub amount_in: Amount,
    /// What the client receives, in base units of `to` (rounded down),
    /// network fee already taken out.
    pub amount_out: Amount,
    /// The exact amounts before rounding to base units, in whole units.
    pub amount_in_exact: Decimal,
    pub amount_out_exact: Decimal,
    /// The payout's network fee, in base units of `to`.
    pub network_fee: Amount,
    /// `amount_out / amount_in` in whole units, all costs included.
    pub price: Price,
    /// Whole units of `to` per whole unit of `from` after fees, spread and
    /// skew but before the network fee: what gets worse with size.
    pub rate: Decimal,
    /// The trade's value in USD, when a USD market prices it.
    pub notional_usd: Option<Decimal>,
    /// The inventory skew applied, in basis points (negative improves the
    /// price).
    pub skew_bps: Decimal,
    /// The partner's fee taken out of the amount out, in base units of `to`
    /// (rounded down); `None` without a partner fee.
    pub partner_fee: Option<Amount>,
}

fn policy<'a>(
    cfg: &'a LiquidityConfig,
    asset: &AssetId,
) -> Result<&'a AssetPolicy, LiquidityError> {
    cfg.policies
        .get(asset)
        .ok_or_else(|| LiquidityError::UnknownAsset(asset.to_string()))
}

fn check_limits(asset: &AssetId, p: &AssetPolicy, amount: Decimal) -> Result<(), LiquidityError> {
    if amount < p.min_amount {
        return Err(LiquidityError::AmountTooSmall {
            asset: asset.clone(),
            amount: amount.normalize().to_string(),
            min: p.min_amount.normalize(),
        });
    }
    if amount > p.max_amount {
        return Err(LiquidityError::AmountTooLarge {
            asset: asset.clone(),
            amount: amount.normalize().to_string(),
            max: p.max_amount.normalize(),
        });
    }
    Ok(())
}

/// An amount as a decimal; one too large for a decimal is above any limit.
fn to_decimal(
    amount: Amount,
    spec: &AssetSpec,
    limits: Option<&AssetPolicy>,
) -> Result<Decimal, LiquidityError> {
    amount.to_decimal(spec.decimals).map_err(|e| match limits {
        Some(p) => LiquidityError::AmountTooLarge {
            asset: spec.id.clone(),
            amount: amount.to_decimal_string(spec.decimals),
            max: p.max_amount.normalize(),
        },
        None => LiquidityError::InvalidAmount {
            asset: spec.id.to_string(),
            input: amount.to_decimal_string(spec.decimals),
            reason: e.to_string(),
        },
    })
}

/// The inventory skew of a swap that brings `from` in and sends `to` out,
/// in basis points, clamped to `max_skew_bps`.
pub fn skew_bps(
    cfg: &LiquidityConfig,
    exposure: &Exposure,
    from: &AssetId,
    to: &AssetId,
) -> Decimal {
    let term = |a: &AssetId| {
        let rate = cfg
            .policies
            .get(a)
            .map(|p| p.skew_bps_per_unit)
            .unwrap_or_default();
        rate * exposure.get(a).copied().unwrap_or_default()
    };
    let raw = term(from) - term(to);
    raw.clamp(-cfg.max_skew_bps, cfg.max_skew_bps)
}

fn bounded(value: Decimal, asset: &AssetId) -> Result<Decimal, LiquidityError> {
    // Guard arithmetic far beyond any configured limit.
    if value.abs() > Decimal::from(1_000_000_000_000_000u64) {
        return Err(LiquidityError::InvalidAmount {
            asset: asset.to_string(),
            input: value.to_string(),
            reason: "amount is too large to price".into(),
        });
    }
    Ok(value)
}

/// Prices a request on the given books. Pure.
pub fn price(
    cfg: &LiquidityConfig,
    books: &Books,
    exposure: &Exposure,
    req: &PriceRequest<'_>,
) -> Result<Priced, LiquidityError> {
    price_with_partner_fee(cfg, books, exposure, req, Decimal::ZERO)
}

/// Prices a request for a partner app whose fee, `partner_fee_bps` of the
/// amount out before the house's spread and the network fee, is added to
/// the client's cost (the client receives less, or sends more). Pure.
pub fn price_with_partner_fee(
    cfg: &LiquidityConfig,
    books: &Books,
    exposure: &Exposure,
    req: &PriceRequest<'_>,
    partner_fee_bps: Decimal,
) -> Result<Priced, LiquidityError> {
    let (from, to) = (&req.from.id, &req.to.id);
    if partner_fee_bps.is_sign_negative() || partner_fee_bps >= BPS {
        return Err(LiquidityError::BadRequest(format!(
            "partner fee {partner_fee_bps} bps is out of range"
        )));
    }
    let partner_k = partner_fee_bps / BPS;
    let legs = route(cfg, from, to)?;
    let from_policy = policy(cfg, from)?;
    let to_policy = policy(cfg, to)?;
    let fee_k = Decimal::ONE - cfg.venue_fee_bps / BPS;
    let skew = skew_bps(cfg, exposure, from, to);
    let house_k = Decimal::ONE - (cfg.spread_bps + skew + partner_fee_bps) / BPS;
    if fee_k <= Decimal::ZERO || house_k <= Decimal::ZERO {
        return Err(LiquidityError::Internal(
            "fees, spread and skew take the whole amount; check the configuration".into(),
        ));
    }
    let network_fee = to_decimal(to_policy.network_fee, req.to, None)?;
    let mut notional_usd = None;
    let note_usd = |asset: &AssetId, value: Decimal, n: &mut Option<Decimal>| {
        if *asset == cfg.usd && n.is_none() {
            *n = Some(value);
        }
    };

    let partner_exact;
    let (in_exact, out_exact, rate) = match req.side {
        AmountSide::From => {
            let in_exact = bounded(to_decimal(req.amount, req.from, Some(from_policy))?, from)?;
            check_limits(from, from_policy, in_exact)?;
            if in_exact.is_zero() {
                return Err(zero_amount(req.from));
            }
            let mut x = in_exact;
            for leg in &legs {
                x = forward(books, leg, x)? * fee_k;
                note_usd(leg.output_asset(), x, &mut notional_usd);
            }
            let gross = x * house_k;
            partner_exact = x * partner_k;
            let out = gross - network_fee;
            if out <= Decimal::ZERO {
                return Err(LiquidityError::BelowNetworkFee {
                    asset: to.clone(),
                    amount: gross.round_dp(req.to.decimals as u32).normalize(),
                    network_fee: network_fee.normalize(),
                });
            }
            (in_exact, out, gross / in_exact)
        }
        AmountSide::To => {
            let out_exact = bounded(to_decimal(req.amount, req.to, Some(to_policy))?, to)?;
            check_limits(to, to_policy, out_exact)?;
            if out_exact.is_zero() {
                return Err(zero_amount(req.to));
            }
            let gross = out_exact + network_fee;
            let mut x = gross / house_k;
            partner_exact = x * partner_k;
            for leg in legs.iter().rev() {
                x = reverse(books, leg, x / fee_k)?;
                note_usd(leg.input_asset(), x, &mut notional_usd);
            }
            (x, out_exact, gross / x)
        }
    };

    let amount_in = match req.side {
        AmountSide::From => req.amount,
        AmountSide::To => Amount::from_decimal_ceil(in_exact, req.from.decimals).map_err(|e| {
            LiquidityError::InvalidAmount {
                asset: from.to_string(),
                input: in_exact.to_string(),
                reason: e.to_string(),
            }
        })?,
    };
    let amount_out = match req.side {
        AmountSide::To => req.amount,
        AmountSide::From => {
            Amount::from_decimal_floor(out_exact, req.to.decimals).map_err(|e| {
                LiquidityError::InvalidAmount {
                    asset: to.to_string(),
                    input: out_exact.to_string(),
                    reason: e.to_string(),
                }
            })?
        }
    };
    // The side the client did not fix must be within its limits too.
    match req.side {
        AmountSide::From => check_limits(
            to,
            to_policy,
            to_decimal(amount_out, req.to, Some(to_policy))?,
        )?,
        AmountSide::To => check_limits(
            from,
            from_policy,
            to_decimal(amount_in, req.from, Some(from_policy))?,
        )?,
    }
    if notional_usd.is_none() {
        // A direct market with no USD leg: value it by a USD mid if known.
        notional_usd = [(from, in_exact), (to, out_exact)]
            .into_iter()
            .find_map(|(a, v)| {
                let m = Pair {
                    base: a.clone(),
                    quote: cfg.usd.clone(),
                };
                Some(books.get(&m)?.mid()? * v)
            });
    }
    if let Some(n) = notional_usd {
        if n > cfg.max_notional_usd {
            return Err(LiquidityError::NotionalTooLarge {
                notional_usd: n.round_dp(2).normalize(),
                max_usd: cfg.max_notional_usd.normalize(),
            });
        }
    }
    let price = all_in_price(amount_in, amount_out, req)?;
    Ok(Priced {
        from: from.clone(),
        to: to.clone(),
        amount_in,
        amount_out,
        amount_in_exact: in_exact,
        amount_out_exact: out_exact,
        network_fee: to_policy.network_fee,
        price,
        rate,
        notional_usd,
        skew_bps: skew,
        partner_fee: if partner_fee_bps.is_zero() {
            None
        } else {
            Some(
                Amount::from_decimal_floor(partner_exact, req.to.decimals).map_err(|e| {
                    LiquidityError::InvalidAmount {
                        asset: to.to_string(),
                        input: partner_exact.to_string(),
                        reason: e.to_string(),
                    }
                })?,
            )
        },
    })
}

fn zero_amount(spec: &AssetSpec) -> LiquidityError {
    LiquidityError::InvalidAmount {
        asset: spec.id.to_string(),
        input: "0".into(),
        reason: "the amount must be more than zero".into(),
    }
}

/// `amount_out / amount_in` in whole units, to 12 significant digits,
/// rounded toward zero.
fn all_in_price(
    amount_in: Amount,
    amount_out: Amount,
    req: &PriceRequest<'_>,
) -> Result<Price, LiquidityError> {
    let i = to_decimal(amount_in, req.from, None)?;
    let o = to_decimal(amount_out, req.to, None)?;
    if i.is_zero() {
        return Ok(Price(Decimal::ZERO));
    }
    let p = (o / i)
        .round_sf_with_strategy(12, RoundingStrategy::ToZero)
        .unwrap_or_default()
        .normalize();
    Ok(Price(p))
}

/// Indicative prices of `pair` (sell `pair.base` for `pair.quote`) for the
/// ladder sizes of the base asset. Sizes that cannot be priced are left
/// out; if none can, the first size's error is returned.
pub fn ladder(
    cfg: &LiquidityConfig,
    books: &Books,
    exposure: &Exposure,
    pair: &Pair,
    now: Timestamp,
) -> Result<IndicativePrices, LiquidityError> {
    let from = cfg
        .assets
        .get(&pair.base)
        .map_err(|_| LiquidityError::UnknownAsset(pair.base.to_string()))?;
    let to = cfg
        .assets
        .get(&pair.quote)
        .map_err(|_| LiquidityError::UnknownAsset(pair.quote.to_string()))?;
    let sizes = &policy(cfg, &from.id)?.ladder;
    let mut rungs = Vec::new();
    let mut first_error = None;
    for size in sizes {
        let amount = Amount::from_decimal_floor(*size, from.decimals).map_err(|e| {
            LiquidityError::InvalidAmount {
                asset: from.id.to_string(),
                input: size.to_string(),
                reason: e.to_string(),
            }
        })?;
        let req = PriceRequest {
            from,
            to,
            amount,
            side: AmountSide::From,
        };
        match price(cfg, books, exposure, &req) {
            Ok(p) => rungs.push(LadderRung {
                amount_in: p.amount_in.to_decimal_string(from.decimals),
                amount_out: p.amount_out.to_decimal_string(to.decimals),
                price: p.price,
            }),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (rungs.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(IndicativePrices {
            pair: pair.clone(),
            rungs,
            at: now,
        }),
    }
}
