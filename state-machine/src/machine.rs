//! The pure swap state machine: (swap, input, now) in, new swap and actions out.
//!
//! No I/O, no clock reads, no randomness, ordered maps only. Every decision
//! is data ([`Action`]) that the hot wallet carries out *after* persisting
//! the new [`Swap`]; actions are idempotent by their ids (a [`PaymentOrder`]
//! by its `payment_id`, an execution and a lock release by the quote id).
//!
//! The lifecycle is a `statig` hierarchical machine (see `lifecycle`); the
//! state enum is persisted inside [`Swap`] and [`Swap::state_name`] gives its
//! stable snake_case name.
//!
//! Deposits are accounted one by one ([`DepositKey`] = txid and output), each
//! with exactly one [`Disposition`]. Deposits first seen while the swap takes
//! deposits (before the deadline, before execution starts) count toward the
//! swap; the others ("extra" deposits) are refunded on their own once they
//! have the confirmations their own amount requires.

mod lifecycle;
mod view;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use proto::event::TxStatus;
use proto::{Amount, AssetId, Network, Price, QuoteId, SwapId, Timestamp};
use serde::{Deserialize, Serialize};

pub use view::ViewError;

use lifecycle::State;

/// Basis points in one whole (100%).
const BPS: u128 = 10_000;

/// The engine's rules for one swap, fixed when it is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Confirmations required for a deposit total: the highest threshold
    /// `<=` the amount wins; never fewer than 1 (never pay on zero
    /// confirmations). e.g. `[(0, 1), (1_000_000, 2), (100_000_000, 6)]`.
    pub confirmations: Vec<(Amount, u32)>,
    /// Depth at which a payout or refund counts as confirmed (at least 1).
    pub payout_confirmations: u32,
    /// A deposit total short of the quoted amount by at most this much is
    /// accepted, and the quoted payout is paid.
    pub underpay_tolerance_bps: u32,
    /// A deposit total over the quoted amount by more than this is a mismatch.
    pub overpay_tolerance_bps: u32,
    /// Deposits below this are recorded as dust and not acted upon.
    pub dust_threshold: Amount,
    /// Time the user has to choose a re-quote or a refund after an amount
    /// mismatch; then the deposit is refunded.
    pub mismatch_decision_window_secs: i64,
}

impl Policy {
    /// Confirmations a deposit total of `amount` needs: the highest
    /// threshold not above `amount`, and at least 1.
    pub fn required_confirmations(&self, amount: Amount) -> u32 {
        self.confirmations
            .iter()
            .filter(|(threshold, _)| *threshold <= amount)
            .max_by_key(|(threshold, _)| *threshold)
            .map(|(_, n)| *n)
            .unwrap_or(1)
            .max(1)
    }

    /// Depth at which the engine's own payments count as confirmed (>= 1).
    pub fn payment_confirmations(&self) -> u64 {
        u64::from(self.payout_confirmations.max(1))
    }

    /// Whether a deposit total of `received` is close enough to `expected`
    /// to pay the quoted amount.
    pub fn within_tolerance(&self, expected: Amount, received: Amount) -> bool {
        let (expected, received) = (expected.base_units(), received.base_units());
        let (diff, bps) = if received < expected {
            (expected - received, self.underpay_tolerance_bps)
        } else {
            (received - expected, self.overpay_tolerance_bps)
        };
        // diff / expected <= bps / 10_000 in integers:
        // diff <= floor(expected * bps / 10_000), computed without overflow
        // (a product too large for u128 exceeds any difference anyway).
        let bps = u128::from(bps);
        let allowed = (expected / BPS)
            .checked_mul(bps)
            .and_then(|whole| whole.checked_add((expected % BPS) * bps / BPS))
            .unwrap_or(u128::MAX);
        diff <= allowed
    }
}

/// What a swap was opened with; never changes afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapTerms {
    pub swap_id: SwapId,
    pub quote_id: QuoteId,
    pub from: AssetId,
    pub to: AssetId,
    pub deposit_network: Network,
    pub payout_network: Network,
    pub deposit_address: String,
    pub payout_address: String,
    pub deposit_amount: Amount,
    pub payout_amount: Amount,
    pub price: Price,
    /// The deposit must be *seen* by then.
    pub deadline: Timestamp,
    pub policy: Policy,
}

/// A deposit output: the transaction id and the output index (for
/// Ethereum, 0 for a native transfer or the log index of an ERC-20 transfer).
/// Written `txid:output`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DepositKey {
    pub txid: String,
    pub output: u32,
}

impl DepositKey {
    pub fn new(txid: impl Into<String>, output: u32) -> Self {
        DepositKey {
            txid: txid.into(),
            output,
        }
    }
}

impl fmt::Display for DepositKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.txid, self.output)
    }
}

/// A string that is not `txid:output`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a deposit key (expected txid:output)")]
pub struct DepositKeyError(pub String);

impl FromStr for DepositKey {
    type Err = DepositKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (txid, output) = s
            .rsplit_once(':')
            .ok_or_else(|| DepositKeyError(s.to_owned()))?;
        let output = output.parse().map_err(|_| DepositKeyError(s.to_owned()))?;
        Ok(DepositKey::new(txid, output))
    }
}

impl Serialize for DepositKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DepositKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What became, or will become, of a deposit. Every deposit has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// An extra deposit waiting for the confirmations its amount requires.
    Pending,
    /// Counts toward the swap (paid out when the swap completes).
    Applied,
    /// To be returned: ordered (`refund_payment_id` set) or waiting for a
    /// refund address.
    Refund,
    /// Returned: its refund payment is confirmed.
    Refunded,
    /// An operator must look at it: owed back by a finished swap that has
    /// no refund address yet (no `refund_payment_id`), or reorganised or
    /// dropped after its refund was ordered.
    Review,
    /// Below the dust threshold: recorded, not acted upon.
    Dust,
    /// Replaced, double-spent or evicted before it counted.
    Dropped,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Pending => "pending",
            Disposition::Applied => "applied",
            Disposition::Refund => "refund",
            Disposition::Refunded => "refunded",
            Disposition::Review => "review",
            Disposition::Dust => "dust",
            Disposition::Dropped => "dropped",
        }
    }
}

/// One output paying the swap's deposit address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    pub amount: Amount,
    /// The latest observation; confirmations count only from it.
    pub status: TxStatus,
    /// Depth of the latest observation (0 unless it is `Confirmed`).
    pub confirmations: u64,
    pub disposition: Disposition,
    /// First seen after the swap stopped taking deposits (deadline passed,
    /// execution started, refund or terminal state): refunded on its own.
    pub extra: bool,
    pub first_seen_at: Timestamp,
    /// The refund payment that returns it, once ordered.
    pub refund_payment_id: Option<String>,
}

/// Which of the engine's payments a [`PaymentOrder`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    Payout,
    Refund,
}

/// A payment for the hot wallet to make. It persists the intent under
/// `payment_id` before signing; one id never becomes two different payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentOrder {
    pub payment_id: String,
    pub kind: PaymentKind,
    pub network: Network,
    pub asset: AssetId,
    pub address: String,
    pub amount: Amount,
}

/// Where one of the engine's payments stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Ordered; not (or no longer) in a mempool as far as the swap knows.
    Pending,
    /// Broadcast, possibly in blocks, not yet deep enough.
    Broadcast,
    /// At least `payout_confirmations` deep.
    Confirmed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Broadcast => "broadcast",
            PaymentStatus::Confirmed => "confirmed",
        }
    }
}

/// A payment the swap ordered (payout or refund) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub order: PaymentOrder,
    /// The transaction last broadcast for it.
    pub txid: Option<String>,
    /// Earlier transactions for the same payment (fee bumps, rebroadcasts);
    /// any of them confirming settles the payment.
    pub replaced_txids: Vec<String>,
    pub status: PaymentStatus,
    pub confirmations: u64,
}

/// A re-quote the user accepted for the amount actually deposited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requote {
    pub payout_amount: Amount,
    pub price: Price,
}

/// Where the execution with liquidity stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Execution {
    NotRequested,
    Requested,
    Honoured,
    Refused { reason: String },
}

/// One swap: its terms, what happened to it, and its lifecycle state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Swap {
    pub terms: SwapTerms,
    pub refund_address: Option<String>,
    pub deposits: BTreeMap<DepositKey, Deposit>,
    pub payout: Option<Payment>,
    /// Refunds by payment id: the swap's own (`refund:<swap_id>`) and one per
    /// extra deposit (`refund:<swap_id>:<txid>:<output>`).
    pub refunds: BTreeMap<String, Payment>,
    pub requote: Option<Requote>,
    pub execution: Execution,
    pub lock_released: bool,
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    state: State,
}

/// The result of applying an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub swap: Swap,
    /// Effects to perform, in order, after `swap` is persisted.
    pub actions: Vec<Action>,
    /// False when the input changed nothing (a duplicate or irrelevant
    /// observation): nothing to persist, no actions.
    pub changed: bool,
}

/// An operator's decision on a swap in manual review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum OperatorDecision {
    PayOut,
    Refund,
    Fail { reason: String },
}

/// What can happen to a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SwapInput {
    /// From a chain event about an output paying the deposit address.
    Deposit {
        txid: String,
        output: u32,
        amount: Amount,
        status: TxStatus,
    },
    /// The hot wallet signed and broadcast a payment (payout or refund).
    PaymentBroadcast {
        payment_id: String,
        txid: String,
    },
    /// A chain event about a payment's transaction.
    PaymentObserved {
        txid: String,
        status: TxStatus,
    },
    /// A payment's transaction was mined but failed (Ethereum receipt
    /// status 0): it moved nothing. The swap goes to manual review.
    PaymentReverted {
        txid: String,
    },
    /// Liquidity honoured the price (and hedged); the payout may go.
    Executed,
    /// Execution refused (e.g. lock lost, halted): the deposit is refunded.
    ExecutionFailed {
        reason: String,
    },
    RefundAddressProvided {
        address: String,
    },
    /// The user accepted a re-quote for the amount actually deposited.
    RequoteAccepted {
        payout_amount: Amount,
        price: Price,
    },
    RefundRequested,
    /// Time passed (deadlines, decision windows).
    Tick,
    /// An operator's decision on a swap in manual review.
    OperatorDecision(OperatorDecision),
}

impl SwapInput {
    /// A short snake_case name of the input's kind, for messages and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SwapInput::Deposit { .. } => "deposit",
            SwapInput::PaymentBroadcast { .. } => "payment_broadcast",
            SwapInput::PaymentObserved { .. } => "payment_observed",
            SwapInput::PaymentReverted { .. } => "payment_reverted",
            SwapInput::Executed => "executed",
            SwapInput::ExecutionFailed { .. } => "execution_failed",
            SwapInput::RefundAddressProvided { .. } => "refund_address_provided",
            SwapInput::RequoteAccepted { .. } => "requote_accepted",
            SwapInput::RefundRequested => "refund_requested",
            SwapInput::Tick => "tick",
            SwapInput::OperatorDecision(_) => "operator_decision",
        }
    }
}

/// An effect for the hot wallet to perform after persisting the swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Ask liquidity to honour the locked price for the deposit (and hedge).
    Execute {
        swap_id: SwapId,
        quote_id: QuoteId,
        deposit_amount: Amount,
    },
    /// Make a payment (idempotent by `payment_id`).
    Pay(PaymentOrder),
    /// Release the price lock (expired, refunded, failed).
    ReleaseLock { quote_id: QuoteId },
}

/// An input that cannot apply to the swap as it is. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("{input} does not apply to a swap that is {state}")]
    NotApplicable {
        input: &'static str,
        state: &'static str,
    },
    #[error(
        "deposit {key} was recorded as {recorded} base units, but an observation says {observed}"
    )]
    ConflictingDeposit {
        key: DepositKey,
        recorded: Amount,
        observed: Amount,
    },
    #[error("payment {0:?} is not one this swap ordered")]
    UnknownPayment(String),
    #[error("payment {0:?} is already confirmed; a new transaction for it is refused")]
    PaymentAlreadyConfirmed(String),
    #[error("the swap is {state} and owes no refund, so it needs no refund address")]
    RefundAddressNotNeeded { state: &'static str },
    #[error("the swap already has refund address {current:?}; it cannot change once given")]
    RefundAddressAlreadySet { current: String },
    #[error("refund address {address:?} is not valid on {network}: {reason}")]
    InvalidRefundAddress {
        address: String,
        network: Network,
        reason: String,
    },
    #[error("cannot pay out: {0}")]
    CannotPayOut(String),
    #[error("cannot refund: {0}")]
    CannotRefund(String),
    #[error("deposit amounts overflow when added up")]
    Overflow,
}

impl Swap {
    /// Opens a swap awaiting its deposit.
    pub fn open(
        terms: SwapTerms,
        refund_address: Option<String>,
        now: Timestamp,
    ) -> (Swap, Vec<Action>) {
        let swap = Swap {
            terms,
            refund_address,
            deposits: BTreeMap::new(),
            payout: None,
            refunds: BTreeMap::new(),
            requote: None,
            execution: Execution::NotRequested,
            lock_released: false,
            reason: None,
            created_at: now,
            updated_at: now,
            state: lifecycle::initial(),
        };
        (swap, Vec::new())
    }

    /// Where the swap stands, as clients see it.
    pub fn status(&self) -> proto::api::SwapStatus {
        self.state.status()
    }

    /// The internal state's stable snake_case name (persisted).
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// Completed, expired, refunded or failed: the status never changes again.
    pub fn is_terminal(&self) -> bool {
        self.status().is_terminal()
    }

    /// The payout amount agreed: the quote's, or an accepted re-quote's.
    pub fn agreed_payout_amount(&self) -> Amount {
        self.requote
            .as_ref()
            .map_or(self.terms.payout_amount, |r| r.payout_amount)
    }

    /// Confirmations the deposit total requires now.
    pub fn required_confirmations(&self) -> u32 {
        self.terms
            .policy
            .required_confirmations(self.counted_total())
    }

    /// Sum of the deposits that count toward the swap (applied, or being
    /// refunded as the swap's own refund).
    pub fn counted_total(&self) -> Amount {
        let units = self
            .deposits
            .values()
            .filter(|d| !d.extra && d.disposition == Disposition::Applied)
            .map(|d| d.amount.base_units())
            .fold(0u128, u128::saturating_add);
        Amount::from_base_units(units)
    }

    /// Applies one input at `now`. `Err` leaves the swap as it was.
    pub fn apply(&self, input: &SwapInput, now: Timestamp) -> Result<Transition, Rejected> {
        lifecycle::apply(self, input, now)
    }

    /// The swap as clients see it; amounts printed with the assets' decimals.
    pub fn view(&self, assets: &proto::Assets) -> Result<proto::api::SwapView, ViewError> {
        view::view(self, assets)
    }
}
