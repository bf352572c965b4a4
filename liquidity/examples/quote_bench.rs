//! Measures the quote path: aggregation of the books, pure pricing, a full
//! signed quote through the service, and a lock/release round trip. The
//! baseline in the same run is one walk of one book side.
//!
//! `cargo run --release -p liquidity --example quote_bench`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use liquidity::book::aggregate;
use liquidity::pricing::{price, Books, Exposure, PriceRequest};
use liquidity::venue::BookReceiver;
use liquidity::{
    Book, Level, Liquidity, LiquidityApi, LiquidityConfig, SystemClock, VenueFeed, VenueHealth,
};
use proto::api::{AmountSide, RfqRequest};
use proto::{
    Address, Amount, AssetId, AssetKind, AssetSpec, Assets, BitcoinNetwork, EthereumNetwork,
    Network, Pair, SwapId,
};
use rust_decimal::Decimal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn book(venue: &str, market: &str, mid: i64, size: &str) -> Book {
    let mid = Decimal::from(mid);
    let size: Decimal = size.parse().unwrap();
    let bps = Decimal::from(10_000);
    let level = |i: i64, sign: Decimal| {
        let away = Decimal::from(1 + i) / bps;
        Level::new(
            (mid * (Decimal::ONE + sign * away)).round_dp(4),
            size * Decimal::from(1 + i),
        )
    };
    Book {
        venue: venue.into(),
        market: market.parse().unwrap(),
        bids: (0..50).map(|i| level(i, -Decimal::ONE)).collect(),
        asks: (0..50).map(|i| level(i, Decimal::ONE)).collect(),
        sequence: 1,
        received_at: chrono::Utc::now() + chrono::Duration::days(1),
    }
}

#[derive(Debug)]
struct Feed {
    name: String,
    books: BTreeMap<Pair, watch::Sender<Option<Arc<Book>>>>,
}

impl VenueFeed for Feed {
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
        VenueHealth::Up
    }
}

fn feed(name: &str) -> Arc<Feed> {
    let books = [
        book(name, "BTC/USD", 90_000, "0.5"),
        book(name, "ETH/USD", 3_000, "10"),
        book(name, "USDC/USD", 1, "100000"),
    ];
    let books = books
        .into_iter()
        .map(|b| (b.market.clone(), watch::channel(Some(Arc::new(b))).0))
        .collect();
    Arc::new(Feed {
        name: name.into(),
        books,
    })
}

fn assets() -> Assets {
    let eth = Network::Ethereum(EthereumNetwork::Dev);
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
        spec("ETH", eth, AssetKind::Native, 18),
        spec(
            "USDC",
            eth,
            AssetKind::Erc20 {
                contract: Address::parse(eth, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
                    .unwrap(),
            },
            6,
        ),
    ])
}

/// Runs `f` for about `for_ms`, returns (ops/s, p50 µs, p99 µs).
fn measure(for_ms: u64, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(for_ms) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let total: Duration = samples.iter().sum();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (
        samples.len() as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
    )
}

fn report(name: &str, (ops, p50, p99): (f64, f64, f64)) {
    println!(
        "{{\"bench\":\"liquidity.{name}\",\"ops_per_s\":{ops:.0},\"p50_us\":{p50:.2},\"p99_us\":{p99:.2}}}"
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut cfg = LiquidityConfig::dev(assets(), &"11".repeat(32));
    cfg.quote_retention_ms = 1;
    for p in cfg.policies.values_mut() {
        p.inventory = Amount::from_base_units(10u128.pow(30));
    }
    let feeds = [feed("a"), feed("b")];
    let now = chrono::Utc::now();
    let stale_after = chrono::Duration::seconds(10);
    let btc_usd: Pair = "BTC/USD".parse().unwrap();
    let raw: Vec<Book> = feeds
        .iter()
        .map(|f| f.books[&btc_usd].borrow().as_deref().cloned().unwrap())
        .collect();

    // Baseline: walk 1 BTC down one venue's bids.
    report(
        "baseline_walk_one_side",
        measure(1000, || {
            let mut left = Decimal::ONE;
            let mut got = Decimal::ZERO;
            for l in &raw[0].bids {
                let take = left.min(l.size);
                got += take * l.price;
                left -= take;
                if left.is_zero() {
                    break;
                }
            }
            black_box(got);
        }),
    );
    report(
        "aggregate_2_venues_50_levels",
        measure(1000, || {
            black_box(aggregate(&btc_usd, raw.iter(), now, stale_after).unwrap());
        }),
    );
    let books: Books = ["BTC/USD", "ETH/USD", "USDC/USD"]
        .iter()
        .map(|m| {
            let m: Pair = m.parse().unwrap();
            let bs: Vec<Book> = feeds
                .iter()
                .map(|f| f.books[&m].borrow().as_deref().cloned().unwrap())
                .collect();
            (
                m.clone(),
                aggregate(&m, bs.iter(), now, stale_after).unwrap(),
            )
        })
        .collect();
    let (btc, eth) = (
        cfg.assets.parse("BTC").unwrap().clone(),
        cfg.assets.parse("ETH").unwrap().clone(),
    );
    let exposure = Exposure::new();
    report(
        "price_btc_eth_1btc_two_legs",
        measure(1000, || {
            let req = PriceRequest {
                from: &btc,
                to: &eth,
                amount: Amount::from_base_units(100_000_000),
                side: AmountSide::From,
            };
            black_box(price(&cfg, &books, &exposure, &req).unwrap());
        }),
    );

    let shutdown = CancellationToken::new();
    let liq = Liquidity::start(
        cfg,
        feeds
            .iter()
            .map(|f| f.clone() as Arc<dyn VenueFeed>)
            .collect(),
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .unwrap();
    let rfq = RfqRequest {
        from: "BTC".into(),
        to: "ETH".into(),
        amount: "1".into(),
        amount_side: AmountSide::From,
    };
    // Async calls that never wait: drive them with a no-op poll.
    let run = |f: &mut dyn FnMut()| measure(1000, f);
    let mut quotes = Vec::new();
    report(
        "service_quote_signed",
        run(&mut || {
            let q = futures_lite_block(liq.quote(&rfq)).unwrap();
            quotes.push(q.quote_id);
        }),
    );
    let mut i = 0;
    report(
        "service_lock_release",
        run(&mut || {
            let id = quotes[i % quotes.len()];
            i += 1;
            futures_lite_block(liq.lock(id, SwapId::new())).unwrap();
            futures_lite_block(liq.release(id)).unwrap();
        }),
    );
    println!("{{\"quotes_made\":{}}}", quotes.len());
    shutdown.cancel();
}

/// Polls a future that completes without waiting (the service's calls take
/// no await points that block).
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
