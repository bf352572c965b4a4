//! Shared fixtures for the swap machine's tests: terms, times, inputs and a
//! compact description of actions.

#![allow(dead_code)]

use chrono::TimeZone;
use proto::event::TxStatus;
use proto::{Amount, AssetId, BitcoinNetwork, EthereumNetwork, Network, Price, QuoteId, SwapId};
use rust_decimal_macros::dec;
use state_machine::machine::{Action, Policy, Swap, SwapInput, SwapTerms, Transition};
use uuid::Uuid;

pub type Timestamp = proto::Timestamp;

pub const DEPOSIT_ADDRESS: &str = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
/// A valid regtest address for refunds (BIP173 test vector).
pub const REFUND_ADDRESS: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
pub const PAYOUT_ADDRESS: &str = "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359";

/// Quoted deposit: 0.01 BTC.
pub const DEPOSIT: u128 = 1_000_000;
/// Quoted payout, in wei.
pub const PAYOUT: u128 = 2_000_000;
pub const DUST: u128 = 10_000;
/// Seconds from `t0` to the deadline.
pub const DEADLINE_SECS: i64 = 3_600;
pub const WINDOW_SECS: i64 = 600;
pub const PAYOUT_CONFIRMATIONS: u32 = 3;

pub fn swap_id() -> SwapId {
    SwapId(Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111))
}

pub fn quote_id() -> QuoteId {
    QuoteId(Uuid::from_u128(0x2222_2222_2222_4222_8222_2222_2222_2222))
}

pub fn at(secs: i64) -> Timestamp {
    chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

pub fn amount(units: u128) -> Amount {
    Amount::from_base_units(units)
}

/// Confirmations: 1 below 0.005 BTC, 2 up to 0.1 BTC, 6 from 0.1 BTC.
pub fn policy() -> Policy {
    Policy {
        confirmations: vec![
            (amount(0), 1),
            (amount(500_000), 2),
            (amount(10_000_000), 6),
        ],
        payout_confirmations: PAYOUT_CONFIRMATIONS,
        underpay_tolerance_bps: 50,
        overpay_tolerance_bps: 100,
        dust_threshold: amount(DUST),
        mismatch_decision_window_secs: WINDOW_SECS,
    }
}

pub fn terms() -> SwapTerms {
    SwapTerms {
        swap_id: swap_id(),
        quote_id: quote_id(),
        from: AssetId::new("BTC").unwrap(),
        to: AssetId::new("ETH").unwrap(),
        deposit_network: Network::Bitcoin(BitcoinNetwork::Regtest),
        payout_network: Network::Ethereum(EthereumNetwork::Dev),
        deposit_address: DEPOSIT_ADDRESS.to_owned(),
        payout_address: PAYOUT_ADDRESS.to_owned(),
        deposit_amount: amount(DEPOSIT),
        payout_amount: amount(PAYOUT),
        price: Price(dec!(2)),
        deadline: at(DEADLINE_SECS),
        policy: policy(),
    }
}

pub fn open(refund_address: Option<&str>) -> Swap {
    let (swap, actions) = Swap::open(terms(), refund_address.map(str::to_owned), at(0));
    assert!(actions.is_empty());
    swap
}

/// In block `block-a` (height 100), `depth` deep.
pub fn confirmed(depth: u64) -> TxStatus {
    confirmed_in("block-a", depth)
}

pub fn confirmed_in(block_hash: &str, depth: u64) -> TxStatus {
    TxStatus::Confirmed {
        block_height: 100,
        block_hash: block_hash.to_owned(),
        depth,
    }
}

/// Reorganised out of `block-a`, the block [`confirmed`] puts outputs in.
pub fn unconfirmed() -> TxStatus {
    TxStatus::Unconfirmed {
        block_hash: "block-a".to_owned(),
    }
}

pub fn dropped() -> TxStatus {
    TxStatus::Dropped { replaced_by: None }
}

pub fn deposit(txid: &str, units: u128, status: TxStatus) -> SwapInput {
    SwapInput::Deposit {
        txid: txid.to_owned(),
        output: 0,
        amount: amount(units),
        status,
    }
}

pub fn broadcast(payment_id: &str, txid: &str) -> SwapInput {
    SwapInput::PaymentBroadcast {
        payment_id: payment_id.to_owned(),
        txid: txid.to_owned(),
    }
}

pub fn observed(txid: &str, status: TxStatus) -> SwapInput {
    SwapInput::PaymentObserved {
        txid: txid.to_owned(),
        status,
    }
}

pub fn payout_id() -> String {
    format!("payout:{}", swap_id())
}

pub fn swap_refund_id() -> String {
    format!("refund:{}", swap_id())
}

pub fn extra_refund_id(txid: &str) -> String {
    format!("refund:{}:{txid}:0", swap_id())
}

/// Applies an input that must be accepted.
pub fn step(swap: &Swap, input: SwapInput, now: Timestamp) -> Transition {
    swap.apply(&input, now)
        .unwrap_or_else(|e| panic!("{input:?} in {}: rejected: {e}", swap.state_name()))
}

/// Applies inputs in order (each must be accepted); returns the swap and
/// every action emitted.
pub fn run(swap: &Swap, inputs: Vec<(i64, SwapInput)>) -> (Swap, Vec<Action>) {
    let mut swap = swap.clone();
    let mut actions = Vec::new();
    for (secs, input) in inputs {
        let t = step(&swap, input, at(secs));
        actions.extend(t.actions);
        swap = t.swap;
    }
    (swap, actions)
}

/// An action in a few characters: `execute(1000000)`, `pay(payout,2000000)`,
/// `pay(refund,500000)`, `pay(refund/d9:0,1000000)`, `release`.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Execute { deposit_amount, .. } => format!("execute({deposit_amount})"),
        Action::Pay(order) => {
            let id = order.payment_id.replace(&format!(":{}", swap_id()), "");
            let id = id.replacen("refund:", "refund/", 1);
            format!("pay({id},{})", order.amount)
        }
        Action::ReleaseLock { .. } => "release".to_owned(),
    }
}

pub fn describe_all(actions: &[Action]) -> String {
    if actions.is_empty() {
        "-".to_owned()
    } else {
        actions.iter().map(describe).collect::<Vec<_>>().join(" ")
    }
}
