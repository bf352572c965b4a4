//! The watch list in memory: per network, the scripts (Bitcoin) or 20-byte
//! addresses (Ethereum) whose incoming payments and the txids whose fate the
//! engine wants to hear about; and matching blocks and transactions against it.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use alloy_primitives::U256;
use bitcoin::{Block, ScriptBuf, Transaction};
use proto::{Amount, AssetId, Network};

use crate::eth_rpc::{EthBlock, EthLog, EthTransaction, ERC20_TRANSFER_TOPIC};
use crate::tracker::Matched;

#[derive(Debug, Default)]
struct NetworkWatch {
    /// script_pubkey → canonical address.
    scripts: HashMap<ScriptBuf, String>,
    /// 20-byte address → canonical (checksummed) address.
    eth_addresses: HashMap<[u8; 20], String>,
    /// Canonical txids (Bitcoin display hex, Ethereum 0x-lowercase).
    txids: HashSet<String>,
    /// Txids watched since the follower last asked (it rechecks the mempool).
    new_txids: Vec<String>,
}

/// The watch list. Reads never wait on I/O; a write holds the lock for one
/// insert.
#[derive(Debug, Default)]
pub struct WatchList {
    inner: RwLock<HashMap<Network, NetworkWatch>>,
}

impl WatchList {
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Network, NetworkWatch>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Network, NetworkWatch>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `find` over `network`'s watch list (nothing when it has none).
    fn matching(
        &self,
        network: Network,
        find: impl FnOnce(&NetworkWatch, &mut Vec<Matched>),
    ) -> Vec<Matched> {
        let r = self.read();
        let mut out = Vec::new();
        if let Some(net) = r.get(&network) {
            find(net, &mut out);
        }
        out
    }

    /// Watches a validated address; returns its canonical spelling (the one
    /// events carry).
    pub fn add_address(&self, network: Network, address: &proto::Address) -> String {
        let canonical = address.to_string();
        let mut w = self.write();
        let net = w.entry(network).or_default();
        match address {
            proto::Address::Bitcoin(a) => {
                net.scripts.insert(a.script_pubkey(), canonical.clone());
            }
            proto::Address::Ethereum(a) => {
                net.eth_addresses.insert(a.into_array(), canonical.clone());
            }
        }
        canonical
    }

    /// Watches a canonical txid.
    pub fn add_txid(&self, network: Network, txid: &str) {
        let mut w = self.write();
        let net = w.entry(network).or_default();
        if net.txids.insert(txid.to_owned()) {
            net.new_txids.push(txid.to_owned());
        }
    }

    /// Txids watched since the last call.
    pub fn take_new_txids(&self, network: Network) -> Vec<String> {
        let mut w = self.write();
        w.get_mut(&network)
            .map(|n| std::mem::take(&mut n.new_txids))
            .unwrap_or_default()
    }

    pub fn watches_txid(&self, network: Network, txid: &str) -> bool {
        self.read()
            .get(&network)
            .is_some_and(|n| n.txids.contains(txid))
    }

    /// How many addresses and txids are watched on `network`.
    pub fn len(&self, network: Network) -> usize {
        self.read().get(&network).map_or(0, |n| {
            n.scripts.len() + n.eth_addresses.len() + n.txids.len()
        })
    }

    pub fn is_empty(&self, network: Network) -> bool {
        self.len(network) == 0
    }

    /// Watched outputs and the watched txid in one Bitcoin transaction.
    pub fn match_bitcoin_tx(
        &self,
        network: Network,
        tx: &Transaction,
        asset: &AssetId,
    ) -> Vec<Matched> {
        self.matching(network, |net, out| {
            match_tx_in(net, tx, asset, out);
        })
    }

    /// Watched outputs and watched txids in a Bitcoin block, in block order.
    pub fn match_bitcoin_block(
        &self,
        network: Network,
        block: &Block,
        asset: &AssetId,
    ) -> Vec<Matched> {
        self.matching(network, |net, out| {
            for tx in &block.txdata {
                match_tx_in(net, tx, asset, out);
            }
        })
    }

    /// Native transfers to watched addresses and watched transaction hashes
    /// in an Ethereum block.
    pub fn match_eth_block(
        &self,
        network: Network,
        block: &EthBlock,
        asset: &AssetId,
    ) -> Vec<Matched> {
        self.matching(network, |net, out| {
            for tx in &block.transactions {
                match_eth_tx_in(net, tx, asset, out);
            }
        })
    }

    /// A native transfer to a watched address, or a watched hash, in one
    /// Ethereum transaction.
    pub fn match_eth_tx(
        &self,
        network: Network,
        tx: &EthTransaction,
        asset: &AssetId,
    ) -> Vec<Matched> {
        self.matching(network, |net, out| {
            match_eth_tx_in(net, tx, asset, out);
        })
    }
}

/// The recipient and value of an ERC-20 `Transfer` log; `None` for any
/// other log.
fn erc20_transfer_to(log: &EthLog) -> Option<([u8; 20], U256)> {
    // Transfer(address indexed from, address indexed to, uint256 value):
    // three topics, the value in 32 bytes of data. ERC-721's Transfer has
    // the same signature with the token id as a fourth topic: not this.
    if log.removed || log.topics.len() != 3 || log.topics[0] != ERC20_TRANSFER_TOPIC {
        return None;
    }
    if log.data.len() != 32 {
        return None;
    }
    let to = &log.topics[2].0;
    if to[..12].iter().any(|b| *b != 0) {
        return None;
    }
    let mut addr = [0u8; 20];
    addr.copy_from_slice(&to[12..]);
    Some((addr, U256::from_be_slice(&log.data)))
}

impl WatchList {
    /// ERC-20 `Transfer`s to watched addresses among `logs`, each reported
    /// as an output whose index is the log's index in its block; `asset_of`
    /// names the asset of a configured token contract (other contracts'
    /// logs are ignored). Zero-value transfers are not deposits.
    pub fn match_erc20_logs(
        &self,
        network: Network,
        logs: &[EthLog],
        asset_of: impl Fn(&alloy_primitives::Address) -> Option<AssetId>,
    ) -> Vec<Matched> {
        self.matching(network, |net, out| {
            for log in logs {
                let Some((to, value)) = erc20_transfer_to(log) else {
                    continue;
                };
                let Some(address) = net.eth_addresses.get(&to) else {
                    continue;
                };
                let (Some(asset), Some(tx), Some(index)) =
                    (asset_of(&log.address), log.transaction_hash, log.log_index)
                else {
                    continue;
                };
                let txid = format!("0x{}", hex::encode(tx));
                let Ok(output) = u32::try_from(index.to::<u64>()) else {
                    tracing::warn!(%txid, "log index beyond 32 bits; not reported");
                    continue;
                };
                let Ok(units) = u128::try_from(value) else {
                    tracing::warn!(%txid, output, "token transfer does not fit 128 bits; not reported");
                    continue;
                };
                if units == 0 {
                    continue;
                }
                out.push(Matched::Output {
                    txid,
                    output,
                    address: address.clone(),
                    asset,
                    amount: Amount::from_base_units(units),
                });
            }
        })
    }
}

fn match_eth_tx_in(
    net: &NetworkWatch,
    tx: &EthTransaction,
    asset: &AssetId,
    out: &mut Vec<Matched>,
) {
    let txid = format!("0x{}", hex::encode(tx.hash));
    if let Some(to) = tx.to {
        if let Some(address) = net.eth_addresses.get(&to.into_array()) {
            if let Ok(wei) = u128::try_from(tx.value) {
                if wei > 0 {
                    out.push(Matched::Output {
                        txid: txid.clone(),
                        output: 0,
                        address: address.clone(),
                        asset: asset.clone(),
                        amount: Amount::from_base_units(wei),
                    });
                }
            } else {
                tracing::warn!(%txid, "transfer value does not fit 128 bits; not reported");
            }
        }
    }
    if net.txids.contains(&txid) {
        out.push(Matched::Tx { txid });
    }
}

fn match_tx_in(net: &NetworkWatch, tx: &Transaction, asset: &AssetId, out: &mut Vec<Matched>) {
    let mut txid: Option<String> = None;
    for (vout, o) in tx.output.iter().enumerate() {
        if let Some(address) = net.scripts.get(&o.script_pubkey) {
            let id = txid
                .get_or_insert_with(|| tx.compute_txid().to_string())
                .clone();
            out.push(Matched::Output {
                txid: id,
                output: vout as u32,
                address: address.clone(),
                asset: asset.clone(),
                amount: Amount::from_base_units(u128::from(o.value.to_sat())),
            });
        }
    }
    if !net.txids.is_empty() {
        let id = txid.get_or_insert_with(|| tx.compute_txid().to_string());
        if net.txids.contains(id.as_str()) {
            out.push(Matched::Tx { txid: id.clone() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, Bytes, B256, U64};
    use proto::EthereumNetwork;

    const NET: Network = Network::Ethereum(EthereumNetwork::Dev);

    fn transfer(token: Address, to: Address, value: u128, index: u64) -> EthLog {
        let mut data = [0u8; 32];
        data[16..].copy_from_slice(&value.to_be_bytes());
        EthLog {
            address: token,
            topics: vec![
                ERC20_TRANSFER_TOPIC,
                Address::repeat_byte(0x01).into_word(),
                to.into_word(),
            ],
            data: Bytes::copy_from_slice(&data),
            log_index: Some(U64::from(index)),
            transaction_hash: Some(B256::repeat_byte(0xee)),
            block_hash: Some(B256::repeat_byte(0xbb)),
            removed: false,
        }
    }

    #[test]
    fn erc20_transfers_to_watched_addresses_of_configured_tokens_match() {
        let watch = WatchList::new();
        let me = Address::repeat_byte(0x42);
        let other = Address::repeat_byte(0x43);
        let token = Address::repeat_byte(0x70);
        let unknown_token = Address::repeat_byte(0x71);
        let canonical = watch.add_address(
            NET,
            &proto::Address::parse(NET, &format!("{me:#x}")).unwrap(),
        );
        let usdc = AssetId::new("USDC").unwrap();
        let mut nft = transfer(token, me, 5, 4);
        nft.topics.push(B256::ZERO);
        let mut removed = transfer(token, me, 5, 5);
        removed.removed = true;
        let logs = vec![
            transfer(token, me, 1_000_000, 2),
            transfer(token, other, 7, 3),
            nft,
            removed,
            transfer(unknown_token, me, 9, 6),
            transfer(token, me, 0, 7),
            transfer(token, me, 250, 8),
        ];
        let m = watch.match_erc20_logs(NET, &logs, |c| (*c == token).then(|| usdc.clone()));
        let txid = format!("0x{}", "ee".repeat(32));
        let want = |output, units| Matched::Output {
            txid: txid.clone(),
            output,
            address: canonical.clone(),
            asset: usdc.clone(),
            amount: Amount::from_base_units(units),
        };
        assert_eq!(m, vec![want(2, 1_000_000), want(8, 250)]);
    }
}
