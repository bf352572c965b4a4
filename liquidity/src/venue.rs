//! The venue adapter boundary: what a venue (an exchange, a market maker, a
//! simulated venue) gives the engine — order book snapshots per market and
//! its health. Wire formats (Kraken, Coinbase websockets) live behind it.

use std::fmt;
use std::sync::Arc;

use proto::{Pair, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One price level of a book: `size` units of the market's base asset at
/// `price` units of its quote asset each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub price: Decimal,
    pub size: Decimal,
}

impl Level {
    pub fn new(price: Decimal, size: Decimal) -> Self {
        Level { price, size }
    }
}

/// A snapshot of one venue's book for one market.
///
/// `bids` are best (highest) first, `asks` best (lowest) first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub venue: String,
    /// The market, e.g. `BTC/USD`: prices are USD per BTC, sizes in BTC.
    pub market: Pair,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// Increases by one with every snapshot a venue publishes for a market.
    pub sequence: u64,
    /// When the snapshot was taken (by the venue's clock or on receipt).
    pub received_at: Timestamp,
}

impl Book {
    pub fn best_bid(&self) -> Option<Decimal> {
        self.bids.first().map(|l| l.price)
    }

    pub fn best_ask(&self) -> Option<Decimal> {
        self.asks.first().map(|l| l.price)
    }

    /// True when the best bid is at or above the best ask.
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some(b), Some(a)) if b >= a)
    }
}

/// Whether a venue's connection is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VenueHealth {
    Up,
    Down { reason: String },
}

/// The latest book of one market at one venue; `None` until the first
/// snapshot arrives.
pub type BookReceiver = watch::Receiver<Option<Arc<Book>>>;

/// A venue the engine takes prices from.
pub trait VenueFeed: Send + Sync + fmt::Debug {
    /// A short stable name, e.g. `kraken` or `sim-a`.
    fn name(&self) -> &str;

    /// The markets the venue offers.
    fn markets(&self) -> Vec<Pair>;

    /// Subscribes to the books of a market; `None` if the venue does not
    /// offer it. A venue that goes down stops sending, so its last book ages
    /// and the aggregator excludes it once it is stale.
    fn subscribe(&self, market: &Pair) -> Option<BookReceiver>;

    fn health(&self) -> VenueHealth;
}
