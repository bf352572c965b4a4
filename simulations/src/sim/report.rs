//! The simulation's report: deterministic JSON (no ids, no wall-clock
//! values: the same seed gives the same bytes) and the invariants checked.

use std::collections::BTreeMap;

use serde::Serialize;

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Invariant {
    pub name: &'static str,
    pub holds: bool,
    /// What was checked, or what broke (users by index).
    pub detail: String,
}

/// Distribution of a latency in simulated steps (one step = one block).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StepStats {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub max: u64,
}

impl StepStats {
    pub fn of(mut v: Vec<u64>) -> Self {
        v.sort_unstable();
        let at = |q: usize| {
            v.get((v.len().saturating_sub(1)) * q / 100)
                .copied()
                .unwrap_or(0)
        };
        StepStats {
            count: v.len(),
            p50: at(50),
            p90: at(90),
            max: v.last().copied().unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Deposits {
    /// Deposits users (and strangers) sent to deposit addresses.
    pub sent: usize,
    /// Final disposition per deposit, as the engine reports it.
    pub by_disposition: BTreeMap<String, usize>,
    /// Deposits on chain the engine does not account for (user index: txid role).
    pub unaccounted: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Payouts {
    /// Completed swaps whose payout address was read on chain.
    pub checked_on_chain: usize,
    /// Swaps whose payout address holds anything but exactly one payout.
    pub wrong: Vec<String>,
    /// Payouts seen before the deposit had its confirmations.
    pub early: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ledger {
    /// `reconciled`, `not_reconciled`, or `not_available`.
    pub status: String,
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Pnl {
    pub btc_received: String,
    pub eth_paid: String,
    pub eth_gas: String,
    /// At the venue's mid prices when each swap was quoted.
    pub usd: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub scenario: String,
    pub swaps: usize,
    pub mode: &'static str,
    pub chaos_kills: u32,
    /// Scenarios left out of `mixed`, and why.
    pub skipped: BTreeMap<String, String>,
    pub users_by_scenario: BTreeMap<String, usize>,
    /// Final swap status per scenario (`no_swap` when none was opened).
    pub final_states: BTreeMap<String, BTreeMap<String, usize>>,
    pub final_states_total: BTreeMap<String, usize>,
    /// RFQs refused, by error code.
    pub rfq_refusals: BTreeMap<String, usize>,
    pub deposits: Deposits,
    pub payouts: Payouts,
    pub ledger: Ledger,
    /// Steps from the deposit's broadcast to the payout's confirmation.
    pub latency_deposit_to_payout_steps: StepStats,
    pub pnl: Pnl,
    /// Digest (SHA-256) of the event log: every user action and world
    /// event in order.
    pub events: usize,
    pub events_sha256: String,
    pub invariants: Vec<Invariant>,
    /// What the engine did that it should not have, in words.
    pub findings: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.invariants.iter().all(|i| i.holds)
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "swap-sim seed {} scenario {} swaps {} ({}, {} chaos kills): {} events\n",
            self.seed, self.scenario, self.swaps, self.mode, self.chaos_kills, self.events
        );
        s += &format!("  final states: {:?}\n", self.final_states_total);
        s += &format!(
            "  deposits: {} sent, {:?}\n",
            self.deposits.sent, self.deposits.by_disposition
        );
        s += &format!(
            "  payouts checked on chain: {}; deposit->payout steps p50 {} p90 {} max {}\n",
            self.payouts.checked_on_chain,
            self.latency_deposit_to_payout_steps.p50,
            self.latency_deposit_to_payout_steps.p90,
            self.latency_deposit_to_payout_steps.max
        );
        s += &format!(
            "  P&L: received {} BTC, paid {} ETH + {} ETH gas = {} USD\n",
            self.pnl.btc_received, self.pnl.eth_paid, self.pnl.eth_gas, self.pnl.usd
        );
        s += &format!("  ledger: {} ({})\n", self.ledger.status, self.ledger.note);
        if !self.skipped.is_empty() {
            s += &format!("  skipped: {:?}\n", self.skipped);
        }
        for i in &self.invariants {
            s += &format!(
                "  [{}] {}: {}\n",
                if i.holds { "ok" } else { "BROKEN" },
                i.name,
                i.detail
            );
        }
        for f in &self.findings {
            s += &format!("  finding: {f}\n");
        }
        s
    }
}
