//! The liquidity service: subscribes to its venues' books, and answers the
//! [`LiquidityApi`] from the pure pricing, quote and lock code, holding the
//! quotes, locks, exposure and trading state in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use proto::api::{AmountSide, IndicativePrices, Quote, RfqRequest};
use proto::{Amount, AssetId, AssetSpec, Pair, QuoteId, SwapId, Timestamp};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use crate::api::{LiquidityApi, PriceLock};
use crate::book::{aggregate, AggregatedBook};
use crate::clock::Clock;
use crate::config::LiquidityConfig;
use crate::error::LiquidityError;
use crate::locks::LockBook;
use crate::pricing::{self, Books, Exposure, PriceRequest};
use crate::quotes::{build_quote, QuoteSigner, QuoteStore};
use crate::risk::{self, TradingState};
use crate::venue::{BookReceiver, VenueFeed};

/// The liquidity engine. Cheap to clone; all clones share one state.
#[derive(Clone, Debug)]
pub struct Liquidity {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: LiquidityConfig,
    clock: Arc<dyn Clock>,
    signer: QuoteSigner,
    /// Per market, the venues offering it and their latest books.
    feeds: BTreeMap<Pair, Vec<(String, BookReceiver)>>,
    venues: Vec<Arc<dyn VenueFeed>>,
    state: Mutex<State>,
    /// Every lock executed, for whoever hedges and keeps P&L.
    executions: tokio::sync::broadcast::Sender<PriceLock>,
    /// Hedges every execution once attached.
    hedger: std::sync::OnceLock<crate::hedger::Hedger>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liquidity")
            .field("markets", &self.feeds.keys().collect::<Vec<_>>())
            .field(
                "venues",
                &self.venues.iter().map(|v| v.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    quotes: QuoteStore,
    locks: LockBook,
    exposure: Exposure,
    trading: TradingState,
}

fn config_error(msg: String) -> LiquidityError {
    LiquidityError::Config(msg)
}

fn validate(cfg: &LiquidityConfig) -> Result<(), LiquidityError> {
    for (id, p) in &cfg.policies {
        cfg.assets
            .get(id)
            .map_err(|_| config_error(format!("policy for {id}, which is not among the assets")))?;
        if p.min_amount > p.max_amount || p.min_amount.is_sign_negative() {
            return Err(config_error(format!(
                "{id}: min_amount {} must be between 0 and max_amount {}",
                p.min_amount, p.max_amount
            )));
        }
    }
    let bps = Decimal::from(10_000);
    if cfg.venue_fee_bps.is_sign_negative() || cfg.venue_fee_bps >= bps {
        return Err(config_error("venue_fee_bps must be in [0, 10000)".into()));
    }
    if cfg.spread_bps.is_sign_negative()
        || cfg.max_skew_bps.is_sign_negative()
        || cfg.spread_bps + cfg.max_skew_bps >= bps
    {
        return Err(config_error(
            "spread_bps and max_skew_bps must be at least 0 and together under 10000".into(),
        ));
    }
    if cfg.quote_ttl_ms == 0 || cfg.stale_after_ms == 0 || cfg.risk_check_interval_ms == 0 {
        return Err(config_error(
            "quote_ttl_ms, stale_after_ms and risk_check_interval_ms must be above 0".into(),
        ));
    }
    Ok(())
}

fn ms(v: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Liquidity {
    /// Starts the engine: subscribes to every configured market at every
    /// venue offering it, and runs the risk check (automatic halt when all
    /// venues of a market are stale, pruning of old quotes) until
    /// `shutdown`. Must be called inside a tokio runtime.
    pub fn start(
        config: LiquidityConfig,
        venues: Vec<Arc<dyn VenueFeed>>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Self, LiquidityError> {
        validate(&config)?;
        let signer = QuoteSigner::from_hex(&config.signing_key_hex)?;
        let mut feeds: BTreeMap<Pair, Vec<(String, BookReceiver)>> = BTreeMap::new();
        for market in &config.markets {
            let subs = feeds.entry(market.clone()).or_default();
            for v in &venues {
                if let Some(rx) = v.subscribe(market) {
                    subs.push((v.name().to_owned(), rx));
                }
            }
            if subs.is_empty() {
                tracing::warn!(%market, "no venue offers this market");
            }
        }
        let inventory = config
            .policies
            .iter()
            .map(|(id, p)| (id.clone(), p.inventory))
            .collect();
        let decimals = config
            .assets
            .iter()
            .map(|a| (a.id.clone(), a.decimals))
            .collect();
        let state = State {
            quotes: QuoteStore::default(),
            locks: LockBook::new(inventory, decimals),
            exposure: Exposure::new(),
            trading: TradingState::Active,
        };
        let interval = Duration::from_millis(config.risk_check_interval_ms);
        let liquidity = Liquidity {
            inner: Arc::new(Inner {
                cfg: config,
                clock,
                signer,
                feeds,
                venues,
                state: Mutex::new(state),
                executions: tokio::sync::broadcast::channel(1024).0,
                hedger: std::sync::OnceLock::new(),
            }),
        };
        liquidity.check_risk();
        let this = liquidity.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        this.check_risk();
                        this.prune_quotes();
                    }
                }
            }
            tracing::debug!("liquidity risk check stopped");
        });
        Ok(liquidity)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub fn config(&self) -> &LiquidityConfig {
        &self.inner.cfg
    }

    /// Each venue's connection as the desk sees it: connected, age of the
    /// last update, last sequence, reconnects, resyncs, latency.
    /// A feed that keeps no such bookkeeping (the simulated venue) gets its
    /// last update and sequence from the newest book it published.
    pub fn venue_status(&self) -> Vec<crate::venue::VenueStatus> {
        self.inner
            .venues
            .iter()
            .map(|v| {
                let mut status = v.status();
                if status.last_update_at.is_none() {
                    let newest = self
                        .inner
                        .feeds
                        .values()
                        .flatten()
                        .filter(|(name, _)| name == v.name())
                        .filter_map(|(_, rx)| {
                            rx.borrow().as_ref().map(|b| (b.received_at, b.sequence))
                        })
                        .max();
                    if let Some((at, sequence)) = newest {
                        status.last_update_at = Some(at);
                        status.last_sequence.get_or_insert(sequence);
                    }
                }
                status
            })
            .collect()
    }

    /// The aggregated book of a market at `now`.
    pub fn book(&self, market: &Pair, now: Timestamp) -> Result<AggregatedBook, LiquidityError> {
        let subs =
            self.inner
                .feeds
                .get(market)
                .ok_or_else(|| LiquidityError::MarketUnavailable {
                    market: market.clone(),
                    reason: "the market is not configured".into(),
                })?;
        let books: Vec<_> = subs
            .iter()
            .filter_map(|(_, rx)| rx.borrow().clone())
            .collect();
        aggregate(
            market,
            books.iter().map(|b| b.as_ref()),
            now,
            ms(self.inner.cfg.stale_after_ms),
        )
    }

    fn books_for(&self, markets: &[Pair], now: Timestamp) -> Result<Books, LiquidityError> {
        markets
            .iter()
            .map(|m| Ok((m.clone(), self.book(m, now)?)))
            .collect()
    }

    /// Checks every configured market for a fresh book now and moves the
    /// trading state accordingly (automatic halt and resume).
    pub fn check_risk(&self) -> TradingState {
        let now = self.now();
        let stale: Vec<String> = self
            .inner
            .cfg
            .markets
            .iter()
            .filter(|m| self.book(m, now).is_err())
            .map(|m| m.to_string())
            .collect();
        let mut st = self.state();
        let breaches = risk::exposure_breaches(&self.inner.cfg.policies, &st.exposure);
        let next = risk::next_state(&st.trading, &stale, &breaches, now);
        if next != st.trading {
            match &next {
                TradingState::Active => {
                    tracing::info!("trading active: venues fresh, exposures within limits")
                }
                TradingState::Reducing { reason, .. } => {
                    tracing::warn!(%reason, "trading reducing: only quotes that reduce exposure")
                }
                TradingState::Halted { reason, .. } => tracing::warn!(%reason, "trading halted"),
            }
            st.trading = next.clone();
        }
        next
    }

    fn prune_quotes(&self) {
        let now = self.now();
        let retention = ms(self.inner.cfg.quote_retention_ms);
        let mut st = self.state();
        let State { quotes, locks, .. } = &mut *st;
        quotes.prune(now, retention, |id| locks.is_locked(id));
    }

    /// Refuses when halted (reducing still prices; [`LiquidityApi::quote`]
    /// then checks the direction).
    fn ensure_not_halted(&self) -> Result<(), LiquidityError> {
        match &self.state().trading {
            TradingState::Active | TradingState::Reducing { .. } => Ok(()),
            TradingState::Halted { reason, .. } => Err(LiquidityError::TradingHalted {
                reason: reason.clone(),
            }),
        }
    }

    fn asset(&self, ticker: &str) -> Result<&AssetSpec, LiquidityError> {
        let spec = self
            .inner
            .cfg
            .assets
            .parse(ticker.trim())
            .map_err(|_| LiquidityError::UnknownAsset(ticker.to_owned()))?;
        if !self.inner.cfg.policies.contains_key(&spec.id) {
            return Err(LiquidityError::UnknownAsset(ticker.to_owned()));
        }
        Ok(spec)
    }

    /// Inventory of `asset` not reserved by a lock, in base units.
    pub fn available_inventory(&self, asset: &AssetId) -> Amount {
        self.state().locks.available(asset)
    }

    /// Exposure per asset, in whole units (grows with deposits executed,
    /// shrinks with payouts).
    pub fn exposure(&self) -> Exposure {
        self.state().exposure.clone()
    }

    /// Quotes handed out, not expired at the engine's `now` and not locked
    /// (for the desk).
    pub fn open_quotes(&self) -> Vec<Quote> {
        let now = self.now();
        let st = self.state();
        st.quotes
            .iter()
            .filter(|q| q.expires_at > now && !st.locks.is_locked(&q.quote_id))
            .cloned()
            .collect()
    }

    /// The engine's clock now (the time staleness is judged by).
    pub fn clock_now(&self) -> Timestamp {
        self.now()
    }

    /// The locks held now.
    pub fn locks(&self) -> Vec<PriceLock> {
        self.state().locks.locks().cloned().collect()
    }

    /// Rebuilds locks (and their quotes) persisted before a restart. Each
    /// lock's quote must carry a valid signature of this engine.
    pub fn restore(&self, locks: &[PriceLock]) -> Result<(), LiquidityError> {
        for l in locks {
            self.inner.signer.verify(&l.quote)?;
            if l.quote.quote_id != l.quote_id {
                return Err(LiquidityError::BadRequest(format!(
                    "lock of quote {} carries quote {}",
                    l.quote_id, l.quote.quote_id
                )));
            }
        }
        let mut st = self.state();
        for l in locks {
            st.quotes.insert(l.quote.clone());
            st.locks.restore(l.clone());
        }
        tracing::info!(count = locks.len(), "price locks restored");
        Ok(())
    }

    /// Locks as they are executed (the deposit arrived, the price was
    /// honoured): where hedging and P&L plug in. A slow receiver misses
    /// executions (`Lagged`), it never slows the engine.
    pub fn subscribe_executions(&self) -> tokio::sync::broadcast::Receiver<PriceLock> {
        self.inner.executions.subscribe()
    }

    /// Hedges every execution from now on (once; a second hedger is
    /// refused).
    pub fn attach_hedger(&self, hedger: crate::hedger::Hedger) -> Result<(), LiquidityError> {
        self.inner
            .hedger
            .set(hedger)
            .map_err(|_| LiquidityError::Config("a hedger is already attached".into()))
    }

    /// Every hedge order and what became of it (empty without a hedger).
    pub fn hedges(&self) -> Vec<crate::hedge::HedgeOrder> {
        self.inner
            .hedger
            .get()
            .map(|h| h.orders())
            .unwrap_or_default()
    }

    /// The hedge position and realized/unrealized P&L per asset, in `usd`,
    /// marked at the mid of each asset's fresh aggregated `asset/usd` book
    /// (no mark, so no unrealized P&L, when it has none).
    pub fn pnl(&self) -> std::collections::BTreeMap<AssetId, crate::hedge::AssetPnl> {
        let orders = self.hedges();
        let now = self.now();
        let usd = &self.inner.cfg.usd;
        let marks = self
            .inner
            .cfg
            .markets
            .iter()
            .filter(|m| m.quote == *usd)
            .filter_map(|m| Some((m.base.clone(), self.book(m, now).ok()?.mid()?)))
            .collect();
        crate::hedge::pnl(&orders, &marks)
    }

    /// Checks a quote's signature against this engine's key.
    pub fn verify(&self, quote: &Quote) -> Result<(), LiquidityError> {
        self.inner.signer.verify(quote)
    }
}

#[async_trait]
impl LiquidityApi for Liquidity {
    async fn indicative(&self, pair: &Pair) -> Result<IndicativePrices, LiquidityError> {
        self.ensure_not_halted()?;
        let from = self.asset(pair.base.as_str())?.id.clone();
        let to = self.asset(pair.quote.as_str())?.id.clone();
        let cfg = &self.inner.cfg;
        let now = self.now();
        let books = self.books_for(&pricing::markets_for(cfg, &from, &to)?, now)?;
        let exposure = self.exposure();
        pricing::ladder(cfg, &books, &exposure, pair, now)
    }

    #[tracing::instrument(name = "liquidity.quote", skip_all, fields(from = %rfq.from, to = %rfq.to, amount = %rfq.amount))]
    async fn quote_with_partner_fee(
        &self,
        rfq: &RfqRequest,
        partner_fee_bps: Decimal,
    ) -> Result<Quote, LiquidityError> {
        self.ensure_not_halted()?;
        let from = self.asset(&rfq.from)?;
        let to = self.asset(&rfq.to)?;
        let side_spec = match rfq.amount_side {
            AmountSide::From => from,
            AmountSide::To => to,
        };
        let amount = Amount::parse_decimal(&rfq.amount, side_spec.decimals).map_err(|e| {
            LiquidityError::InvalidAmount {
                asset: side_spec.id.to_string(),
                input: rfq.amount.clone(),
                reason: e.to_string(),
            }
        })?;
        if amount.is_zero() {
            return Err(LiquidityError::InvalidAmount {
                asset: side_spec.id.to_string(),
                input: rfq.amount.clone(),
                reason: "the amount must be more than zero".into(),
            });
        }
        let cfg = &self.inner.cfg;
        let now = self.now();
        let books = self.books_for(&pricing::markets_for(cfg, &from.id, &to.id)?, now)?;
        let exposure = self.exposure();
        let req = PriceRequest {
            from,
            to,
            amount,
            side: rfq.amount_side,
        };
        let priced =
            pricing::price_with_partner_fee(cfg, &books, &exposure, &req, partner_fee_bps)?;
        let quote = build_quote(
            &self.inner.signer,
            &priced,
            from,
            to,
            QuoteId::new(),
            now,
            ms(cfg.quote_ttl_ms),
        );
        let mut st = self.state();
        if let TradingState::Reducing { reason, .. } = &st.trading {
            let whole =
                |spec: &AssetSpec, a: Amount| a.to_decimal(spec.decimals).unwrap_or_default();
            let moves = [
                (&from.id, whole(from, priced.amount_in)),
                (&to.id, -whole(to, priced.amount_out)),
            ];
            if !risk::reduces_exposure(&cfg.policies, &st.exposure, moves) {
                return Err(LiquidityError::ExposureLimit {
                    reason: reason.clone(),
                });
            }
        }
        st.locks.check_available(&to.id, priced.amount_out)?;
        st.quotes.insert(quote.clone());
        tracing::info!(quote_id = %quote.quote_id, amount_in = %quote.amount_in, amount_out = %quote.amount_out, price = %quote.price, "firm quote");
        Ok(quote)
    }

    #[tracing::instrument(name = "liquidity.lock", skip(self))]
    async fn lock(&self, quote_id: QuoteId, swap_id: SwapId) -> Result<PriceLock, LiquidityError> {
        let now = self.now();
        let mut st = self.state();
        if let Some(existing) = st.locks.get(&quote_id) {
            if existing.swap_id == swap_id {
                return Ok(existing.clone());
            }
        }
        if let TradingState::Halted { reason, .. } = &st.trading {
            return Err(LiquidityError::TradingHalted {
                reason: reason.clone(),
            });
        }
        let quote = st
            .quotes
            .get(&quote_id)
            .cloned()
            .ok_or(LiquidityError::QuoteNotFound(quote_id))?;
        let lock = st.locks.lock(&quote, swap_id, now)?;
        tracing::info!(reserved = %lock.reserved, asset = %lock.reserved_asset, "price locked");
        Ok(lock)
    }

    #[tracing::instrument(name = "liquidity.release", skip(self))]
    async fn release(&self, quote_id: QuoteId) -> Result<(), LiquidityError> {
        if let Some(l) = self.state().locks.release(&quote_id)? {
            tracing::info!(swap_id = %l.swap_id, "price lock released");
        }
        Ok(())
    }

    #[tracing::instrument(name = "liquidity.execute", skip(self))]
    async fn execute(
        &self,
        quote_id: QuoteId,
        deposit_amount: Amount,
    ) -> Result<(), LiquidityError> {
        let cfg = &self.inner.cfg;
        let mut st = self.state();
        let (lock, first) = st.locks.execute(&quote_id, deposit_amount)?;
        if !first {
            return Ok(());
        }
        let q = &lock.quote;
        if deposit_amount < q.amount_in_base_units {
            tracing::warn!(deposit = %deposit_amount, quoted = %q.amount_in_base_units, "executing a deposit short of the quote");
        }
        let dec = |asset: &AssetId, a: Amount| {
            cfg.assets
                .get(asset)
                .ok()
                .and_then(|s| a.to_decimal(s.decimals).ok())
                .unwrap_or_default()
        };
        let inn = dec(&q.from, deposit_amount);
        let out = dec(&q.to, q.amount_out_base_units);
        *st.exposure.entry(q.from.clone()).or_default() += inn;
        *st.exposure.entry(q.to.clone()).or_default() -= out;
        tracing::info!(swap_id = %lock.swap_id, "price lock executed");
        if let Some(h) = self.inner.hedger.get() {
            h.submit(lock.clone(), deposit_amount);
        }
        // No receiver is fine.
        let _ = self.inner.executions.send(lock);
        drop(st);
        // An exposure may have crossed its limit: reduce at once.
        self.check_risk();
        Ok(())
    }

    async fn get_quote(&self, quote_id: QuoteId) -> Result<Quote, LiquidityError> {
        let st = self.state();
        st.quotes
            .get(&quote_id)
            .or_else(|| st.locks.get(&quote_id).map(|l| &l.quote))
            .cloned()
            .ok_or(LiquidityError::QuoteNotFound(quote_id))
    }

    fn halt(&self, reason: &str) {
        let now = self.now();
        tracing::warn!(%reason, "trading halted by the desk");
        self.state().trading = TradingState::Halted {
            reason: reason.to_owned(),
            since: now,
            manual: true,
        };
    }

    fn resume(&self) {
        tracing::info!("trading resumed by the desk");
        self.state().trading = TradingState::Active;
        // Venues may still be stale: halt again at once if so.
        self.check_risk();
    }

    fn trading_state(&self) -> TradingState {
        self.state().trading.clone()
    }
}
