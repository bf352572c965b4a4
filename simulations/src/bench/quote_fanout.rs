//! `quote-fanout`: N websocket clients subscribed to BTC/ETH indicative
//! prices at 10 Hz, through the real gateway (a gateway instance at a
//! 100 ms price interval on an embedded engine: each tick priced, serialised
//! once and shared by every subscriber's queue) against a bare
//! tokio-tungstenite broadcast server that sends the same bytes (the same
//! ladder re-stamped each tick, serialised once, one task per connection
//! writing what a `tokio::sync::broadcast` hands it), measured in the same
//! run with the same client harness. Sizes 1,000, 5,000 and 10,000; the two
//! sides alternate for `rounds` rounds with fresh connections each time.
//!
//! Delivered-tick latency is the client's receive time minus the tick's
//! `at` (both from this process's clock); throughput is ticks delivered per
//! second over all clients. Idle memory per client is the growth of this
//! process's resident set when 2,000 connected, unsubscribed clients are
//! added, both ends of each connection included (client and server run in
//! one process).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use proto::api::{IndicativePrices, ServerMessage};
use proto::Pair;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::{BenchConfig, BenchError, Measurement};

/// Client counts measured.
pub const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
const TICK: Duration = Duration::from_millis(100);
const WARMUP: Duration = Duration::from_secs(1);
const IDLE_CLIENTS: usize = 2_000;
/// Connections opened at once (the listen backlog is 1,024).
const CONNECTING: usize = 256;

fn invalid(what: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(format!("quote-fanout: {what}"))
}

/// What one side delivered to one set of clients.
#[derive(Debug, Default)]
struct Side {
    latencies_us: Vec<u64>,
    delivered: u64,
    seconds: f64,
}

impl Side {
    fn merge(&mut self, other: Side) {
        self.latencies_us.extend(other.latencies_us);
        self.delivered += other.delivered;
        self.seconds += other.seconds;
    }

    fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.delivered as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Raises the open-file limit toward `want` (two descriptors per client:
/// both ends live in this process); returns the limit in force.
fn raise_fd_limit(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current.is_some_and(|c| c >= want) {
        return want;
    }
    let raised = |current: u64, maximum: Option<u64>| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(current),
                maximum,
            },
        )
        .is_ok()
    };
    // Raising the hard limit needs CAP_SYS_RESOURCE; else up to it.
    if raised(want, Some(cur.maximum.map_or(want, |m| m.max(want)))) {
        return want;
    }
    let hard = cur.maximum.unwrap_or(want).min(want);
    if raised(hard, cur.maximum) {
        return hard;
    }
    cur.current.unwrap_or(1024)
}

/// File descriptors kept for the engine, the listeners and the database.
const FD_RESERVE: u64 = 4_096;

/// The resident set of this process, in bytes.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The tick's `at`, read without parsing the whole message.
fn tick_at(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if !text.starts_with("{\"type\":\"prices\"") {
        return None;
    }
    let start = text.rfind("\"at\":\"")? + 6;
    let end = start + text[start..].find('"')?;
    text[start..end].parse().ok()
}

/// Connects `n` clients to `addr`, subscribes them (or not), and records
/// what arrives during `window` after `WARMUP`; returns when the window
/// closes (the clients disconnect).
async fn clients(addr: SocketAddr, n: usize, window: Duration) -> Result<Side, BenchError> {
    let url = format!("ws://{addr}/v1/ws");
    let subscribe = json!({"type": "subscribe", "pairs": ["BTC/ETH"]}).to_string();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut conns = Vec::with_capacity(n);
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (url, gate) = (url.clone(), gate.clone());
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await;
            tokio_tungstenite::connect_async(url)
                .await
                .map(|(ws, _)| ws)
        });
    }
    while let Some(r) = connecting.join_next().await {
        conns.push(
            r.map_err(|e| invalid(format!("client task: {e}")))?
                .map_err(|e| invalid(format!("connect: {e}")))?,
        );
    }
    let begin = Instant::now() + WARMUP;
    let end = begin + window;
    let mut readers = tokio::task::JoinSet::new();
    for mut ws in conns {
        let subscribe = subscribe.clone();
        readers.spawn(async move {
            let mut side = Side::default();
            if ws.send(Message::Text(subscribe.into())).await.is_err() {
                return side;
            }
            loop {
                let next = tokio::time::timeout_at(end.into(), ws.next()).await;
                let Ok(Some(Ok(msg))) = next else { break };
                let Message::Text(text) = msg else { continue };
                let now = Instant::now();
                if now < begin {
                    continue;
                }
                if let Some(at) = tick_at(text.as_str()) {
                    let lat = (chrono::Utc::now() - at).num_microseconds().unwrap_or(0);
                    side.latencies_us.push(u64::try_from(lat).unwrap_or(0));
                    side.delivered += 1;
                }
            }
            let _ = ws.close(None).await;
            side
        });
    }
    let mut all = Side::default();
    while let Some(r) = readers.join_next().await {
        all.merge(r.map_err(|e| invalid(format!("reader: {e}")))?);
    }
    all.seconds = window.as_secs_f64();
    Ok(all)
}

/// Resident-set growth per connected, unsubscribed client.
async fn idle_bytes_per_client(addr: SocketAddr, clients: usize) -> Result<f64, BenchError> {
    let url = format!("ws://{addr}/v1/ws");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes().ok_or_else(|| invalid("no /proc/self/statm"))?;
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| invalid(format!("connect: {e}")))?;
        conns.push(ws);
    }
    // Let the server side finish its handshakes and park.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes().ok_or_else(|| invalid("no /proc/self/statm"))?;
    for mut ws in conns {
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(after.saturating_sub(before) as f64 / clients.max(1) as f64)
}

/// The bare broadcast server: every connection gets every tick.
async fn baseline_server(
    sample: IndicativePrices,
    stop: CancellationToken,
) -> Result<SocketAddr, BenchError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (tx, _) = broadcast::channel::<Utf8Bytes>(16);
    let ticks = tx.clone();
    let s = stop.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut prices = sample;
        loop {
            tokio::select! {
                _ = s.cancelled() => return,
                _ = interval.tick() => {}
            }
            if ticks.receiver_count() == 0 {
                continue;
            }
            prices.at = chrono::Utc::now();
            if let Ok(text) = serde_json::to_string(&ServerMessage::Prices(prices.clone())) {
                let _ = ticks.send(text.into());
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
            };
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                loop {
                    tokio::select! {
                        tick = rx.recv() => match tick {
                            Ok(text) => {
                                if sink.send(Message::Text(text)).await.is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        msg = stream.next() => match msg {
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                            Some(Ok(_)) => {}
                        },
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Runs the benchmark at the given sizes; the headline is p99 at the
/// largest.
pub async fn run_sizes(
    sizes: &[usize],
    window: Duration,
    rounds: u32,
) -> Result<Measurement, BenchError> {
    let wanted = sizes.iter().copied().max().unwrap_or(0);
    let limit = raise_fd_limit(2 * wanted.max(IDLE_CLIENTS) as u64 + FD_RESERVE);
    let fits = |n: usize| 2 * n as u64 + FD_RESERVE <= limit;
    // Sizes this process cannot hold (both ends of every connection are
    // here) are reported as skipped, never measured smaller.
    let skipped: Vec<usize> = sizes.iter().copied().filter(|&n| !fits(n)).collect();
    let sizes: Vec<usize> = sizes.iter().copied().filter(|&n| fits(n)).collect();
    let largest = sizes.iter().copied().max().ok_or_else(|| {
        invalid(format!(
            "the open-file limit {limit} holds none of the sizes; raise `ulimit -n`"
        ))
    })?;
    let idle_clients = if fits(IDLE_CLIENTS) {
        IDLE_CLIENTS
    } else {
        largest
    };
    let dir = std::env::temp_dir().join(format!("swap-bench-fanout-{}", uuid::Uuid::new_v4()));
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let engine = swapd::embedded::start(swapd::embedded::EmbeddedConfig {
        data_dir: dir.clone(),
        gateway_listen: any,
        bitcoin_rpc_listen: any,
        ethereum_rpc_listen: any,
        bitcoin_block_interval: None,
        ethereum_block_interval: None,
        ..Default::default()
    })
    .await
    .map_err(|e| invalid(format!("engine: {e:#}")))?;
    let unlimited = gateway::Rate {
        per_second: u32::MAX,
        burst: u32::MAX,
    };
    let gateway_addr = gateway::run(
        gateway::GatewayConfig {
            listen: any,
            price_interval: TICK,
            instance_id: "bench-quote-fanout".into(),
            limits: gateway::Limits {
                // Every client connects from 127.0.0.1.
                anonymous_per_ip: unlimited,
                ..engine.gateway_config.limits.clone()
            },
            ..engine.gateway_config.clone()
        },
        engine.gateway_deps.clone(),
        engine.shutdown.clone(),
        &engine.tracker,
    )
    .await
    .map_err(|e| invalid(format!("gateway: {e}")))?;
    let pair: Pair = "BTC/ETH".parse().map_err(invalid)?;
    let sample = engine
        .gateway_deps
        .liquidity
        .indicative(&pair)
        .await
        .map_err(|e| invalid(format!("no indicative price: {e}")))?;
    let stop = CancellationToken::new();
    let baseline_addr = baseline_server(sample, stop.clone()).await?;

    // Idle memory first, while the allocator has not yet kept pages from
    // the load runs (memory freed after them would hide new growth).
    let idle_gateway = idle_bytes_per_client(gateway_addr, idle_clients).await?;
    let idle_bare = idle_bytes_per_client(baseline_addr, idle_clients).await?;
    let mut per_size = Vec::new();
    let mut headline = (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    for &n in &sizes {
        let (mut gw, mut bare) = (Side::default(), Side::default());
        for _ in 0..rounds.max(1) {
            gw.merge(clients(gateway_addr, n, window).await?);
            bare.merge(clients(baseline_addr, n, window).await?);
        }
        let row = json!({
            "clients": n,
            "gateway": {
                "p50_ms": gw.percentile_ms(0.5), "p99_ms": gw.percentile_ms(0.99),
                "ticks_per_s": gw.throughput(), "samples": gw.latencies_us.len(),
            },
            "bare": {
                "p50_ms": bare.percentile_ms(0.5), "p99_ms": bare.percentile_ms(0.99),
                "ticks_per_s": bare.throughput(), "samples": bare.latencies_us.len(),
            },
            "expected_ticks_per_s": n as f64 * (1.0 / TICK.as_secs_f64()),
        });
        tracing::info!(%row, "quote-fanout size done");
        if n == largest {
            headline = (
                gw.percentile_ms(0.99),
                bare.percentile_ms(0.99),
                gw.throughput(),
                bare.throughput(),
            );
        }
        per_size.push(row);
    }
    stop.cancel();
    engine.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let (p99, bare_p99, tput, bare_tput) = headline;
    let tput_ratio = if bare_tput > 0.0 {
        tput / bare_tput
    } else {
        f64::NAN
    };
    Ok(Measurement {
        value: p99,
        unit: "ms p99 delivered-tick latency",
        baseline: bare_p99,
        goal: "<=1.5",
        detail: json!({
            "clients": largest,
            "skipped_sizes": skipped,
            "open_file_limit": limit,
            "tick_hz": 1.0 / TICK.as_secs_f64(),
            "window_secs": window.as_secs_f64(),
            "rounds": rounds.max(1),
            "throughput_ticks_per_s": tput,
            "baseline_throughput_ticks_per_s": bare_tput,
            "throughput_ratio": (tput_ratio * 1000.0).round() / 1000.0,
            "throughput_goal": ">=0.8",
            "throughput_met": tput_ratio >= 0.8,
            "idle_kib_per_client": idle_gateway / 1024.0,
            "baseline_idle_kib_per_client": idle_bare / 1024.0,
            "idle_goal_kib": 50,
            "idle_met": idle_gateway / 1024.0 <= 50.0,
            "idle_note": "resident-set growth per connected, unsubscribed client, both ends of the connection (client and server share this process)",
            "sizes": per_size,
        }),
    })
}

/// `swap-bench quote-fanout`.
pub async fn run(cfg: &BenchConfig) -> Result<Measurement, BenchError> {
    run_sizes(&SIZES, cfg.duration, cfg.rounds).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_time_is_read_from_a_prices_frame_only() {
        let at = chrono::Utc::now();
        let frame = serde_json::to_string(&ServerMessage::Prices(IndicativePrices {
            pair: "BTC/ETH".parse().unwrap(),
            rungs: vec![],
            at,
        }))
        .unwrap();
        assert_eq!(tick_at(&frame), Some(at));
        assert_eq!(tick_at(r#"{"type":"pong","nonce":null}"#), None);
    }

    /// The harness end to end at a small size: both sides deliver ticks
    /// and every figure is there (no timing is asserted).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_sides_deliver_ticks_at_a_small_size() {
        let m = run_sizes(&[20], Duration::from_millis(800), 1)
            .await
            .unwrap();
        let row = &m.detail["sizes"][0];
        for side in ["gateway", "bare"] {
            assert!(row[side]["samples"].as_u64().unwrap() > 20, "{row}");
            assert!(row[side]["p99_ms"].as_f64().unwrap() >= 0.0, "{row}");
        }
        assert!(m.value.is_finite() && m.baseline.is_finite());
        assert!(m.detail["idle_kib_per_client"].as_f64().unwrap() > 0.0);
    }
}
