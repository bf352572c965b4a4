use std::sync::Arc;

use alloy_consensus::{TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address as EthAddress, Bytes, TxKind, U256};
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, Sequence, TxIn, Txid};
use proto::BitcoinNetwork;
use simulators::bitcoin::verify::verify_transaction;

use super::*;

const PHRASE: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const OTHER: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";

fn signer(phrase: &str) -> LocalSigner {
    LocalSigner::new(Arc::new(
        Keyring::from_mnemonic(phrase, BitcoinNetwork::Regtest).unwrap(),
    ))
}

fn outpoint(n: u8) -> OutPoint {
    OutPoint {
        txid: Txid::from_byte_array([n; 32]),
        vout: u32::from(n),
    }
}

/// An output of `s` at `kind`/`chain`/`index` worth `sats`.
fn owned(
    s: &LocalSigner,
    n: u8,
    kind: BtcAddressKind,
    chain: u32,
    index: u32,
    sats: u64,
) -> OwnedInput {
    let address = s
        .deposit_accounts()
        .btc_address_at(kind, chain, index)
        .unwrap();
    OwnedInput {
        outpoint: outpoint(n),
        txout: TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: address.script_pubkey(),
        },
        kind,
        chain,
        index,
    }
}

/// An unsigned spend of `inputs` to one payee output (fee 1 000 sats), RBF signalled.
fn unsigned_psbt(inputs: &[OwnedInput]) -> Psbt {
    let total: u64 = inputs.iter().map(|i| i.txout.value.to_sat()).sum();
    let payee = signer(OTHER)
        .deposit_accounts()
        .btc_address(BtcAddressKind::P2wpkh, 9)
        .unwrap();
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: inputs
            .iter()
            .map(|i| TxIn {
                previous_output: i.outpoint,
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                ..TxIn::default()
            })
            .collect(),
        output: vec![TxOut {
            value: Amount::from_sat(total - 1_000),
            script_pubkey: payee.script_pubkey(),
        }],
    };
    Psbt::from_unsigned_tx(tx).unwrap()
}

fn prevouts(inputs: &[OwnedInput]) -> Vec<TxOut> {
    inputs.iter().map(|i| i.txout.clone()).collect()
}

#[test]
fn exported_psbt_signed_offline_spends_correctly() {
    let hot = signer(PHRASE);
    let inputs = vec![
        owned(&hot, 1, BtcAddressKind::P2wpkh, 0, 3, 50_000),
        owned(&hot, 2, BtcAddressKind::P2tr, 0, 0, 70_000),
        owned(&hot, 3, BtcAddressKind::P2wpkh, 1, 0, 20_000),
    ];
    let mut psbt = unsigned_psbt(&inputs);
    describe_inputs(
        &mut psbt,
        hot.fingerprint(),
        hot.deposit_accounts(),
        &inputs,
    )
    .unwrap();
    let exported = export_psbt(&psbt);

    // The offline side: a separate signer with the same secret, seeing only base64.
    let cold = signer(PHRASE);
    let mut offline = import_psbt(&exported).unwrap();
    assert_eq!(cold.sign_psbt(&mut offline).unwrap(), vec![0, 1, 2]);
    let signed_base64 = export_psbt(&offline);

    import_signed_psbt(&mut psbt, &signed_base64).unwrap();
    let tx = finalize(psbt).unwrap();
    verify_transaction(&tx, &prevouts(&inputs)).unwrap();
    assert!(tx.input.iter().all(|i| i.sequence.is_rbf()));

    // The same witnesses on a changed transaction no longer verify.
    let mut tampered = tx.clone();
    tampered.output[0].value = Amount::from_sat(1_000);
    assert!(verify_transaction(&tampered, &prevouts(&inputs)).is_err());
}

#[test]
fn foreign_inputs_are_left_alone_and_block_finalization() {
    let hot = signer(PHRASE);
    let other = signer(OTHER);
    let ours = owned(&hot, 1, BtcAddressKind::P2wpkh, 0, 0, 10_000);
    let theirs = owned(&other, 2, BtcAddressKind::P2tr, 0, 0, 10_000);
    let inputs = vec![ours.clone(), theirs.clone()];
    let mut psbt = unsigned_psbt(&inputs);
    describe_inputs(
        &mut psbt,
        hot.fingerprint(),
        hot.deposit_accounts(),
        &[ours],
    )
    .unwrap();
    describe_inputs(
        &mut psbt,
        other.fingerprint(),
        other.deposit_accounts(),
        &[theirs],
    )
    .unwrap();
    assert_eq!(hot.sign_psbt(&mut psbt).unwrap(), vec![0]);
    assert!(matches!(
        finalize(psbt.clone()),
        Err(SignError::Unsigned { input: 1 })
    ));
    // Both signers sign their own: then it spends.
    assert_eq!(other.sign_psbt(&mut psbt).unwrap(), vec![1]);
    let tx = finalize(psbt).unwrap();
    verify_transaction(&tx, &prevouts(&inputs)).unwrap();
}

#[test]
fn our_fingerprint_with_a_wrong_key_or_path_is_refused() {
    let hot = signer(PHRASE);
    let input = owned(&hot, 1, BtcAddressKind::P2wpkh, 0, 0, 10_000);
    let mut psbt = unsigned_psbt(std::slice::from_ref(&input));
    describe_inputs(
        &mut psbt,
        hot.fingerprint(),
        hot.deposit_accounts(),
        std::slice::from_ref(&input),
    )
    .unwrap();

    // A key that is not the one at the stated path.
    let mut wrong_key = psbt.clone();
    let (_, source) = wrong_key.inputs[0].bip32_derivation.pop_first().unwrap();
    let other_pk = hot
        .deposit_accounts()
        .btc_public_key(BtcAddressKind::P2wpkh, 1)
        .unwrap();
    wrong_key.inputs[0]
        .bip32_derivation
        .insert(other_pk.0, source);
    assert!(matches!(
        hot.sign_psbt(&mut wrong_key),
        Err(SignError::Refused { input: 0, .. })
    ));

    // A path outside the deposit accounts (the Ethereum hot key's).
    let mut wrong_path = psbt.clone();
    let (pk, _) = wrong_path.inputs[0].bip32_derivation.pop_first().unwrap();
    wrong_path.inputs[0]
        .bip32_derivation
        .insert(pk, (hot.fingerprint(), "m/44'/60'/0'/0/0".parse().unwrap()));
    let err = hot.sign_psbt(&mut wrong_path).unwrap_err();
    assert!(err.to_string().contains("not under"), "{err}");

    // Another sighash type than ALL.
    let mut none = psbt.clone();
    none.inputs[0].sighash_type = Some(EcdsaSighashType::None.into());
    assert!(matches!(
        hot.sign_psbt(&mut none),
        Err(SignError::Refused { input: 0, .. })
    ));

    // An output that does not pay to the key.
    let mut elsewhere = psbt;
    elsewhere.inputs[0].witness_utxo =
        Some(owned(&hot, 1, BtcAddressKind::P2wpkh, 0, 5, 10_000).txout);
    assert!(matches!(
        hot.sign_psbt(&mut elsewhere),
        Err(SignError::Refused { input: 0, .. })
    ));
}

#[test]
fn import_checks_what_comes_back() {
    let hot = signer(PHRASE);
    let a = owned(&hot, 1, BtcAddressKind::P2wpkh, 0, 0, 10_000);
    let b = owned(&hot, 2, BtcAddressKind::P2wpkh, 0, 1, 10_000);
    let mut psbt_a = unsigned_psbt(std::slice::from_ref(&a));
    let psbt_b = unsigned_psbt(std::slice::from_ref(&b));
    assert!(matches!(
        import_signed_psbt(&mut psbt_a, &export_psbt(&psbt_b)),
        Err(SignError::DifferentTransaction { .. })
    ));
    assert!(matches!(
        import_psbt("not base64 at all!"),
        Err(SignError::BadPsbt(_))
    ));
    assert!(matches!(
        import_psbt("cHNidP8="),
        Err(SignError::BadPsbt(_))
    ));
}

#[test]
fn eip1559_signature_recovers_to_the_account() {
    let hot = signer(PHRASE);
    let tx = TxEip1559 {
        chain_id: 31_337,
        nonce: 3,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(EthAddress::repeat_byte(0x11)),
        value: U256::from(5u64),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let signed = hot.sign_eip1559(0, tx).unwrap();
    let decoded = TxEnvelope::decode_2718(&mut signed.raw.as_slice()).unwrap();
    let TxEnvelope::Eip1559(tx) = decoded else {
        panic!("expected an EIP-1559 transaction")
    };
    assert_eq!(
        tx.recover_signer().unwrap(),
        hot.deposit_accounts().eth_address(0).unwrap()
    );
}
