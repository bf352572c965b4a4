//! Addresses validated for a chain and network.
//!
//! [`Address::parse`] is what every API boundary calls: a Bitcoin address
//! must carry a valid checksum and belong to the deployment's network (a
//! testnet address on mainnet is refused, naming the network it is for); an
//! Ethereum address must be 20 bytes of hex and, when written in mixed case,
//! match its EIP-55 checksum.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::chain::{BitcoinNetwork, Chain, Network};

/// An address on some chain, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Bitcoin(bitcoin::Address),
    Ethereum(alloy_primitives::Address),
}

/// Why a string is not a usable address on a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("{input:?} is a {found} address, but this engine runs on {expected}")]
    WrongNetwork {
        input: String,
        expected: Network,
        found: String,
    },
    #[error("{input:?} is not a valid Bitcoin address: {reason}")]
    InvalidBitcoin { input: String, reason: String },
    #[error("{0:?} is not an Ethereum address: expected 0x followed by 40 hex digits")]
    InvalidEthereum(String),
    #[error("{0:?} fails its EIP-55 checksum (mixed-case letters do not match); check for a typo")]
    BadChecksum(String),
    #[error("{0:?} is the zero address, which nobody can spend from")]
    ZeroAddress(String),
}

impl Address {
    /// Parses and validates `input` as an address on `network`.
    pub fn parse(network: Network, input: &str) -> Result<Address, AddressError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        match network {
            Network::Bitcoin(net) => parse_bitcoin(net, s, input),
            Network::Ethereum(_) => parse_ethereum(s).map(Address::Ethereum),
        }
    }

    pub fn chain(&self) -> Chain {
        match self {
            Address::Bitcoin(_) => Chain::Bitcoin,
            Address::Ethereum(_) => Chain::Ethereum,
        }
    }

    /// The Ethereum address, if this is one.
    pub fn as_ethereum(&self) -> Option<alloy_primitives::Address> {
        match self {
            Address::Ethereum(a) => Some(*a),
            Address::Bitcoin(_) => None,
        }
    }

    /// The Bitcoin address, if this is one.
    pub fn as_bitcoin(&self) -> Option<&bitcoin::Address> {
        match self {
            Address::Bitcoin(a) => Some(a),
            Address::Ethereum(_) => None,
        }
    }
}

fn parse_bitcoin(net: BitcoinNetwork, s: &str, input: &str) -> Result<Address, AddressError> {
    let unchecked =
        bitcoin::Address::<bitcoin::address::NetworkUnchecked>::from_str(s).map_err(|e| {
            AddressError::InvalidBitcoin {
                input: input.to_owned(),
                reason: e.to_string(),
            }
        })?;
    if unchecked.is_valid_for_network(net.to_bitcoin()) {
        return Ok(Address::Bitcoin(unchecked.assume_checked()));
    }
    let found = [
        (bitcoin::Network::Bitcoin, "bitcoin-mainnet"),
        (
            bitcoin::Network::Testnet,
            "bitcoin-testnet or bitcoin-signet",
        ),
        (bitcoin::Network::Regtest, "bitcoin-regtest"),
    ]
    .into_iter()
    .find(|(n, _)| unchecked.is_valid_for_network(*n))
    .map(|(_, name)| name)
    .unwrap_or("different network's");
    Err(AddressError::WrongNetwork {
        input: input.to_owned(),
        expected: Network::Bitcoin(net),
        found: found.to_owned(),
    })
}

fn parse_ethereum(s: &str) -> Result<alloy_primitives::Address, AddressError> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| AddressError::InvalidEthereum(s.to_owned()))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::InvalidEthereum(s.to_owned()));
    }
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    let addr = if has_lower && has_upper {
        // Mixed case carries an EIP-55 checksum: it must match.
        alloy_primitives::Address::parse_checksummed(format!("0x{hex}"), None)
            .map_err(|_| AddressError::BadChecksum(s.to_owned()))?
    } else {
        alloy_primitives::Address::from_str(hex)
            .map_err(|_| AddressError::InvalidEthereum(s.to_owned()))?
    };
    if addr.is_zero() {
        return Err(AddressError::ZeroAddress(s.to_owned()));
    }
    Ok(addr)
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Bitcoin(a) => write!(f, "{a}"),
            // EIP-55 checksummed form.
            Address::Ethereum(a) => write!(f, "{}", a.to_checksum(None)),
        }
    }
}

/// Serialised as the address string. Deserialising checks the encoding and
/// checksum but cannot know the network; API input goes through
/// [`Address::parse`] instead.
impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.starts_with("0x") || s.starts_with("0X") {
            return parse_ethereum(&s)
                .map(Address::Ethereum)
                .map_err(serde::de::Error::custom);
        }
        bitcoin::Address::<bitcoin::address::NetworkUnchecked>::from_str(&s)
            .map(|a| Address::Bitcoin(a.assume_checked()))
            .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::EthereumNetwork;

    const MAIN: Network = Network::Bitcoin(BitcoinNetwork::Mainnet);
    const TEST: Network = Network::Bitcoin(BitcoinNetwork::Testnet);
    const REGTEST: Network = Network::Bitcoin(BitcoinNetwork::Regtest);
    const ETH: Network = Network::Ethereum(EthereumNetwork::Mainnet);

    fn check(net: Network, input: &str, expect: Result<(), &str>) {
        let got = Address::parse(net, input);
        match expect {
            Ok(()) => {
                assert!(got.is_ok(), "{input:?} on {net}: {got:?}");
            }
            Err(msg) => {
                let err = got.expect_err(input).to_string();
                assert!(
                    err.contains(msg),
                    "{input:?} on {net}: {err:?} lacks {msg:?}"
                );
            }
        }
    }

    #[test]
    fn bitcoin_addresses() {
        // BIP173 / BIP350 test vectors.
        check(MAIN, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", Ok(()));
        check(MAIN, "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", Ok(()));
        check(
            MAIN,
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
            Ok(()),
        );
        check(MAIN, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", Ok(()));
        check(MAIN, "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", Ok(()));
        check(TEST, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", Ok(()));
        check(
            REGTEST,
            "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw",
            Ok(()),
        );
        // A testnet address on mainnet is refused, naming where it belongs.
        check(
            MAIN,
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
            Err("is a bitcoin-testnet or bitcoin-signet address, but this engine runs on bitcoin-mainnet"),
        );
        check(
            REGTEST,
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            Err("is a bitcoin-mainnet address"),
        );
        // Broken checksum (last character changed).
        check(
            MAIN,
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",
            Err("not a valid Bitcoin address"),
        );
        check(
            MAIN,
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",
            Err("not a valid Bitcoin address"),
        );
        check(MAIN, "", Err("empty"));
        check(
            MAIN,
            "0x52908400098527886E0F7030069857D2E4169EE7",
            Err("not a valid Bitcoin"),
        );
    }

    #[test]
    fn ethereum_addresses() {
        // EIP-55 examples.
        check(ETH, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", Ok(()));
        check(ETH, "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", Ok(()));
        check(ETH, "0x52908400098527886E0F7030069857D2E4169EE7", Ok(()));
        check(ETH, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", Ok(()));
        check(
            ETH,
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
            Err("EIP-55 checksum"),
        );
        check(
            ETH,
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA",
            Err("40 hex digits"),
        );
        check(
            ETH,
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            Err("0x followed by"),
        );
        check(
            ETH,
            "0x000000000000000000000000000000000000000g",
            Err("40 hex digits"),
        );
        check(
            ETH,
            "0x0000000000000000000000000000000000000000",
            Err("zero address"),
        );
        check(
            ETH,
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            Err("not an Ethereum address"),
        );
    }

    #[test]
    fn display_is_checksummed_and_serde_round_trips() {
        let a = Address::parse(ETH, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").unwrap();
        assert_eq!(a.to_string(), "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a);
        let b = Address::parse(MAIN, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4").unwrap();
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), b);
    }
}
