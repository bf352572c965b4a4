//! This process's Prometheus metrics: one recorder per process, installed by
//! [`install`], behind the `metrics` facade (any crate records with
//! `metrics::counter!(NAME)`), rendered in the Prometheus text format by
//! [`render`] for whatever HTTP server the service runs (`/metrics`). Before
//! [`install`] the macros record nowhere, so libraries and their unit tests
//! need nothing.
//!
//! The names every service uses are the constants below; each is described
//! (the `# HELP` line) by [`install`].

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Firm quotes handed out (REST and websocket), by pair.
pub const QUOTES_SERVED: &str = "swap_quotes_served_total";
/// Requests for quote, by outcome (`ok` or the error code).
pub const RFQ_REQUESTS: &str = "swap_rfq_requests_total";
/// Time to answer a request for quote, by outcome.
pub const RFQ_DURATION: &str = "swap_rfq_duration_seconds";
/// Swaps in each state (read from the swap store when scraped).
pub const SWAPS: &str = "swap_swaps";
/// Chain events about deposits to swaps' addresses, by network and status
/// (`seen`, `confirmed`, `unconfirmed`, `dropped`); a redelivered event
/// counts again.
pub const DEPOSITS: &str = "swap_deposit_events_total";
/// Payments broadcast the first time, by network and kind (payout, refund).
pub const PAYOUTS: &str = "swap_payments_broadcast_total";
/// Seconds since a venue's last book message (read when scraped).
pub const VENUE_STALENESS: &str = "swap_venue_staleness_seconds";
/// Whether a venue's connection is open and subscribed (1) or not (0).
pub const VENUE_CONNECTED: &str = "swap_venue_connected";
/// Messages a consumer group has not yet committed, per topic.
pub const BUS_LAG: &str = "swap_bus_lag_messages";
/// Round trip of a trivial database query, measured when scraped and on
/// every readiness check.
pub const DB_LATENCY: &str = "swap_db_query_duration_seconds";
/// 1 while quoting is halted (by the desk or automatically), else 0.
pub const TRADING_HALTED: &str = "swap_trading_halted";
/// The last block the node gateway processed, per network.
pub const CHAIN_TIP: &str = "swap_chain_tip_height";

/// Histogram buckets (seconds) for request and query latencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Why metrics could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

/// Installs this process's recorder (once; later calls return the same
/// handle). Fails only if another `metrics` recorder was installed first.
pub fn install() -> Result<&'static PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .as_ref()
        .map_err(|e| MetricsError(e.clone()))
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(QUOTES_SERVED, "Firm quotes handed out, by pair.");
    describe_counter!(
        RFQ_REQUESTS,
        "Requests for quote, by outcome (ok or the error code)."
    );
    describe_histogram!(
        RFQ_DURATION,
        Unit::Seconds,
        "Time to answer a request for quote, by outcome."
    );
    describe_gauge!(SWAPS, "Swaps in each state.");
    describe_counter!(
        DEPOSITS,
        "Chain events about deposits to swaps' addresses, by network and status."
    );
    describe_counter!(
        PAYOUTS,
        "Payments broadcast the first time, by network and kind (payout, refund)."
    );
    describe_gauge!(
        VENUE_STALENESS,
        Unit::Seconds,
        "Seconds since the venue's last book message."
    );
    describe_gauge!(
        VENUE_CONNECTED,
        "1 while the venue's connection is open and subscribed, else 0."
    );
    describe_gauge!(
        BUS_LAG,
        "Messages a consumer group has not committed yet, per topic."
    );
    describe_histogram!(
        DB_LATENCY,
        Unit::Seconds,
        "Round trip of a trivial database query."
    );
    describe_gauge!(TRADING_HALTED, "1 while quoting is halted, else 0.");
    describe_gauge!(
        CHAIN_TIP,
        "Height of the last block the node gateway processed, per network."
    );
}

/// The current values in the Prometheus text format (version 0.0.4);
/// empty when [`install`] was never called.
pub fn render() -> String {
    match HANDLE.get() {
        Some(Ok(handle)) => {
            handle.run_upkeep();
            handle.render()
        }
        _ => String::new(),
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
