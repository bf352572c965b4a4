//! Every (state, input kind) pair of the swap machine, against a table
//! written out below: the state the input leads to (or `rejected`) and the
//! actions it emits. Run with `MACHINE_TABLE_PRINT=1` to print what the
//! machine does, in the table's format.

mod machine_support;

use machine_support::*;
use proto::Amount;
use rust_decimal_macros::dec;
use state_machine::machine::{OperatorDecision, Swap, SwapInput};

/// Builds a swap in the named state along a path of accepted inputs.
/// Paths end by t=50s; deposits: `d1` counted (1 BTC-cent, or 0.005 BTC
/// for the mismatch paths); payout tx `p1`; refund tx `r1`.
fn swap_in(state: &str) -> Swap {
    let base = open(None);
    let path: Vec<(i64, SwapInput)> = match state {
        "awaiting_deposit" => vec![],
        "deposit_seen" => vec![(10, deposit("d1", DEPOSIT, proto::event::TxStatus::Seen))],
        "confirming" => vec![(10, deposit("d1", DEPOSIT, confirmed(1)))],
        "amount_mismatch" => vec![(10, deposit("d1", 500_000, confirmed(2)))],
        "executing" => vec![(10, deposit("d1", DEPOSIT, confirmed(2)))],
        "payout_pending" => vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
        ],
        "payout_broadcast" => vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, broadcast(&payout_id(), "p1")),
        ],
        "completed" => vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, broadcast(&payout_id(), "p1")),
            (40, observed("p1", confirmed(3))),
        ],
        "expired" => vec![(DEADLINE_SECS, SwapInput::Tick)],
        "refund_required" => vec![
            (10, deposit("d1", 500_000, confirmed(2))),
            (20, SwapInput::RefundRequested),
        ],
        "refunding" => vec![
            (10, deposit("d1", 500_000, confirmed(2))),
            (20, SwapInput::RefundRequested),
            (
                30,
                SwapInput::RefundAddressProvided {
                    address: REFUND_ADDRESS.to_owned(),
                },
            ),
        ],
        "refunded" => vec![
            (10, deposit("d1", 500_000, confirmed(2))),
            (20, SwapInput::RefundRequested),
            (
                30,
                SwapInput::RefundAddressProvided {
                    address: REFUND_ADDRESS.to_owned(),
                },
            ),
            (40, broadcast(&swap_refund_id(), "r1")),
            (50, observed("r1", confirmed(3))),
        ],
        "manual_review" => vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, deposit("d1", DEPOSIT, unconfirmed())),
        ],
        // In review after the payout was broadcast; the deposit is back.
        "review_after_payout" => vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, broadcast(&payout_id(), "p1")),
            (40, deposit("d1", DEPOSIT, unconfirmed())),
            (50, deposit("d1", DEPOSIT, confirmed(2))),
        ],
        "failed" => vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, deposit("d1", DEPOSIT, unconfirmed())),
            (
                30,
                SwapInput::OperatorDecision(OperatorDecision::Fail {
                    reason: "chain split".to_owned(),
                }),
            ),
        ],
        other => panic!("no path to state {other}"),
    };
    let (swap, _) = run(&base, path);
    let name = match state {
        "review_after_payout" => "manual_review",
        other => other,
    };
    assert_eq!(swap.state_name(), name, "path to {state}");
    swap
}

/// One representative input of each kind, and when it arrives (seconds
/// from t0): everything at 200s (before the deadline and the decision
/// window's end), except `tick`, at 5000s (after both).
fn input(name: &str) -> (i64, SwapInput) {
    let at200 = |i| (200, i);
    match name {
        "new_deposit" => at200(deposit("d9", DEPOSIT, proto::event::TxStatus::Seen)),
        "new_deposit_confirmed" => at200(deposit("d9", DEPOSIT, confirmed(2))),
        "dust" => at200(deposit("d8", 1_000, confirmed(1))),
        // `d1`'s amount depends on the path; `outcome` fills it in.
        "deeper" => at200(deposit("d1", 0, confirmed(6))),
        "reorg" => at200(deposit("d1", 0, unconfirmed())),
        "drop" => at200(deposit("d1", 0, dropped())),
        "broadcast_payout" => at200(broadcast(&payout_id(), "p2")),
        "broadcast_bogus" => at200(broadcast("payout:nope", "p2")),
        "payout_confirmed" => at200(observed("p1", confirmed(3))),
        "payout_dropped" => at200(observed("p1", dropped())),
        "refund_confirmed" => at200(observed("r1", confirmed(3))),
        "observed_bogus" => at200(observed("zz", confirmed(3))),
        "executed" => at200(SwapInput::Executed),
        "execution_failed" => at200(SwapInput::ExecutionFailed {
            reason: "lock lost".to_owned(),
        }),
        "refund_address" => at200(SwapInput::RefundAddressProvided {
            address: REFUND_ADDRESS.to_owned(),
        }),
        "bad_refund_address" => at200(SwapInput::RefundAddressProvided {
            address: "not-an-address".to_owned(),
        }),
        "requote" => at200(SwapInput::RequoteAccepted {
            payout_amount: Amount::from_base_units(1_000_000),
            price: proto::Price(dec!(2)),
        }),
        "refund_requested" => at200(SwapInput::RefundRequested),
        "tick" => (5_000, SwapInput::Tick),
        "tick_early" => at200(SwapInput::Tick),
        "operator_payout" => at200(SwapInput::OperatorDecision(OperatorDecision::PayOut)),
        "operator_refund" => at200(SwapInput::OperatorDecision(OperatorDecision::Refund)),
        "operator_fail" => at200(SwapInput::OperatorDecision(OperatorDecision::Fail {
            reason: "operator".to_owned(),
        })),
        other => panic!("no input named {other}"),
    }
}

fn d1_units(state: &str) -> u128 {
    if matches!(
        state,
        "amount_mismatch" | "refund_required" | "refunding" | "refunded"
    ) {
        500_000
    } else {
        DEPOSIT
    }
}

/// Applies `input` to a swap in `state`; returns (state or `rejected`, actions).
fn outcome(state: &str, input_name: &str) -> (String, String) {
    let swap = swap_in(state);
    let (secs, mut input) = input(input_name);
    if let SwapInput::Deposit { txid, amount, .. } = &mut input {
        if txid == "d1" {
            *amount = Amount::from_base_units(d1_units(state));
        }
    }
    let now = at(secs).max(swap.updated_at);
    match swap.apply(&input, now) {
        Ok(t) => {
            if !t.changed {
                assert!(
                    t.actions.is_empty(),
                    "{state} {input_name}: unchanged with actions"
                );
                assert_eq!(
                    t.swap, swap,
                    "{state} {input_name}: unchanged but different"
                );
            } else {
                assert_eq!(t.swap.updated_at, now);
            }
            let name = if t.changed {
                t.swap.state_name().to_owned()
            } else {
                "same".to_owned()
            };
            (name, describe_all(&t.actions))
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            ("rejected".to_owned(), "-".to_owned())
        }
    }
}

const STATES: &[&str] = &[
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
    "review_after_payout",
    "failed",
];

const INPUTS: &[&str] = &[
    "new_deposit",
    "new_deposit_confirmed",
    "dust",
    "deeper",
    "reorg",
    "drop",
    "broadcast_payout",
    "broadcast_bogus",
    "payout_confirmed",
    "payout_dropped",
    "refund_confirmed",
    "observed_bogus",
    "executed",
    "execution_failed",
    "refund_address",
    "bad_refund_address",
    "requote",
    "refund_requested",
    "tick",
    "tick_early",
    "operator_payout",
    "operator_refund",
    "operator_fail",
];

/// `state | input | resulting state ("same" = changed nothing, "rejected") | actions`
const TABLE: &str = "
awaiting_deposit    | new_deposit           | deposit_seen     | -
awaiting_deposit    | new_deposit_confirmed | executing        | execute(1000000)
awaiting_deposit    | dust                  | awaiting_deposit | -
awaiting_deposit    | deeper                | executing        | execute(1000000)
awaiting_deposit    | reorg                 | deposit_seen     | -
awaiting_deposit    | drop                  | awaiting_deposit | -
awaiting_deposit    | broadcast_payout      | rejected         | -
awaiting_deposit    | broadcast_bogus       | rejected         | -
awaiting_deposit    | payout_confirmed      | same             | -
awaiting_deposit    | payout_dropped        | same             | -
awaiting_deposit    | refund_confirmed      | same             | -
awaiting_deposit    | observed_bogus        | same             | -
awaiting_deposit    | executed              | rejected         | -
awaiting_deposit    | execution_failed      | rejected         | -
awaiting_deposit    | refund_address        | awaiting_deposit | -
awaiting_deposit    | bad_refund_address    | rejected         | -
awaiting_deposit    | requote               | rejected         | -
awaiting_deposit    | refund_requested      | rejected         | -
awaiting_deposit    | tick                  | expired          | release
awaiting_deposit    | tick_early            | same             | -
awaiting_deposit    | operator_payout       | rejected         | -
awaiting_deposit    | operator_refund       | rejected         | -
awaiting_deposit    | operator_fail         | rejected         | -

deposit_seen        | new_deposit           | deposit_seen     | -
deposit_seen        | new_deposit_confirmed | confirming       | -
deposit_seen        | dust                  | deposit_seen     | -
deposit_seen        | deeper                | executing        | execute(1000000)
deposit_seen        | reorg                 | deposit_seen     | -
deposit_seen        | drop                  | awaiting_deposit | -
deposit_seen        | broadcast_payout      | rejected         | -
deposit_seen        | broadcast_bogus       | rejected         | -
deposit_seen        | payout_confirmed      | same             | -
deposit_seen        | payout_dropped        | same             | -
deposit_seen        | refund_confirmed      | same             | -
deposit_seen        | observed_bogus        | same             | -
deposit_seen        | executed              | rejected         | -
deposit_seen        | execution_failed      | rejected         | -
deposit_seen        | refund_address        | deposit_seen     | -
deposit_seen        | bad_refund_address    | rejected         | -
deposit_seen        | requote               | rejected         | -
deposit_seen        | refund_requested      | rejected         | -
deposit_seen        | tick                  | same             | -
deposit_seen        | tick_early            | same             | -
deposit_seen        | operator_payout       | rejected         | -
deposit_seen        | operator_refund       | rejected         | -
deposit_seen        | operator_fail         | rejected         | -

confirming          | new_deposit           | confirming       | -
confirming          | new_deposit_confirmed | confirming       | -
confirming          | dust                  | confirming       | -
confirming          | deeper                | executing        | execute(1000000)
confirming          | reorg                 | deposit_seen     | -
confirming          | drop                  | awaiting_deposit | -
confirming          | broadcast_payout      | rejected         | -
confirming          | broadcast_bogus       | rejected         | -
confirming          | payout_confirmed      | same             | -
confirming          | payout_dropped        | same             | -
confirming          | refund_confirmed      | same             | -
confirming          | observed_bogus        | same             | -
confirming          | executed              | rejected         | -
confirming          | execution_failed      | rejected         | -
confirming          | refund_address        | confirming       | -
confirming          | bad_refund_address    | rejected         | -
confirming          | requote               | rejected         | -
confirming          | refund_requested      | rejected         | -
confirming          | tick                  | same             | -
confirming          | tick_early            | same             | -
confirming          | operator_payout       | rejected         | -
confirming          | operator_refund       | rejected         | -
confirming          | operator_fail         | rejected         | -

amount_mismatch     | new_deposit           | confirming       | -
amount_mismatch     | new_deposit_confirmed | amount_mismatch  | -
amount_mismatch     | dust                  | amount_mismatch  | -
amount_mismatch     | deeper                | amount_mismatch  | -
amount_mismatch     | reorg                 | deposit_seen     | -
amount_mismatch     | drop                  | awaiting_deposit | -
amount_mismatch     | broadcast_payout      | rejected         | -
amount_mismatch     | broadcast_bogus       | rejected         | -
amount_mismatch     | payout_confirmed      | same             | -
amount_mismatch     | payout_dropped        | same             | -
amount_mismatch     | refund_confirmed      | same             | -
amount_mismatch     | observed_bogus        | same             | -
amount_mismatch     | executed              | rejected         | -
amount_mismatch     | execution_failed      | rejected         | -
amount_mismatch     | refund_address        | amount_mismatch  | -
amount_mismatch     | bad_refund_address    | rejected         | -
amount_mismatch     | requote               | executing        | execute(500000)
amount_mismatch     | refund_requested      | refund_required  | release
amount_mismatch     | tick                  | refund_required  | release
amount_mismatch     | tick_early            | same             | -
amount_mismatch     | operator_payout       | rejected         | -
amount_mismatch     | operator_refund       | rejected         | -
amount_mismatch     | operator_fail         | rejected         | -

executing           | new_deposit           | executing        | -
executing           | new_deposit_confirmed | executing        | -
executing           | dust                  | executing        | -
executing           | deeper                | executing        | -
executing           | reorg                 | manual_review    | -
executing           | drop                  | manual_review    | -
executing           | broadcast_payout      | rejected         | -
executing           | broadcast_bogus       | rejected         | -
executing           | payout_confirmed      | same             | -
executing           | payout_dropped        | same             | -
executing           | refund_confirmed      | same             | -
executing           | observed_bogus        | same             | -
executing           | executed              | payout_pending   | pay(payout,2000000)
executing           | execution_failed      | refund_required  | release
executing           | refund_address        | executing        | -
executing           | bad_refund_address    | rejected         | -
executing           | requote               | rejected         | -
executing           | refund_requested      | rejected         | -
executing           | tick                  | same             | -
executing           | tick_early            | same             | -
executing           | operator_payout       | rejected         | -
executing           | operator_refund       | rejected         | -
executing           | operator_fail         | rejected         | -

payout_pending      | new_deposit           | payout_pending   | -
payout_pending      | new_deposit_confirmed | payout_pending   | -
payout_pending      | dust                  | payout_pending   | -
payout_pending      | deeper                | payout_pending   | -
payout_pending      | reorg                 | manual_review    | -
payout_pending      | drop                  | manual_review    | -
payout_pending      | broadcast_payout      | payout_broadcast | -
payout_pending      | broadcast_bogus       | rejected         | -
payout_pending      | payout_confirmed      | same             | -
payout_pending      | payout_dropped        | same             | -
payout_pending      | refund_confirmed      | same             | -
payout_pending      | observed_bogus        | same             | -
payout_pending      | executed              | same             | -
payout_pending      | execution_failed      | rejected         | -
payout_pending      | refund_address        | payout_pending   | -
payout_pending      | bad_refund_address    | rejected         | -
payout_pending      | requote               | rejected         | -
payout_pending      | refund_requested      | rejected         | -
payout_pending      | tick                  | same             | -
payout_pending      | tick_early            | same             | -
payout_pending      | operator_payout       | rejected         | -
payout_pending      | operator_refund       | rejected         | -
payout_pending      | operator_fail         | rejected         | -

payout_broadcast    | new_deposit           | payout_broadcast | -
payout_broadcast    | new_deposit_confirmed | payout_broadcast | -
payout_broadcast    | dust                  | payout_broadcast | -
payout_broadcast    | deeper                | payout_broadcast | -
payout_broadcast    | reorg                 | manual_review    | -
payout_broadcast    | drop                  | manual_review    | -
payout_broadcast    | broadcast_payout      | payout_broadcast | -
payout_broadcast    | broadcast_bogus       | rejected         | -
payout_broadcast    | payout_confirmed      | completed        | -
payout_broadcast    | payout_dropped        | payout_pending   | pay(payout,2000000)
payout_broadcast    | refund_confirmed      | same             | -
payout_broadcast    | observed_bogus        | same             | -
payout_broadcast    | executed              | same             | -
payout_broadcast    | execution_failed      | rejected         | -
payout_broadcast    | refund_address        | payout_broadcast | -
payout_broadcast    | bad_refund_address    | rejected         | -
payout_broadcast    | requote               | rejected         | -
payout_broadcast    | refund_requested      | rejected         | -
payout_broadcast    | tick                  | same             | -
payout_broadcast    | tick_early            | same             | -
payout_broadcast    | operator_payout       | rejected         | -
payout_broadcast    | operator_refund       | rejected         | -
payout_broadcast    | operator_fail         | rejected         | -

completed           | new_deposit           | completed        | -
completed           | new_deposit_confirmed | completed        | -
completed           | dust                  | completed        | -
completed           | deeper                | completed        | -
completed           | reorg                 | completed        | -
completed           | drop                  | completed        | -
completed           | broadcast_payout      | rejected         | -
completed           | broadcast_bogus       | rejected         | -
completed           | payout_confirmed      | same             | -
completed           | payout_dropped        | completed        | -
completed           | refund_confirmed      | same             | -
completed           | observed_bogus        | same             | -
completed           | executed              | same             | -
completed           | execution_failed      | rejected         | -
completed           | refund_address        | rejected         | -
completed           | bad_refund_address    | rejected         | -
completed           | requote               | rejected         | -
completed           | refund_requested      | rejected         | -
completed           | tick                  | same             | -
completed           | tick_early            | same             | -
completed           | operator_payout       | rejected         | -
completed           | operator_refund       | rejected         | -
completed           | operator_fail         | rejected         | -

expired             | new_deposit           | expired          | -
expired             | new_deposit_confirmed | expired          | -
expired             | dust                  | expired          | -
expired             | deeper                | expired          | -
expired             | reorg                 | expired          | -
expired             | drop                  | expired          | -
expired             | broadcast_payout      | rejected         | -
expired             | broadcast_bogus       | rejected         | -
expired             | payout_confirmed      | same             | -
expired             | payout_dropped        | same             | -
expired             | refund_confirmed      | same             | -
expired             | observed_bogus        | same             | -
expired             | executed              | rejected         | -
expired             | execution_failed      | rejected         | -
expired             | refund_address        | rejected         | -
expired             | bad_refund_address    | rejected         | -
expired             | requote               | rejected         | -
expired             | refund_requested      | rejected         | -
expired             | tick                  | same             | -
expired             | tick_early            | same             | -
expired             | operator_payout       | rejected         | -
expired             | operator_refund       | rejected         | -
expired             | operator_fail         | rejected         | -

refund_required     | new_deposit           | refund_required  | -
refund_required     | new_deposit_confirmed | refund_required  | -
refund_required     | dust                  | refund_required  | -
refund_required     | deeper                | refund_required  | -
refund_required     | reorg                 | refund_required  | -
refund_required     | drop                  | manual_review    | -
refund_required     | broadcast_payout      | rejected         | -
refund_required     | broadcast_bogus       | rejected         | -
refund_required     | payout_confirmed      | same             | -
refund_required     | payout_dropped        | same             | -
refund_required     | refund_confirmed      | same             | -
refund_required     | observed_bogus        | same             | -
refund_required     | executed              | rejected         | -
refund_required     | execution_failed      | rejected         | -
refund_required     | refund_address        | refunding        | pay(refund,500000)
refund_required     | bad_refund_address    | rejected         | -
refund_required     | requote               | rejected         | -
refund_required     | refund_requested      | same             | -
refund_required     | tick                  | same             | -
refund_required     | tick_early            | same             | -
refund_required     | operator_payout       | rejected         | -
refund_required     | operator_refund       | rejected         | -
refund_required     | operator_fail         | rejected         | -

refunding           | new_deposit           | refunding        | -
refunding           | new_deposit_confirmed | refunding        | pay(refund/d9:0,1000000)
refunding           | dust                  | refunding        | -
refunding           | deeper                | refunding        | -
refunding           | reorg                 | manual_review    | -
refunding           | drop                  | manual_review    | -
refunding           | broadcast_payout      | rejected         | -
refunding           | broadcast_bogus       | rejected         | -
refunding           | payout_confirmed      | same             | -
refunding           | payout_dropped        | same             | -
refunding           | refund_confirmed      | same             | -
refunding           | observed_bogus        | same             | -
refunding           | executed              | rejected         | -
refunding           | execution_failed      | rejected         | -
refunding           | refund_address        | same             | -
refunding           | bad_refund_address    | rejected         | -
refunding           | requote               | rejected         | -
refunding           | refund_requested      | same             | -
refunding           | tick                  | same             | -
refunding           | tick_early            | same             | -
refunding           | operator_payout       | rejected         | -
refunding           | operator_refund       | rejected         | -
refunding           | operator_fail         | rejected         | -

refunded            | new_deposit           | refunded         | -
refunded            | new_deposit_confirmed | refunded         | pay(refund/d9:0,1000000)
refunded            | dust                  | refunded         | -
refunded            | deeper                | refunded         | -
refunded            | reorg                 | refunded         | -
refunded            | drop                  | refunded         | -
refunded            | broadcast_payout      | rejected         | -
refunded            | broadcast_bogus       | rejected         | -
refunded            | payout_confirmed      | same             | -
refunded            | payout_dropped        | same             | -
refunded            | refund_confirmed      | same             | -
refunded            | observed_bogus        | same             | -
refunded            | executed              | rejected         | -
refunded            | execution_failed      | rejected         | -
refunded            | refund_address        | same             | -
refunded            | bad_refund_address    | rejected         | -
refunded            | requote               | rejected         | -
refunded            | refund_requested      | same             | -
refunded            | tick                  | same             | -
refunded            | tick_early            | same             | -
refunded            | operator_payout       | rejected         | -
refunded            | operator_refund       | rejected         | -
refunded            | operator_fail         | rejected         | -

manual_review       | new_deposit           | manual_review    | -
manual_review       | new_deposit_confirmed | manual_review    | -
manual_review       | dust                  | manual_review    | -
manual_review       | deeper                | manual_review    | -
manual_review       | reorg                 | same             | -
manual_review       | drop                  | manual_review    | -
manual_review       | broadcast_payout      | rejected         | -
manual_review       | broadcast_bogus       | rejected         | -
manual_review       | payout_confirmed      | same             | -
manual_review       | payout_dropped        | same             | -
manual_review       | refund_confirmed      | same             | -
manual_review       | observed_bogus        | same             | -
manual_review       | executed              | manual_review    | -
manual_review       | execution_failed      | manual_review    | -
manual_review       | refund_address        | manual_review    | -
manual_review       | bad_refund_address    | rejected         | -
manual_review       | requote               | rejected         | -
manual_review       | refund_requested      | rejected         | -
manual_review       | tick                  | same             | -
manual_review       | tick_early            | same             | -
manual_review       | operator_payout       | rejected         | -
manual_review       | operator_refund       | refund_required  | release
manual_review       | operator_fail         | failed           | release

review_after_payout | new_deposit           | manual_review    | -
review_after_payout | new_deposit_confirmed | manual_review    | -
review_after_payout | dust                  | manual_review    | -
review_after_payout | deeper                | manual_review    | -
review_after_payout | reorg                 | manual_review    | -
review_after_payout | drop                  | manual_review    | -
review_after_payout | broadcast_payout      | manual_review    | -
review_after_payout | broadcast_bogus       | rejected         | -
review_after_payout | payout_confirmed      | manual_review    | -
review_after_payout | payout_dropped        | manual_review    | -
review_after_payout | refund_confirmed      | same             | -
review_after_payout | observed_bogus        | same             | -
review_after_payout | executed              | same             | -
review_after_payout | execution_failed      | rejected         | -
review_after_payout | refund_address        | manual_review    | -
review_after_payout | bad_refund_address    | rejected         | -
review_after_payout | requote               | rejected         | -
review_after_payout | refund_requested      | rejected         | -
review_after_payout | tick                  | same             | -
review_after_payout | tick_early            | same             | -
review_after_payout | operator_payout       | payout_broadcast | pay(payout,2000000)
review_after_payout | operator_refund       | rejected         | -
review_after_payout | operator_fail         | failed           | release

failed              | new_deposit           | failed           | -
failed              | new_deposit_confirmed | failed           | -
failed              | dust                  | failed           | -
failed              | deeper                | failed           | -
failed              | reorg                 | same             | -
failed              | drop                  | failed           | -
failed              | broadcast_payout      | rejected         | -
failed              | broadcast_bogus       | rejected         | -
failed              | payout_confirmed      | same             | -
failed              | payout_dropped        | same             | -
failed              | refund_confirmed      | same             | -
failed              | observed_bogus        | same             | -
failed              | executed              | rejected         | -
failed              | execution_failed      | rejected         | -
failed              | refund_address        | rejected         | -
failed              | bad_refund_address    | rejected         | -
failed              | requote               | rejected         | -
failed              | refund_requested      | rejected         | -
failed              | tick                  | same             | -
failed              | tick_early            | same             | -
failed              | operator_payout       | rejected         | -
failed              | operator_refund       | rejected         | -
failed              | operator_fail         | rejected         | -
";

#[test]
fn every_state_and_input_kind() {
    if std::env::var_os("MACHINE_TABLE_PRINT").is_some() {
        for state in STATES {
            for input in INPUTS {
                let (s, a) = outcome(state, input);
                println!("{state} | {input} | {s} | {a}");
            }
        }
    }
    let mut rows = 0;
    let mut failures = Vec::new();
    for line in TABLE.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cols.len(), 4, "bad table row {line:?}");
        let (state, input, expect_state, expect_actions) = (cols[0], cols[1], cols[2], cols[3]);
        let (got_state, got_actions) = outcome(state, input);
        if got_state != expect_state || got_actions != expect_actions {
            failures.push(format!(
                "{state} | {input}: expected {expect_state} | {expect_actions}, got {got_state} | {got_actions}"
            ));
        }
        rows += 1;
    }
    assert!(
        failures.is_empty(),
        "{} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        rows,
        STATES.len() * INPUTS.len(),
        "the table must cover every pair"
    );
}
