//! The swap lifecycle as a `statig` hierarchical machine, and the pure
//! driver that applies one input to a swap.
//!
//! Hierarchy (superstates in brackets):
//!
//! ```text
//! [swap]
//!   [funding]      awaiting_deposit, deposit_seen, confirming, amount_mismatch
//!   [settling]     executing, payout_pending, payout_broadcast
//!   [refund_path]  refund_required, refunding
//!   manual_review
//!   [terminal]     completed, expired, refunded, failed
//! ```
//!
//! `deposit_confirmed` is passed through within one transition: once every
//! counted deposit has its confirmations the amount check is pure, so the
//! swap goes straight on to `executing` or `amount_mismatch`.
//!
//! The statig shared storage is empty ([`Lifecycle`]); the swap being
//! changed travels as the context ([`Ctx`]), together with `now` and the
//! actions decided so far, so handlers stay plain functions of their inputs.

use proto::api::SwapStatus;
use proto::event::TxStatus;
use proto::{Amount, Timestamp};
use serde::{Deserialize, Serialize};
use statig::blocking::StateExt as _;
use statig::prelude::*;

use super::{
    Action, Deposit, DepositKey, Disposition, Execution, OperatorDecision, Payment, PaymentKind,
    PaymentOrder, PaymentStatus, Rejected, Requote, Swap, SwapInput,
};

/// The statig machine; its shared storage is empty (the swap is the context).
#[derive(Debug, Default)]
pub struct Lifecycle;

/// What a handler works on: the swap being changed, the time, the actions
/// decided so far, and the state the input was dispatched in.
#[derive(Debug)]
pub struct Ctx<'a> {
    swap: &'a mut Swap,
    now: Timestamp,
    actions: Vec<Action>,
    rejected: Option<Rejected>,
    /// The state before this input (the swap's own `state` field is not
    /// updated until the dispatch is over).
    current: State,
}

pub(super) fn initial() -> State {
    State::awaiting_deposit()
}

/// Applies `input` to a copy of `swap`: statig dispatch (leaf state, then
/// superstates), then the transition's exit and entry actions.
pub(super) fn apply(
    swap: &Swap,
    input: &SwapInput,
    now: Timestamp,
) -> Result<super::Transition, Rejected> {
    let mut next = swap.clone();
    let mut state = swap.state.clone();
    let mut ctx = Ctx {
        swap: &mut next,
        now,
        actions: Vec::new(),
        rejected: None,
        current: swap.state.clone(),
    };
    let mut shell = Lifecycle;
    if let Outcome::Transition(mut target) = state.handle(&mut shell, input, &mut ctx) {
        let (exit_levels, enter_levels) = state.transition_path(&mut target);
        state.exit(&mut shell, &mut ctx, exit_levels);
        state = target;
        state.enter(&mut shell, &mut ctx, enter_levels);
    }
    let Ctx {
        actions, rejected, ..
    } = ctx;
    if let Some(rejected) = rejected {
        tracing::debug!(swap_id = %swap.terms.swap_id, input = input.kind(), %rejected, "swap input rejected");
        return Err(rejected);
    }
    next.state = state;
    let changed = next != *swap || !actions.is_empty();
    if changed {
        next.updated_at = now;
        tracing::debug!(
            swap_id = %swap.terms.swap_id,
            input = input.kind(),
            from = swap.state.name(),
            to = next.state.name(),
            actions = actions.len(),
            "swap transition"
        );
    }
    Ok(super::Transition {
        swap: next,
        actions,
        changed,
    })
}

/// How far the counted deposits of a funding swap have come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Funding {
    Awaiting,
    Seen,
    Confirming,
    Confirmed(Amount),
    Expired,
}

/// What an observation did to the deposit it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Observed {
    Duplicate,
    Dust,
    Extra,
    Counted(DepositKey),
}

fn is_lost(d: &Deposit, required: u32) -> bool {
    matches!(
        d.status,
        TxStatus::Unconfirmed { .. } | TxStatus::Dropped { .. }
    ) || d.confirmations < u64::from(required)
}

/// Whether `observed` is older news than `recorded` (events can arrive out of
/// order): a smaller depth in the same block, or the reorganisation of a
/// block other than the one the output is now confirmed in.
fn is_stale(recorded: &TxStatus, observed: &TxStatus) -> bool {
    match (recorded, observed) {
        (
            TxStatus::Confirmed {
                block_hash: a,
                depth: recorded_depth,
                ..
            },
            TxStatus::Confirmed {
                block_hash: b,
                depth,
                ..
            },
        ) => a == b && depth < recorded_depth,
        (TxStatus::Confirmed { block_hash: a, .. }, TxStatus::Unconfirmed { block_hash: b }) => {
            a != b
        }
        _ => false,
    }
}

fn is_dropped(status: &TxStatus) -> bool {
    matches!(status, TxStatus::Dropped { .. })
}

fn sum(mut amounts: impl Iterator<Item = Amount>) -> Result<Amount, Rejected> {
    amounts.try_fold(Amount::ZERO, |acc, a| {
        acc.checked_add(a).map_err(|_| Rejected::Overflow)
    })
}

impl State {
    /// Stable snake_case name, persisted beside the swap.
    pub fn name(&self) -> &'static str {
        match self {
            State::AwaitingDeposit {} => "awaiting_deposit",
            State::DepositSeen {} => "deposit_seen",
            State::Confirming {} => "confirming",
            State::AmountMismatch { .. } => "amount_mismatch",
            State::Executing {} => "executing",
            State::PayoutPending {} => "payout_pending",
            State::PayoutBroadcast {} => "payout_broadcast",
            State::RefundRequired {} => "refund_required",
            State::Refunding {} => "refunding",
            State::ManualReview {} => "manual_review",
            State::Completed {} => "completed",
            State::Expired {} => "expired",
            State::Refunded {} => "refunded",
            State::Failed {} => "failed",
        }
    }

    pub fn status(&self) -> SwapStatus {
        match self {
            State::AwaitingDeposit {} => SwapStatus::AwaitingDeposit,
            State::DepositSeen {} => SwapStatus::DepositSeen,
            State::Confirming {} => SwapStatus::Confirming,
            State::AmountMismatch { .. } => SwapStatus::AmountMismatch,
            State::Executing {} => SwapStatus::Executing,
            State::PayoutPending {} => SwapStatus::PayoutPending,
            State::PayoutBroadcast {} => SwapStatus::PayoutBroadcast,
            State::RefundRequired {} => SwapStatus::RefundRequired,
            State::Refunding {} => SwapStatus::Refunding,
            State::ManualReview {} => SwapStatus::ManualReview,
            State::Completed {} => SwapStatus::Completed,
            State::Expired {} => SwapStatus::Expired,
            State::Refunded {} => SwapStatus::Refunded,
            State::Failed {} => SwapStatus::Failed,
        }
    }

    fn funding(&self) -> Option<Funding> {
        match self {
            State::AwaitingDeposit {} => Some(Funding::Awaiting),
            State::DepositSeen {} => Some(Funding::Seen),
            State::Confirming {} => Some(Funding::Confirming),
            State::AmountMismatch { total, .. } => Some(Funding::Confirmed(*total)),
            _ => None,
        }
    }
}

#[state_machine(
    initial = "State::awaiting_deposit()",
    state(derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)),
    superstate(derive(Debug))
)]
impl Lifecycle {
    // ----- funding: the swap takes deposits -----

    #[state(superstate = "funding")]
    fn awaiting_deposit(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    #[state(superstate = "funding")]
    fn deposit_seen(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    #[state(superstate = "funding")]
    fn confirming(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    /// Every counted deposit is confirmed but the total is outside the
    /// tolerance: the user may accept a re-quote or ask for a refund until
    /// `decide_by`; then the deposit is refunded.
    #[state(superstate = "funding")]
    fn amount_mismatch(
        context: &mut Ctx<'_>,
        event: &SwapInput,
        decide_by: &mut Timestamp,
        total: &mut Amount,
    ) -> Outcome<State> {
        match event {
            SwapInput::RequoteAccepted {
                payout_amount,
                price,
            } => {
                context.swap.requote = Some(Requote {
                    payout_amount: *payout_amount,
                    price: *price,
                });
                context.swap.reason = Some(format!(
                    "re-quoted for the {total} base units deposited: pays {payout_amount}"
                ));
                context.start_execution(*total)
            }
            SwapInput::RefundRequested => {
                let r = context.enter_refund("the user asked for a refund".to_owned());
                context.outcome(r)
            }
            SwapInput::Tick if context.now >= *decide_by => {
                let r = context.enter_refund(format!(
                    "no re-quote or refund was chosen by {decide_by}; refunding"
                ));
                context.outcome(r)
            }
            _ => Super,
        }
    }

    #[superstate(superstate = "swap")]
    fn funding(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            SwapInput::Deposit {
                txid,
                output,
                amount,
                status,
            } => {
                let r = context.funding_deposit(txid, *output, *amount, status);
                context.outcome(r)
            }
            SwapInput::Tick => {
                let r = context.refresh_funding();
                context.outcome(r)
            }
            _ => Super,
        }
    }

    // ----- settling: execution started; counted deposits are final -----

    #[state(superstate = "settling")]
    fn executing(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            SwapInput::Executed => {
                context.swap.execution = Execution::Honoured;
                let r = context.order_payout();
                context.outcome(r)
            }
            SwapInput::ExecutionFailed { reason } => {
                context.swap.execution = Execution::Refused {
                    reason: reason.clone(),
                };
                let r = context.enter_refund(format!("execution failed: {reason}"));
                context.outcome(r)
            }
            _ => Super,
        }
    }

    #[state(superstate = "settling")]
    fn payout_pending(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    #[state(superstate = "settling")]
    fn payout_broadcast(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    #[superstate(superstate = "swap")]
    fn settling(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            SwapInput::Deposit {
                txid,
                output,
                amount,
                status,
            } => {
                let r = context.settling_deposit(txid, *output, *amount, status);
                context.outcome(r)
            }
            SwapInput::PaymentBroadcast { payment_id, txid } => {
                let r = context.record_broadcast(payment_id, txid).map(|kind| {
                    let pending = matches!(context.current, State::PayoutPending {});
                    if kind == Some(PaymentKind::Payout) && pending {
                        Transition(State::payout_broadcast())
                    } else {
                        Handled
                    }
                });
                context.outcome(r)
            }
            SwapInput::PaymentObserved { txid, status } => {
                context.observe_payment(txid, status, true, false);
                context.after_payout_observed()
            }
            _ => Super,
        }
    }

    // ----- refund path: the counted deposits go back -----

    /// A refund is owed but cannot be ordered yet: no refund address, or a
    /// deposit to return is not (or no longer) confirmed enough.
    #[state(superstate = "refund_path")]
    fn refund_required(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            SwapInput::Deposit {
                txid,
                output,
                amount,
                status,
            } => {
                let r = context
                    .observe(txid, *output, *amount, status, false)
                    .and_then(|observed| {
                        if let Observed::Counted(key) = observed {
                            if let Some(d) = context.swap.deposits.get_mut(&key) {
                                if is_dropped(&d.status) && d.disposition == Disposition::Refund {
                                    d.disposition = Disposition::Dropped;
                                }
                            }
                        }
                        context.try_refund()
                    });
                context.outcome(r)
            }
            SwapInput::RefundAddressProvided { address } => {
                let r = context
                    .provide_refund_address(address)
                    .and_then(|()| context.try_refund());
                context.outcome(r)
            }
            _ => Super,
        }
    }

    /// The swap's refund is ordered.
    #[state(superstate = "refund_path")]
    fn refunding(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            SwapInput::Deposit {
                txid,
                output,
                amount,
                status,
            } => {
                let r = context.refunding_deposit(txid, *output, *amount, status);
                context.outcome(r)
            }
            SwapInput::PaymentObserved { txid, status } => {
                context.observe_payment(txid, status, false, true);
                let id = context.swap.swap_refund_id();
                let confirmed = context
                    .swap
                    .refunds
                    .get(&id)
                    .is_some_and(|p| p.status == PaymentStatus::Confirmed);
                if confirmed {
                    context.swap.reason = None;
                    context.release_lock();
                    Transition(State::refunded())
                } else {
                    Handled
                }
            }
            _ => Super,
        }
    }

    #[superstate(superstate = "swap")]
    fn refund_path(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            // Already on the way back: a repeated request changes nothing.
            SwapInput::RefundRequested => Handled,
            _ => {
                let _ = context;
                Super
            }
        }
    }

    // ----- manual review: only an operator moves it -----

    #[state(superstate = "swap")]
    fn manual_review(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            SwapInput::Executed if context.swap.execution == Execution::Requested => {
                context.swap.execution = Execution::Honoured;
                Handled
            }
            SwapInput::ExecutionFailed { reason }
                if context.swap.execution == Execution::Requested =>
            {
                context.swap.execution = Execution::Refused {
                    reason: reason.clone(),
                };
                Handled
            }
            SwapInput::OperatorDecision(decision) => {
                let r = context.operator_decision(decision);
                context.outcome(r)
            }
            _ => Super,
        }
    }

    // ----- terminal: the status never changes again -----

    #[state(superstate = "terminal")]
    fn completed(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    #[state(superstate = "terminal")]
    fn expired(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    #[state(superstate = "terminal")]
    fn refunded(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    #[state(superstate = "terminal")]
    fn failed(event: &SwapInput) -> Outcome<State> {
        let _ = event;
        Super
    }

    /// Absorbs everything; extra deposits are still accounted (by `swap`).
    /// A deposit the swap settled that a reorganisation takes away is
    /// recorded and named in the reason: an operator must look at it.
    #[superstate(superstate = "swap", entry_action = "enter_terminal")]
    fn terminal(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        match event {
            SwapInput::Deposit {
                txid,
                output,
                amount,
                status,
            } => {
                let r = context
                    .observe(txid, *output, *amount, status, false)
                    .map(|observed| {
                        if let Observed::Counted(key) = observed {
                            context.note_settled_deposit_lost(&key);
                        }
                        Handled
                    });
                context.outcome(r)
            }
            _ => Super,
        }
    }

    /// A finished swap has nobody to wait for: extra deposits owed back
    /// without a refund address go to review.
    #[action]
    fn enter_terminal(context: &mut Ctx<'_>) {
        for d in context.swap.deposits.values_mut() {
            if d.extra && d.disposition == Disposition::Refund && d.refund_payment_id.is_none() {
                d.disposition = Disposition::Review;
            }
        }
    }

    // ----- swap: what every state does unless a substate says otherwise -----

    #[superstate]
    fn swap(context: &mut Ctx<'_>, event: &SwapInput) -> Outcome<State> {
        let r = context.common(event);
        context.outcome(r)
    }
}

impl Ctx<'_> {
    fn outcome(&mut self, result: Result<Outcome<State>, Rejected>) -> Outcome<State> {
        match result {
            Ok(outcome) => outcome,
            Err(rejected) => {
                self.rejected = Some(rejected);
                Handled
            }
        }
    }

    fn not_applicable(&self, input: &SwapInput) -> Rejected {
        Rejected::NotApplicable {
            input: input.kind(),
            state: self.current.name(),
        }
    }

    fn terminal(&self) -> bool {
        self.current.status().is_terminal()
    }

    fn release_lock(&mut self) {
        if !self.swap.lock_released {
            self.swap.lock_released = true;
            self.actions.push(Action::ReleaseLock {
                quote_id: self.swap.terms.quote_id,
            });
        }
    }

    /// Inputs that mean the same in every state that does not handle them.
    fn common(&mut self, event: &SwapInput) -> Result<Outcome<State>, Rejected> {
        match event {
            SwapInput::Deposit {
                txid,
                output,
                amount,
                status,
            } => {
                self.observe(txid, *output, *amount, status, false)?;
                Ok(Handled)
            }
            SwapInput::PaymentBroadcast { payment_id, txid } => {
                self.record_broadcast(payment_id, txid)?;
                Ok(Handled)
            }
            SwapInput::PaymentObserved { txid, status } => {
                self.observe_payment(txid, status, false, false);
                Ok(Handled)
            }
            SwapInput::PaymentReverted { txid } => Ok(self.payment_reverted(txid)),
            SwapInput::RefundAddressProvided { address } => {
                self.provide_refund_address(address)?;
                Ok(Handled)
            }
            SwapInput::Tick => Ok(Handled),
            // Redelivered answers from liquidity change nothing.
            SwapInput::Executed if self.swap.execution == Execution::Honoured => Ok(Handled),
            SwapInput::ExecutionFailed { .. }
                if matches!(self.swap.execution, Execution::Refused { .. }) =>
            {
                Ok(Handled)
            }
            SwapInput::RefundRequested if matches!(self.current, State::Refunded {}) => Ok(Handled),
            SwapInput::Executed
            | SwapInput::ExecutionFailed { .. }
            | SwapInput::RequoteAccepted { .. }
            | SwapInput::RefundRequested
            | SwapInput::OperatorDecision(_) => Err(self.not_applicable(event)),
        }
    }

    /// One of the swap's payments was mined but reverted: nothing was
    /// paid, and paying again needs a person (the address may be a
    /// contract that refuses the transfer). Unknown transactions are
    /// irrelevant.
    fn payment_reverted(&mut self, txid: &str) -> Outcome<State> {
        let payment = self
            .swap
            .payout
            .iter()
            .chain(self.swap.refunds.values())
            .find(|p| {
                p.txid.as_deref() == Some(txid) || p.replaced_txids.iter().any(|t| t == txid)
            });
        let Some(payment) = payment else {
            return Handled;
        };
        self.swap.reason = Some(format!(
            "payment {} (transaction {txid}) was mined but reverted: nothing was paid; an operator must decide",
            payment.order.payment_id
        ));
        if self.terminal() || matches!(self.current, State::ManualReview {}) {
            Handled
        } else {
            Transition(State::manual_review())
        }
    }

    // ----- deposits -----

    /// Records an observation of a deposit output and accounts for dust and
    /// extra deposits. `funding`: the swap still takes deposits (a new one
    /// seen before the deadline counts toward it).
    fn observe(
        &mut self,
        txid: &str,
        output: u32,
        amount: Amount,
        status: &TxStatus,
        funding: bool,
    ) -> Result<Observed, Rejected> {
        let key = DepositKey::new(txid, output);
        let confirmations = match status {
            TxStatus::Confirmed { depth, .. } => *depth,
            _ => 0,
        };
        let dust = amount < self.swap.terms.policy.dust_threshold;
        match self.swap.deposits.get_mut(&key) {
            Some(d) => {
                if d.amount != amount {
                    return Err(Rejected::ConflictingDeposit {
                        key,
                        recorded: d.amount,
                        observed: amount,
                    });
                }
                if d.status == *status || is_stale(&d.status, status) {
                    return Ok(Observed::Duplicate);
                }
                d.status = status.clone();
                d.confirmations = confirmations;
                if d.disposition == Disposition::Dust {
                    return Ok(Observed::Dust);
                }
                if !d.extra && d.disposition == Disposition::Dropped && !is_dropped(status) {
                    // A counted deposit that was dropped is back.
                    if funding {
                        d.disposition = Disposition::Applied;
                    } else {
                        d.extra = true;
                        d.disposition = Disposition::Pending;
                    }
                }
                if d.extra {
                    self.account_extra(&key);
                    return Ok(Observed::Extra);
                }
                Ok(Observed::Counted(key))
            }
            None => {
                let extra = !funding || self.now >= self.swap.terms.deadline;
                let disposition = if dust {
                    Disposition::Dust
                } else if extra {
                    Disposition::Pending
                } else if is_dropped(status) {
                    Disposition::Dropped
                } else {
                    Disposition::Applied
                };
                self.swap.deposits.insert(
                    key.clone(),
                    Deposit {
                        amount,
                        status: status.clone(),
                        confirmations,
                        disposition,
                        extra,
                        first_seen_at: self.now,
                        refund_payment_id: None,
                    },
                );
                if dust {
                    return Ok(Observed::Dust);
                }
                if extra {
                    self.account_extra(&key);
                    return Ok(Observed::Extra);
                }
                Ok(Observed::Counted(key))
            }
        }
    }

    /// Moves an extra deposit along: pending until confirmed for its own
    /// amount, then owed back (refund ordered if there is an address).
    fn account_extra(&mut self, key: &DepositKey) {
        let Some(d) = self.swap.deposits.get(key) else {
            return;
        };
        let required = self.swap.terms.policy.required_confirmations(d.amount);
        let dropped = is_dropped(&d.status);
        let lost = is_lost(d, required);
        let ordered = d.refund_payment_id.is_some();
        match d.disposition {
            Disposition::Pending | Disposition::Dropped => {
                if dropped {
                    self.set_disposition(key, Disposition::Dropped);
                } else if !lost {
                    self.owe_extra(key);
                } else {
                    self.set_disposition(key, Disposition::Pending);
                }
            }
            Disposition::Refund | Disposition::Review if !ordered => {
                if dropped {
                    self.set_disposition(key, Disposition::Dropped);
                } else if lost {
                    self.set_disposition(key, Disposition::Pending);
                }
            }
            Disposition::Refund | Disposition::Refunded if lost => {
                self.set_disposition(key, Disposition::Review);
                self.swap.reason = Some(format!(
                    "extra deposit {key} was reorganised or dropped after its refund was ordered; an operator must check it"
                ));
            }
            _ => {}
        }
    }

    fn set_disposition(&mut self, key: &DepositKey, disposition: Disposition) {
        if let Some(d) = self.swap.deposits.get_mut(key) {
            d.disposition = disposition;
        }
    }

    /// An extra deposit is confirmed: refund it on its own, or wait for an
    /// address (in review if the swap is finished).
    fn owe_extra(&mut self, key: &DepositKey) {
        let Some(d) = self.swap.deposits.get(key) else {
            return;
        };
        let amount = d.amount;
        match self.swap.refund_address.clone() {
            Some(address) => {
                let order = PaymentOrder {
                    payment_id: format!(
                        "refund:{}:{}:{}",
                        self.swap.terms.swap_id, key.txid, key.output
                    ),
                    kind: PaymentKind::Refund,
                    network: self.swap.terms.deposit_network,
                    asset: self.swap.terms.from.clone(),
                    address,
                    amount,
                };
                let id = order.payment_id.clone();
                self.order_refund(order);
                if let Some(d) = self.swap.deposits.get_mut(key) {
                    d.disposition = Disposition::Refund;
                    d.refund_payment_id = Some(id);
                }
            }
            None => {
                let disposition = if self.terminal() {
                    Disposition::Review
                } else {
                    Disposition::Refund
                };
                self.set_disposition(key, disposition);
                self.swap.reason = Some(format!(
                    "deposit {key} came after the swap stopped taking deposits and will be refunded once a refund address is given"
                ));
            }
        }
    }

    /// Records a refund order (or finds the same one) and asks for it.
    fn order_refund(&mut self, order: PaymentOrder) {
        let entry = self
            .swap
            .refunds
            .entry(order.payment_id.clone())
            .or_insert_with(|| Payment {
                order,
                txid: None,
                replaced_txids: Vec::new(),
                status: PaymentStatus::Pending,
                confirmations: 0,
            });
        if entry.status != PaymentStatus::Confirmed {
            self.actions.push(Action::Pay(entry.order.clone()));
        }
    }

    /// The counted deposits: their state decides the funding stage.
    fn funding_stage(&self) -> Result<Funding, Rejected> {
        let counted: Vec<&Deposit> = self
            .swap
            .deposits
            .values()
            .filter(|d| !d.extra && d.disposition == Disposition::Applied)
            .collect();
        if counted.is_empty() {
            return Ok(if self.now >= self.swap.terms.deadline {
                Funding::Expired
            } else {
                Funding::Awaiting
            });
        }
        let total = sum(counted.iter().map(|d| d.amount))?;
        let required = u64::from(self.swap.terms.policy.required_confirmations(total));
        Ok(if counted.iter().all(|d| d.confirmations >= required) {
            Funding::Confirmed(total)
        } else if counted.iter().any(|d| d.confirmations >= 1) {
            Funding::Confirming
        } else {
            Funding::Seen
        })
    }

    fn funding_deposit(
        &mut self,
        txid: &str,
        output: u32,
        amount: Amount,
        status: &TxStatus,
    ) -> Result<Outcome<State>, Rejected> {
        if let Observed::Counted(key) = self.observe(txid, output, amount, status, true)? {
            if is_dropped(status) {
                self.set_disposition(&key, Disposition::Dropped);
            }
        }
        self.refresh_funding()
    }

    /// Moves a funding swap to the stage its counted deposits say.
    fn refresh_funding(&mut self) -> Result<Outcome<State>, Rejected> {
        let stage = self.funding_stage()?;
        if Some(stage) == self.current.funding() {
            return Ok(Handled);
        }
        Ok(match stage {
            Funding::Awaiting => Transition(State::awaiting_deposit()),
            Funding::Seen => Transition(State::deposit_seen()),
            Funding::Confirming => Transition(State::confirming()),
            Funding::Expired => {
                self.swap.reason = Some(format!(
                    "no deposit was seen by the deadline {}",
                    self.swap.terms.deadline
                ));
                self.release_lock();
                Transition(State::expired())
            }
            Funding::Confirmed(total) => {
                // deposit_confirmed: the amount check.
                let expected = self.swap.terms.deposit_amount;
                if self.swap.terms.policy.within_tolerance(expected, total) {
                    self.swap.reason = None;
                    self.start_execution(total)
                } else {
                    self.swap.reason = Some(format!(
                        "deposited {total} base units, but the quote was for {expected}: accept a re-quote or ask for a refund"
                    ));
                    let window = chrono::Duration::seconds(
                        self.swap.terms.policy.mismatch_decision_window_secs.max(0),
                    );
                    let decide_by = self.now.checked_add_signed(window).unwrap_or(self.now);
                    Transition(State::amount_mismatch(decide_by, total))
                }
            }
        })
    }

    fn start_execution(&mut self, total: Amount) -> Outcome<State> {
        self.swap.execution = Execution::Requested;
        self.actions.push(Action::Execute {
            swap_id: self.swap.terms.swap_id,
            quote_id: self.swap.terms.quote_id,
            deposit_amount: total,
        });
        Transition(State::executing())
    }

    /// After execution started, a counted deposit that loses its depth sends
    /// the swap to review: money may already be leaving.
    fn settling_deposit(
        &mut self,
        txid: &str,
        output: u32,
        amount: Amount,
        status: &TxStatus,
    ) -> Result<Outcome<State>, Rejected> {
        let Observed::Counted(key) = self.observe(txid, output, amount, status, false)? else {
            return Ok(Handled);
        };
        let required = self.swap.required_confirmations();
        match self.swap.deposits.get(&key) {
            Some(d) if d.disposition == Disposition::Applied && is_lost(d, required) => {
                self.swap.reason = Some(format!(
                    "deposit {key} was reorganised or dropped after execution started (now {}); an operator must decide",
                    status_word(&d.status)
                ));
                Ok(Transition(State::manual_review()))
            }
            _ => Ok(Handled),
        }
    }

    /// While the swap's refund is ordered, a returned deposit that loses its
    /// depth sends the swap to review.
    fn refunding_deposit(
        &mut self,
        txid: &str,
        output: u32,
        amount: Amount,
        status: &TxStatus,
    ) -> Result<Outcome<State>, Rejected> {
        let Observed::Counted(key) = self.observe(txid, output, amount, status, false)? else {
            return Ok(Handled);
        };
        let covered_total = self.covered_total()?;
        let required = self.swap.terms.policy.required_confirmations(covered_total);
        let lost = self
            .swap
            .deposits
            .get(&key)
            .is_some_and(|d| d.disposition == Disposition::Refund && is_lost(d, required));
        if lost {
            self.set_disposition(&key, Disposition::Review);
            self.swap.reason = Some(format!(
                "deposit {key} was reorganised or dropped after its refund was ordered; an operator must decide"
            ));
            return Ok(Transition(State::manual_review()));
        }
        Ok(Handled)
    }

    /// In a finished swap, a settled deposit (paid out or refunded) that
    /// loses its depth is named in the reason; the status stays.
    fn note_settled_deposit_lost(&mut self, key: &DepositKey) {
        let Some(d) = self.swap.deposits.get(key) else {
            return;
        };
        let settled = matches!(
            d.disposition,
            Disposition::Applied | Disposition::Refund | Disposition::Refunded
        );
        let required = self.swap.terms.policy.required_confirmations(d.amount);
        if settled && is_lost(d, required) {
            self.swap.reason = Some(format!(
                "deposit {key} is {} after the swap was settled; an operator must check it",
                status_word(&d.status)
            ));
        }
    }

    /// Sum of the counted deposits being returned by the swap's refund.
    fn covered_total(&self) -> Result<Amount, Rejected> {
        sum(self
            .swap
            .deposits
            .values()
            .filter(|d| !d.extra && d.disposition == Disposition::Refund)
            .map(|d| d.amount))
    }

    // ----- payout -----

    fn order_payout(&mut self) -> Result<Outcome<State>, Rejected> {
        if let Err(why) = self.deposits_final() {
            self.swap.reason = Some(format!("execution was honoured but {why}"));
            return Ok(Transition(State::manual_review()));
        }
        let order = PaymentOrder {
            payment_id: self.swap.payout_id(),
            kind: PaymentKind::Payout,
            network: self.swap.terms.payout_network,
            asset: self.swap.terms.to.clone(),
            address: self.swap.terms.payout_address.clone(),
            amount: self.swap.agreed_payout_amount(),
        };
        let payout = self.swap.payout.get_or_insert_with(|| Payment {
            order,
            txid: None,
            replaced_txids: Vec::new(),
            status: PaymentStatus::Pending,
            confirmations: 0,
        });
        self.actions.push(Action::Pay(payout.order.clone()));
        Ok(Transition(State::payout_pending()))
    }

    /// Whether every counted deposit has the confirmations the total needs.
    fn deposits_final(&self) -> Result<(), String> {
        let required = self.swap.required_confirmations();
        let mut any = false;
        for (key, d) in &self.swap.deposits {
            if d.extra || d.disposition != Disposition::Applied {
                continue;
            }
            any = true;
            if is_lost(d, required) {
                return Err(format!(
                    "deposit {key} has {} of {required} confirmations ({})",
                    d.confirmations,
                    status_word(&d.status)
                ));
            }
        }
        if any {
            Ok(())
        } else {
            Err("no deposit counts toward the swap".to_owned())
        }
    }

    fn after_payout_observed(&mut self) -> Outcome<State> {
        let Some(payout) = &self.swap.payout else {
            return Handled;
        };
        match payout.status {
            PaymentStatus::Confirmed => {
                self.swap.reason = None;
                Transition(State::completed())
            }
            PaymentStatus::Pending if matches!(self.current, State::PayoutBroadcast {}) => {
                Transition(State::payout_pending())
            }
            _ => Handled,
        }
    }

    // ----- payments -----

    /// Records that a payment was broadcast; returns its kind.
    fn record_broadcast(
        &mut self,
        payment_id: &str,
        txid: &str,
    ) -> Result<Option<PaymentKind>, Rejected> {
        let payment = match &mut self.swap.payout {
            Some(p) if p.order.payment_id == payment_id => p,
            _ => self
                .swap
                .refunds
                .get_mut(payment_id)
                .ok_or_else(|| Rejected::UnknownPayment(payment_id.to_owned()))?,
        };
        if payment.txid.as_deref() == Some(txid) {
            return Ok(Some(payment.order.kind));
        }
        if payment.status == PaymentStatus::Confirmed {
            return Err(Rejected::PaymentAlreadyConfirmed(payment_id.to_owned()));
        }
        if let Some(old) = payment.txid.take() {
            payment.replaced_txids.push(old);
        }
        payment.replaced_txids.retain(|t| t != txid);
        payment.txid = Some(txid.to_owned());
        payment.status = PaymentStatus::Broadcast;
        payment.confirmations = 0;
        Ok(Some(payment.order.kind))
    }

    /// Records a chain observation of one of the swap's payment transactions
    /// (unknown txids are irrelevant). A dropped payment is asked for again,
    /// under the same id, if the state is the one paying it (`retry_payout`,
    /// `retry_swap_refund`; an extra deposit's refund always, while owed).
    fn observe_payment(
        &mut self,
        txid: &str,
        status: &TxStatus,
        retry_payout: bool,
        retry_swap_refund: bool,
    ) {
        let needed = self.swap.terms.policy.payment_confirmations();
        let swap_refund_id = self.swap.swap_refund_id();
        // One transaction may settle several payments (a batch).
        let mut touched: Vec<(PaymentOrder, PaymentStatus, bool)> = Vec::new();
        let payments = self
            .swap
            .payout
            .iter_mut()
            .chain(self.swap.refunds.values_mut());
        for payment in payments {
            let current = payment.txid.as_deref() == Some(txid);
            if !current && !payment.replaced_txids.iter().any(|t| t == txid) {
                continue;
            }
            let retry = observe_one(payment, txid, status, current, needed);
            touched.push((payment.order.clone(), payment.status, retry));
        }
        for (order, payment_status, retry) in touched {
            let id = order.payment_id.clone();
            if order.kind == PaymentKind::Refund {
                let confirmed = payment_status == PaymentStatus::Confirmed;
                for d in self.swap.deposits.values_mut() {
                    if d.refund_payment_id.as_deref() != Some(id.as_str()) {
                        continue;
                    }
                    match d.disposition {
                        Disposition::Refund if confirmed => d.disposition = Disposition::Refunded,
                        // The refund was reorganised out: owed again.
                        Disposition::Refunded if !confirmed => d.disposition = Disposition::Refund,
                        _ => {}
                    }
                }
            }
            if !retry {
                continue;
            }
            let wanted = match order.kind {
                PaymentKind::Payout => retry_payout,
                PaymentKind::Refund if id == swap_refund_id => retry_swap_refund,
                PaymentKind::Refund => self.swap.deposits.values().any(|d| {
                    d.refund_payment_id.as_deref() == Some(id.as_str())
                        && d.disposition == Disposition::Refund
                }),
            };
            if wanted {
                self.actions.push(Action::Pay(order));
            } else {
                self.swap.reason = Some(format!(
                    "payment {id} was dropped and is not retried while the swap is {}; an operator must check it",
                    self.current.name()
                ));
            }
        }
    }

    // ----- refunds -----

    fn validate_refund_address(&self, address: &str) -> Result<String, Rejected> {
        let network = self.swap.terms.deposit_network;
        proto::Address::parse(network, address)
            .map(|_| address.trim().to_owned())
            .map_err(|e| Rejected::InvalidRefundAddress {
                address: address.to_owned(),
                network,
                reason: e.to_string(),
            })
    }

    /// Records the refund address (once) and orders the refunds of extra
    /// deposits that were waiting for it.
    fn provide_refund_address(&mut self, address: &str) -> Result<(), Rejected> {
        let address = self.validate_refund_address(address)?;
        if let Some(current) = &self.swap.refund_address {
            if *current == address {
                return Ok(());
            }
            return Err(Rejected::RefundAddressAlreadySet {
                current: current.clone(),
            });
        }
        let waiting: Vec<DepositKey> = self
            .swap
            .deposits
            .iter()
            .filter(|(_, d)| {
                d.extra
                    && matches!(d.disposition, Disposition::Refund | Disposition::Review)
                    && d.refund_payment_id.is_none()
            })
            .map(|(k, _)| k.clone())
            .collect();
        let pending = self
            .swap
            .deposits
            .values()
            .any(|d| d.extra && d.disposition == Disposition::Pending);
        if self.terminal() && waiting.is_empty() && !pending {
            return Err(Rejected::RefundAddressNotNeeded {
                state: self.current.name(),
            });
        }
        self.swap.refund_address = Some(address);
        for key in waiting {
            self.owe_extra(&key);
        }
        Ok(())
    }

    /// The counted deposits go back: the lock is released, the refund is
    /// ordered when it can be.
    fn enter_refund(&mut self, reason: String) -> Result<Outcome<State>, Rejected> {
        self.swap.reason = Some(reason);
        self.release_lock();
        for d in self.swap.deposits.values_mut() {
            if !d.extra && d.disposition == Disposition::Applied {
                d.disposition = Disposition::Refund;
            }
        }
        self.try_refund()
    }

    /// Orders the swap's refund if there is an address and every deposit to
    /// return has its confirmations; stays (or goes to) refund_required
    /// otherwise.
    fn try_refund(&mut self) -> Result<Outcome<State>, Rejected> {
        let covered: Vec<DepositKey> = self
            .swap
            .deposits
            .iter()
            .filter(|(_, d)| !d.extra && d.disposition == Disposition::Refund)
            .map(|(k, _)| k.clone())
            .collect();
        let stay_or_wait = |ctx: &Ctx<'_>| {
            if matches!(ctx.current, State::RefundRequired {}) {
                Handled
            } else {
                Transition(State::refund_required())
            }
        };
        if covered.is_empty() {
            self.swap.reason =
                Some("every deposit to refund was dropped; an operator must decide".to_owned());
            return Ok(Transition(State::manual_review()));
        }
        let total = self.covered_total()?;
        let required = self.swap.terms.policy.required_confirmations(total);
        let unconfirmed = covered.iter().any(|k| {
            self.swap
                .deposits
                .get(k)
                .is_some_and(|d| is_lost(d, required))
        });
        let Some(address) = self.swap.refund_address.clone() else {
            return Ok(stay_or_wait(self));
        };
        if unconfirmed {
            return Ok(stay_or_wait(self));
        }
        let order = PaymentOrder {
            payment_id: self.swap.swap_refund_id(),
            kind: PaymentKind::Refund,
            network: self.swap.terms.deposit_network,
            asset: self.swap.terms.from.clone(),
            address,
            amount: total,
        };
        if let Some(existing) = self.swap.refunds.get(&order.payment_id) {
            if existing.order != order {
                // One id never becomes a second, different payment.
                self.swap.reason = Some(format!(
                    "refund {} was already ordered for {} base units to {}, but the deposits to return now come to {total}; an operator must decide",
                    order.payment_id, existing.order.amount, existing.order.address
                ));
                return Ok(Transition(State::manual_review()));
            }
        }
        let id = order.payment_id.clone();
        self.order_refund(order);
        let confirmed = self
            .swap
            .refunds
            .get(&id)
            .is_some_and(|p| p.status == PaymentStatus::Confirmed);
        for key in covered {
            if let Some(d) = self.swap.deposits.get_mut(&key) {
                d.refund_payment_id = Some(id.clone());
                if confirmed {
                    d.disposition = Disposition::Refunded;
                }
            }
        }
        if confirmed {
            // Ordered before and already confirmed (an operator's repeat).
            return Ok(Transition(State::refunded()));
        }
        Ok(Transition(State::refunding()))
    }

    // ----- operator -----

    fn operator_decision(
        &mut self,
        decision: &OperatorDecision,
    ) -> Result<Outcome<State>, Rejected> {
        match decision {
            OperatorDecision::PayOut => {
                let refund_id = self.swap.swap_refund_id();
                if self.swap.refunds.contains_key(&refund_id) {
                    return Err(Rejected::CannotPayOut(format!(
                        "refund {refund_id} was already ordered"
                    )));
                }
                self.deposits_final().map_err(Rejected::CannotPayOut)?;
                if let Some(p) = &self.swap.payout {
                    if p.status == PaymentStatus::Confirmed {
                        self.swap.reason = None;
                        return Ok(Transition(State::completed()));
                    }
                    let next = if p.status == PaymentStatus::Broadcast {
                        State::payout_broadcast()
                    } else {
                        State::payout_pending()
                    };
                    self.actions.push(Action::Pay(p.order.clone()));
                    self.swap.reason = None;
                    return Ok(Transition(next));
                }
                self.swap.reason = None;
                self.order_payout()
            }
            OperatorDecision::Refund => {
                if let Some(p) = &self.swap.payout {
                    return Err(Rejected::CannotRefund(format!(
                        "payout {} was already ordered",
                        p.order.payment_id
                    )));
                }
                let mut any = false;
                for d in self.swap.deposits.values_mut() {
                    let counted = !d.extra
                        && matches!(
                            d.disposition,
                            Disposition::Applied | Disposition::Refund | Disposition::Review
                        );
                    if !counted {
                        continue;
                    }
                    if is_dropped(&d.status) {
                        d.disposition = Disposition::Dropped;
                    } else {
                        d.disposition = Disposition::Refund;
                        any = true;
                    }
                }
                if !any {
                    return Err(Rejected::CannotRefund(
                        "no deposit remains to refund; decide fail instead".to_owned(),
                    ));
                }
                let total = self.covered_total()?;
                if let Some(existing) = self.swap.refunds.get(&self.swap.swap_refund_id()) {
                    if existing.order.amount != total {
                        return Err(Rejected::CannotRefund(format!(
                            "refund {} was already ordered for {} base units, but the deposits still there come to {total}; decide fail instead",
                            existing.order.payment_id, existing.order.amount
                        )));
                    }
                }
                self.swap.reason = Some("an operator decided to refund".to_owned());
                self.release_lock();
                self.try_refund()
            }
            OperatorDecision::Fail { reason } => {
                self.swap.reason = Some(format!("failed by an operator: {reason}"));
                self.release_lock();
                Ok(Transition(State::failed()))
            }
        }
    }
}

/// Records an observation of one of `payment`'s transactions; returns
/// whether the payment must be asked for again (its transaction dropped).
fn observe_one(
    payment: &mut Payment,
    txid: &str,
    status: &TxStatus,
    current: bool,
    needed: u64,
) -> bool {
    match status {
        // Older news: the node gateway reports a reorganisation (Unconfirmed)
        // before a shallower confirmation.
        TxStatus::Confirmed { depth, .. } if current && *depth < payment.confirmations => false,
        TxStatus::Confirmed { depth, .. } => {
            if !current {
                if let Some(old) = payment.txid.take() {
                    payment.replaced_txids.push(old);
                }
                payment.replaced_txids.retain(|t| t != txid);
                payment.txid = Some(txid.to_owned());
            }
            payment.confirmations = *depth;
            payment.status = if *depth >= needed {
                PaymentStatus::Confirmed
            } else {
                PaymentStatus::Broadcast
            };
            false
        }
        TxStatus::Seen | TxStatus::Unconfirmed { .. } if current => {
            payment.confirmations = 0;
            payment.status = PaymentStatus::Broadcast;
            false
        }
        TxStatus::Dropped { .. } if current => {
            payment.txid = None;
            payment.replaced_txids.push(txid.to_owned());
            payment.confirmations = 0;
            payment.status = PaymentStatus::Pending;
            true
        }
        _ => false,
    }
}

fn status_word(status: &TxStatus) -> &'static str {
    match status {
        TxStatus::Seen => "in the mempool",
        TxStatus::Confirmed { .. } => "confirmed",
        TxStatus::Unconfirmed { .. } => "unconfirmed by a reorganisation",
        TxStatus::Dropped { .. } => "dropped",
    }
}

impl Swap {
    /// The payout's payment id.
    pub fn payout_id(&self) -> String {
        format!("payout:{}", self.terms.swap_id)
    }

    /// The payment id of the refund of the swap's counted deposits.
    pub fn swap_refund_id(&self) -> String {
        format!("refund:{}", self.terms.swap_id)
    }
}
