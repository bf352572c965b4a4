//! The pure core of a chain follower, without I/O: [`ChainTracker`] keeps the
//! recent blocks of the followed chain with what matched the watch list in
//! each, connects and disconnects blocks and says which chain events that
//! makes; [`MempoolTracker`] turns mempool snapshots into seen and dropped
//! events.

use std::collections::{HashMap, HashSet, VecDeque};

use bitcoin::Transaction;
use proto::event::{ChainEvent, TxStatus};
use proto::{Amount, AssetId, Network};

/// A block's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub height: u64,
    pub hash: String,
    pub parent_hash: String,
}

/// Something in a block or mempool transaction the watch list asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    /// An output paying a watched address.
    Output {
        txid: String,
        output: u32,
        address: String,
        asset: AssetId,
        amount: Amount,
    },
    /// A watched transaction; `reverted` when it was mined but failed
    /// (Ethereum receipt status 0).
    Tx { txid: String, reverted: bool },
}

impl Matched {
    /// What matched, read back from an event about it.
    pub fn of_event(event: &ChainEvent) -> Option<Matched> {
        match event {
            ChainEvent::Output {
                txid,
                output,
                address,
                asset,
                amount,
                ..
            } => Some(Matched::Output {
                txid: txid.clone(),
                output: *output,
                address: address.clone(),
                asset: asset.clone(),
                amount: *amount,
            }),
            ChainEvent::Transaction { txid, reverted, .. } => Some(Matched::Tx {
                txid: txid.clone(),
                reverted: *reverted,
            }),
            _ => None,
        }
    }

    pub fn txid(&self) -> &str {
        match self {
            Matched::Output { txid, .. } | Matched::Tx { txid, .. } => txid,
        }
    }

    /// The chain event saying that this item now has `status`.
    pub fn event(&self, network: Network, status: TxStatus) -> ChainEvent {
        match self {
            Matched::Output {
                txid,
                output,
                address,
                asset,
                amount,
            } => ChainEvent::Output {
                network,
                txid: txid.clone(),
                output: *output,
                address: address.clone(),
                asset: asset.clone(),
                amount: *amount,
                status,
            },
            Matched::Tx { txid, reverted } => ChainEvent::Transaction {
                network,
                txid: txid.clone(),
                reverted: *reverted && matches!(status, TxStatus::Confirmed { .. }),
                status,
            },
        }
    }
}

/// A recent block and what matched in it; `matches` is `None` when not
/// known (a block restored from the database and not refetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedBlock {
    pub block: BlockRef,
    pub matches: Option<Vec<Matched>>,
}

/// Why a block cannot be connected on top of the tracked tip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "block {hash} at height {height} does not extend the tip {tip_hash} at height {tip_height}"
    )]
    NotOnTip {
        height: u64,
        hash: String,
        tip_height: u64,
        tip_hash: String,
    },
}

/// The recent blocks of the followed chain, oldest first, at most `keep`.
#[derive(Debug, Clone)]
pub struct ChainTracker {
    network: Network,
    max_depth: u64,
    keep: usize,
    blocks: VecDeque<TrackedBlock>,
}

impl ChainTracker {
    /// `max_depth`: report confirmations up to this depth (at least 1);
    /// `keep`: how many recent blocks to remember for reorgs (at least
    /// `max_depth`).
    pub fn new(network: Network, max_depth: u64, keep: usize) -> Self {
        let max_depth = max_depth.max(1);
        ChainTracker {
            network,
            max_depth,
            keep: keep.max(max_depth as usize).max(1),
            blocks: VecDeque::new(),
        }
    }

    pub fn network(&self) -> Network {
        self.network
    }

    pub fn max_depth(&self) -> u64 {
        self.max_depth
    }

    pub fn keep(&self) -> usize {
        self.keep
    }

    pub fn tip(&self) -> Option<&BlockRef> {
        self.blocks.back().map(|b| &b.block)
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn blocks(&self) -> impl Iterator<Item = &TrackedBlock> {
        self.blocks.iter()
    }

    /// `true` when the tip's matches must be supplied (by refetching the
    /// block) before it can be disconnected.
    pub fn tip_matches_unknown(&self) -> bool {
        self.blocks.back().is_some_and(|b| b.matches.is_none())
    }

    /// Supplies the tip's matches (see [`Self::tip_matches_unknown`]).
    pub fn set_tip_matches(&mut self, matches: Vec<Matched>) {
        if let Some(b) = self.blocks.back_mut() {
            b.matches = Some(matches);
        }
    }

    /// `true` when `txid` has a watched item confirmed in a tracked block.
    pub fn has_confirmed(&self, txid: &str) -> bool {
        self.blocks.iter().any(|b| {
            b.matches
                .as_ref()
                .is_some_and(|m| m.iter().any(|x| x.txid() == txid))
        })
    }

    /// Restores the tracked chain after a restart (oldest first) and returns
    /// the current confirmation of every item matched in the last
    /// `max_depth` blocks: re-emitted events carry the same ids as before.
    pub fn restore(&mut self, blocks: Vec<TrackedBlock>) -> Vec<ChainEvent> {
        self.blocks = blocks.into();
        while self.blocks.len() > self.keep {
            self.blocks.pop_front();
        }
        let mut events = Vec::new();
        let n = self.blocks.len();
        for (i, b) in self.blocks.iter().enumerate() {
            let depth = (n - i) as u64;
            if depth <= self.max_depth {
                Self::confirmations(self.network, b, depth, &mut events);
            }
        }
        events
    }

    fn confirmations(network: Network, b: &TrackedBlock, depth: u64, out: &mut Vec<ChainEvent>) {
        for m in b.matches.iter().flatten() {
            out.push(m.event(
                network,
                TxStatus::Confirmed {
                    block_height: b.block.height,
                    block_hash: b.block.hash.clone(),
                    depth,
                },
            ));
        }
    }

    /// Connects `block` on the tip (any block when nothing is tracked yet).
    /// Events: the block itself, then its matches at depth 1, then the
    /// matches of the blocks below at their new depth, up to `max_depth`.
    pub fn connect(
        &mut self,
        block: BlockRef,
        matches: Vec<Matched>,
    ) -> Result<Vec<ChainEvent>, ConnectError> {
        if let Some(tip) = self.tip() {
            if block.parent_hash != tip.hash || block.height != tip.height + 1 {
                return Err(ConnectError::NotOnTip {
                    height: block.height,
                    hash: block.hash,
                    tip_height: tip.height,
                    tip_hash: tip.hash.clone(),
                });
            }
        }
        let mut events = vec![ChainEvent::BlockConnected {
            network: self.network,
            height: block.height,
            hash: block.hash.clone(),
            parent_hash: block.parent_hash.clone(),
        }];
        self.blocks.push_back(TrackedBlock {
            block,
            matches: Some(matches),
        });
        while self.blocks.len() > self.keep {
            self.blocks.pop_front();
        }
        for (i, b) in self.blocks.iter().rev().enumerate() {
            let depth = i as u64 + 1;
            if depth > self.max_depth {
                break;
            }
            Self::confirmations(self.network, b, depth, &mut events);
        }
        Ok(events)
    }

    /// Removes the tip (a reorganisation): the block's disconnection, then
    /// every item matched in it unconfirmed. `None` when nothing is tracked.
    /// Supply unknown matches first ([`Self::tip_matches_unknown`]).
    pub fn disconnect_tip(&mut self) -> Option<(BlockRef, Vec<ChainEvent>)> {
        let b = self.blocks.pop_back()?;
        let mut events = vec![ChainEvent::BlockDisconnected {
            network: self.network,
            height: b.block.height,
            hash: b.block.hash.clone(),
        }];
        for m in b.matches.iter().flatten() {
            events.push(m.event(
                self.network,
                TxStatus::Unconfirmed {
                    block_hash: b.block.hash.clone(),
                },
            ));
        }
        Some((b.block, events))
    }

    /// One step of the walk back to the common ancestor: given the node's
    /// best-chain hash at the tip's height (`None` when the node's chain is
    /// shorter), disconnects the tip if it is no longer in the best chain.
    /// Returns `None` once the tip is in the node's chain (or nothing is
    /// tracked).
    pub fn step_back_if_stale(
        &mut self,
        node_hash_at_tip: Option<&str>,
    ) -> Option<(BlockRef, Vec<ChainEvent>)> {
        let tip = self.tip()?;
        if node_hash_at_tip == Some(tip.hash.as_str()) {
            return None;
        }
        self.disconnect_tip()
    }
}

#[derive(Debug, Clone)]
struct SeenTx {
    inputs: Vec<String>,
    matches: Vec<Matched>,
}

/// What the follower knows of the node's mempool: every transaction it has
/// looked at, what they spend (Bitcoin outpoints `txid:vout`, Ethereum
/// `sender:nonce`), and the watched ones it reported seen.
#[derive(Debug, Clone)]
pub struct MempoolTracker {
    network: Network,
    /// Every mempool txid already fetched and matched.
    known: HashSet<String>,
    /// Inputs of the known transactions, to name a replacement.
    spenders: HashMap<String, String>,
    inputs: HashMap<String, Vec<String>>,
    /// Watched transactions reported seen and not yet confirmed or dropped.
    seen: HashMap<String, SeenTx>,
    /// Watched transactions of blocks a reorganisation removed, expected
    /// back in the mempool (see [`MempoolTracker::unconfirmed`]).
    returning: HashMap<String, Vec<Matched>>,
}

impl MempoolTracker {
    pub fn new(network: Network) -> Self {
        MempoolTracker {
            network,
            known: HashSet::new(),
            spenders: HashMap::new(),
            inputs: HashMap::new(),
            seen: HashMap::new(),
            returning: HashMap::new(),
        }
    }

    /// The txids of `mempool` not looked at yet.
    pub fn unknown<'a>(&self, mempool: &'a [String]) -> Vec<&'a String> {
        mempool
            .iter()
            .filter(|t| !self.known.contains(*t))
            .collect()
    }

    /// Forgets a transaction so the next snapshot looks at it again (after
    /// its txid is newly watched).
    pub fn forget(&mut self, txid: &str) {
        if self.known.remove(txid) {
            if let Some(inputs) = self.inputs.remove(txid) {
                for i in inputs {
                    if self.spenders.get(&i).map(String::as_str) == Some(txid) {
                        self.spenders.remove(&i);
                    }
                }
            }
        }
    }

    /// Records a mempool transaction and what of it matched; returns the
    /// seen events (none when nothing matched or it was already reported).
    pub fn add(&mut self, txid: &str, tx: &Transaction, matches: Vec<Matched>) -> Vec<ChainEvent> {
        let inputs = tx
            .input
            .iter()
            .map(|i| i.previous_output.to_string())
            .collect();
        self.add_spending(txid, inputs, matches)
    }

    /// Like [`Self::add`], with what the transaction spends spelled out
    /// (for Ethereum, `sender:nonce`).
    pub fn add_spending(
        &mut self,
        txid: &str,
        inputs: Vec<String>,
        matches: Vec<Matched>,
    ) -> Vec<ChainEvent> {
        // Back in the mempool after a reorganisation: reported seen again.
        self.returning.remove(txid);
        for i in &inputs {
            self.spenders.insert(i.clone(), txid.to_owned());
        }
        self.known.insert(txid.to_owned());
        self.inputs.insert(txid.to_owned(), inputs.clone());
        if matches.is_empty() || self.seen.contains_key(txid) {
            return Vec::new();
        }
        let events = matches
            .iter()
            .map(|m| m.event(self.network, TxStatus::Seen))
            .collect();
        self.seen
            .insert(txid.to_owned(), SeenTx { inputs, matches });
        events
    }

    /// Records a transaction the node no longer has (it left the mempool
    /// before it could be fetched): it is not looked at again.
    pub fn add_gone(&mut self, txid: &str) {
        self.known.insert(txid.to_owned());
        self.returning.remove(txid);
    }

    /// Forgets the transactions that left the mempool. A watched one that
    /// `confirmed` does not know of is dropped, replaced by the mempool
    /// transaction now spending one of its inputs if there is one. Call only
    /// with a snapshot taken while the tracked tip was the node's tip.
    pub fn departed(
        &mut self,
        mempool: &HashSet<String>,
        confirmed: impl Fn(&str) -> bool,
    ) -> Vec<ChainEvent> {
        let gone: Vec<String> = self
            .known
            .iter()
            .filter(|t| !mempool.contains(*t))
            .cloned()
            .collect();
        for t in &gone {
            self.known.remove(t);
            if let Some(inputs) = self.inputs.remove(t) {
                for i in inputs {
                    if self.spenders.get(&i) == Some(t) {
                        self.spenders.remove(&i);
                    }
                }
            }
        }
        let mut events = Vec::new();
        for t in gone {
            let Some(seen) = self.seen.remove(&t) else {
                continue;
            };
            if confirmed(&t) {
                continue;
            }
            let replaced_by = seen
                .inputs
                .iter()
                .filter_map(|i| self.spenders.get(i))
                .find(|s| **s != t)
                .cloned();
            for m in &seen.matches {
                events.push(m.event(
                    self.network,
                    TxStatus::Dropped {
                        replaced_by: replaced_by.clone(),
                    },
                ));
            }
        }
        let back: Vec<String> = self
            .returning
            .keys()
            .filter(|t| !mempool.contains(*t))
            .cloned()
            .collect();
        for t in back {
            let Some(matches) = self.returning.remove(&t) else {
                continue;
            };
            if confirmed(&t) {
                continue;
            }
            for m in &matches {
                events.push(m.event(self.network, TxStatus::Dropped { replaced_by: None }));
            }
        }
        events
    }

    /// A watched transaction of a block that a reorganisation removed is
    /// pending again. Bitcoin Core returns such transactions to its mempool
    /// unless they conflict or are no longer final; one that is not in the
    /// mempool once the chain has settled is therefore reported dropped
    /// (without the replacing txid: its inputs are not known here), so no
    /// deposit waits forever for a transaction that will not come back.
    pub fn unconfirmed(&mut self, txid: &str, matches: Vec<Matched>) {
        if matches.is_empty() || self.known.contains(txid) {
            return;
        }
        self.returning.insert(txid.to_owned(), matches);
    }

    /// A transaction reported seen was confirmed in a block: it is no
    /// longer pending, so leaving the mempool later (even when a
    /// reorganisation unconfirms it) does not make it dropped. If it comes
    /// back to the mempool it is reported seen again (with the same id).
    pub fn confirmed(&mut self, txid: &str) {
        self.returning.remove(txid);
        self.seen.remove(txid);
    }

    /// Number of watched transactions currently reported seen.
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deposit(txid: &str) -> Matched {
        Matched::Output {
            txid: txid.into(),
            output: 0,
            address: "bcrt1qdeposit".into(),
            asset: AssetId::new("BTC").unwrap(),
            amount: Amount::from_base_units(50_000),
        }
    }

    #[test]
    fn a_reorganised_transaction_that_does_not_return_to_the_mempool_is_dropped() {
        let net = Network::Bitcoin(proto::BitcoinNetwork::Regtest);
        let mut m = MempoolTracker::new(net);
        // Both unconfirmed by a reorganisation; only "back" returns.
        for t in ["back", "gone", "mined"] {
            let ev = deposit(t).event(
                net,
                TxStatus::Unconfirmed {
                    block_hash: "b1".into(),
                },
            );
            m.unconfirmed(t, vec![Matched::of_event(&ev).unwrap()]);
        }
        let mempool: HashSet<String> = ["back".to_owned()].into();
        let events = m.departed(&mempool, |t| t == "mined");
        assert_eq!(events.len(), 1, "{events:?}");
        match &events[0] {
            ChainEvent::Output { txid, status, .. } => {
                assert_eq!(txid, "gone");
                assert_eq!(status, &TxStatus::Dropped { replaced_by: None });
            }
            other => panic!("{other:?}"),
        }
        // The one back in the mempool is reported seen again when fetched,
        // and confirms later: never dropped.
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: Vec::new(),
            output: Vec::new(),
        };
        let seen = m.add("back", &tx, vec![deposit("back")]);
        assert!(
            matches!(
                &seen[..],
                [ChainEvent::Output {
                    status: TxStatus::Seen,
                    ..
                }]
            ),
            "{seen:?}"
        );
        m.confirmed("back");
        assert!(m.departed(&HashSet::new(), |_| false).is_empty());
        assert_eq!(m.seen_len(), 0);
    }
}
