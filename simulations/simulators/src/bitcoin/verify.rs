//! Script verification for the output types the simulated node understands:
//! P2WPKH, P2SH-wrapped P2WPKH, P2WSH m-of-n multisig, P2TR key path and
//! P2PKH, with real sighashes
//! (`bitcoin::sighash`) and secp256k1 signature checks.
//!
//! Failure messages are Bitcoin Core's script error strings, so a rejected
//! transaction reads `mandatory-script-verify-flag-failed (<message>)` as it
//! would from bitcoind.

use std::sync::OnceLock;

use bitcoin::hashes::{hash160, Hash};
use bitcoin::script::Instruction;
use bitcoin::secp256k1::{All, Message, Secp256k1, XOnlyPublicKey};
use bitcoin::sighash::{Annex, Prevouts, SighashCache};
use bitcoin::{Script, Transaction, TxOut};

/// Why an input failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFailure {
    /// The signature or script is invalid under consensus rules
    /// (Core's `mandatory-script-verify-flag-failed (...)`).
    Mandatory(&'static str),
    /// The spent output is of a kind this node cannot verify (bare scripts,
    /// P2WSH, taproot script paths). Reported as non-standard.
    Unsupported(&'static str),
}

impl InputFailure {
    /// The reject reason as bitcoind words it.
    pub fn reject_reason(&self) -> String {
        match self {
            InputFailure::Mandatory(m) => format!("mandatory-script-verify-flag-failed ({m})"),
            InputFailure::Unsupported(m) => format!("bad-txns-nonstandard-inputs ({m})"),
        }
    }
}

const EVAL_FALSE: &str =
    "Script evaluated without error but finished with a false/empty top stack element";
const EQUALVERIFY: &str = "Script failed an OP_EQUALVERIFY operation";
const WITNESS_MISMATCH: &str = "Witness program hash mismatch";
const WITNESS_EMPTY: &str = "Witness program was passed an empty witness";
const WITNESS_MALLEATED: &str = "Witness requires empty scriptSig";
const WITNESS_MALLEATED_P2SH: &str = "Witness requires only-redeemscript scriptSig";
const WITNESS_UNEXPECTED: &str = "Witness provided for non-witness script";
const SIG_DER: &str = "Non-canonical DER signature";
const SCHNORR_SIG: &str = "Invalid Schnorr signature";
const SCHNORR_SIZE: &str = "Invalid Schnorr signature size";
const SCHNORR_HASHTYPE: &str = "Invalid Schnorr signature hash type";
const PUSH_ONLY: &str = "Only push operators allowed in signatures";
const OP_RETURN: &str = "OP_RETURN was encountered";

/// A process-wide secp256k1 context (creating one per call is wasteful).
pub(crate) fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}

/// Verifies every input of `tx` against the outputs it spends
/// (`prevouts[i]` is spent by `tx.input[i]`).
pub fn verify_transaction(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), InputFailure> {
    debug_assert_eq!(tx.input.len(), prevouts.len());
    let mut cache = SighashCache::new(tx);
    for (index, prevout) in prevouts.iter().enumerate() {
        verify_input(&mut cache, tx, index, prevout, prevouts)?;
    }
    Ok(())
}

fn verify_input(
    cache: &mut SighashCache<&Transaction>,
    tx: &Transaction,
    index: usize,
    prevout: &TxOut,
    prevouts: &[TxOut],
) -> Result<(), InputFailure> {
    let input = &tx.input[index];
    let spk = &prevout.script_pubkey;
    if spk.is_p2wpkh() {
        if !input.script_sig.is_empty() {
            return Err(InputFailure::Mandatory(WITNESS_MALLEATED));
        }
        verify_p2wpkh(cache, tx, index, spk, prevout)
    } else if spk.is_p2tr() {
        if !input.script_sig.is_empty() {
            return Err(InputFailure::Mandatory(WITNESS_MALLEATED));
        }
        verify_p2tr(cache, tx, index, spk, prevouts)
    } else if spk.is_p2wsh() {
        if !input.script_sig.is_empty() {
            return Err(InputFailure::Mandatory(WITNESS_MALLEATED));
        }
        verify_p2wsh_multisig(cache, tx, index, spk, prevout)
    } else if spk.is_p2pkh() {
        if !input.witness.is_empty() {
            return Err(InputFailure::Mandatory(WITNESS_UNEXPECTED));
        }
        verify_p2pkh(cache, tx, index, spk)
    } else if spk.is_p2sh() {
        verify_p2sh(cache, tx, index, spk, prevout)
    } else if spk.is_op_return() {
        Err(InputFailure::Mandatory(OP_RETURN))
    } else {
        Err(InputFailure::Unsupported(
            "only P2WPKH, P2SH-P2WPKH, P2WSH multisig, P2TR key-path and P2PKH inputs are verified by this node",
        ))
    }
}

fn pushes(script: &Script) -> Result<Vec<Vec<u8>>, InputFailure> {
    let mut out = Vec::new();
    for ins in script.instructions() {
        match ins {
            Ok(Instruction::PushBytes(b)) => out.push(b.as_bytes().to_vec()),
            Ok(Instruction::Op(op)) if op == bitcoin::opcodes::all::OP_PUSHBYTES_0 => {
                out.push(Vec::new())
            }
            _ => return Err(InputFailure::Mandatory(PUSH_ONLY)),
        }
    }
    Ok(out)
}

fn verify_p2sh(
    cache: &mut SighashCache<&Transaction>,
    tx: &Transaction,
    index: usize,
    spk: &Script,
    prevout: &TxOut,
) -> Result<(), InputFailure> {
    let items = pushes(&tx.input[index].script_sig)?;
    let Some(redeem) = items.last() else {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    };
    if hash160::Hash::hash(redeem).as_byte_array()[..] != spk.as_bytes()[2..22] {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    }
    let redeem = Script::from_bytes(redeem);
    if !redeem.is_p2wpkh() {
        return Err(InputFailure::Unsupported(
            "P2SH inputs are verified only when they wrap P2WPKH",
        ));
    }
    if items.len() != 1 {
        return Err(InputFailure::Mandatory(WITNESS_MALLEATED_P2SH));
    }
    let wrapped = TxOut {
        value: prevout.value,
        script_pubkey: redeem.to_owned(),
    };
    verify_p2wpkh(cache, tx, index, redeem, &wrapped)
}

fn verify_p2wpkh(
    cache: &mut SighashCache<&Transaction>,
    tx: &Transaction,
    index: usize,
    program_script: &Script,
    prevout: &TxOut,
) -> Result<(), InputFailure> {
    let witness = &tx.input[index].witness;
    if witness.is_empty() {
        return Err(InputFailure::Mandatory(WITNESS_EMPTY));
    }
    if witness.len() != 2 {
        return Err(InputFailure::Mandatory(WITNESS_MISMATCH));
    }
    let sig = witness.nth(0).unwrap_or_default();
    let pk = witness.nth(1).unwrap_or_default();
    if hash160::Hash::hash(pk).as_byte_array()[..] != program_script.as_bytes()[2..22] {
        return Err(InputFailure::Mandatory(EQUALVERIFY));
    }
    let parsed = parse_ecdsa(sig)?;
    let Some((sig, sighash_type)) = parsed else {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    };
    let Ok(sighash_type) = bitcoin::EcdsaSighashType::from_standard(sighash_type) else {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    };
    let hash = cache
        .p2wpkh_signature_hash(index, program_script, prevout.value, sighash_type)
        .map_err(|_| InputFailure::Mandatory(EVAL_FALSE))?;
    check_ecdsa(&sig, hash.to_byte_array(), pk)
}

/// `OP_m <key>... OP_n OP_CHECKMULTISIG`: (m, keys).
fn parse_multisig(script: &Script) -> Option<(usize, Vec<Vec<u8>>)> {
    use bitcoin::opcodes::all::{OP_CHECKMULTISIG, OP_PUSHNUM_1, OP_PUSHNUM_16};
    let small = |op: bitcoin::Opcode| {
        let c = op.to_u8();
        (OP_PUSHNUM_1.to_u8()..=OP_PUSHNUM_16.to_u8())
            .contains(&c)
            .then(|| usize::from(c - OP_PUSHNUM_1.to_u8() + 1))
    };
    let ins: Vec<Instruction> = script.instructions().collect::<Result<_, _>>().ok()?;
    let (first, rest) = ins.split_first()?;
    let (last, rest) = rest.split_last()?;
    let (count, keys) = rest.split_last()?;
    let m = match first {
        Instruction::Op(op) => small(*op)?,
        _ => return None,
    };
    let n = match count {
        Instruction::Op(op) => small(*op)?,
        _ => return None,
    };
    if *last != Instruction::Op(OP_CHECKMULTISIG) || keys.len() != n || m > n {
        return None;
    }
    let keys = keys
        .iter()
        .map(|k| match k {
            Instruction::PushBytes(b) => Some(b.as_bytes().to_vec()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((m, keys))
}

fn verify_p2wsh_multisig(
    cache: &mut SighashCache<&Transaction>,
    tx: &Transaction,
    index: usize,
    spk: &Script,
    prevout: &TxOut,
) -> Result<(), InputFailure> {
    let items: Vec<&[u8]> = tx.input[index].witness.iter().collect();
    let Some((script, stack)) = items.split_last() else {
        return Err(InputFailure::Mandatory(WITNESS_EMPTY));
    };
    let script = Script::from_bytes(script);
    if script.wscript_hash().as_byte_array()[..] != spk.as_bytes()[2..34] {
        return Err(InputFailure::Mandatory(WITNESS_MISMATCH));
    }
    let Some((m, keys)) = parse_multisig(script) else {
        return Err(InputFailure::Unsupported(
            "P2WSH inputs are verified only for m-of-n CHECKMULTISIG scripts",
        ));
    };
    // Stack: the dummy element, then m signatures in key order.
    let Some((dummy, sigs)) = stack.split_first() else {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    };
    if !dummy.is_empty() {
        return Err(InputFailure::Mandatory(
            "Dummy CHECKMULTISIG argument must be zero",
        ));
    }
    if sigs.len() != m {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    }
    let mut key_iter = keys.iter();
    for sig in sigs {
        let Some((sig, sighash_type)) = parse_ecdsa(sig)? else {
            return Err(InputFailure::Mandatory(EVAL_FALSE));
        };
        let Ok(sighash_type) = bitcoin::EcdsaSighashType::from_standard(sighash_type) else {
            return Err(InputFailure::Mandatory(EVAL_FALSE));
        };
        let hash = cache
            .p2wsh_signature_hash(index, script, prevout.value, sighash_type)
            .map_err(|_| InputFailure::Mandatory(EVAL_FALSE))?;
        // Signatures must match keys in order; a key may be skipped.
        let matched = key_iter
            .by_ref()
            .any(|k| check_ecdsa(&sig, hash.to_byte_array(), k).is_ok());
        if !matched {
            return Err(InputFailure::Mandatory(EVAL_FALSE));
        }
    }
    Ok(())
}

fn verify_p2pkh(
    cache: &mut SighashCache<&Transaction>,
    tx: &Transaction,
    index: usize,
    spk: &Script,
) -> Result<(), InputFailure> {
    let items = pushes(&tx.input[index].script_sig)?;
    if items.len() != 2 {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    }
    let (sig, pk) = (&items[0], &items[1]);
    if hash160::Hash::hash(pk).as_byte_array()[..] != spk.as_bytes()[3..23] {
        return Err(InputFailure::Mandatory(EQUALVERIFY));
    }
    let Some((sig, sighash_type)) = parse_ecdsa(sig)? else {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    };
    let hash = cache
        .legacy_signature_hash(index, spk, sighash_type)
        .map_err(|_| InputFailure::Mandatory(EVAL_FALSE))?;
    check_ecdsa(&sig, hash.to_byte_array(), pk)
}

/// Splits a script signature into its DER part and the sighash byte.
/// `Ok(None)` is an empty signature (which makes CHECKSIG push false).
fn parse_ecdsa(
    sig: &[u8],
) -> Result<Option<(bitcoin::secp256k1::ecdsa::Signature, u32)>, InputFailure> {
    let Some((&hash_type, der)) = sig.split_last() else {
        return Ok(None);
    };
    let sig = bitcoin::secp256k1::ecdsa::Signature::from_der(der)
        .map_err(|_| InputFailure::Mandatory(SIG_DER))?;
    Ok(Some((sig, u32::from(hash_type))))
}

fn check_ecdsa(
    sig: &bitcoin::secp256k1::ecdsa::Signature,
    digest: [u8; 32],
    pk: &[u8],
) -> Result<(), InputFailure> {
    let Ok(pk) = bitcoin::secp256k1::PublicKey::from_slice(pk) else {
        return Err(InputFailure::Mandatory(EVAL_FALSE));
    };
    // Consensus accepts high-S signatures; libsecp256k1 verifies only low-S.
    let mut sig = *sig;
    sig.normalize_s();
    secp()
        .verify_ecdsa(&Message::from_digest(digest), &sig, &pk)
        .map_err(|_| InputFailure::Mandatory(EVAL_FALSE))
}

fn verify_p2tr(
    cache: &mut SighashCache<&Transaction>,
    tx: &Transaction,
    index: usize,
    spk: &Script,
    prevouts: &[TxOut],
) -> Result<(), InputFailure> {
    let witness = &tx.input[index].witness;
    let mut items: Vec<&[u8]> = witness.iter().collect();
    if items.is_empty() {
        return Err(InputFailure::Mandatory(WITNESS_EMPTY));
    }
    let mut annex = None;
    if items.len() >= 2 && items.last().is_some_and(|a| a.first() == Some(&0x50)) {
        let raw = items.pop().unwrap_or_default();
        annex = Annex::new(raw).ok();
    }
    if items.len() != 1 {
        return Err(InputFailure::Unsupported(
            "taproot script-path spends are not verified by this node",
        ));
    }
    let sig = bitcoin::taproot::Signature::from_slice(items[0]).map_err(|e| match e {
        bitcoin::taproot::SigFromSliceError::SighashType(_) => {
            InputFailure::Mandatory(SCHNORR_HASHTYPE)
        }
        _ => InputFailure::Mandatory(SCHNORR_SIZE),
    })?;
    let key = XOnlyPublicKey::from_slice(&spk.as_bytes()[2..34])
        .map_err(|_| InputFailure::Mandatory(SCHNORR_SIG))?;
    let hash = cache
        .taproot_signature_hash(
            index,
            &Prevouts::All(prevouts),
            annex,
            None,
            sig.sighash_type,
        )
        .map_err(|_| InputFailure::Mandatory(SCHNORR_HASHTYPE))?;
    secp()
        .verify_schnorr(
            &sig.signature,
            &Message::from_digest(hash.to_byte_array()),
            &key,
        )
        .map_err(|_| InputFailure::Mandatory(SCHNORR_SIG))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::key::{Keypair, TapTweak};
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::sighash::{EcdsaSighashType, TapSighashType};
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, TxIn, Witness};

    fn spend_of(prevout: &TxOut) -> Transaction {
        let _ = prevout;
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::default(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(9_000),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_slice(&[n; 32]).expect("valid key")
    }

    #[test]
    fn p2wpkh_good_and_bad_signature() {
        let sk = key(7);
        let pk = CompressedPublicKey(sk.public_key(secp()));
        let prevout = TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()),
        };
        let mut tx = spend_of(&prevout);
        let hash = SighashCache::new(&tx)
            .p2wpkh_signature_hash(
                0,
                &prevout.script_pubkey,
                prevout.value,
                EcdsaSighashType::All,
            )
            .expect("sighash");
        let sig = secp().sign_ecdsa(&Message::from_digest(hash.to_byte_array()), &sk);
        let good = bitcoin::ecdsa::Signature {
            signature: sig,
            sighash_type: EcdsaSighashType::All,
        };
        tx.input[0].witness = Witness::p2wpkh(&good, &pk.0);
        assert_eq!(
            verify_transaction(&tx, std::slice::from_ref(&prevout)),
            Ok(())
        );

        // Same signature, different amount signed for: fails.
        let other = TxOut {
            value: Amount::from_sat(10_001),
            ..prevout.clone()
        };
        assert_eq!(
            verify_transaction(&tx, &[other]),
            Err(InputFailure::Mandatory(EVAL_FALSE))
        );
        // Wrong key.
        let wrong = CompressedPublicKey(key(8).public_key(secp()));
        tx.input[0].witness = Witness::p2wpkh(&good, &wrong.0);
        assert_eq!(
            verify_transaction(&tx, &[prevout]),
            Err(InputFailure::Mandatory(EQUALVERIFY))
        );
    }

    #[test]
    fn p2tr_key_path() {
        let kp = Keypair::from_secret_key(secp(), &key(9));
        let (xonly, _) = kp.x_only_public_key();
        let prevout = TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: ScriptBuf::new_p2tr(secp(), xonly, None),
        };
        let mut tx = spend_of(&prevout);
        let hash = SighashCache::new(&tx)
            .taproot_key_spend_signature_hash(
                0,
                &Prevouts::All(std::slice::from_ref(&prevout)),
                TapSighashType::Default,
            )
            .expect("sighash");
        let tweaked = kp.tap_tweak(secp(), None);
        let sig = secp().sign_schnorr_no_aux_rand(
            &Message::from_digest(hash.to_byte_array()),
            &tweaked.to_keypair(),
        );
        tx.input[0].witness = Witness::from_slice(&[sig.as_ref().to_vec()]);
        assert_eq!(
            verify_transaction(&tx, std::slice::from_ref(&prevout)),
            Ok(())
        );
        let mut bad = sig.as_ref().to_vec();
        bad[10] ^= 1;
        tx.input[0].witness = Witness::from_slice(&[bad]);
        assert_eq!(
            verify_transaction(&tx, &[prevout]),
            Err(InputFailure::Mandatory(SCHNORR_SIG))
        );
    }

    #[test]
    fn p2wsh_two_of_three() {
        let sks = [key(41), key(42), key(43)];
        let pks: Vec<bitcoin::PublicKey> = sks
            .iter()
            .map(|k| bitcoin::PublicKey::new(k.public_key(secp())))
            .collect();
        let script = bitcoin::script::Builder::new()
            .push_int(2)
            .push_key(&pks[0])
            .push_key(&pks[1])
            .push_key(&pks[2])
            .push_int(3)
            .push_opcode(bitcoin::opcodes::all::OP_CHECKMULTISIG)
            .into_script();
        let prevout = TxOut {
            value: Amount::from_sat(50_000),
            script_pubkey: ScriptBuf::new_p2wsh(&script.wscript_hash()),
        };
        let mut tx = spend_of(&prevout);
        let hash = SighashCache::new(&tx)
            .p2wsh_signature_hash(0, &script, prevout.value, EcdsaSighashType::All)
            .expect("sighash");
        let sign = |sk: &SecretKey| {
            let s = secp().sign_ecdsa(&Message::from_digest(hash.to_byte_array()), sk);
            bitcoin::ecdsa::Signature {
                signature: s,
                sighash_type: EcdsaSighashType::All,
            }
            .serialize()
            .to_vec()
        };
        let witness = |sigs: Vec<Vec<u8>>| {
            let mut items = vec![Vec::new()];
            items.extend(sigs);
            items.push(script.to_bytes());
            Witness::from_slice(&items)
        };
        tx.input[0].witness = witness(vec![sign(&sks[0]), sign(&sks[2])]);
        assert_eq!(
            verify_transaction(&tx, std::slice::from_ref(&prevout)),
            Ok(())
        );
        // Out of key order fails, as in Core.
        tx.input[0].witness = witness(vec![sign(&sks[2]), sign(&sks[0])]);
        assert_eq!(
            verify_transaction(&tx, std::slice::from_ref(&prevout)),
            Err(InputFailure::Mandatory(EVAL_FALSE))
        );
        // One signature is not enough.
        tx.input[0].witness = witness(vec![sign(&sks[1])]);
        assert!(verify_transaction(&tx, std::slice::from_ref(&prevout)).is_err());
        // A signature by a stranger is not either.
        tx.input[0].witness = witness(vec![sign(&sks[0]), sign(&key(44))]);
        assert!(verify_transaction(&tx, &[prevout]).is_err());
    }

    #[test]
    fn p2pkh_signature() {
        let sk = key(3);
        let pk = bitcoin::PublicKey::new(sk.public_key(secp()));
        let prevout = TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: ScriptBuf::new_p2pkh(&pk.pubkey_hash()),
        };
        let mut tx = spend_of(&prevout);
        let hash = SighashCache::new(&tx)
            .legacy_signature_hash(0, &prevout.script_pubkey, 1)
            .expect("sighash");
        let sig = secp().sign_ecdsa(&Message::from_digest(hash.to_byte_array()), &sk);
        let sig = bitcoin::ecdsa::Signature {
            signature: sig,
            sighash_type: EcdsaSighashType::All,
        };
        let script_sig = bitcoin::script::Builder::new()
            .push_slice(sig.serialize())
            .push_key(&pk)
            .into_script();
        tx.input[0].script_sig = script_sig;
        assert_eq!(
            verify_transaction(&tx, std::slice::from_ref(&prevout)),
            Ok(())
        );
        tx.output[0].value = Amount::from_sat(8_000);
        assert_eq!(
            verify_transaction(&tx, &[prevout]),
            Err(InputFailure::Mandatory(EVAL_FALSE))
        );
    }
}
