//! The hot wallet's keys: one root secret (a BIP39 mnemonic or an xprv),
//! from which come the Bitcoin deposit accounts (BIP84 P2WPKH and BIP86
//! P2TR, watch-only derivation from their xpubs, see [`crate::watch`]) and
//! the Ethereum accounts (BIP44, coin 60; index 0 is the hot account that
//! signs payouts).
//!
//! At rest the secret lives in an encrypted keystore file
//! ([`crate::keystore`]: argon2id + XChaCha20-Poly1305). A plaintext seed
//! file left by an older version is migrated in place on first open: it is
//! encrypted under the given passphrase and atomically replaces the
//! plaintext file.
//!
//! Secret material stays in this module and [`crate::signer`]: it is never
//! logged (the `Debug` impls print only public parts), never serialised into
//! an API, and the master key is wiped when the keyring is dropped.

use std::fmt;
use std::path::Path;

use alloy_signer_local::PrivateKeySigner;
use bitcoin::bip32::{ChainCode, DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::secp256k1::{All, Secp256k1};
use proto::{BitcoinNetwork, Network};
use zeroize::Zeroizing;

use crate::keystore;
pub use crate::keystore::{KdfParams, KeystoreError, Passphrase, SecretKind};
use crate::watch::{BtcAddressKind, DepositAccounts, WatchError};

/// Environment variable holding the keystore passphrase of the embedded engine.
pub const PASSPHRASE_ENV: &str = "SWAPD_HOT_WALLET_PASSPHRASE";
/// The passphrase the embedded (development) engine uses when
/// [`PASSPHRASE_ENV`] is unset. Not for real funds.
pub const DEV_PASSPHRASE: &str = "swapd-embedded-development-passphrase";

/// Errors loading or deriving keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not read or write the keystore file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the keystore {path} could not be opened: {source}")]
    Keystore { path: String, source: KeystoreError },
    #[error("keystore error: {0}")]
    Sealing(#[from] KeystoreError),
    #[error("not a valid BIP39 mnemonic: {0}")]
    Mnemonic(String),
    #[error("not a valid extended private key: {0}")]
    Xprv(String),
    #[error("the extended private key is for {found:?}, the engine runs on {expected:?}")]
    NetworkMismatch {
        expected: bitcoin::NetworkKind,
        found: bitcoin::NetworkKind,
    },
    #[error("key derivation failed: {0}")]
    Derivation(#[from] bitcoin::bip32::Error),
    #[error("deposit derivation failed: {0}")]
    Watch(#[from] WatchError),
    #[error("invalid Ethereum key: {0}")]
    Ethereum(String),
}

/// The passphrase of the embedded engine's keystore: [`PASSPHRASE_ENV`] if
/// set and not empty, else [`DEV_PASSPHRASE`].
pub fn embedded_passphrase() -> Passphrase {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Passphrase::new(p),
        _ => Passphrase::new(DEV_PASSPHRASE),
    }
}

/// The keys of the hot wallet.
pub struct Keyring {
    secp: Secp256k1<All>,
    master: Xpriv,
    btc: BitcoinNetwork,
    accounts: DepositAccounts,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        wipe(&mut self.master);
    }
}

/// Overwrites an extended private key's secret parts.
pub(crate) fn wipe(xprv: &mut Xpriv) {
    xprv.private_key.non_secure_erase();
    xprv.chain_code = ChainCode::from([0u8; 32]);
}

fn coin_type(btc: BitcoinNetwork) -> u32 {
    if btc == BitcoinNetwork::Mainnet {
        0
    } else {
        1
    }
}

/// The xpub of the account at `path` below `master`.
fn account_xpub(secp: &Secp256k1<All>, master: &Xpriv, path: &str) -> Result<Xpub, KeyError> {
    let path: DerivationPath = path.parse()?;
    let mut xprv = master.derive_priv(secp, &path)?;
    let xpub = Xpub::from_priv(secp, &xprv);
    wipe(&mut xprv);
    Ok(xpub)
}

impl Keyring {
    /// The embedded engine's keyring: [`Keyring::open_or_create`] with
    /// [`embedded_passphrase`] and the default KDF cost.
    pub fn load_or_create(path: &Path, btc: BitcoinNetwork) -> Result<Self, KeyError> {
        Self::open_or_create(path, &embedded_passphrase(), btc, KdfParams::DEFAULT)
    }

    /// Opens the keystore at `path` with `passphrase`. When there is none,
    /// creates one holding a fresh 24-word mnemonic (file mode 0600, `params`
    /// as KDF cost). When the file holds a plaintext mnemonic or xprv (the
    /// old seed file format), encrypts it and atomically replaces the file.
    pub fn open_or_create(
        path: &Path,
        passphrase: &Passphrase,
        btc: BitcoinNetwork,
        params: KdfParams,
    ) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(s) => Zeroizing::new(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut entropy = Zeroizing::new([0u8; 32]);
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, entropy.as_mut());
                let m = bip39::Mnemonic::from_entropy(entropy.as_ref())
                    .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
                let phrase = Zeroizing::new(m.to_string());
                let keyring = Self::from_mnemonic(&phrase, btc)?;
                let sealed =
                    keystore::encrypt(&phrase, SecretKind::Bip39Mnemonic, passphrase, params)?;
                write_secret_file(path, &sealed).map_err(io)?;
                tracing::info!(path = %path.display(), "created a new encrypted hot-wallet keystore");
                return Ok(keyring);
            }
            Err(e) => return Err(io(e)),
        };
        if keystore::is_keystore(&text) {
            let (kind, secret) =
                keystore::decrypt(&text, passphrase).map_err(|source| KeyError::Keystore {
                    path: path.display().to_string(),
                    source,
                })?;
            return Self::from_secret(kind, &secret, btc);
        }
        // A plaintext secret: check it, then seal it in place.
        let secret = text.trim();
        let kind = if secret.starts_with("xprv") || secret.starts_with("tprv") {
            SecretKind::Xprv
        } else {
            SecretKind::Bip39Mnemonic
        };
        let keyring = Self::from_secret(kind, secret, btc)?;
        let sealed = keystore::encrypt(secret, kind, passphrase, params)?;
        keystore::replace_file(path, &sealed).map_err(io)?;
        tracing::warn!(
            path = %path.display(),
            "migrated a plaintext seed file to an encrypted keystore; \
             copies of the old file (backups, disk blocks) still hold the secret in clear"
        );
        Ok(keyring)
    }

    fn from_secret(kind: SecretKind, secret: &str, btc: BitcoinNetwork) -> Result<Self, KeyError> {
        match kind {
            SecretKind::Bip39Mnemonic => Self::from_mnemonic(secret, btc),
            SecretKind::Xprv => Self::from_xprv(secret, btc),
        }
    }

    /// Builds the keyring from a BIP39 phrase (no BIP39 passphrase).
    pub fn from_mnemonic(phrase: &str, btc: BitcoinNetwork) -> Result<Self, KeyError> {
        let mnemonic = bip39::Mnemonic::parse_normalized(phrase)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
        let seed = Zeroizing::new(mnemonic.to_seed(""));
        let master = Xpriv::new_master(btc.to_bitcoin(), seed.as_ref())?;
        Self::from_master(master, btc)
    }

    /// Builds the keyring from a base58 master extended private key.
    pub fn from_xprv(xprv: &str, btc: BitcoinNetwork) -> Result<Self, KeyError> {
        let master: Xpriv = xprv
            .trim()
            .parse()
            .map_err(|e: bitcoin::bip32::Error| KeyError::Xprv(e.to_string()))?;
        let expected = bitcoin::NetworkKind::from(btc.to_bitcoin());
        if master.network != expected {
            return Err(KeyError::NetworkMismatch {
                expected,
                found: master.network,
            });
        }
        Self::from_master(master, btc)
    }

    fn from_master(mut master: Xpriv, btc: BitcoinNetwork) -> Result<Self, KeyError> {
        let secp = Secp256k1::new();
        let coin = coin_type(btc);
        let accounts = (|| {
            let p2wpkh = account_xpub(&secp, &master, &format!("m/84'/{coin}'/0'"))?;
            let p2tr = account_xpub(&secp, &master, &format!("m/86'/{coin}'/0'"))?;
            let eth = account_xpub(&secp, &master, "m/44'/60'/0'/0")?;
            Ok::<_, KeyError>(DepositAccounts::new(btc.to_bitcoin(), p2wpkh, p2tr, eth)?)
        })();
        match accounts {
            Ok(accounts) => Ok(Keyring {
                secp,
                master,
                btc,
                accounts,
            }),
            Err(e) => {
                wipe(&mut master);
                Err(e)
            }
        }
    }

    /// The private key at `path` (the caller wipes it after use).
    pub(crate) fn derive_priv(&self, path: &DerivationPath) -> Result<Xpriv, KeyError> {
        Ok(self.master.derive_priv(&self.secp, path)?)
    }

    /// The master key's fingerprint (PSBT key origins start with it).
    pub fn fingerprint(&self) -> Fingerprint {
        self.master.fingerprint(&self.secp)
    }

    pub fn bitcoin_network(&self) -> BitcoinNetwork {
        self.btc
    }

    /// The account xpubs, for watch-only derivation.
    pub fn deposit_accounts(&self) -> &DepositAccounts {
        &self.accounts
    }

    /// The BIP84 account xpub deposit addresses derive from (watch-only).
    pub fn btc_deposit_xpub(&self) -> &Xpub {
        self.accounts.p2wpkh_account()
    }

    /// The P2WPKH deposit address at external index `index` (`…/0/index`).
    pub fn btc_deposit_address(&self, index: u32) -> Result<bitcoin::Address, KeyError> {
        Ok(self.accounts.btc_address(BtcAddressKind::P2wpkh, index)?)
    }

    /// The Ethereum account at `m/44'/60'/0'/0/index`. Index 0 is the hot
    /// account that pays out; higher indexes are per-swap deposit accounts.
    pub fn eth_signer(&self, index: u32) -> Result<PrivateKeySigner, KeyError> {
        let path: DerivationPath = format!("m/44'/60'/0'/0/{index}")
            .parse()
            .map_err(|e: bitcoin::bip32::Error| KeyError::Ethereum(e.to_string()))?;
        let mut child = self.derive_priv(&path)?;
        let bytes = Zeroizing::new(child.private_key.secret_bytes());
        wipe(&mut child);
        PrivateKeySigner::from_slice(bytes.as_ref()).map_err(|e| KeyError::Ethereum(e.to_string()))
    }

    /// The deposit address for `network` at `index`, as a string, derived
    /// from public keys only.
    pub fn deposit_address(&self, network: Network, index: u32) -> Result<String, KeyError> {
        deposit_address(&self.accounts, network, index)
    }
}

/// The deposit address for `network` at deposit index `index`, from the
/// account xpubs: P2WPKH on Bitcoin; on Ethereum the account at `index + 1`
/// (index 0 is the hot account).
pub fn deposit_address(
    accounts: &DepositAccounts,
    network: Network,
    index: u32,
) -> Result<String, KeyError> {
    match network {
        Network::Bitcoin(_) => Ok(accounts
            .btc_address(BtcAddressKind::P2wpkh, index)?
            .to_string()),
        Network::Ethereum(_) => {
            let index = index
                .checked_add(1)
                .ok_or_else(|| KeyError::Ethereum("deposit index exhausted".to_owned()))?;
            Ok(accounts.eth_address(index)?.to_checksum(None))
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

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn keystore_is_created_once_encrypted_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let pw = Passphrase::new("pw");
        let a = Keyring::open_or_create(&path, &pw, BitcoinNetwork::Regtest, FAST).unwrap();
        let b = Keyring::open_or_create(&path, &pw, BitcoinNetwork::Regtest, FAST).unwrap();
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
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(keystore::is_keystore(&text));
        let err = Keyring::open_or_create(
            &path,
            &Passphrase::new("nope"),
            BitcoinNetwork::Regtest,
            FAST,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            KeyError::Keystore {
                source: KeystoreError::WrongPassphrase,
                ..
            }
        ));
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
    }

    #[test]
    fn plaintext_seed_file_is_migrated_on_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hot-wallet.seed");
        write_secret_file(&path, &format!("{PHRASE}\n")).unwrap();
        let pw = Passphrase::new("pw");
        let k = Keyring::open_or_create(&path, &pw, BitcoinNetwork::Mainnet, FAST).unwrap();
        assert_eq!(
            k.btc_deposit_address(0).unwrap().to_string(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("abandon"));
        assert!(keystore::is_keystore(&text));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Reopened from the keystore: the same keys.
        let again = Keyring::open_or_create(&path, &pw, BitcoinNetwork::Mainnet, FAST).unwrap();
        assert_eq!(
            again.eth_signer(0).unwrap().address(),
            k.eth_signer(0).unwrap().address()
        );
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn plaintext_xprv_is_migrated_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        let root = "xprv9s21ZrQH143K3GJpoapnV8SFfukcVBSfeCficPSGfubmSFDxo1kuHnLisriDvSnRRuL2Qrg5ggqHKNVpxR86QEC8w35uxmGoggxtQTPvfUu";
        write_secret_file(&path, root).unwrap();
        let pw = Passphrase::new("pw");
        let k = Keyring::open_or_create(&path, &pw, BitcoinNetwork::Mainnet, FAST).unwrap();
        let from_phrase = Keyring::from_mnemonic(PHRASE, BitcoinNetwork::Mainnet).unwrap();
        assert_eq!(k.btc_deposit_xpub(), from_phrase.btc_deposit_xpub());
        assert!(!std::fs::read_to_string(&path).unwrap().contains(root));
        assert!(matches!(
            Keyring::from_xprv(root, BitcoinNetwork::Regtest),
            Err(KeyError::NetworkMismatch { .. })
        ));
    }

    #[test]
    fn garbage_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        write_secret_file(&path, "not a mnemonic").unwrap();
        let err =
            Keyring::open_or_create(&path, &Passphrase::new("pw"), BitcoinNetwork::Regtest, FAST)
                .unwrap_err();
        assert!(matches!(err, KeyError::Mnemonic(_)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a mnemonic");
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = Keyring::from_mnemonic(PHRASE, BitcoinNetwork::Mainnet).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("abandon"));
        assert!(!shown.contains("xprv"));
        assert!(shown.contains("xpub"));
    }
}
