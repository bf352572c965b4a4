//! Signers: the one place private keys are used.
//!
//! [`Signer`] is what the rest of the hot wallet asks for signatures.
//! [`LocalSigner`] holds the [`Keyring`] in this process. For offline (cold)
//! signing, the unsigned transaction travels as a BIP174 PSBT in base64
//! ([`export_psbt`]); the signed copy comes back ([`import_signed_psbt`]
//! checks it is the same transaction and combines it), then [`finalize`]
//! builds the witnesses and extracts the transaction.
//!
//! A signer signs only what it can prove is its own: an input whose key
//! origin names this keyring's fingerprint and a path under the wallet's
//! BIP84 or BIP86 account, whose derived key equals the key the PSBT states
//! and whose spent output pays to that key, with `SIGHASH_ALL` (or the
//! taproot default). Anything else with our fingerprint is refused loudly;
//! inputs of other signers are left alone.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_signer::SignerSync;
use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, KeySource};
use bitcoin::psbt::{Input, Psbt};
use bitcoin::secp256k1::{Keypair, Message};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    key::TapTweak, CompressedPublicKey, PublicKey, ScriptBuf, Transaction, TxOut, Witness,
};

use crate::keys::{wipe, KeyError, Keyring};
use crate::payments::SignedTx;
use crate::watch::{BtcAddressKind, DepositAccounts};

/// Errors of signing, PSBT import and finalization.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("not a valid base64 PSBT: {0}")]
    BadPsbt(String),
    #[error("the signed PSBT is for transaction {got}, not the exported {expected}")]
    DifferentTransaction { expected: String, got: String },
    #[error("could not combine the signed PSBT: {0}")]
    Combine(String),
    #[error("input {input}: {reason}")]
    Refused { input: usize, reason: String },
    #[error("{0} is not spent by this transaction")]
    NotSpent(bitcoin::OutPoint),
    #[error("input {input} is not signed")]
    Unsigned { input: usize },
    #[error("sighash computation failed: {0}")]
    Sighash(String),
    #[error("transaction extraction failed: {0}")]
    Extract(String),
    #[error("key error: {0}")]
    Keys(#[from] KeyError),
    #[error("Ethereum signing failed: {0}")]
    Ethereum(String),
}

/// Signs transactions with keys the caller never sees.
pub trait Signer: Send + Sync + fmt::Debug {
    /// Signs every input of `psbt` this signer owns (P2WPKH and P2TR key
    /// path); returns their indexes. Inputs of other signers are left as
    /// they are.
    fn sign_psbt(&self, psbt: &mut Psbt) -> Result<Vec<usize>, SignError>;

    /// Signs an EIP-1559 transaction from the Ethereum account
    /// `m/44'/60'/0'/0/account`.
    fn sign_eip1559(&self, account: u32, tx: TxEip1559) -> Result<SignedTx, SignError>;

    /// The master key fingerprint key origins in a PSBT name.
    fn fingerprint(&self) -> Fingerprint;
}

/// The signer holding the hot wallet's keyring in process.
#[derive(Debug, Clone)]
pub struct LocalSigner {
    keys: Arc<Keyring>,
}

impl LocalSigner {
    pub fn new(keys: Arc<Keyring>) -> Self {
        LocalSigner { keys }
    }

    /// The watch-only account keys (for building PSBTs and deposit addresses).
    pub fn deposit_accounts(&self) -> &DepositAccounts {
        self.keys.deposit_accounts()
    }

    /// Checks the key origin is one of ours under the account of `kind`;
    /// returns the path.
    fn owned_path(
        &self,
        input: usize,
        kind: BtcAddressKind,
        source: &KeySource,
    ) -> Result<Option<DerivationPath>, SignError> {
        let (fingerprint, path) = source;
        if *fingerprint != self.keys.fingerprint() {
            return Ok(None);
        }
        let purpose = match kind {
            BtcAddressKind::P2wpkh => 84,
            BtcAddressKind::P2tr => 86,
        };
        let coin = u32::from(self.keys.bitcoin_network() != proto::BitcoinNetwork::Mainnet);
        let refuse = |reason: String| SignError::Refused { input, reason };
        let steps: Vec<ChildNumber> = path.into_iter().copied().collect();
        let hardened = |i| ChildNumber::from_hardened_idx(i).map_err(|e| refuse(e.to_string()));
        let ok = steps.len() == 5
            && steps[0] == hardened(purpose)?
            && steps[1] == hardened(coin)?
            && steps[2] == hardened(0)?
            && matches!(steps[3], ChildNumber::Normal { index: 0 | 1 })
            && steps[4].is_normal();
        if !ok {
            return Err(refuse(format!(
                "path {path} is not under this wallet's m/{purpose}'/{coin}'/0' account"
            )));
        }
        Ok(Some(path.clone()))
    }

    fn sign_p2wpkh(
        &self,
        index: usize,
        cache: &mut SighashCache<&Transaction>,
        input: &mut Input,
    ) -> Result<bool, SignError> {
        let refuse = |reason: &str| SignError::Refused {
            input: index,
            reason: reason.to_owned(),
        };
        let mut signed = false;
        let origins: Vec<_> = input
            .bip32_derivation
            .iter()
            .map(|(k, s)| (*k, s.clone()))
            .collect();
        for (stated, source) in origins {
            let Some(path) = self.owned_path(index, BtcAddressKind::P2wpkh, &source)? else {
                continue;
            };
            let utxo = input
                .witness_utxo
                .as_ref()
                .ok_or_else(|| refuse("no witness_utxo: the spent amount is unknown"))?;
            if input
                .sighash_type
                .is_some_and(|t| t.ecdsa_hash_ty().ok() != Some(EcdsaSighashType::All))
            {
                return Err(refuse("only SIGHASH_ALL is signed"));
            }
            let mut xprv = self.keys.derive_priv(&path)?;
            let secp = bitcoin::secp256k1::Secp256k1::signing_only();
            let sk = xprv.private_key;
            wipe(&mut xprv);
            let pk = CompressedPublicKey(sk.public_key(&secp));
            if pk.0 != stated {
                return Err(refuse("the stated public key is not the one at its path"));
            }
            if utxo.script_pubkey != ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()) {
                return Err(refuse("the spent output does not pay to this key"));
            }
            let sighash = cache
                .p2wpkh_signature_hash(
                    index,
                    &utxo.script_pubkey,
                    utxo.value,
                    EcdsaSighashType::All,
                )
                .map_err(|e| SignError::Sighash(e.to_string()))?;
            let msg = Message::from(sighash);
            let signature = secp.sign_ecdsa(&msg, &sk);
            input.partial_sigs.insert(
                PublicKey::new(pk.0),
                bitcoin::ecdsa::Signature {
                    signature,
                    sighash_type: EcdsaSighashType::All,
                },
            );
            signed = true;
        }
        Ok(signed)
    }

    fn sign_p2tr(
        &self,
        index: usize,
        cache: &mut SighashCache<&Transaction>,
        prevouts: &Option<Vec<TxOut>>,
        input: &mut Input,
    ) -> Result<bool, SignError> {
        let refuse = |reason: &str| SignError::Refused {
            input: index,
            reason: reason.to_owned(),
        };
        let mut signed = false;
        let origins: Vec<_> = input
            .tap_key_origins
            .iter()
            .map(|(k, (leaves, s))| (*k, leaves.is_empty(), s.clone()))
            .collect();
        for (stated, key_path, source) in origins {
            let Some(path) = self.owned_path(index, BtcAddressKind::P2tr, &source)? else {
                continue;
            };
            if !key_path || input.tap_internal_key != Some(stated) {
                return Err(refuse("only taproot key-path spends are signed"));
            }
            if input.tap_merkle_root.is_some() {
                return Err(refuse("outputs with a script tree are not signed"));
            }
            if input
                .sighash_type
                .is_some_and(|t| t.taproot_hash_ty().ok() != Some(TapSighashType::Default))
            {
                return Err(refuse("only the default taproot sighash is signed"));
            }
            let utxo = input
                .witness_utxo
                .as_ref()
                .ok_or_else(|| refuse("no witness_utxo: the spent amount is unknown"))?;
            let prevouts = prevouts
                .as_ref()
                .ok_or_else(|| refuse("taproot needs the witness_utxo of every input"))?;
            let secp = bitcoin::secp256k1::Secp256k1::new();
            let mut xprv = self.keys.derive_priv(&path)?;
            let keypair = Keypair::from_secret_key(&secp, &xprv.private_key);
            wipe(&mut xprv);
            if keypair.x_only_public_key().0 != stated {
                return Err(refuse("the stated public key is not the one at its path"));
            }
            if utxo.script_pubkey != ScriptBuf::new_p2tr(&secp, stated, None) {
                return Err(refuse("the spent output does not pay to this key"));
            }
            let sighash = cache
                .taproot_key_spend_signature_hash(
                    index,
                    &Prevouts::All(prevouts),
                    TapSighashType::Default,
                )
                .map_err(|e| SignError::Sighash(e.to_string()))?;
            let tweaked = keypair.tap_tweak(&secp, None).to_keypair();
            let signature = secp.sign_schnorr(&Message::from(sighash), &tweaked);
            input.tap_key_sig = Some(bitcoin::taproot::Signature {
                signature,
                sighash_type: TapSighashType::Default,
            });
            signed = true;
        }
        Ok(signed)
    }
}

impl Signer for LocalSigner {
    fn fingerprint(&self) -> Fingerprint {
        self.keys.fingerprint()
    }

    fn sign_psbt(&self, psbt: &mut Psbt) -> Result<Vec<usize>, SignError> {
        let tx = psbt.unsigned_tx.clone();
        let prevouts: Option<Vec<TxOut>> =
            psbt.inputs.iter().map(|i| i.witness_utxo.clone()).collect();
        let mut cache = SighashCache::new(&tx);
        let mut signed = Vec::new();
        for (index, input) in psbt.inputs.iter_mut().enumerate() {
            let mut ours = self.sign_p2wpkh(index, &mut cache, input)?;
            ours |= self.sign_p2tr(index, &mut cache, &prevouts, input)?;
            if ours {
                signed.push(index);
            }
        }
        Ok(signed)
    }

    fn sign_eip1559(&self, account: u32, tx: TxEip1559) -> Result<SignedTx, SignError> {
        let signer = self.keys.eth_signer(account)?;
        let signature = signer
            .sign_hash_sync(&tx.signature_hash())
            .map_err(|e| SignError::Ethereum(e.to_string()))?;
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        Ok(SignedTx {
            txid: format!("{:#x}", envelope.tx_hash()),
            raw: envelope.encoded_2718(),
        })
    }
}

/// One output of ours a PSBT spends: where it is and which key pays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedInput {
    pub outpoint: bitcoin::OutPoint,
    pub txout: TxOut,
    pub kind: BtcAddressKind,
    /// 0 external (deposits), 1 internal (change).
    pub chain: u32,
    pub index: u32,
}

/// Fills the PSBT fields a signer needs for inputs of ours (witness UTXO,
/// key origins), from public data only: the master fingerprint and the
/// account xpubs. `psbt.inputs[i]` describes `owned[i]` by outpoint.
pub fn describe_inputs(
    psbt: &mut Psbt,
    fingerprint: Fingerprint,
    accounts: &DepositAccounts,
    owned: &[OwnedInput],
) -> Result<(), SignError> {
    let coin = u32::from(accounts.network() != bitcoin::Network::Bitcoin);
    for own in owned {
        let position = psbt
            .unsigned_tx
            .input
            .iter()
            .position(|i| i.previous_output == own.outpoint)
            .ok_or(SignError::NotSpent(own.outpoint))?;
        let refuse = |reason: String| SignError::Refused {
            input: position,
            reason,
        };
        let pk = accounts
            .btc_public_key_at(own.kind, own.chain, own.index)
            .map_err(|e| refuse(e.to_string()))?;
        let purpose = match own.kind {
            BtcAddressKind::P2wpkh => 84,
            BtcAddressKind::P2tr => 86,
        };
        let path = DerivationPath::from_str(&format!(
            "m/{purpose}'/{coin}'/0'/{}/{}",
            own.chain, own.index
        ))
        .map_err(|e| refuse(e.to_string()))?;
        let input = &mut psbt.inputs[position];
        input.witness_utxo = Some(own.txout.clone());
        match own.kind {
            BtcAddressKind::P2wpkh => {
                input.bip32_derivation.insert(pk.0, (fingerprint, path));
            }
            BtcAddressKind::P2tr => {
                let (xonly, _) = pk.0.x_only_public_key();
                input.tap_internal_key = Some(xonly);
                input
                    .tap_key_origins
                    .insert(xonly, (Vec::new(), (fingerprint, path)));
            }
        }
    }
    Ok(())
}

/// The PSBT as BIP174 base64, for an offline signer.
pub fn export_psbt(psbt: &Psbt) -> String {
    psbt.to_string()
}

/// Parses a base64 PSBT.
pub fn import_psbt(base64: &str) -> Result<Psbt, SignError> {
    Psbt::from_str(base64.trim()).map_err(|e| SignError::BadPsbt(e.to_string()))
}

/// Takes back a PSBT signed offline: it must be for the same transaction as
/// `exported`; the signatures are combined into `exported` (BIP174 combiner).
pub fn import_signed_psbt(exported: &mut Psbt, signed_base64: &str) -> Result<(), SignError> {
    let signed = import_psbt(signed_base64)?;
    let expected = exported.unsigned_tx.compute_txid();
    let got = signed.unsigned_tx.compute_txid();
    if expected != got {
        return Err(SignError::DifferentTransaction {
            expected: expected.to_string(),
            got: got.to_string(),
        });
    }
    exported
        .combine(signed)
        .map_err(|e| SignError::Combine(e.to_string()))
}

/// Finalizes every input (P2WPKH: signature and key; P2TR key path: the
/// signature), clears the signing fields as BIP174 says, and extracts the
/// transaction (refusing an absurd fee rate).
pub fn finalize(mut psbt: Psbt) -> Result<Transaction, SignError> {
    for (index, input) in psbt.inputs.iter_mut().enumerate() {
        if input.final_script_witness.is_some() {
            continue;
        }
        let spk = input
            .witness_utxo
            .as_ref()
            .map(|u| u.script_pubkey.clone())
            .ok_or(SignError::Unsigned { input: index })?;
        let witness = if spk.is_p2wpkh() {
            input
                .partial_sigs
                .iter()
                .find(|(pk, _)| {
                    CompressedPublicKey::try_from(**pk)
                        .is_ok_and(|c| ScriptBuf::new_p2wpkh(&c.wpubkey_hash()) == spk)
                })
                .map(|(pk, sig)| Witness::p2wpkh(sig, &pk.inner))
        } else if spk.is_p2tr() {
            input.tap_key_sig.map(|sig| Witness::p2tr_key_spend(&sig))
        } else {
            None
        };
        let witness = witness.ok_or(SignError::Unsigned { input: index })?;
        let utxo = input.witness_utxo.take();
        let unknown = std::mem::take(&mut input.unknown);
        let proprietary = std::mem::take(&mut input.proprietary);
        *input = Input {
            witness_utxo: utxo,
            final_script_witness: Some(witness),
            unknown,
            proprietary,
            ..Input::default()
        };
    }
    psbt.extract_tx()
        .map_err(|e| SignError::Extract(e.to_string()))
}

#[cfg(test)]
mod tests;
