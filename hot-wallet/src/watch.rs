//! Watch-only deposit derivation: deposit addresses from account xpubs, with
//! no private key in memory.
//!
//! - Bitcoin P2WPKH (BIP84): account `m/84'/coin'/0'`, address `…/0/index`.
//! - Bitcoin P2TR key path only (BIP86): account `m/86'/coin'/0'`, address
//!   `…/0/index`, output key tweaked with no script tree.
//! - Ethereum EOAs (BIP44, coin 60): chain `m/44'/60'/0'/0`; index 0 is the
//!   hot account, per-swap deposit accounts start at 1.
//!
//! The external chain (`…/0`) of each account is derived once, so a fresh
//! address costs one public child derivation (CKDpub) plus its encoding.

use std::fmt;
use std::str::FromStr;

use alloy_primitives::Address as EthAddress;
use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use bitcoin::{Address, CompressedPublicKey};

/// Errors of watch-only derivation.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("invalid extended public key for {account}: {reason}")]
    BadXpub {
        account: &'static str,
        reason: String,
    },
    #[error("derivation index {0} is out of range (must be below 2^31 for public derivation)")]
    IndexOutOfRange(u32),
    #[error("public key derivation failed: {0}")]
    Derivation(#[from] bitcoin::bip32::Error),
}

/// Bitcoin deposit address kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BtcAddressKind {
    /// Native SegWit v0 single key (BIP84).
    P2wpkh,
    /// Taproot key path (BIP86).
    P2tr,
}

/// The account xpubs deposit addresses derive from. Public data only.
#[derive(Clone)]
pub struct DepositAccounts {
    secp: Secp256k1<VerifyOnly>,
    network: bitcoin::Network,
    p2wpkh_account: Xpub,
    p2tr_account: Xpub,
    eth_chain: Xpub,
    p2wpkh_external: Xpub,
    p2tr_external: Xpub,
}

impl fmt::Debug for DepositAccounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DepositAccounts")
            .field("network", &self.network)
            .field("p2wpkh_account", &self.p2wpkh_account.to_string())
            .field("p2tr_account", &self.p2tr_account.to_string())
            .field("eth_chain", &self.eth_chain.to_string())
            .finish()
    }
}

fn parse_xpub(account: &'static str, s: &str) -> Result<Xpub, WatchError> {
    Xpub::from_str(s.trim()).map_err(|e| WatchError::BadXpub {
        account,
        reason: e.to_string(),
    })
}

fn normal(index: u32) -> Result<ChildNumber, WatchError> {
    ChildNumber::from_normal_idx(index).map_err(|_| WatchError::IndexOutOfRange(index))
}

impl DepositAccounts {
    /// From the three account xpubs: BIP84 account, BIP86 account, and the
    /// Ethereum external chain `m/44'/60'/0'/0`.
    pub fn new(
        network: bitcoin::Network,
        p2wpkh_account: Xpub,
        p2tr_account: Xpub,
        eth_chain: Xpub,
    ) -> Result<Self, WatchError> {
        let secp = Secp256k1::verification_only();
        let p2wpkh_external = p2wpkh_account.derive_pub(&secp, &[normal(0)?])?;
        let p2tr_external = p2tr_account.derive_pub(&secp, &[normal(0)?])?;
        Ok(DepositAccounts {
            secp,
            network,
            p2wpkh_account,
            p2tr_account,
            eth_chain,
            p2wpkh_external,
            p2tr_external,
        })
    }

    /// From base58 xpub strings (a watch-only worker's configuration).
    pub fn from_xpubs(
        network: bitcoin::Network,
        p2wpkh_account: &str,
        p2tr_account: &str,
        eth_chain: &str,
    ) -> Result<Self, WatchError> {
        Self::new(
            network,
            parse_xpub("BIP84 account", p2wpkh_account)?,
            parse_xpub("BIP86 account", p2tr_account)?,
            parse_xpub("Ethereum chain", eth_chain)?,
        )
    }

    pub fn network(&self) -> bitcoin::Network {
        self.network
    }

    /// The BIP84 account xpub (`m/84'/coin'/0'`).
    pub fn p2wpkh_account(&self) -> &Xpub {
        &self.p2wpkh_account
    }

    /// The BIP86 account xpub (`m/86'/coin'/0'`).
    pub fn p2tr_account(&self) -> &Xpub {
        &self.p2tr_account
    }

    /// The Ethereum chain xpub (`m/44'/60'/0'/0`).
    pub fn eth_chain(&self) -> &Xpub {
        &self.eth_chain
    }

    /// The public key at external index `index` of the given account.
    pub fn btc_public_key(
        &self,
        kind: BtcAddressKind,
        index: u32,
    ) -> Result<CompressedPublicKey, WatchError> {
        let chain = match kind {
            BtcAddressKind::P2wpkh => &self.p2wpkh_external,
            BtcAddressKind::P2tr => &self.p2tr_external,
        };
        Ok(chain.derive_pub(&self.secp, &[normal(index)?])?.to_pub())
    }

    /// The public key at `…/chain/index` of the given account (chain 0
    /// external, 1 internal).
    pub fn btc_public_key_at(
        &self,
        kind: BtcAddressKind,
        chain: u32,
        index: u32,
    ) -> Result<CompressedPublicKey, WatchError> {
        if chain == 0 {
            return self.btc_public_key(kind, index);
        }
        let account = match kind {
            BtcAddressKind::P2wpkh => &self.p2wpkh_account,
            BtcAddressKind::P2tr => &self.p2tr_account,
        };
        Ok(account
            .derive_pub(&self.secp, &[normal(chain)?, normal(index)?])?
            .to_pub())
    }

    /// The Bitcoin address at `…/chain/index` of the given account.
    pub fn btc_address_at(
        &self,
        kind: BtcAddressKind,
        chain: u32,
        index: u32,
    ) -> Result<Address, WatchError> {
        let pk = self.btc_public_key_at(kind, chain, index)?;
        Ok(match kind {
            BtcAddressKind::P2wpkh => Address::p2wpkh(&pk, self.network),
            BtcAddressKind::P2tr => Address::p2tr(&self.secp, pk.0.into(), None, self.network),
        })
    }

    /// The Bitcoin address at external index `index` (`…/0/index`).
    pub fn btc_address(&self, kind: BtcAddressKind, index: u32) -> Result<Address, WatchError> {
        let pk = self.btc_public_key(kind, index)?;
        Ok(match kind {
            BtcAddressKind::P2wpkh => Address::p2wpkh(&pk, self.network),
            BtcAddressKind::P2tr => Address::p2tr(&self.secp, pk.0.into(), None, self.network),
        })
    }

    /// The Ethereum account at `m/44'/60'/0'/0/index` (index 0 is the hot account).
    pub fn eth_address(&self, index: u32) -> Result<EthAddress, WatchError> {
        let child = self.eth_chain.derive_pub(&self.secp, &[normal(index)?])?;
        let uncompressed = child.public_key.serialize_uncompressed();
        Ok(EthAddress::from_raw_public_key(&uncompressed[1..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;
    use proto::BitcoinNetwork;

    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    fn accounts() -> DepositAccounts {
        let k = Keyring::from_mnemonic(PHRASE, BitcoinNetwork::Mainnet).unwrap();
        // Rebuilt from strings only: nothing secret crosses over.
        let a = k.deposit_accounts();
        DepositAccounts::from_xpubs(
            bitcoin::Network::Bitcoin,
            &a.p2wpkh_account().to_string(),
            &a.p2tr_account().to_string(),
            &a.eth_chain().to_string(),
        )
        .unwrap()
    }

    #[test]
    fn bip84_vectors() {
        let a = accounts();
        assert_eq!(
            a.p2wpkh_account().to_string(),
            "xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V"
        );
        for (index, want) in [
            (0, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"),
            (1, "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"),
        ] {
            assert_eq!(
                a.btc_address(BtcAddressKind::P2wpkh, index)
                    .unwrap()
                    .to_string(),
                want
            );
        }
    }

    #[test]
    fn bip86_vectors() {
        let a = accounts();
        assert_eq!(
            a.p2tr_account().to_string(),
            "xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ"
        );
        let first = a.btc_address(BtcAddressKind::P2tr, 0).unwrap();
        assert_eq!(
            first.to_string(),
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
        );
        assert_eq!(
            hex::encode(first.script_pubkey().as_bytes()),
            "5120a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
        );
        assert_eq!(
            a.btc_address(BtcAddressKind::P2tr, 1).unwrap().to_string(),
            "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh"
        );
    }

    #[test]
    fn ethereum_watch_only_matches_the_signing_key() {
        let a = accounts();
        assert_eq!(
            a.eth_address(0).unwrap().to_checksum(None),
            "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
        );
        let k = Keyring::from_mnemonic(PHRASE, BitcoinNetwork::Mainnet).unwrap();
        for i in [1, 2, 77] {
            assert_eq!(
                a.eth_address(i).unwrap(),
                k.eth_signer(i).unwrap().address()
            );
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            DepositAccounts::from_xpubs(bitcoin::Network::Bitcoin, "xpubnope", "x", "y"),
            Err(WatchError::BadXpub { .. })
        ));
        assert!(matches!(
            accounts().btc_address(BtcAddressKind::P2wpkh, 0x8000_0000),
            Err(WatchError::IndexOutOfRange(_))
        ));
    }
}
