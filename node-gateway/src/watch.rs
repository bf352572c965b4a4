//! The watch list in memory: per network, the scripts (Bitcoin) or 20-byte
//! addresses (Ethereum) whose incoming payments and the txids whose fate the
//! engine wants to hear about; and matching blocks and transactions against it.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use alloy_primitives::U256;
use bitcoin::{Block, OutPoint, Script, ScriptBuf, Transaction, Txid};
use proto::{Amount, AssetId, Network};

use crate::eth_rpc::{EthBlock, EthLog, EthTransaction, ERC20_TRANSFER_TOPIC};
use crate::tracker::Matched;

/// Hash maps keyed by data the watch list owns, probed with data from blocks:
/// a fast hash seeded per process (an attacker cannot grow our tables, and
/// cannot predict the seed either).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// The longest script kept inline: P2TR and P2WSH (34 bytes); P2WPKH,
/// P2PKH and P2SH are shorter. Longer (non-standard-output) scripts go to a
/// side table.
const INLINE_SCRIPT: usize = 34;

/// A script's bytes stored inline, so a lookup touches one table slot and no
/// heap allocation: with a million watched scripts the cache misses of a
/// pointer per key were most of the matching time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ScriptKey {
    len: u8,
    bytes: [u8; INLINE_SCRIPT],
}

impl ScriptKey {
    fn new(script: &Script) -> Option<Self> {
        let b = script.as_bytes();
        if b.len() > INLINE_SCRIPT {
            return None;
        }
        let mut bytes = [0u8; INLINE_SCRIPT];
        bytes[..b.len()].copy_from_slice(b);
        Some(ScriptKey {
            len: b.len() as u8,
            bytes,
        })
    }
}

#[derive(Debug, Default)]
struct NetworkWatch {
    /// Watched script_pubkeys of up to 34 bytes; the address is derived from
    /// the script when one matches (the same spelling `add_address` returns).
    scripts: FastSet<ScriptKey>,
    /// Longer watched scripts → canonical address.
    long_scripts: FastMap<ScriptBuf, String>,
    /// 20-byte address → canonical (checksummed) address.
    eth_addresses: FastMap<[u8; 20], String>,
    /// Canonical txids (Bitcoin display hex, Ethereum 0x-lowercase).
    txids: HashSet<String>,
    /// Bitcoin: outpoints spent by a watched transaction → its txid. A block
    /// transaction is hashed only if it spends one of these or pays a
    /// watched script.
    spends: FastMap<OutPoint, Txid>,
    /// Bitcoin: watched txids whose inputs are not known (watched by txid
    /// alone, or reloaded after a restart). While any exist, every
    /// transaction is hashed to find them: correct, and slower.
    blind: HashSet<String>,
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
                let script = a.script_pubkey();
                match ScriptKey::new(&script) {
                    Some(key) => {
                        net.scripts.insert(key);
                    }
                    None => {
                        net.long_scripts.insert(script, canonical.clone());
                    }
                }
            }
            proto::Address::Ethereum(a) => {
                net.eth_addresses.insert(a.into_array(), canonical.clone());
            }
        }
        canonical
    }

    /// Watches a canonical txid. On Bitcoin, until [`WatchList::add_spend`]
    /// tells which outpoints it spends, finding it costs a hash of every
    /// transaction.
    pub fn add_txid(&self, network: Network, txid: &str) {
        let mut w = self.write();
        let net = w.entry(network).or_default();
        if net.txids.insert(txid.to_owned()) {
            net.new_txids.push(txid.to_owned());
            if matches!(network, Network::Bitcoin(_)) {
                net.blind.insert(txid.to_owned());
            }
        }
    }

    /// Watches Bitcoin transaction `tx` by the outpoints it spends: a block
    /// or mempool transaction is hashed only when it spends one of them (or
    /// pays a watched script), so finding the engine's own transactions
    /// costs nothing for the others.
    pub fn add_spend(&self, network: Network, tx: &Transaction) {
        let txid = tx.compute_txid();
        let canonical = txid.to_string();
        let mut w = self.write();
        let net = w.entry(network).or_default();
        for input in &tx.input {
            net.spends.insert(input.previous_output, txid);
        }
        net.blind.remove(&canonical);
        if net.txids.insert(canonical.clone()) {
            net.new_txids.push(canonical);
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
            n.scripts.len() + n.long_scripts.len() + n.eth_addresses.len() + n.txids.len()
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
            match_tx_in(net, network, tx, asset, out);
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
                match_tx_in(net, network, tx, asset, out);
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

/// `transfer(address,uint256)`.
const TRANSFER_SELECTOR: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
/// `transferFrom(address,address,uint256)`.
const TRANSFER_FROM_SELECTOR: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];

/// The ABI word at `i` (after the selector) as an address; `None` when the
/// calldata is too short or the word has high bits set (the call reverts).
fn abi_address(input: &[u8], i: usize) -> Option<[u8; 20]> {
    let w = input.get(4 + 32 * i..4 + 32 * (i + 1))?;
    if w[..12].iter().any(|b| *b != 0) {
        return None;
    }
    let mut a = [0u8; 20];
    a.copy_from_slice(&w[12..]);
    Some(a)
}

fn abi_uint(input: &[u8], i: usize) -> Option<U256> {
    input
        .get(4 + 32 * i..4 + 32 * (i + 1))
        .map(U256::from_be_slice)
}

/// The recipient and value of a direct ERC-20 `transfer` or `transferFrom`
/// call; `None` for any other calldata.
fn erc20_call_to(input: &[u8]) -> Option<([u8; 20], U256)> {
    match input.get(..4)? {
        s if s == TRANSFER_SELECTOR => Some((abi_address(input, 0)?, abi_uint(input, 1)?)),
        s if s == TRANSFER_FROM_SELECTOR => {
            abi_address(input, 0)?;
            Some((abi_address(input, 1)?, abi_uint(input, 2)?))
        }
        _ => None,
    }
}

/// The `output` of the `n`-th (from 0) token `Transfer` of a transaction:
/// 1 + n, so that it never collides with the native transfer (output 0).
fn token_output(n: usize) -> Option<u32> {
    u32::try_from(n).ok()?.checked_add(1)
}

impl WatchList {
    /// ERC-20 `Transfer`s to watched addresses among `logs` (one block's
    /// logs in log-index order), each reported as output 1 + n where n
    /// counts the configured tokens' `Transfer` logs before it in the same
    /// transaction (see [`proto::event::ChainEvent::Output`]); `asset_of`
    /// names the asset of a configured token contract (other contracts'
    /// logs are ignored). Zero-value transfers are not deposits.
    pub fn match_erc20_logs(
        &self,
        network: Network,
        logs: &[EthLog],
        asset_of: impl Fn(&alloy_primitives::Address) -> Option<AssetId>,
    ) -> Vec<Matched> {
        self.matching(network, |net, out| {
            let mut sorted: Vec<&EthLog> = logs.iter().collect();
            sorted.sort_by_key(|l| l.log_index);
            // Transfers of configured tokens counted so far, per transaction.
            let mut per_tx: HashMap<alloy_primitives::B256, usize> = HashMap::new();
            for log in sorted {
                let Some((to, value)) = erc20_transfer_to(log) else {
                    continue;
                };
                let (Some(asset), Some(tx)) = (asset_of(&log.address), log.transaction_hash)
                else {
                    continue;
                };
                let n = per_tx.entry(tx).or_default();
                let nth = *n;
                *n += 1;
                let Some(address) = net.eth_addresses.get(&to) else {
                    continue;
                };
                let txid = format!("0x{}", hex::encode(tx));
                let Some(output) = token_output(nth) else {
                    tracing::warn!(%txid, "more token transfers in one transaction than outputs; not reported");
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

    /// A pending transaction calling `transfer` or `transferFrom` on a
    /// configured token (`asset_of`) for a watched address: the deposit it
    /// will be once mined, as output 1 (its one `Transfer` log, the first
    /// of the transaction). A token whose transfer emits other `Transfer`s
    /// first, or moves another amount (fee-on-transfer), is confirmed under
    /// what its logs say: the mined logs are the deposit, this is a
    /// forecast. Calls through other contracts are seen only when mined.
    pub fn match_erc20_call(
        &self,
        network: Network,
        tx: &EthTransaction,
        asset_of: impl Fn(&alloy_primitives::Address) -> Option<AssetId>,
    ) -> Vec<Matched> {
        let Some(contract) = tx.to else {
            return Vec::new();
        };
        let Some(asset) = asset_of(&contract) else {
            return Vec::new();
        };
        let Some((to, value)) = erc20_call_to(&tx.input) else {
            return Vec::new();
        };
        self.matching(network, |net, out| {
            let Some(address) = net.eth_addresses.get(&to) else {
                return;
            };
            let Ok(units) = u128::try_from(value) else {
                return;
            };
            if units == 0 {
                return;
            }
            out.push(Matched::Output {
                txid: format!("0x{}", hex::encode(tx.hash)),
                output: 1,
                address: address.clone(),
                asset,
                amount: Amount::from_base_units(units),
            });
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
        // Whether it reverted is read from its receipt by the follower.
        out.push(Matched::Tx {
            txid,
            reverted: false,
        });
    }
}

fn match_tx_in(
    net: &NetworkWatch,
    network: Network,
    tx: &Transaction,
    asset: &AssetId,
    out: &mut Vec<Matched>,
) {
    // Hashing a transaction costs more than all its lookups: do it only for
    // transactions that touch the watch list.
    let mut txid: Option<String> = None;
    for (vout, o) in tx.output.iter().enumerate() {
        let Some(address) = watched_address(net, network, &o.script_pubkey) else {
            continue;
        };
        let id = txid
            .get_or_insert_with(|| tx.compute_txid().to_string())
            .clone();
        out.push(Matched::Output {
            txid: id,
            output: vout as u32,
            address,
            asset: asset.clone(),
            amount: Amount::from_base_units(u128::from(o.value.to_sat())),
        });
    }
    if net.txids.is_empty() {
        return;
    }
    let spends_watched = !net.spends.is_empty()
        && tx
            .input
            .iter()
            .any(|i| net.spends.contains_key(&i.previous_output));
    if txid.is_some() || spends_watched || !net.blind.is_empty() {
        let id = txid.get_or_insert_with(|| tx.compute_txid().to_string());
        if net.txids.contains(id.as_str()) {
            out.push(Matched::Tx {
                txid: id.clone(),
                reverted: false,
            });
        }
    }
}

/// The canonical address of `script` if it is watched.
fn watched_address(net: &NetworkWatch, network: Network, script: &Script) -> Option<String> {
    match ScriptKey::new(script) {
        Some(key) => {
            if !net.scripts.contains(&key) {
                return None;
            }
            let Network::Bitcoin(b) = network else {
                return None;
            };
            bitcoin::Address::from_script(script, b.to_bitcoin())
                .ok()
                .map(|a| a.to_string())
        }
        None => net.long_scripts.get(script).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::transaction::Version;
    use bitcoin::{Sequence, TxIn, TxOut, WPubkeyHash, Witness};
    use proto::BitcoinNetwork;

    const NET: Network = Network::Bitcoin(BitcoinNetwork::Regtest);

    fn btc() -> AssetId {
        AssetId::new("BTC").expect("ticker")
    }

    fn p2wpkh(n: u8) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
    }

    fn spend(prev: u8, vout: u32, to: ScriptBuf) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::from_byte_array([prev; 32]), vout),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::from_slice(&[vec![1u8; 72], vec![2u8; 33]]),
            }],
            output: vec![TxOut {
                value: bitcoin::Amount::from_sat(10_000),
                script_pubkey: to,
            }],
        }
    }

    fn watch_script(list: &WatchList, script: &Script) -> String {
        let a = bitcoin::Address::from_script(script, bitcoin::Network::Regtest).expect("standard");
        list.add_address(NET, &proto::Address::Bitcoin(a))
    }

    #[test]
    fn a_transaction_watched_by_its_inputs_is_found_and_a_conflict_is_not_it() {
        let list = WatchList::new();
        let payout = spend(1, 0, p2wpkh(9));
        let id = payout.compute_txid().to_string();
        list.add_txid(NET, &id);
        list.add_spend(NET, &payout);
        assert!(list.read()[&NET].blind.is_empty(), "no longer hashed blind");
        assert_eq!(
            list.match_bitcoin_tx(NET, &payout, &btc()),
            vec![Matched::Tx {
                txid: id.clone(),
                reverted: false
            }]
        );
        // Another transaction spending the same outpoint is not the payout.
        let conflict = spend(1, 0, p2wpkh(8));
        assert!(list.match_bitcoin_tx(NET, &conflict, &btc()).is_empty());
        // Unrelated transactions are not reported.
        assert!(list
            .match_bitcoin_tx(NET, &spend(2, 0, p2wpkh(9)), &btc())
            .is_empty());
    }

    #[test]
    fn a_txid_watched_without_its_inputs_is_still_found() {
        let list = WatchList::new();
        let own = spend(3, 1, p2wpkh(7));
        let id = own.compute_txid().to_string();
        list.add_txid(NET, &id);
        assert_eq!(
            list.match_bitcoin_tx(NET, &own, &btc()),
            vec![Matched::Tx {
                txid: id,
                reverted: false
            }]
        );
    }

    #[test]
    fn inline_and_long_scripts_match_with_their_canonical_address() {
        let list = WatchList::new();
        // P2TR (34 bytes, inline) and a version-2 witness program of 40
        // bytes (a standard output type, kept in the side table).
        let p2tr = ScriptBuf::from_bytes([vec![0x51, 0x20], vec![5u8; 32]].concat());
        let long = ScriptBuf::from_bytes([vec![0x52, 40], vec![6u8; 40]].concat());
        assert!(long.len() > INLINE_SCRIPT);
        let a_tr = watch_script(&list, &p2tr);
        let a_long = watch_script(&list, &long);
        for (script, address) in [(p2tr, a_tr), (long, a_long)] {
            let tx = spend(4, 0, script);
            let m = list.match_bitcoin_tx(NET, &tx, &btc());
            assert_eq!(m.len(), 1, "{address}");
            assert!(matches!(&m[0], Matched::Output { address: a, .. } if *a == address));
        }
        assert_eq!(list.len(NET), 2);
    }
}

#[cfg(test)]
mod erc20_tests {
    use super::*;
    use alloy_primitives::{Address, Bytes, B256, U256, U64};
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
        // Outputs count the token's transfers in the transaction (the one
        // to `other` and the zero-value one too), from 1.
        assert_eq!(m, vec![want(1, 1_000_000), want(4, 250)]);
    }

    /// A transaction paying ETH and a token transfer to one address: the
    /// native output is 0, the token's 1, whatever the log's block index.
    #[test]
    fn native_and_token_transfers_in_one_transaction_are_distinct_outputs() {
        let watch = WatchList::new();
        let me = Address::repeat_byte(0x42);
        let token = Address::repeat_byte(0x70);
        watch.add_address(
            NET,
            &proto::Address::parse(NET, &format!("{me:#x}")).unwrap(),
        );
        let usdc = AssetId::new("USDC").unwrap();
        let eth = AssetId::new("ETH").unwrap();
        let tx = EthTransaction {
            hash: B256::repeat_byte(0xee),
            from: Address::repeat_byte(0x01),
            to: Some(me),
            value: U256::from(7u64),
            nonce: U64::from(0u64),
            input: Bytes::new(),
        };
        let native = watch.match_eth_tx(NET, &tx, &eth);
        let tokens =
            watch.match_erc20_logs(NET, &[transfer(token, me, 5, 0)], |_| Some(usdc.clone()));
        let outputs: Vec<u32> = native
            .iter()
            .chain(&tokens)
            .map(|m| match m {
                Matched::Output { output, .. } => *output,
                Matched::Tx { .. } => u32::MAX,
            })
            .collect();
        assert_eq!(outputs, vec![0, 1]);
    }

    fn call(selector: [u8; 4], words: &[[u8; 32]]) -> Bytes {
        let mut data = selector.to_vec();
        for w in words {
            data.extend(w);
        }
        Bytes::from(data)
    }

    fn pending(to: Address, input: Bytes) -> EthTransaction {
        EthTransaction {
            hash: B256::repeat_byte(0xdd),
            from: Address::repeat_byte(0x01),
            to: Some(to),
            value: U256::ZERO,
            nonce: U64::from(3u64),
            input,
        }
    }

    #[test]
    fn pending_transfer_calls_on_configured_tokens_match_as_output_1() {
        let watch = WatchList::new();
        let me = Address::repeat_byte(0x42);
        let other = Address::repeat_byte(0x43);
        let token = Address::repeat_byte(0x70);
        let canonical = watch.add_address(
            NET,
            &proto::Address::parse(NET, &format!("{me:#x}")).unwrap(),
        );
        let usdc = AssetId::new("USDC").unwrap();
        let asset_of = |c: &Address| (*c == token).then(|| usdc.clone());
        let amount = U256::from(1_500_000u64).to_be_bytes::<32>();
        let want = vec![Matched::Output {
            txid: format!("0x{}", "dd".repeat(32)),
            output: 1,
            address: canonical,
            asset: usdc.clone(),
            amount: Amount::from_base_units(1_500_000),
        }];
        let cases: Vec<(EthTransaction, bool)> = vec![
            (
                pending(token, call(TRANSFER_SELECTOR, &[me.into_word().0, amount])),
                true,
            ),
            (
                pending(
                    token,
                    call(
                        TRANSFER_FROM_SELECTOR,
                        &[other.into_word().0, me.into_word().0, amount],
                    ),
                ),
                true,
            ),
            // To someone else, from us, on another contract, zero, short,
            // dirty address bits, another function.
            (
                pending(
                    token,
                    call(TRANSFER_SELECTOR, &[other.into_word().0, amount]),
                ),
                false,
            ),
            (
                pending(
                    token,
                    call(
                        TRANSFER_FROM_SELECTOR,
                        &[me.into_word().0, other.into_word().0, amount],
                    ),
                ),
                false,
            ),
            (
                pending(other, call(TRANSFER_SELECTOR, &[me.into_word().0, amount])),
                false,
            ),
            (
                pending(token, call(TRANSFER_SELECTOR, &[me.into_word().0, [0; 32]])),
                false,
            ),
            (
                pending(token, call(TRANSFER_SELECTOR, &[me.into_word().0])),
                false,
            ),
            (
                pending(token, call(TRANSFER_SELECTOR, &[[0xff; 32], amount])),
                false,
            ),
            (
                pending(
                    token,
                    call([0x09, 0x5e, 0xa7, 0xb3], &[me.into_word().0, amount]),
                ),
                false,
            ),
        ];
        for (i, (tx, matches)) in cases.into_iter().enumerate() {
            let got = watch.match_erc20_call(NET, &tx, asset_of);
            let expected = if matches { want.clone() } else { Vec::new() };
            assert_eq!(got, expected, "case {i}");
        }
    }
}
