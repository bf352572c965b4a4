//! Shared test fixtures: assets, configuration, books and a venue feed the
//! test drives by hand.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use liquidity::venue::BookReceiver;
use liquidity::{Book, Level, LiquidityConfig, VenueFeed, VenueHealth};
use proto::{
    Address, AssetId, AssetKind, AssetSpec, Assets, BitcoinNetwork, EthereumNetwork, Network, Pair,
    Timestamp,
};
use rust_decimal::Decimal;
use tokio::sync::watch;

pub const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub fn id(s: &str) -> AssetId {
    AssetId::new(s).unwrap()
}

pub fn pair(s: &str) -> Pair {
    s.parse().unwrap()
}

pub fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

pub fn assets() -> Assets {
    let eth_net = Network::Ethereum(EthereumNetwork::Dev);
    Assets::new([
        AssetSpec {
            id: id("BTC"),
            network: Network::Bitcoin(BitcoinNetwork::Regtest),
            kind: AssetKind::Native,
            decimals: 8,
        },
        AssetSpec {
            id: id("ETH"),
            network: eth_net,
            kind: AssetKind::Native,
            decimals: 18,
        },
        AssetSpec {
            id: id("USDC"),
            network: eth_net,
            kind: AssetKind::Erc20 {
                contract: Address::parse(eth_net, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
                    .unwrap(),
            },
            decimals: 6,
        },
    ])
}

/// The development configuration, with network fees and skew set to zero
/// unless a test sets them.
pub fn config() -> LiquidityConfig {
    let mut cfg = LiquidityConfig::dev(assets(), KEY_HEX);
    for p in cfg.policies.values_mut() {
        p.network_fee = proto::Amount::ZERO;
        p.skew_bps_per_unit = Decimal::ZERO;
    }
    cfg
}

pub fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// A book of `levels` levels per side around `mid`: the best levels
/// `spread_bps` apart, each further level `step_bps` away, each level `size`
/// deep plus `size` more per level.
pub fn book(
    venue: &str,
    market: &str,
    mid: &str,
    levels: usize,
    size: &str,
    at: Timestamp,
) -> Book {
    let mid = d(mid);
    let size = d(size);
    let bps = Decimal::from(10_000);
    let mut bids = Vec::new();
    let mut asks = Vec::new();
    for i in 0..levels {
        let away = (Decimal::from(2) + Decimal::from(i as u64) * Decimal::from(5)) / bps;
        let s = size * Decimal::from(i as u64 + 1);
        bids.push(Level::new((mid * (Decimal::ONE - away)).round_dp(8), s));
        asks.push(Level::new((mid * (Decimal::ONE + away)).round_dp(8), s));
    }
    Book {
        venue: venue.into(),
        market: pair(market),
        bids,
        asks,
        sequence: 1,
        received_at: at,
    }
}

/// The three USD markets with deep books at `at`.
pub fn usd_books(venue: &str, at: Timestamp) -> Vec<Book> {
    vec![
        book(venue, "BTC/USD", "90000", 20, "1", at),
        book(venue, "ETH/USD", "3000", 20, "20", at),
        Book {
            venue: venue.into(),
            market: pair("USDC/USD"),
            bids: (0..20)
                .map(|i| Level::new(Decimal::new(9999 - i, 4), d("1000000")))
                .collect(),
            asks: (0..20)
                .map(|i| Level::new(Decimal::new(10001 + i, 4), d("1000000")))
                .collect(),
            sequence: 1,
            received_at: at,
        },
    ]
}

/// A venue whose books the test publishes.
#[derive(Debug)]
pub struct TestFeed {
    pub name: String,
    books: BTreeMap<Pair, watch::Sender<Option<Arc<Book>>>>,
    health: Mutex<VenueHealth>,
}

impl TestFeed {
    pub fn new(name: &str, markets: &[&str]) -> Arc<Self> {
        Arc::new(TestFeed {
            name: name.into(),
            books: markets
                .iter()
                .map(|m| (pair(m), watch::channel(None).0))
                .collect(),
            health: Mutex::new(VenueHealth::Up),
        })
    }

    pub fn publish(&self, book: Book) {
        self.books[&book.market].send_replace(Some(Arc::new(book)));
    }

    pub fn publish_all(&self, books: Vec<Book>) {
        for b in books {
            self.publish(b);
        }
    }
}

impl VenueFeed for TestFeed {
    fn name(&self) -> &str {
        &self.name
    }
    fn markets(&self) -> Vec<Pair> {
        self.books.keys().cloned().collect()
    }
    fn subscribe(&self, market: &Pair) -> Option<BookReceiver> {
        self.books.get(market).map(|s| s.subscribe())
    }
    fn health(&self) -> VenueHealth {
        self.health.lock().unwrap().clone()
    }
}
