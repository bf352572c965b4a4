//! A simulated venue: price paths per market from a seeded generator, and
//! book snapshots published to subscribers every tick. It can go down and
//! come back (subscribers then see its books age), and take a set price or a
//! jump, for scenarios. It is a [`liquidity::VenueFeed`] in-process, and
//! [`server::VenueServer`] serves it over a websocket in Kraken's v2 wire
//! format with a REST order endpoint.

pub mod path;
pub mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use liquidity::venue::BookReceiver;
use liquidity::{Book, Clock, SystemClock, VenueFeed, VenueHealth};
use proto::Pair;
use rust_decimal::Decimal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use path::{MarketSpec, PricePath};

/// How a simulated venue runs.
#[derive(Debug, Clone)]
pub struct SimVenueConfig {
    pub name: String,
    pub seed: u64,
    /// Time between two steps of the price paths (and two snapshots).
    pub tick: Duration,
    pub markets: Vec<MarketSpec>,
    /// Stamps the snapshots' `received_at`.
    pub clock: Arc<dyn Clock>,
}

impl SimVenueConfig {
    /// BTC/USD, ETH/USD and USDC/USD, stepping every 250 ms.
    pub fn new(name: &str, seed: u64) -> Self {
        SimVenueConfig {
            name: name.to_owned(),
            seed,
            tick: Duration::from_millis(250),
            markets: vec![
                MarketSpec::btc_usd(),
                MarketSpec::eth_usd(),
                MarketSpec::usdc_usd(),
            ],
            clock: Arc::new(SystemClock),
        }
    }
}

#[derive(Debug)]
struct Market {
    path: PricePath,
    sequence: u64,
    books: watch::Sender<Option<Arc<Book>>>,
}

#[derive(Debug)]
struct State {
    markets: BTreeMap<Pair, Market>,
    health: VenueHealth,
}

/// A simulated exchange.
#[derive(Debug)]
pub struct SimVenue {
    name: String,
    clock: Arc<dyn Clock>,
    tick: Duration,
    state: Mutex<State>,
}

/// A command a scenario gives a market that is not simulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("venue {venue} has no market {market}")]
pub struct UnknownMarket {
    pub venue: String,
    pub market: Pair,
}

impl SimVenue {
    /// A venue at step zero, with no task: step it with [`SimVenue::step`].
    /// It publishes its first books at once.
    pub fn new(cfg: SimVenueConfig) -> Arc<Self> {
        let markets = cfg
            .markets
            .into_iter()
            .map(|spec| {
                let market = spec.market.clone();
                let (books, _) = watch::channel(None);
                let m = Market {
                    path: PricePath::new(spec, cfg.seed),
                    sequence: 0,
                    books,
                };
                (market, m)
            })
            .collect();
        let venue = Arc::new(SimVenue {
            name: cfg.name,
            clock: cfg.clock,
            tick: cfg.tick,
            state: Mutex::new(State {
                markets,
                health: VenueHealth::Up,
            }),
        });
        venue.publish_all(&mut venue.state());
        venue
    }

    /// Starts a venue whose paths step every `cfg.tick` until `shutdown`.
    pub fn start(cfg: SimVenueConfig, shutdown: CancellationToken) -> Arc<Self> {
        let venue = Self::new(cfg);
        let this = Arc::clone(&venue);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => this.step(),
                }
            }
            tracing::debug!(venue = %this.name, "simulated venue stopped");
        });
        venue
    }

    /// Starts a venue whose paths move only on [`SimVenue::step`] (or a
    /// set price or jump), but whose books are republished every
    /// `cfg.tick` so that they stay fresh: a market a scenario drives.
    pub fn start_held(cfg: SimVenueConfig, shutdown: CancellationToken) -> Arc<Self> {
        let venue = Self::new(cfg);
        let this = Arc::clone(&venue);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => this.refresh(),
                }
            }
        });
        venue
    }

    /// Publishes the current books again (fresh timestamps, same prices)
    /// when up; the paths do not move.
    pub fn refresh(&self) {
        let mut st = self.state();
        self.publish_all(&mut st);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_all(&self, st: &mut State) {
        if st.health != VenueHealth::Up {
            return;
        }
        let now = self.clock.now();
        for (market, m) in st.markets.iter_mut() {
            m.sequence += 1;
            let (bids, asks) = m.path.levels();
            m.books.send_replace(Some(Arc::new(Book {
                venue: self.name.clone(),
                market: market.clone(),
                bids,
                asks,
                sequence: m.sequence,
                received_at: now,
            })));
        }
    }

    /// Steps every market's path once and publishes (when up). Markets
    /// move while the venue is down; it just says nothing.
    pub fn step(&self) {
        let mut st = self.state();
        for m in st.markets.values_mut() {
            m.path.step();
        }
        self.publish_all(&mut st);
    }

    /// The current price of a market.
    pub fn price(&self, market: &Pair) -> Option<Decimal> {
        self.state().markets.get(market).map(|m| m.path.price())
    }

    /// Stops publishing: subscribers keep the last book, which goes stale.
    pub fn go_down(&self, reason: &str) {
        tracing::info!(venue = %self.name, %reason, "simulated venue down");
        self.state().health = VenueHealth::Down {
            reason: reason.to_owned(),
        };
    }

    /// Publishes again, at once.
    pub fn come_back(&self) {
        tracing::info!(venue = %self.name, "simulated venue back");
        let mut st = self.state();
        st.health = VenueHealth::Up;
        self.publish_all(&mut st);
    }

    fn with_market(
        &self,
        market: &Pair,
        f: impl FnOnce(&mut PricePath),
    ) -> Result<(), UnknownMarket> {
        let mut st = self.state();
        let m = st.markets.get_mut(market).ok_or_else(|| UnknownMarket {
            venue: self.name.clone(),
            market: market.clone(),
        })?;
        f(&mut m.path);
        self.publish_all(&mut st);
        Ok(())
    }

    /// Sets a market's price and publishes.
    pub fn set_price(&self, market: &Pair, price: Decimal) -> Result<(), UnknownMarket> {
        self.with_market(market, |p| p.set_price(price))
    }

    /// Moves a market's price by `bps` basis points at once and publishes.
    pub fn jump(&self, market: &Pair, bps: Decimal) -> Result<(), UnknownMarket> {
        self.with_market(market, |p| p.jump(bps))
    }
}

impl VenueFeed for SimVenue {
    fn name(&self) -> &str {
        &self.name
    }

    fn markets(&self) -> Vec<Pair> {
        self.state().markets.keys().cloned().collect()
    }

    fn subscribe(&self, market: &Pair) -> Option<BookReceiver> {
        self.state()
            .markets
            .get(market)
            .map(|m| m.books.subscribe())
    }

    fn health(&self) -> VenueHealth {
        self.state().health.clone()
    }
}
