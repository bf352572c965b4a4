//! Property tests of the swap machine over random input sequences: random
//! deposits (txids from a small set, so duplicates, reorgs and drops
//! happen), payments real and bogus, user and operator decisions, and time
//! moving on. After every step the money invariants are checked; then a
//! healthy world drives the swap to its end and every deposit must be paid
//! out, refunded or in review.

mod machine_support;

use std::collections::{BTreeMap, BTreeSet};

use machine_support::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use proto::event::TxStatus;
use proto::{Amount, Price};
use rust_decimal_macros::dec;
use state_machine::machine::{
    Action, Disposition, OperatorDecision, PaymentKind, PaymentOrder, PaymentStatus, Swap,
    SwapInput,
};

/// A chain status, abstractly.
#[derive(Debug, Clone)]
enum St {
    Seen,
    Confirmed { depth: u64, block: u8 },
    Unconfirmed,
    Dropped,
}

impl St {
    fn status(&self) -> TxStatus {
        match self {
            St::Seen => TxStatus::Seen,
            St::Confirmed { depth, block } => TxStatus::Confirmed {
                block_height: 100,
                block_hash: format!("b{block}"),
                depth: *depth,
            },
            St::Unconfirmed => TxStatus::Unconfirmed {
                block_hash: "b0".to_owned(),
            },
            St::Dropped => TxStatus::Dropped { replaced_by: None },
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        slot: usize,
        status: St,
    },
    /// `payment` indexes the swap's known payment ids; past the end, a bogus id.
    Broadcast {
        payment: usize,
        txid: u8,
    },
    /// txids `t0`..`t3` (the ones broadcasts use) or a bogus one.
    Observed {
        txid: u8,
        status: St,
    },
    /// A payment transaction `t0`..`t3` (or a bogus one) mined but reverted.
    Reverted {
        txid: u8,
    },
    Executed,
    ExecutionFailed,
    RefundAddress {
        valid: bool,
    },
    Requote {
        payout: u128,
    },
    RefundRequested,
    Tick,
    Operator(u8),
}

fn st() -> impl Strategy<Value = St> {
    prop_oneof![
        2 => Just(St::Seen),
        5 => (1u64..8, 0u8..2).prop_map(|(depth, block)| St::Confirmed { depth, block }),
        1 => Just(St::Unconfirmed),
        1 => Just(St::Dropped),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0usize..6, st()).prop_map(|(slot, status)| Op::Deposit { slot, status }),
        3 => (0usize..4, 0u8..4).prop_map(|(payment, txid)| Op::Broadcast { payment, txid }),
        4 => (0u8..5, st()).prop_map(|(txid, status)| Op::Observed { txid, status }),
        1 => (0u8..5).prop_map(|txid| Op::Reverted { txid }),
        2 => Just(Op::Executed),
        1 => Just(Op::ExecutionFailed),
        1 => any::<bool>().prop_map(|valid| Op::RefundAddress { valid }),
        1 => (1u128..3_000_000).prop_map(|payout| Op::Requote { payout }),
        1 => Just(Op::RefundRequested),
        3 => Just(Op::Tick),
        1 => (0u8..3).prop_map(Op::Operator),
    ]
}

/// Deposit amounts of the slots: dust, short, within tolerance, exact, over.
fn amounts() -> impl Strategy<Value = Vec<u128>> {
    proptest::collection::vec(
        prop::sample::select(vec![
            1_000u128, 500_000, 995_000, 1_000_000, 1_008_000, 2_000_000, 20_000_000,
        ]),
        6,
    )
}

fn slot_key(slot: usize) -> (String, u32) {
    (format!("dep{}", slot / 2), (slot % 2) as u32)
}

fn payment_ids(swap: &Swap) -> Vec<String> {
    swap.payout
        .iter()
        .map(|p| p.order.payment_id.clone())
        .chain(swap.refunds.keys().cloned())
        .collect()
}

fn to_input(op: &Op, swap: &Swap, amounts: &[u128]) -> SwapInput {
    match op {
        Op::Deposit { slot, status } => {
            let (txid, output) = slot_key(*slot);
            SwapInput::Deposit {
                txid,
                output,
                amount: amount(amounts[*slot]),
                status: status.status(),
            }
        }
        Op::Broadcast { payment, txid } => {
            let ids = payment_ids(swap);
            let payment_id = ids
                .get(*payment)
                .cloned()
                .unwrap_or_else(|| "payout:bogus".to_owned());
            broadcast(&payment_id, &format!("t{txid}"))
        }
        Op::Observed { txid, status } => {
            let txid = if *txid < 4 {
                format!("t{txid}")
            } else {
                "bogus".to_owned()
            };
            observed(&txid, status.status())
        }
        Op::Reverted { txid } => SwapInput::PaymentReverted {
            txid: if *txid < 4 {
                format!("t{txid}")
            } else {
                "bogus".to_owned()
            },
        },
        Op::Executed => SwapInput::Executed,
        Op::ExecutionFailed => SwapInput::ExecutionFailed {
            reason: "lock lost".to_owned(),
        },
        Op::RefundAddress { valid } => SwapInput::RefundAddressProvided {
            address: if *valid { REFUND_ADDRESS } else { "nope" }.to_owned(),
        },
        Op::Requote { payout } => SwapInput::RequoteAccepted {
            payout_amount: amount(*payout),
            price: Price(dec!(1.9)),
        },
        Op::RefundRequested => SwapInput::RefundRequested,
        Op::Tick => SwapInput::Tick,
        Op::Operator(0) => SwapInput::OperatorDecision(OperatorDecision::PayOut),
        Op::Operator(1) => SwapInput::OperatorDecision(OperatorDecision::Refund),
        Op::Operator(_) => SwapInput::OperatorDecision(OperatorDecision::Fail {
            reason: "operator".to_owned(),
        }),
    }
}

/// What the run has seen so far, for the invariants that span steps.
#[derive(Debug, Default)]
struct History {
    payout_ids: BTreeSet<String>,
    orders: BTreeMap<String, PaymentOrder>,
    executions: usize,
}

fn counted(swap: &Swap, disposition: Disposition) -> Vec<&state_machine::machine::Deposit> {
    swap.deposits
        .values()
        .filter(|d| !d.extra && d.disposition == disposition)
        .collect()
}

fn is_confirmed(d: &state_machine::machine::Deposit, required: u32) -> bool {
    matches!(d.status, TxStatus::Confirmed { .. }) && d.confirmations >= u64::from(required.max(1))
}

/// Applies one input and checks every invariant; returns the new swap.
fn checked_step(
    swap: &Swap,
    input: &SwapInput,
    now: Timestamp,
    history: &mut History,
) -> Result<Swap, TestCaseError> {
    let Ok(t) = swap.apply(input, now) else {
        // Rejected: `apply` takes `&self`, the swap is untouched.
        return Ok(swap.clone());
    };
    let ctx = || format!("{input:?} in {}", swap.state_name());
    if !t.changed {
        prop_assert!(t.actions.is_empty(), "unchanged with actions: {}", ctx());
        prop_assert_eq!(&t.swap, swap, "unchanged but different: {}", ctx());
    } else {
        prop_assert_eq!(t.swap.updated_at, now);
    }
    if swap.is_terminal() {
        prop_assert_eq!(
            t.swap.status(),
            swap.status(),
            "terminal status changed: {}",
            ctx()
        );
    }
    let next = &t.swap;
    let policy = &next.terms.policy;
    for action in &t.actions {
        match action {
            Action::Execute { deposit_amount, .. } => {
                history.executions += 1;
                prop_assert!(history.executions <= 1, "a second execution: {}", ctx());
                let applied = counted(next, Disposition::Applied);
                let total: u128 = applied.iter().map(|d| d.amount.base_units()).sum();
                prop_assert_eq!(deposit_amount.base_units(), total);
            }
            Action::Pay(order) => {
                if let Some(before) = history.orders.get(&order.payment_id) {
                    prop_assert_eq!(before, order, "one id, two payments: {}", ctx());
                }
                history
                    .orders
                    .insert(order.payment_id.clone(), order.clone());
                match order.kind {
                    PaymentKind::Payout => {
                        history.payout_ids.insert(order.payment_id.clone());
                        prop_assert!(history.payout_ids.len() <= 1, "two payout ids");
                        let applied = counted(next, Disposition::Applied);
                        prop_assert!(
                            !applied.is_empty(),
                            "payout with nothing applied: {}",
                            ctx()
                        );
                        let total: u128 = applied.iter().map(|d| d.amount.base_units()).sum();
                        let required =
                            policy.required_confirmations(Amount::from_base_units(total));
                        prop_assert!(required >= 1);
                        for d in &applied {
                            prop_assert!(
                                is_confirmed(d, required),
                                "payout with a deposit at {} of {required} ({:?}): {}",
                                d.confirmations,
                                d.status,
                                ctx()
                            );
                        }
                    }
                    PaymentKind::Refund => {
                        let covered: Vec<_> = next
                            .deposits
                            .values()
                            .filter(|d| d.refund_payment_id.as_deref() == Some(&order.payment_id))
                            .collect();
                        prop_assert!(!covered.is_empty(), "refund of nothing: {}", ctx());
                        let total: u128 = covered.iter().map(|d| d.amount.base_units()).sum();
                        prop_assert_eq!(
                            order.amount.base_units(),
                            total,
                            "refund amount: {}",
                            ctx()
                        );
                        let required = policy.required_confirmations(order.amount);
                        for d in &covered {
                            prop_assert!(
                                is_confirmed(d, required),
                                "refund of an unconfirmed deposit: {}",
                                ctx()
                            );
                            prop_assert_eq!(d.disposition, Disposition::Refund);
                        }
                    }
                }
            }
            Action::ReleaseLock { .. } => {}
        }
    }
    check_accounts(next)?;
    let json = serde_json::to_string(next).expect("a swap serialises");
    let back: Swap = serde_json::from_str(&json).expect("a swap deserialises");
    prop_assert_eq!(&back, next, "serde round trip");
    Ok(t.swap)
}

/// Per-deposit accounting that must hold in every state.
fn check_accounts(swap: &Swap) -> Result<(), TestCaseError> {
    let policy = &swap.terms.policy;
    let swap_refund = swap_refund_id();
    prop_assert!(
        !(swap.payout.is_some() && swap.refunds.contains_key(&swap_refund)),
        "both a payout and the swap's refund were ordered"
    );
    let mut by_disposition: BTreeMap<Disposition, u128> = BTreeMap::new();
    let mut total = 0u128;
    for (key, d) in &swap.deposits {
        total += d.amount.base_units();
        *by_disposition.entry(d.disposition).or_default() += d.amount.base_units();
        prop_assert_eq!(
            d.disposition == Disposition::Dust,
            d.amount < policy.dust_threshold,
            "dust is exactly what is below the threshold: {}",
            key
        );
        match d.disposition {
            Disposition::Applied => prop_assert!(!d.extra, "an extra deposit applied: {}", key),
            Disposition::Pending => prop_assert!(d.extra, "a counted deposit pending: {}", key),
            Disposition::Dropped => prop_assert!(
                matches!(d.status, TxStatus::Dropped { .. }),
                "dropped but the latest observation is {:?}: {}",
                d.status,
                key
            ),
            Disposition::Refunded => {
                let id = d.refund_payment_id.as_ref();
                let paid = id
                    .and_then(|id| swap.refunds.get(id))
                    .is_some_and(|p| p.status == PaymentStatus::Confirmed);
                prop_assert!(paid, "refunded without a confirmed refund: {}", key);
            }
            Disposition::Refund | Disposition::Review | Disposition::Dust => {}
        }
        if let Some(id) = &d.refund_payment_id {
            prop_assert!(
                swap.refunds.contains_key(id),
                "unknown refund {} of {}",
                id,
                key
            );
        }
    }
    // Every deposit has exactly one disposition, and the parts add up.
    prop_assert_eq!(by_disposition.values().sum::<u128>(), total);
    Ok(())
}

/// The world behaving: deposits confirm deeply, every ordered payment is
/// broadcast and confirms, the user gives a refund address, time passes.
fn drive_to_end(
    mut swap: Swap,
    mut now: i64,
    operator: bool,
    history: &mut History,
) -> Result<(Swap, i64), TestCaseError> {
    for round in 0..30 {
        let before = swap.clone();
        let mut inputs = Vec::new();
        if swap.refund_address.is_none() {
            inputs.push(SwapInput::RefundAddressProvided {
                address: REFUND_ADDRESS.to_owned(),
            });
        }
        for (key, d) in &swap.deposits {
            let deep = matches!(d.status, TxStatus::Confirmed { depth, .. } if depth >= 10);
            if !deep && !matches!(d.status, TxStatus::Dropped { .. }) {
                inputs.push(SwapInput::Deposit {
                    txid: key.txid.clone(),
                    output: key.output,
                    amount: d.amount,
                    status: TxStatus::Confirmed {
                        block_height: 200,
                        block_hash: "deep".to_owned(),
                        depth: 10,
                    },
                });
            }
        }
        inputs.push(SwapInput::Executed);
        let payments = swap.payout.iter().chain(swap.refunds.values());
        for (i, p) in payments.enumerate() {
            match (&p.txid, p.status) {
                (_, PaymentStatus::Confirmed) => {}
                (None, _) => inputs.push(broadcast(&p.order.payment_id, &format!("h{round}-{i}"))),
                (Some(txid), _) => inputs.push(observed(
                    txid,
                    TxStatus::Confirmed {
                        block_height: 300,
                        block_hash: "deep".to_owned(),
                        depth: 10,
                    },
                )),
            }
        }
        inputs.push(SwapInput::Tick);
        if operator && swap.state_name() == "manual_review" {
            // An operator pays out if that is allowed, else refunds, else fails
            // the swap (the first decision accepted wins).
            for decision in [
                OperatorDecision::PayOut,
                OperatorDecision::Refund,
                OperatorDecision::Fail {
                    reason: "gave up".to_owned(),
                },
            ] {
                inputs.push(SwapInput::OperatorDecision(decision));
            }
        }
        for input in inputs {
            now += 4_000;
            swap = checked_step(&swap, &input, at(now), history)?;
        }
        if swap == before || swap.updated_at == before.updated_at {
            break;
        }
    }
    Ok((swap, now))
}

/// Where every deposit ended: paid out, refunded, in review, dust or never
/// arrived (dropped). Anything else is a lost deposit.
fn check_ends(swap: &Swap) -> Result<(), TestCaseError> {
    let paid_out = swap.status() == proto::api::SwapStatus::Completed
        && swap
            .payout
            .as_ref()
            .is_some_and(|p| p.status == PaymentStatus::Confirmed);
    let operator = matches!(
        swap.status(),
        proto::api::SwapStatus::ManualReview | proto::api::SwapStatus::Failed
    );
    for (key, d) in &swap.deposits {
        let ok = match d.disposition {
            Disposition::Dust | Disposition::Refunded | Disposition::Review => true,
            Disposition::Dropped => matches!(d.status, TxStatus::Dropped { .. }),
            Disposition::Applied => paid_out || operator,
            Disposition::Refund => operator && !d.extra,
            Disposition::Pending => false,
        };
        prop_assert!(
            ok,
            "deposit {} ends {:?} in a swap that is {} (payout {:?}, refunds {:?})",
            key,
            d.disposition,
            swap.state_name(),
            swap.payout,
            swap.refunds
        );
    }
    Ok(())
}

proptest! {
    /// The tolerance check is exact: `diff * 10_000 <= expected * bps`.
    #[test]
    fn tolerance_is_exact(expected in any::<u64>(), received in any::<u64>(), under in 0u32..20_000, over in 0u32..20_000) {
        let p = state_machine::machine::Policy {
            underpay_tolerance_bps: under,
            overpay_tolerance_bps: over,
            ..policy()
        };
        let (e, r) = (u128::from(expected), u128::from(received));
        let (diff, bps) = if r < e { (e - r, under) } else { (r - e, over) };
        let naive = diff * 10_000 <= e * u128::from(bps);
        prop_assert_eq!(p.within_tolerance(amount(e), amount(r)), naive);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/machine_props.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_along_any_sequence(
        amounts in amounts(),
        with_refund_address in any::<bool>(),
        operator_resolves in any::<bool>(),
        ops in proptest::collection::vec((op(), 0i64..900), 0..60),
    ) {
        let mut swap = open(with_refund_address.then_some(REFUND_ADDRESS));
        let mut history = History::default();
        let mut now = 0i64;
        for (op, dt) in &ops {
            now += dt;
            let input = to_input(op, &swap, &amounts);
            swap = checked_step(&swap, &input, at(now), &mut history)?;
            // Replaying the same input right away changes nothing more
            // (or is rejected the same way).
            let again = swap.apply(&input, at(now));
            if let Ok(t) = again {
                if matches!(input, SwapInput::Deposit { .. } | SwapInput::PaymentBroadcast { .. }) {
                    prop_assert!(!t.changed, "a duplicate {:?} changed {}", input, swap.state_name());
                }
            }
        }
        let (end, _) = drive_to_end(swap, now, operator_resolves, &mut history)?;
        check_ends(&end)?;
        if operator_resolves {
            prop_assert_ne!(end.state_name(), "manual_review", "an operator decided");
        }
    }
}

/// The generator reaches every state (otherwise the properties above would
/// prove little): 2,000 sequences from a fixed seed, every state visited
/// along the way, and every state but the passing ones reached at the end.
#[test]
fn random_sequences_reach_every_state() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = (
        amounts(),
        any::<bool>(),
        proptest::collection::vec((op(), 0i64..900), 0..60),
    );
    let mut visited: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut payouts = 0;
    let mut refunds = 0;
    for _ in 0..2_000 {
        let (amounts, with_address, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let mut swap = open(with_address.then_some(REFUND_ADDRESS));
        let mut now = 0;
        for (op, dt) in &ops {
            now += dt;
            let input = to_input(op, &swap, &amounts);
            if let Ok(t) = swap.apply(&input, at(now)) {
                for a in &t.actions {
                    match a {
                        Action::Pay(o) if o.kind == PaymentKind::Payout => payouts += 1,
                        Action::Pay(_) => refunds += 1,
                        _ => {}
                    }
                }
                swap = t.swap;
            }
            *visited.entry(swap.state_name()).or_default() += 1;
        }
    }
    let all = [
        "awaiting_deposit",
        "deposit_seen",
        "confirming",
        "amount_mismatch",
        "executing",
        "payout_pending",
        "payout_broadcast",
        "completed",
        "expired",
        "refund_required",
        "refunding",
        "refunded",
        "manual_review",
        "failed",
    ];
    for state in all {
        assert!(
            visited.get(state).copied().unwrap_or(0) >= 5,
            "{state} visited {:?} times: {visited:?}",
            visited.get(state)
        );
    }
    assert!(
        payouts >= 50 && refunds >= 50,
        "payouts {payouts}, refunds {refunds}"
    );
    eprintln!("visits: {visited:?}; payouts {payouts}, refunds {refunds}");
}
