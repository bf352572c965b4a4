//! The simulated venue on the wire: its books over a websocket in Kraken's
//! Spot WebSocket v2 `book` format (subscribe acknowledgements, snapshot,
//! updates with the CRC32 checksum of the top ten levels, heartbeats), and
//! a REST order endpoint that fills, partially fills, rejects, delays or is
//! down, as a scenario commands, and checks request signatures when told
//! to ([`VenueServer::require_credentials`]). Faults on command too: a corrupted
//! checksum, dropped connections, silence while the venue is down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use liquidity::venue::kraken;
use liquidity::venue::orders::ApiCredentials;
use liquidity::venue::BookReceiver;
use liquidity::{Level, VenueFeed, VenueHealth};
use proto::Pair;
use rust_decimal::Decimal;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::SimVenue;

/// How the order endpoint answers, until told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderMode {
    /// Fill in full at the book (as far as its depth goes).
    Fill,
    /// Fill this share of the size, in basis points.
    PartialFill { fill_bps: u32 },
    /// Refuse every order with this reason.
    Reject { reason: String },
    /// Answer after this long, then fill.
    Delay { by: Duration },
    /// Answer 503 Service Unavailable.
    Down,
}

/// The order endpoint's wire types are the client's
/// ([`liquidity::venue::orders`]), so the two cannot drift apart.
pub use liquidity::venue::orders::{OrderReport, OrderRequest};

#[derive(Debug)]
struct Orders {
    mode: OrderMode,
    /// When set, every order must carry this key's `API-Key`, `API-Nonce`
    /// and `API-Sign` headers (see [`liquidity::venue::orders`]).
    credentials: Option<ApiCredentials>,
    by_client_id: BTreeMap<String, OrderReport>,
    next_id: u64,
}

#[derive(Debug)]
struct Control {
    venue: Arc<SimVenue>,
    corrupt: AtomicU32,
    kick: broadcast::Sender<()>,
    connections: AtomicU64,
    subscribes: AtomicU64,
    orders: Mutex<Orders>,
    shutdown: CancellationToken,
}

impl Control {
    fn orders(&self) -> MutexGuard<'_, Orders> {
        self.orders.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running server for one simulated venue.
#[derive(Debug, Clone)]
pub struct VenueServer {
    addr: SocketAddr,
    control: Arc<Control>,
}

impl VenueServer {
    /// Serves `venue` on `bind` (port 0 picks a free one) until `shutdown`.
    pub async fn start(
        venue: Arc<SimVenue>,
        bind: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control {
            venue,
            corrupt: AtomicU32::new(0),
            kick: broadcast::channel(4).0,
            connections: AtomicU64::new(0),
            subscribes: AtomicU64::new(0),
            orders: Mutex::new(Orders {
                mode: OrderMode::Fill,
                credentials: None,
                by_client_id: BTreeMap::new(),
                next_id: 1,
            }),
            shutdown: shutdown.clone(),
        });
        let app = Router::new()
            .route("/v2", get(upgrade))
            .route("/orders", post(place_order))
            .with_state(Arc::clone(&control));
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "simulated venue server stopped");
            }
        });
        Ok(VenueServer { addr, control })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The websocket address, Kraken v2 style.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v2", self.addr)
    }

    /// The order endpoint.
    pub fn orders_url(&self) -> String {
        format!("http://{}/orders", self.addr)
    }

    /// The next book message sent carries a wrong checksum.
    pub fn corrupt_next_checksum(&self) {
        self.control.corrupt.fetch_add(1, Ordering::SeqCst);
    }

    /// Closes every open websocket connection.
    pub fn drop_connections(&self) {
        let _ = self.control.kick.send(());
    }

    /// Websocket connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.control.connections.load(Ordering::SeqCst)
    }

    /// `subscribe` requests received so far.
    pub fn subscribes(&self) -> u64 {
        self.control.subscribes.load(Ordering::SeqCst)
    }

    pub fn set_order_mode(&self, mode: OrderMode) {
        self.control.orders().mode = mode;
    }

    /// From now on, orders must be signed with `creds` (401 otherwise).
    pub fn require_credentials(&self, creds: ApiCredentials) {
        self.control.orders().credentials = Some(creds);
    }

    /// Every order the endpoint has answered with a report, by client id.
    pub fn order_reports(&self) -> Vec<OrderReport> {
        self.control
            .orders()
            .by_client_id
            .values()
            .cloned()
            .collect()
    }
}

async fn upgrade(State(control): State<Arc<Control>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| async move {
        control.connections.fetch_add(1, Ordering::SeqCst);
        Session::new(control).run(socket).await;
    })
}

/// One market a connection subscribed to.
struct Subscription {
    depth: usize,
    books: BookReceiver,
    sent_bids: Vec<Level>,
    sent_asks: Vec<Level>,
}

struct Session {
    control: Arc<Control>,
    subs: BTreeMap<Pair, Subscription>,
}

/// A price or quantity as the wire carries it: the same value always with
/// the same digits (prices without trailing zeros, quantities with eight
/// decimals, as Kraken does per pair), so that checksums agree.
fn wire_price(p: Decimal) -> Decimal {
    p.normalize()
}

fn wire_qty(q: Decimal) -> Decimal {
    let mut q = q.round_dp(8);
    q.rescale(8);
    q
}

fn on_wire(levels: &[Level], depth: usize) -> Vec<Level> {
    levels
        .iter()
        .take(depth)
        .map(|l| Level::new(wire_price(l.price), wire_qty(l.size)))
        .collect()
}

fn same_text(a: Decimal, b: Decimal) -> bool {
    a == b && a.scale() == b.scale()
}

/// Levels to send to turn `old` into `new`: removals as quantity 0.
fn diff(old: &[Level], new: &[Level]) -> Vec<Level> {
    let mut out = Vec::new();
    for o in old {
        if !new.iter().any(|n| same_text(n.price, o.price)) {
            out.push(Level::new(o.price, Decimal::ZERO));
        }
    }
    for n in new {
        let unchanged = old
            .iter()
            .any(|o| same_text(n.price, o.price) && same_text(n.size, o.size));
        if !unchanged {
            out.push(*n);
        }
    }
    out
}

fn levels_json(levels: &[Level]) -> String {
    let items: Vec<String> = levels
        .iter()
        .map(|l| format!(r#"{{"price":{},"qty":{}}}"#, l.price, l.size))
        .collect();
    format!("[{}]", items.join(","))
}

impl Session {
    fn new(control: Arc<Control>) -> Self {
        Session {
            control,
            subs: BTreeMap::new(),
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let mut kicked = self.control.kick.subscribe();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        let shutdown = self.control.shutdown.clone();
        loop {
            let frames: Vec<String> = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = kicked.recv() => break,
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(t))) => self.on_request(t.as_str()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => Vec::new(),
                },
                _ = heartbeat.tick() => {
                    if self.up() { vec![r#"{"channel":"heartbeat"}"#.to_owned()] } else { Vec::new() }
                }
                _ = poll.tick() => self.changes(),
            };
            for f in frames {
                if socket.send(Message::Text(f.into())).await.is_err() {
                    return;
                }
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    }

    fn up(&self) -> bool {
        self.control.venue.health() == VenueHealth::Up
    }

    fn on_request(&mut self, text: &str) -> Vec<String> {
        if !self.up() {
            // A venue that is down says nothing at all.
            return Vec::new();
        }
        #[derive(Deserialize)]
        struct Params {
            channel: String,
            #[serde(default)]
            symbol: Vec<String>,
            #[serde(default)]
            depth: Option<u32>,
        }
        #[derive(Deserialize)]
        struct Request {
            method: String,
            #[serde(default)]
            params: Option<Params>,
            #[serde(default)]
            req_id: Option<u64>,
        }
        let req: Request = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                return vec![
                    serde_json::json!({"error": format!("invalid request: {e}"), "success": false})
                        .to_string(),
                ]
            }
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let refuse = |symbol: &str, error: &str| {
            serde_json::json!({"method": req.method, "success": false, "error": error,
                "symbol": symbol, "req_id": req.req_id, "time_in": now, "time_out": now})
            .to_string()
        };
        match (req.method.as_str(), &req.params) {
            ("ping", _) => {
                vec![serde_json::json!({"method":"pong","req_id":req.req_id,"time_in":now,"time_out":now}).to_string()]
            }
            (method @ ("subscribe" | "unsubscribe"), Some(p)) if p.channel == "book" => {
                let depth = p.depth.unwrap_or(10);
                if !kraken::DEPTHS.contains(&depth) {
                    return vec![refuse("", "Invalid depth")];
                }
                let mut out = Vec::new();
                for symbol in &p.symbol {
                    let market = symbol.parse::<Pair>().ok();
                    let books = market
                        .as_ref()
                        .and_then(|m| self.control.venue.subscribe(m));
                    let (Some(market), Some(books)) = (market, books) else {
                        out.push(refuse(symbol, "Currency pair not supported"));
                        continue;
                    };
                    out.push(
                        serde_json::json!({"method": method, "result": {"channel":"book",
                        "symbol": symbol, "depth": depth, "snapshot": true}, "success": true,
                        "req_id": req.req_id, "time_in": now, "time_out": now})
                        .to_string(),
                    );
                    if method == "unsubscribe" {
                        self.subs.remove(&market);
                        continue;
                    }
                    self.control.subscribes.fetch_add(1, Ordering::SeqCst);
                    let mut sub = Subscription {
                        depth: depth as usize,
                        books,
                        sent_bids: Vec::new(),
                        sent_asks: Vec::new(),
                    };
                    if let Some(f) = self.book_frame(&market, &mut sub, true) {
                        out.push(f);
                    }
                    self.subs.insert(market, sub);
                }
                out
            }
            _ => vec![refuse("", "Method or channel not supported")],
        }
    }

    fn changes(&mut self) -> Vec<String> {
        if !self.up() {
            return Vec::new();
        }
        let mut subs = std::mem::take(&mut self.subs);
        let mut out = Vec::new();
        for (market, sub) in subs.iter_mut() {
            if sub.books.has_changed().unwrap_or(false) {
                if let Some(f) = self.book_frame(market, sub, false) {
                    out.push(f);
                }
            }
        }
        self.subs = subs;
        out
    }

    /// The snapshot, or the update since the last frame, of one market.
    fn book_frame(&self, market: &Pair, sub: &mut Subscription, snapshot: bool) -> Option<String> {
        let book = sub.books.borrow_and_update().clone()?;
        let bids = on_wire(&book.bids, sub.depth);
        let asks = on_wire(&book.asks, sub.depth);
        let (send_bids, send_asks) = if snapshot {
            (bids.clone(), asks.clone())
        } else {
            (diff(&sub.sent_bids, &bids), diff(&sub.sent_asks, &asks))
        };
        if !snapshot && send_bids.is_empty() && send_asks.is_empty() {
            return None;
        }
        let mut checksum = kraken::checksum(&asks, &bids);
        let corrupt = self
            .control
            .corrupt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if corrupt {
            checksum ^= 1;
        }
        sub.sent_bids = bids;
        sub.sent_asks = asks;
        let kind = if snapshot { "snapshot" } else { "update" };
        let ts = book
            .received_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        Some(format!(
            r#"{{"channel":"book","type":"{kind}","data":[{{"symbol":"{market}","bids":{},"asks":{},"checksum":{checksum},"timestamp":"{ts}"}}]}}"#,
            levels_json(&send_bids),
            levels_json(&send_asks),
        ))
    }
}

/// A refusal of the order endpoint, as JSON with the reason.
fn refusal(status: StatusCode, reason: &str) -> Response {
    (status, Json(serde_json::json!({ "error": reason }))).into_response()
}

/// Checks the request's signature when the endpoint requires one; the
/// reason it is refused otherwise.
fn authenticate(control: &Control, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let Some(creds) = control.orders().credentials.clone() else {
        return Ok(());
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key), Some(nonce), Some(sign)) =
        (header("API-Key"), header("API-Nonce"), header("API-Sign"))
    else {
        return Err("API-Key, API-Nonce and API-Sign are required");
    };
    if key != creds.api_key || !creds.verify(nonce, body, sign) {
        return Err("invalid signature");
    }
    Ok(())
}

async fn place_order(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(why) = authenticate(&control, &headers, &body) {
        return refusal(StatusCode::UNAUTHORIZED, why);
    }
    let req: OrderRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &format!("invalid order: {e}")),
    };
    let mode = {
        let orders = control.orders();
        if let Some(done) = orders.by_client_id.get(&req.cl_ord_id) {
            return (StatusCode::OK, Json(done.clone())).into_response();
        }
        orders.mode.clone()
    };
    if control.venue.health() != VenueHealth::Up || mode == OrderMode::Down {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "venue unavailable");
    }
    if let OrderMode::Delay { by } = &mode {
        tokio::time::sleep(*by).await;
    }
    let buy = match req.side.as_str() {
        "buy" => true,
        "sell" => false,
        other => {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("side {other:?} is not buy or sell"),
            )
        }
    };
    if req.order_qty <= Decimal::ZERO {
        return refusal(StatusCode::BAD_REQUEST, "order_qty must be positive");
    }
    let Some(books) = req
        .symbol
        .parse::<Pair>()
        .ok()
        .and_then(|m| control.venue.subscribe(&m))
    else {
        return refusal(
            StatusCode::BAD_REQUEST,
            &format!("unknown symbol {:?}", req.symbol),
        );
    };
    let book = books.borrow().clone();
    let mut orders = control.orders();
    // Another request with the same id may have finished while this one waited.
    if let Some(done) = orders.by_client_id.get(&req.cl_ord_id) {
        return (StatusCode::OK, Json(done.clone())).into_response();
    }
    let order_id = format!("SIM-{:08}", orders.next_id);
    orders.next_id += 1;
    let (wanted, reason) = match &mode {
        OrderMode::Reject { reason } => (Decimal::ZERO, Some(reason.clone())),
        OrderMode::PartialFill { fill_bps } => (
            (req.order_qty * Decimal::from(*fill_bps.min(&10_000)) / Decimal::from(10_000))
                .round_dp(8),
            None,
        ),
        _ => (req.order_qty, None),
    };
    let levels = match &book {
        Some(b) if buy => b.asks.as_slice(),
        Some(b) => b.bids.as_slice(),
        None => &[],
    };
    let (mut filled, mut cost) = (Decimal::ZERO, Decimal::ZERO);
    for l in levels {
        if filled >= wanted {
            break;
        }
        let take = l.size.min(wanted - filled);
        filled += take;
        cost += take * l.price;
    }
    let status = if filled.is_zero() {
        "rejected"
    } else if filled < req.order_qty {
        "partially_filled"
    } else {
        "filled"
    };
    let report = OrderReport {
        order_id,
        cl_ord_id: req.cl_ord_id.clone(),
        status: status.to_owned(),
        filled_qty: filled,
        avg_price: (!filled.is_zero()).then(|| (cost / filled).round_dp(8)),
        reason: reason.or_else(|| filled.is_zero().then(|| "no liquidity".to_owned())),
    };
    orders.by_client_id.insert(req.cl_ord_id, report.clone());
    let code = if filled.is_zero() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (code, Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(p: &str, q: &str) -> Level {
        Level::new(p.parse().unwrap(), q.parse().unwrap())
    }

    #[test]
    fn diff_sends_changes_and_removals_only() {
        let old = vec![l("100", "1.00000000"), l("99", "2.00000000")];
        let new = vec![l("100", "1.50000000"), l("98", "3.00000000")];
        let d = diff(&old, &new);
        assert_eq!(
            d,
            vec![l("99", "0"), l("100", "1.50000000"), l("98", "3.00000000")]
        );
        assert!(diff(&new, &new).is_empty());
        assert_eq!(wire_qty("1.5".parse().unwrap()).to_string(), "1.50000000");
        assert_eq!(
            wire_price("90000.10".parse().unwrap()).to_string(),
            "90000.1"
        );
    }
}
