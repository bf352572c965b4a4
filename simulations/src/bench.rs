//! Named benchmarks for `swap-bench`: each measures one figure and a baseline
//! in the same run and reports them as one JSON line.
//!
//! Adding a benchmark is one function `async fn(&BenchConfig) -> Result<Measurement, BenchError>`
//! plus one line in [`REGISTRY`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub mod address_derivation;
pub mod chain_ingest;
pub mod e2e;
pub mod persisted_transition;
pub mod pg;
pub mod quote_fanout;
pub mod rfq_pricing;

/// Errors of a benchmark run (measurement figures are `f64`: rates, not money).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown benchmark {0:?} (see `swap-bench --list`)")]
    Unknown(String),
    #[error(
        "no database URL: pass --database-url or set BENCH_DATABASE_URL or TEST_DATABASE_URL \
         (`eval \"$(scripts/pg.sh)\"` starts a local PostgreSQL and prints them)"
    )]
    NoDatabaseUrl,
    #[error("benchmark needs PostgreSQL, got {0:?}")]
    NotPostgres(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database setup failed: {0}")]
    Db(#[from] infra::db::DbError),
    #[error("swap store error: {0}")]
    Store(#[from] state_machine::store::StoreError),
    #[error("could not run {program}: {reason}")]
    Tool { program: String, reason: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Settings shared by all benchmarks.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// PostgreSQL server URL; benchmarks create and drop their own database on it.
    pub database_url: Option<String>,
    /// Measured time per side per round.
    pub duration: Duration,
    /// Measure and baseline alternate this many times (drift hits both alike).
    pub rounds: u32,
    /// The `pgbench` program.
    pub pgbench: String,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            duration: Duration::from_secs(5),
            rounds: 3,
            pgbench: "pgbench".into(),
        }
    }
}

impl BenchConfig {
    /// The database URL, or a [`BenchError::NoDatabaseUrl`] that says how to get one.
    pub fn require_postgres(&self) -> Result<&str, BenchError> {
        let url = self
            .database_url
            .as_deref()
            .ok_or(BenchError::NoDatabaseUrl)?;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(url)
        } else {
            Err(BenchError::NotPostgres(url.to_owned()))
        }
    }
}

/// What a benchmark function measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub value: f64,
    pub unit: &'static str,
    /// The same quantity for the reference implementation, measured in the same run.
    pub baseline: f64,
    /// Pass condition on `ratio = value / baseline`, such as `">=0.8"` or `"<=1.2"`.
    pub goal: &'static str,
    pub detail: Value,
}

/// One benchmark's result, printed as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchResult {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: f64,
    pub ratio: f64,
    pub goal: &'static str,
    /// Whether `ratio` satisfies `goal`.
    pub met: bool,
    pub detail: Value,
}

impl BenchResult {
    fn new(name: &'static str, m: Measurement) -> Self {
        let ratio = if m.baseline != 0.0 {
            m.value / m.baseline
        } else {
            f64::NAN
        };
        let ratio = (ratio * 1000.0).round() / 1000.0;
        Self {
            name,
            value: m.value,
            unit: m.unit,
            baseline: m.baseline,
            ratio,
            goal: m.goal,
            met: goal_met(m.goal, ratio),
            detail: m.detail,
        }
    }

    /// The result as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"name\":\"{}\",\"error\":\"{e}\"}}", self.name))
    }
}

/// Whether `ratio` satisfies a goal written `">=x"`, `">x"`, `"<=x"` or `"<x"`.
pub fn goal_met(goal: &str, ratio: f64) -> bool {
    let parse = |s: &str| s.trim().parse::<f64>().ok();
    if let Some(x) = goal.strip_prefix(">=").and_then(parse) {
        ratio >= x
    } else if let Some(x) = goal.strip_prefix("<=").and_then(parse) {
        ratio <= x
    } else if let Some(x) = goal.strip_prefix('>').and_then(parse) {
        ratio > x
    } else if let Some(x) = goal.strip_prefix('<').and_then(parse) {
        ratio < x
    } else {
        false
    }
}

type BenchFuture<'a> = Pin<Box<dyn Future<Output = Result<Measurement, BenchError>> + Send + 'a>>;

/// A registered benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Benchmark {
    pub name: &'static str,
    pub about: &'static str,
    pub run: for<'a> fn(&'a BenchConfig) -> BenchFuture<'a>,
}

/// Every benchmark, in `--all` order.
pub const REGISTRY: &[Benchmark] = &[
    Benchmark {
        name: "persisted-transition",
        about: "swap transitions/s persisted by the store on PostgreSQL (one connection, synchronous commit) vs pgbench running the same SQL",
        run: |c| Box::pin(persisted_transition::run(c)),
    },
    Benchmark {
        name: "persisted-transition-async-commit",
        about: "the same with synchronous_commit=off on both sides: the client's own cost, not the disk's",
        run: |c| Box::pin(persisted_transition::run_async_commit(c)),
    },
    Benchmark {
        name: "chain-ingest",
        about: "a generated mainnet-sized Bitcoin block (4,000 txs) decoded and matched against 1,000,000 watched scripts vs decoding it alone",
        run: |c| Box::pin(chain_ingest::run(c)),
    },
    Benchmark {
        name: "address-derivation",
        about: "fresh BIP84 deposit addresses/s derived watch-only from the account xpub vs raw secp256k1 CKDpub (HMAC-SHA512 + child-key tweak)",
        run: |c| Box::pin(address_derivation::run(c)),
    },
    Benchmark {
        name: "address-derivation-persisted",
        about: "the same with each address allocated and persisted on PostgreSQL (one transaction each) vs the same raw CKDpub",
        run: |c| Box::pin(address_derivation::run_persisted(c)),
    },
    Benchmark {
        name: "rfq-pricing",
        about: "µs to price one RFQ from 3 venues x 50 levels (aggregate + walk + costs) vs walking one venue's single book, no aggregation",
        run: |c| Box::pin(rfq_pricing::run(c)),
    },
    Benchmark {
        name: "quote-fanout",
        about: "p99 delivered-tick latency of 1,000/5,000/10,000 websocket clients on BTC/ETH at 10 Hz through the gateway vs a bare tokio-tungstenite broadcast server; throughput and idle memory per client in detail",
        run: |c| Box::pin(quote_fanout::run(c)),
    },
    Benchmark {
        name: "rfq-roundtrip",
        about: "µs per firm quote over the gateway's REST API (embedded engine, one client) vs the same RFQ priced in-process",
        run: |c| Box::pin(e2e::rfq_roundtrip(c)),
    },
    Benchmark {
        name: "e2e-swaps",
        about: "swaps/s from quote to confirmed payout in embedded mode (200 simulated users) vs the seed talk's 100,000 transactions a day (1.157/s)",
        run: |c| Box::pin(e2e::e2e_swaps(c)),
    },
];

/// Looks a benchmark up by name.
pub fn find(name: &str) -> Result<&'static Benchmark, BenchError> {
    REGISTRY
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| BenchError::Unknown(name.to_owned()))
}

/// Runs one benchmark.
pub async fn run(bench: &Benchmark, config: &BenchConfig) -> Result<BenchResult, BenchError> {
    tracing::info!(name = bench.name, "benchmark starting");
    let m = (bench.run)(config).await?;
    Ok(BenchResult::new(bench.name, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals() {
        assert!(goal_met(">=0.8", 0.8));
        assert!(!goal_met(">=0.8", 0.79));
        assert!(goal_met("<=1.2", 1.1));
        assert!(!goal_met("<1", 1.0));
        assert!(goal_met(">1", 1.01));
        assert!(!goal_met("fast", 10.0));
        assert!(!goal_met(">=0.8", f64::NAN));
    }

    #[test]
    fn registry_names_are_unique_and_findable() {
        for b in REGISTRY {
            assert_eq!(find(b.name).map(|f| f.name).ok(), Some(b.name));
            assert_eq!(REGISTRY.iter().filter(|o| o.name == b.name).count(), 1);
        }
        assert!(matches!(find("nope"), Err(BenchError::Unknown(_))));
    }

    #[test]
    fn result_line_has_the_documented_fields() {
        let r = BenchResult::new(
            "x",
            Measurement {
                value: 90.0,
                unit: "ops/s",
                baseline: 100.0,
                goal: ">=0.8",
                detail: serde_json::json!({"k": 1}),
            },
        );
        let v: Value = serde_json::from_str(&r.to_json_line()).unwrap();
        for k in [
            "name", "value", "unit", "baseline", "ratio", "goal", "detail",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["ratio"], 0.9);
        assert_eq!(v["met"], true);
    }

    #[tokio::test]
    async fn missing_database_url_says_what_to_do() {
        let err = run(
            find("persisted-transition").unwrap(),
            &BenchConfig::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BenchError::NoDatabaseUrl));
        assert!(err.to_string().contains("scripts/pg.sh"));
    }
}
