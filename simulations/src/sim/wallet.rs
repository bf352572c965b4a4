//! A simulated user's own Bitcoin key (BIP84, one receive and one change
//! address), for the hardware-wallet and double-spend scenarios: it signs
//! PSBTs the engine builds and its own conflicting transactions.

use std::str::FromStr;

use anyhow::{anyhow, Context};
use base64::Engine as _;
use bitcoin::bip32::{DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{All, Secp256k1};
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, Sequence, Transaction, TxOut, Witness,
};

pub const RECEIVE_PATH: &str = "m/84'/1'/0'/0/0";
pub const CHANGE_PATH: &str = "m/84'/1'/0'/1/0";

/// The user's hardware wallet, from 32 seeded bytes.
pub struct UserWallet {
    secp: Secp256k1<All>,
    master: Xpriv,
    pub fingerprint: Fingerprint,
    pub receive: Address,
    pub receive_pubkey: String,
    pub change: Address,
    pub change_pubkey: String,
}

impl std::fmt::Debug for UserWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserWallet")
            .field("receive", &self.receive)
            .finish_non_exhaustive()
    }
}

impl UserWallet {
    pub fn from_seed(seed: [u8; 32]) -> anyhow::Result<Self> {
        let secp = Secp256k1::new();
        let master = Xpriv::new_master(Network::Regtest, &seed)?;
        let fingerprint = master.fingerprint(&secp);
        let key_at = |path: &str| -> anyhow::Result<(Address, String)> {
            let path = DerivationPath::from_str(path)?;
            let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path)?);
            let pk = CompressedPublicKey(xpub.public_key);
            Ok((
                Address::p2wpkh(&pk, Network::Regtest),
                hex::encode(pk.to_bytes()),
            ))
        };
        let (receive, receive_pubkey) = key_at(RECEIVE_PATH)?;
        let (change, change_pubkey) = key_at(CHANGE_PATH)?;
        Ok(UserWallet {
            secp,
            master,
            fingerprint,
            receive,
            receive_pubkey,
            change,
            change_pubkey,
        })
    }

    /// Signs every input the PSBT's key origins say are ours and finalizes
    /// them (P2WPKH witness: signature, public key).
    pub fn sign_and_finalize(&self, mut psbt: Psbt) -> anyhow::Result<Transaction> {
        psbt.sign(&self.master, &self.secp)
            .map_err(|(_, errs)| anyhow!("signing the PSBT failed: {errs:?}"))?;
        for input in psbt.inputs.iter_mut() {
            let (pk, sig) = input
                .partial_sigs
                .iter()
                .next()
                .map(|(pk, sig)| (*pk, *sig))
                .ok_or_else(|| anyhow!("an input of the PSBT is not ours to sign"))?;
            input.final_script_witness = Some(Witness::from_slice(&[sig.to_vec(), pk.to_bytes()]));
            input.partial_sigs.clear();
            input.bip32_derivation.clear();
        }
        psbt.extract_tx()
            .context("extracting the signed transaction")
    }

    /// A replacement (BIP125) of the transaction `psbt` describes, paying
    /// `extra_fee_sats` more fee out of our change: the same deposit, a
    /// different txid.
    pub fn bumped(&self, psbt: &Psbt, extra_fee_sats: u64) -> anyhow::Result<Transaction> {
        let mut tx = psbt.unsigned_tx.clone();
        let change = self.change.script_pubkey();
        let out = tx
            .output
            .iter_mut()
            .find(|o| o.script_pubkey == change)
            .ok_or_else(|| {
                anyhow!("the deposit transaction has no change to pay a higher fee from")
            })?;
        out.value = out
            .value
            .checked_sub(Amount::from_sat(extra_fee_sats))
            .ok_or_else(|| anyhow!("change cannot pay the higher fee"))?;
        self.resign(psbt, tx)
    }

    fn resign(&self, psbt: &Psbt, tx: Transaction) -> anyhow::Result<Transaction> {
        let mut own = Psbt::from_unsigned_tx(tx)?;
        for (mine, theirs) in own.inputs.iter_mut().zip(psbt.inputs.iter()) {
            mine.witness_utxo = theirs.witness_utxo.clone();
            mine.non_witness_utxo = theirs.non_witness_utxo.clone();
            mine.bip32_derivation = theirs.bip32_derivation.clone();
        }
        self.sign_and_finalize(own)
    }

    /// A transaction spending the same inputs as `psbt` back to our change
    /// address with `extra_fee` sats more fee: a double-spend of the deposit
    /// it pays (BIP125: the original signals replacement).
    pub fn conflicting(&self, psbt: &Psbt, extra_fee_sats: u64) -> anyhow::Result<Transaction> {
        let fee = psbt.fee().context("fee of the original")?;
        let total_in: u64 = psbt
            .inputs
            .iter()
            .map(|i| i.witness_utxo.as_ref().map_or(0, |o| o.value.to_sat()))
            .sum();
        let value = total_in
            .checked_sub(fee.to_sat() + extra_fee_sats)
            .ok_or_else(|| anyhow!("inputs cannot pay the higher fee"))?;
        let mut tx = psbt.unsigned_tx.clone();
        for i in tx.input.iter_mut() {
            i.sequence = Sequence::ENABLE_RBF_NO_LOCKTIME;
        }
        tx.output = vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: self.change.script_pubkey(),
        }];
        self.resign(psbt, tx)
    }
}

/// Decodes the engine's base64 PSBT.
pub fn decode_psbt(b64: &str) -> anyhow::Result<Psbt> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("PSBT is not base64")?;
    Psbt::deserialize(&bytes).context("PSBT does not decode")
}

pub fn raw_hex(tx: &Transaction) -> String {
    hex::encode(bitcoin::consensus::serialize(tx))
}
