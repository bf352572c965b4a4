//! Operations: Prometheus `/metrics`, readiness (`/v1/ready`), and the
//! trading desk's API (`/v1/desk/*`, a desk token on every call) with its
//! live websocket (`/v1/desk/ws`). docs/desk.md describes every endpoint.
//!
//! The desk reads liquidity (exposure, locks, open quotes, venues, trading
//! state) and the swap store (swaps by state, a swap's event history)
//! directly; what only the composing binary knows (the bus, the chains) comes
//! through [`Probes`]; the payout approval queue from the hot wallet's API;
//! panels other services fill in (custody tiers,
//! hedge orders, P&L) through [`DeskPanels`], whose
//! default answers "not provided" rather than invent data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use liquidity::{Liquidity, LiquidityApi, LockStatus, TradingState};
use proto::api::ErrorCode;
use proto::{Amount, Timestamp};
use serde::{Deserialize, Serialize};
use state_machine::store::SwapStore;

use crate::error::Failure;
use crate::service::Service;

/// What the composing binary knows about the bus and the chains.
#[async_trait::async_trait]
pub trait Probes: Send + Sync + 'static {
    /// Asks the bus something cheap; `Ok` with each consumer group's lag
    /// per topic (empty where the bus cannot tell), `Err` with why the bus
    /// is unreachable.
    async fn bus(&self) -> Result<Vec<BusLagView>, String>;
    /// Every chain the node gateway is configured to follow, with the last
    /// block it processed (`None` before the first).
    fn chains(&self) -> Vec<ChainView>;
}

/// Desk panels backed by other services. Each method's default is `None`:
/// "this engine does not provide it yet", answered as `501` with code
/// `unavailable`, and shown as such on the page.
#[async_trait::async_trait]
pub trait DeskPanels: Send + Sync + 'static {
    /// Inventory per custody tier and per venue.
    async fn custody(&self) -> Option<Result<CustodyView, Failure>> {
        None
    }
    /// Hedge orders, newest first.
    async fn hedges(&self) -> Option<Result<Vec<HedgeView>, Failure>> {
        None
    }
    /// Realized and unrealized P&L.
    async fn pnl(&self) -> Option<Result<PnlView, Failure>> {
        None
    }
}

/// Panels no service provides yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPanels;
impl DeskPanels for NoPanels {}

/// What the operations endpoints read.
#[derive(Clone)]
pub struct Ops {
    pub liquidity: Liquidity,
    pub store: SwapStore,
    pub probes: Arc<dyn Probes>,
    pub panels: Arc<dyn DeskPanels>,
    /// The bearer token every `/v1/desk/*` call must carry.
    pub desk_token: String,
    /// States seen in the `swaps` gauge, so a state that empties reads 0.
    seen_states: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").finish_non_exhaustive()
    }
}

impl Ops {
    pub fn new(
        liquidity: Liquidity,
        store: SwapStore,
        probes: Arc<dyn Probes>,
        panels: Arc<dyn DeskPanels>,
        desk_token: String,
    ) -> Self {
        Ops {
            liquidity,
            store,
            probes,
            panels,
            desk_token,
            seen_states: Arc::default(),
        }
    }
}

// ---- shapes ---------------------------------------------------------------

/// One consumer group's backlog on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusLagView {
    pub group: String,
    pub topic: String,
    pub messages: i64,
}

/// One chain the node gateway follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainView {
    pub network: String,
    pub tip_height: Option<u64>,
}

/// Inventory per custody tier (`hot`, `warm`, `cold`) and per venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyView {
    pub tiers: Vec<TierBalance>,
    pub venues: Vec<VenueBalance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierBalance {
    pub tier: String,
    pub asset: String,
    /// Decimal, whole units.
    pub amount: String,
    /// Optional ceiling of the tier (the hot limit), decimal whole units.
    pub limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueBalance {
    pub venue: String,
    pub asset: String,
    pub amount: String,
}

/// An order placed on a venue to hedge a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HedgeView {
    pub client_order_id: String,
    pub swap_id: Option<String>,
    pub venue: String,
    pub market: String,
    /// `buy` or `sell`.
    pub side: String,
    pub amount: String,
    pub filled: String,
    pub average_price: Option<String>,
    /// `open`, `filled`, `partially_filled`, `rejected`, `cancelled`.
    pub status: String,
    pub created_at: Timestamp,
}

/// Profit and loss in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnlView {
    pub currency: String,
    pub realized: String,
    pub unrealized: String,
    pub assets: Vec<AssetPnl>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetPnl {
    pub asset: String,
    pub position: String,
    pub realized: String,
    pub unrealized: String,
}

/// Exposure, inventory and limits of one asset (decimals in whole units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRisk {
    pub asset: String,
    /// Net position from swaps executed: grows with deposits received,
    /// shrinks with payouts.
    pub exposure: String,
    /// Inventory the house can pay out: the ceiling of reservations.
    pub inventory: String,
    /// Reserved by open locks.
    pub reserved: String,
    pub available: String,
    /// Per-swap limits.
    pub min_per_swap: String,
    pub max_per_swap: String,
}

/// A market's aggregated book now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketView {
    pub market: String,
    /// Middle of the best bid and ask; `None` when no fresh book.
    pub mid: Option<String>,
    pub fresh: bool,
    pub venues: Vec<String>,
}

/// A venue's connection, with the age of its last book message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueView {
    #[serde(flatten)]
    pub status: liquidity::VenueStatus,
    pub staleness_ms: Option<i64>,
}

/// An open quote or a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteView {
    pub quote_id: String,
    pub swap_id: Option<String>,
    pub from: String,
    pub to: String,
    pub amount_in: String,
    pub amount_out: String,
    pub price: String,
    pub expires_at: Timestamp,
    /// `open` (not accepted), `locked` or `executed`.
    pub status: String,
}

/// Everything the desk's live panels show, pushed every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeskSnapshot {
    pub at: Timestamp,
    pub trading: TradingState,
    pub assets: Vec<AssetRisk>,
    pub markets: Vec<MarketView>,
    pub venues: Vec<VenueView>,
    pub quotes: Vec<QuoteView>,
    pub swaps_by_state: BTreeMap<String, i64>,
    pub chains: Vec<ChainView>,
    pub bus: Vec<BusLagView>,
}

/// A swap as the desk lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeskSwap {
    pub swap_id: String,
    pub state: String,
    pub terminal: bool,
    pub version: i64,
    pub deposit_chain: String,
    pub deposit_address: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One event of a swap's append-only history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeskEvent {
    pub event_id: String,
    pub version: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub occurred_at_ms: i64,
    pub recorded_at_ms: i64,
}

/// A swap's state and its whole history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeskSwapHistory {
    pub swap: DeskSwap,
    pub data: serde_json::Value,
    pub events: Vec<DeskEvent>,
}

/// The body of `POST /v1/desk/approvals/{payment_id}/approve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Who approves (recorded with the payment).
    pub approver: String,
}

/// The body of `POST /v1/desk/halt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    pub reason: String,
}

/// Readiness: each check and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: BTreeMap<String, Check>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

// ---- routes ---------------------------------------------------------------

/// `/metrics`, `/v1/ready` and `/v1/desk/*`. Without [`Ops`] (a gateway
/// process that holds neither liquidity nor the store) `/metrics` serves
/// the gateway's own series and the rest answers 503.
/// Installs this process's metrics recorder if none is yet.
pub fn routes() -> Router<Service> {
    if let Err(e) = infra::metrics::install() {
        tracing::warn!(error = %e, "metrics are not recorded");
    }
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/ready", get(ready))
        .route("/v1/desk/overview", get(overview))
        .route("/v1/desk/swaps", get(desk_swaps))
        .route("/v1/desk/swaps/{swap_id}", get(desk_swap_history))
        .route("/v1/desk/halt", post(halt))
        .route("/v1/desk/resume", post(resume))
        .route("/v1/desk/custody", get(custody))
        .route("/v1/desk/approvals", get(approvals))
        .route("/v1/desk/approvals/{payment_id}/approve", post(approve))
        .route("/v1/desk/hedges", get(hedges))
        .route("/v1/desk/pnl", get(pnl))
        .route("/v1/desk/ws", get(desk_ws))
}

fn ops(s: &Service) -> Result<&Ops, Failure> {
    s.ops().ok_or_else(|| {
        Failure::new(
            ErrorCode::Unavailable,
            "this gateway has no desk: it runs without liquidity and the swap store",
        )
    })
}

/// Compares in time independent of where the strings differ.
fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Failure {
    Failure {
        status: StatusCode::UNAUTHORIZED,
        error: proto::api::ApiError::new(
            ErrorCode::Unauthorized,
            "the desk API needs `Authorization: Bearer <desk token>` (SWAPD_DESK_TOKEN)",
        ),
        retry_after_secs: None,
    }
}

/// The desk's [`Ops`], if the request carries the desk token.
fn authorized<'a>(s: &'a Service, headers: &HeaderMap) -> Result<&'a Ops, Failure> {
    let ops = ops(s)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token_matches(&ops.desk_token, given) {
        Ok(ops)
    } else {
        Err(unauthorized())
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Failure {
    tracing::error!(error = %e, "{what} failed");
    Failure::new(
        ErrorCode::Internal,
        format!("{what} failed; the request can be retried"),
    )
}

fn not_provided(what: &str) -> Failure {
    Failure {
        status: StatusCode::NOT_IMPLEMENTED,
        error: proto::api::ApiError::new(
            ErrorCode::Unavailable,
            format!("{what} is not provided by this engine yet"),
        ),
        retry_after_secs: None,
    }
}

/// Records one request for quote: its outcome and how long it took.
pub(crate) fn record_rfq(result: &Result<proto::api::Quote, Failure>, took: Duration) {
    use infra::metrics::{QUOTES_SERVED, RFQ_DURATION, RFQ_REQUESTS};
    let outcome = match result {
        Ok(q) => {
            metrics::counter!(QUOTES_SERVED, "pair" => format!("{}/{}", q.from, q.to)).increment(1);
            "ok".to_owned()
        }
        Err(f) => serde_json::to_value(f.error.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "error".into()),
    };
    metrics::counter!(RFQ_REQUESTS, "outcome" => outcome.clone()).increment(1);
    metrics::histogram!(RFQ_DURATION, "outcome" => outcome).record(took.as_secs_f64());
}

/// Sets the gauges that are read rather than counted, then renders.
async fn metrics_text(State(s): State<Service>) -> Response {
    if let Some(ops) = s.ops() {
        refresh_gauges(ops).await;
    }
    (
        [(header::CONTENT_TYPE, infra::metrics::CONTENT_TYPE)],
        infra::metrics::render(),
    )
        .into_response()
}

async fn refresh_gauges(ops: &Ops) {
    use infra::metrics::{
        BUS_LAG, CHAIN_TIP, SWAPS, TRADING_HALTED, VENUE_CONNECTED, VENUE_STALENESS,
    };
    let _ = ops.store.db().ping().await;
    if let Ok(counts) = ops.store.count_by_state().await {
        let mut seen = ops.seen_states.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(counts.keys().cloned());
        for state in seen.iter() {
            let n = counts.get(state).copied().unwrap_or(0);
            metrics::gauge!(SWAPS, "state" => state.clone()).set(n as f64);
        }
    }
    let now = ops.liquidity.clock_now();
    for v in ops.liquidity.venue_status() {
        let connected = if v.connected { 1.0 } else { 0.0 };
        metrics::gauge!(VENUE_CONNECTED, "venue" => v.venue.clone()).set(connected);
        // No series for a venue that never sent a book: its staleness is
        // not a number (the connected gauge and readiness say the rest).
        if let Some(ms) = v.age_ms(now) {
            metrics::gauge!(VENUE_STALENESS, "venue" => v.venue).set(ms as f64 / 1000.0);
        }
    }
    let halted = if ops.liquidity.trading_state().is_active() {
        0.0
    } else {
        1.0
    };
    metrics::gauge!(TRADING_HALTED).set(halted);
    if let Ok(lags) = ops.probes.bus().await {
        for l in lags {
            metrics::gauge!(BUS_LAG, "group" => l.group, "topic" => l.topic).set(l.messages as f64);
        }
    }
    for c in ops.probes.chains() {
        if let Some(h) = c.tip_height {
            metrics::gauge!(CHAIN_TIP, "network" => c.network).set(h as f64);
        }
    }
}

/// Ready when the database and the bus answer, every chain has a tip and
/// every market has a fresh book. 503 with the same body otherwise.
async fn ready(State(s): State<Service>) -> Result<(StatusCode, Json<Readiness>), Failure> {
    let ops = ops(&s)?;
    let r = readiness(ops).await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(r)))
}

pub async fn readiness(ops: &Ops) -> Readiness {
    let mut checks = BTreeMap::new();
    let check = |ok: bool, detail: String| Check { ok, detail };
    checks.insert(
        "database".to_owned(),
        match tokio::time::timeout(Duration::from_secs(2), ops.store.db().ping()).await {
            Ok(Ok(took)) => check(true, format!("answered in {} µs", took.as_micros())),
            Ok(Err(e)) => check(false, e.to_string()),
            Err(_) => check(false, "no answer within 2 s".into()),
        },
    );
    checks.insert(
        "bus".to_owned(),
        match tokio::time::timeout(Duration::from_secs(2), ops.probes.bus()).await {
            Ok(Ok(_)) => check(true, "reachable".into()),
            Ok(Err(e)) => check(false, e),
            Err(_) => check(false, "no answer within 2 s".into()),
        },
    );
    let chains = ops.probes.chains();
    let waiting: Vec<String> = chains
        .iter()
        .filter(|c| c.tip_height.is_none())
        .map(|c| c.network.clone())
        .collect();
    checks.insert(
        "nodes".to_owned(),
        if waiting.is_empty() {
            check(
                true,
                chains
                    .iter()
                    .map(|c| format!("{} at {}", c.network, c.tip_height.unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        } else {
            check(
                false,
                format!("no block followed yet on {}", waiting.join(", ")),
            )
        },
    );
    let stale: Vec<String> = markets(ops)
        .into_iter()
        .filter(|m| !m.fresh)
        .map(|m| m.market)
        .collect();
    checks.insert(
        "venues".to_owned(),
        if stale.is_empty() {
            check(true, "every market has a fresh book".into())
        } else {
            check(false, format!("no fresh book for {}", stale.join(", ")))
        },
    );
    Readiness {
        ready: checks.values().all(|c| c.ok),
        checks,
    }
}

fn markets(ops: &Ops) -> Vec<MarketView> {
    let now = ops.liquidity.clock_now();
    ops.liquidity
        .config()
        .markets
        .iter()
        .map(|m| match ops.liquidity.book(m, now) {
            Ok(book) => MarketView {
                market: m.to_string(),
                mid: book.mid().map(|d| d.normalize().to_string()),
                fresh: true,
                venues: book.venues,
            },
            Err(_) => MarketView {
                market: m.to_string(),
                mid: None,
                fresh: false,
                venues: vec![],
            },
        })
        .collect()
}

fn decimal(amount: Amount, decimals: u8) -> String {
    amount.to_decimal_string(decimals)
}

/// The desk's live view, assembled from liquidity, the store and the probes.
pub async fn snapshot(ops: &Ops) -> Result<DeskSnapshot, Failure> {
    let liq = &ops.liquidity;
    let cfg = liq.config();
    let locks = liq.locks();
    let exposure = liq.exposure();
    let mut assets = Vec::new();
    for spec in cfg.assets.iter() {
        let Some(policy) = cfg.policies.get(&spec.id) else {
            continue;
        };
        let reserved = locks
            .iter()
            .filter(|l| l.reserved_asset == spec.id && l.status == LockStatus::Locked)
            .fold(Amount::ZERO, |acc, l| {
                Amount::from_base_units(acc.base_units().saturating_add(l.reserved.base_units()))
            });
        assets.push(AssetRisk {
            asset: spec.id.to_string(),
            exposure: exposure
                .get(&spec.id)
                .copied()
                .unwrap_or_default()
                .normalize()
                .to_string(),
            inventory: decimal(policy.inventory, spec.decimals),
            reserved: decimal(reserved, spec.decimals),
            available: decimal(liq.available_inventory(&spec.id), spec.decimals),
            min_per_swap: policy.min_amount.normalize().to_string(),
            max_per_swap: policy.max_amount.normalize().to_string(),
        });
    }
    let now = liq.clock_now();
    let venues = liq
        .venue_status()
        .into_iter()
        .map(|status| VenueView {
            staleness_ms: status.age_ms(now),
            status,
        })
        .collect();
    let mut quotes: Vec<QuoteView> = locks
        .iter()
        .map(|l| QuoteView {
            quote_id: l.quote_id.to_string(),
            swap_id: Some(l.swap_id.to_string()),
            from: l.quote.from.to_string(),
            to: l.quote.to.to_string(),
            amount_in: l.quote.amount_in.clone(),
            amount_out: l.quote.amount_out.clone(),
            price: l.quote.price.to_string(),
            expires_at: l.quote.expires_at,
            status: match l.status {
                LockStatus::Locked => "locked",
                LockStatus::Executed => "executed",
            }
            .into(),
        })
        .collect();
    quotes.extend(liq.open_quotes().into_iter().map(|q| QuoteView {
        quote_id: q.quote_id.to_string(),
        swap_id: None,
        from: q.from.to_string(),
        to: q.to.to_string(),
        amount_in: q.amount_in,
        amount_out: q.amount_out,
        price: q.price.to_string(),
        expires_at: q.expires_at,
        status: "open".into(),
    }));
    let swaps_by_state = ops
        .store
        .count_by_state()
        .await
        .map_err(|e| internal("counting swaps", e))?;
    Ok(DeskSnapshot {
        at: now,
        trading: liq.trading_state(),
        assets,
        markets: markets(ops),
        venues,
        quotes,
        swaps_by_state,
        chains: ops.probes.chains(),
        bus: ops.probes.bus().await.unwrap_or_default(),
    })
}

async fn overview(
    State(s): State<Service>,
    headers: HeaderMap,
) -> Result<Json<DeskSnapshot>, Failure> {
    let ops = authorized(&s, &headers)?;
    Ok(Json(snapshot(ops).await?))
}

#[derive(Debug, Deserialize)]
struct SwapsQuery {
    state: Option<String>,
    limit: Option<i64>,
}

fn desk_swap(r: &state_machine::store::SwapRecord) -> DeskSwap {
    DeskSwap {
        swap_id: r.swap_id.to_string(),
        state: r.state.clone(),
        terminal: r.terminal,
        version: r.version,
        deposit_chain: r.deposit_chain.clone(),
        deposit_address: r.deposit_address.clone(),
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
    }
}

async fn desk_swaps(
    State(s): State<Service>,
    headers: HeaderMap,
    query: Result<Query<SwapsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<DeskSwap>>, Failure> {
    let ops = authorized(&s, &headers)?;
    let Query(q) = query.map_err(|e| Failure::bad_request(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Failure::bad_request("limit must be between 1 and 1000"));
    }
    let records = ops
        .store
        .list_recent(q.state.as_deref(), limit)
        .await
        .map_err(|e| internal("listing swaps", e))?;
    Ok(Json(records.iter().map(desk_swap).collect()))
}

async fn desk_swap_history(
    State(s): State<Service>,
    headers: HeaderMap,
    Path(swap_id): Path<String>,
) -> Result<Json<DeskSwapHistory>, Failure> {
    let ops = authorized(&s, &headers)?;
    let id: uuid::Uuid = swap_id
        .parse()
        .map_err(|_| Failure::bad_request(format!("{swap_id:?} is not a swap id")))?;
    let record = ops
        .store
        .get(id)
        .await
        .map_err(|e| internal("reading the swap", e))?
        .ok_or_else(|| Failure::new(ErrorCode::SwapNotFound, format!("swap {id} not found")))?;
    let events = ops
        .store
        .events(id)
        .await
        .map_err(|e| internal("reading the swap's events", e))?;
    Ok(Json(DeskSwapHistory {
        swap: desk_swap(&record),
        data: record.data.clone(),
        events: events
            .into_iter()
            .map(|e| DeskEvent {
                event_id: e.event_id.to_string(),
                version: e.version,
                kind: e.kind,
                payload: e.payload,
                occurred_at_ms: e.occurred_at_ms,
                recorded_at_ms: e.recorded_at_ms,
            })
            .collect(),
    }))
}

async fn halt(
    State(s): State<Service>,
    headers: HeaderMap,
    body: Result<Json<HaltRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TradingState>, Failure> {
    let ops = authorized(&s, &headers)?;
    let Json(req) = body?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > 200 || reason.chars().any(char::is_control) {
        return Err(Failure::bad_request(
            "reason must be 1 to 200 printable characters",
        ));
    }
    ops.liquidity.halt(reason);
    Ok(Json(ops.liquidity.trading_state()))
}

async fn resume(
    State(s): State<Service>,
    headers: HeaderMap,
) -> Result<Json<TradingState>, Failure> {
    let ops = authorized(&s, &headers)?;
    ops.liquidity.resume();
    Ok(Json(ops.liquidity.trading_state()))
}

async fn custody(
    State(s): State<Service>,
    headers: HeaderMap,
) -> Result<Json<CustodyView>, Failure> {
    let ops = authorized(&s, &headers)?;
    match ops.panels.custody().await {
        Some(r) => r.map(Json),
        None => Err(not_provided("inventory per custody tier")),
    }
}

/// Payments over the hot wallet's limit, waiting for the desk.
async fn approvals(
    State(s): State<Service>,
    headers: HeaderMap,
) -> Result<Json<Vec<proto::api::DeskPayment>>, Failure> {
    authorized(&s, &headers)?;
    Ok(Json(s.hot_wallet().payments_awaiting_approval().await?))
}

/// Approves a waiting payment; the hot wallet pays it.
async fn approve(
    State(s): State<Service>,
    headers: HeaderMap,
    Path(payment_id): Path<String>,
    body: Result<Json<ApproveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<proto::api::DeskPayment>, Failure> {
    authorized(&s, &headers)?;
    let Json(req) = body?;
    let approver = req.approver.trim();
    if approver.is_empty() || approver.len() > 100 || approver.chars().any(char::is_control) {
        return Err(Failure::bad_request(
            "approver must be 1 to 100 printable characters",
        ));
    }
    tracing::warn!(%payment_id, %approver, "desk.approve_payment");
    Ok(Json(
        s.hot_wallet()
            .approve_payment(&payment_id, approver)
            .await?,
    ))
}

async fn hedges(
    State(s): State<Service>,
    headers: HeaderMap,
) -> Result<Json<Vec<HedgeView>>, Failure> {
    let ops = authorized(&s, &headers)?;
    match ops.panels.hedges().await {
        Some(r) => r.map(Json),
        None => Err(not_provided("hedge orders")),
    }
}

async fn pnl(State(s): State<Service>, headers: HeaderMap) -> Result<Json<PnlView>, Failure> {
    let ops = authorized(&s, &headers)?;
    match ops.panels.pnl().await {
        Some(r) => r.map(Json),
        None => Err(not_provided("P&L")),
    }
}

/// The desk's live feed. A browser cannot set headers on a websocket, so
/// the first frame authenticates: `{"type":"auth","token":"…"}`; then a
/// `snapshot` frame every second until the client goes.
async fn desk_ws(State(s): State<Service>, ws: WebSocketUpgrade) -> Result<Response, Failure> {
    let ops = ops(&s)?.clone();
    Ok(ws
        .max_message_size(4 * 1024)
        .on_upgrade(move |socket| desk_connection(ops, socket)))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum DeskClientMessage {
    Auth { token: String },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeskServerMessage<'a> {
    Snapshot(&'a DeskSnapshot),
    Error { code: ErrorCode, message: String },
}

async fn desk_connection(ops: Ops, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    let authenticated = match first {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str(&t) {
            Ok(DeskClientMessage::Auth { token }) => token_matches(&ops.desk_token, &token),
            Err(_) => false,
        },
        _ => false,
    };
    if !authenticated {
        let msg = DeskServerMessage::Error {
            code: ErrorCode::BadRequest,
            message: "the first frame must be {\"type\":\"auth\",\"token\":\"<desk token>\"}"
                .into(),
        };
        if let Ok(text) = serde_json::to_string(&msg) {
            let _ = sink.send(Message::Text(text.into())).await;
        }
        let _ = sink.close().await;
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
            _ = tick.tick() => {
                let started = Instant::now();
                let text = match snapshot(&ops).await {
                    Ok(snap) => serde_json::to_string(&DeskServerMessage::Snapshot(&snap)),
                    Err(f) => serde_json::to_string(&DeskServerMessage::Error {
                        code: f.error.code,
                        message: f.error.message,
                    }),
                };
                tracing::trace!(took_us = started.elapsed().as_micros() as u64, "desk.snapshot");
                let Ok(text) = text else { break };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn token_comparison() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("", ""));
    }
}
