//! The aggregated book of one market: the levels of every venue's fresh
//! book merged by price. A venue's book older than `stale_after` (or crossed
//! in itself) is left out.

use proto::{Pair, Timestamp};
use rust_decimal::Decimal;

use crate::error::LiquidityError;
use crate::venue::{Book, Level};

/// The largest price or size a level may have (whole units). Anything
/// beyond is a venue's bad data; keeping it out keeps the exact arithmetic
/// of pricing far from the limits of `Decimal`.
pub const MAX_LEVEL_VALUE: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

/// Levels of one market across venues: `bids` best (highest) first, `asks`
/// best (lowest) first, sizes summed where prices meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatedBook {
    pub market: Pair,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// The venues whose books went in.
    pub venues: Vec<String>,
}

impl AggregatedBook {
    /// The middle of the best bid and the best ask, if both sides exist.
    pub fn mid(&self) -> Option<Decimal> {
        let bid = self.bids.first()?.price;
        let ask = self.asks.first()?.price;
        Some((bid + ask) / Decimal::TWO)
    }
}

/// Whether a book was received within `stale_after` of `now`.
pub fn is_fresh(book: &Book, now: Timestamp, stale_after: chrono::Duration) -> bool {
    now.signed_duration_since(book.received_at) <= stale_after
}

/// Merges the fresh books of `market`. Fails with `MarketUnavailable` when
/// no venue has a fresh, uncrossed book with both sides.
pub fn aggregate<'a>(
    market: &Pair,
    books: impl IntoIterator<Item = &'a Book>,
    now: Timestamp,
    stale_after: chrono::Duration,
) -> Result<AggregatedBook, LiquidityError> {
    let mut bids: Vec<Level> = Vec::new();
    let mut asks: Vec<Level> = Vec::new();
    let mut venues = Vec::new();
    let mut seen = 0usize;
    let mut stale = Vec::new();
    for book in books {
        if book.market != *market {
            continue;
        }
        seen += 1;
        if !is_fresh(book, now, stale_after) {
            stale.push(format!(
                "{} last updated {}",
                book.venue,
                book.received_at.to_rfc3339()
            ));
            continue;
        }
        if book.is_crossed() {
            tracing::warn!(venue = %book.venue, %market, "crossed book left out");
            continue;
        }
        let mut used = false;
        for (side, levels) in [(&mut bids, &book.bids), (&mut asks, &book.asks)] {
            for l in levels.iter() {
                if in_range(l.price) && in_range(l.size) {
                    side.push(*l);
                    used = true;
                } else {
                    tracing::warn!(venue = %book.venue, %market, price = %l.price, size = %l.size, "level out of range left out");
                }
            }
        }
        if used {
            venues.push(book.venue.clone());
        }
    }
    if bids.is_empty() || asks.is_empty() {
        let reason = if seen == 0 {
            "no venue has sent a book".to_owned()
        } else if !stale.is_empty() {
            format!("every venue is stale ({})", stale.join("; "))
        } else {
            "no venue has a usable book with bids and asks".to_owned()
        };
        return Err(LiquidityError::MarketUnavailable {
            market: market.clone(),
            reason,
        });
    }
    // Each venue's side is already in order, so the stable sort merges a
    // few sorted runs in close to linear time.
    bids.sort_by(|a, b| price_cmp(b.price, a.price));
    asks.sort_by(|a, b| price_cmp(a.price, b.price));
    Ok(AggregatedBook {
        market: market.clone(),
        bids: merge_equal_prices(bids),
        asks: merge_equal_prices(asks),
        venues,
    })
}

/// Whether a price or size is positive and at most [`MAX_LEVEL_VALUE`],
/// from the decimal's parts (cheaper than comparing across scales).
fn in_range(v: Decimal) -> bool {
    let (m, scale) = (v.mantissa(), v.scale());
    // m / 10^scale <= 10^12  <=>  m <= 10^(12 + scale); past scale 16 that
    // bound exceeds any 96-bit mantissa.
    m > 0 && (scale > 16 || m <= POW10[12 + scale as usize])
}

/// 10^0 to 10^28.
const POW10: [i128; 29] = {
    let mut t = [1i128; 29];
    let mut i = 1;
    while i < 29 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Orders two prices; prices of one venue and market almost always share a
/// scale, and then the mantissas decide without rescaling.
fn price_cmp(a: Decimal, b: Decimal) -> std::cmp::Ordering {
    if a.scale() == b.scale() {
        a.mantissa().cmp(&b.mantissa())
    } else {
        a.cmp(&b)
    }
}

/// Sums the sizes of neighbouring levels at the same price (capped at
/// [`MAX_LEVEL_VALUE`]).
fn merge_equal_prices(sorted: Vec<Level>) -> Vec<Level> {
    let mut out: Vec<Level> = Vec::with_capacity(sorted.len());
    for l in sorted {
        match out.last_mut() {
            Some(last) if price_cmp(last.price, l.price).is_eq() => {
                last.size = last.size.saturating_add(l.size).min(MAX_LEVEL_VALUE);
            }
            _ => out.push(l),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_agrees_with_comparing_decimals() {
        let cases = [
            "0",
            "-1",
            "0.0000000000000000000000000001",
            "1",
            "1000000000000",
            "1000000000000.0000000000000001",
            "999999999999.9999999999999999",
            "1000000000001",
            "1e20",
            "79228162514264337593543950335",
            "0.5000000000000000000000000000",
            "1000000000000.000000000000000",
        ];
        for c in cases {
            let v: Decimal = c.parse().or_else(|_| Decimal::from_scientific(c)).unwrap();
            let slow = v > Decimal::ZERO && v <= MAX_LEVEL_VALUE;
            assert_eq!(in_range(v), slow, "{c}");
        }
        assert_eq!(MAX_LEVEL_VALUE, Decimal::from(1_000_000_000_000u64));
    }

    #[test]
    fn price_cmp_agrees_with_decimal_order() {
        let vals = [
            "-2", "-1.5", "0", "0.00", "1", "1.0", "1.01", "90000.01", "90000.1", "1e20",
        ];
        for a in vals {
            for b in vals {
                let p = |c: &str| c.parse().or_else(|_| Decimal::from_scientific(c)).unwrap();
                let (x, y): (Decimal, Decimal) = (p(a), p(b));
                assert_eq!(price_cmp(x, y), x.cmp(&y), "{a} vs {b}");
            }
        }
    }
}
