//! Assets, the registry of the assets a deployment trades, pairs and prices.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::chain::{Chain, Network};

/// An asset's ticker as the API spells it: `BTC`, `ETH`, `USDC`.
/// Two to ten characters, upper-case letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AssetId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    #[error("asset {0:?} is not a ticker (2 to 10 upper-case letters or digits)")]
    BadTicker(String),
    #[error("unknown asset {0:?}")]
    Unknown(String),
    #[error("pair {0:?} is not written BASE/QUOTE, e.g. BTC/ETH")]
    BadPair(String),
    #[error("pair {0:?} names the same asset twice")]
    SameAsset(String),
}

impl AssetId {
    pub fn new(s: &str) -> Result<Self, AssetError> {
        let ok = (2..=10).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(AssetId(s.to_owned()))
        } else {
            Err(AssetError::BadTicker(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AssetId {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AssetId::new(s)
    }
}

impl<'de> Deserialize<'de> for AssetId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AssetId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// How an asset exists on its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AssetKind {
    /// The chain's own coin: BTC on Bitcoin, ETH on Ethereum.
    Native,
    /// An ERC-20 token at a contract address.
    Erc20 { contract: Address },
}

/// One asset a deployment trades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetSpec {
    #[schema(value_type = String, example = "BTC")]
    pub id: AssetId,
    #[schema(value_type = String, example = "bitcoin-regtest")]
    pub network: Network,
    /// `{"type": "native"}` or `{"type": "erc20", "contract": "0x…"}`.
    #[schema(value_type = Object)]
    pub kind: AssetKind,
    /// Decimal places of one whole unit: 8 for BTC, 18 for ETH, 6 for USDC.
    pub decimals: u8,
}

impl AssetSpec {
    pub fn chain(&self) -> Chain {
        self.network.chain()
    }
}

/// The assets of a deployment, by ticker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assets {
    by_id: BTreeMap<AssetId, AssetSpec>,
}

impl Assets {
    pub fn new(specs: impl IntoIterator<Item = AssetSpec>) -> Self {
        Assets {
            by_id: specs.into_iter().map(|s| (s.id.clone(), s)).collect(),
        }
    }

    pub fn get(&self, id: &AssetId) -> Result<&AssetSpec, AssetError> {
        self.by_id
            .get(id)
            .ok_or_else(|| AssetError::Unknown(id.to_string()))
    }

    /// Looks an asset up by its ticker as a client typed it.
    pub fn parse(&self, ticker: &str) -> Result<&AssetSpec, AssetError> {
        let id = AssetId::new(ticker)?;
        self.by_id
            .get(&id)
            .ok_or_else(|| AssetError::Unknown(ticker.to_owned()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &AssetSpec> {
        self.by_id.values()
    }

    /// The native asset of a network, if the deployment trades it.
    pub fn native(&self, network: Network) -> Option<&AssetSpec> {
        self.iter()
            .find(|a| a.network == network && a.kind == AssetKind::Native)
    }
}

/// An ordered pair of assets, written `BASE/QUOTE`. A price of the pair is
/// how many QUOTE one BASE is worth.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pair {
    pub base: AssetId,
    pub quote: AssetId,
}

impl Pair {
    pub fn new(base: AssetId, quote: AssetId) -> Result<Self, AssetError> {
        if base == quote {
            return Err(AssetError::SameAsset(format!("{base}/{quote}")));
        }
        Ok(Pair { base, quote })
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.quote)
    }
}

impl FromStr for Pair {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (b, q) = s
            .split_once('/')
            .ok_or_else(|| AssetError::BadPair(s.to_owned()))?;
        Pair::new(AssetId::new(b)?, AssetId::new(q)?)
    }
}

impl Serialize for Pair {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A price: units of one asset per one unit of another, as an exact decimal
/// in whole units (not base units). Serialised as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Price(pub Decimal);

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickers_and_pairs() {
        assert!(AssetId::new("BTC").is_ok());
        assert!(AssetId::new("USDC").is_ok());
        assert!(AssetId::new("btc").is_err());
        assert!(AssetId::new("B").is_err());
        assert!(AssetId::new("BTC ").is_err());
        let p: Pair = "BTC/ETH".parse().unwrap();
        assert_eq!(p.to_string(), "BTC/ETH");
        assert!("BTCETH".parse::<Pair>().is_err());
        assert!("BTC/BTC".parse::<Pair>().is_err());
        assert_eq!(
            serde_json::from_str::<Pair>("\"ETH/BTC\"").unwrap(),
            "ETH/BTC".parse().unwrap()
        );
    }
}
