//! The Kraken v2 adapter end to end against the simulated venue's
//! websocket: books follow the venue level for level with verified
//! checksums, a corrupted checksum resubscribes, a dropped connection
//! reconnects, a silent feed drops out of pricing after `stale_after`; and
//! the venue's order endpoint in each of its modes.

use std::sync::Arc;
use std::time::Duration;

use liquidity::venue::kraken::KrakenBookFeed;
use liquidity::venue::ws::{ConnectionConfig, WsVenue};
use liquidity::{Clock, Level, Liquidity, LiquidityConfig, LiquidityError, ManualClock, VenueFeed};
use proto::{
    AssetId, AssetKind, AssetSpec, Assets, BitcoinNetwork, EthereumNetwork, Network, Pair,
};
use rust_decimal::Decimal;
use simulators::venue::server::{OrderMode, OrderReport, VenueServer};
use simulators::venue::{SimVenue, SimVenueConfig};
use tokio_util::sync::CancellationToken;

fn pair(s: &str) -> Pair {
    s.parse().unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn t0() -> proto::Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

struct Rig {
    clock: Arc<ManualClock>,
    sim: Arc<SimVenue>,
    server: VenueServer,
    adapter: Arc<WsVenue>,
    shutdown: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn rig(idle_timeout: Duration) -> Rig {
    let clock = Arc::new(ManualClock::new(t0()));
    let shutdown = CancellationToken::new();
    let mut cfg = SimVenueConfig::new("sim", 11);
    cfg.clock = clock.clone() as Arc<dyn Clock>;
    let sim = SimVenue::new(cfg);
    let server = VenueServer::start(
        sim.clone(),
        "127.0.0.1:0".parse().unwrap(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let markets = sim.markets();
    let feed = KrakenBookFeed::new("kraken-sim", &markets, 10).unwrap();
    let mut conn = ConnectionConfig::new(&server.ws_url());
    conn.backoff_initial = Duration::from_millis(20);
    conn.backoff_max = Duration::from_millis(200);
    conn.idle_timeout = idle_timeout;
    let adapter = WsVenue::start(
        feed,
        conn,
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    );
    Rig {
        clock,
        sim,
        server,
        adapter,
        shutdown,
    }
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..500 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn top(levels: &[Level]) -> Vec<(Decimal, Decimal)> {
    levels.iter().take(10).map(|l| (l.price, l.size)).collect()
}

/// Whether the adapter's book of `market` is the simulated venue's top ten.
fn in_step(r: &Rig, market: &Pair) -> bool {
    let sim = r.sim.subscribe(market).unwrap().borrow().clone().unwrap();
    let got = r.adapter.subscribe(market).unwrap().borrow().clone();
    got.is_some_and(|b| top(&b.bids) == top(&sim.bids) && top(&b.asks) == top(&sim.asks))
}

#[tokio::test]
async fn the_kraken_adapter_follows_the_simulated_venue_with_verified_checksums() {
    let r = rig(Duration::from_secs(5)).await;
    let markets = r.sim.markets();
    for step in 0..30 {
        r.sim.step();
        for m in &markets {
            eventually(&format!("{m} at step {step}"), || in_step(&r, m)).await;
        }
    }
    let st = r.adapter.status();
    assert!(st.connected, "{st:?}");
    assert_eq!((st.resyncs, st.reconnects), (0, 0), "{st:?}");
    assert!(st.last_sequence.unwrap() >= 30, "{st:?}");
    assert_eq!(st.last_update_at, Some(r.clock.now()));
    assert!(st.latency_ms.is_some());
    let b = r
        .adapter
        .subscribe(&pair("BTC/USD"))
        .unwrap()
        .borrow()
        .clone()
        .unwrap();
    assert_eq!(
        (b.venue.as_str(), b.bids.len(), b.asks.len()),
        ("kraken-sim", 10, 10)
    );

    // A corrupted checksum: the adapter drops the book, resubscribes, and
    // is back in step after the new snapshot.
    let subscribes = r.server.subscribes();
    r.server.corrupt_next_checksum();
    r.sim.step();
    eventually("a resync", || r.adapter.status().resyncs == 1).await;
    eventually("the resubscription", || {
        r.server.subscribes() == subscribes + 1
    })
    .await;
    for m in &markets {
        eventually(&format!("{m} after the resync"), || in_step(&r, m)).await;
    }
    assert_eq!(r.server.connections(), 1, "a resync is not a reconnect");

    // The venue drops the connection: the adapter reconnects, resubscribes
    // and follows again.
    r.server.drop_connections();
    eventually("a reconnect", || {
        r.adapter.status().reconnects == 1 && r.server.connections() == 2
    })
    .await;
    r.sim.step();
    for m in &markets {
        eventually(&format!("{m} after the reconnect"), || in_step(&r, m)).await;
    }
    assert!(r.adapter.status().connected);
}

fn assets() -> Assets {
    let eth_net = Network::Ethereum(EthereumNetwork::Dev);
    let spec = |t: &str, network, kind, decimals| AssetSpec {
        id: AssetId::new(t).unwrap(),
        network,
        kind,
        decimals,
    };
    Assets::new([
        spec(
            "BTC",
            Network::Bitcoin(BitcoinNetwork::Regtest),
            AssetKind::Native,
            8,
        ),
        spec("ETH", eth_net, AssetKind::Native, 18),
    ])
}

#[tokio::test]
async fn a_silent_feed_drops_out_of_pricing_after_stale_after() {
    let r = rig(Duration::from_millis(300)).await;
    let cfg = LiquidityConfig::dev(assets(), &"cd".repeat(32));
    let stale_after = chrono::Duration::milliseconds(cfg.stale_after_ms as i64);
    let liq = Liquidity::start(
        cfg,
        vec![r.adapter.clone() as Arc<dyn VenueFeed>],
        r.clock.clone() as Arc<dyn Clock>,
        r.shutdown.clone(),
    )
    .unwrap();
    let btc = pair("BTC/USD");
    eventually("a priced book", || liq.book(&btc, r.clock.now()).is_ok()).await;

    // The venue falls silent: no books, no heartbeats.
    r.sim.go_down("silent");
    r.clock.advance(stale_after);
    assert!(
        liq.book(&btc, r.clock.now()).is_ok(),
        "exactly S old is still fresh"
    );
    r.clock.advance(chrono::Duration::milliseconds(1));
    match liq.book(&btc, r.clock.now()) {
        Err(LiquidityError::MarketUnavailable { reason, .. }) => {
            assert!(
                reason.contains("stale") && reason.contains("kraken-sim"),
                "{reason}"
            )
        }
        other => panic!("a stale book priced: {other:?}"),
    }
    // Silence also trips the idle timeout: the adapter reconnects.
    eventually("an idle reconnect", || r.adapter.status().reconnects >= 1).await;
    let st = r.adapter.status();
    assert!(st.last_error.is_some(), "{st:?}");
    // The desk sees the same through the service.
    let desk = liq.venue_status();
    assert_eq!(desk.len(), 1);
    assert_eq!(desk[0].venue, "kraken-sim");
    assert!(desk[0].reconnects >= 1, "{desk:?}");
    assert!(st.age_ms(r.clock.now()).unwrap() > stale_after.num_milliseconds());

    // The venue comes back: a fresh snapshot prices again.
    r.sim.come_back();
    eventually("pricing again", || liq.book(&btc, r.clock.now()).is_ok()).await;
    assert_eq!(
        liq.book(&btc, r.clock.now()).unwrap().venues,
        vec!["kraken-sim".to_string()]
    );
}

#[tokio::test]
async fn the_order_endpoint_fills_partially_fills_rejects_delays_and_goes_down() {
    let r = rig(Duration::from_secs(5)).await;
    let http = reqwest::Client::new();
    let url = r.server.orders_url();
    let order = |id: &str, side: &str, qty: &str| serde_json::json!({"cl_ord_id": id, "symbol": "BTC/USD", "side": side, "order_qty": qty});
    let send = |body: serde_json::Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let resp = http.post(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let report = |v: serde_json::Value| serde_json::from_value::<OrderReport>(v).unwrap();
    let book = r
        .sim
        .subscribe(&pair("BTC/USD"))
        .unwrap()
        .borrow()
        .clone()
        .unwrap();

    // Fill: 0.5 BTC at the best ask (the best level holds 0.5).
    let (code, v) = send(order("a-1", "buy", "0.5")).await;
    let a1 = report(v);
    assert_eq!((code, a1.status.as_str()), (200, "filled"));
    assert_eq!(
        (a1.filled_qty, a1.avg_price),
        (d("0.5"), Some(book.asks[0].price))
    );
    // The same client order id: the same answer, no second fill.
    let (_, again) = send(order("a-1", "buy", "0.5")).await;
    assert_eq!(report(again), a1);

    // Partial fill: 40%.
    r.server
        .set_order_mode(OrderMode::PartialFill { fill_bps: 4_000 });
    let (code, v) = send(order("a-2", "sell", "1")).await;
    let a2 = report(v);
    assert_eq!(
        (code, a2.status.as_str(), a2.filled_qty),
        (200, "partially_filled", d("0.4"))
    );
    assert!(a2.avg_price.unwrap() <= book.bids[0].price);

    // Reject.
    r.server.set_order_mode(OrderMode::Reject {
        reason: "insufficient funds".into(),
    });
    let (code, v) = send(order("a-3", "buy", "1")).await;
    let a3 = report(v);
    assert_eq!(
        (code, a3.status.as_str(), a3.filled_qty),
        (422, "rejected", Decimal::ZERO)
    );
    assert_eq!(a3.reason.as_deref(), Some("insufficient funds"));

    // Delay, then fill.
    r.server.set_order_mode(OrderMode::Delay {
        by: Duration::from_millis(300),
    });
    let started = std::time::Instant::now();
    let (code, v) = send(order("a-4", "buy", "0.1")).await;
    assert_eq!((code, report(v).status.as_str()), (200, "filled"));
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Down, and down with the venue.
    r.server.set_order_mode(OrderMode::Down);
    assert_eq!(send(order("a-5", "buy", "0.1")).await.0, 503);
    r.server.set_order_mode(OrderMode::Fill);
    r.sim.go_down("maintenance");
    assert_eq!(send(order("a-6", "buy", "0.1")).await.0, 503);
    r.sim.come_back();

    // Bad requests say what was wrong.
    let (code, v) = send(order("a-7", "hold", "1")).await;
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("hold"));
    let (code, _) = send(serde_json::json!({"cl_ord_id": "a-8", "symbol": "DOGE/USD", "side": "buy", "order_qty": "1"})).await;
    assert_eq!(code, 400);
    let (code, _) = send(order("a-9", "buy", "-1")).await;
    assert_eq!(code, 400);
    // More than the book holds: what there is, partially filled.
    let (code, v) = send(order("a-10", "buy", "100000")).await;
    assert_eq!((code, report(v).status.as_str()), (200, "partially_filled"));
}
