//! The regtest chain without I/O: block index, active chain, UTXO set with
//! undo data, transaction index, mempool with BIP125 replacement, block
//! templates, and reorganisation (invalidate/reconsider).
//!
//! Every function takes the current time as an argument; nothing here reads a
//! clock, touches a file or spawns a task.

use std::collections::{HashMap, HashSet};

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::hashes::Hash;
use bitcoin::pow::{CompactTarget, Target, Work};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Weight, Witness, Wtxid,
};

use super::verify::{verify_transaction, InputFailure};

/// Regtest's compact target (`nBits`).
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// Total supply cap in satoshis.
pub const MAX_MONEY_SATS: u64 = 21_000_000 * 100_000_000;
/// Consensus block weight limit.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// Standard transaction weight limit.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Weight reserved for the coinbase when filling a block.
const COINBASE_RESERVED_WEIGHT: u64 = 4_000;
/// Core's cap on transactions evicted by one replacement (BIP125 rule 5).
const MAX_REPLACEMENT_EVICTIONS: usize = 100;
/// Core's witness commitment header.
const WITNESS_COMMITMENT_HEADER: [u8; 4] = [0xaa, 0x21, 0xa9, 0xed];

/// Consensus and policy parameters.
#[derive(Debug, Clone)]
pub struct ChainParams {
    /// Blocks between subsidy halvings (150 on regtest).
    pub halving_interval: u32,
    /// Confirmations before a coinbase output can be spent.
    pub coinbase_maturity: u32,
    /// Minimum relay fee rate, satoshis per 1000 virtual bytes.
    pub min_relay_sat_per_kvb: u64,
    /// Fee rate that a replacement must add on top of what it replaces, sat/kvB.
    pub incremental_relay_sat_per_kvb: u64,
    /// Replace unconfirmed transactions whether or not they signal BIP125
    /// (Bitcoin Core's default since 28.0).
    pub full_rbf: bool,
}

impl Default for ChainParams {
    fn default() -> Self {
        ChainParams {
            halving_interval: 150,
            coinbase_maturity: 100,
            min_relay_sat_per_kvb: 1_000,
            incremental_relay_sat_per_kvb: 1_000,
            full_rbf: true,
        }
    }
}

/// An unspent output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output.
    pub txout: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether it is a coinbase output (subject to maturity).
    pub is_coinbase: bool,
}

/// A block the node knows, on the active chain or not.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    /// The block.
    pub block: Block,
    /// Its height.
    pub height: u32,
    /// Order in which the node first learned of it (ties between equal-work
    /// branches go to the earliest, as in Core).
    pub seq: u64,
    /// Total work of the chain ending in this block.
    pub chainwork: Work,
}

/// A transaction waiting in the mempool.
#[derive(Debug, Clone)]
pub struct MempoolEntry {
    /// The transaction.
    pub tx: Transaction,
    /// Its witness txid.
    pub wtxid: Wtxid,
    /// Fee paid (inputs minus outputs).
    pub fee: Amount,
    /// Virtual size.
    pub vsize: u64,
    /// Weight units.
    pub weight: u64,
    /// Unix time of acceptance.
    pub time: u64,
    /// Chain height when accepted.
    pub height: u32,
    /// Acceptance order (also a valid topological order).
    pub seq: u64,
}

impl MempoolEntry {
    /// Whether any input signals BIP125 replaceability.
    pub fn signals_rbf(&self) -> bool {
        self.tx.is_explicitly_rbf()
    }
}

/// How the node's answer to a rejected transaction is classified; the RPC
/// layer maps these to bitcoind's error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxReject {
    /// Policy or consensus rejection (RPC -26), with bitcoind's reason string.
    Rejected(String),
    /// An input does not exist or is already spent by the chain (RPC -25,
    /// `bad-txns-inputs-missingorspent`).
    MissingInputs,
    /// The transaction is already confirmed on the active chain (RPC -27).
    AlreadyInChain,
    /// The same transaction is already in the mempool.
    AlreadyInMempool,
}

impl TxReject {
    /// The reject reason as `testmempoolaccept` reports it.
    pub fn reason(&self) -> String {
        match self {
            TxReject::Rejected(r) => r.clone(),
            TxReject::MissingInputs => "missing-inputs".into(),
            TxReject::AlreadyInChain => "txn-already-known".into(),
            TxReject::AlreadyInMempool => "txn-already-in-mempool".into(),
        }
    }
}

fn reject(reason: impl Into<String>) -> TxReject {
    TxReject::Rejected(reason.into())
}

/// What accepting a transaction would do; computed by [`Chain::check_tx`].
#[derive(Debug, Clone)]
pub struct AcceptPlan {
    /// The transaction id.
    pub txid: Txid,
    /// The witness id.
    pub wtxid: Wtxid,
    /// Fee paid.
    pub fee: Amount,
    /// Virtual size.
    pub vsize: u64,
    /// Weight.
    pub weight: u64,
    /// Mempool transactions (and descendants) that it replaces.
    pub replaces: Vec<Txid>,
}

/// One entry of `getchaintips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// The tip block.
    pub hash: BlockHash,
    /// Its height.
    pub height: u32,
    /// Blocks between it and the active chain (0 for the active tip).
    pub branchlen: u32,
    /// `active`, `valid-fork` or `invalid`.
    pub status: &'static str,
}

/// Formats satoshis as Core's `FormatMoney` does (`0.00001000`).
pub fn format_btc(sats: u64) -> String {
    format!("{}.{:08}", sats / 100_000_000, sats % 100_000_000)
}

/// Block subsidy at `height`.
pub fn subsidy(params: &ChainParams, height: u32) -> Amount {
    let halvings = height / params.halving_interval;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat((50 * 100_000_000u64) >> halvings)
}

/// Fee for `vsize` at `sat_per_kvb`, rounded as Core's `CFeeRate::GetFee`.
pub fn fee_for(sat_per_kvb: u64, vsize: u64) -> u64 {
    let fee = u64::try_from(u128::from(sat_per_kvb) * u128::from(vsize) / 1000).unwrap_or(u64::MAX);
    if fee == 0 && vsize != 0 && sat_per_kvb != 0 {
        1
    } else {
        fee
    }
}

/// The regtest chain state.
#[derive(Debug)]
pub struct Chain {
    params: ChainParams,
    blocks: HashMap<BlockHash, BlockEntry>,
    children: HashMap<BlockHash, Vec<BlockHash>>,
    next_block_seq: u64,
    active: Vec<BlockHash>,
    utxos: HashMap<OutPoint, Coin>,
    undo: HashMap<BlockHash, Vec<Coin>>,
    tx_index: HashMap<Txid, (BlockHash, usize)>,
    /// Blocks marked invalid (explicitly, or because they failed to connect).
    invalid: HashSet<BlockHash>,
    mempool: HashMap<Txid, MempoolEntry>,
    mempool_spends: HashMap<OutPoint, Txid>,
    next_mempool_seq: u64,
}

impl Chain {
    /// A chain holding only the regtest genesis block.
    pub fn new(params: ChainParams) -> Self {
        let genesis = bitcoin::constants::genesis_block(Network::Regtest);
        let hash = genesis.block_hash();
        let mut blocks = HashMap::new();
        let chainwork = genesis.header.work();
        blocks.insert(
            hash,
            BlockEntry {
                block: genesis,
                height: 0,
                seq: 0,
                chainwork,
            },
        );
        Chain {
            params,
            blocks,
            children: HashMap::new(),
            next_block_seq: 1,
            active: vec![hash],
            utxos: HashMap::new(),
            undo: HashMap::new(),
            tx_index: HashMap::new(),
            invalid: HashSet::new(),
            mempool: HashMap::new(),
            mempool_spends: HashMap::new(),
            next_mempool_seq: 0,
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Switches full-RBF policy (Core's `-mempoolfullrbf`) on or off.
    pub fn set_full_rbf(&mut self, on: bool) {
        self.params.full_rbf = on;
    }

    // ----- queries -------------------------------------------------------

    /// Height of the active tip.
    pub fn height(&self) -> u32 {
        (self.active.len() - 1) as u32
    }

    /// Hash of the active tip.
    pub fn tip_hash(&self) -> BlockHash {
        self.active[self.active.len() - 1]
    }

    /// The active tip's entry.
    pub fn tip(&self) -> &BlockEntry {
        &self.blocks[&self.tip_hash()]
    }

    /// Hash of the active block at `height`.
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.active.get(height as usize).copied()
    }

    /// Any known block.
    pub fn block(&self, hash: &BlockHash) -> Option<&BlockEntry> {
        self.blocks.get(hash)
    }

    /// Whether the block is on the active chain.
    pub fn is_active(&self, hash: &BlockHash) -> bool {
        self.blocks
            .get(hash)
            .is_some_and(|e| self.active.get(e.height as usize) == Some(hash))
    }

    /// Confirmations of a block: depth on the active chain, -1 if not on it.
    pub fn confirmations(&self, hash: &BlockHash) -> i64 {
        match self.blocks.get(hash) {
            Some(e) if self.is_active(hash) => i64::from(self.height() - e.height) + 1,
            _ => -1,
        }
    }

    /// Median time of the 11 blocks ending at `hash`.
    pub fn median_time_past(&self, hash: &BlockHash) -> u32 {
        let mut times = Vec::with_capacity(11);
        let mut cur = Some(*hash);
        while let Some(h) = cur {
            let Some(e) = self.blocks.get(&h) else { break };
            times.push(e.block.header.time);
            if times.len() == 11 || e.height == 0 {
                break;
            }
            cur = Some(e.block.header.prev_blockhash);
        }
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// The unspent output at `outpoint` on the active chain (ignoring the mempool).
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.utxos.get(outpoint)
    }

    /// All unspent outputs on the active chain.
    pub fn utxos(&self) -> impl Iterator<Item = (&OutPoint, &Coin)> {
        self.utxos.iter()
    }

    /// Where a transaction is confirmed on the active chain.
    pub fn find_tx(&self, txid: &Txid) -> Option<(BlockHash, usize)> {
        self.tx_index.get(txid).copied()
    }

    /// The mempool entry for `txid`.
    pub fn mempool_entry(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.mempool.get(txid)
    }

    /// Mempool transactions in acceptance order (parents before children).
    pub fn mempool_in_order(&self) -> Vec<&MempoolEntry> {
        let mut v: Vec<&MempoolEntry> = self.mempool.values().collect();
        v.sort_by_key(|e| e.seq);
        v
    }

    /// Number of mempool transactions.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// The mempool transaction spending `outpoint`, if any.
    pub fn mempool_spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.mempool_spends.get(outpoint).copied()
    }

    /// Mempool transactions spending outputs of `txid`.
    pub fn mempool_children(&self, txid: &Txid) -> Vec<Txid> {
        let Some(e) = self.mempool.get(txid) else {
            return Vec::new();
        };
        let mut out: Vec<Txid> = (0..e.tx.output.len() as u32)
            .filter_map(|vout| {
                self.mempool_spends
                    .get(&OutPoint::new(*txid, vout))
                    .copied()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Mempool transactions whose outputs `txid` spends.
    pub fn mempool_parents(&self, txid: &Txid) -> Vec<Txid> {
        let Some(e) = self.mempool.get(txid) else {
            return Vec::new();
        };
        let mut out: Vec<Txid> =
            e.tx.input
                .iter()
                .map(|i| i.previous_output.txid)
                .filter(|t| self.mempool.contains_key(t))
                .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `txid` and all its in-mempool descendants.
    pub fn mempool_descendants(&self, txid: &Txid) -> Vec<Txid> {
        let mut seen = HashSet::new();
        let mut stack = vec![*txid];
        let mut out = Vec::new();
        while let Some(t) = stack.pop() {
            if !self.mempool.contains_key(&t) || !seen.insert(t) {
                continue;
            }
            out.push(t);
            stack.extend(self.mempool_children(&t));
        }
        out
    }

    /// `txid` and all its in-mempool ancestors.
    pub fn mempool_ancestors(&self, txid: &Txid) -> Vec<Txid> {
        let mut seen = HashSet::new();
        let mut stack = vec![*txid];
        let mut out = Vec::new();
        while let Some(t) = stack.pop() {
            if !self.mempool.contains_key(&t) || !seen.insert(t) {
                continue;
            }
            out.push(t);
            stack.extend(self.mempool_parents(&t));
        }
        out
    }

    /// Fee rates (sat/kvB) of the non-coinbase transactions of the last `n`
    /// active blocks.
    pub fn recent_fee_rates(&self, n: u32) -> Vec<u64> {
        let mut rates = Vec::new();
        let from = self.height().saturating_sub(n.saturating_sub(1)).max(1);
        for h in from..=self.height() {
            let Some(hash) = self.hash_at(h) else {
                continue;
            };
            let entry = &self.blocks[&hash];
            let Some(undo) = self.undo.get(&hash) else {
                continue;
            };
            let mut spent = undo.iter();
            for tx in entry.block.txdata.iter().skip(1) {
                let inputs: u64 = tx
                    .input
                    .iter()
                    .filter_map(|_| spent.next().map(|c| c.txout.value.to_sat()))
                    .sum();
                let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
                let vsize = tx.vsize() as u64;
                if let Some(rate) = (inputs.saturating_sub(outputs) * 1000).checked_div(vsize) {
                    rates.push(rate);
                }
            }
        }
        rates
    }

    /// Fee of a confirmed transaction (from undo data), if known.
    pub fn confirmed_fee(&self, block: &BlockHash, tx_pos: usize) -> Option<Amount> {
        let entry = self.blocks.get(block)?;
        if tx_pos == 0 {
            return None;
        }
        let undo = self.undo.get(block)?;
        let skip: usize = entry.block.txdata[1..tx_pos]
            .iter()
            .map(|t| t.input.len())
            .sum();
        let tx = &entry.block.txdata[tx_pos];
        let inputs: u64 = undo
            .iter()
            .skip(skip)
            .take(tx.input.len())
            .map(|c| c.txout.value.to_sat())
            .sum();
        let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        Some(Amount::from_sat(inputs.saturating_sub(outputs)))
    }

    /// The output `outpoint` refers to, looked up in the UTXO set and the mempool.
    pub fn lookup_output(&self, outpoint: &OutPoint) -> Option<TxOut> {
        if let Some(c) = self.utxos.get(outpoint) {
            return Some(c.txout.clone());
        }
        self.mempool
            .get(&outpoint.txid)
            .and_then(|e| e.tx.output.get(outpoint.vout as usize).cloned())
    }

    // ----- mempool acceptance -------------------------------------------

    /// Checks whether `tx` may enter the mempool now, without changing anything.
    pub fn check_tx(&self, tx: &Transaction) -> Result<AcceptPlan, TxReject> {
        let txid = tx.compute_txid();
        if self.mempool.contains_key(&txid) {
            return Err(TxReject::AlreadyInMempool);
        }
        if self.tx_index.contains_key(&txid) {
            return Err(TxReject::AlreadyInChain);
        }
        check_transaction_basics(tx)?;
        if tx.is_coinbase() {
            return Err(reject("coinbase"));
        }
        check_standard(tx)?;
        let next_height = self.height() + 1;
        let mtp = self.median_time_past(&self.tip_hash());
        if !is_final(tx, next_height, mtp) {
            return Err(reject("non-final"));
        }

        // Conflicts with the mempool.
        let mut direct_conflicts: Vec<Txid> = Vec::new();
        for input in &tx.input {
            if let Some(other) = self.mempool_spends.get(&input.previous_output) {
                if !direct_conflicts.contains(other) {
                    direct_conflicts.push(*other);
                }
            }
        }
        if !direct_conflicts.is_empty()
            && !self.params.full_rbf
            && !direct_conflicts
                .iter()
                .any(|c| self.mempool[c].signals_rbf())
        {
            return Err(reject("txn-mempool-conflict"));
        }
        let mut replaced: Vec<Txid> = Vec::new();
        for c in &direct_conflicts {
            for d in self.mempool_descendants(c) {
                if !replaced.contains(&d) {
                    replaced.push(d);
                }
            }
        }
        if replaced.len() > MAX_REPLACEMENT_EVICTIONS {
            return Err(reject(format!(
                "too many potential replacements, rejecting replacement {txid}; too many potential replacements ({} > {MAX_REPLACEMENT_EVICTIONS})",
                replaced.len()
            )));
        }

        // Inputs.
        let mut prevouts = Vec::with_capacity(tx.input.len());
        let mut in_sum: u64 = 0;
        for input in &tx.input {
            let op = &input.previous_output;
            let txout = if let Some(coin) = self.utxos.get(op) {
                if coin.is_coinbase && next_height - coin.height < self.params.coinbase_maturity {
                    return Err(reject(format!(
                        "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth {}",
                        next_height - coin.height
                    )));
                }
                coin.txout.clone()
            } else if let Some(parent) = self.mempool.get(&op.txid) {
                if replaced.contains(&op.txid) {
                    return Err(reject(format!(
                        "bad-txns-spends-conflicting-tx, {txid} spends conflicting transaction {}",
                        op.txid
                    )));
                }
                match parent.tx.output.get(op.vout as usize) {
                    Some(o) => o.clone(),
                    None => return Err(TxReject::MissingInputs),
                }
            } else {
                return Err(TxReject::MissingInputs);
            };
            in_sum = in_sum
                .checked_add(txout.value.to_sat())
                .filter(|s| *s <= MAX_MONEY_SATS)
                .ok_or_else(|| reject("bad-txns-inputvalues-outofrange"))?;
            prevouts.push(txout);
        }
        let out_sum: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        if in_sum < out_sum {
            return Err(reject(format!(
                "bad-txns-in-belowout, value in ({}) < value out ({})",
                format_btc(in_sum),
                format_btc(out_sum)
            )));
        }
        let fee = in_sum - out_sum;
        let weight = tx.weight().to_wu();
        let vsize = tx.vsize() as u64;
        let min_fee = fee_for(self.params.min_relay_sat_per_kvb, vsize);
        if fee < min_fee {
            return Err(reject(format!("min relay fee not met, {fee} < {min_fee}")));
        }

        // BIP125 replacement rules (as Core applies them).
        if !direct_conflicts.is_empty() {
            for input in &tx.input {
                let op = &input.previous_output;
                if self.mempool.contains_key(&op.txid)
                    && !direct_conflicts.iter().any(|c| {
                        self.mempool[c]
                            .tx
                            .input
                            .iter()
                            .any(|i| i.previous_output.txid == op.txid)
                    })
                {
                    return Err(reject(format!(
                        "replacement-adds-unconfirmed, replacement {txid} adds unconfirmed input, idx {}",
                        tx.input.iter().position(|i| i.previous_output == *op).unwrap_or(0)
                    )));
                }
            }
            for c in &direct_conflicts {
                let old = &self.mempool[c];
                // new_fee / new_vsize <= old_fee / old_vsize
                if u128::from(fee) * u128::from(old.vsize)
                    <= u128::from(old.fee.to_sat()) * u128::from(vsize)
                {
                    return Err(reject(format!(
                        "insufficient fee, rejecting replacement {txid}; new feerate {} <= old feerate {}",
                        feerate_str(fee, vsize),
                        feerate_str(old.fee.to_sat(), old.vsize)
                    )));
                }
            }
            let replaced_fees: u64 = replaced.iter().map(|t| self.mempool[t].fee.to_sat()).sum();
            if fee < replaced_fees {
                return Err(reject(format!(
                    "insufficient fee, rejecting replacement {txid}, less fees than conflicting txs; {} < {}",
                    format_btc(fee),
                    format_btc(replaced_fees)
                )));
            }
            let additional = fee - replaced_fees;
            let relay = fee_for(self.params.incremental_relay_sat_per_kvb, vsize);
            if additional < relay {
                return Err(reject(format!(
                    "insufficient fee, rejecting replacement {txid}, not enough additional fees to relay; {} < {}",
                    format_btc(additional),
                    format_btc(relay)
                )));
            }
        }

        verify_transaction(tx, &prevouts).map_err(|f: InputFailure| reject(f.reject_reason()))?;

        Ok(AcceptPlan {
            txid,
            wtxid: tx.compute_wtxid(),
            fee: Amount::from_sat(fee),
            vsize,
            weight,
            replaces: replaced,
        })
    }

    /// Checks and adds `tx` to the mempool, evicting what it replaces.
    pub fn accept_tx(&mut self, tx: Transaction, now: u64) -> Result<AcceptPlan, TxReject> {
        let plan = self.check_tx(&tx)?;
        for r in &plan.replaces {
            self.remove_from_mempool(r);
        }
        for input in &tx.input {
            self.mempool_spends.insert(input.previous_output, plan.txid);
        }
        let seq = self.next_mempool_seq;
        self.next_mempool_seq += 1;
        self.mempool.insert(
            plan.txid,
            MempoolEntry {
                tx,
                wtxid: plan.wtxid,
                fee: plan.fee,
                vsize: plan.vsize,
                weight: plan.weight,
                time: now,
                height: self.height(),
                seq,
            },
        );
        Ok(plan)
    }

    fn remove_from_mempool(&mut self, txid: &Txid) {
        if let Some(e) = self.mempool.remove(txid) {
            for input in &e.tx.input {
                if self.mempool_spends.get(&input.previous_output) == Some(txid) {
                    self.mempool_spends.remove(&input.previous_output);
                }
            }
        }
    }

    fn remove_with_descendants(&mut self, txid: &Txid) {
        for d in self.mempool_descendants(txid) {
            self.remove_from_mempool(&d);
        }
    }

    // ----- mining ---------------------------------------------------------

    /// Mempool transactions for the next block, by fee rate, parents first,
    /// within the block weight limit.
    pub fn select_for_block(&self) -> Vec<Transaction> {
        let mut pending: Vec<(&Txid, &MempoolEntry)> = self.mempool.iter().collect();
        // Highest fee rate first; acceptance order breaks ties.
        pending.sort_by(|(_, a), (_, b)| {
            let ra = u128::from(a.fee.to_sat()) * u128::from(b.vsize);
            let rb = u128::from(b.fee.to_sat()) * u128::from(a.vsize);
            rb.cmp(&ra).then(a.seq.cmp(&b.seq))
        });
        let mut included: HashSet<Txid> = HashSet::new();
        let mut out = Vec::new();
        let mut weight = COINBASE_RESERVED_WEIGHT;
        loop {
            let mut progress = false;
            for (txid, e) in &pending {
                let txid = **txid;
                if included.contains(&txid) || weight + e.weight > MAX_BLOCK_WEIGHT {
                    continue;
                }
                let parents_in = e.tx.input.iter().all(|i| {
                    !self.mempool.contains_key(&i.previous_output.txid)
                        || included.contains(&i.previous_output.txid)
                });
                if parents_in {
                    included.insert(txid);
                    weight += e.weight;
                    out.push(e.tx.clone());
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        out
    }

    /// Builds (and proof-of-work solves) a block on the active tip paying to
    /// `payout`, with the best mempool transactions.
    pub fn build_block(&self, payout: &ScriptBuf, now: u32, extra_nonce: u64) -> Block {
        let txs = self.select_for_block();
        self.build_block_with(payout, txs, now, extra_nonce)
    }

    /// Builds a block on the active tip with exactly `txs` (in that order).
    pub fn build_block_with(
        &self,
        payout: &ScriptBuf,
        txs: Vec<Transaction>,
        now: u32,
        extra_nonce: u64,
    ) -> Block {
        let height = self.height() + 1;
        let in_block: HashMap<Txid, &Transaction> =
            txs.iter().map(|t| (t.compute_txid(), t)).collect();
        let fees: u64 = txs
            .iter()
            .map(|tx| {
                let ins: u64 = tx
                    .input
                    .iter()
                    .filter_map(|i| self.lookup_output_for_template(&i.previous_output, &in_block))
                    .sum();
                let outs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
                ins.saturating_sub(outs)
            })
            .sum();
        let reward = subsidy(&self.params, height) + Amount::from_sat(fees);
        let mut nonce_bytes = PushBytesBuf::new();
        nonce_bytes
            .extend_from_slice(&extra_nonce.to_le_bytes())
            .ok();
        let coinbase = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: Builder::new()
                    .push_int(i64::from(height))
                    .push_slice(nonce_bytes)
                    .into_script(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: reward,
                script_pubkey: payout.clone(),
            }],
        };
        let mut txdata = Vec::with_capacity(txs.len() + 1);
        txdata.push(coinbase);
        txdata.extend(txs);
        let time = now.max(self.median_time_past(&self.tip_hash()) + 1);
        let mut block = Block {
            header: Header {
                version: BlockVersion::from_consensus(0x2000_0000),
                prev_blockhash: self.tip_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time,
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata,
        };
        if let Some(root) = block.witness_root() {
            let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
            let mut script = WITNESS_COMMITMENT_HEADER.to_vec();
            script.extend_from_slice(commitment.as_byte_array());
            let mut push = PushBytesBuf::new();
            push.extend_from_slice(&script).ok();
            block.txdata[0].output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: Builder::new()
                    .push_opcode(bitcoin::opcodes::all::OP_RETURN)
                    .push_slice(push)
                    .into_script(),
            });
        }
        if let Some(root) = block.compute_merkle_root() {
            block.header.merkle_root = root;
        }
        let target = Target::from_compact(block.header.bits);
        while block.header.validate_pow(target).is_err() {
            block.header.nonce = block.header.nonce.wrapping_add(1);
        }
        block
    }

    fn lookup_output_for_template(
        &self,
        op: &OutPoint,
        in_block: &HashMap<Txid, &Transaction>,
    ) -> Option<u64> {
        if let Some(o) = self.lookup_output(op) {
            return Some(o.value.to_sat());
        }
        in_block
            .get(&op.txid)
            .and_then(|t| t.output.get(op.vout as usize))
            .map(|o| o.value.to_sat())
    }

    // ----- blocks and reorganisation --------------------------------------

    /// Records a block in the index without connecting it. Returns false if
    /// its parent is unknown (the block is then ignored).
    pub fn add_block(&mut self, block: Block) -> bool {
        let hash = block.block_hash();
        if self.blocks.contains_key(&hash) {
            return true;
        }
        let Some(parent) = self.blocks.get(&block.header.prev_blockhash) else {
            return false;
        };
        let height = parent.height + 1;
        let chainwork = parent.chainwork + block.header.work();
        self.children
            .entry(block.header.prev_blockhash)
            .or_default()
            .push(hash);
        let seq = self.next_block_seq;
        self.next_block_seq += 1;
        self.blocks.insert(
            hash,
            BlockEntry {
                block,
                height,
                seq,
                chainwork,
            },
        );
        true
    }

    /// Adds a block built on the active tip and connects it.
    pub fn submit_block(&mut self, block: Block) -> Result<BlockHash, String> {
        let hash = block.block_hash();
        if block.header.prev_blockhash != self.tip_hash() {
            return Err("block does not extend the active tip".into());
        }
        if !self.add_block(block) {
            return Err("prev-blk-not-found".into());
        }
        if let Err(e) = self.connect_tip(&hash) {
            self.invalid.insert(hash);
            return Err(e);
        }
        Ok(hash)
    }

    /// Whether `hash` or one of its ancestors is marked invalid.
    fn has_invalid_ancestry(&self, hash: &BlockHash) -> bool {
        let mut cur = *hash;
        loop {
            if self.invalid.contains(&cur) {
                return true;
            }
            match self.blocks.get(&cur) {
                Some(e) if e.height > 0 => cur = e.block.header.prev_blockhash,
                _ => return false,
            }
        }
    }

    /// Blocks explicitly marked invalid.
    pub fn invalidated(&self) -> Vec<BlockHash> {
        let mut v: Vec<BlockHash> = self.invalid.iter().copied().collect();
        v.sort();
        v
    }

    /// Marks a block invalid without reorganising (used when loading state).
    pub fn mark_invalid(&mut self, hash: BlockHash) {
        self.invalid.insert(hash);
    }

    /// `invalidateblock`: marks the block (and so its descendants) invalid and
    /// reorganises to the best remaining chain. Returns false for an unknown
    /// block; the genesis block cannot be invalidated.
    pub fn invalidate_block(&mut self, hash: &BlockHash, now: u64) -> Result<(), String> {
        let Some(e) = self.blocks.get(hash) else {
            return Err("Block not found".into());
        };
        if e.height == 0 {
            return Err("Cannot invalidate the genesis block".into());
        }
        self.invalid.insert(*hash);
        self.activate_best_chain(now);
        Ok(())
    }

    /// `reconsiderblock`: clears invalidity of the block, its ancestors and
    /// descendants, and reorganises if a better chain results.
    pub fn reconsider_block(&mut self, hash: &BlockHash, now: u64) -> Result<(), String> {
        if !self.blocks.contains_key(hash) {
            return Err("Block not found".into());
        }
        let mut stack = vec![*hash];
        while let Some(h) = stack.pop() {
            self.invalid.remove(&h);
            if let Some(kids) = self.children.get(&h) {
                stack.extend(kids.iter().copied());
            }
        }
        let mut cur = *hash;
        while let Some(e) = self.blocks.get(&cur) {
            self.invalid.remove(&cur);
            if e.height == 0 {
                break;
            }
            cur = e.block.header.prev_blockhash;
        }
        self.activate_best_chain(now);
        Ok(())
    }

    /// The valid block with the most work; ties go to the block learned first.
    fn best_candidate(&self) -> BlockHash {
        let mut best = self.active[0];
        let mut best_key = (self.blocks[&best].chainwork, std::cmp::Reverse(0u64));
        for hash in self.blocks.keys() {
            if self.children.get(hash).is_some_and(|c| !c.is_empty()) {
                continue; // only leaves; their valid ancestors are found below
            }
            // Walk down from the leaf to its highest valid ancestor.
            let mut path = Vec::new();
            let mut cur = *hash;
            loop {
                path.push(cur);
                let e = &self.blocks[&cur];
                if e.height == 0 {
                    break;
                }
                cur = e.block.header.prev_blockhash;
            }
            // path is leaf..genesis; find the lowest invalid block.
            let first_invalid = path.iter().rposition(|h| self.invalid.contains(h));
            let candidate = match first_invalid {
                Some(0) if path.len() == 1 => continue,
                Some(i) if i + 1 < path.len() => path[i + 1],
                Some(_) => continue,
                None => path[0],
            };
            let e = &self.blocks[&candidate];
            let key = (e.chainwork, std::cmp::Reverse(e.seq));
            if key > best_key {
                best = candidate;
                best_key = key;
            }
        }
        best
    }

    /// Reorganises to the best valid chain, returning transactions from
    /// disconnected blocks to the mempool where they are still valid.
    pub fn activate_best_chain(&mut self, now: u64) {
        loop {
            let target = self.best_candidate();
            if target == self.tip_hash() {
                return;
            }
            // Path from target down to the fork point with the active chain.
            let mut branch = Vec::new();
            let mut cur = target;
            while !self.is_active(&cur) {
                branch.push(cur);
                cur = self.blocks[&cur].block.header.prev_blockhash;
            }
            let fork_height = self.blocks[&cur].height;
            let mut returned: Vec<Transaction> = Vec::new();
            let mut disconnected_blocks = Vec::new();
            while self.height() > fork_height {
                let (hash, txs) = self.disconnect_tip();
                disconnected_blocks.push(hash);
                returned.splice(0..0, txs);
            }
            let mut failed = false;
            for hash in branch.iter().rev() {
                if let Err(reason) = self.connect_tip(hash) {
                    tracing::warn!(block = %hash, %reason, "block failed to connect; marked invalid");
                    self.invalid.insert(*hash);
                    failed = true;
                    break;
                }
            }
            self.rebuild_mempool(returned, now);
            if !failed {
                tracing::info!(
                    tip = %self.tip_hash(),
                    height = self.height(),
                    disconnected = disconnected_blocks.len(),
                    "reorganised to best chain"
                );
                return;
            }
        }
    }

    /// Re-admits `first` (transactions from disconnected blocks) and then the
    /// current mempool, dropping whatever is no longer valid.
    fn rebuild_mempool(&mut self, first: Vec<Transaction>, now: u64) {
        let old: Vec<MempoolEntry> = {
            let mut v: Vec<MempoolEntry> = self.mempool.drain().map(|(_, e)| e).collect();
            v.sort_by_key(|e| e.seq);
            v
        };
        self.mempool_spends.clear();
        for tx in first {
            if let Err(r) = self.accept_tx(tx, now) {
                tracing::debug!(reason = %r.reason(), "disconnected transaction not returned to mempool");
            }
        }
        for e in old {
            let _ = self.accept_tx(e.tx, e.time);
        }
    }

    fn connect_tip(&mut self, hash: &BlockHash) -> Result<(), String> {
        let entry = self.blocks.get(hash).ok_or("unknown block")?.clone();
        if entry.block.header.prev_blockhash != self.tip_hash() {
            return Err("block does not extend the active tip".into());
        }
        let height = entry.height;
        let block = &entry.block;
        let target = Target::from_compact(CompactTarget::from_consensus(REGTEST_BITS));
        if block.header.bits.to_consensus() != REGTEST_BITS {
            return Err("bad-diffbits".into());
        }
        block
            .header
            .validate_pow(target)
            .map_err(|_| "high-hash".to_string())?;
        if block.compute_merkle_root() != Some(block.header.merkle_root) {
            return Err("bad-txnmrklroot".into());
        }
        if block.weight().to_wu() > MAX_BLOCK_WEIGHT {
            return Err("bad-blk-weight".into());
        }
        let Some(coinbase) = block.txdata.first().filter(|t| t.is_coinbase()) else {
            return Err("bad-cb-missing".into());
        };
        if block.txdata.iter().skip(1).any(|t| t.is_coinbase()) {
            return Err("bad-cb-multiple".into());
        }
        // BIP34: the coinbase scriptSig starts with `CScript() << height`.
        let expect = Builder::new().push_int(i64::from(height)).into_script();
        if !coinbase.input[0]
            .script_sig
            .as_bytes()
            .starts_with(expect.as_bytes())
        {
            return Err("bad-cb-height".into());
        }
        let has_witness = block
            .txdata
            .iter()
            .skip(1)
            .any(|t| t.input.iter().any(|i| !i.witness.is_empty()));
        if has_witness && !block.check_witness_commitment() {
            return Err("bad-witness-merkle-match".into());
        }
        let mtp = self.median_time_past(&self.tip_hash());
        if block.header.time <= mtp {
            return Err("time-too-old".into());
        }

        // Apply transactions against a scratch view so that a failure leaves
        // the UTXO set untouched.
        let mut created: HashMap<OutPoint, Coin> = HashMap::new();
        let mut spent: Vec<(OutPoint, Coin)> = Vec::new();
        let mut spent_set: HashSet<OutPoint> = HashSet::new();
        let mut fees: u64 = 0;
        for (pos, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            if pos > 0 {
                check_transaction_basics(tx).map_err(|r| r.reason())?;
                if !is_final(tx, height, mtp) {
                    return Err("bad-txns-nonfinal".into());
                }
                let mut prevouts = Vec::with_capacity(tx.input.len());
                let mut in_sum = 0u64;
                for input in &tx.input {
                    let op = input.previous_output;
                    if spent_set.contains(&op) {
                        return Err("bad-txns-inputs-missingorspent".into());
                    }
                    let coin = if let Some(c) = created.remove(&op) {
                        c
                    } else if let Some(c) = self.utxos.get(&op) {
                        c.clone()
                    } else {
                        return Err("bad-txns-inputs-missingorspent".into());
                    };
                    if coin.is_coinbase && height - coin.height < self.params.coinbase_maturity {
                        return Err("bad-txns-premature-spend-of-coinbase".into());
                    }
                    in_sum += coin.txout.value.to_sat();
                    prevouts.push(coin.txout.clone());
                    spent_set.insert(op);
                    spent.push((op, coin));
                }
                let out_sum: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
                if in_sum < out_sum {
                    return Err("bad-txns-in-belowout".into());
                }
                fees += in_sum - out_sum;
                verify_transaction(tx, &prevouts).map_err(|f| f.reject_reason())?;
            }
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                created.insert(
                    OutPoint::new(txid, vout as u32),
                    Coin {
                        txout: out.clone(),
                        height,
                        is_coinbase: pos == 0,
                    },
                );
            }
        }
        let paid: u64 = coinbase.output.iter().map(|o| o.value.to_sat()).sum();
        if paid > subsidy(&self.params, height).to_sat() + fees {
            return Err("bad-cb-amount".into());
        }

        // Commit.
        let mut undo = Vec::with_capacity(spent.len());
        for (op, coin) in spent {
            self.utxos.remove(&op);
            undo.push(coin);
        }
        self.utxos.extend(created);
        for (pos, tx) in block.txdata.iter().enumerate() {
            self.tx_index.insert(tx.compute_txid(), (*hash, pos));
        }
        self.undo.insert(*hash, undo);
        self.active.push(*hash);

        // Remove confirmed and conflicting transactions from the mempool.
        for tx in block.txdata.iter().skip(1) {
            let txid = tx.compute_txid();
            self.remove_from_mempool(&txid);
            for input in &tx.input {
                if let Some(other) = self.mempool_spends.get(&input.previous_output).copied() {
                    self.remove_with_descendants(&other);
                }
            }
        }
        // Coinbase outputs never enter the mempool, and nothing else can
        // become invalid by connecting a block, except spends of immature
        // coins which the mempool never admitted.
        Ok(())
    }

    /// Disconnects the active tip, returning its hash and non-coinbase transactions.
    fn disconnect_tip(&mut self) -> (BlockHash, Vec<Transaction>) {
        let hash = self.tip_hash();
        let block = self.blocks[&hash].block.clone();
        let undo = self.undo.remove(&hash).unwrap_or_default();
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            for vout in 0..tx.output.len() as u32 {
                self.utxos.remove(&OutPoint::new(txid, vout));
            }
            self.tx_index.remove(&txid);
        }
        let mut coins = undo.into_iter();
        for tx in block.txdata.iter().skip(1) {
            for input in &tx.input {
                if let Some(c) = coins.next() {
                    self.utxos.insert(input.previous_output, c);
                }
            }
        }
        self.active.pop();
        (hash, block.txdata.into_iter().skip(1).collect())
    }

    /// `getchaintips`: the active tip and every leaf block, with the length
    /// of its branch off the active chain and Core's status word.
    pub fn chain_tips(&self) -> Vec<ChainTip> {
        let mut tips: Vec<BlockHash> = self
            .blocks
            .keys()
            .filter(|h| self.children.get(*h).is_none_or(|c| c.is_empty()))
            .copied()
            .collect();
        if !tips.contains(&self.tip_hash()) {
            tips.push(self.tip_hash());
        }
        let mut out: Vec<ChainTip> = tips
            .into_iter()
            .map(|hash| {
                let height = self.blocks[&hash].height;
                let mut cur = hash;
                let mut branchlen = 0;
                while !self.is_active(&cur) {
                    branchlen += 1;
                    cur = self.blocks[&cur].block.header.prev_blockhash;
                }
                let status = if hash == self.tip_hash() {
                    "active"
                } else if self.has_invalid_ancestry(&hash) {
                    "invalid"
                } else {
                    "valid-fork"
                };
                ChainTip {
                    hash,
                    height,
                    branchlen,
                    status,
                }
            })
            .collect();
        out.sort_by(|a, b| b.height.cmp(&a.height).then(a.hash.cmp(&b.hash)));
        out
    }

    /// Whether the block was marked invalid (itself or an ancestor).
    pub fn is_invalid(&self, hash: &BlockHash) -> bool {
        self.has_invalid_ancestry(hash)
    }
}

fn feerate_str(fee: u64, vsize: u64) -> String {
    // Core prints CFeeRate as "0.00001000 BTC/kvB".
    let per_kvb = (fee * 1000).checked_div(vsize).unwrap_or(0);
    format!("{} BTC/kvB", format_btc(per_kvb))
}

/// Context-free checks (Core's `CheckTransaction`).
pub fn check_transaction_basics(tx: &Transaction) -> Result<(), TxReject> {
    if tx.input.is_empty() {
        return Err(reject("bad-txns-vin-empty"));
    }
    if tx.output.is_empty() {
        return Err(reject("bad-txns-vout-empty"));
    }
    if tx.base_size() as u64 * 4 > MAX_BLOCK_WEIGHT {
        return Err(reject("bad-txns-oversize"));
    }
    let mut total: u64 = 0;
    for out in &tx.output {
        let v = out.value.to_sat();
        if v > MAX_MONEY_SATS {
            return Err(reject("bad-txns-vout-toolarge"));
        }
        total = total.saturating_add(v);
        if total > MAX_MONEY_SATS {
            return Err(reject("bad-txns-txouttotal-toolarge"));
        }
    }
    let mut seen = HashSet::with_capacity(tx.input.len());
    for input in &tx.input {
        if !seen.insert(input.previous_output) {
            return Err(reject("bad-txns-inputs-duplicate"));
        }
    }
    if !tx.is_coinbase() && tx.input.iter().any(|i| i.previous_output.is_null()) {
        return Err(reject("bad-txns-prevout-null"));
    }
    Ok(())
}

/// Standardness policy (a subset of Core's `IsStandardTx`).
fn check_standard(tx: &Transaction) -> Result<(), TxReject> {
    let version = tx.version.0;
    if !(1..=3).contains(&version) {
        return Err(reject("version"));
    }
    if tx.weight() > Weight::from_wu(MAX_STANDARD_TX_WEIGHT) {
        return Err(reject("tx-size"));
    }
    if tx.base_size() < 65 {
        return Err(reject("tx-size-small"));
    }
    for input in &tx.input {
        if input.script_sig.len() > 1650 {
            return Err(reject("scriptsig-size"));
        }
        if !input.script_sig.is_push_only() {
            return Err(reject("scriptsig-not-pushonly"));
        }
    }
    let mut op_returns = 0;
    for out in &tx.output {
        let spk = &out.script_pubkey;
        if spk.is_op_return() {
            if spk.len() > 83 {
                return Err(reject("scriptpubkey"));
            }
            op_returns += 1;
            continue;
        }
        let standard = spk.is_p2pkh()
            || spk.is_p2sh()
            || spk.is_witness_program()
            || spk.is_p2pk()
            || spk.is_multisig();
        if !standard {
            return Err(reject("scriptpubkey"));
        }
        if out.value < spk.minimal_non_dust() {
            return Err(reject("dust"));
        }
    }
    if op_returns > 1 {
        return Err(reject("multi-op-return"));
    }
    Ok(())
}

/// Core's `IsFinalTx` for a block at `height` with median time past `mtp`.
fn is_final(tx: &Transaction, height: u32, mtp: u32) -> bool {
    let lock = tx.lock_time.to_consensus_u32();
    if lock == 0 {
        return true;
    }
    let threshold = bitcoin::absolute::LOCK_TIME_THRESHOLD;
    let ok = if lock < threshold {
        lock < height
    } else {
        lock < mtp
    };
    ok || tx.input.iter().all(|i| i.sequence == Sequence::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payout() -> ScriptBuf {
        ScriptBuf::new_op_return([1u8; 4])
    }

    fn mine(chain: &mut Chain, n: u32, spk: &ScriptBuf, now: &mut u32) -> Vec<BlockHash> {
        (0..n)
            .map(|i| {
                *now += 1;
                let b = chain.build_block(spk, *now, u64::from(i));
                chain.submit_block(b).expect("block connects")
            })
            .collect()
    }

    #[test]
    fn blocks_connect_with_subsidy_and_halving() {
        let mut chain = Chain::new(ChainParams::default());
        let spk = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::all_zeros());
        let mut now = 1_700_000_000;
        mine(&mut chain, 151, &spk, &mut now);
        assert_eq!(chain.height(), 151);
        let b150 = &chain.block(&chain.hash_at(150).unwrap()).unwrap().block;
        assert_eq!(
            b150.txdata[0].output[0].value,
            Amount::from_sat(25 * 100_000_000)
        );
        let b149 = &chain.block(&chain.hash_at(149).unwrap()).unwrap().block;
        assert_eq!(
            b149.txdata[0].output[0].value,
            Amount::from_btc(50.0).unwrap()
        );
        assert_eq!(b149.bip34_block_height().unwrap(), 149);
        assert!(b149.check_witness_commitment());
        assert_eq!(chain.utxos().count(), 151);
    }

    #[test]
    fn invalidate_and_reconsider_reorg() {
        let mut chain = Chain::new(ChainParams::default());
        let mut now = 1_700_000_000;
        let a = mine(&mut chain, 5, &payout(), &mut now);
        chain.invalidate_block(&a[2], 0).unwrap();
        assert_eq!(chain.height(), 2);
        assert_eq!(chain.tip_hash(), a[1]);
        let b = mine(&mut chain, 4, &payout(), &mut now);
        assert_eq!(chain.height(), 6);
        chain.reconsider_block(&a[2], 0).unwrap();
        // Branch b has more work and stays active.
        assert_eq!(chain.tip_hash(), b[3]);
        let tips = chain.chain_tips();
        assert_eq!(tips[0].status, "active");
        assert_eq!(tips[0].hash, b[3]);
        assert_eq!(
            (tips[1].hash, tips[1].branchlen, tips[1].status),
            (a[4], 3, "valid-fork")
        );
        chain.invalidate_block(&b[0], 0).unwrap();
        assert_eq!(chain.tip_hash(), a[4]);
        let tips = chain.chain_tips();
        assert_eq!((tips[0].hash, tips[0].status), (b[3], "invalid"));
        assert_eq!((tips[1].hash, tips[1].status), (a[4], "active"));
    }

    #[test]
    fn conflicts_without_full_rbf_need_signalling() {
        let params = ChainParams {
            full_rbf: false,
            ..ChainParams::default()
        };
        let mut chain = Chain::new(params);
        let wallet = super::super::wallet::Wallet::random();
        let mut now = 1_700_000_000;
        mine(
            &mut chain,
            101,
            &wallet.mining_address().script_pubkey(),
            &mut now,
        );
        let to = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::all_zeros());
        let other = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([1; 20]));
        let amount = Amount::from_sat(100_000);
        // Both built from the same state: they spend the same coin.
        let quiet = wallet
            .build_payment_with(&chain, &to, amount, 2, false, false)
            .unwrap();
        let louder = wallet
            .build_payment_with(&chain, &other, amount, 20, false, false)
            .unwrap();
        assert_eq!(
            quiet.input[0].previous_output,
            louder.input[0].previous_output
        );
        chain.accept_tx(quiet.clone(), 0).expect("first spend");
        assert_eq!(
            chain.accept_tx(louder, 0).unwrap_err(),
            TxReject::Rejected("txn-mempool-conflict".into())
        );
        // A replacement of a signalling transaction is fine.
        let mut chain2 = Chain::new(ChainParams {
            full_rbf: false,
            ..ChainParams::default()
        });
        mine(
            &mut chain2,
            101,
            &wallet.mining_address().script_pubkey(),
            &mut now,
        );
        let a = wallet
            .build_payment_with(&chain2, &to, amount, 2, false, true)
            .unwrap();
        let b = wallet
            .build_payment_with(&chain2, &other, amount, 20, false, false)
            .unwrap();
        chain2.accept_tx(a.clone(), 0).expect("signalling spend");
        let plan = chain2.accept_tx(b, 0).expect("replacement");
        assert_eq!(plan.replaces, vec![a.compute_txid()]);
        assert!(chain2.mempool_entry(&a.compute_txid()).is_none());
    }
}
