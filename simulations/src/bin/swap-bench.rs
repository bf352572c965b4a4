//! `swap-bench`: runs named benchmarks and prints one JSON line each.
//!
//! ```text
//! swap-bench --list
//! swap-bench persisted-transition [--database-url URL] [--duration-secs 5] [--rounds 3]
//! swap-bench --all [--json results.json]
//! ```

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use simulations::bench::{self, BenchConfig};

#[derive(Debug, Parser)]
#[command(
    name = "swap-bench",
    about = "Runs named benchmarks; each prints one JSON line with its figure and a baseline measured in the same run."
)]
struct Args {
    /// Benchmarks to run, by name.
    names: Vec<String>,
    /// List the benchmarks and exit.
    #[arg(long)]
    list: bool,
    /// Run every benchmark.
    #[arg(long)]
    all: bool,
    /// Also write the results, as a JSON array, to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// PostgreSQL server for database benchmarks (they create and drop their own database on it).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Seconds measured per side and round.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Rounds; measurement and baseline alternate.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The pgbench program.
    #[arg(long, env = "PGBENCH", default_value = "pgbench")]
    pgbench: String,
    /// Exit with status 2 if any benchmark misses its goal.
    #[arg(long)]
    check: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,swap_bench=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.list {
        for b in bench::REGISTRY {
            println!("{:<24} {}", b.name, b.about);
        }
        return Ok(());
    }
    let selected: Vec<&bench::Benchmark> = if args.all {
        bench::REGISTRY.iter().collect()
    } else if args.names.is_empty() {
        bail!("name one or more benchmarks, or pass --all (see --list)");
    } else {
        args.names
            .iter()
            .map(|n| bench::find(n))
            .collect::<Result<_, _>>()?
    };
    let mut database_url = args
        .database_url
        .or_else(|| std::env::var("TEST_DATABASE_URL").ok());
    let mut pgbench = args.pgbench;
    if database_url.is_none() {
        // No server named: set up the project's local PostgreSQL, as the
        // test command does.
        let setup = local_postgres().context("setting up PostgreSQL with scripts/pg.sh")?;
        database_url = setup.get("BENCH_DATABASE_URL").cloned();
        if pgbench == "pgbench" {
            if let Some(p) = setup.get("PGBENCH") {
                pgbench = p.clone();
            }
        }
    }
    let config = BenchConfig {
        database_url,
        duration: Duration::from_secs(args.duration_secs),
        rounds: args.rounds,
        pgbench,
    };

    let mut results = vec![];
    let mut failed = vec![];
    for b in selected {
        match bench::run(b, &config).await {
            Ok(r) => {
                println!("{}", r.to_json_line());
                results.push(r);
            }
            Err(e) => {
                eprintln!("swap-bench: {} failed: {e}", b.name);
                failed.push(b.name);
            }
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if !failed.is_empty() {
        eprintln!("swap-bench: benchmarks failed: {}", failed.join(", "));
        std::process::exit(1);
    }
    if args.check && results.iter().any(|r| !r.met) {
        eprintln!("swap-bench: some benchmarks missed their goal");
        std::process::exit(2);
    }
    Ok(())
}

/// Runs the project's `scripts/pg.sh` (installs and starts a local
/// PostgreSQL) and returns the variables it exports.
fn local_postgres() -> Result<std::collections::BTreeMap<String, String>> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg.sh");
    if !script.exists() {
        bail!(
            "no database URL and no {}: pass --database-url or set BENCH_DATABASE_URL",
            script.display()
        );
    }
    eprintln!(
        "swap-bench: no database URL given; running {}",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let mut vars = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line
            .trim()
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
        {
            vars.insert(
                k.to_owned(),
                v.trim_matches(|c| c == '\'' || c == '"').to_owned(),
            );
        }
    }
    Ok(vars)
}
