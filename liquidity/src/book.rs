//! The aggregated book of one market: the levels of every venue's fresh
//! book merged by price. A venue's book older than `stale_after` (or crossed
//! in itself) is left out.

use std::collections::BTreeMap;

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
    let mut bids: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    let mut asks: BTreeMap<Decimal, Decimal> = BTreeMap::new();
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
                let sane = |v: Decimal| v > Decimal::ZERO && v <= MAX_LEVEL_VALUE;
                if sane(l.price) && sane(l.size) {
                    let total = side.entry(l.price).or_default();
                    *total = total.saturating_add(l.size).min(MAX_LEVEL_VALUE);
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
    let into_levels = |(price, size)| Level { price, size };
    Ok(AggregatedBook {
        market: market.clone(),
        bids: bids.into_iter().rev().map(into_levels).collect(),
        asks: asks.into_iter().map(into_levels).collect(),
        venues,
    })
}
