//! `swap-sim`: simulated users, markets and chains drive the engine from a
//! seed; prints a summary, writes the JSON report, and exits non-zero (with
//! the seed to replay) when an invariant breaks.
//!
//! ```text
//! swap-sim --seed 1 --scenario mixed --swaps 1000 [--report FILE]
//! swap-sim --seed 7 --scenario mixed --swaps 500 --chaos 30
//! swap-sim --seed 1 --scenario happy --swaps 10 --engine-url URL --bitcoin-rpc URL --ethereum-rpc URL
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use simulations::sim::engine::Endpoints;
use simulations::sim::scenario::ScenarioChoice;
use simulations::sim::{self, SimOptions};

#[derive(Debug, Parser)]
#[command(
    name = "swap-sim",
    about = "Deterministic simulated users, markets and chains against the engine; checks its invariants."
)]
struct Args {
    /// Every random choice comes from this seed.
    #[arg(long)]
    seed: u64,
    /// A scenario name, or `mixed` (drawn per user from the seed).
    #[arg(long, default_value = "mixed")]
    scenario: ScenarioChoice,
    /// Number of simulated users (each opens at most one swap).
    #[arg(long, default_value_t = 100)]
    swaps: usize,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// A running engine's gateway (default: start one in this process).
    #[arg(long, requires_all = ["bitcoin_rpc", "ethereum_rpc"])]
    engine_url: Option<String>,
    /// That engine's Bitcoin node (bitcoind JSON-RPC).
    #[arg(long)]
    bitcoin_rpc: Option<String>,
    /// That engine's Ethereum node.
    #[arg(long)]
    ethereum_rpc: Option<String>,
    /// Run the engine as a child process and SIGKILL it at this many
    /// seeded points, restarting it each time.
    #[arg(long, default_value_t = 0)]
    chaos: u32,
    /// The swapd binary for --chaos (default: the one next to swap-sim).
    #[arg(long)]
    swapd: Option<PathBuf>,
    /// New users per step.
    #[arg(long, default_value_t = 10)]
    users_per_step: usize,
    /// Seconds users have to deposit (the engine's deposit window);
    /// default 6, or 60 with --chaos (a restart must not expire a swap
    /// whose deposit is on its way).
    #[arg(long)]
    deposit_window_secs: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let seed = args.seed;
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("swap-sim: invariants broken; replay with --seed {seed}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("swap-sim: error: {e:#}\nswap-sim: replay with --seed {seed}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let external = match (args.engine_url, args.bitcoin_rpc, args.ethereum_rpc) {
        (Some(engine_url), Some(bitcoin_rpc), Some(ethereum_rpc)) => Some(Endpoints {
            engine_url,
            bitcoin_rpc,
            ethereum_rpc,
        }),
        _ => None,
    };
    let opts = SimOptions {
        seed: args.seed,
        scenario: args.scenario,
        swaps: args.swaps,
        external,
        chaos: args.chaos,
        swapd: args.swapd,
        users_per_step: args.users_per_step,
        deposit_window: Duration::from_secs(
            args.deposit_window_secs
                .unwrap_or(if args.chaos > 0 { 60 } else { 6 }),
        ),
    };
    let (report, wall) = sim::run(&opts).await?;
    print!("{}", report.summary());
    println!("{}", wall.summary());
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.ok())
}
