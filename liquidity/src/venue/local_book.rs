//! A venue's book as an adapter keeps it between messages: levels by price,
//! updated in place, truncated to the subscribed depth. No I/O.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::venue::Level;

/// Which side of a book a level is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Bid,
    Ask,
}

/// One market's book at one venue, as built from its messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalBook {
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl LocalBook {
    pub fn new() -> Self {
        Self::default()
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Decimal, Decimal> {
        match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        }
    }

    /// Sets the size at a price; a zero size removes the level. The price
    /// and size keep the representation of the latest message (the scale
    /// matters to checksums).
    pub fn set(&mut self, side: Side, price: Decimal, size: Decimal) {
        let levels = self.side_mut(side);
        levels.remove(&price);
        if !size.is_zero() {
            levels.insert(price, size);
        }
    }

    /// Drops levels beyond the best `depth` of each side.
    pub fn truncate(&mut self, depth: usize) {
        while self.bids.len() > depth {
            self.bids.pop_first();
        }
        while self.asks.len() > depth {
            self.asks.pop_last();
        }
    }

    /// Best (highest) bids first, at most `n`.
    pub fn bids(&self, n: usize) -> impl Iterator<Item = Level> + '_ {
        self.bids
            .iter()
            .rev()
            .take(n)
            .map(|(&price, &size)| Level { price, size })
    }

    /// Best (lowest) asks first, at most `n`.
    pub fn asks(&self, n: usize) -> impl Iterator<Item = Level> + '_ {
        self.asks
            .iter()
            .take(n)
            .map(|(&price, &size)| Level { price, size })
    }

    pub fn len(&self, side: Side) -> usize {
        match side {
            Side::Bid => self.bids.len(),
            Side::Ask => self.asks.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn set_remove_truncate_keep_best_levels() {
        let mut b = LocalBook::new();
        for p in ["100", "101", "99"] {
            b.set(Side::Bid, d(p), d("1"));
        }
        for p in ["102", "104", "103"] {
            b.set(Side::Ask, d(p), d("2"));
        }
        b.set(Side::Bid, d("101"), d("0"));
        b.truncate(1);
        assert_eq!(
            b.bids(5).collect::<Vec<_>>(),
            vec![Level::new(d("100"), d("1"))]
        );
        assert_eq!(
            b.asks(5).collect::<Vec<_>>(),
            vec![Level::new(d("102"), d("2"))]
        );
        // The latest representation wins.
        b.set(Side::Ask, d("102.0"), d("2.50"));
        let top = b.asks(1).next().unwrap();
        assert_eq!(
            (top.price.to_string(), top.size.to_string()),
            ("102.0".into(), "2.50".into())
        );
    }
}
