//! Execution through revm (Cancun rules) against the chain's state: the
//! block builder's per-transaction step, `eth_call` and `eth_estimateGas`.
//! The chain is read through [`StateView`], a [`DatabaseRef`] at the head
//! or at a historical block; execution never writes, callers apply the
//! returned state diff.

use std::convert::Infallible;

use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use revm::context::result::{EVMError, ExecutionResult, HaltReason, ResultAndState};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::primitives::hardfork::SpecId;
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, DatabaseRef, ExecuteEvm, MainBuilder, MainContext};

use super::chain::{EthChain, BLOCK_GAS_LIMIT};

/// The hardfork whose rules transactions execute under.
pub const SPEC: SpecId = SpecId::CANCUN;

/// The chain's state as revm reads it: at the head (`at: None`, including
/// transactions already executed in the block being built) or as of the
/// end of block `at`.
pub(crate) struct StateView<'a> {
    pub chain: &'a EthChain,
    pub at: Option<u64>,
}

impl DatabaseRef for StateView<'_> {
    type Error = Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Infallible> {
        let acc = self.chain.account_view(&address, self.at);
        let code = self.chain.code_view(&address, self.at);
        if acc.balance.is_zero() && acc.nonce == 0 && code.is_none() {
            return Ok(None);
        }
        Ok(Some(match code {
            Some((hash, code)) => AccountInfo::new(acc.balance, acc.nonce, hash, code.clone()),
            None => AccountInfo::from_balance(acc.balance).with_nonce(acc.nonce),
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Infallible> {
        Ok(self
            .chain
            .code_by_hash(&code_hash)
            .cloned()
            .unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Infallible> {
        Ok(self.chain.storage_view(&address, &index, self.at))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Infallible> {
        Ok(self.chain.block(number).map(|b| b.hash).unwrap_or_default())
    }
}

/// The block context a transaction executes in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockContext {
    pub number: u64,
    pub timestamp: u64,
    pub base_fee: u64,
    pub beneficiary: Address,
    pub prevrandao: B256,
}

fn block_env(b: &BlockContext) -> BlockEnv {
    BlockEnv {
        number: U256::from(b.number),
        beneficiary: b.beneficiary,
        timestamp: U256::from(b.timestamp),
        gas_limit: BLOCK_GAS_LIMIT,
        basefee: b.base_fee,
        difficulty: U256::ZERO,
        prevrandao: Some(b.prevrandao),
        ..Default::default()
    }
}

/// The execution environment of a signed transaction.
pub(crate) fn tx_env(tx: &TxEnvelope, from: Address) -> TxEnv {
    let (tx_type, gas_priority_fee) = match tx {
        TxEnvelope::Legacy(_) => (0u8, None),
        TxEnvelope::Eip2930(_) => (1, None),
        _ => (2, tx.max_priority_fee_per_gas()),
    };
    TxEnv {
        tx_type,
        caller: from,
        gas_limit: tx.gas_limit(),
        gas_price: tx.max_fee_per_gas(),
        kind: tx.kind(),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: tx.chain_id(),
        access_list: tx.access_list().cloned().unwrap_or_default(),
        gas_priority_fee,
        ..Default::default()
    }
}

/// Executes `tx` on `view` in block `block`, returning the result and the
/// state diff without applying it.
pub(crate) fn execute(
    view: StateView<'_>,
    chain_id: u64,
    block: &BlockContext,
    tx: TxEnv,
) -> Result<ResultAndState, EVMError<Infallible>> {
    let mut cfg = CfgEnv::new_with_spec(SPEC);
    cfg.chain_id = chain_id;
    let mut evm = Context::mainnet()
        .with_block(block_env(block))
        .with_cfg(cfg)
        .with_ref_db(view)
        .build_mainnet();
    evm.transact(tx)
}

/// An `eth_call` / `eth_estimateGas` request (geth's transaction args).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// Sender (zero address when absent).
    pub from: Option<Address>,
    /// Callee; `None` runs the input as creation code.
    pub to: Option<Address>,
    /// Gas limit (the block gas limit when absent).
    pub gas: Option<u64>,
    /// Legacy gas price.
    pub gas_price: Option<u128>,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: Option<u128>,
    /// EIP-1559 tip cap.
    pub max_priority_fee_per_gas: Option<u128>,
    /// Value sent.
    pub value: U256,
    /// Calldata or creation code.
    pub input: Bytes,
}

/// Why a call did not return normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The code reverted; carries the revert data.
    #[error("{}", revert_message(.0))]
    Reverted(Bytes),
    /// Execution halted (out of gas, invalid opcode, ...).
    #[error("{0}")]
    Halted(String),
    /// The transaction is invalid in this state (funds, fees, gas).
    #[error("{0}")]
    Invalid(String),
    /// `eth_estimateGas` found no gas limit up to the cap that succeeds.
    #[error("gas required exceeds allowance ({0})")]
    GasExceedsAllowance(u64),
}

/// geth's message for a revert: `execution reverted`, with the reason when
/// the data is a Solidity `Error(string)`.
pub fn revert_message(data: &[u8]) -> String {
    match decode_error_string(data) {
        Some(reason) => format!("execution reverted: {reason}"),
        None => "execution reverted".to_string(),
    }
}

/// Decodes Solidity's `Error(string)` revert payload.
pub fn decode_error_string(data: &[u8]) -> Option<String> {
    let body = data.strip_prefix(&[0x08, 0xc3, 0x79, 0xa0][..])?;
    decode_abi_string(body)
}

/// Decodes an ABI-encoded single `string` (offset, length, bytes).
pub fn decode_abi_string(data: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<usize> {
        let w = data.get(at..at.checked_add(32)?)?;
        if w[..24].iter().any(|b| *b != 0) {
            return None;
        }
        usize::try_from(u64::from_be_bytes(w[24..].try_into().ok()?)).ok()
    };
    let offset = word(0)?;
    let len = word(offset)?;
    let start = offset.checked_add(32)?;
    let bytes = data.get(start..start.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// Runs a call at the end of block `at` in that block's context. Without
/// any fee field the base fee is zero and nothing is charged, like geth.
pub(crate) fn call(
    chain: &EthChain,
    at: u64,
    req: &CallRequest,
    gas: u64,
) -> Result<ExecutionResult<HaltReason>, CallError> {
    let header = chain
        .block(at)
        .map(|b| b.header.clone())
        .unwrap_or_default();
    let priced = req.gas_price.is_some() || req.max_fee_per_gas.is_some();
    let block = BlockContext {
        number: at,
        timestamp: header.timestamp,
        base_fee: if priced {
            header.base_fee_per_gas.unwrap_or(0)
        } else {
            0
        },
        beneficiary: header.beneficiary,
        prevrandao: header.mix_hash,
    };
    let from = req.from.unwrap_or(Address::ZERO);
    let (tx_type, gas_price, gas_priority_fee) = match (req.gas_price, req.max_fee_per_gas) {
        (_, Some(max_fee)) => (
            2u8,
            max_fee,
            Some(req.max_priority_fee_per_gas.unwrap_or(0).min(max_fee)),
        ),
        (Some(price), None) => (0, price, None),
        (None, None) => (0, 0, None),
    };
    let tx = TxEnv {
        tx_type,
        caller: from,
        gas_limit: gas,
        gas_price,
        gas_priority_fee,
        kind: req.to.map_or(TxKind::Create, TxKind::Call),
        value: req.value,
        data: req.input.clone(),
        nonce: chain.account_view(&from, Some(at)).nonce,
        chain_id: Some(chain.chain_id()),
        ..Default::default()
    };
    let view = StateView {
        chain,
        at: Some(at),
    };
    match execute(view, chain.chain_id(), &block, tx) {
        Ok(r) => Ok(r.result),
        Err(EVMError::Transaction(e)) => Err(CallError::Invalid(e.to_string())),
        Err(e) => Err(CallError::Invalid(e.to_string())),
    }
}

/// The gas cap of a call: its own gas, at most the block gas limit.
pub(crate) fn gas_cap(req: &CallRequest) -> u64 {
    req.gas.unwrap_or(BLOCK_GAS_LIMIT).min(BLOCK_GAS_LIMIT)
}

/// `eth_call`: the output of a successful call.
pub(crate) fn call_output(
    chain: &EthChain,
    at: u64,
    req: &CallRequest,
) -> Result<Bytes, CallError> {
    match call(chain, at, req, gas_cap(req))? {
        ExecutionResult::Success { output, .. } => Ok(output.into_data()),
        ExecutionResult::Revert { output, .. } => Err(CallError::Reverted(output)),
        ExecutionResult::Halt { reason, .. } => Err(CallError::Halted(reason.to_string())),
    }
}

/// `eth_estimateGas`: the smallest gas limit with which the call succeeds,
/// found by binary search between the gas used and the cap (as geth does).
pub(crate) fn estimate_gas(chain: &EthChain, at: u64, req: &CallRequest) -> Result<u64, CallError> {
    let cap = gas_cap(req);
    let used = match call(chain, at, req, cap)? {
        ExecutionResult::Success { gas, .. } => gas.tx_gas_used(),
        ExecutionResult::Revert { output, .. } => return Err(CallError::Reverted(output)),
        ExecutionResult::Halt {
            reason: HaltReason::OutOfGas(_),
            ..
        } => return Err(CallError::GasExceedsAllowance(cap)),
        ExecutionResult::Halt { reason, .. } => return Err(CallError::Halted(reason.to_string())),
    };
    let succeeds = |gas: u64| matches!(call(chain, at, req, gas), Ok(r) if r.is_success());
    // Gas used is a lower bound: refunds and the 63/64 rule can need more.
    let mut lo = used.saturating_sub(1);
    let mut hi = cap;
    let optimistic = used.saturating_add(2300).saturating_mul(64) / 63;
    if optimistic < hi {
        if succeeds(optimistic) {
            hi = optimistic;
        } else {
            lo = optimistic;
        }
    }
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if succeeds(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}
