//! The swap driver: chain events and action results in, persisted
//! transitions out, actions carried out after their transition commits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infra::bus::{Delivery, Message, Subscription};
use proto::api::SwapView;
use proto::event::{topics, ChainEvent, Envelope, SwapStatusChanged, TxStatus};
use proto::{EventId, Network, SwapId};
use serde::{Deserialize, Serialize};
use state_machine::machine::{Action, Swap, SwapInput, SwapTerms};
use state_machine::store::{
    AppendOutcome, CreateOutcome, NewEvent, NewSwap, OutboxMessage, StateUpdate, StoreError,
    SwapStore,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

mod payments;

use crate::keys::Keyring;
use crate::repo::{PaymentRow, PaymentStatus, Repo, UtxoRow, UtxoState};
use crate::signer::{LocalSigner, Signer};
use crate::watch::DepositAccounts;
use crate::{HotWalletApi, HotWalletConfig, HotWalletDeps, HotWalletError, OpenSwap, SWAP_ACTIONS};

/// An action as it travels on the `swap-actions` topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActionMessage {
    swap_id: SwapId,
    /// The event whose transition decided the action.
    cause: EventId,
    action: Action,
}

/// Handle to the running hot wallet. Cheap to clone.
#[derive(Clone)]
pub struct HotWallet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HotWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotWallet")
            .field("eth_hot_address", &self.inner.eth_hot_address)
            .finish_non_exhaustive()
    }
}

struct Inner {
    cfg: HotWalletConfig,
    /// Signs payouts; the only holder of private keys.
    signer: Arc<dyn Signer>,
    /// Deposit addresses derive from these public keys only.
    deposits: DepositAccounts,
    eth_hot_address: String,
    /// The Bitcoin inventory address (`m/84'/coin'/0'/1/0`): treasury
    /// top-ups go here.
    btc_inventory_address: String,
    store: SwapStore,
    repo: Repo,
    deps: HotWalletDeps,
    relay_wakeup: Notify,
    /// Serialises payment signing so nonces are handed out in order.
    signing: tokio::sync::Mutex<()>,
}

/// What applying an input did.
#[derive(Debug)]
enum Applied {
    Changed,
    Unchanged,
    Duplicate,
    Rejected(String),
}

const MAX_CONFLICT_RETRIES: usize = 16;

impl HotWallet {
    pub(crate) async fn start(
        cfg: HotWalletConfig,
        deps: HotWalletDeps,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, HotWalletError> {
        let keys = Keyring::open_or_create(
            &cfg.seed_path,
            &cfg.keystore_passphrase,
            cfg.bitcoin_network,
            crate::keys::KdfParams::DEFAULT,
        )?;
        let deposits = keys.deposit_accounts().clone();
        let eth_hot_address = deposits
            .eth_address(0)
            .map_err(crate::keys::KeyError::from)?
            .to_checksum(None);
        let btc_inventory_address = deposits
            .btc_address_at(crate::watch::BtcAddressKind::P2wpkh, 1, 0)
            .map_err(crate::keys::KeyError::from)?
            .to_string();
        let signer: Arc<dyn Signer> = Arc::new(LocalSigner::new(Arc::new(keys)));
        let repo = Repo::open(deps.store.db().clone())
            .await
            .map_err(|e| HotWalletError::Internal(e.to_string()))?;
        let btc_net = Network::Bitcoin(cfg.bitcoin_network);
        repo.record_wallet_address(&btc_net.to_string(), &btc_inventory_address, 1, 0)
            .await?;
        deps.chains
            .watch_address(btc_net, &btc_inventory_address)
            .await
            .map_err(HotWalletError::Chain)?;
        let wallet = HotWallet {
            inner: Arc::new(Inner {
                signer,
                deposits,
                eth_hot_address,
                btc_inventory_address,
                store: deps.store.clone(),
                repo,
                deps,
                cfg,
                relay_wakeup: Notify::new(),
                signing: tokio::sync::Mutex::new(()),
            }),
        };
        let eth_net = Network::Ethereum(wallet.inner.cfg.ethereum_network);
        let hot = wallet.inner.eth_hot_address.clone();
        wallet
            .inner
            .deps
            .chains
            .watch_address(eth_net, &hot)
            .await
            .map_err(HotWalletError::Chain)?;

        // Subscribe before spawning so a start-up failure is reported here.
        let chain_sub = wallet
            .inner
            .deps
            .bus
            .subscribe(topics::CHAIN_EVENTS, "hot-wallet")
            .await
            .map_err(|e| HotWalletError::Internal(e.to_string()))?;
        let action_sub = wallet
            .inner
            .deps
            .bus
            .subscribe(SWAP_ACTIONS, "hot-wallet-actions")
            .await
            .map_err(|e| HotWalletError::Internal(e.to_string()))?;

        let w = wallet.clone();
        let s = shutdown.clone();
        tracker.spawn(async move { w.run_relay(s).await });
        let w = wallet.clone();
        let s = shutdown.clone();
        tracker.spawn(async move { w.consume(chain_sub, s, Self::handle_chain_event).await });
        let w = wallet.clone();
        let s = shutdown.clone();
        tracker.spawn(async move {
            // Transactions signed before a crash go out again first, as they are.
            w.rebroadcast_signed().await;
            w.consume(action_sub, s, Self::handle_action).await
        });
        let w = wallet.clone();
        let s = shutdown.clone();
        tracker.spawn(async move { w.run_ticker(s).await });
        let w = wallet.clone();
        tracker.spawn(async move { w.run_payment_retries(shutdown).await });
        Ok(wallet)
    }

    /// The Ethereum account payouts are paid from.
    pub fn eth_hot_address(&self) -> &str {
        &self.inner.eth_hot_address
    }

    /// The Bitcoin address treasury top-ups of the hot wallet go to.
    pub fn btc_inventory_address(&self) -> &str {
        &self.inner.btc_inventory_address
    }

    /// The wallet's unspent Bitcoin outputs (any depth), as last reported.
    pub async fn bitcoin_utxos(&self) -> Result<Vec<UtxoRow>, HotWalletError> {
        let net = Network::Bitcoin(self.inner.cfg.bitcoin_network);
        Ok(self.inner.repo.unspent_utxos(&net.to_string()).await?)
    }

    pub fn store(&self) -> &SwapStore {
        &self.inner.store
    }

    // ---- applying inputs -------------------------------------------------

    async fn apply(
        &self,
        swap_id: SwapId,
        input: &SwapInput,
        event_id: EventId,
        kind: &str,
    ) -> Result<Applied, HotWalletError> {
        let store = &self.inner.store;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(record) = store.get(swap_id.0).await? else {
                return Err(HotWalletError::SwapNotFound(swap_id));
            };
            if store.has_event(event_id.0).await? {
                return Ok(Applied::Duplicate);
            }
            let swap: Swap = serde_json::from_value(record.data.clone()).map_err(|e| {
                HotWalletError::Internal(format!("stored swap {swap_id} unreadable: {e}"))
            })?;
            let now = chrono::Utc::now();
            let transition = match swap.apply(input, now) {
                Ok(t) => t,
                Err(rejected) => return Ok(Applied::Rejected(rejected.to_string())),
            };
            if !transition.changed {
                return Ok(Applied::Unchanged);
            }
            let next = transition.swap;
            let version = record.version + 1;
            let outbox = self.outbox_for(&next, version, event_id, &transition.actions)?;
            let update = StateUpdate {
                state: next.state_name().to_owned(),
                terminal: next.is_terminal(),
                data: json(&next)?,
                updated_at_ms: now.timestamp_millis(),
            };
            let event = NewEvent {
                event_id: event_id.0,
                kind: kind.to_owned(),
                payload: json(input)?,
                occurred_at_ms: now.timestamp_millis(),
            };
            match store
                .append(swap_id.0, record.version, &update, &event, &outbox)
                .await
            {
                Ok(AppendOutcome::Applied { .. }) => {
                    self.inner.relay_wakeup.notify_one();
                    info!(swap_id = %swap_id, state = next.state_name(), event = kind, "swap.transition");
                    return Ok(Applied::Changed);
                }
                Ok(AppendOutcome::Duplicate) => return Ok(Applied::Duplicate),
                Err(StoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(HotWalletError::Internal(format!(
            "swap {swap_id}: gave up after {MAX_CONFLICT_RETRIES} concurrent updates"
        )))
    }

    /// What a transition to `swap` (at `version`, caused by `cause`) sends:
    /// the status change, then each decided action on `swap-actions`.
    fn outbox_for(
        &self,
        swap: &Swap,
        version: i64,
        cause: EventId,
        actions: &[Action],
    ) -> Result<Vec<OutboxMessage>, HotWalletError> {
        let swap_id = swap.terms.swap_id;
        let mut outbox = vec![self.status_message(swap, version, cause)?];
        for (i, action) in actions.iter().enumerate() {
            outbox.push(OutboxMessage {
                message_id: EventId::derive(&[&cause.to_string(), "action", &i.to_string()]).0,
                topic: SWAP_ACTIONS.to_owned(),
                key: swap_id.to_string(),
                payload: json(&ActionMessage {
                    swap_id,
                    cause,
                    action: action.clone(),
                })?,
            });
        }
        Ok(outbox)
    }

    fn status_message(
        &self,
        swap: &Swap,
        version: i64,
        cause: EventId,
    ) -> Result<OutboxMessage, HotWalletError> {
        let view = swap
            .view(&self.inner.cfg.assets)
            .map_err(|e| HotWalletError::Internal(e.to_string()))?;
        let id = EventId::derive(&[&cause.to_string(), "status"]);
        let envelope = Envelope::new(
            id,
            view.updated_at,
            SwapStatusChanged {
                version: u64::try_from(version).unwrap_or_default(),
                swap: view,
            },
        );
        Ok(OutboxMessage {
            message_id: id.0,
            topic: topics::SWAP_EVENTS.to_owned(),
            key: envelope.key.clone(),
            payload: json(&envelope)?,
        })
    }

    // ---- consumers -------------------------------------------------------

    /// Consumes a subscription until shutdown: each delivery is handled,
    /// retried with backoff while handling fails, and committed only after.
    async fn consume<F, Fut>(
        &self,
        mut sub: Box<dyn Subscription>,
        shutdown: CancellationToken,
        handle: F,
    ) where
        F: Fn(HotWallet, Delivery) -> Fut,
        Fut: std::future::Future<Output = Result<(), HotWalletError>>,
    {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = sub.next() => d,
            };
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "bus.next failed; retrying");
                    if sleep_or_shutdown(&shutdown, Duration::from_millis(500)).await {
                        return;
                    }
                    continue;
                }
            };
            let mut backoff = Duration::from_millis(100);
            loop {
                match handle(self.clone(), delivery.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(topic = %delivery.topic, offset = delivery.offset, error = %e, "handling failed; will retry");
                        if sleep_or_shutdown(&shutdown, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            while let Err(e) = sub.commit(&delivery).await {
                warn!(error = %e, "bus.commit failed; retrying");
                if sleep_or_shutdown(&shutdown, Duration::from_millis(500)).await {
                    return;
                }
            }
        }
    }

    async fn handle_chain_event(self, delivery: Delivery) -> Result<(), HotWalletError> {
        let envelope: Envelope<ChainEvent> = match serde_json::from_slice(&delivery.message.payload)
        {
            Ok(e) => e,
            Err(e) => {
                error!(offset = delivery.offset, error = %e, "unreadable chain event skipped");
                return Ok(());
            }
        };
        match &envelope.payload {
            ChainEvent::Output {
                network,
                txid,
                output,
                address,
                amount,
                status,
                ..
            } => {
                if address.eq_ignore_ascii_case(&self.inner.eth_hot_address) {
                    return Ok(());
                }
                if let Network::Bitcoin(_) = network {
                    // Every output paying the wallet joins its UTXO set,
                    // deposits included; inventory and change stop here.
                    let net = network.to_string();
                    if let Some((key_chain, key_index)) =
                        self.inner.repo.bitcoin_key_of(&net, address).await?
                    {
                        let state = match status {
                            TxStatus::Seen | TxStatus::Unconfirmed { .. } => UtxoState::Unconfirmed,
                            TxStatus::Confirmed { depth, .. } => UtxoState::Confirmed {
                                depth: u32::try_from(*depth).unwrap_or(u32::MAX),
                            },
                            TxStatus::Dropped { .. } => UtxoState::Dropped,
                        };
                        let value_sats = u64::try_from(amount.base_units()).map_err(|_| {
                            HotWalletError::Internal(format!("{amount} sats out of range"))
                        })?;
                        let utxo = UtxoRow {
                            network: net,
                            txid: txid.clone(),
                            vout: *output,
                            address: address.clone(),
                            key_chain,
                            key_index,
                            value_sats,
                            confirmations: 0,
                        };
                        self.inner.repo.record_utxo(&utxo, state).await?;
                        if key_chain != 0 {
                            return Ok(());
                        }
                    }
                }
                let Some(record) = self
                    .inner
                    .store
                    .get_by_deposit_address(&network.to_string(), address)
                    .await?
                else {
                    warn!(%network, %address, %txid, amount = %amount, "deposit to an address with no swap; left for review");
                    return Ok(());
                };
                metrics::counter!(infra::metrics::DEPOSITS, "network" => network.to_string(), "status" => status.kind()).increment(1);
                let input = SwapInput::Deposit {
                    txid: txid.clone(),
                    output: *output,
                    amount: *amount,
                    status: status.clone(),
                };
                self.apply_logged(SwapId(record.swap_id), &input, envelope.id, "deposit")
                    .await
            }
            ChainEvent::Transaction {
                txid,
                status,
                reverted,
                ..
            } => {
                let Some(payment) = self.inner.repo.payment_by_txid(txid).await? else {
                    return Ok(());
                };
                let swap_id = parse_swap_id(&payment.swap_id)?;
                if *reverted {
                    // Mined, fee and nonce spent, nothing paid: never a
                    // confirmation of the payment.
                    error!(%swap_id, payment_id = %payment.payment_id, %txid, "payment reverted on chain");
                    self.inner
                        .repo
                        .set_status(&payment.payment_id, PaymentStatus::Reverted)
                        .await?;
                    let input = SwapInput::PaymentReverted { txid: txid.clone() };
                    return self
                        .apply_logged(swap_id, &input, envelope.id, "payment_reverted")
                        .await;
                }
                if let TxStatus::Confirmed { .. } = status {
                    self.inner
                        .repo
                        .set_status(&payment.payment_id, PaymentStatus::Confirmed)
                        .await?;
                }
                let input = SwapInput::PaymentObserved {
                    txid: txid.clone(),
                    status: status.clone(),
                };
                self.apply_logged(swap_id, &input, envelope.id, "payment_observed")
                    .await
            }
            ChainEvent::BlockConnected { .. }
            | ChainEvent::BlockDisconnected { .. }
            | ChainEvent::Tip { .. }
            | ChainEvent::Finalized { .. } => Ok(()),
        }
    }

    async fn apply_logged(
        &self,
        swap_id: SwapId,
        input: &SwapInput,
        event_id: EventId,
        kind: &str,
    ) -> Result<(), HotWalletError> {
        match self.apply(swap_id, input, event_id, kind).await? {
            Applied::Rejected(why) => {
                warn!(%swap_id, event = kind, reason = %why, "input rejected by the state machine")
            }
            Applied::Duplicate => debug!(%swap_id, event = kind, "duplicate event ignored"),
            Applied::Unchanged | Applied::Changed => {}
        }
        Ok(())
    }

    async fn handle_action(self, delivery: Delivery) -> Result<(), HotWalletError> {
        let msg: ActionMessage = match serde_json::from_slice(&delivery.message.payload) {
            Ok(m) => m,
            Err(e) => {
                error!(offset = delivery.offset, error = %e, "unreadable action skipped");
                return Ok(());
            }
        };
        let swap_id = msg.swap_id;
        match msg.action {
            Action::Execute {
                quote_id,
                deposit_amount,
                ..
            } => {
                let (input, kind) = match self
                    .inner
                    .deps
                    .execution
                    .execute(quote_id, swap_id, deposit_amount)
                    .await
                {
                    Ok(()) => (SwapInput::Executed, "executed"),
                    Err(reason) => (SwapInput::ExecutionFailed { reason }, "execution_failed"),
                };
                let id = EventId::derive(&[&swap_id.to_string(), kind, &msg.cause.to_string()]);
                self.apply_logged(swap_id, &input, id, kind).await
            }
            Action::Pay(order) => self.pay_and_report(swap_id, &order).await,
            Action::ReleaseLock { quote_id } => {
                if let Err(e) = self.inner.deps.execution.release(quote_id).await {
                    warn!(%swap_id, %quote_id, error = %e, "lock release failed (ignored: locks also expire)");
                }
                Ok(())
            }
        }
    }

    // ---- relay and ticker -------------------------------------------------

    /// Publishes committed outbox rows to the bus, oldest first, and marks
    /// them published. At-least-once: consumers dedupe by message id.
    async fn run_relay(&self, shutdown: CancellationToken) {
        loop {
            let published = match self.relay_once().await {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "outbox relay failed; retrying");
                    0
                }
            };
            if published == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.inner.relay_wakeup.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }

    async fn relay_once(&self) -> Result<usize, HotWalletError> {
        let pending = self.inner.store.outbox_pending(256).await?;
        let mut seqs = Vec::with_capacity(pending.len());
        for row in &pending {
            let payload = serde_json::to_vec(&row.payload)
                .map_err(|e| HotWalletError::Internal(e.to_string()))?;
            let message = Message {
                id: row.message_id.to_string(),
                key: row.key.clone(),
                payload,
            };
            if let Err(e) = self.inner.deps.bus.publish(&row.topic, message).await {
                // Mark what went out so far, then retry the rest.
                self.inner.store.outbox_mark_published(&seqs).await?;
                return Err(HotWalletError::Internal(e.to_string()));
            }
            seqs.push(row.seq);
        }
        self.inner.store.outbox_mark_published(&seqs).await?;
        Ok(seqs.len())
    }

    /// Tries the payments that wait (held, or refused by the node) again.
    async fn run_payment_retries(&self, shutdown: CancellationToken) {
        loop {
            if sleep_or_shutdown(&shutdown, self.inner.cfg.payment_retry_interval).await {
                return;
            }
            if let Err(e) = self.retry_payments().await {
                warn!(error = %e, "payment retry pass failed");
            }
        }
    }

    async fn run_ticker(&self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.inner.cfg.tick_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let active = match self.inner.store.list_active(1000).await {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "ticker could not list swaps");
                    continue;
                }
            };
            let now = chrono::Utc::now();
            for record in active {
                // Most swaps have no deadline due: decide that from the row
                // already read, and only go to the store for a change.
                let due = serde_json::from_value::<Swap>(record.data)
                    .ok()
                    .and_then(|swap| swap.apply(&SwapInput::Tick, now).ok())
                    .is_some_and(|t| t.changed);
                if !due {
                    continue;
                }
                let id = EventId(Uuid::now_v7());
                if let Err(e) = self
                    .apply(SwapId(record.swap_id), &SwapInput::Tick, id, "tick")
                    .await
                {
                    warn!(swap_id = %record.swap_id, error = %e, "tick failed");
                }
            }
        }
    }
}

#[async_trait]
impl HotWalletApi for HotWallet {
    async fn allocate_deposit_address(
        &self,
        network: Network,
        swap_id: SwapId,
    ) -> Result<String, HotWalletError> {
        let deposits = &self.inner.deposits;
        let (_, address) = self
            .inner
            .repo
            .allocate_address(&network.to_string(), &swap_id.to_string(), |index| {
                crate::keys::deposit_address(deposits, network, index).map_err(|e| e.to_string())
            })
            .await?;
        // Watched (and persisted by the node gateway) before anyone sees it.
        self.inner
            .deps
            .chains
            .watch_address(network, &address)
            .await
            .map_err(HotWalletError::Chain)?;
        Ok(address)
    }

    async fn open_swap(&self, open: OpenSwap) -> Result<SwapView, HotWalletError> {
        if let Some(existing) = self
            .inner
            .store
            .get_by_idempotency_key(&open.idempotency_key)
            .await?
        {
            return self.existing_for_key(existing, &open);
        }
        let assets = &self.inner.cfg.assets;
        let from = assets
            .get(&open.quote.from)
            .map_err(|e| HotWalletError::Invalid(e.to_string()))?;
        let to = assets
            .get(&open.quote.to)
            .map_err(|e| HotWalletError::Invalid(e.to_string()))?;
        if !self.can_pay_out(to.network) {
            return Err(HotWalletError::UnsupportedPayout(to.network));
        }
        let now = chrono::Utc::now();
        let deadline = now
            + chrono::Duration::from_std(self.inner.cfg.deposit_window)
                .map_err(|e| HotWalletError::Internal(e.to_string()))?;
        let terms = SwapTerms {
            swap_id: open.swap_id,
            quote_id: open.quote.quote_id,
            from: from.id.clone(),
            to: to.id.clone(),
            deposit_network: from.network,
            payout_network: to.network,
            deposit_address: open.deposit_address.clone(),
            payout_address: open.payout_address.clone(),
            deposit_amount: open.quote.amount_in_base_units,
            payout_amount: open.quote.amount_out_base_units,
            price: open.quote.price,
            deadline,
            policy: self.inner.cfg.policy.clone(),
        };
        let (swap, actions) = Swap::open(terms, open.refund_address.clone(), now);
        let event_id = EventId::derive(&[&open.swap_id.to_string(), "opened"]);
        let outbox = self.outbox_for(&swap, 1, event_id, &actions)?;
        let new = NewSwap {
            swap_id: open.swap_id.0,
            idempotency_key: Some(open.idempotency_key.clone()),
            deposit_chain: from.network.to_string(),
            deposit_address: open.deposit_address.clone(),
            state: swap.state_name().to_owned(),
            terminal: swap.is_terminal(),
            data: json(&swap)?,
            created_at_ms: now.timestamp_millis(),
        };
        let event = NewEvent {
            event_id: event_id.0,
            kind: "opened".into(),
            payload: serde_json::json!({
                "quote": open.quote,
                "quote_id": open.quote.quote_id,
                "payout_address": open.payout_address,
                "refund_address": open.refund_address,
            }),
            occurred_at_ms: now.timestamp_millis(),
        };
        match self.inner.store.create(&new, &event, &outbox).await? {
            CreateOutcome::Created(_) => {
                self.inner.relay_wakeup.notify_one();
                info!(swap_id = %open.swap_id, quote_id = %open.quote.quote_id, "swap.opened");
                swap.view(assets)
                    .map_err(|e| HotWalletError::Internal(e.to_string()))
            }
            CreateOutcome::Existing(record) => self.existing_for_key(record, &open),
        }
    }

    async fn swap(&self, swap_id: SwapId) -> Result<SwapView, HotWalletError> {
        let record = self
            .inner
            .store
            .get(swap_id.0)
            .await?
            .ok_or(HotWalletError::SwapNotFound(swap_id))?;
        self.view_of(&record.data)
    }

    async fn swap_by_idempotency_key(&self, key: &str) -> Result<Option<SwapView>, HotWalletError> {
        match self.inner.store.get_by_idempotency_key(key).await? {
            Some(r) => Ok(Some(self.view_of(&r.data)?)),
            None => Ok(None),
        }
    }

    async fn provide_refund_address(
        &self,
        swap_id: SwapId,
        address: &str,
    ) -> Result<SwapView, HotWalletError> {
        let input = SwapInput::RefundAddressProvided {
            address: address.to_owned(),
        };
        let id = EventId(Uuid::now_v7());
        match self
            .apply(swap_id, &input, id, "refund_address_provided")
            .await?
        {
            Applied::Rejected(why) => Err(HotWalletError::Invalid(why)),
            _ => self.swap(swap_id).await,
        }
    }

    fn can_pay_out(&self, network: Network) -> bool {
        match network {
            Network::Ethereum(n) => n == self.inner.cfg.ethereum_network,
            Network::Bitcoin(n) => n == self.inner.cfg.bitcoin_network,
        }
    }

    async fn payments_awaiting_approval(
        &self,
    ) -> Result<Vec<proto::api::DeskPayment>, HotWalletError> {
        self.inner
            .repo
            .awaiting_approval()
            .await?
            .iter()
            .map(|row| self.desk_payment(row))
            .collect()
    }

    async fn approve_payment(
        &self,
        payment_id: &str,
        approver: &str,
    ) -> Result<proto::api::DeskPayment, HotWalletError> {
        let row = HotWallet::approve_payment(self, payment_id, approver).await?;
        self.desk_payment(&row)
    }
}

impl HotWallet {
    fn desk_payment(&self, row: &PaymentRow) -> Result<proto::api::DeskPayment, HotWalletError> {
        let bad = |e: String| HotWalletError::Internal(format!("payment {}: {e}", row.payment_id));
        let asset = proto::AssetId::new(&row.asset).map_err(|e| bad(e.to_string()))?;
        let decimals = self
            .inner
            .cfg
            .assets
            .get(&asset)
            .map_err(|e| bad(e.to_string()))?
            .decimals;
        let amount = proto::Amount::from_base_units(
            row.amount.parse::<u128>().map_err(|e| bad(e.to_string()))?,
        );
        Ok(proto::api::DeskPayment {
            payment_id: row.payment_id.clone(),
            swap_id: parse_swap_id(&row.swap_id)?,
            kind: row.kind.clone(),
            asset,
            network: row
                .network
                .parse()
                .map_err(|e: proto::chain::UnknownNetwork| bad(e.to_string()))?,
            address: row.address.clone(),
            amount: amount.to_decimal_string(decimals),
            amount_base_units: amount,
            status: row.status.as_str().to_owned(),
            txid: row.txid.clone(),
            reason: row.hold_reason.clone(),
            approved_by: row.approved_by.clone(),
            created_at: chrono::DateTime::from_timestamp_millis(row.created_at_ms)
                .unwrap_or_default(),
        })
    }

    fn existing_for_key(
        &self,
        record: state_machine::store::SwapRecord,
        open: &OpenSwap,
    ) -> Result<SwapView, HotWalletError> {
        let view = self.view_of(&record.data)?;
        if view.quote_id != open.quote.quote_id {
            return Err(HotWalletError::IdempotencyConflict(
                open.idempotency_key.clone(),
            ));
        }
        Ok(view)
    }

    fn view_of(&self, data: &serde_json::Value) -> Result<SwapView, HotWalletError> {
        let swap: Swap = serde_json::from_value(data.clone())
            .map_err(|e| HotWalletError::Internal(format!("stored swap unreadable: {e}")))?;
        swap.view(&self.inner.cfg.assets)
            .map_err(|e| HotWalletError::Internal(e.to_string()))
    }
}

fn json<T: Serialize>(v: &T) -> Result<serde_json::Value, HotWalletError> {
    serde_json::to_value(v).map_err(|e| HotWalletError::Internal(e.to_string()))
}

fn parse_swap_id(s: &str) -> Result<SwapId, HotWalletError> {
    s.parse()
        .map_err(|e: proto::ids::IdError| HotWalletError::Internal(e.to_string()))
}

/// Sleeps `d`; returns true if shutdown came first.
async fn sleep_or_shutdown(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
