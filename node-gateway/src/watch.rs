//! The watch list in memory: per network, the scripts (Bitcoin) or 20-byte
//! addresses (Ethereum) whose incoming payments and the txids whose fate the
//! engine wants to hear about; and matching blocks and transactions against it.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use bitcoin::{Block, ScriptBuf, Transaction};
use proto::{Amount, AssetId, Network};

use crate::eth_rpc::{EthBlock, EthTransaction};
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
