//! What the routes do: validation, RFQ, accept, status, and the two
//! fan-outs (indicative prices per pair, swap status changes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hot_wallet::OpenSwap;
use proto::api::{
    AcceptRequest, ErrorCode, IndicativePrices, Quote, RfqRequest, ServerMessage, SwapView,
};
use proto::event::{topics, Envelope, SwapStatusChanged};
use proto::{Address, Pair, QuoteId, SwapId};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::error::Failure;
use crate::limits::{Gate, Limiters};
use crate::partners::{Partner, Partners};
use crate::{GatewayConfig, GatewayDeps, GatewayError};

/// A message serialised once and shared by every subscriber.
pub(crate) type Frame = Arc<str>;

/// The gateway's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

struct Inner {
    config: GatewayConfig,
    deps: GatewayDeps,
    prices: BTreeMap<Pair, broadcast::Sender<Frame>>,
    swaps: broadcast::Sender<(SwapId, Frame)>,
    partners: Arc<Partners>,
    limiters: Arc<Limiters>,
}

const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

impl Service {
    pub(crate) async fn start(
        config: GatewayConfig,
        deps: GatewayDeps,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, GatewayError> {
        let prices = config
            .pairs
            .iter()
            .map(|p| (p.clone(), broadcast::channel(16).0))
            .collect();
        let (swaps, _) = broadcast::channel(1024);
        let sub = deps
            .bus
            .subscribe(topics::SWAP_EVENTS, &config.instance_id)
            .await
            .map_err(|e| GatewayError::Bus(e.to_string()))?;
        let partners = Arc::new(Partners::open(deps.db.clone()).await?);
        crate::notify::start(
            partners.clone(),
            deps.notifier.clone(),
            deps.bus.clone(),
            config.webhooks.clone(),
            shutdown.clone(),
            tracker,
        )
        .await?;
        let limiters = Arc::new(Limiters::new(&config.limits));
        let service = Service {
            inner: Arc::new(Inner {
                config,
                deps,
                prices,
                swaps,
                partners,
                limiters,
            }),
        };
        let s = service.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move { s.run_prices(stop).await });
        let s = service.clone();
        tracker.spawn(async move { s.run_swap_events(sub, shutdown).await });
        Ok(service)
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    pub(crate) fn hot_wallet(&self) -> &dyn hot_wallet::HotWalletApi {
        self.inner.deps.hot_wallet.as_ref()
    }

    /// The desk's and readiness's view of the engine, if this process has one.
    pub(crate) fn ops(&self) -> Option<&crate::ops::Ops> {
        self.inner.deps.ops.as_ref()
    }

    /// The partner records.
    pub fn partners(&self) -> &Arc<Partners> {
        &self.inner.partners
    }

    pub(crate) fn gate(&self) -> Gate {
        Gate {
            partners: self.inner.partners.clone(),
            limiters: self.inner.limiters.clone(),
        }
    }

    pub(crate) fn limiters(&self) -> &Limiters {
        &self.inner.limiters
    }

    /// A partner's webhook delivery log, newest first.
    pub async fn webhook_deliveries(
        &self,
        partner: &Partner,
        limit: u32,
    ) -> Result<Vec<crate::notify::DeliveryView>, Failure> {
        crate::notify::deliveries(&self.inner.partners, &partner.partner_id, limit)
            .await
            .map_err(|e| {
                warn!(error = %e, "reading webhook deliveries failed");
                Failure::new(
                    ErrorCode::Unavailable,
                    "cannot read the delivery log now; retry",
                )
            })
    }

    pub(crate) fn subscribe_prices(&self, pair: &Pair) -> Option<broadcast::Receiver<Frame>> {
        self.inner.prices.get(pair).map(|s| s.subscribe())
    }

    pub(crate) fn subscribe_swaps(&self) -> broadcast::Receiver<(SwapId, Frame)> {
        self.inner.swaps.subscribe()
    }

    pub(crate) fn parse_pair(&self, s: &str) -> Result<Pair, Failure> {
        let pair: Pair = s.parse().map_err(|e: proto::asset::AssetError| {
            Failure::new(ErrorCode::UnsupportedPair, e.to_string())
        })?;
        if !self.inner.prices.contains_key(&pair) {
            let offered: Vec<String> = self
                .inner
                .config
                .pairs
                .iter()
                .map(|p| p.to_string())
                .collect();
            return Err(Failure::new(
                ErrorCode::UnsupportedPair,
                format!(
                    "pair {pair} is not offered; offered pairs: {}",
                    offered.join(", ")
                ),
            ));
        }
        Ok(pair)
    }

    pub async fn indicative(&self, pair: &str) -> Result<IndicativePrices, Failure> {
        let pair = self.parse_pair(pair)?;
        Ok(self.inner.deps.liquidity.indicative(&pair).await?)
    }

    /// A firm quote; a partner's fee is included.
    pub async fn rfq(&self, req: &RfqRequest, partner: Option<&Partner>) -> Result<Quote, Failure> {
        let started = std::time::Instant::now();
        let result = self.rfq_unmeasured(req, partner).await;
        crate::ops::record_rfq(&result, started.elapsed());
        result
    }

    async fn rfq_unmeasured(
        &self,
        req: &RfqRequest,
        partner: Option<&Partner>,
    ) -> Result<Quote, Failure> {
        let assets = &self.inner.config.assets;
        let from = assets
            .parse(req.from.trim())
            .map_err(|e| Failure::new(ErrorCode::UnknownAsset, format!("from: {e}")))?;
        let to = assets
            .parse(req.to.trim())
            .map_err(|e| Failure::new(ErrorCode::UnknownAsset, format!("to: {e}")))?;
        let pair = Pair::new(from.id.clone(), to.id.clone())
            .map_err(|e| Failure::new(ErrorCode::UnsupportedPair, e.to_string()))?;
        if !self.inner.prices.contains_key(&pair) {
            return Err(Failure::new(
                ErrorCode::UnsupportedPair,
                format!("swapping {} to {} is not offered", from.id, to.id),
            ));
        }
        if !self.inner.deps.hot_wallet.can_pay_out(to.network) {
            return Err(Failure::new(
                ErrorCode::UnsupportedPair,
                format!("payouts on {} are not available yet", to.network),
            ));
        }
        let fee_bps = rust_decimal::Decimal::from(partner.map_or(0, |p| p.fee_bps));
        Ok(self
            .inner
            .deps
            .liquidity
            .quote_with_partner_fee(req, fee_bps)
            .await?)
    }

    /// Accepts a quote: returns (created, swap). Retrying with the same
    /// idempotency key returns the same swap with `created == false`.
    /// A partner's swap is linked to it (for its webhook) before it opens.
    pub async fn accept(
        &self,
        req: &AcceptRequest,
        partner: Option<&Partner>,
    ) -> Result<(bool, SwapView), Failure> {
        let key = req.idempotency_key.trim();
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || key.chars().any(char::is_control)
        {
            return Err(Failure::bad_request(format!(
                "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable characters"
            )));
        }
        let quote_id: QuoteId = req
            .quote_id
            .parse()
            .map_err(|e: proto::ids::IdError| Failure::bad_request(e.to_string()))?;
        let hot_wallet = &self.inner.deps.hot_wallet;
        if let Some(existing) = hot_wallet.swap_by_idempotency_key(key).await? {
            return same_quote(existing, quote_id, key).map(|v| (false, v));
        }
        let liquidity = &self.inner.deps.liquidity;
        let quote = liquidity.get_quote(quote_id).await?;
        let assets = &self.inner.config.assets;
        let from = assets
            .get(&quote.from)
            .map_err(|e| Failure::new(ErrorCode::UnknownAsset, e.to_string()))?;
        let to = assets
            .get(&quote.to)
            .map_err(|e| Failure::new(ErrorCode::UnknownAsset, e.to_string()))?;
        let payout = Address::parse(to.network, &req.payout_address)
            .map_err(|e| Failure::new(ErrorCode::InvalidAddress, format!("payout_address: {e}")))?;
        let refund = match req.refund_address.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(Address::parse(from.network, r).map_err(|e| {
                Failure::new(ErrorCode::InvalidAddress, format!("refund_address: {e}"))
            })?),
        };

        // Lock the price and get a deposit address at the same time; if one
        // fails, undo the other.
        let swap_id = SwapId::new();
        let (lock, address) = tokio::join!(
            liquidity.lock(quote_id, swap_id),
            hot_wallet.allocate_deposit_address(from.network, swap_id)
        );
        let address = match (lock, address) {
            (Ok(_), Ok(a)) => a,
            (Ok(_), Err(e)) => {
                let _ = liquidity.release(quote_id).await;
                return Err(e.into());
            }
            (Err(e), _) => {
                // A concurrent accept with the same key may have won the lock.
                if let Some(existing) = hot_wallet.swap_by_idempotency_key(key).await? {
                    return same_quote(existing, quote_id, key).map(|v| (false, v));
                }
                // An address allocated for nothing is simply never used.
                return Err(e.into());
            }
        };
        if let Some(p) = partner {
            if let Err(e) = self
                .inner
                .partners
                .link_swap(&swap_id.to_string(), &p.partner_id)
                .await
            {
                let _ = liquidity.release(quote_id).await;
                warn!(error = %e, "linking a swap to its partner failed");
                return Err(Failure::new(
                    ErrorCode::Unavailable,
                    "cannot record the swap's partner now; retry",
                ));
            }
        }
        let open = OpenSwap {
            swap_id,
            quote,
            deposit_address: address,
            payout_address: payout.to_string(),
            refund_address: refund.map(|a| a.to_string()),
            idempotency_key: key.to_owned(),
        };
        match hot_wallet.open_swap(open).await {
            Ok(view) => {
                let created = view.swap_id == swap_id;
                info!(swap_id = %view.swap_id, %quote_id, created, "swap.accepted");
                Ok((created, view))
            }
            Err(e) => {
                let _ = liquidity.release(quote_id).await;
                Err(e.into())
            }
        }
    }

    pub async fn swap(&self, swap_id: &str) -> Result<SwapView, Failure> {
        let id: SwapId = swap_id
            .parse()
            .map_err(|e: proto::ids::IdError| Failure::bad_request(e.to_string()))?;
        Ok(self.inner.deps.hot_wallet.swap(id).await?)
    }

    /// A PSBT paying the swap's Bitcoin deposit from the client's UTXOs.
    pub async fn deposit_psbt(
        &self,
        swap_id: &str,
        request: &proto::api::PsbtRequest,
    ) -> Result<proto::api::PsbtResponse, Failure> {
        let view = self.swap(swap_id).await?;
        awaiting_deposit(&view)?;
        let fee_rate = match request.fee_rate_sat_vb {
            Some(rate) => rate,
            None => self
                .inner
                .deps
                .chains
                .bitcoin_fee_rate(view.deposit.network)
                .await
                .map_err(|e| {
                    Failure::new(
                        ErrorCode::Unavailable,
                        format!("no fee estimate from the node ({e}); pass fee_rate_sat_vb"),
                    )
                })?,
        };
        if request.descriptors.is_empty() {
            return crate::signing::deposit_psbt(&view.deposit, request, fee_rate);
        }
        if !request.inputs.is_empty() {
            return Err(Failure::bad_request("give inputs or descriptors, not both"));
        }
        let descriptors = crate::signing::scan_descriptors(&request.descriptors)?;
        let (height, found) = self
            .inner
            .deps
            .chains
            .scan_utxos(view.deposit.network, &descriptors)
            .await
            .map_err(|e| match e {
                crate::RelayError::Rejected(m) => {
                    Failure::bad_request(format!("descriptors: the node refused them: {m}"))
                }
                crate::RelayError::Unavailable(m) => Failure::new(
                    ErrorCode::Unavailable,
                    format!("the node could not scan for UTXOs now ({m}); retry"),
                ),
            })?;
        let scanned = proto::api::PsbtRequest {
            inputs: crate::signing::inputs_from_scan(view.deposit.network, height, &found)?,
            descriptors: Vec::new(),
            ..request.clone()
        };
        crate::signing::deposit_psbt(&view.deposit, &scanned, fee_rate)
    }

    /// The unsigned EIP-1559 transaction paying the swap's ETH or token
    /// deposit from the user's address.
    pub async fn ethereum_transaction(
        &self,
        swap_id: &str,
        from: &str,
    ) -> Result<proto::api::UnsignedEthTransaction, Failure> {
        let view = self.swap(swap_id).await?;
        awaiting_deposit(&view)?;
        let token = self.token_contract(&view)?;
        let (to, value, data) = crate::signing::eth_deposit_call(&view.deposit, token)?;
        let from = Address::parse(view.deposit.network, from)
            .map_err(|e| Failure::new(ErrorCode::InvalidAddress, format!("from: {e}")))?
            .as_ethereum()
            .ok_or_else(|| {
                Failure::new(ErrorCode::InvalidAddress, "from: not an Ethereum address")
            })?;
        let params = self
            .inner
            .deps
            .chains
            .ethereum_params(view.deposit.network, from, to, value, data)
            .await
            .map_err(|e| {
                Failure::new(
                    ErrorCode::Unavailable,
                    format!("the Ethereum node could not fill the transaction: {e}"),
                )
            })?;
        crate::signing::eth_deposit_tx(&view.deposit, token, from, params)
    }

    /// The deposit asset's token contract, if it is a token.
    fn token_contract(
        &self,
        view: &SwapView,
    ) -> Result<Option<alloy_primitives::Address>, Failure> {
        match self.inner.config.assets.get(&view.deposit.asset) {
            Ok(spec) => Ok(match &spec.kind {
                proto::AssetKind::Erc20 { contract } => contract.as_ethereum(),
                proto::AssetKind::Native => None,
            }),
            Err(e) => Err(Failure::new(ErrorCode::Internal, e.to_string())),
        }
    }

    /// Broadcasts a client's signed transaction that pays the swap's
    /// deposit.
    pub async fn relay(
        &self,
        swap_id: &str,
        raw_tx: &str,
    ) -> Result<proto::api::RelayResponse, Failure> {
        let view = self.swap(swap_id).await?;
        awaiting_deposit(&view)?;
        let raw = crate::signing::parse_raw_tx(raw_tx)?;
        let token = self.token_contract(&view)?;
        crate::signing::check_relay(&view.deposit, token, &raw)?;
        match self
            .inner
            .deps
            .chains
            .relay(view.deposit.network, &raw)
            .await
        {
            Ok(txid) => {
                info!(swap_id = %view.swap_id, %txid, "relayed deposit transaction");
                Ok(proto::api::RelayResponse { txid })
            }
            Err(crate::RelayError::Rejected(m)) => Err(Failure::new(
                ErrorCode::TransactionRejected,
                format!("the node refused the transaction: {m}"),
            )),
            Err(crate::RelayError::Unavailable(m)) => Err(Failure::new(
                ErrorCode::Unavailable,
                format!("the node could not be reached; the transaction may or may not have been broadcast, retry with the same bytes: {m}"),
            )),
        }
    }

    pub async fn refund_address(&self, swap_id: &str, address: &str) -> Result<SwapView, Failure> {
        let view = self.swap(swap_id).await?;
        let from = self
            .inner
            .config
            .assets
            .get(&view.from)
            .map_err(|e| Failure::new(ErrorCode::UnknownAsset, e.to_string()))?;
        let addr = Address::parse(from.network, address)
            .map_err(|e| Failure::new(ErrorCode::InvalidAddress, format!("refund_address: {e}")))?;
        Ok(self
            .inner
            .deps
            .hot_wallet
            .provide_refund_address(view.swap_id, &addr.to_string())
            .await?)
    }

    /// Prices every offered pair once per interval, serialises each ladder
    /// once and shares it with all of that pair's subscribers.
    async fn run_prices(&self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.inner.config.price_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            for (pair, sender) in &self.inner.prices {
                if sender.receiver_count() == 0 {
                    continue;
                }
                match self.inner.deps.liquidity.indicative(pair).await {
                    Ok(prices) => {
                        if let Ok(text) = serde_json::to_string(&ServerMessage::Prices(prices)) {
                            let _ = sender.send(Frame::from(text));
                        }
                    }
                    Err(e) => tracing::debug!(%pair, error = %e, "no indicative price"),
                }
            }
        }
    }

    /// Follows `swap-events` and fans each status change out to the
    /// websocket connections watching that swap.
    async fn run_swap_events(
        &self,
        mut sub: Box<dyn infra::bus::Subscription>,
        shutdown: CancellationToken,
    ) {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = sub.next() => d,
            };
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "swap-events: next failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match serde_json::from_slice::<Envelope<SwapStatusChanged>>(&delivery.message.payload) {
                Ok(env) => {
                    let id = env.payload.swap.swap_id;
                    let msg = ServerMessage::SwapStatus {
                        swap: env.payload.swap,
                    };
                    if let Ok(text) = serde_json::to_string(&msg) {
                        let _ = self.inner.swaps.send((id, Frame::from(text)));
                    }
                }
                Err(e) => warn!(error = %e, "unreadable swap event skipped"),
            }
            if let Err(e) = sub.commit(&delivery).await {
                warn!(error = %e, "swap-events: commit failed");
            }
        }
    }
}

fn same_quote(existing: SwapView, quote_id: QuoteId, key: &str) -> Result<SwapView, Failure> {
    if existing.quote_id == quote_id {
        Ok(existing)
    } else {
        Err(Failure::new(
            ErrorCode::IdempotencyConflict,
            format!("idempotency key {key:?} was already used to accept a different quote"),
        ))
    }
}

/// Signing material and relaying make sense only while the swap waits for
/// its deposit.
fn awaiting_deposit(view: &SwapView) -> Result<(), Failure> {
    use proto::api::SwapStatus;
    match view.status {
        SwapStatus::AwaitingDeposit | SwapStatus::DepositSeen | SwapStatus::Confirming => Ok(()),
        status => Err(Failure::bad_request(format!(
            "swap {} is {status:?}: it takes no deposit now",
            view.swap_id
        ))),
    }
}
