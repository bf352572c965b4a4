//! The hedger: turns executed swaps into hedge orders at a venue. For each
//! execution it plans the orders ([`crate::hedge::plan`]), persists them
//! (`hedge_orders`) and only then sends them, each from its own task, with
//! bounded retries and capped exponential backoff that reuse the order's
//! client order id. Executions arrive on an unbounded channel: the swap's
//! execution never waits on the database or the venue. After a restart
//! every stored order still pending is sent again, with its id.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use infra::db::{Db, DbError};
use proto::Amount;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::PriceLock;
use crate::clock::Clock;
use crate::config::LiquidityConfig;
use crate::hedge::{self, HedgeOrder};
use crate::hedge_store;
use crate::venue::orders::OrderVenue;

/// How hard the hedger tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgeConfig {
    /// Sends of one order before it is given up (at least 1).
    pub max_attempts: u32,
    /// Wait before the second send; doubles after each failure.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            max_attempts: 8,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The hedger could not start.
#[derive(Debug, thiserror::Error)]
pub enum HedgeError {
    #[error("hedge store setup failed: {0}")]
    Migrate(#[from] DbError),
    #[error("hedge store: {0}")]
    Store(#[from] hedge_store::StoreError),
    #[error("invalid hedge configuration: {0}")]
    Config(String),
}

/// The running hedger. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hedger {
    inner: Arc<Inner>,
    intake: mpsc::UnboundedSender<(PriceLock, Amount)>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    venue: Arc<dyn OrderVenue>,
    liquidity: LiquidityConfig,
    cfg: HedgeConfig,
    clock: Arc<dyn Clock>,
    /// Every order: loaded, then planned.
    orders: Mutex<Vec<HedgeOrder>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Hedger {
    /// Applies the migrations, loads the stored orders, resends the pending
    /// ones, and takes executions until `shutdown`.
    pub async fn start(
        db: Db,
        venue: Arc<dyn OrderVenue>,
        liquidity: LiquidityConfig,
        cfg: HedgeConfig,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Hedger, HedgeError> {
        if cfg.max_attempts == 0 {
            return Err(HedgeError::Config("max_attempts must be at least 1".into()));
        }
        db.migrate(&hedge_store::MIGRATIONS).await?;
        let stored = hedge_store::load(&db).await?;
        let pending: Vec<HedgeOrder> = stored
            .iter()
            .filter(|o| !o.status.is_final())
            .cloned()
            .collect();
        let (intake, mut rx) = mpsc::unbounded_channel::<(PriceLock, Amount)>();
        let inner = Arc::new(Inner {
            db,
            venue,
            liquidity,
            cfg,
            clock,
            orders: Mutex::new(stored),
            tasks: TaskTracker::new(),
            shutdown: shutdown.clone(),
        });
        tracing::info!(pending = pending.len(), "hedger started");
        for o in pending {
            let i = Arc::clone(&inner);
            inner.tasks.spawn(async move { i.send(o).await });
        }
        let i = Arc::clone(&inner);
        inner.tasks.spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = i.shutdown.cancelled() => break,
                    n = rx.recv() => n,
                };
                let Some((lock, deposit)) = next else { break };
                i.hedge(&lock, deposit).await;
            }
        });
        Ok(Hedger { inner, intake })
    }

    /// Queues the hedge of an executed lock (never waits).
    pub fn submit(&self, lock: PriceLock, deposit: Amount) {
        if self.intake.send((lock, deposit)).is_err() {
            tracing::error!("hedger stopped; an execution is not hedged");
        }
    }

    /// Every hedge order as last known: those loaded at start first (oldest
    /// first, ties by client order id), then those planned since.
    pub fn orders(&self) -> Vec<HedgeOrder> {
        self.inner.orders().clone()
    }

    /// Waits for the hedger's tasks after `shutdown` was cancelled.
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Inner {
    fn orders(&self) -> MutexGuard<'_, Vec<HedgeOrder>> {
        self.orders.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, o: &HedgeOrder) {
        let mut orders = self.orders();
        match orders
            .iter_mut()
            .find(|x| x.client_order_id == o.client_order_id)
        {
            Some(x) => *x = o.clone(),
            None => orders.push(o.clone()),
        }
    }

    /// Retries a database write until it sticks or shutdown; `false` on
    /// shutdown.
    async fn until_stored<F, Fut, T>(&self, what: &str, mut write: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match write().await {
                Ok(v) => return Some(v),
                Err(e) => tracing::warn!(error = %e, what, "hedge store write failed; retrying"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    #[tracing::instrument(name = "liquidity.hedge", skip_all, fields(swap_id = %lock.swap_id, quote_id = %lock.quote_id))]
    async fn hedge(self: &Arc<Self>, lock: &PriceLock, deposit: Amount) {
        let now = self.clock.now();
        let planned = match hedge::plan(&self.liquidity, lock, deposit, self.venue.name(), now) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "swap not hedged: the hedge cannot be planned");
                return;
            }
        };
        for o in planned {
            let Some(inserted) = self
                .until_stored("insert", || hedge_store::insert(&self.db, &o))
                .await
            else {
                return;
            };
            if !inserted {
                // Planned before (an execution seen twice): the stored
                // order is sent, or was, by its own task.
                tracing::info!(client_order_id = %o.client_order_id, "hedge order already stored");
                continue;
            }
            self.remember(&o);
            tracing::info!(client_order_id = %o.client_order_id, market = %o.market, side = o.side.as_str(), qty = %o.qty, "hedge order stored");
            let i = Arc::clone(self);
            self.tasks.spawn(async move { i.send(o).await });
        }
    }

    /// Sends a stored order until it is final or out of attempts.
    #[tracing::instrument(name = "liquidity.hedge_send", skip_all, fields(client_order_id = %order.client_order_id))]
    async fn send(self: Arc<Self>, mut order: HedgeOrder) {
        let mut backoff = self.cfg.first_backoff;
        while !order.status.is_final() {
            let attempt = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                a = self.venue.place(&order) => a,
            };
            let may_retry = order.attempts + 1 < self.cfg.max_attempts;
            let next = hedge::after_attempt(&order, attempt, may_retry, self.clock.now());
            if self
                .until_stored("update", || hedge_store::update(&self.db, &next))
                .await
                .is_none()
            {
                return;
            }
            self.remember(&next);
            order = next;
            match &order.status {
                hedge::HedgeStatus::Pending => {
                    tracing::warn!(attempts = order.attempts, error = ?order.last_error, "hedge order unanswered; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                }
                s => {
                    tracing::info!(status = s.name(), filled = %order.filled_qty, avg_price = ?order.avg_price, "hedge order done")
                }
            }
        }
    }
}
