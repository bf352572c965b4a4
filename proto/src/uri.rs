//! Payment URIs that wallets open: BIP21 for Bitcoin, EIP-681 for Ethereum
//! and ERC-20 tokens.

use crate::address::Address;
use crate::amount::Amount;
use crate::asset::{AssetKind, AssetSpec};
use crate::chain::Network;

/// `bitcoin:<address>?amount=<BTC>&label=<label>` (BIP21). The amount is in
/// BTC as a decimal; the label is percent-encoded.
pub fn bip21(address: &bitcoin::Address, amount: Amount, label: Option<&str>) -> String {
    let mut uri = format!("bitcoin:{address}?amount={}", amount.to_decimal_string(8));
    if let Some(label) = label {
        uri.push_str("&label=");
        uri.push_str(&percent_encode(label));
    }
    uri
}

/// EIP-681 request to pay `amount` of `asset` to `to`:
/// native ETH: `ethereum:<to>@<chainId>?value=<wei>`;
/// ERC-20: `ethereum:<token>@<chainId>/transfer?address=<to>&uint256=<units>`.
pub fn eip681(asset: &AssetSpec, to: &alloy_primitives::Address, amount: Amount) -> Option<String> {
    let chain_id = match asset.network {
        Network::Ethereum(n) => n.chain_id(),
        Network::Bitcoin(_) => return None,
    };
    let to = to.to_checksum(None);
    match &asset.kind {
        AssetKind::Native => Some(format!(
            "ethereum:{to}@{chain_id}?value={}",
            amount.base_units()
        )),
        AssetKind::Erc20 { contract } => {
            let Address::Ethereum(token) = contract else {
                return None;
            };
            Some(format!(
                "ethereum:{}@{chain_id}/transfer?address={to}&uint256={}",
                token.to_checksum(None),
                amount.base_units()
            ))
        }
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::AssetId;
    use crate::chain::{BitcoinNetwork, EthereumNetwork};
    use std::str::FromStr;

    #[test]
    fn bip21_uri() {
        let Address::Bitcoin(a) = Address::parse(
            Network::Bitcoin(BitcoinNetwork::Mainnet),
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        )
        .unwrap() else {
            unreachable!()
        };
        assert_eq!(
            bip21(&a, Amount::from_base_units(1_500_000), Some("swap 1/2")),
            "bitcoin:bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4?amount=0.015&label=swap%201%2F2"
        );
    }

    #[test]
    fn eip681_uris() {
        let to = alloy_primitives::Address::from_str("0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359")
            .unwrap();
        let eth = AssetSpec {
            id: AssetId::new("ETH").unwrap(),
            network: Network::Ethereum(EthereumNetwork::Mainnet),
            kind: AssetKind::Native,
            decimals: 18,
        };
        assert_eq!(
            eip681(
                &eth,
                &to,
                Amount::from_base_units(2_014_000_000_000_000_000)
            )
            .unwrap(),
            "ethereum:0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359@1?value=2014000000000000000"
        );
        let usdc = AssetSpec {
            id: AssetId::new("USDC").unwrap(),
            network: Network::Ethereum(EthereumNetwork::Mainnet),
            kind: AssetKind::Erc20 {
                contract: Address::parse(
                    Network::Ethereum(EthereumNetwork::Mainnet),
                    "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
                )
                .unwrap(),
            },
            decimals: 6,
        };
        assert_eq!(
            eip681(&usdc, &to, Amount::from_base_units(1_000_000)).unwrap(),
            "ethereum:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48@1/transfer?address=0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359&uint256=1000000"
        );
    }
}
