//! The hot wallet's keys: one BIP39 seed, from which come the Bitcoin
//! deposit account (BIP84, watch-only derivation from its xpub) and the
//! Ethereum hot account (BIP44, coin 60) that signs payouts.
//!
//! Secret material stays in this module: it is never logged (the `Debug`
//! impls print only public parts), never serialised into an API, and the
//! seed bytes are wiped when the keyring is dropped.

use std::fmt;
use std::path::Path;

use alloy_signer_local::PrivateKeySigner;
use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::{All, Secp256k1};
use proto::{BitcoinNetwork, Network};

/// Errors loading or deriving keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not read or write the seed file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the seed file does not hold a valid BIP39 mnemonic: {0}")]
    Mnemonic(String),
    #[error("key derivation failed: {0}")]
    Derivation(#[from] bitcoin::bip32::Error),
    #[error("invalid Ethereum key: {0}")]
    Ethereum(String),
}

/// The keys of the hot wallet.
pub struct Keyring {
    secp: Secp256k1<All>,
    master: Xpriv,
    btc_network: bitcoin::Network,
    btc_deposit_xpub: Xpub,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("btc_deposit_xpub", &self.btc_deposit_xpub.to_string())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Loads the mnemonic at `path`, or creates a fresh 24-word one there
    /// (file mode 0600) when none exists.
    pub fn load_or_create(path: &Path, btc: BitcoinNetwork) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let phrase = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut entropy = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut entropy);
                let m = bip39::Mnemonic::from_entropy(&entropy)
                    .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
                let phrase = m.to_string();
                write_secret_file(path, &phrase).map_err(io)?;
                phrase
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_mnemonic(phrase.trim(), btc)
    }

    /// Builds the keyring from a BIP39 phrase (no passphrase).
    pub fn from_mnemonic(phrase: &str, btc: BitcoinNetwork) -> Result<Self, KeyError> {
        let mnemonic = bip39::Mnemonic::parse_normalized(phrase)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
        let mut seed = mnemonic.to_seed("");
        let btc_network = btc.to_bitcoin();
        let master = Xpriv::new_master(btc_network, &seed);
        seed.iter_mut().for_each(|b| *b = 0);
        let master = master?;
        let secp = Secp256k1::new();
        let coin = if btc == BitcoinNetwork::Mainnet { 0 } else { 1 };
        let account: DerivationPath = format!("m/84'/{coin}'/0'")
            .parse()
            .expect("static derivation path");
        let account_xprv = master.derive_priv(&secp, &account)?;
        let btc_deposit_xpub = Xpub::from_priv(&secp, &account_xprv);
        Ok(Keyring {
            secp,
            master,
            btc_network,
            btc_deposit_xpub,
        })
    }

    /// The BIP84 account xpub deposit addresses derive from (watch-only).
    pub fn btc_deposit_xpub(&self) -> &Xpub {
        &self.btc_deposit_xpub
    }

    /// The P2WPKH deposit address at external index `index` (`…/0/index`).
    pub fn btc_deposit_address(&self, index: u32) -> Result<bitcoin::Address, KeyError> {
        let child = self.btc_deposit_xpub.derive_pub(
            &self.secp,
            &[
                ChildNumber::from_normal_idx(0)?,
                ChildNumber::from_normal_idx(index)?,
            ],
        )?;
        Ok(bitcoin::Address::p2wpkh(&child.to_pub(), self.btc_network))
    }

    /// The Ethereum account at `m/44'/60'/0'/0/index`. Index 0 is the hot
    /// account that pays out; higher indexes are per-swap deposit accounts.
    pub fn eth_signer(&self, index: u32) -> Result<PrivateKeySigner, KeyError> {
        let path: DerivationPath = format!("m/44'/60'/0'/0/{index}")
            .parse()
            .map_err(|e: bitcoin::bip32::Error| KeyError::Ethereum(e.to_string()))?;
        let child = self.master.derive_priv(&self.secp, &path)?;
        let mut bytes = child.private_key.secret_bytes();
        let signer =
            PrivateKeySigner::from_slice(&bytes).map_err(|e| KeyError::Ethereum(e.to_string()));
        bytes.iter_mut().for_each(|b| *b = 0);
        signer
    }

    /// The deposit address for `network` at `index`, as a string.
    pub fn deposit_address(&self, network: Network, index: u32) -> Result<String, KeyError> {
        match network {
            Network::Bitcoin(_) => Ok(self.btc_deposit_address(index)?.to_string()),
            // Index 0 is the hot account; deposits start at 1.
            Network::Ethereum(_) => Ok(self
                .eth_signer(
                    index
                        .checked_add(1)
                        .ok_or_else(|| KeyError::Ethereum("deposit index exhausted".to_owned()))?,
                )?
                .address()
                .to_checksum(None)),
        }
    }
}

/// Writes a new secret file, readable by its owner only (0600), synced to
/// disk. Refuses to overwrite an existing file.
pub fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    // BIP84's test vector mnemonic.
    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    #[test]
    fn bip84_vectors() {
        let k = Keyring::from_mnemonic(PHRASE, BitcoinNetwork::Mainnet).unwrap();
        assert_eq!(
            k.btc_deposit_xpub().to_string(),
            "xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V"
        );
        assert_eq!(
            k.btc_deposit_address(0).unwrap().to_string(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
        assert_eq!(
            k.btc_deposit_address(1).unwrap().to_string(),
            "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
        );
    }

    #[test]
    fn bip44_ethereum_vector() {
        let k = Keyring::from_mnemonic(PHRASE, BitcoinNetwork::Regtest).unwrap();
        // The well-known first account of this mnemonic.
        assert_eq!(
            k.eth_signer(0).unwrap().address().to_checksum(None),
            "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
        );
    }

    #[test]
    fn seed_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        let a = Keyring::load_or_create(&path, BitcoinNetwork::Regtest).unwrap();
        let b = Keyring::load_or_create(&path, BitcoinNetwork::Regtest).unwrap();
        assert_eq!(
            a.btc_deposit_address(5).unwrap(),
            b.btc_deposit_address(5).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains("abandon"));
    }
}
