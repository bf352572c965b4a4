use std::sync::Arc;

use bitcoin::hashes::Hash;
use bitcoin::Txid;
use proptest::prelude::*;
use proto::BitcoinNetwork;
use simulators::bitcoin::verify::verify_transaction;

use super::*;
use crate::keys::Keyring;
use crate::signer::{describe_inputs, finalize, LocalSigner, OwnedInput, Signer};

const PHRASE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn hot() -> LocalSigner {
    LocalSigner::new(Arc::new(
        Keyring::from_mnemonic(PHRASE, BitcoinNetwork::Regtest).unwrap(),
    ))
}

fn change_script(s: &LocalSigner) -> ScriptBuf {
    s.deposit_accounts()
        .btc_address_at(BtcAddressKind::P2wpkh, 1, 0)
        .unwrap()
        .script_pubkey()
}

fn payee(n: u32) -> ScriptBuf {
    hot()
        .deposit_accounts()
        .btc_address(BtcAddressKind::P2tr, 1000 + n)
        .unwrap()
        .script_pubkey()
}

fn utxo(n: u32, sats: u64, kind: BtcAddressKind, confirmations: u32) -> Utxo {
    Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([(n % 251) as u8 + 1; 32]),
            vout: n,
        },
        value_sats: sats,
        kind,
        chain: n % 2,
        index: n,
        confirmations,
    }
}

fn request(amounts: &[u64], rate: u64) -> PayoutRequest {
    PayoutRequest {
        recipients: amounts
            .iter()
            .enumerate()
            .map(|(i, a)| TxOut {
                value: Amount::from_sat(*a),
                script_pubkey: payee(i as u32),
            })
            .collect(),
        fee_rate_sat_per_vb: rate,
        max_fee_rate_sat_per_vb: 200,
        max_fee_sats: 50_000,
        change_script: change_script(&hot()),
    }
}

#[test]
fn fee_rate_from_the_node_estimate() {
    let r = |s: &str| fee_rate_sat_per_vb(s.parse().unwrap());
    assert_eq!(r("0.00001000"), Ok(1));
    assert_eq!(r("0.00001001"), Ok(2));
    assert_eq!(r("0.0002"), Ok(20));
    assert_eq!(r("0.000001"), Ok(1));
    assert!(matches!(r("0"), Err(PayoutError::BadEstimate(_))));
    assert!(matches!(r("-1"), Err(PayoutError::BadEstimate(_))));
}

#[test]
fn unconfirmed_outputs_are_not_spent() {
    let utxos = [
        utxo(1, 1_000_000, BtcAddressKind::P2wpkh, 0),
        utxo(2, 30_000, BtcAddressKind::P2wpkh, 1),
    ];
    let err = build_payout(&utxos, &request(&[100_000], 5)).unwrap_err();
    assert!(matches!(
        err,
        PayoutError::InsufficientFunds {
            available_sats: 30_000,
            ..
        }
    ));
}

#[test]
fn small_leftover_goes_to_the_fee() {
    // 100 000 + fee (1 in, 1 out, P2WPKH: ~111 vB × 2) + a leftover under dust.
    let utxos = [utxo(1, 100_500, BtcAddressKind::P2wpkh, 3)];
    let plan = build_payout(&utxos, &request(&[100_000], 2)).unwrap();
    assert_eq!(plan.change_output, None);
    assert_eq!(plan.fee_sats, 500);
    assert_eq!(plan.tx.output.len(), 1);
}

#[test]
fn fee_rate_is_capped_and_absolute_fee_refused_above_cap() {
    let utxos = [utxo(1, 10_000_000, BtcAddressKind::P2wpkh, 3)];
    let mut req = request(&[100_000], 10_000);
    let plan = build_payout(&utxos, &req).unwrap();
    assert_eq!(plan.fee_rate_sat_per_vb, 200);
    req.max_fee_sats = 1_000;
    assert!(matches!(
        build_payout(&utxos, &req),
        Err(PayoutError::FeeAboveCap {
            cap_sats: 1_000,
            ..
        })
    ));
}

#[test]
fn dust_payments_are_refused() {
    let utxos = [utxo(1, 10_000_000, BtcAddressKind::P2wpkh, 3)];
    assert_eq!(
        build_payout(&utxos, &request(&[100], 2)),
        Err(PayoutError::DustOutput(0))
    );
    assert_eq!(
        build_payout(&utxos, &request(&[], 2)),
        Err(PayoutError::NoRecipients)
    );
}

#[test]
fn built_payout_signs_and_verifies_and_pays_at_least_the_rate() {
    let s = hot();
    let utxos = vec![
        utxo(1, 40_000, BtcAddressKind::P2wpkh, 6),
        utxo(2, 25_000, BtcAddressKind::P2tr, 2),
        utxo(3, 90_000, BtcAddressKind::P2wpkh, 0),
    ];
    let rate = 7;
    let plan = build_payout(&utxos, &request(&[50_000, 12_000], rate)).unwrap();
    let owned: Vec<OwnedInput> = plan
        .selected
        .iter()
        .map(|u| OwnedInput {
            outpoint: u.outpoint,
            txout: TxOut {
                value: Amount::from_sat(u.value_sats),
                script_pubkey: s
                    .deposit_accounts()
                    .btc_address_at(u.kind, u.chain, u.index)
                    .unwrap()
                    .script_pubkey(),
            },
            kind: u.kind,
            chain: u.chain,
            index: u.index,
        })
        .collect();
    let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(plan.tx.clone()).unwrap();
    describe_inputs(&mut psbt, s.fingerprint(), s.deposit_accounts(), &owned).unwrap();
    s.sign_psbt(&mut psbt).unwrap();
    let tx = finalize(psbt).unwrap();
    let prevouts: Vec<TxOut> = owned.iter().map(|o| o.txout.clone()).collect();
    verify_transaction(&tx, &prevouts).unwrap();
    assert!(tx.weight().to_wu() <= signed_weight_wu(&plan));
    assert!(plan.fee_sats >= tx.vsize() as u64 * rate);
    let out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    let inp: u64 = prevouts.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(inp - out, plan.fee_sats);
}

fn arb_utxos() -> impl Strategy<Value = Vec<Utxo>> {
    prop::collection::vec((1u64..5_000_000, any::<bool>(), 0u32..4), 0..12).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (sats, tr, conf))| {
                let kind = if tr {
                    BtcAddressKind::P2tr
                } else {
                    BtcAddressKind::P2wpkh
                };
                utxo(i as u32, sats, kind, conf)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn payouts_never_overspend_and_respect_the_caps(
        utxos in arb_utxos(),
        amounts in prop::collection::vec(330u64..3_000_000, 1..4),
        rate in 1u64..400,
        max_fee_sats in 500u64..100_000,
    ) {
        let mut req = request(&amounts, rate);
        req.max_fee_sats = max_fee_sats;
        match build_payout(&utxos, &req) {
            Ok(plan) => {
                // Inputs: distinct, confirmed, from the given set.
                let mut seen = std::collections::BTreeSet::new();
                for u in &plan.selected {
                    prop_assert!(u.confirmations >= 1);
                    prop_assert!(utxos.contains(u));
                    prop_assert!(seen.insert(u.outpoint));
                }
                let total_in: u64 = plan.selected.iter().map(|u| u.value_sats).sum();
                let total_out: u64 = plan.tx.output.iter().map(|o| o.value.to_sat()).sum();
                // Never spends more than it has; the difference is exactly the fee.
                prop_assert_eq!(total_in, total_out + plan.fee_sats);
                // Recipients paid exactly, in order.
                prop_assert_eq!(&plan.tx.output[..amounts.len()], &req.recipients[..]);
                // Fee within caps and at least the (capped) rate.
                let used_rate = rate.min(200);
                prop_assert!(plan.fee_sats <= max_fee_sats);
                prop_assert_eq!(plan.fee_rate_sat_per_vb, used_rate);
                prop_assert!(plan.fee_sats >= signed_weight_wu(&plan).div_ceil(4) * used_rate);
                // Change: to the internal address and above dust, or absent.
                match plan.change_output {
                    Some(i) => {
                        prop_assert_eq!(i, plan.tx.output.len() - 1);
                        prop_assert_eq!(&plan.tx.output[i].script_pubkey, &req.change_script);
                        prop_assert!(plan.tx.output[i].value.to_sat() >= dust_limit_sats(&req.change_script));
                    }
                    None => prop_assert_eq!(plan.tx.output.len(), amounts.len()),
                }
                // RBF signalled on every input.
                prop_assert!(plan.tx.input.iter().all(|i| i.sequence == Sequence::ENABLE_RBF_NO_LOCKTIME));
                prop_assert!(plan.tx.is_explicitly_rbf());
            }
            Err(PayoutError::InsufficientFunds { available_sats, .. }) => {
                let confirmed: u64 = utxos.iter().filter(|u| u.confirmations >= 1).map(|u| u.value_sats).sum();
                prop_assert_eq!(available_sats, confirmed);
                let target: u64 = amounts.iter().sum();
                // Refused only when all confirmed funds cannot cover the
                // payments plus the fee of spending them all.
                let all_weight = utxos.iter().filter(|u| u.confirmations >= 1)
                    .map(|u| input_weight(u.kind)).sum::<u64>()
                    + req.recipients.iter().map(|o| output_weight(&o.script_pubkey)).sum::<u64>()
                    + TX_OVERHEAD_WU;
                prop_assert!(confirmed < target + all_weight.div_ceil(4) * rate.min(200));
            }
            Err(PayoutError::FeeAboveCap { fee_sats, cap_sats }) => {
                prop_assert!(fee_sats > cap_sats);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
