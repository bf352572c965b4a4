//! Readable stories of one swap each, from open to its end.

mod machine_support;

use machine_support::*;
use proto::api::SwapStatus;
use proto::event::TxStatus;
use proto::{AssetKind, AssetSpec, Assets, BitcoinNetwork, EthereumNetwork, Network};
use state_machine::machine::{
    Action, DepositKey, Disposition, OperatorDecision, PaymentKind, PaymentStatus, Swap, SwapInput,
};

fn key(txid: &str) -> DepositKey {
    DepositKey::new(txid, 0)
}

fn disposition(swap: &Swap, txid: &str) -> Disposition {
    swap.deposits[&key(txid)].disposition
}

fn refund_address() -> SwapInput {
    SwapInput::RefundAddressProvided {
        address: REFUND_ADDRESS.to_owned(),
    }
}

fn assets() -> Assets {
    Assets::new([
        AssetSpec {
            id: "BTC".parse().unwrap(),
            network: Network::Bitcoin(BitcoinNetwork::Regtest),
            kind: AssetKind::Native,
            decimals: 8,
        },
        AssetSpec {
            id: "ETH".parse().unwrap(),
            network: Network::Ethereum(EthereumNetwork::Dev),
            kind: AssetKind::Native,
            decimals: 18,
        },
    ])
}

#[test]
fn happy_path() {
    let swap = open(None);
    assert_eq!(swap.status(), SwapStatus::AwaitingDeposit);

    let t = step(&swap, deposit("d1", DEPOSIT, TxStatus::Seen), at(10));
    assert_eq!(t.swap.status(), SwapStatus::DepositSeen);
    assert!(t.actions.is_empty());
    // The same observation again changes nothing.
    let again = step(&t.swap, deposit("d1", DEPOSIT, TxStatus::Seen), at(11));
    assert!(!again.changed);
    assert_eq!(again.swap, t.swap);

    let t = step(&t.swap, deposit("d1", DEPOSIT, confirmed(1)), at(600));
    assert_eq!(t.swap.status(), SwapStatus::Confirming);
    assert!(
        t.actions.is_empty(),
        "one of two confirmations: no execution yet"
    );

    let t = step(&t.swap, deposit("d1", DEPOSIT, confirmed(2)), at(1200));
    assert_eq!(t.swap.status(), SwapStatus::Executing);
    assert_eq!(
        t.actions,
        vec![Action::Execute {
            swap_id: swap_id(),
            quote_id: quote_id(),
            deposit_amount: amount(DEPOSIT)
        }]
    );

    let t = step(&t.swap, SwapInput::Executed, at(1201));
    assert_eq!(t.swap.status(), SwapStatus::PayoutPending);
    let [Action::Pay(order)] = t.actions.as_slice() else {
        panic!("expected one payment, got {:?}", t.actions)
    };
    assert_eq!(order.payment_id, payout_id());
    assert_eq!(order.kind, PaymentKind::Payout);
    assert_eq!(order.address, PAYOUT_ADDRESS);
    assert_eq!(order.amount, amount(PAYOUT));
    assert_eq!(order.asset.as_str(), "ETH");

    let t = step(&t.swap, broadcast(&payout_id(), "p1"), at(1202));
    assert_eq!(t.swap.status(), SwapStatus::PayoutBroadcast);
    let t = step(&t.swap, observed("p1", confirmed(2)), at(1300));
    assert_eq!(t.swap.status(), SwapStatus::PayoutBroadcast);
    let t = step(&t.swap, observed("p1", confirmed(3)), at(1400));
    assert_eq!(t.swap.status(), SwapStatus::Completed);
    assert!(t.swap.is_terminal());
    assert_eq!(disposition(&t.swap, "d1"), Disposition::Applied);
    assert_eq!(
        t.swap.payout.as_ref().unwrap().status,
        PaymentStatus::Confirmed
    );
    assert_eq!(t.swap.updated_at, at(1400));

    let view = t.swap.view(&assets()).unwrap();
    assert_eq!(view.status, SwapStatus::Completed);
    assert_eq!(view.amount_in, "0.01");
    assert_eq!(view.deposit.required_confirmations, 2);
    assert_eq!(
        view.deposit.payment_uri,
        format!("bitcoin:{DEPOSIT_ADDRESS}?amount=0.01")
    );
    assert_eq!(view.deposits[0].disposition, "applied");
    assert_eq!(view.payout.as_ref().unwrap().status, "confirmed");
    assert_eq!(view.payout.as_ref().unwrap().txid.as_deref(), Some("p1"));
}

#[test]
fn underpay_is_refunded() {
    let swap = open(None);
    let (swap, actions) = run(
        &swap,
        vec![
            (10, deposit("d1", 900_000, TxStatus::Seen)),
            (600, deposit("d1", 900_000, confirmed(2))),
        ],
    );
    assert_eq!(swap.status(), SwapStatus::AmountMismatch);
    assert!(actions.is_empty(), "10% short: no execution");
    assert!(swap.reason.as_deref().unwrap().contains("900000"));

    // The user does not decide within the window: refund, but no address yet.
    let t = step(&swap, SwapInput::Tick, at(600 + WINDOW_SECS - 1));
    assert!(!t.changed);
    let t = step(&swap, SwapInput::Tick, at(600 + WINDOW_SECS));
    assert_eq!(t.swap.status(), SwapStatus::RefundRequired);
    assert_eq!(describe_all(&t.actions), "release");

    let t = step(&t.swap, refund_address(), at(1300));
    assert_eq!(t.swap.status(), SwapStatus::Refunding);
    assert_eq!(describe_all(&t.actions), "pay(refund,900000)");
    let Action::Pay(order) = &t.actions[0] else {
        unreachable!()
    };
    assert_eq!(order.address, REFUND_ADDRESS);
    assert_eq!(order.asset.as_str(), "BTC");

    let (swap, actions) = run(
        &t.swap,
        vec![
            (1301, broadcast(&swap_refund_id(), "r1")),
            (1400, observed("r1", dropped())),
        ],
    );
    assert_eq!(
        describe_all(&actions),
        "pay(refund,900000)",
        "a dropped refund is asked for again under the same id"
    );
    let (swap, actions) = run(
        &swap,
        vec![
            (1401, broadcast(&swap_refund_id(), "r2")),
            (1500, observed("r2", confirmed(3))),
        ],
    );
    assert!(actions.is_empty(), "the lock was released once already");
    assert_eq!(swap.status(), SwapStatus::Refunded);
    assert_eq!(disposition(&swap, "d1"), Disposition::Refunded);
}

#[test]
fn user_may_accept_a_requote() {
    let (swap, _) = run(
        &open(None),
        vec![(10, deposit("d1", 900_000, confirmed(2)))],
    );
    assert_eq!(swap.status(), SwapStatus::AmountMismatch);
    let t = step(
        &swap,
        SwapInput::RequoteAccepted {
            payout_amount: amount(1_790_000),
            price: proto::Price(rust_decimal_macros::dec!(1.98)),
        },
        at(20),
    );
    assert_eq!(describe_all(&t.actions), "execute(900000)");
    let t = step(&t.swap, SwapInput::Executed, at(30));
    assert_eq!(describe_all(&t.actions), "pay(payout,1790000)");
}

#[test]
fn overpay_within_tolerance_pays_the_quote() {
    // 0.8% over, tolerance 1%.
    let (swap, actions) = run(
        &open(None),
        vec![
            (10, deposit("d1", 1_008_000, confirmed(2))),
            (20, SwapInput::Executed),
        ],
    );
    assert_eq!(
        describe_all(&actions),
        "execute(1008000) pay(payout,2000000)"
    );
    assert_eq!(swap.status(), SwapStatus::PayoutPending);

    // 1.2% over is a mismatch.
    let t = step(&open(None), deposit("d1", 1_012_000, confirmed(2)), at(10));
    assert_eq!(t.swap.status(), SwapStatus::AmountMismatch);
}

#[test]
fn two_deposits_make_the_amount_together() {
    let (swap, actions) = run(
        &open(None),
        vec![
            (10, deposit("d1", 600_000, confirmed(2))),
            (20, deposit("d2", 400_000, TxStatus::Seen)),
        ],
    );
    assert!(actions.is_empty());
    assert_eq!(
        swap.status(),
        SwapStatus::Confirming,
        "the 60% part alone is a mismatch, with the second part pending it is not"
    );
    let t = step(&swap, deposit("d2", 400_000, confirmed(2)), at(30));
    assert_eq!(describe_all(&t.actions), "execute(1000000)");
}

#[test]
fn reorg_before_payout_goes_back() {
    let (swap, _) = run(
        &open(None),
        vec![(10, deposit("d1", DEPOSIT, confirmed(1)))],
    );
    assert_eq!(swap.status(), SwapStatus::Confirming);
    let t = step(&swap, deposit("d1", DEPOSIT, unconfirmed()), at(20));
    assert_eq!(t.swap.status(), SwapStatus::DepositSeen);
    assert_eq!(t.swap.deposits[&key("d1")].confirmations, 0);
    // Replaced by a double spend: nothing counts, back to waiting.
    let t = step(&t.swap, deposit("d1", DEPOSIT, dropped()), at(30));
    assert_eq!(t.swap.status(), SwapStatus::AwaitingDeposit);
    assert_eq!(disposition(&t.swap, "d1"), Disposition::Dropped);
    // ... and after the deadline that means expired.
    let t = step(&t.swap, SwapInput::Tick, at(DEADLINE_SECS));
    assert_eq!(t.swap.status(), SwapStatus::Expired);
    assert_eq!(describe_all(&t.actions), "release");
}

#[test]
fn deposit_seen_before_the_deadline_is_honoured_later() {
    let (swap, actions) = run(
        &open(None),
        vec![
            (DEADLINE_SECS - 1, deposit("d1", DEPOSIT, TxStatus::Seen)),
            (DEADLINE_SECS + 10, SwapInput::Tick),
            (DEADLINE_SECS + 600, deposit("d1", DEPOSIT, confirmed(2))),
        ],
    );
    assert_eq!(describe_all(&actions), "execute(1000000)");
    assert_eq!(swap.status(), SwapStatus::Executing);
}

#[test]
fn a_reverted_payout_goes_to_review_and_is_not_paid_again() {
    let (swap, actions) = run(
        &open(None),
        vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, broadcast(&payout_id(), "p1")),
        ],
    );
    assert_eq!(
        describe_all(&actions),
        "execute(1000000) pay(payout,2000000)"
    );
    // Someone else's transaction reverting is irrelevant.
    let t = step(
        &swap,
        SwapInput::PaymentReverted {
            txid: "other".into(),
        },
        at(35),
    );
    assert!(!t.changed);
    let t = step(
        &swap,
        SwapInput::PaymentReverted { txid: "p1".into() },
        at(40),
    );
    assert_eq!(t.swap.status(), SwapStatus::ManualReview);
    assert!(t.actions.is_empty(), "never paid again by itself");
    let reason = t.swap.reason.as_deref().unwrap();
    assert!(
        reason.contains("reverted") && reason.contains("p1"),
        "{reason}"
    );
    // More chain news changes nothing: only an operator moves it.
    let (review, actions) = run(
        &t.swap,
        vec![(50, observed("p1", confirmed(5))), (60, SwapInput::Tick)],
    );
    assert!(actions.is_empty());
    assert_eq!(review.status(), SwapStatus::ManualReview);
}

#[test]
fn reorg_after_payout_goes_to_review_and_never_pays_twice() {
    let (swap, actions) = run(
        &open(None),
        vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, broadcast(&payout_id(), "p1")),
        ],
    );
    assert_eq!(
        describe_all(&actions),
        "execute(1000000) pay(payout,2000000)"
    );
    let t = step(&swap, deposit("d1", DEPOSIT, unconfirmed()), at(40));
    assert_eq!(t.swap.status(), SwapStatus::ManualReview);
    assert!(t.actions.is_empty());
    assert!(t.swap.reason.as_deref().unwrap().contains("d1:0"));

    // In review, nothing but an operator moves the swap; a dropped payout
    // is not retried.
    let (review, actions) = run(
        &t.swap,
        vec![
            (50, observed("p1", dropped())),
            (60, SwapInput::Tick),
            (70, SwapInput::Executed),
        ],
    );
    assert!(actions.is_empty());
    assert_eq!(review.status(), SwapStatus::ManualReview);
    // Paying out needs the deposit back at depth; refunding is refused
    // because a payout was ordered.
    assert!(review
        .apply(
            &SwapInput::OperatorDecision(OperatorDecision::PayOut),
            at(80)
        )
        .is_err());
    assert!(review
        .apply(
            &SwapInput::OperatorDecision(OperatorDecision::Refund),
            at(80)
        )
        .is_err());
    let (review, _) = run(&review, vec![(90, deposit("d1", DEPOSIT, confirmed(2)))]);
    let t = step(
        &review,
        SwapInput::OperatorDecision(OperatorDecision::PayOut),
        at(100),
    );
    assert_eq!(
        describe_all(&t.actions),
        "pay(payout,2000000)",
        "the same payment id, never a second payout"
    );
    assert_eq!(t.swap.status(), SwapStatus::PayoutPending);
}

#[test]
fn late_deposit_after_expiry_is_refunded() {
    let t = step(&open(None), SwapInput::Tick, at(DEADLINE_SECS));
    assert_eq!(t.swap.status(), SwapStatus::Expired);
    let (swap, actions) = run(
        &t.swap,
        vec![
            (DEADLINE_SECS + 10, deposit("late", DEPOSIT, TxStatus::Seen)),
            (DEADLINE_SECS + 600, deposit("late", DEPOSIT, confirmed(2))),
        ],
    );
    assert!(actions.is_empty(), "no refund address yet");
    assert_eq!(swap.status(), SwapStatus::Expired);
    assert_eq!(disposition(&swap, "late"), Disposition::Review);

    let t = step(&swap, refund_address(), at(DEADLINE_SECS + 700));
    assert_eq!(describe_all(&t.actions), "pay(refund/late:0,1000000)");
    assert_eq!(disposition(&t.swap, "late"), Disposition::Refund);
    let (swap, _) = run(
        &t.swap,
        vec![
            (
                DEADLINE_SECS + 701,
                broadcast(&extra_refund_id("late"), "r1"),
            ),
            (DEADLINE_SECS + 800, observed("r1", confirmed(3))),
        ],
    );
    assert_eq!(disposition(&swap, "late"), Disposition::Refunded);
    assert_eq!(swap.status(), SwapStatus::Expired, "terminal states absorb");
}

#[test]
fn deposit_after_the_deadline_does_not_count() {
    let (swap, actions) = run(
        &open(Some(REFUND_ADDRESS)),
        vec![
            (10, deposit("d1", 500_000, confirmed(1))),
            (DEADLINE_SECS + 1, deposit("d2", 500_000, confirmed(2))),
        ],
    );
    assert_eq!(describe_all(&actions), "pay(refund/d2:0,500000)");
    assert_eq!(swap.status(), SwapStatus::Confirming);
    assert!(swap.deposits[&key("d2")].extra);
}

#[test]
fn second_deposit_after_completion_gets_its_own_refund() {
    let (done, _) = run(
        &open(Some(REFUND_ADDRESS)),
        vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, broadcast(&payout_id(), "p1")),
            (40, observed("p1", confirmed(3))),
        ],
    );
    assert_eq!(done.status(), SwapStatus::Completed);
    let (swap, actions) = run(
        &done,
        vec![
            (50, deposit("d2", DEPOSIT, TxStatus::Seen)),
            (60, deposit("d2", DEPOSIT, confirmed(1))),
        ],
    );
    assert!(
        actions.is_empty(),
        "1 of 2 confirmations for its own amount"
    );
    assert_eq!(disposition(&swap, "d2"), Disposition::Pending);
    let t = step(&swap, deposit("d2", DEPOSIT, confirmed(2)), at(70));
    assert_eq!(describe_all(&t.actions), "pay(refund/d2:0,1000000)");
    assert_eq!(t.swap.status(), SwapStatus::Completed);
    assert_eq!(disposition(&t.swap, "d1"), Disposition::Applied);
    assert_eq!(disposition(&t.swap, "d2"), Disposition::Refund);
    // Reorganised after its refund was ordered: review, not a second refund.
    let t = step(&t.swap, deposit("d2", DEPOSIT, unconfirmed()), at(80));
    assert!(t.actions.is_empty());
    assert_eq!(disposition(&t.swap, "d2"), Disposition::Review);
    assert_eq!(t.swap.status(), SwapStatus::Completed);
}

#[test]
fn dust_is_recorded_and_ignored() {
    let swap = open(None);
    let t = step(&swap, deposit("dust", 1_000, confirmed(6)), at(10));
    assert!(t.changed);
    assert!(t.actions.is_empty());
    assert_eq!(t.swap.status(), SwapStatus::AwaitingDeposit);
    assert_eq!(disposition(&t.swap, "dust"), Disposition::Dust);
    // Dust does not make up the amount either.
    let t = step(
        &t.swap,
        deposit("d1", DEPOSIT - 1_000 * 10, confirmed(2)),
        at(20),
    );
    assert_eq!(t.swap.status(), SwapStatus::AmountMismatch);
    // And after expiry, dust is not refunded.
    let t = step(&open(None), SwapInput::Tick, at(DEADLINE_SECS));
    let t = step(
        &t.swap,
        deposit("dust", 1_000, confirmed(6)),
        at(DEADLINE_SECS + 1),
    );
    assert!(t.actions.is_empty());
    assert_eq!(disposition(&t.swap, "dust"), Disposition::Dust);
}

#[test]
fn execution_failure_refunds_and_releases_the_lock() {
    let (swap, actions) = run(
        &open(Some(REFUND_ADDRESS)),
        vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (
                20,
                SwapInput::ExecutionFailed {
                    reason: "trading halted".to_owned(),
                },
            ),
        ],
    );
    assert_eq!(
        describe_all(&actions),
        "execute(1000000) release pay(refund,1000000)"
    );
    assert_eq!(swap.status(), SwapStatus::Refunding);
    assert!(swap.reason.as_deref().unwrap().contains("trading halted"));
    // A late "executed" cannot turn a refund into a payout.
    assert!(swap.apply(&SwapInput::Executed, at(30)).is_err());
}

#[test]
fn rejections_say_what_was_wrong() {
    let swap = open(None);
    let e = swap
        .apply(
            &SwapInput::OperatorDecision(OperatorDecision::PayOut),
            at(1),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "operator_decision does not apply to a swap that is awaiting_deposit"
    );
    let e = swap
        .apply(
            &SwapInput::RefundAddressProvided {
                address: PAYOUT_ADDRESS.to_owned(),
            },
            at(1),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("not valid on bitcoin-regtest"),
        "{e}"
    );
    let (swap, _) = run(&swap, vec![(1, deposit("d1", DEPOSIT, TxStatus::Seen))]);
    let e = swap
        .apply(&deposit("d1", DEPOSIT + 1, TxStatus::Seen), at(2))
        .unwrap_err();
    assert!(
        e.to_string().contains("d1:0 was recorded as 1000000"),
        "{e}"
    );
    let (swap, _) = run(&swap, vec![(3, refund_address())]);
    let e = swap
        .apply(
            &SwapInput::RefundAddressProvided {
                address: "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".to_owned(),
            },
            at(4),
        )
        .unwrap_err();
    assert!(e.to_string().contains("cannot change"), "{e}");
}

#[test]
fn swap_survives_a_json_round_trip_in_every_shape() {
    let (swap, _) = run(
        &open(None),
        vec![
            (10, deposit("d1", 900_000, confirmed(2))),
            (20, deposit("dust", 5, TxStatus::Seen)),
        ],
    );
    let json = serde_json::to_string(&swap).unwrap();
    let back: Swap = serde_json::from_str(&json).unwrap();
    assert_eq!(back, swap);
    assert_eq!(back.state_name(), "amount_mismatch");
    // The decision window survives: it ends 600 s after the mismatch.
    let t = step(&back, SwapInput::Tick, at(10 + WINDOW_SECS));
    assert_eq!(t.swap.status(), SwapStatus::RefundRequired);
}

#[test]
fn stale_chain_events_do_not_undo_newer_ones() {
    let (swap, actions) = run(
        &open(None),
        vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
        ],
    );
    assert_eq!(
        describe_all(&actions),
        "execute(1000000) pay(payout,2000000)"
    );
    // Depth 1 in the same block arrives late: older news, not a reorg.
    let t = step(
        &swap,
        deposit("d1", DEPOSIT, confirmed_in("block-a", 1)),
        at(30),
    );
    assert!(!t.changed);
    // A reorganisation of some other block than the one d1 is in: old news.
    let t = step(
        &swap,
        deposit(
            "d1",
            DEPOSIT,
            TxStatus::Unconfirmed {
                block_hash: "elsewhere".to_owned(),
            },
        ),
        at(30),
    );
    assert!(!t.changed);
    // The block d1 is in, reorganised away: review.
    let t = step(
        &swap,
        deposit(
            "d1",
            DEPOSIT,
            TxStatus::Unconfirmed {
                block_hash: "block-a".to_owned(),
            },
        ),
        at(30),
    );
    assert_eq!(t.swap.status(), SwapStatus::ManualReview);
    // Confirmed in another block at a smaller depth (a reorg without notice): review too.
    let t = step(
        &swap,
        deposit("d1", DEPOSIT, confirmed_in("other", 1)),
        at(30),
    );
    assert_eq!(t.swap.status(), SwapStatus::ManualReview);

    // The payout's confirmations do not go back on a late, shallower report.
    let (swap, _) = run(
        &swap,
        vec![
            (40, broadcast(&payout_id(), "p1")),
            (50, observed("p1", confirmed(2))),
        ],
    );
    let t = step(&swap, observed("p1", confirmed(1)), at(60));
    assert!(!t.changed);
    let t = step(&swap, observed("p1", confirmed(3)), at(60));
    assert_eq!(t.swap.status(), SwapStatus::Completed);
}

#[test]
fn extra_deposit_while_paying_out_waits_for_an_address() {
    let (swap, actions) = run(
        &open(None),
        vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, deposit("d2", 500_000, confirmed(2))),
        ],
    );
    assert_eq!(
        describe_all(&actions),
        "execute(1000000) pay(payout,2000000)"
    );
    assert_eq!(
        swap.status(),
        SwapStatus::PayoutPending,
        "the payout goes on"
    );
    assert_eq!(disposition(&swap, "d2"), Disposition::Refund);
    assert!(swap.reason.as_deref().unwrap().contains("refund address"));
    // The swap completes; the owed deposit waits in review for an address.
    let (done, _) = run(
        &swap,
        vec![
            (40, broadcast(&payout_id(), "p1")),
            (50, observed("p1", confirmed(3))),
        ],
    );
    assert_eq!(done.status(), SwapStatus::Completed);
    assert_eq!(disposition(&done, "d2"), Disposition::Review);
    let t = step(&done, refund_address(), at(60));
    assert_eq!(describe_all(&t.actions), "pay(refund/d2:0,500000)");
    assert_eq!(t.swap.status(), SwapStatus::Completed);
}

#[test]
fn refund_address_for_an_unconfirmed_late_deposit_is_accepted() {
    let (swap, _) = run(
        &open(None),
        vec![
            (DEADLINE_SECS, SwapInput::Tick),
            (DEADLINE_SECS + 1, deposit("late", DEPOSIT, TxStatus::Seen)),
        ],
    );
    assert_eq!(swap.status(), SwapStatus::Expired);
    let t = step(&swap, refund_address(), at(DEADLINE_SECS + 2));
    assert!(t.actions.is_empty(), "not confirmed yet");
    let t = step(
        &t.swap,
        deposit("late", DEPOSIT, confirmed(2)),
        at(DEADLINE_SECS + 3),
    );
    assert_eq!(describe_all(&t.actions), "pay(refund/late:0,1000000)");
}

#[test]
fn policy_thresholds_and_tolerances() {
    let p = policy();
    // The highest threshold not above the amount wins.
    assert_eq!(p.required_confirmations(amount(0)), 1);
    assert_eq!(p.required_confirmations(amount(499_999)), 1);
    assert_eq!(p.required_confirmations(amount(500_000)), 2);
    assert_eq!(p.required_confirmations(amount(9_999_999)), 2);
    assert_eq!(p.required_confirmations(amount(10_000_000)), 6);
    // Never fewer than one, whatever the table says (or if it is empty).
    let zero = state_machine::machine::Policy {
        confirmations: vec![(amount(0), 0), (amount(100), 3)],
        ..policy()
    };
    assert_eq!(zero.required_confirmations(amount(50)), 1);
    assert_eq!(zero.required_confirmations(amount(100)), 3);
    let empty = state_machine::machine::Policy {
        confirmations: vec![],
        ..policy()
    };
    assert_eq!(empty.required_confirmations(amount(1)), 1);

    // 50 bps under, 100 bps over, on 1,000,000: 995,000 .. 1,010,000.
    assert!(p.within_tolerance(amount(DEPOSIT), amount(995_000)));
    assert!(!p.within_tolerance(amount(DEPOSIT), amount(994_999)));
    assert!(p.within_tolerance(amount(DEPOSIT), amount(1_010_000)));
    assert!(!p.within_tolerance(amount(DEPOSIT), amount(1_010_001)));
    // No overflow on huge amounts: refused, not a panic.
    assert!(!p.within_tolerance(amount(u128::MAX), amount(0)));
    assert!(p.within_tolerance(amount(u128::MAX), amount(u128::MAX)));
}

#[test]
fn a_deposit_at_exactly_the_deadline_is_late() {
    let t = step(
        &open(None),
        deposit("d1", DEPOSIT, TxStatus::Seen),
        at(DEADLINE_SECS),
    );
    assert!(t.swap.deposits[&key("d1")].extra);
    assert_eq!(disposition(&t.swap, "d1"), Disposition::Pending);
    let t = step(&t.swap, SwapInput::Tick, at(DEADLINE_SECS));
    assert_eq!(t.swap.status(), SwapStatus::Expired);
}

#[test]
fn a_settled_deposit_reorganised_after_completion_is_named() {
    let (done, _) = run(
        &open(None),
        vec![
            (10, deposit("d1", DEPOSIT, confirmed(2))),
            (20, SwapInput::Executed),
            (30, broadcast(&payout_id(), "p1")),
            (40, observed("p1", confirmed(3))),
        ],
    );
    assert_eq!(done.reason, None);
    let t = step(&done, deposit("d1", DEPOSIT, dropped()), at(50));
    assert!(t.actions.is_empty());
    assert_eq!(t.swap.status(), SwapStatus::Completed);
    assert_eq!(
        t.swap.reason.as_deref(),
        Some("deposit d1:0 is dropped after the swap was settled; an operator must check it")
    );
}

#[test]
fn operator_refund_never_reuses_a_refund_id_for_another_amount() {
    // Two deposits make the swap; it is refunded; one of them is then
    // double-spent: the ordered refund (for both) no longer matches.
    let (swap, actions) = run(
        &open(Some(REFUND_ADDRESS)),
        vec![
            (10, deposit("d1", 500_000, confirmed(2))),
            (11, deposit("d2", 100_000, confirmed(2))),
            (20, SwapInput::RefundRequested),
        ],
    );
    assert_eq!(describe_all(&actions), "release pay(refund,600000)");
    let (review, _) = run(
        &swap,
        vec![
            (30, deposit("d2", 100_000, unconfirmed())),
            (40, deposit("d2", 100_000, dropped())),
        ],
    );
    assert_eq!(review.status(), SwapStatus::ManualReview);
    let e = review
        .apply(
            &SwapInput::OperatorDecision(OperatorDecision::Refund),
            at(50),
        )
        .unwrap_err();
    assert!(e.to_string().contains("already ordered for 600000"), "{e}");
    assert!(review
        .apply(
            &SwapInput::OperatorDecision(OperatorDecision::PayOut),
            at(50)
        )
        .is_err());
    let t = step(
        &review,
        SwapInput::OperatorDecision(OperatorDecision::Fail {
            reason: "refund sent for a double-spent deposit".to_owned(),
        }),
        at(50),
    );
    assert_eq!(t.swap.status(), SwapStatus::Failed);
    assert!(
        t.actions.is_empty(),
        "the lock was released with the refund"
    );

    // While the lost deposit is only reorganised (not dropped), the operator
    // may repeat the refund: the same id and amount.
    let (review, _) = run(&swap, vec![(30, deposit("d2", 100_000, unconfirmed()))]);
    let t = step(
        &review,
        SwapInput::OperatorDecision(OperatorDecision::Refund),
        at(50),
    );
    assert_eq!(
        t.swap.status(),
        SwapStatus::RefundRequired,
        "waits for d2 to confirm again"
    );
    assert!(t.actions.is_empty());
    let t = step(&t.swap, deposit("d2", 100_000, confirmed(2)), at(60));
    assert_eq!(t.swap.status(), SwapStatus::Refunding);
    assert_eq!(describe_all(&t.actions), "pay(refund,600000)");
}
