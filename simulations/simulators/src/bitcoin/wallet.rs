//! The node's faucet wallet: BIP32 keys (BIP84 paths, P2WPKH), coin
//! selection over the chain's UTXO set and mempool, and signing of real
//! transactions. Pure: it reads a [`Chain`] and returns transactions.

use std::collections::HashMap;
use std::str::FromStr;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Witness,
};

use super::chain::{fee_for, Chain};
use super::verify::secp;

/// Why the wallet could not build a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// Not enough spendable coins.
    #[error("Insufficient funds")]
    InsufficientFunds,
    /// The amount is zero or would leave a dust output.
    #[error("Transaction amount too small")]
    AmountTooSmall,
    /// The fee would consume the whole amount (with subtract-fee-from-amount).
    #[error("The transaction amount is too small to pay the fee")]
    AmountTooSmallForFee,
    /// The transaction to replace is not in the mempool.
    #[error("Transaction {0} is not in the mempool")]
    NotInMempool(bitcoin::Txid),
    /// The transaction to replace spends coins the wallet does not own.
    #[error("Transaction {0} spends coins this wallet does not own")]
    NotOwned(bitcoin::Txid),
    /// A fee bump needs a change output to take the fee from.
    #[error("Transaction {0} has no change output large enough to pay a higher fee")]
    NoChange(bitcoin::Txid),
}

/// A coin the wallet can spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletCoin {
    /// Where it is.
    pub outpoint: OutPoint,
    /// The output.
    pub txout: TxOut,
    /// Confirmations (0 = in the mempool).
    pub confirmations: u32,
    /// Derivation index of the key that owns it.
    pub key_index: u32,
}

/// Virtual size of one signed P2WPKH input, rounded up (Core's estimate).
const P2WPKH_INPUT_VBYTES: u64 = 68;
/// Version, counts, locktime and segwit marker, rounded up.
const TX_OVERHEAD_VBYTES: u64 = 11;

/// The faucet wallet.
#[derive(Debug, Clone)]
pub struct Wallet {
    master: Xpriv,
    next_index: u32,
    scripts: HashMap<ScriptBuf, u32>,
}

impl Wallet {
    /// A wallet from a BIP32 master key with `next_index` addresses handed out.
    pub fn new(master: Xpriv, next_index: u32) -> Self {
        let mut w = Wallet {
            master,
            next_index: 0,
            scripts: HashMap::new(),
        };
        // Index 0 is the mining address and always exists.
        w.next_index = next_index.max(1);
        for i in 0..w.next_index {
            let spk = w.script(i);
            w.scripts.insert(spk, i);
        }
        w
    }

    /// A fresh random wallet.
    pub fn random() -> Self {
        let seed: [u8; 32] = rand::random();
        let master = Xpriv::new_master(Network::Regtest, &seed).unwrap_or_else(|_| {
            // Only fails for a seed that is an invalid scalar (probability ~2^-128).
            Xpriv::new_master(Network::Regtest, &[1u8; 32]).expect("constant seed is valid")
        });
        Wallet::new(master, 1)
    }

    /// The master key (persisted by the node).
    pub fn master(&self) -> &Xpriv {
        &self.master
    }

    /// How many receive addresses have been handed out.
    pub fn next_index(&self) -> u32 {
        self.next_index
    }

    fn path(index: u32) -> DerivationPath {
        // m/84'/1'/0'/0/index
        let s = format!("m/84'/1'/0'/0/{index}");
        DerivationPath::from_str(&s)
            .unwrap_or_else(|_| DerivationPath::from(vec![ChildNumber::Normal { index: 0 }]))
    }

    fn secret(&self, index: u32) -> SecretKey {
        self.master
            .derive_priv(secp(), &Self::path(index))
            .map(|x| x.private_key)
            .unwrap_or_else(|_| self.master.private_key)
    }

    fn pubkey(&self, index: u32) -> CompressedPublicKey {
        CompressedPublicKey(self.secret(index).public_key(secp()))
    }

    fn script(&self, index: u32) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.pubkey(index).wpubkey_hash())
    }

    /// The address at derivation index `index`.
    pub fn address(&self, index: u32) -> Address {
        Address::p2wpkh(&self.pubkey(index), Network::Regtest)
    }

    /// The mining (and change) address, index 0.
    pub fn mining_address(&self) -> Address {
        self.address(0)
    }

    /// Hands out a new receive address.
    pub fn new_address(&mut self) -> Address {
        let i = self.next_index;
        self.next_index += 1;
        self.scripts.insert(self.script(i), i);
        self.address(i)
    }

    /// The derivation index owning `spk`, if it is the wallet's.
    pub fn owns(&self, spk: &ScriptBuf) -> Option<u32> {
        self.scripts.get(spk).copied()
    }

    /// Coins the wallet can spend now: mature confirmed outputs not spent in
    /// the mempool, plus unconfirmed outputs of its own mempool transactions.
    pub fn coins(&self, chain: &Chain, include_unconfirmed: bool) -> Vec<WalletCoin> {
        // Core's wallet counts a coinbase as mature one block later than
        // consensus does (depth > COINBASE_MATURITY).
        let maturity = chain.params().coinbase_maturity;
        let mut out: Vec<WalletCoin> = chain
            .utxos()
            .filter_map(|(op, coin)| {
                let key_index = self.owns(&coin.txout.script_pubkey)?;
                if coin.is_coinbase && chain.height() - coin.height < maturity {
                    return None;
                }
                if chain.mempool_spender(op).is_some() {
                    return None;
                }
                Some(WalletCoin {
                    outpoint: *op,
                    txout: coin.txout.clone(),
                    confirmations: chain.height() - coin.height + 1,
                    key_index,
                })
            })
            .collect();
        if include_unconfirmed {
            for e in chain.mempool_in_order() {
                let own = e.tx.input.iter().all(|i| {
                    chain
                        .lookup_output(&i.previous_output)
                        .is_some_and(|o| self.owns(&o.script_pubkey).is_some())
                });
                let txid = e.tx.compute_txid();
                for (vout, o) in e.tx.output.iter().enumerate() {
                    let op = OutPoint::new(txid, vout as u32);
                    let Some(key_index) = self.owns(&o.script_pubkey) else {
                        continue;
                    };
                    if !own || chain.mempool_spender(&op).is_some() {
                        continue;
                    }
                    out.push(WalletCoin {
                        outpoint: op,
                        txout: o.clone(),
                        confirmations: 0,
                        key_index,
                    });
                }
            }
        }
        // Deterministic order: confirmed before unconfirmed, larger first.
        out.sort_by(|a, b| {
            (b.confirmations > 0)
                .cmp(&(a.confirmations > 0))
                .then(b.txout.value.cmp(&a.txout.value))
                .then(a.outpoint.cmp(&b.outpoint))
        });
        out
    }

    /// Spendable balance (mature confirmed plus own unconfirmed change).
    pub fn balance(&self, chain: &Chain) -> Amount {
        self.coins(chain, true).iter().map(|c| c.txout.value).sum()
    }

    /// Builds and signs a payment of `amount` to `to`, with change back to
    /// the wallet, BIP125 signalled, at `sat_per_vb`.
    pub fn build_payment(
        &self,
        chain: &Chain,
        to: &ScriptBuf,
        amount: Amount,
        sat_per_vb: u64,
        subtract_fee: bool,
    ) -> Result<Transaction, WalletError> {
        self.build_payment_with(chain, to, amount, sat_per_vb, subtract_fee, true)
    }

    /// [`Wallet::build_payment`] choosing whether inputs signal BIP125.
    pub fn build_payment_with(
        &self,
        chain: &Chain,
        to: &ScriptBuf,
        amount: Amount,
        sat_per_vb: u64,
        subtract_fee: bool,
        signal_rbf: bool,
    ) -> Result<Transaction, WalletError> {
        let dust = to.minimal_non_dust();
        if amount == Amount::ZERO || amount < dust {
            return Err(WalletError::AmountTooSmall);
        }
        let change_spk = self.script(0);
        let out_vbytes = |spk: &ScriptBuf| 9 + spk.len() as u64;
        let base = TX_OVERHEAD_VBYTES + out_vbytes(to) + out_vbytes(&change_spk);
        let coins = self.coins(chain, true);
        let mut selected = Vec::new();
        let mut total = 0u64;
        let mut fee = 0u64;
        let rate = sat_per_vb.max(1).saturating_mul(1000);
        let mut enough = false;
        for c in coins {
            total += c.txout.value.to_sat();
            selected.push(c);
            fee = fee_for(rate, base + P2WPKH_INPUT_VBYTES * selected.len() as u64);
            let needed = if subtract_fee {
                amount.to_sat()
            } else {
                amount.to_sat() + fee
            };
            if total >= needed {
                enough = true;
                break;
            }
        }
        if !enough {
            return Err(WalletError::InsufficientFunds);
        }
        let pay = if subtract_fee {
            amount
                .to_sat()
                .checked_sub(fee)
                .filter(|p| *p >= dust.to_sat())
                .ok_or(WalletError::AmountTooSmallForFee)?
        } else {
            amount.to_sat()
        };
        let change = total - pay - fee;
        let mut output = vec![TxOut {
            value: Amount::from_sat(pay),
            script_pubkey: to.clone(),
        }];
        if change >= change_spk.minimal_non_dust().to_sat() {
            output.push(TxOut {
                value: Amount::from_sat(change),
                script_pubkey: change_spk,
            });
        }
        let mut tx = Transaction {
            version: Version::TWO,
            // Anti fee sniping, as Core's wallet does.
            lock_time: LockTime::from_height(chain.height()).unwrap_or(LockTime::ZERO),
            input: selected
                .iter()
                .map(|c| TxIn {
                    previous_output: c.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: if signal_rbf {
                        Sequence::ENABLE_RBF_NO_LOCKTIME
                    } else {
                        Sequence::ENABLE_LOCKTIME_NO_RBF
                    },
                    witness: Witness::new(),
                })
                .collect(),
            output,
        };
        self.sign(&mut tx, &selected);
        Ok(tx)
    }

    /// The wallet's coins spent by a mempool transaction, in input order.
    fn spent_coins(
        &self,
        chain: &Chain,
        txid: &bitcoin::Txid,
    ) -> Result<(Transaction, Amount, Vec<WalletCoin>), WalletError> {
        let entry = chain
            .mempool_entry(txid)
            .ok_or(WalletError::NotInMempool(*txid))?;
        let mut coins = Vec::with_capacity(entry.tx.input.len());
        for input in &entry.tx.input {
            let txout = chain
                .lookup_output(&input.previous_output)
                .ok_or(WalletError::NotOwned(*txid))?;
            let key_index = self
                .owns(&txout.script_pubkey)
                .ok_or(WalletError::NotOwned(*txid))?;
            coins.push(WalletCoin {
                outpoint: input.previous_output,
                txout,
                confirmations: 0,
                key_index,
            });
        }
        Ok((entry.tx.clone(), entry.fee, coins))
    }

    /// `bumpfee`: the same payment with a higher fee taken from the change
    /// output, paying at least `sat_per_vb` and enough to replace the original
    /// under BIP125. Returns the replacement and its fee.
    pub fn bump_fee(
        &self,
        chain: &Chain,
        txid: &bitcoin::Txid,
        sat_per_vb: Option<u64>,
    ) -> Result<(Transaction, Amount), WalletError> {
        let (original, old_fee, coins) = self.spent_coins(chain, txid)?;
        let vsize = original.vsize() as u64;
        let incremental = chain.params().incremental_relay_sat_per_kvb;
        let mut new_fee = old_fee.to_sat() + fee_for(incremental, vsize);
        if let Some(rate) = sat_per_vb {
            new_fee = new_fee.max(rate.saturating_mul(vsize));
        }
        let delta = new_fee - old_fee.to_sat();
        let change_spk = self.script(0);
        let mut tx = original.clone();
        let change = tx
            .output
            .iter_mut()
            .find(|o| o.script_pubkey == change_spk)
            .ok_or(WalletError::NoChange(*txid))?;
        let left = change
            .value
            .to_sat()
            .checked_sub(delta)
            .filter(|v| *v >= change_spk.minimal_non_dust().to_sat());
        change.value = Amount::from_sat(left.ok_or(WalletError::NoChange(*txid))?);
        for input in &mut tx.input {
            input.sequence = Sequence::ENABLE_RBF_NO_LOCKTIME;
        }
        self.sign(&mut tx, &coins);
        Ok((tx, Amount::from_sat(new_fee)))
    }

    /// A double spend of a mempool transaction: the same coins, all sent to
    /// `to`, with a fee high enough to replace it.
    pub fn double_spend(
        &self,
        chain: &Chain,
        txid: &bitcoin::Txid,
        to: &ScriptBuf,
    ) -> Result<Transaction, WalletError> {
        let (original, old_fee, coins) = self.spent_coins(chain, txid)?;
        let total: u64 = coins.iter().map(|c| c.txout.value.to_sat()).sum();
        let vsize =
            TX_OVERHEAD_VBYTES + P2WPKH_INPUT_VBYTES * coins.len() as u64 + 9 + to.len() as u64;
        let fee = 2 * old_fee.to_sat() + 2 * vsize.max(original.vsize() as u64);
        let value = total
            .checked_sub(fee)
            .filter(|v| *v >= to.minimal_non_dust().to_sat())
            .ok_or(WalletError::InsufficientFunds)?;
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: coins
                .iter()
                .map(|c| TxIn {
                    previous_output: c.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: vec![TxOut {
                value: Amount::from_sat(value),
                script_pubkey: to.clone(),
            }],
        };
        self.sign(&mut tx, &coins);
        Ok(tx)
    }

    fn sign(&self, tx: &mut Transaction, coins: &[WalletCoin]) {
        let mut witnesses = Vec::with_capacity(coins.len());
        {
            let mut cache = SighashCache::new(&*tx);
            for (i, c) in coins.iter().enumerate() {
                let sk = self.secret(c.key_index);
                let Ok(hash) = cache.p2wpkh_signature_hash(
                    i,
                    &c.txout.script_pubkey,
                    c.txout.value,
                    EcdsaSighashType::All,
                ) else {
                    witnesses.push(Witness::new());
                    continue;
                };
                let sig = secp().sign_ecdsa(&Message::from_digest(hash.to_byte_array()), &sk);
                let sig = bitcoin::ecdsa::Signature {
                    signature: sig,
                    sighash_type: EcdsaSighashType::All,
                };
                witnesses.push(Witness::p2wpkh(&sig, &sk.public_key(secp())));
            }
        }
        for (input, w) in tx.input.iter_mut().zip(witnesses) {
            input.witness = w;
        }
    }
}
