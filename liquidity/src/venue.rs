//! The venue adapter boundary: what a venue (an exchange, a market maker, a
//! simulated venue) gives the engine — order book snapshots per market and
//! its health. Wire formats live behind it: [`kraken`] (WebSocket v2 `book`)
//! and [`coinbase`] (Advanced Trade `level2`), both driven by the one
//! connection loop in [`ws`] (reconnect with backoff, idle timeout, health).

pub mod coinbase;
pub mod crc32;
pub mod kraken;
pub mod kraken_rest;
pub mod local_book;
pub mod orders;
pub mod ws;

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

/// What the desk sees of one venue's connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueStatus {
    pub venue: String,
    /// Whether a connection is open and subscribed right now.
    pub connected: bool,
    /// When the last book message arrived (the engine's clock).
    pub last_update_at: Option<Timestamp>,
    /// The venue's sequence number of the last message (Coinbase
    /// `sequence_num`), or the count of book messages applied where the
    /// venue has none (Kraken).
    pub last_sequence: Option<u64>,
    /// Connections lost and opened again since start.
    pub reconnects: u64,
    /// Books dropped and subscribed again (checksum mismatch, sequence gap).
    pub resyncs: u64,
    /// Time of receipt minus the venue's own timestamp, for the last message
    /// that carried one.
    pub latency_ms: Option<i64>,
    /// The last thing that went wrong, for the desk.
    pub last_error: Option<String>,
}

impl VenueStatus {
    /// How long ago the last book message arrived, in milliseconds.
    pub fn age_ms(&self, now: Timestamp) -> Option<i64> {
        self.last_update_at
            .map(|t| now.signed_duration_since(t).num_milliseconds())
    }
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

    /// The connection's details for the desk. Venues without a connection
    /// of their own report only whether they are up.
    fn status(&self) -> VenueStatus {
        VenueStatus {
            venue: self.name().to_owned(),
            connected: self.health() == VenueHealth::Up,
            ..VenueStatus::default()
        }
    }
}
