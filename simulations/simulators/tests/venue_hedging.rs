//! Hedging against the simulated venue's signed order endpoint: an executed
//! swap places its hedge orders (sell the deposit, buy back the payout)
//! with client order ids persisted before sending; fills, partial fills and
//! rejects are recorded; a venue that is down, or slower than the client's
//! timeout, is retried with the same ids and never fills one order twice;
//! a restart resends what was pending; attempts run out into `gave_up`;
//! bad credentials are refused; the hedge position and P&L follow the fills.

use std::sync::Arc;
use std::time::Duration;

use liquidity::hedge::{self, HedgeSide, HedgeStatus};
use liquidity::venue::orders::{ApiCredentials, OrderVenue, RestOrderVenue};
use liquidity::{
    Clock, HedgeConfig, HedgeOrder, Hedger, Liquidity, LiquidityApi, LiquidityConfig, ManualClock,
    VenueFeed,
};
use proto::api::{AmountSide, RfqRequest};
use proto::{
    AssetId, AssetKind, AssetSpec, Assets, BitcoinNetwork, EthereumNetwork, Network, SwapId,
};
use rust_decimal::Decimal;
use simulators::venue::server::{OrderMode, VenueServer};
use simulators::venue::{SimVenue, SimVenueConfig};
use tokio_util::sync::CancellationToken;

fn assets() -> Assets {
    let spec = |t: &str, network, decimals| AssetSpec {
        id: AssetId::new(t).unwrap(),
        network,
        kind: AssetKind::Native,
        decimals,
    };
    Assets::new([
        spec("BTC", Network::Bitcoin(BitcoinNetwork::Regtest), 8),
        spec("ETH", Network::Ethereum(EthereumNetwork::Dev), 18),
    ])
}

fn creds() -> ApiCredentials {
    ApiCredentials::new("desk-key", b"desk-secret")
}

struct Rig {
    _dir: tempfile::TempDir,
    db: infra::db::Db,
    clock: Arc<ManualClock>,
    server: VenueServer,
    liq: Liquidity,
    hedger: Hedger,
    hedger_stop: CancellationToken,
    shutdown: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.hedger_stop.cancel();
        self.shutdown.cancel();
    }
}

fn quick(max_attempts: u32) -> HedgeConfig {
    HedgeConfig {
        max_attempts,
        first_backoff: Duration::from_millis(30),
        max_backoff: Duration::from_millis(150),
    }
}

fn order_venue(server: &VenueServer, c: ApiCredentials, timeout: Duration) -> Arc<dyn OrderVenue> {
    Arc::new(RestOrderVenue::new("sim", &server.orders_url(), c, timeout).unwrap())
}

async fn rig(client: ApiCredentials, cfg: HedgeConfig, timeout: Duration) -> Rig {
    let clock = Arc::new(ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap()));
    let shutdown = CancellationToken::new();
    let mut vcfg = SimVenueConfig::new("sim", 5);
    vcfg.clock = clock.clone() as Arc<dyn Clock>;
    let sim = SimVenue::new(vcfg);
    let server = VenueServer::start(
        sim.clone(),
        "127.0.0.1:0".parse().unwrap(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    server.require_credentials(creds());
    let config = LiquidityConfig::dev(assets(), &"ab".repeat(32));
    let liq = Liquidity::start(
        config.clone(),
        vec![sim as Arc<dyn VenueFeed>],
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = infra::db::Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await
    .unwrap();
    let hedger_stop = CancellationToken::new();
    let hedger = Hedger::start(
        db.clone(),
        order_venue(&server, client, timeout),
        config,
        cfg,
        clock.clone() as Arc<dyn Clock>,
        hedger_stop.clone(),
    )
    .await
    .unwrap();
    liq.attach_hedger(hedger.clone()).unwrap();
    Rig {
        _dir: dir,
        db,
        clock,
        server,
        liq,
        hedger,
        hedger_stop,
        shutdown,
    }
}

/// Quotes 0.01 BTC for ETH, locks and executes it; returns the lock.
async fn swap(r: &Rig) -> liquidity::PriceLock {
    let q = r
        .liq
        .quote(&RfqRequest {
            from: "BTC".into(),
            to: "ETH".into(),
            amount: "0.01".into(),
            amount_side: AmountSide::From,
        })
        .await
        .unwrap();
    let lock = r.liq.lock(q.quote_id, SwapId::new()).await.unwrap();
    let started = std::time::Instant::now();
    r.liq
        .execute(q.quote_id, q.amount_in_base_units)
        .await
        .unwrap();
    // The swap never waits on the venue.
    assert!(started.elapsed() < Duration::from_millis(100));
    lock
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn all_final(orders: &[HedgeOrder]) -> bool {
    orders.len() == 2 && orders.iter().all(|o| o.status.is_final())
}

/// Each venue report names one of our orders, once.
fn one_report_per_order(r: &Rig) {
    let reports = r.server.order_reports();
    let mut ids: Vec<_> = reports.iter().map(|x| x.cl_ord_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), reports.len());
    for o in r.liq.hedges() {
        let rep: Vec<_> = reports
            .iter()
            .filter(|x| x.cl_ord_id == o.client_order_id)
            .collect();
        assert!(rep.len() <= 1);
        if let Some(rep) = rep.first() {
            assert_eq!(o.venue_order_id.as_deref(), Some(rep.order_id.as_str()));
            assert_eq!(o.filled_qty, rep.filled_qty);
        }
    }
}

#[tokio::test]
async fn an_executed_swap_is_hedged_on_both_legs_and_its_pnl_follows() {
    let r = rig(creds(), quick(4), Duration::from_secs(5)).await;
    let lock = swap(&r).await;
    until("both legs filled", || all_final(&r.liq.hedges())).await;
    let orders = r.liq.hedges();
    let sell = orders.iter().find(|o| o.side == HedgeSide::Sell).unwrap();
    let buy = orders.iter().find(|o| o.side == HedgeSide::Buy).unwrap();
    assert_eq!(sell.market.to_string(), "BTC/USD");
    assert_eq!(sell.qty, "0.01".parse::<Decimal>().unwrap());
    assert_eq!(buy.market.to_string(), "ETH/USD");
    assert_eq!(
        buy.qty,
        lock.quote
            .amount_out
            .parse::<Decimal>()
            .unwrap()
            .round_dp_with_strategy(hedge::QTY_DP, rust_decimal::RoundingStrategy::ToZero)
    );
    for o in [sell, buy] {
        assert_eq!(o.status, HedgeStatus::Filled);
        assert_eq!(o.attempts, 1);
        assert_eq!(
            o.client_order_id,
            hedge::client_order_id(&lock.quote_id, o.side)
        );
        assert_eq!(o.swap_id, lock.swap_id);
    }
    one_report_per_order(&r);
    assert_eq!(r.server.order_reports().len(), 2);

    // Persisted as recorded.
    let by_id = |mut v: Vec<HedgeOrder>| {
        v.sort_by(|a, b| a.client_order_id.cmp(&b.client_order_id));
        v
    };
    let stored = liquidity::hedge_store::load(&r.db).await.unwrap();
    assert_eq!(by_id(stored), by_id(orders.clone()));

    // P&L: short BTC, long ETH at the fill prices, marked at the mids.
    let pnl = r.liq.pnl();
    let btc = &pnl[&AssetId::new("BTC").unwrap()];
    assert_eq!(btc.position, -sell.filled_qty);
    assert_eq!(Some(btc.avg_cost), sell.avg_price);
    assert_eq!(btc.realized, Decimal::ZERO);
    let mark = btc.mark.expect("a fresh BTC/USD book");
    assert_eq!(btc.unrealized, btc.position * (mark - btc.avg_cost));
    let eth = &pnl[&AssetId::new("ETH").unwrap()];
    assert_eq!(eth.position, buy.filled_qty);

    // Executing again changes nothing; a restarted hedger sends nothing.
    r.liq
        .execute(lock.quote_id, lock.quote.amount_in_base_units)
        .await
        .unwrap();
    r.hedger_stop.cancel();
    r.hedger.stopped().await;
    let stop = CancellationToken::new();
    let again = Hedger::start(
        r.db.clone(),
        order_venue(&r.server, creds(), Duration::from_secs(5)),
        r.liq.config().clone(),
        quick(4),
        r.clock.clone() as Arc<dyn Clock>,
        stop.clone(),
    )
    .await
    .unwrap();
    assert_eq!(by_id(again.orders()), by_id(orders.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.server.order_reports().len(), 2);
    stop.cancel();
}

#[tokio::test]
async fn partial_fills_and_rejects_are_recorded_and_not_retried() {
    let r = rig(creds(), quick(4), Duration::from_secs(5)).await;
    r.server
        .set_order_mode(OrderMode::PartialFill { fill_bps: 4_000 });
    swap(&r).await;
    until("partial fills", || all_final(&r.liq.hedges())).await;
    for o in r.liq.hedges() {
        assert_eq!(o.status, HedgeStatus::PartiallyFilled, "{o:?}");
        assert!(
            o.filled_qty > Decimal::ZERO && o.filled_qty < o.qty,
            "{o:?}"
        );
        assert_eq!(o.attempts, 1);
    }
    one_report_per_order(&r);

    r.server.set_order_mode(OrderMode::Reject {
        reason: "insufficient funds".into(),
    });
    swap(&r).await;
    until("rejects", || {
        let h = r.liq.hedges();
        h.len() == 4 && h.iter().all(|o| o.status.is_final())
    })
    .await;
    for o in &r.liq.hedges()[2..] {
        assert_eq!(
            o.status,
            HedgeStatus::Rejected {
                reason: "insufficient funds".into()
            }
        );
        assert_eq!((o.attempts, o.filled_qty), (1, Decimal::ZERO));
    }
    one_report_per_order(&r);
    // Rejected orders move no position.
    let pnl = r.liq.pnl();
    let partial: Decimal = r.liq.hedges()[..2]
        .iter()
        .filter(|o| o.side == HedgeSide::Sell)
        .map(|o| o.filled_qty)
        .sum();
    assert_eq!(pnl[&AssetId::new("BTC").unwrap()].position, -partial);
}

#[tokio::test]
async fn a_venue_that_is_down_is_retried_with_the_same_ids_and_resumed_after_a_restart() {
    let r = rig(creds(), quick(50), Duration::from_secs(5)).await;
    r.server.set_order_mode(OrderMode::Down);
    let lock = swap(&r).await;
    until("retries", || {
        let h = r.liq.hedges();
        h.len() == 2 && h.iter().all(|o| o.attempts >= 2)
    })
    .await;
    for o in r.liq.hedges() {
        assert_eq!(o.status, HedgeStatus::Pending);
        assert!(
            o.last_error.as_deref().unwrap_or("").contains("503"),
            "{o:?}"
        );
    }
    assert!(r.server.order_reports().is_empty());

    // The engine stops while the venue is down; comes back with it up.
    r.hedger_stop.cancel();
    r.hedger.stopped().await;
    r.server.set_order_mode(OrderMode::Fill);
    let stop = CancellationToken::new();
    let again = Hedger::start(
        r.db.clone(),
        order_venue(&r.server, creds(), Duration::from_secs(5)),
        r.liq.config().clone(),
        quick(50),
        r.clock.clone() as Arc<dyn Clock>,
        stop.clone(),
    )
    .await
    .unwrap();
    until("filled after the restart", || all_final(&again.orders())).await;
    for o in again.orders() {
        assert_eq!(o.status, HedgeStatus::Filled);
        assert!(o.attempts >= 3, "{o:?}");
        assert_eq!(
            o.client_order_id,
            hedge::client_order_id(&lock.quote_id, o.side)
        );
    }
    assert_eq!(r.server.order_reports().len(), 2);
    stop.cancel();
}

#[tokio::test]
async fn answers_slower_than_the_timeout_are_retried_without_a_second_fill() {
    let r = rig(creds(), quick(50), Duration::from_millis(150)).await;
    r.server.set_order_mode(OrderMode::Delay {
        by: Duration::from_millis(400),
    });
    swap(&r).await;
    until("timeouts", || {
        let h = r.liq.hedges();
        h.len() == 2 && h.iter().all(|o| o.attempts >= 2)
    })
    .await;
    r.server.set_order_mode(OrderMode::Fill);
    until("filled", || all_final(&r.liq.hedges())).await;
    for o in r.liq.hedges() {
        assert_eq!(o.status, HedgeStatus::Filled, "{o:?}");
    }
    // However many sends, one order per id at the venue.
    assert_eq!(r.server.order_reports().len(), 2);
    one_report_per_order(&r);
}

#[tokio::test]
async fn attempts_run_out_into_gave_up() {
    let r = rig(creds(), quick(3), Duration::from_secs(5)).await;
    r.server.set_order_mode(OrderMode::Down);
    swap(&r).await;
    until("given up", || all_final(&r.liq.hedges())).await;
    for o in r.liq.hedges() {
        assert!(
            matches!(&o.status, HedgeStatus::GaveUp { reason } if reason.contains("503")),
            "{o:?}"
        );
        assert_eq!(o.attempts, 3);
    }
}

#[tokio::test]
async fn orders_signed_with_the_wrong_secret_are_refused() {
    let r = rig(
        ApiCredentials::new("desk-key", b"wrong"),
        quick(4),
        Duration::from_secs(5),
    )
    .await;
    swap(&r).await;
    until("refused", || all_final(&r.liq.hedges())).await;
    for o in r.liq.hedges() {
        assert!(
            matches!(&o.status, HedgeStatus::Rejected { reason } if reason.contains("401") && reason.contains("invalid signature")),
            "{o:?}"
        );
        assert_eq!(o.attempts, 1);
    }
    assert!(r.server.order_reports().is_empty());
}
