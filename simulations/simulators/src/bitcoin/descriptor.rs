//! The output descriptors `scantxoutset` accepts (doc/descriptors.md,
//! BIP380-386), the subset a wallet app hands over: `addr(ADDR)`,
//! `raw(HEX)`, `pkh(KEY)`, `wpkh(KEY)`, `sh(wpkh(KEY))` and `tr(KEY)`, where
//! KEY is a hex public key or an xpub/tpub with an optional `[fingerprint/path]`
//! origin, a path of unhardened steps and an optional `/*`. The `#checksum`
//! is verified when present and added to every descriptor reported.

use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpub};
use bitcoin::key::{CompressedPublicKey, Secp256k1};
use bitcoin::secp256k1::{PublicKey, VerifyOnly, XOnlyPublicKey};
use bitcoin::{Address, Network, ScriptBuf};

const INPUT_CHARSET: &str = "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
const CHECKSUM_CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GENERATOR: [u64; 5] = [
    0xf5dee51989,
    0xa9fdca3312,
    0x1bab10e32d,
    0x3706b1677a,
    0x644d626ffd,
];

fn polymod(symbols: &[u64]) -> u64 {
    let mut chk = 1u64;
    for &v in symbols {
        let top = chk >> 35;
        chk = ((chk & 0x7_ffff_ffff) << 5) ^ v;
        for (i, g) in GENERATOR.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// The 8-character checksum of a descriptor (without `#`).
pub fn checksum(desc: &str) -> Result<String, String> {
    let mut symbols = Vec::new();
    let mut groups = Vec::new();
    for c in desc.chars() {
        let v = INPUT_CHARSET
            .find(c)
            .ok_or_else(|| format!("Invalid character '{c}' in descriptor"))?
            as u64;
        symbols.push(v & 31);
        groups.push(v >> 5);
        if groups.len() == 3 {
            symbols.push(groups[0] * 9 + groups[1] * 3 + groups[2]);
            groups.clear();
        }
    }
    match groups.len() {
        1 => symbols.push(groups[0]),
        2 => symbols.push(groups[0] * 3 + groups[1]),
        _ => {}
    }
    symbols.extend([0; 8]);
    let c = polymod(&symbols) ^ 1;
    Ok((0..8)
        .map(|i| CHECKSUM_CHARSET[((c >> (5 * (7 - i))) & 31) as usize] as char)
        .collect())
}

/// `desc#checksum`.
pub fn with_checksum(desc: &str) -> String {
    match checksum(desc) {
        Ok(c) => format!("{desc}#{c}"),
        Err(_) => desc.to_owned(),
    }
}

/// A key expression.
#[derive(Debug, Clone)]
pub enum Key {
    Single {
        origin: Option<(Fingerprint, DerivationPath)>,
        key: PublicKey,
    },
    Extended {
        /// The given origin, or the xpub's own fingerprint and an empty path.
        origin: (Fingerprint, DerivationPath),
        xpub: Xpub,
        path: Vec<ChildNumber>,
        wildcard: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pkh,
    Wpkh,
    ShWpkh,
    Tr,
}

/// A parsed descriptor.
#[derive(Debug, Clone)]
pub enum Descriptor {
    Addr(Address),
    Raw(ScriptBuf),
    Key(Kind, Key),
}

/// One script a descriptor stands for, with the descriptor Core reports
/// for it (keys with their origin, `#checksum`).
#[derive(Debug, Clone)]
pub struct Expanded {
    pub script: ScriptBuf,
    pub desc: String,
}

fn err(m: impl Into<String>) -> String {
    m.into()
}

fn parse_key(s: &str, network: Network) -> Result<Key, String> {
    let (origin, rest) = match s.strip_prefix('[') {
        Some(r) => {
            let end = r
                .find(']')
                .ok_or_else(|| err("Key origin start '[ character expected but not found"))?;
            let inner = &r[..end];
            let (fp, path) = inner.split_once('/').unwrap_or((inner, ""));
            if fp.len() != 8 {
                return Err(format!(
                    "Fingerprint is not 4 bytes ({} characters instead of 8 characters)",
                    fp.len()
                ));
            }
            let fp = Fingerprint::from_str(fp)
                .map_err(|_| err(format!("Fingerprint '{fp}' is not hex")))?;
            let path = if path.is_empty() {
                DerivationPath::master()
            } else {
                DerivationPath::from_str(&format!("m/{}", path.replace('h', "'")))
                    .map_err(|e| err(format!("Key path value is not a valid uint32: {e}")))?
            };
            (Some((fp, path)), &r[end + 1..])
        }
        None => (None, s),
    };
    if rest.len() == 66 && rest.chars().all(|c| c.is_ascii_hexdigit()) {
        let key =
            PublicKey::from_str(rest).map_err(|_| err(format!("Pubkey '{rest}' is invalid")))?;
        return Ok(Key::Single { origin, key });
    }
    let mut parts = rest.split('/');
    let head = parts.next().unwrap_or_default();
    let xpub = Xpub::from_str(head).map_err(|_| err(format!("key '{head}' is not valid")))?;
    let want_test = network != Network::Bitcoin;
    if (xpub.network == bitcoin::NetworkKind::Test) != want_test {
        return Err(format!("key '{head}' is not valid"));
    }
    let mut path = Vec::new();
    let mut wildcard = false;
    for step in parts {
        if wildcard {
            return Err(err("'*' may only appear as last element in a path"));
        }
        if step == "*" {
            wildcard = true;
            continue;
        }
        if step.ends_with(['\'', 'h']) || step == "*'" || step == "*h" {
            return Err(err(
                "hardened derivation from an xpub needs its private key",
            ));
        }
        let n: u32 = step
            .parse()
            .map_err(|_| err(format!("Key path value '{step}' is not a valid uint32")))?;
        path.push(
            ChildNumber::from_normal_idx(n)
                .map_err(|_| err(format!("Key path value {n} is out of range")))?,
        );
    }
    let origin = origin.unwrap_or_else(|| (xpub.fingerprint(), DerivationPath::master()));
    Ok(Key::Extended {
        origin,
        xpub,
        path,
        wildcard,
    })
}

/// Parses a descriptor for `network`, checking its checksum if it has one.
pub fn parse(s: &str, network: Network) -> Result<Descriptor, String> {
    let body = match s.split_once('#') {
        Some((body, sum)) => {
            let expected = checksum(body)?;
            if sum != expected {
                return Err(format!(
                    "Provided checksum '{sum}' does not match computed checksum '{expected}'"
                ));
            }
            body
        }
        None => s,
    };
    let (func, inner) = body
        .split_once('(')
        .ok_or_else(|| err(format!("'{body}' is not a valid descriptor function")))?;
    let inner = inner
        .strip_suffix(')')
        .ok_or_else(|| err(format!("'{body}' is not a valid descriptor function")))?;
    match func {
        "addr" => {
            let a = Address::from_str(inner)
                .ok()
                .and_then(|a| a.require_network(network).ok())
                .ok_or_else(|| err("Address is not valid"))?;
            Ok(Descriptor::Addr(a))
        }
        "raw" => {
            let bytes = hex::decode(inner).map_err(|_| err("Raw script is not hex"))?;
            Ok(Descriptor::Raw(ScriptBuf::from_bytes(bytes)))
        }
        "pkh" => Ok(Descriptor::Key(Kind::Pkh, parse_key(inner, network)?)),
        "wpkh" => Ok(Descriptor::Key(Kind::Wpkh, parse_key(inner, network)?)),
        "tr" => Ok(Descriptor::Key(Kind::Tr, parse_key(inner, network)?)),
        "sh" => {
            let k = inner
                .strip_prefix("wpkh(")
                .and_then(|k| k.strip_suffix(')'))
                .ok_or_else(|| err("only sh(wpkh(KEY)) is supported here"))?;
            Ok(Descriptor::Key(Kind::ShWpkh, parse_key(k, network)?))
        }
        other => Err(format!("'{other}(' is not a valid descriptor function")),
    }
}

fn origin_string(fp: &Fingerprint, path: &DerivationPath) -> String {
    let mut s = fp.to_string();
    for step in path {
        s.push('/');
        s.push_str(&match step {
            ChildNumber::Normal { index } => index.to_string(),
            ChildNumber::Hardened { index } => format!("{index}'"),
        });
    }
    s
}

impl Descriptor {
    /// Whether it has a `*` and so needs a range.
    pub fn is_ranged(&self) -> bool {
        matches!(
            self,
            Descriptor::Key(_, Key::Extended { wildcard: true, .. })
        )
    }

    /// The scripts for child indexes `range` (one script when not ranged).
    pub fn expand(
        &self,
        range: std::ops::RangeInclusive<u32>,
        network: Network,
        secp: &Secp256k1<VerifyOnly>,
    ) -> Result<Vec<Expanded>, String> {
        let (kind, key) = match self {
            Descriptor::Addr(a) => {
                return Ok(vec![Expanded {
                    script: a.script_pubkey(),
                    desc: with_checksum(&format!("addr({a})")),
                }])
            }
            Descriptor::Raw(s) => {
                return Ok(vec![Expanded {
                    script: s.clone(),
                    desc: with_checksum(&format!("raw({})", s.to_hex_string())),
                }])
            }
            Descriptor::Key(kind, key) => (*kind, key),
        };
        let keys: Vec<(PublicKey, Option<String>)> = match key {
            Key::Single { origin, key } => {
                vec![(*key, origin.as_ref().map(|(fp, p)| origin_string(fp, p)))]
            }
            Key::Extended {
                origin,
                xpub,
                path,
                wildcard,
            } => {
                let indexes: Vec<Option<u32>> = if *wildcard {
                    range.map(Some).collect()
                } else {
                    vec![None]
                };
                let mut out = Vec::with_capacity(indexes.len());
                for i in indexes {
                    let mut full: Vec<ChildNumber> = path.clone();
                    if let Some(i) = i {
                        full.push(
                            ChildNumber::from_normal_idx(i)
                                .map_err(|_| err(format!("index {i} out of range")))?,
                        );
                    }
                    let child = xpub
                        .derive_pub(secp, &full)
                        .map_err(|e| err(format!("derivation failed: {e}")))?;
                    let origin_path: DerivationPath = origin.1.extend(&full);
                    out.push((
                        child.public_key,
                        Some(origin_string(&origin.0, &origin_path)),
                    ));
                }
                out
            }
        };
        keys.into_iter()
            .map(|(pk, origin)| {
                let prefix = origin.map(|o| format!("[{o}]")).unwrap_or_default();
                let compressed = CompressedPublicKey(pk);
                let (script, desc) = match kind {
                    Kind::Pkh => (
                        Address::p2pkh(compressed, network).script_pubkey(),
                        format!("pkh({prefix}{pk})"),
                    ),
                    Kind::Wpkh => (
                        Address::p2wpkh(&compressed, network).script_pubkey(),
                        format!("wpkh({prefix}{pk})"),
                    ),
                    Kind::ShWpkh => (
                        Address::p2shwpkh(&compressed, network).script_pubkey(),
                        format!("sh(wpkh({prefix}{pk}))"),
                    ),
                    Kind::Tr => {
                        let x = XOnlyPublicKey::from(pk);
                        (
                            Address::p2tr(secp, x, None, network).script_pubkey(),
                            format!("tr({prefix}{x})"),
                        )
                    }
                };
                Ok(Expanded {
                    script,
                    desc: with_checksum(&desc),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_bip380() {
        assert_eq!(checksum("raw(deadbeef)").unwrap(), "89f8spxm");
        assert!(parse("raw(deadbeef)#89f8spxm", Network::Regtest).is_ok());
        let e = parse("raw(deadbeef)#89f8spxx", Network::Regtest).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn ranged_wpkh_from_a_tpub_reports_key_origins() {
        let secp = Secp256k1::verification_only();
        let master = bitcoin::bip32::Xpriv::new_master(Network::Regtest, &[7u8; 32]).unwrap();
        let full = Secp256k1::new();
        let account_path = DerivationPath::from_str("m/84'/1'/0'").unwrap();
        let account = master.derive_priv(&full, &account_path).unwrap();
        let tpub = Xpub::from_priv(&full, &account);
        let fp = master.fingerprint(&full);
        let d = parse(
            &format!("wpkh([{fp}/84h/1h/0h]{tpub}/0/*)"),
            Network::Regtest,
        )
        .unwrap();
        assert!(d.is_ranged());
        let got = d.expand(0..=2, Network::Regtest, &secp).unwrap();
        assert_eq!(got.len(), 3);
        let child = master
            .derive_priv(&full, &DerivationPath::from_str("m/84'/1'/0'/0/2").unwrap())
            .unwrap();
        let pk = CompressedPublicKey(child.private_key.public_key(&full));
        assert_eq!(
            got[2].script,
            Address::p2wpkh(&pk, Network::Regtest).script_pubkey()
        );
        assert_eq!(
            got[2].desc,
            with_checksum(&format!("wpkh([{fp}/84'/1'/0'/0/2]{})", pk.0))
        );
        // Hardened steps after an xpub, a mainnet key on regtest: refused.
        assert!(parse(&format!("wpkh({tpub}/0h/*)"), Network::Regtest).is_err());
        assert!(parse(&format!("wpkh({tpub}/0/*)"), Network::Bitcoin).is_err());
        assert!(parse("foo(00)", Network::Regtest).is_err());
    }
}
