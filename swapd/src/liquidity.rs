//! Liquidity in embedded mode: a simulated venue, the liquidity service,
//! and the price locks of open swaps restored after a restart.

use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;

use liquidity::venue::orders::{ApiCredentials, RestOrderVenue};
use liquidity::{
    HedgeConfig, Hedger, Liquidity, LiquidityConfig, LockStatus, PriceLock, SystemClock, VenueFeed,
};
use proto::api::Quote;
use proto::Assets;
use simulators::venue::server::VenueServer;
use simulators::venue::{SimVenue, SimVenueConfig};
use state_machine::machine::{Execution, Swap};
use state_machine::store::SwapStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::embedded::EmbeddedConfig;

/// Starts the simulated venue and liquidity, and restores the locks of
/// every swap still open in `store`.
pub async fn start(
    cfg: &EmbeddedConfig,
    assets: Assets,
    store: &SwapStore,
    shutdown: CancellationToken,
    _tracker: &TaskTracker,
) -> anyhow::Result<(Arc<Liquidity>, Arc<SimVenue>)> {
    let key = signing_key(cfg)?;
    let venue_cfg = SimVenueConfig::new("simvenue", cfg.venue_seed.unwrap_or_else(seed));
    let venue = if cfg.venue_autostep {
        SimVenue::start(venue_cfg, shutdown.clone())
    } else {
        SimVenue::start_held(venue_cfg, shutdown.clone())
    };
    // Hedge orders go to the simulated venue's REST order endpoint on
    // loopback, signed as a real venue wants them (credentials made per run).
    let server = VenueServer::start(
        Arc::clone(&venue),
        ([127, 0, 0, 1], 0).into(),
        shutdown.clone(),
    )
    .await
    .context("starting the simulated venue's order endpoint")?;
    let secret: [u8; 32] = rand::random();
    let creds = ApiCredentials::new("embedded-hedger", &secret);
    server.require_credentials(creds.clone());
    let order_venue = RestOrderVenue::new(
        "simvenue",
        &server.orders_url(),
        creds,
        Duration::from_secs(5),
    )
    .context("building the hedge order client")?;
    let venues: Vec<Arc<dyn VenueFeed>> = vec![venue.clone()];
    let liquidity_cfg = LiquidityConfig::dev(assets, &key);
    let clock: Arc<dyn liquidity::Clock> = Arc::new(SystemClock);
    let liquidity = Liquidity::start(
        liquidity_cfg.clone(),
        venues,
        Arc::clone(&clock),
        shutdown.clone(),
    )
    .context("starting the liquidity service")?;
    let hedger = Hedger::start(
        store.db().clone(),
        Arc::new(order_venue),
        liquidity_cfg,
        HedgeConfig::default(),
        clock,
        shutdown,
    )
    .await
    .context("starting the hedger")?;
    liquidity
        .attach_hedger(hedger)
        .context("attaching the hedger")?;
    let locks = open_locks(store).await?;
    if !locks.is_empty() {
        tracing::info!(count = locks.len(), "restoring price locks of open swaps");
    }
    liquidity.restore(&locks).context("restoring price locks")?;
    Ok((Arc::new(liquidity), venue))
}

/// The price locks of the swaps that are still open, rebuilt from the
/// quote each swap recorded when it was opened.
async fn open_locks(store: &SwapStore) -> anyhow::Result<Vec<PriceLock>> {
    let mut locks = Vec::new();
    for record in store.list_active(100_000).await? {
        let swap: Swap = serde_json::from_value(record.data.clone())
            .with_context(|| format!("reading swap {}", record.swap_id))?;
        if swap.lock_released {
            continue;
        }
        let events = store.events(record.swap_id).await?;
        let Some(opened) = events.first() else {
            continue;
        };
        let Some(quote) = opened.payload.get("quote") else {
            continue;
        };
        let quote: Quote = serde_json::from_value(quote.clone())
            .with_context(|| format!("reading the quote of swap {}", record.swap_id))?;
        let status = match swap.execution {
            Execution::Honoured => LockStatus::Executed,
            _ => LockStatus::Locked,
        };
        locks.push(PriceLock {
            quote_id: quote.quote_id,
            swap_id: swap.terms.swap_id,
            reserved_asset: quote.to.clone(),
            reserved: quote.amount_out_base_units,
            locked_at: swap.created_at,
            status,
            quote,
        });
    }
    Ok(locks)
}

/// The key quotes are signed with: 32 bytes from the OS's random source,
/// kept in the data directory (0600) so quotes stay verifiable across
/// restarts.
fn signing_key(cfg: &EmbeddedConfig) -> anyhow::Result<String> {
    let path = cfg.data_dir.join("quote-signing.key");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let hex = hex::encode(bytes);
    hot_wallet::keys::write_secret_file(&path, &hex)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(hex)
}

/// The simulated venue's price-path seed: a new market each start.
fn seed() -> u64 {
    rand::random()
}
