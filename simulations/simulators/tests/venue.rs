//! The simulated venue: deterministic paths, uncrossed books, publishing,
//! going down and coming back, and the liquidity engine pricing from it.

use std::sync::Arc;
use std::time::Duration;

use liquidity::{
    Clock, Liquidity, LiquidityApi, LiquidityConfig, ManualClock, TradingState, VenueFeed,
    VenueHealth,
};
use proto::api::{AmountSide, RfqRequest};
use proto::{
    Address, AssetId, AssetKind, AssetSpec, Assets, BitcoinNetwork, EthereumNetwork, Network, Pair,
};
use rust_decimal::Decimal;
use simulators::venue::{MarketSpec, PricePath, SimVenue, SimVenueConfig};
use tokio_util::sync::CancellationToken;

fn pair(s: &str) -> Pair {
    s.parse().unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn specs() -> Vec<MarketSpec> {
    vec![
        MarketSpec::btc_usd(),
        MarketSpec::eth_usd(),
        MarketSpec::usdc_usd(),
    ]
}

fn t0() -> proto::Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn manual_venue(name: &str, seed: u64, clock: &Arc<ManualClock>) -> Arc<SimVenue> {
    let mut cfg = SimVenueConfig::new(name, seed);
    cfg.clock = clock.clone() as Arc<dyn Clock>;
    SimVenue::new(cfg)
}

#[test]
fn same_seed_gives_the_same_path_and_books() {
    for spec in specs() {
        let mut a = PricePath::new(spec.clone(), 42);
        let mut b = PricePath::new(spec.clone(), 42);
        let mut c = PricePath::new(spec.clone(), 43);
        let mut diverged = false;
        for step in 0..3_000 {
            let (pa, pb, pc) = (a.step(), b.step(), c.step());
            assert_eq!(pa, pb, "{} step {step}", spec.market);
            diverged |= pa != pc;
            if step % 500 == 0 {
                assert_eq!(a.levels(), b.levels());
            }
        }
        assert!(
            diverged,
            "{}: seeds 42 and 43 gave the same path",
            spec.market
        );
        assert_eq!(a.steps(), 3_000);
    }
    // A venue too: same seed, same steps, same books (received_at included,
    // with the same clock).
    let clock = Arc::new(ManualClock::new(t0()));
    let (x, y) = (manual_venue("x", 7, &clock), manual_venue("x", 7, &clock));
    for _ in 0..200 {
        x.step();
        y.step();
    }
    for m in x.markets() {
        let bx = x.subscribe(&m).unwrap().borrow().clone().unwrap();
        let by = y.subscribe(&m).unwrap().borrow().clone().unwrap();
        assert_eq!(bx, by);
        assert_eq!(bx.sequence, 201);
    }
}

fn assert_well_formed(
    book: &(Vec<liquidity::Level>, Vec<liquidity::Level>),
    spec: &MarketSpec,
    ctx: &str,
) {
    let (bids, asks) = book;
    assert_eq!(asks.len(), spec.levels, "{ctx}");
    assert!(!bids.is_empty(), "{ctx}");
    assert!(
        bids[0].price < asks[0].price,
        "{ctx}: crossed {} >= {}",
        bids[0].price,
        asks[0].price
    );
    assert!(
        bids.windows(2).all(|w| w[0].price > w[1].price),
        "{ctx}: bids not descending"
    );
    assert!(
        asks.windows(2).all(|w| w[0].price < w[1].price),
        "{ctx}: asks not ascending"
    );
    assert!(
        bids.iter()
            .all(|l| l.price > Decimal::ZERO && l.size > Decimal::ZERO),
        "{ctx}"
    );
    assert!(
        asks.windows(2).all(|w| w[0].size <= w[1].size),
        "{ctx}: sizes shrink outward"
    );
    let on_tick = |p: Decimal| (p / spec.tick_size).fract().is_zero();
    assert!(
        bids.iter().chain(asks.iter()).all(|l| on_tick(l.price)),
        "{ctx}: off tick"
    );
}

#[test]
fn books_are_never_crossed_and_prices_stay_realistic() {
    for seed in [1u64, 2, 3] {
        for spec in specs() {
            let mut path = PricePath::new(spec.clone(), seed);
            for step in 0..20_000 {
                path.step();
                if step % 50 == 0 {
                    assert_well_formed(
                        &path.levels(),
                        &spec,
                        &format!("{} seed {seed} step {step}", spec.market),
                    );
                }
            }
            let p = path.price();
            let start = spec.start_price;
            match spec.anchor {
                Some((peg, _)) => assert!(
                    (p - peg).abs() < d("0.01"),
                    "{} drifted to {p}",
                    spec.market
                ),
                None => assert!(
                    p > start / Decimal::TWO && p < start * Decimal::TWO,
                    "{} went to {p}",
                    spec.market
                ),
            }
        }
    }
    // After a crash and at the smallest price the book is still sane.
    let spec = MarketSpec::btc_usd();
    let mut path = PricePath::new(spec.clone(), 9);
    path.jump(d("-5000"));
    assert_eq!(path.price(), d("45000"));
    assert_well_formed(&path.levels(), &spec, "after -50%");
    path.set_price(Decimal::ZERO);
    assert_eq!(path.price(), spec.tick_size);
    let (bids, asks) = path.levels();
    assert!(bids.is_empty() || bids[0].price < asks[0].price);
}

#[tokio::test]
async fn a_running_venue_publishes_goes_down_and_comes_back() {
    let shutdown = CancellationToken::new();
    let mut cfg = SimVenueConfig::new("sim", 5);
    cfg.tick = Duration::from_millis(10);
    let venue = SimVenue::start(cfg, shutdown.clone());
    let btc = pair("BTC/USD");
    let rx = venue.subscribe(&btc).unwrap();
    assert!(venue.subscribe(&pair("DOGE/USD")).is_none());
    let first = rx.borrow().clone().unwrap().sequence;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = rx.borrow().clone().unwrap();
    assert!(
        later.sequence >= first + 5,
        "{} -> {}",
        first,
        later.sequence
    );
    assert_eq!(later.venue, "sim");

    venue.go_down("maintenance");
    assert_eq!(
        venue.health(),
        VenueHealth::Down {
            reason: "maintenance".into()
        }
    );
    let frozen = rx.borrow().clone().unwrap().sequence;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rx.borrow().clone().unwrap().sequence,
        frozen,
        "a down venue published"
    );

    venue.come_back();
    assert_eq!(venue.health(), VenueHealth::Up);
    assert!(rx.borrow().clone().unwrap().sequence > frozen);

    // Scenario commands publish at once.
    venue.set_price(&btc, d("50000")).unwrap();
    let b = rx.borrow().clone().unwrap();
    assert!(b.bids[0].price < d("50000") && b.asks[0].price > d("50000"));
    venue.jump(&btc, d("1000")).unwrap();
    assert!(venue.price(&btc).unwrap() > d("54000"));
    assert!(venue.set_price(&pair("DOGE/USD"), d("1")).is_err());
    shutdown.cancel();
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
        spec(
            "USDC",
            eth_net,
            AssetKind::Erc20 {
                contract: Address::parse(eth_net, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
                    .unwrap(),
            },
            6,
        ),
    ])
}

#[tokio::test]
async fn liquidity_prices_from_simulated_venues_and_halts_when_they_go_stale() {
    let clock = Arc::new(ManualClock::new(t0()));
    let (a, b) = (
        manual_venue("sim-a", 1, &clock),
        manual_venue("sim-b", 2, &clock),
    );
    let shutdown = CancellationToken::new();
    let cfg = LiquidityConfig::dev(assets(), &"ab".repeat(32));
    let liq = Liquidity::start(
        cfg,
        vec![
            a.clone() as Arc<dyn VenueFeed>,
            b.clone() as Arc<dyn VenueFeed>,
        ],
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .unwrap();
    let rfq = RfqRequest {
        from: "BTC".into(),
        to: "ETH".into(),
        amount: "1".into(),
        amount_side: AmountSide::From,
    };
    let q = liq.quote(&rfq).await.unwrap();
    // About 30 ETH per BTC, a little less after costs.
    let eth = q.amount_out.parse::<Decimal>().unwrap();
    assert!(eth > d("28") && eth < d("30.1"), "{eth}");
    let book = liq.book(&pair("BTC/USD"), clock.now()).unwrap();
    assert_eq!(book.venues, vec!["sim-a".to_string(), "sim-b".to_string()]);

    // sim-a goes down; 11 s later only sim-b's books are used.
    a.go_down("disconnected");
    clock.advance(chrono::Duration::seconds(11));
    b.step();
    let book = liq.book(&pair("BTC/USD"), clock.now()).unwrap();
    assert_eq!(book.venues, vec!["sim-b".to_string()]);
    assert!(liq.check_risk().is_active());
    liq.quote(&rfq).await.unwrap();

    // Both down and stale: trading halts by itself, and resumes.
    b.go_down("disconnected");
    clock.advance(chrono::Duration::seconds(11));
    assert!(matches!(
        liq.check_risk(),
        TradingState::Halted { manual: false, .. }
    ));
    assert!(liq.quote(&rfq).await.is_err());
    a.come_back();
    assert_eq!(liq.check_risk(), TradingState::Active);
    liq.quote(&rfq).await.unwrap();
    shutdown.cancel();
}
