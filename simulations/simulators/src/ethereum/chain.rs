//! The Ethereum dev chain without I/O: accounts, contract code and storage,
//! a transaction pool with geth's admission rules, EIP-1559 blocks whose
//! transactions execute in revm (see `evm`), receipts with logs, and
//! historical state (balances, nonces, code, storage) per block.
//!
//! The whole state is a deterministic function of an ordered list of
//! [`Event`]s (genesis, accepted transactions, mined blocks with their
//! timestamps, balance overrides): persistence appends events, restart and
//! `evm_revert` replay them.
//!
//! Simplifications (documented, visible to clients): `stateRoot` is the
//! keccak of the sorted account list followed by contract code hashes and
//! non-zero storage, not a Merkle-Patricia root; headers carry no Cancun
//! blob fields although execution follows Cancun rules; accounts touched by
//! a transaction stay in the state even when empty (no EIP-161 removal in
//! the digest). `transactionsRoot` and `receiptsRoot` are the real trie
//! roots, `logsBloom` the real bloom; block hashes are keccak of the RLP
//! header.

use std::collections::{BTreeMap, HashMap};

use alloy_consensus::proofs::{calculate_receipt_root, calculate_transaction_root};
use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{
    Eip658Value, Header, Receipt, ReceiptEnvelope, ReceiptWithBloom, Transaction as _, TxEnvelope,
    EMPTY_OMMER_ROOT_HASH, EMPTY_ROOT_HASH,
};
use alloy_eips::eip1559::BaseFeeParams;
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{keccak256, Address, Bloom, Bytes, Log, B256, B64, U256};
use revm::context::result::{EVMError, ExecutionResult};
use revm::state::Bytecode;
use serde::{Deserialize, Serialize};

use super::evm::{self, BlockContext, StateView};

/// Anvil's dev chain id.
pub const DEFAULT_CHAIN_ID: u64 = 31337;
/// Block gas limit.
pub const BLOCK_GAS_LIMIT: u64 = 30_000_000;
/// Base fee of the genesis block (1 gwei).
pub const INITIAL_BASE_FEE: u64 = 1_000_000_000;
/// Gas of a plain transfer.
pub const TRANSFER_GAS: u64 = 21_000;
/// Base gas of a contract-creation transaction.
pub const CREATE_GAS: u64 = 53_000;
/// EIP-3860 limit on creation code.
pub const MAX_INITCODE_SIZE: usize = 49_152;
/// Suggested priority fee (1 gwei).
pub const SUGGESTED_TIP: u128 = 1_000_000_000;
/// Depth below the head of the `safe` tag.
pub const SAFE_DEPTH: u64 = 32;
/// Depth below the head of the `finalized` tag.
pub const FINALIZED_DEPTH: u64 = 64;

/// One step of the chain's history; the state is a fold over these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The genesis block.
    Genesis {
        /// Chain id.
        chain_id: u64,
        /// Genesis timestamp.
        timestamp: u64,
        /// Prefunded accounts.
        alloc: Vec<(Address, U256)>,
    },
    /// A transaction admitted to the pool (EIP-2718 bytes).
    Tx {
        /// The raw transaction.
        raw: Bytes,
    },
    /// A block was mined from the pool at `timestamp`, giving `hash`.
    Block {
        /// Block timestamp.
        timestamp: u64,
        /// The resulting hash, checked on replay.
        hash: B256,
    },
    /// `anvil_setBalance`.
    SetBalance {
        /// The account.
        address: Address,
        /// Its new balance.
        balance: U256,
    },
}

/// An account's balance and nonce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Balance in wei.
    pub balance: U256,
    /// Number of transactions sent.
    pub nonce: u64,
}

/// A transaction included in a block, with its receipt data.
#[derive(Debug, Clone)]
pub struct MinedTx {
    /// The transaction.
    pub tx: TxEnvelope,
    /// Its sender.
    pub from: Address,
    /// Gas used.
    pub gas_used: u64,
    /// Gas used by the block up to and including this transaction.
    pub cumulative_gas_used: u64,
    /// Price per gas actually paid.
    pub effective_gas_price: u128,
    /// EIP-658 status: false when execution reverted or halted.
    pub success: bool,
    /// Logs emitted (none when it failed).
    pub logs: Vec<Log>,
    /// Logs of earlier transactions in the block (first log's logIndex).
    pub first_log_index: u64,
    /// Address of the contract a creation transaction made.
    pub contract_address: Option<Address>,
}

/// A block of the chain.
#[derive(Debug, Clone)]
pub struct EthBlock {
    /// The header.
    pub header: Header,
    /// keccak256 of the RLP header.
    pub hash: B256,
    /// Its transactions.
    pub txs: Vec<MinedTx>,
}

impl EthBlock {
    /// RLP size of the block (header plus transactions, approximately as geth counts).
    pub fn size(&self) -> u64 {
        let mut h = Vec::new();
        alloy_rlp::Encodable::encode(&self.header, &mut h);
        let txs: usize = self.txs.iter().map(|t| t.tx.encode_2718_len()).sum();
        (h.len() + txs + 8) as u64
    }
}

/// A pool transaction.
#[derive(Debug, Clone)]
pub struct PendingTx {
    /// The transaction.
    pub tx: TxEnvelope,
    /// Its sender.
    pub from: Address,
    /// Its hash.
    pub hash: B256,
    /// Admission order.
    pub seq: u64,
}

/// Why a transaction was refused; `Display` is geth's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Bytes are not a valid EIP-2718 transaction.
    #[error("rlp: {0}")]
    Decode(String),
    /// Blob and set-code transactions are not supported.
    #[error("transaction type not supported")]
    TypeNotSupported,
    /// A legacy transaction without EIP-155 replay protection.
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    NotReplayProtected,
    /// Signed for another chain.
    #[error("invalid chain id for signer: have {have} want {want}")]
    WrongChainId {
        /// Chain id of the transaction.
        have: u64,
        /// This chain's id.
        want: u64,
    },
    /// The signature does not recover.
    #[error("invalid sender")]
    InvalidSender,
    /// Already in the pool.
    #[error("already known")]
    AlreadyKnown,
    /// Creation code above EIP-3860's limit.
    #[error("max initcode size exceeded: code size {size} limit {limit}")]
    InitcodeSize {
        /// Size of the creation code.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Gas limit above the block's.
    #[error("exceeds block gas limit")]
    GasLimit,
    /// Priority fee above fee cap.
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    /// Gas limit below intrinsic gas.
    #[error("intrinsic gas too low: have {have}, want {want}")]
    IntrinsicGas {
        /// Gas limit given.
        have: u64,
        /// Intrinsic gas.
        want: u64,
    },
    /// Nonce already used.
    #[error("nonce too low: address {address}, tx: {tx} state: {state}")]
    NonceTooLow {
        /// Sender.
        address: Address,
        /// Transaction nonce.
        tx: u64,
        /// Account nonce.
        state: u64,
    },
    /// Nonce leaves a gap (this node does not queue future transactions).
    #[error("nonce too high: address {address}, tx: {tx} state: {state}")]
    NonceTooHigh {
        /// Sender.
        address: Address,
        /// Transaction nonce.
        tx: u64,
        /// Next usable nonce (including pending transactions).
        state: u64,
    },
    /// Fee cap below the next block's base fee.
    #[error("max fee per gas less than block base fee: address {address}, maxFeePerGas: {max_fee} baseFee: {base_fee}")]
    FeeCapTooLow {
        /// Sender.
        address: Address,
        /// Fee cap.
        max_fee: u128,
        /// Next base fee.
        base_fee: u64,
    },
    /// Same-nonce replacement without a 10% bump of both fees.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// Balance does not cover value plus maximum gas cost.
    #[error(
        "insufficient funds for gas * price + value: address {address} have {have} want {want}"
    )]
    InsufficientFunds {
        /// Sender.
        address: Address,
        /// Balance.
        have: U256,
        /// Cost.
        want: U256,
    },
}

/// Intrinsic gas of a transaction (EIP-2028 calldata, EIP-2930 access list).
pub fn intrinsic_gas(tx: &TxEnvelope) -> u64 {
    let data: u64 = tx
        .input()
        .iter()
        .map(|b| if *b == 0 { 4 } else { 16 })
        .sum();
    let access: u64 = tx
        .access_list()
        .map(|l| {
            l.0.iter()
                .map(|i| 2400 + 1900 * i.storage_keys.len() as u64)
                .sum()
        })
        .unwrap_or(0);
    let create = if tx.to().is_none() {
        // EIP-3860: 2 gas per 32-byte word of initcode.
        CREATE_GAS - TRANSFER_GAS + 2 * (tx.input().len() as u64).div_ceil(32)
    } else {
        0
    };
    TRANSFER_GAS + data + access + create
}

fn effective_tip(tx: &TxEnvelope, base_fee: u64) -> Option<u128> {
    tx.effective_tip_per_gas(base_fee)
}

/// The chain.
#[derive(Debug)]
pub struct EthChain {
    chain_id: u64,
    blocks: Vec<EthBlock>,
    by_hash: HashMap<B256, u64>,
    tx_index: HashMap<B256, (u64, usize)>,
    accounts: BTreeMap<Address, Account>,
    history: HashMap<Address, Vec<(u64, Account)>>,
    /// Contract code by account: block it was deployed in, and code hash.
    code_of: BTreeMap<Address, (u64, B256)>,
    codes: HashMap<B256, Bytecode>,
    /// Storage slot history: (block, value) in block order.
    storage: BTreeMap<(Address, U256), Vec<(u64, U256)>>,
    pool: BTreeMap<(Address, u64), PendingTx>,
    pool_by_hash: HashMap<B256, (Address, u64)>,
    next_seq: u64,
}

impl EthChain {
    /// A chain at genesis.
    pub fn genesis(chain_id: u64, timestamp: u64, alloc: &[(Address, U256)]) -> Self {
        let mut c = EthChain {
            chain_id,
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            tx_index: HashMap::new(),
            accounts: BTreeMap::new(),
            history: HashMap::new(),
            code_of: BTreeMap::new(),
            codes: HashMap::new(),
            storage: BTreeMap::new(),
            pool: BTreeMap::new(),
            pool_by_hash: HashMap::new(),
            next_seq: 0,
        };
        for (a, wei) in alloc {
            c.set_account(
                *a,
                Account {
                    balance: *wei,
                    nonce: 0,
                },
                0,
            );
        }
        let header = Header {
            parent_hash: B256::ZERO,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: Address::ZERO,
            state_root: c.state_root(),
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            logs_bloom: Bloom::ZERO,
            difficulty: U256::ZERO,
            number: 0,
            gas_limit: BLOCK_GAS_LIMIT,
            gas_used: 0,
            timestamp,
            extra_data: Bytes::new(),
            mix_hash: B256::ZERO,
            nonce: B64::ZERO,
            base_fee_per_gas: Some(INITIAL_BASE_FEE),
            withdrawals_root: Some(EMPTY_ROOT_HASH),
            ..Default::default()
        };
        let hash = header.hash_slow();
        c.by_hash.insert(hash, 0);
        c.blocks.push(EthBlock {
            header,
            hash,
            txs: Vec::new(),
        });
        c
    }

    /// Applies one event (replay). Block events whose hash differs from the
    /// recorded one are reported as an error.
    pub fn apply(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::Genesis { .. } => Err("genesis event after start".into()),
            Event::Tx { raw } => self.add_raw(raw).map(|_| ()).map_err(|e| e.to_string()),
            Event::Block { timestamp, hash } => {
                let got = self.mine_block(*timestamp);
                if got != *hash {
                    return Err(format!("replayed block {got} differs from recorded {hash}"));
                }
                Ok(())
            }
            Event::SetBalance { address, balance } => {
                self.set_balance(*address, *balance);
                Ok(())
            }
        }
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Head block number.
    pub fn head_number(&self) -> u64 {
        (self.blocks.len() - 1) as u64
    }

    /// Head block.
    pub fn head(&self) -> &EthBlock {
        &self.blocks[self.blocks.len() - 1]
    }

    /// Block by number.
    pub fn block(&self, number: u64) -> Option<&EthBlock> {
        self.blocks.get(usize::try_from(number).ok()?)
    }

    /// Block by hash.
    pub fn block_by_hash(&self, hash: &B256) -> Option<&EthBlock> {
        self.by_hash.get(hash).and_then(|n| self.block(*n))
    }

    /// Base fee of the next block.
    pub fn next_base_fee(&self) -> u64 {
        self.head()
            .header
            .next_block_base_fee(BaseFeeParams::ethereum())
            .unwrap_or(INITIAL_BASE_FEE)
    }

    /// Latest state of an account.
    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).copied().unwrap_or_default()
    }

    /// State of an account as of block `number`.
    pub fn account_at(&self, a: &Address, number: u64) -> Account {
        self.history
            .get(a)
            .and_then(|h| h.iter().rev().find(|(n, _)| *n <= number))
            .map(|(_, acc)| *acc)
            .unwrap_or_default()
    }

    /// An account at the head (`None`) or as of block `at`.
    pub fn account_view(&self, a: &Address, at: Option<u64>) -> Account {
        match at {
            None => self.account(a),
            Some(n) => self.account_at(a, n),
        }
    }

    /// Code hash and code of a contract at the head (`None`) or block `at`.
    pub fn code_view(&self, a: &Address, at: Option<u64>) -> Option<(B256, &Bytecode)> {
        let (deployed, hash) = self.code_of.get(a)?;
        if at.is_some_and(|n| n < *deployed) {
            return None;
        }
        Some((*hash, self.codes.get(hash)?))
    }

    /// Code by its hash.
    pub fn code_by_hash(&self, hash: &B256) -> Option<&Bytecode> {
        self.codes.get(hash)
    }

    /// A storage slot at the head (`None`) or as of block `at`.
    pub fn storage_view(&self, a: &Address, slot: &U256, at: Option<u64>) -> U256 {
        let Some(h) = self.storage.get(&(*a, *slot)) else {
            return U256::ZERO;
        };
        let found = match at {
            None => h.last(),
            Some(n) => h.iter().rev().find(|(b, _)| *b <= n),
        };
        found.map(|(_, v)| *v).unwrap_or_default()
    }

    fn set_storage(&mut self, a: Address, slot: U256, value: U256, at_block: u64) {
        let h = self.storage.entry((a, slot)).or_default();
        match h.last_mut() {
            Some((n, last)) if *n == at_block => *last = value,
            _ => h.push((at_block, value)),
        }
    }

    /// Nonce including pending pool transactions.
    pub fn pending_nonce(&self, a: &Address) -> u64 {
        let mut n = self.account(a).nonce;
        while self.pool.contains_key(&(*a, n)) {
            n += 1;
        }
        n
    }

    /// A pool transaction.
    pub fn pending_tx(&self, hash: &B256) -> Option<&PendingTx> {
        self.pool_by_hash.get(hash).and_then(|k| self.pool.get(k))
    }

    /// Pool transactions by (sender, nonce).
    pub fn pool(&self) -> impl Iterator<Item = &PendingTx> {
        self.pool.values()
    }

    /// Where a mined transaction is.
    pub fn find_tx(&self, hash: &B256) -> Option<(&EthBlock, usize)> {
        let (n, i) = self.tx_index.get(hash)?;
        Some((self.block(*n)?, *i))
    }

    fn set_account(&mut self, a: Address, acc: Account, at_block: u64) {
        self.accounts.insert(a, acc);
        let h = self.history.entry(a).or_default();
        match h.last_mut() {
            Some((n, last)) if *n == at_block => *last = acc,
            _ => h.push((at_block, acc)),
        }
    }

    /// `anvil_setBalance`: takes effect at the head block.
    pub fn set_balance(&mut self, a: Address, balance: U256) {
        let mut acc = self.account(&a);
        acc.balance = balance;
        let head = self.head_number();
        self.set_account(a, acc, head);
    }

    fn state_root(&self) -> B256 {
        let mut buf = Vec::with_capacity(self.accounts.len() * 60);
        for (a, acc) in &self.accounts {
            buf.extend_from_slice(a.as_slice());
            buf.extend_from_slice(&acc.balance.to_be_bytes::<32>());
            buf.extend_from_slice(&acc.nonce.to_be_bytes());
        }
        // Empty for a chain of transfers only, so their roots are unchanged.
        for (a, (_, hash)) in &self.code_of {
            buf.extend_from_slice(a.as_slice());
            buf.extend_from_slice(hash.as_slice());
        }
        for ((a, slot), h) in &self.storage {
            if let Some((_, v)) = h.last().filter(|(_, v)| !v.is_zero()) {
                buf.extend_from_slice(a.as_slice());
                buf.extend_from_slice(&slot.to_be_bytes::<32>());
                buf.extend_from_slice(&v.to_be_bytes::<32>());
            }
        }
        keccak256(&buf)
    }

    /// Applies revm's state diff of one transaction at block `number`.
    fn apply_state(&mut self, state: revm::state::EvmState, number: u64) {
        let mut changed: Vec<_> = state
            .into_iter()
            .filter(|(_, acc)| acc.is_touched())
            .collect();
        changed.sort_by_key(|(a, _)| *a);
        for (address, acc) in changed {
            if acc.is_selfdestructed() {
                // Cancun: only a contract created in the same transaction
                // is destroyed, so it has no earlier code or storage here.
                self.code_of.remove(&address);
                self.set_account(address, Account::default(), number);
                continue;
            }
            self.set_account(
                address,
                Account {
                    balance: acc.info.balance,
                    nonce: acc.info.nonce,
                },
                number,
            );
            if acc.is_created() {
                if let Some(code) = acc.info.code.clone().filter(|c| !c.is_empty()) {
                    let hash = acc.info.code_hash;
                    self.codes.entry(hash).or_insert(code);
                    self.code_of.insert(address, (number, hash));
                }
            }
            let mut slots: Vec<_> = acc.changed_storage_slots().collect();
            slots.sort_by_key(|(k, _)| **k);
            for (slot, value) in slots {
                self.set_storage(address, *slot, value.present_value(), number);
            }
        }
    }

    /// Decodes and admits a raw transaction; returns its hash.
    pub fn add_raw(&mut self, raw: &[u8]) -> Result<B256, TxError> {
        let mut slice = raw;
        let tx = TxEnvelope::decode_2718(&mut slice).map_err(|e| TxError::Decode(e.to_string()))?;
        if !slice.is_empty() {
            return Err(TxError::Decode("input contains more than one value".into()));
        }
        self.add_tx(tx)
    }

    /// Checks a transaction against geth's pool rules without admitting it.
    pub fn check_tx(&self, tx: &TxEnvelope) -> Result<Address, TxError> {
        match tx {
            TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_) => {}
            _ => return Err(TxError::TypeNotSupported),
        }
        match tx.chain_id() {
            None => return Err(TxError::NotReplayProtected),
            Some(c) if c != self.chain_id => {
                return Err(TxError::WrongChainId {
                    have: c,
                    want: self.chain_id,
                })
            }
            Some(_) => {}
        }
        let from = tx.recover_signer().map_err(|_| TxError::InvalidSender)?;
        let hash = *tx.tx_hash();
        if self.pool_by_hash.contains_key(&hash) {
            return Err(TxError::AlreadyKnown);
        }
        if tx.to().is_none() && tx.input().len() > MAX_INITCODE_SIZE {
            return Err(TxError::InitcodeSize {
                size: tx.input().len(),
                limit: MAX_INITCODE_SIZE,
            });
        }
        if tx.gas_limit() > BLOCK_GAS_LIMIT {
            return Err(TxError::GasLimit);
        }
        if let Some(tip) = tx.max_priority_fee_per_gas() {
            if tip > tx.max_fee_per_gas() {
                return Err(TxError::TipAboveFeeCap);
            }
        }
        let want = intrinsic_gas(tx);
        if tx.gas_limit() < want {
            return Err(TxError::IntrinsicGas {
                have: tx.gas_limit(),
                want,
            });
        }
        let state = self.account(&from);
        let nonce = tx.nonce();
        if nonce < state.nonce {
            return Err(TxError::NonceTooLow {
                address: from,
                tx: nonce,
                state: state.nonce,
            });
        }
        let pending = self.pending_nonce(&from);
        if nonce > pending {
            return Err(TxError::NonceTooHigh {
                address: from,
                tx: nonce,
                state: pending,
            });
        }
        let base_fee = self.next_base_fee();
        if tx.max_fee_per_gas() < u128::from(base_fee) {
            return Err(TxError::FeeCapTooLow {
                address: from,
                max_fee: tx.max_fee_per_gas(),
                base_fee,
            });
        }
        if let Some(old) = self.pool.get(&(from, nonce)) {
            let old_fee = old.tx.max_fee_per_gas();
            let old_tip = old.tx.priority_fee_or_price();
            let bumped = |new: u128, old: u128| new.saturating_mul(100) >= old.saturating_mul(110);
            if !bumped(tx.max_fee_per_gas(), old_fee)
                || !bumped(tx.priority_fee_or_price(), old_tip)
            {
                return Err(TxError::ReplacementUnderpriced);
            }
        }
        let cost = |t: &TxEnvelope| {
            (U256::from(t.gas_limit()) * U256::from(t.max_fee_per_gas())).saturating_add(t.value())
        };
        let mut want = cost(tx);
        for ((_, n), p) in self.pool.range((from, state.nonce)..=(from, u64::MAX)) {
            if *n != nonce {
                want = want.saturating_add(cost(&p.tx));
            }
        }
        if state.balance < want {
            return Err(TxError::InsufficientFunds {
                address: from,
                have: state.balance,
                want,
            });
        }
        Ok(from)
    }

    /// Admits a transaction to the pool (replacing a same-nonce one).
    pub fn add_tx(&mut self, tx: TxEnvelope) -> Result<B256, TxError> {
        let from = self.check_tx(&tx)?;
        let hash = *tx.tx_hash();
        let key = (from, tx.nonce());
        if let Some(old) = self.pool.remove(&key) {
            self.pool_by_hash.remove(&old.hash);
            tracing::debug!(old = %old.hash, new = %hash, "replaced pending transaction");
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pool.insert(
            key,
            PendingTx {
                tx,
                from,
                hash,
                seq,
            },
        );
        self.pool_by_hash.insert(hash, key);
        Ok(hash)
    }

    /// Mines one block from the pool at `timestamp` (raised to parent + 1
    /// if needed) and returns its hash.
    pub fn mine_block(&mut self, timestamp: u64) -> B256 {
        let parent = self.head().header.clone();
        let number = parent.number + 1;
        let base_fee = self.next_base_fee();
        let timestamp = timestamp.max(parent.timestamp + 1);
        let beneficiary = Address::ZERO;
        let prevrandao = keccak256(self.head().hash);

        let mut included: Vec<MinedTx> = Vec::new();
        let mut gas_used: u64 = 0;
        let mut log_count: u64 = 0;
        let mut skipped: Vec<Address> = Vec::new();
        loop {
            // Each sender's next executable transaction; pick the best tip.
            let mut best: Option<(&PendingTx, u128)> = None;
            let mut last_sender = None;
            for ((sender, nonce), p) in &self.pool {
                if last_sender == Some(*sender) {
                    continue;
                }
                last_sender = Some(*sender);
                if skipped.contains(sender) || *nonce != self.account(sender).nonce {
                    continue;
                }
                let Some(tip) = effective_tip(&p.tx, base_fee) else {
                    continue;
                };
                let better = match best {
                    None => true,
                    Some((b, bt)) => tip > bt || (tip == bt && p.seq < b.seq),
                };
                if better {
                    best = Some((p, tip));
                }
            }
            let Some((p, tip)) = best.map(|(p, t)| (p.clone(), t)) else {
                break;
            };
            if gas_used + p.tx.gas_limit() > BLOCK_GAS_LIMIT {
                skipped.push(p.from);
                continue;
            }
            let price = u128::from(base_fee) + tip;
            let upfront =
                (U256::from(p.tx.gas_limit()) * U256::from(price)).saturating_add(p.tx.value());
            if self.account(&p.from).balance < upfront {
                skipped.push(p.from);
                continue;
            }
            let ctx = BlockContext {
                number,
                timestamp,
                base_fee,
                beneficiary,
                prevrandao,
            };
            let view = StateView {
                chain: self,
                at: None,
            };
            let outcome = match evm::execute(view, self.chain_id, &ctx, evm::tx_env(&p.tx, p.from))
            {
                Ok(outcome) => outcome,
                Err(EVMError::Transaction(e)) => {
                    tracing::debug!(hash = %p.hash, error = %e, "transaction not executable now");
                    skipped.push(p.from);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(hash = %p.hash, error = %e, "transaction execution failed");
                    skipped.push(p.from);
                    continue;
                }
            };
            self.apply_state(outcome.state, number);
            // Keep sender, recipient and miner in the state even when empty.
            for a in [Some(p.from), p.tx.to(), Some(beneficiary)]
                .into_iter()
                .flatten()
            {
                let acc = self.account(&a);
                self.set_account(a, acc, number);
            }
            let gas = outcome.result.tx_gas_used();
            let success = outcome.result.is_success();
            let contract_address = p.tx.to().is_none().then(|| p.from.create(p.tx.nonce()));
            let logs = match outcome.result {
                ExecutionResult::Success { logs, .. } => logs,
                _ => Vec::new(),
            };
            gas_used += gas;
            self.pool.remove(&(p.from, p.tx.nonce()));
            self.pool_by_hash.remove(&p.hash);
            let first_log_index = log_count;
            log_count += logs.len() as u64;
            included.push(MinedTx {
                tx: p.tx,
                from: p.from,
                gas_used: gas,
                cumulative_gas_used: gas_used,
                effective_gas_price: price,
                success,
                logs,
                first_log_index,
                contract_address,
            });
        }

        let envelopes: Vec<&TxEnvelope> = included.iter().map(|m| &m.tx).collect();
        let receipts: Vec<ReceiptEnvelope> = included.iter().map(receipt_envelope).collect();
        let mut logs_bloom = Bloom::ZERO;
        for r in &receipts {
            logs_bloom.accrue_bloom(r.logs_bloom());
        }
        let header = Header {
            parent_hash: self.head().hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary,
            state_root: self.state_root(),
            transactions_root: if envelopes.is_empty() {
                EMPTY_ROOT_HASH
            } else {
                calculate_transaction_root(&envelopes)
            },
            receipts_root: if receipts.is_empty() {
                EMPTY_ROOT_HASH
            } else {
                calculate_receipt_root(&receipts)
            },
            logs_bloom,
            difficulty: U256::ZERO,
            number,
            gas_limit: BLOCK_GAS_LIMIT,
            gas_used,
            timestamp,
            extra_data: Bytes::new(),
            mix_hash: prevrandao,
            nonce: B64::ZERO,
            base_fee_per_gas: Some(base_fee),
            withdrawals_root: Some(EMPTY_ROOT_HASH),
            ..Default::default()
        };
        let hash = header.hash_slow();
        for (i, m) in included.iter().enumerate() {
            self.tx_index.insert(*m.tx.tx_hash(), (number, i));
        }
        self.by_hash.insert(hash, number);
        self.blocks.push(EthBlock {
            header,
            hash,
            txs: included,
        });
        // Drop pool transactions that can no longer be mined (nonce used).
        let stale: Vec<(Address, u64)> = self
            .pool
            .keys()
            .filter(|(a, n)| *n < self.account(a).nonce)
            .copied()
            .collect();
        for k in stale {
            if let Some(p) = self.pool.remove(&k) {
                self.pool_by_hash.remove(&p.hash);
            }
        }
        hash
    }
}

/// The receipt of a mined transaction with the given log representation.
pub fn receipt_with_logs<T>(m: &MinedTx, logs: Vec<T>) -> ReceiptEnvelope<T> {
    let logs_bloom = Bloom::from_iter(m.logs.iter());
    let receipt = ReceiptWithBloom {
        receipt: Receipt {
            status: Eip658Value::Eip658(m.success),
            cumulative_gas_used: m.cumulative_gas_used,
            logs,
        },
        logs_bloom,
    };
    match &m.tx {
        TxEnvelope::Legacy(_) => ReceiptEnvelope::Legacy(receipt),
        TxEnvelope::Eip2930(_) => ReceiptEnvelope::Eip2930(receipt),
        _ => ReceiptEnvelope::Eip1559(receipt),
    }
}

/// The consensus receipt of a mined transaction.
pub fn receipt_envelope(m: &MinedTx) -> ReceiptEnvelope {
    receipt_with_logs(m, m.logs.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_primitives::TxKind;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    fn signed(
        signer: &PrivateKeySigner,
        nonce: u64,
        to: Address,
        value: u64,
        max_fee: u128,
    ) -> TxEnvelope {
        let tx = TxEip1559 {
            chain_id: DEFAULT_CHAIN_ID,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(to),
            value: U256::from(value),
            access_list: Default::default(),
            input: Bytes::new(),
        };
        let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("sign");
        TxEnvelope::from(tx.into_signed(sig))
    }

    #[test]
    fn transfer_moves_value_and_fee() {
        let alice = PrivateKeySigner::random();
        let bob = Address::repeat_byte(0xbb);
        let start = U256::from(10u128.pow(18));
        let mut c = EthChain::genesis(DEFAULT_CHAIN_ID, 1_000, &[(alice.address(), start)]);
        let tx = signed(&alice, 0, bob, 1_000, 3_000_000_000);
        c.add_tx(tx.clone()).expect("admitted");
        assert_eq!(c.add_tx(tx.clone()), Err(TxError::AlreadyKnown));
        c.mine_block(1_001);
        // Block 1's base fee is 7/8 of genesis's (genesis used no gas).
        let base = c.head().header.base_fee_per_gas.expect("london");
        assert_eq!(base, INITIAL_BASE_FEE * 7 / 8);
        let price = u128::from(base) + 1_000_000_000;
        assert_eq!(c.account(&bob).balance, U256::from(1_000));
        assert_eq!(
            c.account(&alice.address()).balance,
            start - U256::from(1_000) - U256::from(21_000 * price)
        );
        assert_eq!(c.account(&alice.address()).nonce, 1);
        assert!(matches!(c.add_tx(tx), Err(TxError::NonceTooLow { .. })));
        assert_eq!(c.account_at(&alice.address(), 0).balance, start);
        // A block of one transfer uses 21000 of 30M gas: base fee goes down.
        assert!(c.next_base_fee() < base);
        assert_eq!(
            c.account(&Address::ZERO).balance,
            U256::from(21_000u64 * 1_000_000_000)
        );
    }

    #[test]
    fn replacement_needs_ten_percent() {
        let alice = PrivateKeySigner::random();
        let mut c = EthChain::genesis(
            DEFAULT_CHAIN_ID,
            1_000,
            &[(alice.address(), U256::from(10u128.pow(18)))],
        );
        c.add_tx(signed(&alice, 0, Address::ZERO, 1, 2_000_000_000))
            .expect("first");
        let tx = TxEip1559 {
            chain_id: DEFAULT_CHAIN_ID,
            nonce: 0,
            gas_limit: 21_000,
            max_fee_per_gas: 2_100_000_000,
            max_priority_fee_per_gas: 1_100_000_000,
            to: TxKind::Call(Address::ZERO),
            value: U256::from(2),
            access_list: Default::default(),
            input: Bytes::new(),
        };
        let sig = alice.sign_hash_sync(&tx.signature_hash()).expect("sign");
        assert_eq!(
            c.add_tx(TxEnvelope::from(tx.into_signed(sig))),
            Err(TxError::ReplacementUnderpriced)
        );
        let h = c.add_tx(signed(&alice, 0, Address::ZERO, 3, 2_200_000_000));
        assert!(h.is_err(), "tip not bumped: {h:?}");
    }
}
