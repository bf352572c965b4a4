//! Whole-engine benchmarks on the embedded engine: an RFQ's round trip
//! through the gateway, and swaps per second from quote to payout.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{BenchConfig, BenchError, Measurement};
use crate::sim::client::Gateway;
use crate::sim::engine::{start_in_process, SimEngineSettings};
use crate::sim::scenario::{Scenario, ScenarioChoice};
use crate::sim::{self, SimOptions};

/// The seed talk's volume: 100,000 transactions a day, per second.
const SEED_TX_PER_S: f64 = 100_000.0 / 86_400.0;

fn settings() -> SimEngineSettings {
    SimEngineSettings {
        venue_seed: 1,
        deposit_window: Duration::from_secs(600),
        mismatch_window: Duration::from_secs(60),
        poll_interval: Duration::from_millis(50),
    }
}

fn failed(e: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(e.to_string())
}

/// µs per firm quote over REST (one client, keep-alive) against the
/// in-process pricing of the same RFQ (`rfq-pricing`'s figure, same run).
pub async fn rfq_roundtrip(cfg: &BenchConfig) -> Result<Measurement, BenchError> {
    let dir = tempfile::tempdir()?;
    let (engine, ep) = start_in_process(dir.path(), &settings())
        .await
        .map_err(failed)?;
    let gw = Gateway::new(reqwest::Client::new(), &ep.engine_url);
    gw.wait_healthy(Duration::from_secs(30))
        .await
        .map_err(failed)?;
    let mut ops = 0u64;
    let mut time = Duration::ZERO;
    for _ in 0..cfg.rounds.max(1) {
        let start = Instant::now();
        while start.elapsed() < cfg.duration / 2 {
            gw.rfq("BTC", "ETH", "1")
                .await
                .map_err(failed)?
                .map_err(|e| failed(e.message))?;
            ops += 1;
        }
        time += start.elapsed();
    }
    engine.stop().await;
    let value = time.as_secs_f64() * 1e6 / ops.max(1) as f64;
    let pricing = super::rfq_pricing::run(cfg).await?;
    Ok(Measurement {
        value: (value * 1000.0).round() / 1000.0,
        unit: "us/rfq",
        baseline: pricing.value,
        goal: "<=200",
        detail: json!({
            "rfq": "1 BTC -> ETH, POST /v1/quotes, one client, sequential, keep-alive",
            "baseline": "the same RFQ priced in-process (rfq-pricing)",
            "rfqs": ops,
            "rfq_per_s": (1e6 / value).round(),
        }),
    })
}

/// Swaps per second from quote to confirmed payout, embedded engine,
/// simulated users paying at once and one block per step, against the
/// seed talk's 100,000 transactions a day.
pub async fn e2e_swaps(_cfg: &BenchConfig) -> Result<Measurement, BenchError> {
    let swaps = 200;
    let opts = SimOptions {
        seed: 1,
        scenario: ScenarioChoice::One(Scenario::Happy),
        swaps,
        external: None,
        chaos: 0,
        swapd: None,
        users_per_step: 50,
        deposit_window: Duration::from_secs(600),
    };
    let (report, wall) = sim::run(&opts).await.map_err(failed)?;
    if !report.ok() {
        return Err(failed(format!("invariants broken:\n{}", report.summary())));
    }
    let completed = report
        .final_states_total
        .get("completed")
        .copied()
        .unwrap_or(0);
    let value = completed as f64 / wall.total.as_secs_f64();
    Ok(Measurement {
        value: (value * 1000.0).round() / 1000.0,
        unit: "swaps/s",
        baseline: (SEED_TX_PER_S * 1000.0).round() / 1000.0,
        goal: ">=1",
        detail: json!({
            "swaps": swaps,
            "completed": completed,
            "users_per_step": opts.users_per_step,
            "wall_s": (wall.total.as_secs_f64() * 10.0).round() / 10.0,
            "steps": wall.steps,
            "baseline": "100,000 transactions a day",
            "includes": "engine start, 211 warm-up blocks, quote, accept, deposit, confirmations, payout",
        }),
    })
}
