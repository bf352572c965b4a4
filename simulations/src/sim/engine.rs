//! The engine under simulation: in this process (embedded), a child
//! process the chaos runs kill with SIGKILL, or a running engine by URL.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use simulators::venue::SimVenue;
use swapd::embedded::{self, Embedded, EmbeddedConfig};

/// The per-IP request rate the simulated engine allows: all simulated users
/// share one loopback address, unlike real users behind their own.
const SIM_RATE_PER_IP: u32 = 1_000_000;

/// Engine settings a simulation needs (the same for every mode).
#[derive(Debug, Clone)]
pub struct SimEngineSettings {
    pub venue_seed: u64,
    pub deposit_window: Duration,
    pub mismatch_window: Duration,
    pub poll_interval: Duration,
}

/// Where the engine and its chains answer.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub engine_url: String,
    pub bitcoin_rpc: String,
    pub ethereum_rpc: String,
}

/// The engine being simulated.
#[derive(Debug)]
pub enum Engine {
    InProcess(Box<Embedded>),
    Child(ChildEngine),
    External,
}

impl Engine {
    /// The simulated venue, when the simulation can drive it.
    pub fn venue(&self) -> Option<Arc<SimVenue>> {
        match self {
            Engine::InProcess(e) => Some(e.venue.clone()),
            _ => None,
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Engine::InProcess(_) => "embedded",
            Engine::Child(_) => "child-process",
            Engine::External => "external",
        }
    }

    pub async fn stop(self) {
        match self {
            Engine::InProcess(e) => e.stop().await,
            Engine::Child(mut c) => c.terminate(),
            Engine::External => {}
        }
    }
}

/// An embedded engine in this process, its chains mined only by the
/// simulation and its venue moved only by it.
pub async fn start_in_process(
    dir: &Path,
    s: &SimEngineSettings,
) -> anyhow::Result<(Engine, Endpoints)> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let e = embedded::start(EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        gateway_listen: any,
        bitcoin_rpc_listen: any,
        ethereum_rpc_listen: any,
        bitcoin_block_interval: None,
        ethereum_block_interval: None,
        ethereum_automine: true,
        poll_interval: s.poll_interval,
        deposit_window: s.deposit_window,
        venue_seed: Some(s.venue_seed),
        venue_autostep: false,
        mismatch_decision_window: Some(s.mismatch_window),
        // Every simulated user comes from this one loopback address.
        gateway_limits: gateway::Limits {
            anonymous_per_ip: gateway::Rate {
                per_second: SIM_RATE_PER_IP,
                burst: SIM_RATE_PER_IP.saturating_mul(4),
            },
            ..gateway::Limits::default()
        },
        ..EmbeddedConfig::default()
    })
    .await?;
    let ep = Endpoints {
        engine_url: format!("http://{}", e.gateway_addr),
        bitcoin_rpc: e.bitcoin_rpc_url.clone(),
        ethereum_rpc: e.ethereum_rpc_url.clone(),
    };
    Ok((Engine::InProcess(Box::new(e)), ep))
}

/// The engine as a child process (`swapd run`), restarted on the same
/// data directory and ports after each kill.
#[derive(Debug)]
pub struct ChildEngine {
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    pub kills: u32,
}

impl ChildEngine {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, reaped; then the same command again.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix: no shutdown path runs.
            c.kill().context("killing the engine")?;
            c.wait().context("reaping the engine")?;
        }
        self.kills += 1;
        self.spawn()
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the child died on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildEngine {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?)
}

/// The `swapd` binary next to the running one, if built.
pub fn sibling_swapd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("swapd"), dir.join("../swapd")]
        .into_iter()
        .find(|p| p.is_file())
}

/// Starts `program run …` on `dir` with fixed loopback ports.
pub async fn start_child(
    program: &Path,
    dir: &Path,
    s: &SimEngineSettings,
) -> anyhow::Result<(Engine, Endpoints)> {
    let (gw, btc, eth) = (free_port()?, free_port()?, free_port()?);
    let args: Vec<String> = vec![
        "run".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--listen".into(),
        gw.to_string(),
        "--bitcoin-rpc-listen".into(),
        btc.to_string(),
        "--ethereum-rpc-listen".into(),
        eth.to_string(),
        "--bitcoin-block-secs".into(),
        "0".into(),
        "--ethereum-block-secs".into(),
        "0".into(),
        "--venue-seed".into(),
        s.venue_seed.to_string(),
        "--venue-held".into(),
        "--deposit-window-secs".into(),
        s.deposit_window.as_secs().to_string(),
        "--mismatch-window-secs".into(),
        s.mismatch_window.as_secs().to_string(),
        "--poll-ms".into(),
        s.poll_interval.as_millis().to_string(),
        // Every simulated user comes from this one loopback address.
        "--anonymous-rate-per-ip".into(),
        SIM_RATE_PER_IP.to_string(),
    ];
    let mut child = ChildEngine {
        program: program.to_path_buf(),
        args,
        child: None,
        kills: 0,
    };
    child.spawn()?;
    if let Some(status) = child.exited() {
        bail!("{} exited at once: {status}", program.display());
    }
    let ep = Endpoints {
        engine_url: format!("http://{gw}"),
        bitcoin_rpc: format!("http://{btc}"),
        ethereum_rpc: format!("http://{eth}"),
    };
    Ok((Engine::Child(child), ep))
}
