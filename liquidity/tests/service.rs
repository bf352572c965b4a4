//! The service: quotes from live feeds, staleness and halts, signed quotes,
//! locks against limited inventory, expiry, execution and restore.

mod common;

use std::sync::Arc;

use common::*;
use liquidity::{
    Clock, Liquidity, LiquidityApi, LiquidityConfig, LiquidityError, LockStatus, ManualClock,
    PriceLock, TradingState, VenueFeed,
};
use proto::api::{AmountSide, ErrorCode, Quote, RfqRequest};
use proto::{Amount, Price, QuoteId, SwapId};
use tokio_util::sync::CancellationToken;

struct Setup {
    liq: Liquidity,
    clock: Arc<ManualClock>,
    feeds: Vec<Arc<TestFeed>>,
    _shutdown: tokio_util::sync::DropGuard,
}

fn start_with(cfg: LiquidityConfig, venues: &[&str]) -> Setup {
    let clock = Arc::new(ManualClock::new(t0()));
    let feeds: Vec<_> = venues
        .iter()
        .map(|v| {
            let f = TestFeed::new(v, &["BTC/USD", "ETH/USD", "USDC/USD"]);
            f.publish_all(usd_books(v, t0()));
            f
        })
        .collect();
    let shutdown = CancellationToken::new();
    let liq = Liquidity::start(
        cfg,
        feeds
            .iter()
            .map(|f| f.clone() as Arc<dyn VenueFeed>)
            .collect(),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .unwrap();
    Setup {
        liq,
        clock,
        feeds,
        _shutdown: shutdown.drop_guard(),
    }
}

fn start() -> Setup {
    start_with(config(), &["a"])
}

fn rfq(from: &str, to: &str, amount: &str) -> RfqRequest {
    RfqRequest {
        from: from.into(),
        to: to.into(),
        amount: amount.into(),
        amount_side: AmountSide::From,
    }
}

#[tokio::test]
async fn quote_is_signed_and_verifies_and_every_field_is_covered() {
    let s = start();
    let q = s.liq.quote(&rfq("BTC", "ETH", "0.5")).await.unwrap();
    assert_eq!(q.amount_in, "0.5");
    assert_eq!(q.amount_in_base_units, Amount::from_base_units(50_000_000));
    assert_eq!(q.expires_at - q.created_at, chrono::Duration::seconds(30));
    s.liq.verify(&q).unwrap();
    assert_eq!(s.liq.get_quote(q.quote_id).await.unwrap(), q);
    // The quote survives JSON (timestamps are whole milliseconds).
    let back: Quote = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
    s.liq.verify(&back).unwrap();

    type Change = Box<dyn Fn(&mut Quote)>;
    let changes: Vec<(&str, Change)> = vec![
        ("quote_id", Box::new(|q| q.quote_id = QuoteId::new())),
        ("from", Box::new(|q| q.from = id("USDC"))),
        ("to", Box::new(|q| q.to = id("BTC"))),
        ("amount_in", Box::new(|q| q.amount_in = "0.4".into())),
        (
            "amount_in_base_units",
            Box::new(|q| q.amount_in_base_units = Amount::from_base_units(1)),
        ),
        ("amount_out", Box::new(|q| q.amount_out.push('1'))),
        (
            "amount_out_base_units",
            Box::new(|q| {
                q.amount_out_base_units =
                    Amount::from_base_units(q.amount_out_base_units.base_units() + 1)
            }),
        ),
        (
            "price",
            Box::new(|q| q.price = Price(q.price.0 + d("0.000001"))),
        ),
        ("network_fee", Box::new(|q| q.network_fee = "1".into())),
        (
            "created_at",
            Box::new(|q| q.created_at -= chrono::Duration::milliseconds(1)),
        ),
        (
            "expires_at",
            Box::new(|q| q.expires_at += chrono::Duration::seconds(60)),
        ),
        (
            "signature",
            Box::new(|q| q.signature = q.signature.replace(&q.signature[..2], "00")),
        ),
    ];
    for (field, change) in changes {
        let mut bad = q.clone();
        change(&mut bad);
        assert_ne!(bad, q, "{field} did not change");
        let err = s.liq.verify(&bad).unwrap_err();
        assert!(
            matches!(err, LiquidityError::BadSignature(_)),
            "{field}: {err}"
        );
    }
    // Another key does not verify it.
    let mut other = config();
    other.signing_key_hex = "ff".repeat(32);
    let s2 = start_with(other, &["a"]);
    assert!(s2.liq.verify(&q).is_err());
}

#[tokio::test]
async fn requests_are_validated_with_clear_errors() {
    let s = start();
    let check = |r: Result<Quote, LiquidityError>, code: ErrorCode, msg: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().contains(msg), "{e:?} should say {msg:?}");
    };
    check(
        s.liq.quote(&rfq("DOGE", "ETH", "1")).await,
        ErrorCode::UnknownAsset,
        "unknown asset \"DOGE\"",
    );
    check(
        s.liq.quote(&rfq("btc", "ETH", "1")).await,
        ErrorCode::UnknownAsset,
        "btc",
    );
    check(
        s.liq.quote(&rfq("BTC", "BTC", "1")).await,
        ErrorCode::UnsupportedPair,
        "same asset",
    );
    check(
        s.liq.quote(&rfq("BTC", "ETH", "1.123456789")).await,
        ErrorCode::InvalidAmount,
        "has 9 decimal places",
    );
    check(
        s.liq.quote(&rfq("BTC", "ETH", "-1")).await,
        ErrorCode::InvalidAmount,
        "negative",
    );
    check(
        s.liq.quote(&rfq("BTC", "ETH", "abc")).await,
        ErrorCode::InvalidAmount,
        "not a decimal number",
    );
    check(
        s.liq.quote(&rfq("BTC", "ETH", "0")).await,
        ErrorCode::InvalidAmount,
        "more than zero",
    );
    check(
        s.liq
            .quote(&rfq("BTC", "ETH", "99999999999999999999999999999"))
            .await,
        ErrorCode::AmountTooLarge,
        "maximum of 10 BTC",
    );
    let mut to = rfq("BTC", "ETH", "1.5");
    to.amount_side = AmountSide::To;
    let q = s.liq.quote(&to).await.unwrap();
    assert_eq!(q.amount_out, "1.5");
}

#[tokio::test]
async fn a_stale_venue_is_left_out_and_all_stale_halts_trading() {
    let s = start_with(config(), &["a", "b"]);
    let (a, b) = (&s.feeds[0], &s.feeds[1]);
    // Venue b quotes BTC much higher; while fresh its bids are the best.
    b.publish(book("b", "BTC/USD", "100000", 20, "1", t0()));
    let with_b = s.liq.quote(&rfq("BTC", "USDC", "1")).await.unwrap();
    // 11 s later, only a is refreshed: b's book is stale and left out.
    s.clock.advance(chrono::Duration::seconds(11));
    let now = s.clock.now();
    a.publish_all(usd_books("a", now));
    let book = s.liq.book(&pair("BTC/USD"), now).unwrap();
    assert_eq!(book.venues, vec!["a".to_string()]);
    let without_b = s.liq.quote(&rfq("BTC", "USDC", "1")).await.unwrap();
    assert!(without_b.amount_out_base_units < with_b.amount_out_base_units);
    assert!(s.liq.check_risk().is_active());

    // Both stale: quotes are refused and trading halts by itself.
    s.clock.advance(chrono::Duration::seconds(11));
    let err = s.liq.quote(&rfq("BTC", "USDC", "1")).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            ErrorCode::Unavailable | ErrorCode::TradingHalted
        ),
        "{err}"
    );
    let state = s.liq.check_risk();
    let TradingState::Halted { reason, manual, .. } = &state else {
        panic!("{state:?}")
    };
    assert!(!manual);
    assert!(reason.contains("BTC/USD"), "{reason}");
    let err = s.liq.quote(&rfq("BTC", "USDC", "1")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TradingHalted);
    assert!(err.to_string().contains("every venue is stale"), "{err}");

    // Fresh again: trading resumes by itself.
    a.publish_all(usd_books("a", s.clock.now()));
    assert_eq!(s.liq.check_risk(), TradingState::Active);
    s.liq.quote(&rfq("BTC", "USDC", "1")).await.unwrap();
}

#[tokio::test]
async fn manual_halt_stops_quotes_and_locks_until_resumed() {
    let s = start();
    let q = s.liq.quote(&rfq("ETH", "BTC", "1")).await.unwrap();
    s.liq.halt("desk: exchange incident");
    let e = s.liq.quote(&rfq("ETH", "BTC", "1")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::TradingHalted);
    assert_eq!(e.to_string(), "trading is halted: desk: exchange incident");
    assert_eq!(
        s.liq
            .lock(q.quote_id, SwapId::new())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::TradingHalted
    );
    assert_eq!(
        s.liq.indicative(&pair("ETH/BTC")).await.unwrap_err().code(),
        ErrorCode::TradingHalted
    );
    // A manual halt is not lifted by fresh venues.
    assert!(!s.liq.check_risk().is_active());
    s.liq.resume();
    assert!(s.liq.trading_state().is_active());
    s.liq.lock(q.quote_id, SwapId::new()).await.unwrap();
}

#[tokio::test]
async fn indicative_ladder_prices_each_size_like_a_quote() {
    let s = start();
    let ladder = s.liq.indicative(&pair("BTC/ETH")).await.unwrap();
    assert_eq!(ladder.rungs.len(), 3);
    assert_eq!(
        ladder
            .rungs
            .iter()
            .map(|r| r.amount_in.as_str())
            .collect::<Vec<_>>(),
        ["0.01", "0.1", "1"]
    );
    for rung in &ladder.rungs {
        let q = s
            .liq
            .quote(&rfq("BTC", "ETH", &rung.amount_in))
            .await
            .unwrap();
        assert_eq!(q.amount_out, rung.amount_out);
        assert_eq!(q.price, rung.price);
    }
    assert!(ladder.rungs.windows(2).all(|w| w[1].price <= w[0].price));
}

#[tokio::test]
async fn same_quote_locked_by_two_swaps_one_wins() {
    let s = start();
    for _ in 0..20 {
        let q = s.liq.quote(&rfq("BTC", "ETH", "0.1")).await.unwrap();
        let (x, y) = (SwapId::new(), SwapId::new());
        let (l1, l2) = (s.liq.clone(), s.liq.clone());
        let (r1, r2) = tokio::join!(
            tokio::spawn(async move { l1.lock(q.quote_id, x).await }),
            tokio::spawn(async move { l2.lock(q.quote_id, y).await })
        );
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        assert!(r1.is_ok() != r2.is_ok(), "{r1:?} {r2:?}");
        let (winner, err) = match (r1, r2) {
            (Ok(l), Err(e)) | (Err(e), Ok(l)) => (l, e),
            _ => unreachable!(),
        };
        assert_eq!(err.code(), ErrorCode::QuoteAlreadyUsed);
        assert!(err.to_string().contains(&winner.swap_id.to_string()));
        // The winner locking again gets the same lock.
        assert_eq!(
            s.liq.lock(q.quote_id, winner.swap_id).await.unwrap(),
            winner
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_locks_never_exceed_inventory() {
    let mut cfg = config();
    // 1 BTC of inventory; each quote pays out about 0.0333 BTC.
    cfg.policies.get_mut(&id("BTC")).unwrap().inventory = Amount::from_base_units(100_000_000);
    let s = start_with(cfg, &["a"]);
    let mut quotes = Vec::new();
    for _ in 0..100 {
        quotes.push(s.liq.quote(&rfq("ETH", "BTC", "1")).await.unwrap());
    }
    let per = quotes[0].amount_out_base_units.base_units();
    let mut tasks = Vec::new();
    for q in &quotes {
        let liq = s.liq.clone();
        let id = q.quote_id;
        tasks.push(tokio::spawn(
            async move { liq.lock(id, SwapId::new()).await },
        ));
    }
    let mut won = 0u128;
    let mut reserved = 0u128;
    for t in tasks {
        match t.await.unwrap() {
            Ok(l) => {
                won += 1;
                reserved += l.reserved.base_units();
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::InsufficientLiquidity, "{e}");
                assert!(e.to_string().contains("not enough BTC inventory"), "{e}");
            }
        }
    }
    assert!(reserved <= 100_000_000, "reserved {reserved}");
    assert_eq!(won, 100_000_000 / per, "as many locks as fit");
    assert_eq!(
        s.liq.available_inventory(&id("BTC")).base_units(),
        100_000_000 - reserved
    );
    // Releasing one lets another in.
    let locked: Vec<PriceLock> = s.liq.locks();
    s.liq.release(locked[0].quote_id).await.unwrap();
    let refused = quotes
        .iter()
        .find(|q| !locked.iter().any(|l| l.quote_id == q.quote_id))
        .unwrap();
    s.liq.lock(refused.quote_id, SwapId::new()).await.unwrap();
}

#[tokio::test]
async fn expired_quote_is_refused() {
    let s = start();
    let q = s.liq.quote(&rfq("USDC", "ETH", "1000")).await.unwrap();
    s.clock
        .set(q.expires_at - chrono::Duration::milliseconds(1));
    for f in &s.feeds {
        f.publish_all(usd_books("a", s.clock.now()));
    }
    let early = SwapId::new();
    s.liq.lock(q.quote_id, early).await.unwrap();
    s.liq.release(q.quote_id).await.unwrap();
    s.clock.set(q.expires_at);
    let e = s.liq.lock(q.quote_id, SwapId::new()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::QuoteExpired);
    assert_eq!(
        e.to_string(),
        format!("quote {} expired at {}", q.quote_id, q.expires_at)
    );
    assert_eq!(
        s.liq
            .lock(QuoteId::new(), SwapId::new())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::QuoteNotFound
    );
}

#[tokio::test]
async fn execute_spends_inventory_once_and_restore_rebuilds_reservations() {
    let s = start();
    let btc = id("BTC");
    let start_inv = s.liq.available_inventory(&btc);
    let q1 = s.liq.quote(&rfq("ETH", "BTC", "3")).await.unwrap();
    let q2 = s.liq.quote(&rfq("ETH", "BTC", "6")).await.unwrap();
    let swap1 = SwapId::new();
    let l1 = s.liq.lock(q1.quote_id, swap1).await.unwrap();
    let l2 = s.liq.lock(q2.quote_id, SwapId::new()).await.unwrap();
    let out1 = q1.amount_out_base_units.base_units();
    let out2 = q2.amount_out_base_units.base_units();
    assert_eq!(
        s.liq.available_inventory(&btc).base_units(),
        start_inv.base_units() - out1 - out2
    );

    let mut executions = s.liq.subscribe_executions();
    s.liq
        .execute(q1.quote_id, q1.amount_in_base_units)
        .await
        .unwrap();
    s.liq
        .execute(q1.quote_id, q1.amount_in_base_units)
        .await
        .unwrap();
    let executed = executions.try_recv().unwrap();
    assert_eq!(
        (executed.quote_id, executed.status),
        (q1.quote_id, LockStatus::Executed)
    );
    assert!(executions.try_recv().is_err(), "executed twice");
    assert_eq!(
        s.liq.available_inventory(&btc).base_units(),
        start_inv.base_units() - out1 - out2
    );
    let exposure = s.liq.exposure();
    assert_eq!(exposure[&id("ETH")], d("3"));
    assert_eq!(
        exposure[&btc],
        -q1.amount_out_base_units.to_decimal(8).unwrap()
    );
    // Executed: used, for other swaps and for release.
    assert_eq!(
        s.liq
            .lock(q1.quote_id, SwapId::new())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::QuoteAlreadyUsed
    );
    assert_eq!(
        s.liq.release(q1.quote_id).await.unwrap_err().code(),
        ErrorCode::QuoteAlreadyUsed
    );
    assert_eq!(
        s.liq.lock(q1.quote_id, swap1).await.unwrap().status,
        LockStatus::Executed
    );
    assert_eq!(
        s.liq
            .execute(QuoteId::new(), Amount::ZERO)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::BadRequest
    );

    // A restart: a new engine, given back the persisted locks, long after
    // the quotes expired.
    let persisted: Vec<PriceLock> = s.liq.locks();
    assert_eq!(persisted.len(), 2);
    let r = start();
    r.clock.advance(chrono::Duration::hours(1));
    r.feeds[0].publish_all(usd_books("a", r.clock.now()));
    r.liq.restore(&persisted).unwrap();
    assert_eq!(
        r.liq.available_inventory(&btc).base_units(),
        start_inv.base_units() - out2
    );
    assert_eq!(r.liq.get_quote(q2.quote_id).await.unwrap(), q2);
    assert_eq!(r.liq.lock(q2.quote_id, l2.swap_id).await.unwrap(), l2);
    assert_eq!(
        r.liq
            .lock(q2.quote_id, SwapId::new())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::QuoteAlreadyUsed
    );
    r.liq
        .execute(q2.quote_id, q2.amount_in_base_units)
        .await
        .unwrap();
    assert_eq!(
        r.liq.lock(q1.quote_id, l1.swap_id).await.unwrap().status,
        LockStatus::Executed
    );
    // A tampered lock is refused.
    let mut bad = persisted[0].clone();
    bad.quote.amount_out_base_units = Amount::from_base_units(1);
    assert_eq!(
        start().liq.restore(&[bad]).unwrap_err().code(),
        ErrorCode::BadRequest
    );
}

#[tokio::test]
async fn quotes_beyond_inventory_are_refused() {
    let mut cfg = config();
    cfg.policies.get_mut(&id("BTC")).unwrap().inventory = Amount::from_base_units(1_000_000);
    let s = start_with(cfg, &["a"]);
    let e = s.liq.quote(&rfq("ETH", "BTC", "1")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientLiquidity);
    assert!(e.to_string().contains("0.01 BTC available"), "{e}");
}

#[test]
fn every_error_has_its_code() {
    use LiquidityError as E;
    let q = QuoteId::new();
    let cases = [
        (E::QuoteNotFound(q), ErrorCode::QuoteNotFound),
        (
            E::QuoteExpired {
                quote_id: q,
                expired_at: t0(),
            },
            ErrorCode::QuoteExpired,
        ),
        (
            E::QuoteAlreadyUsed {
                quote_id: q,
                swap_id: SwapId::new(),
            },
            ErrorCode::QuoteAlreadyUsed,
        ),
        (
            E::TradingHalted { reason: "x".into() },
            ErrorCode::TradingHalted,
        ),
        (E::UnknownAsset("X".into()), ErrorCode::UnknownAsset),
        (E::Internal("x".into()), ErrorCode::Internal),
    ];
    for (e, code) in cases {
        assert_eq!(e.code(), code);
        assert_eq!(e.to_api_error().message, e.to_string());
    }
}

#[tokio::test]
async fn a_bad_configuration_is_refused_at_start() {
    let try_start = |cfg: LiquidityConfig| {
        Liquidity::start(
            cfg,
            vec![],
            Arc::new(ManualClock::new(t0())) as Arc<dyn Clock>,
            CancellationToken::new(),
        )
        .unwrap_err()
        .to_string()
    };
    let mut short_key = config();
    short_key.signing_key_hex = "abcd".into();
    assert!(try_start(short_key).contains("at least 16 are needed"));
    let mut fees = config();
    fees.spread_bps = d("9950");
    assert!(try_start(fees).contains("together under 10000"));
    let mut limits = config();
    limits.policies.get_mut(&id("BTC")).unwrap().min_amount = d("100");
    assert!(try_start(limits).contains("BTC: min_amount 100 must be between 0 and max_amount 10"));
}

/// An execution that takes an exposure beyond its limit turns trading
/// `Reducing`: quotes that grow it are refused with a clear error, quotes
/// that shrink it are given, and trading is active again once it is back.
#[tokio::test]
async fn an_exposure_beyond_its_limit_allows_only_reducing_quotes() {
    let mut cfg = config();
    cfg.policies.get_mut(&id("ETH")).unwrap().max_exposure = Some(d("10"));
    let s = start_with(cfg, &["a"]);
    // Pay out about 15 ETH for 0.5 BTC: ETH exposure about -15.
    let q = s.liq.quote(&rfq("BTC", "ETH", "0.5")).await.unwrap();
    s.liq.lock(q.quote_id, SwapId::new()).await.unwrap();
    assert!(s.liq.trading_state().is_active());
    s.liq
        .execute(q.quote_id, q.amount_in_base_units)
        .await
        .unwrap();
    assert!(
        matches!(s.liq.trading_state(), TradingState::Reducing { ref reason, .. } if reason.contains("ETH exposure")),
        "{:?}",
        s.liq.trading_state()
    );
    // More ETH out: refused, with the reason.
    let err = s.liq.quote(&rfq("BTC", "ETH", "0.01")).await.unwrap_err();
    assert!(
        matches!(err, LiquidityError::ExposureLimit { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::TradingHalted);
    assert!(err.to_string().contains("reduce"), "{err}");
    // ETH in: given, and executing it brings trading back.
    let back = s.liq.quote(&rfq("ETH", "BTC", "8")).await.unwrap();
    s.liq.lock(back.quote_id, SwapId::new()).await.unwrap();
    s.liq
        .execute(back.quote_id, back.amount_in_base_units)
        .await
        .unwrap();
    assert_eq!(s.liq.trading_state(), TradingState::Active);
    s.liq.quote(&rfq("BTC", "ETH", "0.01")).await.unwrap();
}
