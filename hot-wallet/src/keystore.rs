//! The encrypted keystore file: the hot wallet's root secret (a BIP39
//! mnemonic or a BIP32 xprv) at rest.
//!
//! Format (JSON, version 1):
//!
//! ```json
//! {
//!   "version": 1,
//!   "secret_kind": "bip39_mnemonic",
//!   "kdf": { "algorithm": "argon2id", "argon2_version": 19,
//!            "memory_kib": 65536, "iterations": 3, "parallelism": 1,
//!            "salt": "<32 bytes hex>" },
//!   "cipher": { "algorithm": "xchacha20-poly1305", "nonce": "<24 bytes hex>" },
//!   "ciphertext": "<hex, secret UTF-8 + 16-byte tag>"
//! }
//! ```
//!
//! The 32-byte key comes from the passphrase through argon2id with the
//! file's parameters and salt; the secret is sealed with XChaCha20-Poly1305
//! under a fresh random nonce. Everything in the header (version, kind, KDF
//! parameters, salt, cipher) is bound to the ciphertext as associated data,
//! so an edited header fails authentication like a wrong passphrase does.
//! Decrypted secrets and derived keys live in [`Zeroizing`] buffers.

use std::fmt;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The only format version this code reads and writes.
pub const KEYSTORE_VERSION: u32 = 1;
const KDF_ALGORITHM: &str = "argon2id";
const CIPHER_ALGORITHM: &str = "xchacha20-poly1305";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Largest memory cost accepted from a file (4 GiB), so a crafted file cannot
/// exhaust the machine.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

/// Errors reading, writing or opening a keystore.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("wrong passphrase, or the keystore file was altered (authentication failed)")]
    WrongPassphrase,
    #[error("the keystore passphrase is empty")]
    EmptyPassphrase,
    #[error("keystore format version {0} is not supported (this build reads version {KEYSTORE_VERSION})")]
    UnsupportedVersion(u32),
    #[error("malformed keystore: {0}")]
    Malformed(String),
    #[error("key derivation (argon2id) failed: {0}")]
    Kdf(String),
    #[error("encryption failed")]
    Encrypt,
}

/// A passphrase. Wiped from memory on drop; its `Debug` shows nothing.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(passphrase: impl Into<String>) -> Self {
        Passphrase(Zeroizing::new(passphrase.into()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// What kind of root secret a keystore holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// A BIP39 mnemonic phrase (English, no BIP39 passphrase).
    Bip39Mnemonic,
    /// A BIP32 extended private key (base58 `xprv`/`tprv`).
    Xprv,
}

impl SecretKind {
    fn as_str(self) -> &'static str {
        match self {
            SecretKind::Bip39Mnemonic => "bip39_mnemonic",
            SecretKind::Xprv => "xprv",
        }
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option (64 MiB, 3 passes), one lane.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    fn checked(self) -> Result<Params, KeystoreError> {
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(KeystoreError::Malformed(format!(
                "KDF parameters out of range: {self:?}"
            )));
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|e| KeystoreError::Kdf(e.to_string()))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfSection {
    algorithm: String,
    argon2_version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherSection {
    algorithm: String,
    nonce: String,
}

/// The keystore file as stored (public parts and ciphertext only).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    version: u32,
    secret_kind: SecretKind,
    kdf: KdfSection,
    cipher: CipherSection,
    ciphertext: String,
}

impl KeystoreFile {
    /// The associated data: every header field, in a fixed order.
    fn aad(&self) -> String {
        format!(
            "swap-keystore|v{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.version,
            self.secret_kind.as_str(),
            self.kdf.algorithm,
            self.kdf.argon2_version,
            self.kdf.memory_kib,
            self.kdf.iterations,
            self.kdf.parallelism,
            self.kdf.salt,
            self.cipher.algorithm,
            self.cipher.nonce,
        )
    }
}

fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeystoreError> {
    if passphrase.as_bytes().is_empty() {
        return Err(KeystoreError::EmptyPassphrase);
    }
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.checked()?);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Seals `secret` under `passphrase`; returns the keystore file's JSON text.
pub fn encrypt(
    secret: &str,
    kind: SecretKind,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<String, KeystoreError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let key = derive_key(passphrase, &salt, params)?;
    let mut file = KeystoreFile {
        version: KEYSTORE_VERSION,
        secret_kind: kind,
        kdf: KdfSection {
            algorithm: KDF_ALGORITHM.to_owned(),
            argon2_version: 0x13,
            memory_kib: params.memory_kib,
            iterations: params.iterations,
            parallelism: params.parallelism,
            salt: hex::encode(salt),
        },
        cipher: CipherSection {
            algorithm: CIPHER_ALGORITHM.to_owned(),
            nonce: hex::encode(nonce),
        },
        ciphertext: String::new(),
    };
    let aad = file.aad();
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| KeystoreError::Encrypt)?;
    file.ciphertext = hex::encode(sealed);
    serde_json::to_string_pretty(&file).map_err(|e| KeystoreError::Malformed(e.to_string()))
}

fn unhex<const N: usize>(field: &str, s: &str) -> Result<[u8; N], KeystoreError> {
    let v = hex::decode(s).map_err(|e| KeystoreError::Malformed(format!("{field}: {e}")))?;
    v.try_into().map_err(|v: Vec<u8>| {
        KeystoreError::Malformed(format!("{field}: {} bytes, expected {N}", v.len()))
    })
}

/// Whether `text` looks like a keystore file (a JSON object) rather than a
/// plaintext secret.
pub fn is_keystore(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Opens keystore JSON `text` with `passphrase`: the kind and the secret.
pub fn decrypt(
    text: &str,
    passphrase: &Passphrase,
) -> Result<(SecretKind, Zeroizing<String>), KeystoreError> {
    let file: KeystoreFile =
        serde_json::from_str(text).map_err(|e| KeystoreError::Malformed(e.to_string()))?;
    if file.version != KEYSTORE_VERSION {
        return Err(KeystoreError::UnsupportedVersion(file.version));
    }
    if file.kdf.algorithm != KDF_ALGORITHM || file.kdf.argon2_version != 0x13 {
        return Err(KeystoreError::Malformed(format!(
            "unsupported KDF {} version {}",
            file.kdf.algorithm, file.kdf.argon2_version
        )));
    }
    if file.cipher.algorithm != CIPHER_ALGORITHM {
        return Err(KeystoreError::Malformed(format!(
            "unsupported cipher {}",
            file.cipher.algorithm
        )));
    }
    let salt: [u8; SALT_LEN] = unhex("kdf.salt", &file.kdf.salt)?;
    let nonce: [u8; NONCE_LEN] = unhex("cipher.nonce", &file.cipher.nonce)?;
    let sealed = hex::decode(&file.ciphertext)
        .map_err(|e| KeystoreError::Malformed(format!("ciphertext: {e}")))?;
    let params = KdfParams {
        memory_kib: file.kdf.memory_kib,
        iterations: file.kdf.iterations,
        parallelism: file.kdf.parallelism,
    };
    let key = derive_key(passphrase, &salt, params)?;
    let aad = file.aad();
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeystoreError::WrongPassphrase)?,
    );
    let secret = std::str::from_utf8(&plain)
        .map_err(|_| KeystoreError::Malformed("the secret is not UTF-8".to_owned()))?;
    Ok((file.secret_kind, Zeroizing::new(secret.to_owned())))
}

/// Writes `contents` to `path` atomically: a 0600 temporary file beside it,
/// synced, then renamed over `path` (the directory is synced too).
pub fn replace_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "keystore".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so tests run fast; the format is the same.
    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn round_trip() {
        let p = Passphrase::new("correct horse battery staple");
        let text = encrypt("the secret", SecretKind::Xprv, &p, FAST).unwrap();
        assert!(is_keystore(&text));
        assert!(!text.contains("the secret"));
        let (kind, secret) = decrypt(&text, &p).unwrap();
        assert_eq!(kind, SecretKind::Xprv);
        assert_eq!(secret.as_str(), "the secret");
    }

    #[test]
    fn fresh_salt_and_nonce_each_time() {
        let p = Passphrase::new("pw");
        let a = encrypt("s", SecretKind::Xprv, &p, FAST).unwrap();
        let b = encrypt("s", SecretKind::Xprv, &p, FAST).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_passphrase_is_a_clear_error() {
        let text = encrypt("s", SecretKind::Xprv, &Passphrase::new("right"), FAST).unwrap();
        let err = decrypt(&text, &Passphrase::new("wrong")).unwrap_err();
        assert!(matches!(err, KeystoreError::WrongPassphrase));
        assert!(err.to_string().contains("wrong passphrase"));
    }

    #[test]
    fn edited_header_fails_authentication() {
        let p = Passphrase::new("pw");
        let text = encrypt("s", SecretKind::Xprv, &p, FAST).unwrap();
        let edited = text.replace("\"xprv\"", "\"bip39_mnemonic\"");
        assert_ne!(edited, text);
        assert!(matches!(
            decrypt(&edited, &p),
            Err(KeystoreError::WrongPassphrase)
        ));
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["kdf"]["iterations"] = 2.into();
        assert!(matches!(
            decrypt(&v.to_string(), &p),
            Err(KeystoreError::WrongPassphrase)
        ));
    }

    #[test]
    fn bad_files_are_refused_without_panicking() {
        let p = Passphrase::new("pw");
        let text = encrypt("s", SecretKind::Xprv, &p, FAST).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["version"] = 2.into();
        assert!(matches!(
            decrypt(&v.to_string(), &p),
            Err(KeystoreError::UnsupportedVersion(2))
        ));
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["kdf"]["memory_kib"] = u32::MAX.into();
        assert!(matches!(
            decrypt(&v.to_string(), &p),
            Err(KeystoreError::Malformed(_))
        ));
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["cipher"]["nonce"] = "00".into();
        assert!(matches!(
            decrypt(&v.to_string(), &p),
            Err(KeystoreError::Malformed(_))
        ));
        assert!(matches!(decrypt("{", &p), Err(KeystoreError::Malformed(_))));
        assert!(matches!(
            encrypt("s", SecretKind::Xprv, &Passphrase::new(""), FAST),
            Err(KeystoreError::EmptyPassphrase)
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any one-character edit of a keystore file is refused with an
        /// error (never a panic, never a different secret).
        #[test]
        fn edited_files_never_open_to_another_secret(pos in 0usize..4096, c in proptest::char::range(' ', '~')) {
            let p = Passphrase::new("pw");
            let text = encrypt("the secret", SecretKind::Bip39Mnemonic, &p, FAST).unwrap();
            let mut chars: Vec<char> = text.chars().collect();
            let i = pos % chars.len();
            proptest::prop_assume!(chars[i] != c);
            chars[i] = c;
            let edited: String = chars.into_iter().collect();
            if let Ok((kind, secret)) = decrypt(&edited, &p) {
                // Only an edit JSON ignores (whitespace) may still open.
                proptest::prop_assert_eq!(kind, SecretKind::Bip39Mnemonic);
                proptest::prop_assert_eq!(secret.as_str(), "the secret");
            }
        }
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        assert!(!format!("{:?}", Passphrase::new("hunter2")).contains("hunter2"));
    }
}
