//! Payments (payouts and refunds), exactly once: the intent is persisted
//! before signing, the signed transaction before broadcasting; after a
//! crash the stored transaction goes out again as it is.
//!
//! A payment that cannot be signed now (not enough confirmed funds, a fee
//! above the cap, no fee estimate) is *held* and tried again later; one over
//! the hot wallet's limits waits for the desk's approval. Neither holds up
//! the actions of other swaps.

use std::str::FromStr;

use bitcoin::psbt::Psbt;
use bitcoin::{OutPoint, Txid};
use proto::{Amount, AssetId, AssetKind, EventId, Network, SwapId};
use state_machine::machine::{PaymentKind, PaymentOrder, SwapInput};
use tracing::{error, info, warn};

use super::HotWallet;
use crate::payments::SignedTx;
use crate::payout::{build_payout, PayoutRequest, Utxo};
use crate::repo::{PaymentRow, PaymentStatus, SpentInput};
use crate::signer::{describe_inputs, finalize, OwnedInput};
use crate::watch::BtcAddressKind;
use crate::{BroadcastFailure, HotWalletError, PayoutLimit};

/// Where a payment stands after an attempt to pay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PayOutcome {
    /// The node has the transaction.
    Broadcast(String),
    /// Not signed yet: held for a later attempt, or waiting for approval.
    Waiting(String),
}

/// A signed payment and what it consumes.
struct Signed {
    tx: SignedTx,
    nonce: Option<i64>,
    /// Bitcoin outputs of the wallet it spends.
    spends: Vec<SpentInput>,
}

impl HotWallet {
    /// Pays `order` and, once the node has it, tells the swap.
    pub(super) async fn pay_and_report(
        &self,
        swap_id: SwapId,
        order: &PaymentOrder,
    ) -> Result<(), HotWalletError> {
        match self.pay(swap_id, order).await? {
            PayOutcome::Broadcast(txid) => {
                let input = SwapInput::PaymentBroadcast {
                    payment_id: order.payment_id.clone(),
                    txid: txid.clone(),
                };
                let id = EventId::derive(&[&order.payment_id, "broadcast", &txid]);
                self.apply_logged(swap_id, &input, id, "payment_broadcast")
                    .await
            }
            PayOutcome::Waiting(why) => {
                info!(%swap_id, payment_id = %order.payment_id, reason = %why, "payment.waiting");
                Ok(())
            }
        }
    }

    /// Pays `order` exactly once: intent persisted, then signed bytes
    /// persisted, then broadcast. Re-running it for the same payment id
    /// rebroadcasts the stored transaction.
    pub(crate) async fn pay(
        &self,
        swap_id: SwapId,
        order: &PaymentOrder,
    ) -> Result<PayOutcome, HotWalletError> {
        let _guard = self.inner.signing.lock().await;
        let repo = &self.inner.repo;
        let intent = PaymentRow {
            payment_id: order.payment_id.clone(),
            swap_id: swap_id.to_string(),
            kind: kind_name(order.kind).to_owned(),
            network: order.network.to_string(),
            asset: order.asset.to_string(),
            address: order.address.clone(),
            amount: order.amount.to_string(),
            status: PaymentStatus::Intent,
            txid: None,
            raw_tx: None,
            nonce: None,
            hold_reason: None,
            approved_by: None,
            created_at_ms: 0,
        };
        let mut row = repo.insert_intent(&intent).await?;
        // One payment id, one payment: an id already recorded with other
        // terms is never signed or broadcast for this order.
        let same_terms = (
            &row.swap_id,
            &row.network,
            &row.asset,
            &row.address,
            &row.amount,
        ) == (
            &intent.swap_id,
            &intent.network,
            &intent.asset,
            &intent.address,
            &intent.amount,
        );
        if !same_terms {
            error!(payment_id = %order.payment_id, stored = ?row, "payment id reused with different terms; refusing");
            return Err(HotWalletError::Internal(format!(
                "payment {} is recorded with different terms; refusing to pay",
                order.payment_id
            )));
        }
        if row.status == PaymentStatus::AwaitingApproval {
            return Ok(PayOutcome::Waiting(
                "waiting for the desk's approval".into(),
            ));
        }
        if row.status == PaymentStatus::Intent {
            if row.approved_by.is_none() {
                if let Some(why) = self.over_limit(order, row.created_at_ms).await? {
                    repo.await_approval(&order.payment_id, &why).await?;
                    warn!(%swap_id, payment_id = %order.payment_id, reason = %why, "payment.awaiting_approval");
                    return Ok(PayOutcome::Waiting(why));
                }
            }
            let signed = match self.sign_payment(order).await {
                Ok(s) => s,
                Err(e) => {
                    let why = e.to_string();
                    let next = infra::db::now_ms().saturating_add(
                        i64::try_from(self.inner.cfg.payment_retry_interval.as_millis())
                            .unwrap_or(i64::MAX),
                    );
                    repo.hold(&order.payment_id, &why, next).await?;
                    warn!(%swap_id, payment_id = %order.payment_id, reason = %why, "payment.held");
                    return Ok(PayOutcome::Waiting(why));
                }
            };
            let raw = hex::encode(&signed.tx.raw);
            let recorded = if signed.spends.is_empty() {
                repo.record_signed(&order.payment_id, &signed.tx.txid, &raw, signed.nonce)
                    .await?
            } else {
                repo.record_signed_bitcoin(&order.payment_id, &signed.tx.txid, &raw, &signed.spends)
                    .await?
            };
            if !recorded {
                return Err(HotWalletError::Internal(format!(
                    "payment {}: signed transaction not recorded (no longer an intent, or an input is spent)",
                    order.payment_id
                )));
            }
            row = repo
                .payment(&order.payment_id)
                .await?
                .ok_or_else(|| HotWalletError::Internal("payment row vanished".into()))?;
            info!(%swap_id, payment_id = %order.payment_id, txid = ?row.txid, "payment.signed");
        }
        match self.broadcast_row(&row).await {
            Ok(txid) => Ok(PayOutcome::Broadcast(txid)),
            // Refused for now (e.g. an input not yet known to the node):
            // the stored transaction is tried again, never re-signed.
            Err(BroadcastError::Rejected(why)) => Ok(PayOutcome::Waiting(why)),
            Err(BroadcastError::Other(e)) => Err(e),
        }
    }

    /// Why `order` needs the desk's approval, if it does: over the per
    /// payment limit of its asset, or over the daily limit counting what
    /// was signed in the last 24 hours.
    async fn over_limit(
        &self,
        order: &PaymentOrder,
        created_at_ms: i64,
    ) -> Result<Option<String>, HotWalletError> {
        let Some(limit): Option<&PayoutLimit> = self.inner.cfg.payout_limits.get(&order.asset)
        else {
            return Ok(None);
        };
        let spec = self
            .inner
            .cfg
            .assets
            .get(&order.asset)
            .map_err(|e| HotWalletError::Invalid(e.to_string()))?;
        let show = |a: Amount| a.to_decimal_string(spec.decimals);
        if order.amount > limit.per_payment {
            return Ok(Some(format!(
                "{} {} is over the hot wallet's per-payment limit of {} {}",
                show(order.amount),
                order.asset,
                show(limit.per_payment),
                order.asset
            )));
        }
        let since = created_at_ms.saturating_sub(24 * 3600 * 1000);
        let mut today = 0u128;
        for p in self
            .inner
            .repo
            .signed_since(order.asset.as_str(), since)
            .await?
        {
            let amount = p.amount.parse::<u128>().map_err(|e| {
                HotWalletError::Internal(format!(
                    "payment {}: stored amount {:?} unreadable: {e}",
                    p.payment_id, p.amount
                ))
            })?;
            today = today.checked_add(amount).ok_or_else(|| {
                HotWalletError::Internal("the last 24 hours' payments overflow".into())
            })?;
        }
        let total = today
            .checked_add(order.amount.base_units())
            .ok_or_else(|| HotWalletError::Internal("payment total overflows".into()))?;
        if total > limit.per_day.base_units() {
            return Ok(Some(format!(
                "{} {} would bring the last 24 hours' payments to {} {}, over the daily limit of {} {}",
                show(order.amount),
                order.asset,
                show(Amount::from_base_units(total)),
                order.asset,
                show(limit.per_day),
                order.asset
            )));
        }
        Ok(None)
    }

    async fn sign_payment(&self, order: &PaymentOrder) -> Result<Signed, HotWalletError> {
        let spec = self
            .inner
            .cfg
            .assets
            .get(&order.asset)
            .map_err(|e| HotWalletError::Invalid(e.to_string()))?
            .clone();
        match (order.network, &spec.kind) {
            (Network::Ethereum(net), AssetKind::Native) => {
                let to = proto::Address::parse(order.network, &order.address)
                    .map_err(|e| HotWalletError::Invalid(e.to_string()))?
                    .as_ethereum()
                    .ok_or_else(|| HotWalletError::Invalid("not an Ethereum address".into()))?;
                let chains = &self.inner.deps.chains;
                let node_nonce = chains
                    .eth_pending_nonce(order.network, &self.inner.eth_hot_address)
                    .await
                    .map_err(HotWalletError::Chain)?;
                // Never reuse a nonce a signed payment holds, even if the
                // node has not seen that payment yet.
                let stored_next = self
                    .inner
                    .repo
                    .max_nonce(&order.network.to_string())
                    .await?
                    .and_then(|n| u64::try_from(n).ok()?.checked_add(1))
                    .unwrap_or(0);
                let nonce = node_nonce.max(stored_next);
                let mut fees = chains
                    .eth_fees(order.network)
                    .await
                    .map_err(HotWalletError::Chain)?;
                fees.max_fee_per_gas = fees
                    .max_fee_per_gas
                    .min(self.inner.cfg.eth_max_fee_per_gas_cap);
                let value = order.amount.base_units();
                let tx = crate::payments::sign_eth_transfer(
                    self.inner.signer.as_ref(),
                    0,
                    net.chain_id(),
                    nonce,
                    to,
                    value,
                    fees,
                )
                .map_err(HotWalletError::Internal)?;
                let nonce = i64::try_from(nonce)
                    .map_err(|_| HotWalletError::Internal(format!("nonce {nonce} out of range")))?;
                Ok(Signed {
                    tx,
                    nonce: Some(nonce),
                    spends: Vec::new(),
                })
            }
            (Network::Bitcoin(_), AssetKind::Native) => self.sign_bitcoin(order).await,
            (network, _) => Err(HotWalletError::UnsupportedPayout(network)),
        }
    }

    /// Builds and signs a Bitcoin payment from the wallet's confirmed
    /// outputs, with change to a fresh internal address that is watched
    /// before anything is signed.
    async fn sign_bitcoin(&self, order: &PaymentOrder) -> Result<Signed, HotWalletError> {
        let cfg = &self.inner.cfg;
        let network = order.network;
        let net = network.to_string();
        let dest = proto::Address::parse(network, &order.address)
            .map_err(|e| HotWalletError::Invalid(e.to_string()))?;
        let dest = dest
            .as_bitcoin()
            .ok_or_else(|| HotWalletError::Invalid("not a Bitcoin address".into()))?;
        let value = u64::try_from(order.amount.base_units())
            .map_err(|_| HotWalletError::Invalid(format!("{} sats is too much", order.amount)))?;
        let repo = &self.inner.repo;
        let utxos = repo
            .spendable_utxos(&net, cfg.btc_min_spend_confirmations)
            .await?;
        let candidates = utxos
            .iter()
            .map(|u| {
                Ok(Utxo {
                    outpoint: OutPoint {
                        txid: Txid::from_str(&u.txid)
                            .map_err(|e| HotWalletError::Internal(format!("{}: {e}", u.txid)))?,
                        vout: u.vout,
                    },
                    value_sats: u.value_sats,
                    kind: BtcAddressKind::P2wpkh,
                    chain: u.key_chain,
                    index: u.key_index,
                    confirmations: u.confirmations,
                })
            })
            .collect::<Result<Vec<_>, HotWalletError>>()?;
        let rate = self
            .inner
            .deps
            .chains
            .btc_fee_rate(network)
            .await
            .map_err(HotWalletError::Chain)?;
        let deposits = &self.inner.deposits;
        let request = |change_script: bitcoin::ScriptBuf| PayoutRequest {
            recipients: vec![bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(value),
                script_pubkey: dest.script_pubkey(),
            }],
            fee_rate_sat_per_vb: rate,
            max_fee_rate_sat_per_vb: cfg.btc_max_fee_rate_sat_per_vb,
            max_fee_sats: cfg.btc_max_fee_sats,
            change_script,
        };
        // Try with the inventory address's script first (a change script of
        // the same size): a payment that cannot be built yet, retried while
        // it is held, allocates no change address.
        let inventory = bitcoin::Address::from_str(&self.inner.btc_inventory_address)
            .map_err(|e| HotWalletError::Internal(e.to_string()))?
            .assume_checked()
            .script_pubkey();
        build_payout(&candidates, &request(inventory))
            .map_err(|e| HotWalletError::Chain(format!("cannot build the payout: {e}")))?;
        let (_, change_address) = repo
            .allocate_change_address(&net, |index| {
                deposits
                    .btc_address_at(BtcAddressKind::P2wpkh, 1, index)
                    .map(|a| a.to_string())
                    .map_err(|e| e.to_string())
            })
            .await?;
        self.inner
            .deps
            .chains
            .watch_address(network, &change_address)
            .await
            .map_err(HotWalletError::Chain)?;
        let change_script = bitcoin::Address::from_str(&change_address)
            .map_err(|e| HotWalletError::Internal(e.to_string()))?
            .assume_checked()
            .script_pubkey();
        let plan = build_payout(&candidates, &request(change_script))
            .map_err(|e| HotWalletError::Chain(format!("cannot build the payout: {e}")))?;
        let owned: Vec<OwnedInput> = plan
            .selected
            .iter()
            .map(|u| -> Result<OwnedInput, HotWalletError> {
                let script = deposits
                    .btc_address_at(u.kind, u.chain, u.index)
                    .map_err(|e| HotWalletError::Internal(e.to_string()))?
                    .script_pubkey();
                Ok(OwnedInput {
                    outpoint: u.outpoint,
                    txout: bitcoin::TxOut {
                        value: bitcoin::Amount::from_sat(u.value_sats),
                        script_pubkey: script,
                    },
                    kind: u.kind,
                    chain: u.chain,
                    index: u.index,
                })
            })
            .collect::<Result<_, _>>()?;
        let mut psbt = Psbt::from_unsigned_tx(plan.tx.clone())
            .map_err(|e| HotWalletError::Internal(e.to_string()))?;
        let signer = self.inner.signer.as_ref();
        describe_inputs(&mut psbt, signer.fingerprint(), deposits, &owned)
            .map_err(|e| HotWalletError::Internal(e.to_string()))?;
        let signed_inputs = signer
            .sign_psbt(&mut psbt)
            .map_err(|e| HotWalletError::Internal(e.to_string()))?;
        if signed_inputs.len() != owned.len() {
            return Err(HotWalletError::Internal(format!(
                "signer signed {} of {} inputs",
                signed_inputs.len(),
                owned.len()
            )));
        }
        let tx = finalize(psbt).map_err(|e| HotWalletError::Internal(e.to_string()))?;
        let spends = plan
            .selected
            .iter()
            .map(|u| SpentInput {
                txid: u.outpoint.txid.to_string(),
                vout: u.outpoint.vout,
            })
            .collect();
        info!(
            payment_id = %order.payment_id,
            inputs = plan.selected.len(),
            fee_sats = plan.fee_sats,
            fee_rate = plan.fee_rate_sat_per_vb,
            "bitcoin payment built"
        );
        Ok(Signed {
            tx: SignedTx {
                txid: tx.compute_txid().to_string(),
                raw: bitcoin::consensus::encode::serialize(&tx),
            },
            nonce: None,
            spends,
        })
    }

    async fn broadcast_row(&self, row: &PaymentRow) -> Result<String, BroadcastError> {
        let (Some(txid), Some(raw_hex)) = (&row.txid, &row.raw_tx) else {
            return Err(BroadcastError::Other(HotWalletError::Internal(format!(
                "payment {} has no signed transaction",
                row.payment_id
            ))));
        };
        let network: Network = row
            .network
            .parse()
            .map_err(|e: proto::chain::UnknownNetwork| {
                BroadcastError::Other(HotWalletError::Internal(e.to_string()))
            })?;
        let raw = hex::decode(raw_hex)
            .map_err(|e| BroadcastError::Other(HotWalletError::Internal(e.to_string())))?;
        let chains = &self.inner.deps.chains;
        chains
            .watch_tx(network, txid)
            .await
            .map_err(|e| BroadcastError::Other(HotWalletError::Chain(e)))?;
        match chains.broadcast(network, &raw).await {
            Ok(_) | Err(BroadcastFailure::AlreadyKnown) => {}
            Err(BroadcastFailure::Unavailable(e)) => {
                return Err(BroadcastError::Other(HotWalletError::Chain(e)))
            }
            Err(BroadcastFailure::Rejected(e)) => {
                // Keep the payment as signed: it is retried as the same
                // transaction, or replaced by a fee bump of this payment.
                error!(payment_id = %row.payment_id, %txid, reason = %e, "payment broadcast rejected");
                return Err(BroadcastError::Rejected(format!(
                    "the node refused transaction {txid}: {e}"
                )));
            }
        }
        if row.status == PaymentStatus::Signed {
            metrics::counter!(infra::metrics::PAYOUTS, "network" => row.network.clone(), "kind" => row.kind.clone()).increment(1);
            self.inner
                .repo
                .set_status(&row.payment_id, PaymentStatus::Broadcast)
                .await
                .map_err(|e| BroadcastError::Other(e.into()))?;
        }
        info!(payment_id = %row.payment_id, %txid, "payment.broadcast");
        Ok(txid.clone())
    }

    /// After a restart: transactions signed before the crash go out again,
    /// as they are.
    pub(super) async fn rebroadcast_signed(&self) {
        match self.inner.repo.unconfirmed_signed().await {
            Ok(rows) => {
                for row in rows {
                    if let Err(e) = self.broadcast_row(&row).await {
                        warn!(payment_id = %row.payment_id, error = %e, "rebroadcast after restart failed; tried again later");
                    }
                }
            }
            Err(e) => warn!(error = %e, "could not list signed payments"),
        }
    }

    /// One pass over the payments that wait: held intents that are due, and
    /// signed transactions the node has not taken yet.
    pub(super) async fn retry_payments(&self) -> Result<(), HotWalletError> {
        let repo = &self.inner.repo;
        let mut rows = repo.due_held(infra::db::now_ms()).await?;
        rows.extend(
            repo.unconfirmed_signed()
                .await?
                .into_iter()
                .filter(|r| r.status == PaymentStatus::Signed),
        );
        for row in rows {
            let order = match order_of(&row) {
                Ok(o) => o,
                Err(e) => {
                    error!(payment_id = %row.payment_id, error = %e, "unreadable payment row");
                    continue;
                }
            };
            let swap_id = super::parse_swap_id(&row.swap_id)?;
            if let Err(e) = self.pay_and_report(swap_id, &order).await {
                warn!(payment_id = %row.payment_id, error = %e, "payment retry failed");
            }
        }
        Ok(())
    }

    /// Approves a payment waiting for the desk and pays it now.
    pub(crate) async fn approve_payment(
        &self,
        payment_id: &str,
        approver: &str,
    ) -> Result<PaymentRow, HotWalletError> {
        if approver.trim().is_empty() {
            return Err(HotWalletError::Invalid(
                "an approval must name who approves".into(),
            ));
        }
        let repo = &self.inner.repo;
        let row = repo.payment(payment_id).await?.ok_or_else(|| {
            HotWalletError::Invalid(format!("there is no payment {payment_id:?}"))
        })?;
        if !repo.approve(payment_id, approver.trim()).await? {
            return Err(HotWalletError::Invalid(format!(
                "payment {payment_id} is not waiting for approval (it is {})",
                row.status.as_str()
            )));
        }
        info!(payment_id, approver, "payment.approved");
        let order = order_of(&row)?;
        let swap_id = super::parse_swap_id(&row.swap_id)?;
        self.pay_and_report(swap_id, &order).await?;
        repo.payment(payment_id)
            .await?
            .ok_or_else(|| HotWalletError::Internal("payment row vanished".into()))
    }
}

/// A failed broadcast: refused by the node (kept, retried later) or any
/// other failure (the caller retries).
#[derive(Debug, thiserror::Error)]
enum BroadcastError {
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Other(#[from] HotWalletError),
}

fn kind_name(kind: PaymentKind) -> &'static str {
    match kind {
        PaymentKind::Payout => "payout",
        PaymentKind::Refund => "refund",
    }
}

/// The order a stored payment row was written for.
fn order_of(row: &PaymentRow) -> Result<PaymentOrder, HotWalletError> {
    let bad =
        |what: &str| HotWalletError::Internal(format!("payment {}: bad {what}", row.payment_id));
    Ok(PaymentOrder {
        payment_id: row.payment_id.clone(),
        kind: match row.kind.as_str() {
            "payout" => PaymentKind::Payout,
            "refund" => PaymentKind::Refund,
            _ => return Err(bad("kind")),
        },
        network: row.network.parse().map_err(|_| bad("network"))?,
        asset: AssetId::new(&row.asset).map_err(|_| bad("asset"))?,
        address: row.address.clone(),
        amount: Amount::from_base_units(row.amount.parse::<u128>().map_err(|_| bad("amount"))?),
    })
}
