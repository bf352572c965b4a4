//! Pricing properties: size-exact, never extrapolated, monotone in size,
//! rounded for the house, crossed pairs priced as the composition of legs.

mod common;

use common::*;
use liquidity::book::aggregate;
use liquidity::pricing::{price, price_with_partner_fee, Books, Exposure, PriceRequest, Priced};
use liquidity::{Book, Level, LiquidityConfig, LiquidityError};
use proptest::prelude::*;
use proto::api::{AmountSide, ErrorCode};
use proto::{Amount, AssetSpec};
use rust_decimal::Decimal;

fn books_from(list: Vec<Book>) -> Books {
    let mut by_market = std::collections::BTreeMap::<proto::Pair, Vec<Book>>::new();
    for b in list {
        by_market.entry(b.market.clone()).or_default().push(b);
    }
    by_market
        .into_iter()
        .map(|(m, bs)| {
            let agg = aggregate(&m, bs.iter(), t0(), chrono::Duration::seconds(10)).unwrap();
            (m, agg)
        })
        .collect()
}

/// A configuration without limits in the way of the properties.
fn open_config() -> LiquidityConfig {
    let mut cfg = config();
    for p in cfg.policies.values_mut() {
        p.min_amount = Decimal::ZERO;
        p.max_amount = d("1000000000");
    }
    cfg.max_notional_usd = d("1000000000000");
    cfg
}

fn spec(cfg: &LiquidityConfig, t: &str) -> AssetSpec {
    cfg.assets.get(&id(t)).unwrap().clone()
}

fn run(
    cfg: &LiquidityConfig,
    books: &Books,
    from: &str,
    to: &str,
    amount: &str,
    side: AmountSide,
) -> Result<Priced, LiquidityError> {
    let (f, t) = (spec(cfg, from), spec(cfg, to));
    let decimals = match side {
        AmountSide::From => f.decimals,
        AmountSide::To => t.decimals,
    };
    let amount = Amount::parse_decimal(amount, decimals).unwrap();
    price(
        cfg,
        books,
        &Exposure::new(),
        &PriceRequest {
            from: &f,
            to: &t,
            amount,
            side,
        },
    )
}

fn whole(a: Amount, decimals: u8) -> Decimal {
    a.to_decimal(decimals).unwrap()
}

/// Reference walks, written apart from the engine's.
fn ref_sell_base(bids: &[Level], mut qty: Decimal) -> Option<Decimal> {
    let mut got = Decimal::ZERO;
    for l in bids {
        let q = qty.min(l.size);
        got += q * l.price;
        qty -= q;
    }
    qty.is_zero().then_some(got)
}

fn ref_buy_with_quote(asks: &[Level], mut spend: Decimal) -> Option<Decimal> {
    let mut got = Decimal::ZERO;
    for l in asks {
        if spend.is_zero() {
            break;
        }
        let cost = l.price * l.size;
        if cost <= spend {
            got += l.size;
            spend -= cost;
        } else {
            got += spend / l.price;
            spend = Decimal::ZERO;
        }
    }
    spend.is_zero().then_some(got)
}

/// A random side of a book: gaps between levels (in cents) and sizes (in
/// thousandths).
fn side() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((1u32..50_000, 1u32..3_000), 1..25)
}

fn random_book(market: &str, mid: Decimal, bids: &[(u32, u32)], asks: &[(u32, u32)]) -> Book {
    let mk = |levels: &[(u32, u32)], sign: Decimal| {
        let mut p = mid;
        levels
            .iter()
            .map(|(gap, size)| {
                p += sign * Decimal::new(i64::from(*gap), 2);
                Level::new(p, Decimal::new(i64::from(*size), 3))
            })
            .filter(|l| l.price > Decimal::ZERO)
            .collect::<Vec<_>>()
    };
    Book {
        venue: "v".into(),
        market: pair(market),
        bids: mk(bids, -Decimal::ONE),
        asks: mk(asks, Decimal::ONE),
        sequence: 1,
        received_at: t0(),
    }
}

/// Bid and ask levels as (gap, size) draws.
type Sides<'a> = (&'a [(u32, u32)], &'a [(u32, u32)]);

fn random_books(btc: Sides<'_>, eth: Sides<'_>) -> Books {
    let mut eth_book = random_book("ETH/USD", d("3000"), eth.0, eth.1);
    // ETH levels are bigger: scale sizes by 30.
    for l in eth_book.bids.iter_mut().chain(eth_book.asks.iter_mut()) {
        l.size *= Decimal::from(30);
    }
    let mut list = vec![random_book("BTC/USD", d("90000"), btc.0, btc.1), eth_book];
    list.push(usd_books("v", t0()).pop().unwrap());
    books_from(list)
}

const PAIRS: [(&str, &str); 6] = [
    ("BTC", "USDC"),
    ("USDC", "BTC"),
    ("BTC", "ETH"),
    ("ETH", "BTC"),
    ("ETH", "USDC"),
    ("USDC", "ETH"),
];

fn size_for(asset: &str, milli: u32) -> String {
    let scale = match asset {
        "BTC" => Decimal::new(1, 3),
        "ETH" => Decimal::new(3, 2),
        _ => Decimal::from(90),
    };
    (scale * Decimal::from(milli)).normalize().to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A bigger size never gets a better rate, on either side of the
    /// request, for direct and crossed pairs.
    #[test]
    fn bigger_size_never_gets_a_better_price(
        btc_bids in side(), btc_asks in side(), eth_bids in side(), eth_asks in side(),
        pair_index in 0usize..PAIRS.len(), a in 1u32..20_000, b in 1u32..20_000,
        to_side in any::<bool>(),
    ) {
        let cfg = open_config();
        let books = random_books((&btc_bids, &btc_asks), (&eth_bids, &eth_asks));
        let (from, to) = PAIRS[pair_index];
        let (small, big) = (a.min(b), a.max(b));
        let (side, unit) = if to_side { (AmountSide::To, to) } else { (AmountSide::From, from) };
        let p_small = run(&cfg, &books, from, to, &size_for(unit, small), side);
        let p_big = run(&cfg, &books, from, to, &size_for(unit, big), side);
        if let (Ok(s), Ok(g)) = (&p_small, &p_big) {
            // Decimal division keeps 28 digits: allow for its last one.
            let tolerance = s.rate * Decimal::new(1, 20);
            prop_assert!(g.rate <= s.rate + tolerance, "{from}->{to} {side:?}: {big} got {} > {small} got {}", g.rate, s.rate);
        }
        // If the small size is short of depth, the big one is too.
        if let Err(e) = &p_small {
            if e.code() == ErrorCode::InsufficientLiquidity {
                prop_assert_eq!(p_big.unwrap_err().code(), ErrorCode::InsufficientLiquidity);
            }
        }
    }

    /// What the house pays is at most the exact value, by less than one base
    /// unit; what it asks is at least the exact value, by less than one.
    #[test]
    fn rounding_never_favours_the_client(
        btc_bids in side(), btc_asks in side(), eth_bids in side(), eth_asks in side(),
        pair_index in 0usize..PAIRS.len(), size in 1u32..20_000, extra in 0u32..1000, to_side in any::<bool>(),
    ) {
        let mut cfg = open_config();
        cfg.policies.get_mut(&id("ETH")).unwrap().network_fee = Amount::from_base_units(123_456_789);
        let books = random_books((&btc_bids, &btc_asks), (&eth_bids, &eth_asks));
        let (from, to) = PAIRS[pair_index];
        let (side, unit) = if to_side { (AmountSide::To, to) } else { (AmountSide::From, from) };
        // Odd digits, so that amounts are not round.
        let amount = format!("{}{}", size_for(unit, size), if size_for(unit, size).contains('.') { format!("{extra}") } else { format!(".{extra}") });
        let amount = Decimal::from_str_exact(&amount).unwrap().round_dp(spec(&cfg, unit).decimals as u32).to_string();
        if let Ok(p) = run(&cfg, &books, from, to, &amount, side) {
            let (fd, td) = (spec(&cfg, from).decimals, spec(&cfg, to).decimals);
            let out = whole(p.amount_out, td);
            let inn = whole(p.amount_in, fd);
            prop_assert!(out <= p.amount_out_exact, "paid {out} > exact {}", p.amount_out_exact);
            prop_assert!(p.amount_out_exact - out < Decimal::new(1, td as u32));
            prop_assert!(inn >= p.amount_in_exact, "asked {inn} < exact {}", p.amount_in_exact);
            prop_assert!(inn - p.amount_in_exact < Decimal::new(1, fd as u32));
        }
    }

    /// A size beyond the book's depth is refused, never extrapolated.
    #[test]
    fn refuses_sizes_beyond_depth(btc_bids in side(), btc_asks in side(), over_milli in 1u32..1_000_000) {
        let cfg = open_config();
        let books = random_books((&btc_bids, &btc_asks), (&[(1, 1000)], &[(1, 1000)]));
        let depth: Decimal = books[&pair("BTC/USD")].bids.iter().map(|l| l.size).sum();
        let size = depth + Decimal::new(i64::from(over_milli), 8);
        let err = run(&cfg, &books, "BTC", "USDC", &size.normalize().to_string(), AmountSide::From).unwrap_err();
        prop_assert_eq!(err.code(), ErrorCode::InsufficientLiquidity, "{}", err);
        // Exactly the depth is fine.
        prop_assert!(run(&cfg, &books, "BTC", "USDC", &depth.normalize().to_string(), AmountSide::From).is_ok());
    }

    /// BTC→ETH is selling BTC on BTC/USD bids, then buying ETH with the
    /// proceeds on ETH/USD asks, fee on each leg, spread once.
    #[test]
    fn crossed_pair_is_the_composition_of_its_legs(
        btc_bids in side(), btc_asks in side(), eth_bids in side(), eth_asks in side(), size in 1u32..20_000,
    ) {
        let cfg = open_config();
        let books = random_books((&btc_bids, &btc_asks), (&eth_bids, &eth_asks));
        let amount = size_for("BTC", size);
        let x = d(&amount);
        let fee = Decimal::ONE - cfg.venue_fee_bps / Decimal::from(10_000);
        let spread = Decimal::ONE - cfg.spread_bps / Decimal::from(10_000);
        let usd = ref_sell_base(&books[&pair("BTC/USD")].bids, x).map(|u| u * fee);
        let eth = usd.and_then(|u| ref_buy_with_quote(&books[&pair("ETH/USD")].asks, u));
        match (run(&cfg, &books, "BTC", "ETH", &amount, AmountSide::From), eth) {
            (Ok(p), Some(eth)) => {
                let expect = eth * fee * spread;
                let diff = (p.amount_out_exact - expect).abs();
                prop_assert!(diff <= expect * Decimal::new(1, 20), "{} vs {}", p.amount_out_exact, expect);
                prop_assert_eq!(p.notional_usd, usd);
            }
            (Err(e), None) => prop_assert_eq!(e.code(), ErrorCode::InsufficientLiquidity),
            (got, expect) => prop_assert!(false, "engine {got:?}, reference {expect:?}"),
        }
    }

    /// Asking for an exact output, then pricing the input it needs, gives
    /// back at least that output (the two sides agree).
    #[test]
    fn exact_out_and_exact_in_agree(size in 1u32..5_000, pair_index in 0usize..PAIRS.len()) {
        let cfg = open_config();
        let books = books_from(usd_books("v", t0()));
        let (from, to) = PAIRS[pair_index];
        let want = size_for(to, size);
        let Ok(q) = run(&cfg, &books, from, to, &want, AmountSide::To) else { return Ok(()); };
        let back = run(&cfg, &books, from, to, &q.amount_in.to_decimal_string(spec(&cfg, from).decimals), AmountSide::From).unwrap();
        prop_assert!(back.amount_out >= q.amount_out, "sent {} for {}, got {}", q.amount_in, q.amount_out, back.amount_out);
    }
}

#[test]
fn single_leg_price_is_vwap_less_fee_and_spread() {
    let cfg = config();
    let books = books_from(usd_books("v", t0()));
    // Best BTC/USD bid: 90000 * (1 - 2bp) = 89982, size 1; next 89937, size 2.
    let p = run(&cfg, &books, "BTC", "USDC", "2", AmountSide::From).unwrap();
    let usd = d("89982") + d("89937");
    let fee = d("0.999");
    let usdc = usd * fee / d("1.0001") * fee * d("0.998");
    assert_eq!(p.amount_out_exact, usdc);
    assert_eq!(p.amount_out, Amount::from_decimal_floor(usdc, 6).unwrap());
    assert_eq!(p.amount_in, Amount::from_base_units(200_000_000));
    assert_eq!(
        p.price.0,
        (whole(p.amount_out, 6) / d("2"))
            .round_sf_with_strategy(12, rust_decimal::RoundingStrategy::ToZero)
            .unwrap()
            .normalize()
    );
}

#[test]
fn partner_fee_is_added_to_the_clients_cost_and_reported() {
    let cfg = config();
    let books = books_from(usd_books("v", t0()));
    let (btc, usdc) = (spec(&cfg, "BTC"), spec(&cfg, "USDC"));
    let with_fee = |amount: u128, side: AmountSide, bps: &str| {
        let (from, to) = match side {
            AmountSide::From => (&btc, &usdc),
            AmountSide::To => (&usdc, &btc),
        };
        price_with_partner_fee(
            &cfg,
            &books,
            &Exposure::new(),
            &PriceRequest {
                from,
                to,
                amount: Amount::from_base_units(amount),
                side,
            },
            d(bps),
        )
    };
    // Selling 2 BTC: the same walk as without a partner, with 30 bp more
    // taken before the house's 20 bp spread is applied to what is left.
    let p = with_fee(200_000_000, AmountSide::From, "30").unwrap();
    let walked = (d("89982") + d("89937")) * d("0.999") / d("1.0001") * d("0.999");
    assert_eq!(p.amount_out_exact, walked * d("0.995"));
    assert_eq!(
        p.partner_fee,
        Some(Amount::from_decimal_floor(walked * d("0.003"), 6).unwrap())
    );
    let plain = with_fee(200_000_000, AmountSide::From, "0").unwrap();
    assert_eq!(plain.partner_fee, None);
    assert_eq!(plain.amount_out_exact, walked * d("0.998"));
    // What the client gets plus the partner's fee is at most what it got
    // without a partner (the fee is rounded down, the payout too).
    assert!(
        whole(p.amount_out, 6) + whole(p.partner_fee.unwrap(), 6) <= whole(plain.amount_out, 6)
    );
    // Exact output: the client sends more for the same BTC.
    let a = with_fee(10_000_000, AmountSide::To, "50").unwrap();
    let b = with_fee(10_000_000, AmountSide::To, "0").unwrap();
    assert_eq!(a.amount_out, b.amount_out);
    assert!(a.amount_in > b.amount_in);
    assert!(a.partner_fee.unwrap() > Amount::ZERO);
    // The same call with no partner is `price`.
    assert_eq!(
        plain,
        run(&cfg, &books, "BTC", "USDC", "2", AmountSide::From).unwrap()
    );
    // A fee that is negative or takes everything is refused.
    for bad in ["-1", "10000"] {
        let err = with_fee(200_000_000, AmountSide::From, bad).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest, "{bad}");
    }
}

#[test]
fn network_fee_comes_out_of_the_payout() {
    let mut cfg = config();
    let books = books_from(usd_books("v", t0()));
    let without = run(&cfg, &books, "USDC", "BTC", "1000", AmountSide::From).unwrap();
    cfg.policies.get_mut(&id("BTC")).unwrap().network_fee = Amount::from_base_units(2_000);
    let with = run(&cfg, &books, "USDC", "BTC", "1000", AmountSide::From).unwrap();
    assert_eq!(
        with.amount_out_exact,
        without.amount_out_exact - d("0.00002")
    );
    assert_eq!(with.network_fee, Amount::from_base_units(2_000));
    // Exact output: the client gets what it asked; it pays for the fee.
    let a = run(&cfg, &books, "USDC", "BTC", "0.01", AmountSide::To).unwrap();
    assert_eq!(a.amount_out, Amount::from_base_units(1_000_000));
    let fee_free = {
        cfg.policies.get_mut(&id("BTC")).unwrap().network_fee = Amount::ZERO;
        run(&cfg, &books, "USDC", "BTC", "0.01", AmountSide::To).unwrap()
    };
    assert!(a.amount_in > fee_free.amount_in);
    // A size that does not cover the fee is refused.
    cfg.policies.get_mut(&id("BTC")).unwrap().network_fee = Amount::from_base_units(100_000_000);
    cfg.policies.get_mut(&id("USDC")).unwrap().min_amount = Decimal::ZERO;
    let err = run(&cfg, &books, "USDC", "BTC", "1000", AmountSide::From).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AmountTooSmall);
    assert!(
        err.to_string()
            .contains("does not cover the payout's network fee of 1 BTC"),
        "{err}"
    );
}

#[test]
fn limits_name_the_asset_and_the_limit() {
    let cfg = config();
    let books = books_from(usd_books("v", t0()));
    let err = run(&cfg, &books, "BTC", "ETH", "0.00001", AmountSide::From).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AmountTooSmall);
    assert_eq!(
        err.to_string(),
        "amount 0.00001 BTC is below the minimum of 0.0001 BTC"
    );
    let err = run(&cfg, &books, "BTC", "ETH", "11", AmountSide::From).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AmountTooLarge);
    assert_eq!(
        err.to_string(),
        "amount 11 BTC is above the maximum of 10 BTC"
    );
    // The side the client did not fix is checked too: 9 BTC is 270 ETH, fine;
    // asking 301 ETH is over ETH's maximum.
    let err = run(&cfg, &books, "BTC", "ETH", "301", AmountSide::To).unwrap_err();
    assert_eq!(
        err.to_string(),
        "amount 301 ETH is above the maximum of 300 ETH"
    );
    let mut small = cfg.clone();
    small.max_notional_usd = d("50000");
    let err = run(&small, &books, "BTC", "ETH", "1", AmountSide::From).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AmountTooLarge);
    assert!(
        err.to_string()
            .contains("above the maximum of 50000 USD per quote"),
        "{err}"
    );
}

#[test]
fn depth_error_says_where_and_how_much() {
    let cfg = open_config();
    let books = books_from(usd_books("v", t0()));
    // BTC/USD bids hold 1+2+...+20 = 210 BTC.
    let err = run(&cfg, &books, "BTC", "USDC", "211", AmountSide::From).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not enough liquidity on BTC/USD: bids has 210 BTC of depth, 211 BTC needed"
    );
}

#[test]
fn inventory_skew_worsens_the_side_that_grows_exposure() {
    let mut cfg = config();
    cfg.policies.get_mut(&id("BTC")).unwrap().skew_bps_per_unit = d("2");
    let books = books_from(usd_books("v", t0()));
    let (btc, usdc) = (spec(&cfg, "BTC"), spec(&cfg, "USDC"));
    let one_btc = Amount::from_base_units(100_000_000);
    let flat = Exposure::new();
    let long: Exposure = [(id("BTC"), d("10"))].into();
    let sell_btc = |e: &Exposure| {
        price(
            &cfg,
            &books,
            e,
            &PriceRequest {
                from: &btc,
                to: &usdc,
                amount: one_btc,
                side: AmountSide::From,
            },
        )
        .unwrap()
    };
    let buy_btc = |e: &Exposure| {
        price(
            &cfg,
            &books,
            e,
            &PriceRequest {
                from: &usdc,
                to: &btc,
                amount: one_btc,
                side: AmountSide::To,
            },
        )
        .unwrap()
    };
    // Long 10 BTC: taking more BTC in is priced 20 bp worse ...
    assert_eq!(sell_btc(&long).skew_bps, d("20"));
    assert!(sell_btc(&long).amount_out < sell_btc(&flat).amount_out);
    // ... and paying BTC out (shrinking the exposure) 20 bp better.
    assert_eq!(buy_btc(&long).skew_bps, d("-20"));
    assert!(buy_btc(&long).amount_in < buy_btc(&flat).amount_in);
    // The skew is capped.
    let very_long: Exposure = [(id("BTC"), d("1000"))].into();
    assert_eq!(sell_btc(&very_long).skew_bps, cfg.max_skew_bps);
}

#[test]
fn direct_market_is_used_when_configured_and_unknown_routes_refused() {
    let mut cfg = config();
    let mut list = usd_books("v", t0());
    list.push(book("v", "ETH/BTC", "0.0333", 10, "10", t0()));
    let books = books_from(list);
    cfg.markets.push(pair("ETH/BTC"));
    let p = run(&cfg, &books, "BTC", "ETH", "0.1", AmountSide::From).unwrap();
    // One leg: buy ETH with the BTC on ETH/BTC asks.
    let best_ask = books[&pair("ETH/BTC")].asks[0].price;
    let expect = d("0.1") / best_ask * d("0.999") * d("0.998");
    assert_eq!(p.amount_out_exact, expect);
    // A pair with no route.
    cfg.markets.retain(|m| m.base != id("ETH"));
    let err = run(&cfg, &books, "USDC", "ETH", "100", AmountSide::From).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnsupportedPair);
}

#[test]
fn stale_and_crossed_books_are_left_out() {
    let now = t0();
    let stale_after = chrono::Duration::seconds(10);
    let fresh = book(
        "fresh",
        "BTC/USD",
        "90000",
        5,
        "1",
        now - chrono::Duration::seconds(10),
    );
    let stale = book(
        "stale",
        "BTC/USD",
        "80000",
        5,
        "1",
        now - chrono::Duration::seconds(11),
    );
    let mut crossed = book("crossed", "BTC/USD", "95000", 5, "1", now);
    crossed.asks[0].price = d("1");
    let agg = aggregate(
        &pair("BTC/USD"),
        [&fresh, &stale, &crossed],
        now,
        stale_after,
    )
    .unwrap();
    assert_eq!(agg.venues, vec!["fresh".to_string()]);
    assert_eq!(agg.bids, fresh.bids);
    let err = aggregate(&pair("BTC/USD"), [&stale], now, stale_after).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert!(
        err.to_string()
            .contains("every venue is stale (stale last updated"),
        "{err}"
    );
}

#[test]
fn aggregation_merges_levels_across_venues() {
    let a = book("a", "BTC/USD", "90000", 3, "1", t0());
    let b = book("b", "BTC/USD", "90000", 3, "2", t0());
    let agg = aggregate(
        &pair("BTC/USD"),
        [&a, &b],
        t0(),
        chrono::Duration::seconds(10),
    )
    .unwrap();
    assert_eq!(agg.bids.len(), 3);
    assert_eq!(agg.bids[0], Level::new(a.bids[0].price, d("3")));
    assert!(agg.bids.windows(2).all(|w| w[0].price > w[1].price));
    assert!(agg.asks.windows(2).all(|w| w[0].price < w[1].price));
}

#[test]
fn absurd_venue_levels_are_left_out_not_a_panic() {
    let mut b = book("v", "BTC/USD", "90000", 3, "1", t0());
    b.bids.push(Level::new(d("80000"), d("1e20")));
    b.asks.push(Level::new(d("1e27"), d("5")));
    let agg = aggregate(&pair("BTC/USD"), [&b], t0(), chrono::Duration::seconds(10)).unwrap();
    assert_eq!(agg.bids.len(), 3);
    assert_eq!(agg.asks.len(), 3);
    let cfg = open_config();
    let books = books_from(vec![b, usd_books("v", t0()).pop().unwrap()]);
    // 1 + 2 + 3 BTC of sane bids: 100 BTC is refused, not filled by the
    // absurd level.
    let err = run(&cfg, &books, "BTC", "USDC", "100", AmountSide::From).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientLiquidity, "{err}");
}
