//! `swapd`: the swap engine binary.
//!
//! `swapd` (or `swapd run`) starts the embedded engine; `swapd demo` runs
//! one BTC→ETH swap against it the way a wallet user would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use swapd::demo::{self, DemoOptions};
use swapd::embedded::{self, EmbeddedConfig};

#[derive(Debug, Parser)]
#[command(
    name = "swapd",
    version,
    about = "Non-custodial swap and liquidity engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole engine in this process (the default).
    Run(RunArgs),
    /// Run one BTC→ETH swap as a wallet user would, and print the outcome.
    Demo(DemoArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where the database, chains and keys are kept.
    #[arg(long, env = "SWAPD_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Client API (REST and websocket).
    #[arg(long, env = "SWAPD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The simulated bitcoind's JSON-RPC.
    #[arg(long, default_value = "127.0.0.1:18443")]
    bitcoin_rpc_listen: SocketAddr,
    /// The simulated Ethereum node's JSON-RPC.
    #[arg(long, default_value = "127.0.0.1:8545")]
    ethereum_rpc_listen: SocketAddr,
    /// Seconds between blocks of the simulated Bitcoin chain (0: only on demand).
    #[arg(long, default_value_t = 10)]
    bitcoin_block_secs: u64,
    /// Seconds between blocks of the simulated Ethereum chain (0: only on demand).
    #[arg(long, default_value_t = 2)]
    ethereum_block_secs: u64,
    /// Mine an Ethereum block for every transaction, like anvil's default.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ethereum_automine: bool,
    /// The desk's bearer token; a random one is made and printed when unset.
    #[arg(long, env = "SWAPD_DESK_TOKEN", hide_env_values = true)]
    desk_token: Option<String>,
    /// Seed of the simulated venue's price paths (default: a new market each start).
    #[arg(long)]
    venue_seed: Option<u64>,
    /// Hold the simulated venue's prices still (books stay fresh; prices move only on command).
    #[arg(long)]
    venue_held: bool,
    /// Seconds a user has to deposit after accepting.
    #[arg(long, default_value_t = 30 * 60)]
    deposit_window_secs: u64,
    /// Seconds a user has to decide after an amount mismatch (default: the policy's).
    #[arg(long)]
    mismatch_window_secs: Option<u64>,
    /// Milliseconds between two polls of the nodes.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Requests per second one client IP may make without an API key
    /// (bursts of four times as many).
    #[arg(long, default_value_t = 50)]
    anonymous_rate_per_ip: u32,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// The engine to use; when nothing answers there, the demo starts an
    /// engine of its own in this process.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    engine: String,
    /// The user's Bitcoin node (bitcoind JSON-RPC).
    #[arg(long, default_value = "http://127.0.0.1:18443")]
    bitcoin_rpc: String,
    /// The user's Ethereum node.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    ethereum_rpc: String,
    /// BTC to swap.
    #[arg(long, default_value = "0.01")]
    amount: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // No subcommand means `run` with its defaults (and environment).
    let command = match cli.command {
        Some(c) => c,
        None => match Cli::parse_from(["swapd", "run"]).command {
            Some(c) => c,
            None => unreachable!("`run` parses to a command"),
        },
    };
    let result = match command {
        Command::Demo(args) => {
            init_tracing("warn");
            run_demo(args).await
        }
        Command::Run(args) => {
            init_tracing("info");
            run(args).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = EmbeddedConfig {
        data_dir: args.data_dir,
        gateway_listen: args.listen,
        bitcoin_rpc_listen: args.bitcoin_rpc_listen,
        ethereum_rpc_listen: args.ethereum_rpc_listen,
        bitcoin_block_interval: (args.bitcoin_block_secs > 0)
            .then(|| Duration::from_secs(args.bitcoin_block_secs)),
        desk_token: args.desk_token,
        ethereum_block_interval: (args.ethereum_block_secs > 0)
            .then(|| Duration::from_secs(args.ethereum_block_secs)),
        ethereum_automine: args.ethereum_automine,
        venue_seed: args.venue_seed,
        venue_autostep: !args.venue_held,
        deposit_window: Duration::from_secs(args.deposit_window_secs),
        mismatch_decision_window: args.mismatch_window_secs.map(Duration::from_secs),
        poll_interval: Duration::from_millis(args.poll_ms.max(1)),
        gateway_limits: gateway::Limits {
            anonymous_per_ip: gateway::Rate {
                per_second: args.anonymous_rate_per_ip.max(1),
                burst: args.anonymous_rate_per_ip.max(1).saturating_mul(4),
            },
            ..gateway::Limits::default()
        },
        ..EmbeddedConfig::default()
    };
    let engine = embedded::start(cfg).await?;
    println!("swapd embedded engine ready");
    println!(
        "  client API     http://{}/v1  (websocket ws://{}/v1/ws)",
        engine.gateway_addr, engine.gateway_addr
    );
    println!(
        "  bitcoind RPC   {}  (regtest, simulated)",
        engine.bitcoin_rpc_url
    );
    println!(
        "  ethereum RPC   {}  (chain id 31337, simulated)",
        engine.ethereum_rpc_url
    );
    println!(
        "  swap page      http://{}/   desk http://{}/desk",
        engine.gateway_addr, engine.gateway_addr
    );
    if engine.desk_token_generated {
        println!(
            "  desk token     {}  (made for this run; set SWAPD_DESK_TOKEN to choose one)",
            engine.desk_token
        );
    }
    println!(
        "  metrics        http://{}/metrics   readiness http://{}/v1/ready",
        engine.gateway_addr, engine.gateway_addr
    );
    println!("  try: swapd demo   (or: cargo run --release -- demo)");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    println!("shutting down");
    engine.stop().await;
    Ok(())
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let running = http
        .get(format!("{}/v1/health", args.engine.trim_end_matches('/')))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    let mut own = None;
    let mut opts = DemoOptions {
        engine_url: args.engine.clone(),
        bitcoin_rpc_url: args.bitcoin_rpc,
        ethereum_rpc_url: args.ethereum_rpc,
        amount_btc: args.amount,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    if running {
        println!("engine: {} (already running)", args.engine);
    } else {
        let dir = tempfile::tempdir().context("creating a data directory for the demo engine")?;
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let engine = embedded::start(EmbeddedConfig {
            data_dir: dir.path().to_path_buf(),
            gateway_listen: any,
            bitcoin_rpc_listen: any,
            ethereum_rpc_listen: any,
            bitcoin_block_interval: None,
            ..EmbeddedConfig::default()
        })
        .await?;
        opts.engine_url = format!("http://{}", engine.gateway_addr);
        opts.bitcoin_rpc_url = engine.bitcoin_rpc_url.clone();
        opts.ethereum_rpc_url = engine.ethereum_rpc_url.clone();
        println!(
            "engine: none at {}; started one in this process at {}",
            args.engine, opts.engine_url
        );
        own = Some((engine, dir));
    }
    let outcome = demo::run(&opts).await;
    if let Some((engine, _dir)) = own {
        engine.stop().await;
    }
    let outcome = outcome?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}
