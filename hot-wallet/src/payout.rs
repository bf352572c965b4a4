//! Bitcoin payout building, as a pure function of (UTXOs, request): coin
//! selection over the hot wallet's confirmed outputs (its own confirmed
//! change included), the fee from the node's estimate under a cap, RBF
//! signalled on every input (BIP125, nSequence `0xfffffffd`), and change to a
//! fresh internal address, or to the fee when it would be dust.
//!
//! Sizes are counted in weight units for the inputs this wallet spends
//! (P2WPKH and P2TR key path, with their largest witnesses), so the fee paid
//! is never below `rate × vsize` of the signed transaction.

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::watch::BtcAddressKind;

/// Version, lock time, input and output counts (1 byte each below 253),
/// times 4; plus the segwit marker and flag (2 WU).
const TX_OVERHEAD_WU: u64 = 4 * (4 + 4 + 1 + 1) + 2;
/// Outpoint, empty scriptSig length, nSequence, times 4.
const INPUT_BASE_WU: u64 = 4 * (32 + 4 + 1 + 4);
/// Witness of a P2WPKH spend: item count, a 72-byte signature, a 33-byte key.
const P2WPKH_WITNESS_WU: u64 = 1 + (1 + 72) + (1 + 33);
/// Witness of a P2TR key-path spend (default sighash): count, 64-byte signature.
const P2TR_WITNESS_WU: u64 = 1 + (1 + 64);
/// Most inputs or outputs counted with a one-byte count in the overhead.
const MAX_COUNT: usize = 252;

/// Errors building a payout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    #[error("nothing to pay")]
    NoRecipients,
    #[error("output {0} is below the dust limit for its script")]
    DustOutput(usize),
    #[error(
        "insufficient confirmed funds: need at least {needed_sats} sats, have {available_sats}"
    )]
    InsufficientFunds {
        needed_sats: u64,
        available_sats: u64,
    },
    #[error("the fee {fee_sats} sats would exceed the cap of {cap_sats} sats")]
    FeeAboveCap { fee_sats: u64, cap_sats: u64 },
    #[error("invalid fee estimate: {0}")]
    BadEstimate(String),
    #[error("amounts overflow")]
    Overflow,
    #[error("too many inputs or outputs")]
    TooLarge,
}

/// One unspent output of the hot wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    pub outpoint: OutPoint,
    pub value_sats: u64,
    pub kind: BtcAddressKind,
    /// Derivation of its key: chain 0 (deposits) or 1 (change), and index.
    pub chain: u32,
    pub index: u32,
    pub confirmations: u32,
}

/// What to pay and under which fee policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRequest {
    pub recipients: Vec<TxOut>,
    /// Fee rate from the node's estimate (see [`fee_rate_sat_per_vb`]).
    pub fee_rate_sat_per_vb: u64,
    /// Highest fee rate this wallet pays whatever the estimate.
    pub max_fee_rate_sat_per_vb: u64,
    /// Highest absolute fee of one payout.
    pub max_fee_sats: u64,
    /// The fresh internal (change) address's script.
    pub change_script: ScriptBuf,
}

/// A payout ready to be described and signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutPlan {
    /// Unsigned, RBF signalled; inputs in `selected` order.
    pub tx: Transaction,
    pub selected: Vec<Utxo>,
    pub fee_sats: u64,
    /// Index of the change output in `tx.output`, if any.
    pub change_output: Option<usize>,
    /// The fee rate used after the cap.
    pub fee_rate_sat_per_vb: u64,
}

/// The fee rate in sat/vB (rounded up, at least 1) from an
/// `estimatesmartfee` answer in BTC per 1000 vbytes.
pub fn fee_rate_sat_per_vb(btc_per_kvb: Decimal) -> Result<u64, PayoutError> {
    if btc_per_kvb.is_sign_negative() || btc_per_kvb.is_zero() {
        return Err(PayoutError::BadEstimate(format!(
            "{btc_per_kvb} BTC/kvB is not positive"
        )));
    }
    let sat_per_kvb = btc_per_kvb
        .checked_mul(Decimal::from(100_000_000u64))
        .ok_or(PayoutError::Overflow)?;
    let sat_per_vb = (sat_per_kvb / Decimal::from(1000u64)).ceil();
    sat_per_vb
        .to_u64()
        .map(|r| r.max(1))
        .ok_or_else(|| PayoutError::BadEstimate(format!("{btc_per_kvb} BTC/kvB is out of range")))
}

/// The dust limit of an output (Bitcoin Core's at 3 sat/vB relay dust fee):
/// 294 sats for P2WPKH, 330 for P2TR, 546 for other scripts.
pub fn dust_limit_sats(script: &ScriptBuf) -> u64 {
    script.minimal_non_dust().to_sat()
}

fn input_weight(kind: BtcAddressKind) -> u64 {
    INPUT_BASE_WU
        + match kind {
            BtcAddressKind::P2wpkh => P2WPKH_WITNESS_WU,
            BtcAddressKind::P2tr => P2TR_WITNESS_WU,
        }
}

fn output_weight(script: &ScriptBuf) -> u64 {
    // Value, script length (one byte below 253), script.
    4 * (8 + 1 + script.len() as u64)
}

fn fee_for(weight_wu: u64, rate: u64) -> Result<u64, PayoutError> {
    weight_wu
        .div_ceil(4)
        .checked_mul(rate)
        .ok_or(PayoutError::Overflow)
}

/// Selects inputs and builds the payout. Only outputs with at least one
/// confirmation are spent (the wallet's own change too, once confirmed);
/// largest first, so a payout uses few inputs.
pub fn build_payout(utxos: &[Utxo], req: &PayoutRequest) -> Result<PayoutPlan, PayoutError> {
    if req.recipients.is_empty() {
        return Err(PayoutError::NoRecipients);
    }
    if req.recipients.len() + 1 > MAX_COUNT {
        return Err(PayoutError::TooLarge);
    }
    for (i, out) in req.recipients.iter().enumerate() {
        if out.value.to_sat() < dust_limit_sats(&out.script_pubkey) {
            return Err(PayoutError::DustOutput(i));
        }
    }
    let rate = req
        .fee_rate_sat_per_vb
        .clamp(1, req.max_fee_rate_sat_per_vb.max(1));
    let target = req.recipients.iter().try_fold(0u64, |acc, o| {
        acc.checked_add(o.value.to_sat())
            .ok_or(PayoutError::Overflow)
    })?;
    let base_weight = req
        .recipients
        .iter()
        .fold(TX_OVERHEAD_WU, |w, o| w + output_weight(&o.script_pubkey));
    let change_weight = output_weight(&req.change_script);
    let change_dust = dust_limit_sats(&req.change_script);

    let mut candidates: Vec<&Utxo> = utxos.iter().filter(|u| u.confirmations >= 1).collect();
    // Largest first; ties by outpoint so the choice is deterministic.
    candidates.sort_by(|a, b| {
        b.value_sats
            .cmp(&a.value_sats)
            .then_with(|| a.outpoint.cmp(&b.outpoint))
    });
    let available: u64 = candidates.iter().map(|u| u.value_sats).sum();

    let mut selected: Vec<Utxo> = Vec::new();
    let mut total_in = 0u64;
    let mut weight = base_weight;
    let mut fee_blocked: Option<u64> = None;
    for utxo in candidates.into_iter().take(MAX_COUNT) {
        selected.push(utxo.clone());
        total_in = total_in
            .checked_add(utxo.value_sats)
            .ok_or(PayoutError::Overflow)?;
        weight += input_weight(utxo.kind);

        let fee_without = fee_for(weight, rate)?;
        let Some(excess) = total_in
            .checked_sub(target)
            .and_then(|r| r.checked_sub(fee_without))
        else {
            continue;
        };
        let fee_with = fee_for(weight + change_weight, rate)?;
        let change = total_in
            .checked_sub(target)
            .and_then(|r| r.checked_sub(fee_with))
            .filter(|c| *c >= change_dust);
        let (fee, change) = match change {
            Some(c) => (fee_with, Some(c)),
            // The leftover is too small for a change output: it goes to the fee.
            None => (fee_without + excess, None),
        };
        if fee > req.max_fee_sats {
            // Another input may make change possible and the fee smaller.
            fee_blocked = Some(fee);
            continue;
        }
        let mut output = req.recipients.clone();
        let change_output = change.map(|c| {
            output.push(TxOut {
                value: Amount::from_sat(c),
                script_pubkey: req.change_script.clone(),
            });
            output.len() - 1
        });
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: selected
                .iter()
                .map(|u| TxIn {
                    previous_output: u.outpoint,
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    ..TxIn::default()
                })
                .collect(),
            output,
        };
        return Ok(PayoutPlan {
            tx,
            selected,
            fee_sats: fee,
            change_output,
            fee_rate_sat_per_vb: rate,
        });
    }
    if let Some(fee_sats) = fee_blocked {
        return Err(PayoutError::FeeAboveCap {
            fee_sats,
            cap_sats: req.max_fee_sats,
        });
    }
    let needed_sats = target
        .checked_add(fee_for(
            base_weight + input_weight(BtcAddressKind::P2tr),
            rate,
        )?)
        .ok_or(PayoutError::Overflow)?;
    Err(PayoutError::InsufficientFunds {
        needed_sats,
        available_sats: available,
    })
}

/// The weight of `plan.tx` once signed, as counted by [`build_payout`].
pub fn signed_weight_wu(plan: &PayoutPlan) -> u64 {
    plan.selected
        .iter()
        .map(|u| input_weight(u.kind))
        .sum::<u64>()
        + plan
            .tx
            .output
            .iter()
            .map(|o| output_weight(&o.script_pubkey))
            .sum::<u64>()
        + TX_OVERHEAD_WU
}

#[cfg(test)]
mod tests;
