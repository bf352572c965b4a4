//! Chains and their networks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A blockchain the engine settles on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Bitcoin,
    Ethereum,
}

impl Chain {
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Ethereum => "ethereum",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitcoinNetwork {
    Mainnet,
    Testnet,
    Signet,
    Regtest,
}

impl BitcoinNetwork {
    pub fn to_bitcoin(self) -> bitcoin::Network {
        match self {
            BitcoinNetwork::Mainnet => bitcoin::Network::Bitcoin,
            BitcoinNetwork::Testnet => bitcoin::Network::Testnet,
            BitcoinNetwork::Signet => bitcoin::Network::Signet,
            BitcoinNetwork::Regtest => bitcoin::Network::Regtest,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EthereumNetwork {
    Mainnet,
    Sepolia,
    /// A local development chain (anvil, or the engine's simulated chain).
    Dev,
}

impl EthereumNetwork {
    /// The EIP-155 chain id.
    pub fn chain_id(self) -> u64 {
        match self {
            EthereumNetwork::Mainnet => 1,
            EthereumNetwork::Sepolia => 11_155_111,
            EthereumNetwork::Dev => 31_337,
        }
    }
}

/// A chain together with the network of it that a deployment runs on,
/// written `bitcoin-regtest`, `ethereum-mainnet` and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Network {
    Bitcoin(BitcoinNetwork),
    Ethereum(EthereumNetwork),
}

impl Network {
    pub fn chain(self) -> Chain {
        match self {
            Network::Bitcoin(_) => Chain::Bitcoin,
            Network::Ethereum(_) => Chain::Ethereum,
        }
    }

    pub fn is_mainnet(self) -> bool {
        matches!(
            self,
            Network::Bitcoin(BitcoinNetwork::Mainnet) | Network::Ethereum(EthereumNetwork::Mainnet)
        )
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = match self {
            Network::Bitcoin(BitcoinNetwork::Mainnet) => "bitcoin-mainnet",
            Network::Bitcoin(BitcoinNetwork::Testnet) => "bitcoin-testnet",
            Network::Bitcoin(BitcoinNetwork::Signet) => "bitcoin-signet",
            Network::Bitcoin(BitcoinNetwork::Regtest) => "bitcoin-regtest",
            Network::Ethereum(EthereumNetwork::Mainnet) => "ethereum-mainnet",
            Network::Ethereum(EthereumNetwork::Sepolia) => "ethereum-sepolia",
            Network::Ethereum(EthereumNetwork::Dev) => "ethereum-dev",
        };
        f.write_str(net)
    }
}

/// The network name was not one of the known `chain-network` names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}: expected one of bitcoin-mainnet, bitcoin-testnet, bitcoin-signet, bitcoin-regtest, ethereum-mainnet, ethereum-sepolia, ethereum-dev")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "bitcoin-mainnet" => Network::Bitcoin(BitcoinNetwork::Mainnet),
            "bitcoin-testnet" => Network::Bitcoin(BitcoinNetwork::Testnet),
            "bitcoin-signet" => Network::Bitcoin(BitcoinNetwork::Signet),
            "bitcoin-regtest" => Network::Bitcoin(BitcoinNetwork::Regtest),
            "ethereum-mainnet" => Network::Ethereum(EthereumNetwork::Mainnet),
            "ethereum-sepolia" => Network::Ethereum(EthereumNetwork::Sepolia),
            "ethereum-dev" => Network::Ethereum(EthereumNetwork::Dev),
            other => return Err(UnknownNetwork(other.to_owned())),
        })
    }
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_round_trip() {
        for n in [
            "bitcoin-mainnet",
            "bitcoin-testnet",
            "bitcoin-signet",
            "bitcoin-regtest",
            "ethereum-mainnet",
            "ethereum-sepolia",
            "ethereum-dev",
        ] {
            let net: Network = n.parse().unwrap();
            assert_eq!(net.to_string(), n);
        }
        let err = "bitcoin-main".parse::<Network>().unwrap_err();
        assert!(err.to_string().contains("bitcoin-main"));
    }
}
