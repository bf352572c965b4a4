//! `rfq-pricing`: the time to price one request for quote (1 BTC to ETH,
//! crossed through BTC/USD and ETH/USD) from three venues' books of 50
//! levels a side: aggregate each market's three books, then walk, fee,
//! spread, skew and round ([`liquidity::pricing::price`]), as the service
//! does for every RFQ. The baseline, in the same run, walks one venue's
//! single BTC/USD book for the same size with no aggregation and nothing
//! else: the least any pricing could cost. Measurement and baseline
//! alternate for `rounds` rounds; the books come from the simulated venue's
//! seeded price paths.

use std::hint::black_box;
use std::time::{Duration, Instant};

use liquidity::book::aggregate;
use liquidity::pricing::{self, Books, Exposure, PriceRequest};
use liquidity::{Book, Decimal, Level, LiquidityConfig};
use proto::api::AmountSide;
use proto::{Amount, AssetId, Pair, Timestamp};
use serde_json::json;
use simulators::venue::{MarketSpec, PricePath};

use super::{BenchConfig, BenchError, Measurement};

const VENUES: u64 = 3;
const STEPS: u64 = 100;

fn invalid(what: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(format!("rfq-pricing setup: {what}"))
}

/// Three venues' books of `spec`'s market, 50 levels a side each.
fn books(spec: &MarketSpec, now: Timestamp) -> Vec<Book> {
    (0..VENUES)
        .map(|v| {
            let mut path = PricePath::new(spec.clone(), 1_000 + v);
            for _ in 0..STEPS {
                path.step();
            }
            let (bids, asks) = path.levels();
            Book {
                venue: format!("venue-{v}"),
                market: spec.market.clone(),
                bids,
                asks,
                sequence: STEPS,
                received_at: now,
            }
        })
        .collect()
}

/// The baseline: walk one book's levels for `base` units, volume-weighted.
fn walk(levels: &[Level], base: Decimal) -> Option<Decimal> {
    let (mut left, mut quote) = (base, Decimal::ZERO);
    for l in levels {
        if left.is_zero() {
            break;
        }
        let take = l.size.min(left);
        quote += take * l.price;
        left -= take;
    }
    left.is_zero().then_some(quote)
}

fn per_op_micros(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_secs_f64() * 1e6 / ops.max(1) as f64
}

/// Runs `op` for about `budget`, returns the operations done and the time.
fn timed(budget: Duration, mut op: impl FnMut() -> bool) -> Result<(u64, Duration), BenchError> {
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            if !op() {
                return Err(invalid("an operation failed while measuring"));
            }
        }
        ops += 64;
    }
    Ok((ops, start.elapsed()))
}

pub async fn run(cfg: &BenchConfig) -> Result<Measurement, BenchError> {
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().map_err(invalid)?;
    let stale_after = now
        - "2025-12-31T23:59:50Z"
            .parse::<Timestamp>()
            .map_err(invalid)?;
    let assets = swapd::embedded::assets();
    let lcfg = LiquidityConfig::dev(assets.clone(), &"ab".repeat(32));
    let btc_id = AssetId::new("BTC").map_err(invalid)?;
    let eth_id = AssetId::new("ETH").map_err(invalid)?;
    let btc = assets.get(&btc_id).map_err(invalid)?;
    let eth = assets.get(&eth_id).map_err(invalid)?;
    let one_btc = Decimal::ONE;
    let req = PriceRequest {
        from: btc,
        to: eth,
        amount: Amount::from_decimal_floor(one_btc, btc.decimals).map_err(invalid)?,
        side: AmountSide::From,
    };
    let markets: Vec<Pair> = pricing::markets_for(&lcfg, &btc_id, &eth_id).map_err(invalid)?;
    let specs = [MarketSpec::btc_usd(), MarketSpec::eth_usd()];
    let venue_books: Vec<(Pair, Vec<Book>)> = specs
        .iter()
        .map(|s| (s.market.clone(), books(s, now)))
        .collect();
    let exposure = Exposure::new();
    let rfq = || -> bool {
        let mut agg = Books::new();
        for m in &markets {
            let Some((_, bs)) = venue_books.iter().find(|(vm, _)| vm == m) else {
                return false;
            };
            match aggregate(m, bs.iter(), now, stale_after) {
                Ok(a) => {
                    agg.insert(m.clone(), a);
                }
                Err(_) => return false,
            }
        }
        black_box(pricing::price(&lcfg, black_box(&agg), &exposure, &req)).is_ok()
    };
    let single = &venue_books[0].1[0];
    let baseline_op = || black_box(walk(black_box(&single.bids), black_box(one_btc))).is_some();
    if !rfq() || !baseline_op() {
        return Err(invalid("the RFQ or the walk does not price"));
    }

    let rounds = cfg.rounds.max(1);
    let budget = cfg.duration / 2;
    let (mut m_ops, mut m_time, mut b_ops, mut b_time) =
        (0u64, Duration::ZERO, 0u64, Duration::ZERO);
    for _ in 0..rounds {
        let (n, t) = timed(budget, rfq)?;
        m_ops += n;
        m_time += t;
        let (n, t) = timed(budget, baseline_op)?;
        b_ops += n;
        b_time += t;
        tokio::task::yield_now().await;
    }
    // Where an RFQ's time goes: aggregation alone, pricing alone.
    let aggregate_only = || {
        venue_books
            .iter()
            .all(|(m, bs)| black_box(aggregate(m, bs.iter(), now, stale_after)).is_ok())
    };
    let (n, t) = timed(budget, aggregate_only)?;
    let aggregate_us = per_op_micros(t, n);
    let mut agg = Books::new();
    for (m, bs) in &venue_books {
        agg.insert(
            m.clone(),
            aggregate(m, bs.iter(), now, stale_after).map_err(invalid)?,
        );
    }
    let price_only = || black_box(pricing::price(&lcfg, black_box(&agg), &exposure, &req)).is_ok();
    let (n, t) = timed(budget, price_only)?;
    let price_us = per_op_micros(t, n);
    let value = per_op_micros(m_time, m_ops);
    let baseline = per_op_micros(b_time, b_ops);
    Ok(Measurement {
        value: (value * 1000.0).round() / 1000.0,
        unit: "us/rfq",
        baseline: (baseline * 1000.0).round() / 1000.0,
        goal: "<=100",
        detail: json!({
            "rfq": "1 BTC -> ETH via BTC/USD and ETH/USD",
            "venues": VENUES,
            "levels_per_side": 50,
            "baseline": "walk one venue's BTC/USD bids for 1 BTC, no aggregation",
            "rfq_per_s": (1e6 / value).round(),
            "walks_per_s": (1e6 / baseline).round(),
            "rfqs": m_ops,
            "walks": b_ops,
            "rounds": rounds,
            "aggregate_both_markets_us": (aggregate_us * 1000.0).round() / 1000.0,
            "price_from_aggregated_us": (price_us * 1000.0).round() / 1000.0,
        }),
    })
}
