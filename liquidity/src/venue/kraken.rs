//! Kraken Spot WebSocket v2, channel `book`: subscription frames, snapshot
//! and update messages, and the CRC32 checksum of the top ten levels,
//! verified after every snapshot and every update. A mismatch drops the
//! market's book from pricing and resubscribes it, which brings a fresh
//! snapshot. Prices and quantities keep their exact wire digits (Kraken
//! sends them as JSON numbers with the pair's full precision).

use std::collections::BTreeMap;

use proto::{Pair, Timestamp};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venue::crc32::crc32;
use crate::venue::local_book::{LocalBook, Side};
use crate::venue::ws::{wire_decimal, Action, Protocol, WireError};
use crate::venue::{Book, Level};

/// Kraken's public WebSocket v2 endpoint.
pub const KRAKEN_WS_URL: &str = "wss://ws.kraken.com/v2";

/// The book depths Kraken accepts.
pub const DEPTHS: [u32; 5] = [10, 25, 100, 500, 1000];

/// The checksum covers this many levels of each side.
pub const CHECKSUM_LEVELS: usize = 10;

const VENUE: &str = "kraken";

/// A book depth Kraken does not offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Kraken book depth {0} is not one of 10, 25, 100, 500, 1000")]
pub struct BadDepth(pub u32);

/// The text one level adds to the checksum: price then quantity, each
/// with the decimal point and leading zeros removed.
fn checksum_part(out: &mut String, l: &Level) {
    for v in [l.price, l.size] {
        let s = v.to_string();
        let digits: String = s.chars().filter(|c| *c != '.').collect();
        out.push_str(digits.trim_start_matches('0'));
    }
}

/// Kraken's book checksum: CRC32 of the top ten asks (lowest first) then
/// the top ten bids (highest first). `asks` and `bids` are best first.
pub fn checksum<'a>(
    asks: impl IntoIterator<Item = &'a Level>,
    bids: impl IntoIterator<Item = &'a Level>,
) -> u32 {
    let mut s = String::with_capacity(512);
    for l in asks.into_iter().take(CHECKSUM_LEVELS) {
        checksum_part(&mut s, l);
    }
    for l in bids.into_iter().take(CHECKSUM_LEVELS) {
        checksum_part(&mut s, l);
    }
    crc32(s.as_bytes())
}

/// The `subscribe` (or `unsubscribe`) request for the books of `symbols`.
pub fn subscription(method: &str, symbols: &[String], depth: u32) -> String {
    serde_json::json!({
        "method": method,
        "params": { "channel": "book", "symbol": symbols, "depth": depth },
    })
    .to_string()
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireBook<'a> {
    symbol: String,
    #[serde(default, borrow)]
    bids: Vec<WireLevel<'a>>,
    #[serde(default, borrow)]
    asks: Vec<WireLevel<'a>>,
    checksum: u32,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Deserialize)]
struct WireLevel<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

fn malformed(reason: impl Into<String>) -> WireError {
    WireError::Malformed {
        venue: VENUE,
        reason: reason.into(),
    }
}

fn level(l: &WireLevel<'_>) -> Result<(Decimal, Decimal), WireError> {
    Ok((
        wire_decimal(VENUE, "price", l.price.get())?,
        wire_decimal(VENUE, "qty", l.qty.get())?,
    ))
}

/// Why a book message was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{symbol}: checksum {computed} does not match Kraken's {expected}")]
    ChecksumMismatch {
        symbol: String,
        expected: u32,
        computed: u32,
    },
}

/// The book of one symbol as Kraken's messages build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrakenBook {
    depth: usize,
    book: LocalBook,
}

impl KrakenBook {
    pub fn new(depth: u32) -> Self {
        KrakenBook {
            depth: depth as usize,
            book: LocalBook::new(),
        }
    }

    /// The checksum of the book as it stands.
    pub fn checksum(&self) -> u32 {
        let asks: Vec<Level> = self.book.asks(CHECKSUM_LEVELS).collect();
        let bids: Vec<Level> = self.book.bids(CHECKSUM_LEVELS).collect();
        checksum(&asks, &bids)
    }

    /// Best bids and asks, best first.
    pub fn levels(&self) -> (Vec<Level>, Vec<Level>) {
        (
            self.book.bids(self.depth).collect(),
            self.book.asks(self.depth).collect(),
        )
    }

    fn apply(
        &mut self,
        snapshot: bool,
        bids: &[(Decimal, Decimal)],
        asks: &[(Decimal, Decimal)],
        expected: u32,
        symbol: &str,
    ) -> Result<(), BookError> {
        if snapshot {
            self.book = LocalBook::new();
        }
        for &(p, q) in bids {
            self.book.set(Side::Bid, p, q);
        }
        for &(p, q) in asks {
            self.book.set(Side::Ask, p, q);
        }
        self.book.truncate(self.depth);
        let computed = self.checksum();
        if computed != expected {
            return Err(BookError::ChecksumMismatch {
                symbol: symbol.to_owned(),
                expected,
                computed,
            });
        }
        Ok(())
    }
}

/// The `book` channel for a set of markets at one depth: a [`Protocol`].
#[derive(Debug, Clone)]
pub struct KrakenBookFeed {
    name: String,
    depth: u32,
    /// Kraken symbol (`BTC/USD`) to market.
    symbols: BTreeMap<String, Pair>,
    /// Books with a verified snapshot; a symbol missing here awaits one.
    books: BTreeMap<String, KrakenBook>,
    applied: u64,
}

impl KrakenBookFeed {
    /// A feed named `name` for `markets` (Kraken v2 names them as we do,
    /// `BTC/USD`) at `depth` levels.
    pub fn new(name: &str, markets: &[Pair], depth: u32) -> Result<Self, BadDepth> {
        if !DEPTHS.contains(&depth) {
            return Err(BadDepth(depth));
        }
        Ok(KrakenBookFeed {
            name: name.to_owned(),
            depth,
            symbols: markets.iter().map(|m| (m.to_string(), m.clone())).collect(),
            books: BTreeMap::new(),
            applied: 0,
        })
    }

    fn resync(&mut self, symbol: &str, reason: String, out: &mut Vec<Action>) {
        self.books.remove(symbol);
        if let Some(market) = self.symbols.get(symbol) {
            out.push(Action::Drop(market.clone()));
        }
        let s = [symbol.to_owned()];
        out.push(Action::Send(subscription("unsubscribe", &s, self.depth)));
        out.push(Action::Send(subscription("subscribe", &s, self.depth)));
        out.push(Action::Resync { reason });
    }

    fn on_book(&mut self, snapshot: bool, data: &RawValue, now: Timestamp, out: &mut Vec<Action>) {
        let books: Vec<WireBook<'_>> = match serde_json::from_str(data.get()) {
            Ok(b) => b,
            Err(e) => {
                out.push(Action::Problem(
                    malformed(format!("book data: {e}")).to_string(),
                ));
                return;
            }
        };
        for wb in books {
            let Some(market) = self.symbols.get(&wb.symbol).cloned() else {
                continue;
            };
            if !snapshot && !self.books.contains_key(&wb.symbol) {
                // Awaiting the snapshot of a resubscription.
                continue;
            }
            let parsed = wb
                .bids
                .iter()
                .map(level)
                .collect::<Result<Vec<_>, _>>()
                .and_then(|b| Ok((b, wb.asks.iter().map(level).collect::<Result<Vec<_>, _>>()?)));
            let (bids, asks) = match parsed {
                Ok(v) => v,
                Err(e) => {
                    self.resync(&wb.symbol, e.to_string(), out);
                    continue;
                }
            };
            let depth = self.depth;
            let book = self
                .books
                .entry(wb.symbol.clone())
                .or_insert_with(|| KrakenBook::new(depth));
            if let Err(e) = book.apply(snapshot, &bids, &asks, wb.checksum, &wb.symbol) {
                self.resync(&wb.symbol, e.to_string(), out);
                continue;
            }
            self.applied += 1;
            let (bids, asks) = book.levels();
            if let Some(at) = wb
                .timestamp
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                out.push(Action::VenueTime(at.with_timezone(&chrono::Utc)));
            }
            out.push(Action::Sequence(self.applied));
            out.push(Action::Publish(Book {
                venue: self.name.clone(),
                market,
                bids,
                asks,
                sequence: self.applied,
                received_at: now,
            }));
        }
    }
}

impl Protocol for KrakenBookFeed {
    fn venue(&self) -> &str {
        &self.name
    }

    fn markets(&self) -> Vec<Pair> {
        self.symbols.values().cloned().collect()
    }

    fn on_connect(&mut self) -> Vec<String> {
        self.books.clear();
        let symbols: Vec<String> = self.symbols.keys().cloned().collect();
        vec![subscription("subscribe", &symbols, self.depth)]
    }

    fn on_text(&mut self, text: &str, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        let env: Envelope<'_> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                out.push(Action::Problem(malformed(e.to_string()).to_string()));
                return out;
            }
        };
        if env.method.is_some() {
            if env.success == Some(false) {
                let why = env.error.unwrap_or_else(|| "no reason given".into());
                out.push(Action::Problem(format!(
                    "{} {} refused: {why}",
                    VENUE,
                    env.method.unwrap_or_default()
                )));
            }
            return out;
        }
        match (env.channel.as_deref(), env.kind.as_deref(), env.data) {
            (Some("book"), Some(kind @ ("snapshot" | "update")), Some(data)) => {
                self.on_book(kind == "snapshot", data, now, &mut out);
            }
            (Some("book"), _, _) => out.push(Action::Problem(
                malformed("book message without type or data").to_string(),
            )),
            // heartbeat, status and anything else keep the connection alive.
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kraken's documented checksum example (Book checksum, WebSocket v2).
    pub(crate) const DOC_SNAPSHOT: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",
      "bids":[{"price":45283.5,"qty":0.10000000},{"price":45283.4,"qty":1.54582015},
        {"price":45282.1,"qty":0.10000000},{"price":45281.0,"qty":0.10000000},
        {"price":45280.3,"qty":1.54592586},{"price":45279.0,"qty":0.07990000},
        {"price":45277.6,"qty":0.03310103},{"price":45277.5,"qty":0.30000000},
        {"price":45277.3,"qty":1.54602737},{"price":45276.6,"qty":0.15445238}],
      "asks":[{"price":45285.2,"qty":0.00100000},{"price":45286.4,"qty":1.54571953},
        {"price":45286.6,"qty":1.54571109},{"price":45289.6,"qty":1.54560911},
        {"price":45290.2,"qty":0.15890660},{"price":45291.8,"qty":1.54553491},
        {"price":45294.7,"qty":0.04454749},{"price":45296.1,"qty":0.35380000},
        {"price":45297.5,"qty":0.09945542},{"price":45299.5,"qty":0.18772827}],
      "checksum":3310070434}]}"#;

    fn now() -> Timestamp {
        "2023-10-06T17:35:56Z".parse().unwrap()
    }

    fn feed() -> KrakenBookFeed {
        let mut f = KrakenBookFeed::new("kraken", &["BTC/USD".parse().unwrap()], 10).unwrap();
        f.on_connect();
        f
    }

    fn published(actions: &[Action]) -> Option<&Book> {
        actions.iter().find_map(|a| match a {
            Action::Publish(b) => Some(b),
            _ => None,
        })
    }

    fn resynced(actions: &[Action]) -> bool {
        actions.iter().any(|a| matches!(a, Action::Resync { .. }))
            && actions
                .iter()
                .any(|a| matches!(a, Action::Send(s) if s.contains("\"unsubscribe\"")))
            && actions
                .iter()
                .any(|a| matches!(a, Action::Send(s) if s.contains("\"subscribe\"")))
            && actions.iter().any(|a| matches!(a, Action::Drop(_)))
    }

    #[test]
    fn the_documented_checksum_example_verifies() {
        let mut f = feed();
        let out = f.on_text(DOC_SNAPSHOT, now());
        assert!(!resynced(&out), "{out:?}");
        let book = published(&out).expect("a book");
        assert_eq!(book.bids.len(), 10);
        assert_eq!(book.asks[0].size.to_string(), "0.00100000");
        assert_eq!(book.best_bid(), Some("45283.5".parse().unwrap()));
        assert_eq!(f.books["BTC/USD"].checksum(), 3_310_070_434);
    }

    #[test]
    fn an_update_verifies_and_keeps_the_subscribed_depth() {
        let mut f = feed();
        f.on_text(DOC_SNAPSHOT, now());
        // A new best bid pushes 45276.6 out of the ten; a removal and a
        // change on the asks side.
        let mut expect = f.books["BTC/USD"].clone();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        expect
            .apply(
                false,
                &[(d("45284.0"), d("0.50000000"))],
                &[(d("45285.2"), d("0")), (d("45286.4"), d("2.00000000"))],
                0,
                "x",
            )
            .unwrap_err();
        let sum = expect.checksum();
        let update = format!(
            r#"{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD",
              "bids":[{{"price":45284.0,"qty":0.50000000}}],
              "asks":[{{"price":45285.2,"qty":0}},{{"price":45286.4,"qty":2.00000000}}],
              "checksum":{sum},"timestamp":"2023-10-06T17:35:55.440295Z"}}]}}"#
        );
        let out = f.on_text(&update, now());
        assert!(!resynced(&out), "{out:?}");
        let book = published(&out).unwrap();
        assert_eq!(book.bids.len(), 10);
        assert_eq!(book.best_bid(), Some(d("45284.0")));
        assert_eq!(book.bids.last().unwrap().price, d("45277.3"));
        assert_eq!(book.best_ask(), Some(d("45286.4")));
        assert!(out.contains(&Action::VenueTime(
            "2023-10-06T17:35:55.440295Z".parse().unwrap()
        )));
    }

    #[test]
    fn a_corrupted_level_fails_the_checksum_and_resubscribes() {
        // One quantity off by one unit in the last place.
        let corrupted = DOC_SNAPSHOT.replace("1.54582015", "1.54582016");
        let mut f = feed();
        let out = f.on_text(&corrupted, now());
        assert!(resynced(&out), "{out:?}");
        assert!(published(&out).is_none());
        // Updates are ignored until the new snapshot, which then verifies.
        let upd = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1}]}"#;
        assert!(f.on_text(upd, now()).is_empty());
        assert!(published(&f.on_text(DOC_SNAPSHOT, now())).is_some());
        // A wrong checksum on an update resubscribes too.
        let out = f.on_text(upd, now());
        assert!(resynced(&out), "{out:?}");
    }

    #[test]
    fn bad_numbers_and_refusals_are_reported_not_panics() {
        let mut f = feed();
        let bad = DOC_SNAPSHOT.replace("45283.5", "-45283.5");
        assert!(resynced(&f.on_text(&bad, now())));
        for junk in [
            "",
            "{",
            "[]",
            r#"{"channel":"book"}"#,
            r#"{"channel":"book","type":"update","data":5}"#,
        ] {
            let out = f.on_text(junk, now());
            assert!(
                out.iter().all(|a| matches!(a, Action::Problem(_))),
                "{junk}: {out:?}"
            );
        }
        let refused = r#"{"error":"Currency pair not supported","method":"subscribe","success":false,"symbol":"BTC/XYZ"}"#;
        assert!(
            matches!(&f.on_text(refused, now())[..], [Action::Problem(p)] if p.contains("not supported"))
        );
        assert!(f.on_text(r#"{"channel":"heartbeat"}"#, now()).is_empty());
    }

    #[test]
    fn subscription_frames_follow_the_documented_shape() {
        let f = KrakenBookFeed::new("k", &["BTC/USD".parse().unwrap()], 25);
        let v: serde_json::Value =
            serde_json::from_str(&f.unwrap().clone().on_connect()[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":25}})
        );
        assert_eq!(KrakenBookFeed::new("k", &[], 20).unwrap_err(), BadDepth(20));
    }
}
