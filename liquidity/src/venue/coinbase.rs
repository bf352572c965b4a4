//! Coinbase Advanced Trade WebSocket, channel `level2` (messages arrive on
//! channel `l2_data`), with `heartbeats` to keep the subscription open.
//! Every message of a connection carries `sequence_num`, one more than the
//! last; a gap (or a step back) means something was lost, so every book is
//! dropped from pricing and `level2` is subscribed again, which brings new
//! snapshots. `new_quantity` is the size at a level, `"0"` removes it.

use std::collections::{BTreeMap, BTreeSet};

use proto::{Pair, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::venue::local_book::{LocalBook, Side};
use crate::venue::ws::{wire_decimal, Action, Protocol, WireError};
use crate::venue::Book;

/// Coinbase Advanced Trade's public market-data endpoint.
pub const COINBASE_WS_URL: &str = "wss://advanced-trade-ws.coinbase.com";

const VENUE: &str = "coinbase";

/// The product id of a market: `BTC/USD` is `BTC-USD`.
pub fn product_id(market: &Pair) -> String {
    format!("{}-{}", market.base, market.quote)
}

/// A `subscribe` (or `unsubscribe`) request for one channel.
pub fn subscription(kind: &str, channel: &str, product_ids: &[String]) -> String {
    serde_json::json!({ "type": kind, "product_ids": product_ids, "channel": channel }).to_string()
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    sequence_num: Option<u64>,
    #[serde(default, borrow)]
    events: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct L2Event<'a> {
    #[serde(rename = "type")]
    kind: String,
    product_id: String,
    #[serde(default, borrow)]
    updates: Vec<L2Update<'a>>,
}

#[derive(Deserialize)]
struct L2Update<'a> {
    side: String,
    #[serde(borrow)]
    price_level: &'a RawValue,
    #[serde(borrow)]
    new_quantity: &'a RawValue,
}

fn malformed(reason: impl Into<String>) -> String {
    WireError::Malformed {
        venue: VENUE,
        reason: reason.into(),
    }
    .to_string()
}

/// The `level2` channel for a set of markets: a [`Protocol`].
#[derive(Debug, Clone)]
pub struct CoinbaseLevel2Feed {
    name: String,
    /// Levels per side published to pricing (the local book keeps all).
    depth: usize,
    products: BTreeMap<String, Pair>,
    /// Books with a snapshot since the last (re)subscription.
    books: BTreeMap<String, LocalBook>,
    last_sequence: Option<u64>,
    published: u64,
}

impl CoinbaseLevel2Feed {
    /// A feed named `name` for `markets`, publishing the best `depth`
    /// levels of each side.
    pub fn new(name: &str, markets: &[Pair], depth: usize) -> Self {
        CoinbaseLevel2Feed {
            name: name.to_owned(),
            depth: depth.max(1),
            products: markets.iter().map(|m| (product_id(m), m.clone())).collect(),
            books: BTreeMap::new(),
            last_sequence: None,
            published: 0,
        }
    }

    fn product_ids(&self) -> Vec<String> {
        self.products.keys().cloned().collect()
    }

    fn resync(&mut self, reason: String, out: &mut Vec<Action>) {
        self.books.clear();
        for market in self.products.values() {
            out.push(Action::Drop(market.clone()));
        }
        let ids = self.product_ids();
        out.push(Action::Send(subscription("unsubscribe", "level2", &ids)));
        out.push(Action::Send(subscription("subscribe", "level2", &ids)));
        out.push(Action::Resync { reason });
    }

    fn on_l2(&mut self, events: &RawValue, now: Timestamp, out: &mut Vec<Action>) {
        let events: Vec<L2Event<'_>> = match serde_json::from_str(events.get()) {
            Ok(e) => e,
            Err(e) => {
                self.resync(malformed(format!("l2_data events: {e}")), out);
                return;
            }
        };
        let mut changed = BTreeSet::new();
        for ev in events {
            if !self.products.contains_key(&ev.product_id) {
                continue;
            }
            let snapshot = match ev.kind.as_str() {
                "snapshot" => true,
                "update" => false,
                other => {
                    out.push(Action::Problem(malformed(format!(
                        "l2_data event type {other:?}"
                    ))));
                    continue;
                }
            };
            if !snapshot && !self.books.contains_key(&ev.product_id) {
                // Awaiting the snapshot of a resubscription.
                continue;
            }
            let mut parsed = Vec::with_capacity(ev.updates.len());
            for u in &ev.updates {
                let side = match u.side.as_str() {
                    "bid" => Side::Bid,
                    "offer" => Side::Ask,
                    other => {
                        parsed.clear();
                        out.push(Action::Problem(malformed(format!("side {other:?}"))));
                        break;
                    }
                };
                match (
                    wire_decimal(VENUE, "price_level", u.price_level.get()),
                    wire_decimal(VENUE, "new_quantity", u.new_quantity.get()),
                ) {
                    (Ok(p), Ok(q)) => parsed.push((side, p, q)),
                    (Err(e), _) | (_, Err(e)) => {
                        // A level we cannot read leaves the book unknown.
                        self.resync(e.to_string(), out);
                        return;
                    }
                }
            }
            let book = if snapshot {
                self.books.insert(ev.product_id.clone(), LocalBook::new());
                self.books.get_mut(&ev.product_id)
            } else {
                self.books.get_mut(&ev.product_id)
            };
            let Some(book) = book else { continue };
            for (side, p, q) in parsed {
                book.set(side, p, q);
            }
            changed.insert(ev.product_id);
        }
        for product in changed {
            let (Some(book), Some(market)) =
                (self.books.get(&product), self.products.get(&product))
            else {
                continue;
            };
            self.published += 1;
            out.push(Action::Publish(Book {
                venue: self.name.clone(),
                market: market.clone(),
                bids: book.bids(self.depth).collect(),
                asks: book.asks(self.depth).collect(),
                sequence: self.last_sequence.unwrap_or(self.published),
                received_at: now,
            }));
        }
    }
}

impl Protocol for CoinbaseLevel2Feed {
    fn venue(&self) -> &str {
        &self.name
    }

    fn markets(&self) -> Vec<Pair> {
        self.products.values().cloned().collect()
    }

    fn on_connect(&mut self) -> Vec<String> {
        self.books.clear();
        self.last_sequence = None;
        let ids = self.product_ids();
        vec![
            subscription("subscribe", "heartbeats", &ids),
            subscription("subscribe", "level2", &ids),
        ]
    }

    fn on_text(&mut self, text: &str, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        let env: Envelope<'_> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                out.push(Action::Problem(malformed(e.to_string())));
                return out;
            }
        };
        if env.kind.as_deref() == Some("error") {
            out.push(Action::Problem(format!(
                "{VENUE} error: {}",
                env.message.unwrap_or_else(|| "no message".into())
            )));
            return out;
        }
        if let Some(seq) = env.sequence_num {
            out.push(Action::Sequence(seq));
            let gap = self
                .last_sequence
                .and_then(|last| (last.checked_add(1) != Some(seq)).then_some(last));
            self.last_sequence = Some(seq);
            if let Some(last) = gap {
                self.resync(format!("sequence_num {seq} after {last}"), &mut out);
            }
        }
        if let Some(at) = env
            .timestamp
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            out.push(Action::VenueTime(at.with_timezone(&chrono::Utc)));
        }
        match (env.channel.as_deref(), env.events) {
            (Some("l2_data"), Some(events)) => self.on_l2(events, now, &mut out),
            (Some("l2_data"), None) => {
                out.push(Action::Problem(malformed("l2_data without events")))
            }
            // heartbeats, subscriptions: the sequence is all they carry here.
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn now() -> Timestamp {
        "2023-02-09T20:32:51Z".parse().unwrap()
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    // Shaped as the documented level2 examples.
    fn snapshot(seq: u64) -> String {
        format!(
            r#"{{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":{seq},
              "events":[{{"type":"snapshot","product_id":"BTC-USD","updates":[
                {{"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"21921.73","new_quantity":"0.06317902"}},
                {{"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"21921.3","new_quantity":"0.02"}},
                {{"side":"offer","event_time":"1970-01-01T00:00:00Z","price_level":"21921.74","new_quantity":"1.5"}},
                {{"side":"offer","event_time":"1970-01-01T00:00:00Z","price_level":"21922.1","new_quantity":"0.3"}}]}}]}}"#
        )
    }

    fn update(seq: u64, side: &str, price: &str, qty: &str) -> String {
        format!(
            r#"{{"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.9Z","sequence_num":{seq},
              "events":[{{"type":"update","product_id":"BTC-USD","updates":[
                {{"side":"{side}","event_time":"2023-02-09T20:32:50.7Z","price_level":"{price}","new_quantity":"{qty}"}}]}}]}}"#
        )
    }

    fn heartbeat(seq: u64) -> String {
        format!(
            r#"{{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z","sequence_num":{seq},
              "events":[{{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105","heartbeat_counter":3049}}]}}"#
        )
    }

    fn feed() -> CoinbaseLevel2Feed {
        let mut f = CoinbaseLevel2Feed::new("coinbase", &["BTC/USD".parse().unwrap()], 50);
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
            && actions.iter().any(|a| matches!(a, Action::Drop(_)))
            && actions.iter().any(|a| matches!(a, Action::Send(s) if s.contains("unsubscribe") && s.contains("level2")))
            && actions.iter().any(|a| matches!(a, Action::Send(s) if s.contains("\"subscribe\"") && s.contains("level2")))
    }

    #[test]
    fn subscribes_to_level2_and_heartbeats() {
        let mut f = CoinbaseLevel2Feed::new("cb", &["ETH/USD".parse().unwrap()], 10);
        let frames: Vec<serde_json::Value> = f
            .on_connect()
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert!(frames.contains(&serde_json::json!({"type":"subscribe","product_ids":["ETH-USD"],"channel":"heartbeats"})));
        assert!(frames.contains(
            &serde_json::json!({"type":"subscribe","product_ids":["ETH-USD"],"channel":"level2"})
        ));
    }

    #[test]
    fn snapshot_then_updates_build_the_book() {
        let mut f = feed();
        let book = published(&f.on_text(&snapshot(0), now())).unwrap().clone();
        assert_eq!(book.best_bid(), Some(d("21921.73")));
        assert_eq!(book.best_ask(), Some(d("21921.74")));
        assert_eq!(book.received_at, now());
        assert!(f
            .on_text(&heartbeat(1), now())
            .iter()
            .all(|a| !matches!(a, Action::Resync { .. })));
        // "0" removes the best offer; a new bid level arrives.
        let out = f.on_text(&update(2, "offer", "21921.74", "0"), now());
        assert_eq!(published(&out).unwrap().best_ask(), Some(d("21922.1")));
        let out = f.on_text(&update(3, "bid", "21921.5", "0.7"), now());
        let b = published(&out).unwrap();
        assert_eq!(
            b.bids.iter().map(|l| l.price).collect::<Vec<_>>(),
            vec![d("21921.73"), d("21921.5"), d("21921.3")]
        );
        assert_eq!(b.sequence, 3);
        assert!(out.contains(&Action::Sequence(3)));
    }

    #[test]
    fn a_sequence_gap_forces_a_resync() {
        let mut f = feed();
        f.on_text(&snapshot(0), now());
        f.on_text(&update(1, "bid", "21921.5", "0.7"), now());
        // 2 is lost.
        let out = f.on_text(&update(3, "bid", "21921.6", "0.1"), now());
        assert!(resynced(&out), "{out:?}");
        assert!(
            published(&out).is_none(),
            "the update after a gap is not applied"
        );
        // Updates before the new snapshot are ignored; the snapshot restores it.
        assert!(published(&f.on_text(&update(4, "bid", "1", "1"), now())).is_none());
        let b = published(&f.on_text(&snapshot(5), now())).unwrap().clone();
        assert_eq!(b.bids.len(), 2);
        // A step back is a gap too.
        assert!(resynced(&f.on_text(&heartbeat(5), now())));
    }

    #[test]
    fn bad_input_is_reported_not_a_panic() {
        let mut f = feed();
        f.on_text(&snapshot(0), now());
        assert!(resynced(&f.on_text(&update(1, "bid", "-5", "1"), now())));
        f.on_text(&snapshot(2), now());
        let out = f.on_text(&update(3, "sideways", "5", "1"), now());
        assert!(out.iter().any(|a| matches!(a, Action::Problem(_))));
        for junk in ["", "nope", "[1]"] {
            assert!(f
                .on_text(junk, now())
                .iter()
                .all(|a| matches!(a, Action::Problem(_))));
        }
        let err = r#"{"type":"error","message":"failure to subscribe"}"#;
        assert!(
            matches!(&f.on_text(err, now())[..], [Action::Problem(p)] if p.contains("failure to subscribe"))
        );
    }
}
