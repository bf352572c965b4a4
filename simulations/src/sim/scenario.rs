//! The scenarios a simulated user can play, and how `mixed` draws them.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// What one simulated user does (or what the world does around its swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Quote, accept, pay exactly, wait for the payout.
    Happy,
    /// Asks for a quote and never accepts it.
    AbandonedQuote,
    /// Accepts and never pays: the swap expires.
    AbandonedSwap,
    /// Pays only after the swap expired: the deposit must be refunded.
    LateDeposit,
    /// Pays 10% short: amount mismatch, then a refund.
    Underpay,
    /// Pays 0.3% short (inside the tolerance): paid the quoted amount.
    UnderpayTolerated,
    /// Pays 10% over: amount mismatch, then a refund.
    Overpay,
    /// Pays 2% over (inside the tolerance): paid the quoted amount.
    OverpayTolerated,
    /// Pays in two transactions that add up to the amount.
    SeveralDeposits,
    /// A stranger sends dust to the new deposit address; the user pays.
    Dust,
    /// Pays with a low fee, then replaces the deposit (BIP125) with a higher fee.
    Rbf,
    /// Signs the deposit from its own key, then double-spends it back to itself.
    DoubleSpend,
    /// Hardware wallet: asks the engine for a PSBT, signs it, has it relayed.
    HardwareWallet,
    /// The market jumps 20-50% before the quote.
    MarketJump,
    /// The venue goes down for three steps; quotes are refused meanwhile.
    VenueOutage,
    /// The block holding the deposit is reorganised away (depth 1 to 6).
    Reorg,
    /// The mempool fills with high-fee transactions around the deposit.
    FeeSpike,
    /// No blocks for four steps after the deposit.
    StalledNode,
}

impl Scenario {
    pub const ALL: [Scenario; 18] = [
        Scenario::Happy,
        Scenario::AbandonedQuote,
        Scenario::AbandonedSwap,
        Scenario::LateDeposit,
        Scenario::Underpay,
        Scenario::UnderpayTolerated,
        Scenario::Overpay,
        Scenario::OverpayTolerated,
        Scenario::SeveralDeposits,
        Scenario::Dust,
        Scenario::Rbf,
        Scenario::DoubleSpend,
        Scenario::HardwareWallet,
        Scenario::MarketJump,
        Scenario::VenueOutage,
        Scenario::Reorg,
        Scenario::FeeSpike,
        Scenario::StalledNode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Happy => "happy",
            Scenario::AbandonedQuote => "abandoned-quote",
            Scenario::AbandonedSwap => "abandoned-swap",
            Scenario::LateDeposit => "late-deposit",
            Scenario::Underpay => "underpay",
            Scenario::UnderpayTolerated => "underpay-tolerated",
            Scenario::Overpay => "overpay",
            Scenario::OverpayTolerated => "overpay-tolerated",
            Scenario::SeveralDeposits => "several-deposits",
            Scenario::Dust => "dust",
            Scenario::Rbf => "rbf",
            Scenario::DoubleSpend => "double-spend",
            Scenario::HardwareWallet => "hardware-wallet",
            Scenario::MarketJump => "market-jump",
            Scenario::VenueOutage => "venue-outage",
            Scenario::Reorg => "reorg",
            Scenario::FeeSpike => "fee-spike",
            Scenario::StalledNode => "stalled-node",
        }
    }

    /// Whether the engine must pay a Bitcoin refund for this scenario to end.
    pub fn needs_btc_refund(self) -> bool {
        matches!(
            self,
            Scenario::LateDeposit | Scenario::Underpay | Scenario::Overpay
        )
    }

    /// Whether the scenario moves the simulated venue (embedded engine only).
    pub fn needs_venue(self) -> bool {
        matches!(self, Scenario::MarketJump | Scenario::VenueOutage)
    }

    /// Relative weight in `mixed`: mostly ordinary swaps, every fault often
    /// enough to show up in a few hundred swaps, and the chain-wide faults
    /// (which touch everyone's swaps) rarer.
    fn weight(self) -> u32 {
        match self {
            Scenario::Happy => 40,
            Scenario::Reorg | Scenario::StalledNode | Scenario::VenueOutage => 1,
            Scenario::FeeSpike | Scenario::MarketJump => 2,
            _ => 4,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--scenario`: one scenario, or `mixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioChoice {
    One(Scenario),
    Mixed,
}

impl FromStr for ScenarioChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "mixed" {
            return Ok(ScenarioChoice::Mixed);
        }
        Scenario::ALL
            .iter()
            .find(|sc| sc.name() == s)
            .map(|sc| ScenarioChoice::One(*sc))
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {s:?}; one of: mixed, {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for ScenarioChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioChoice::One(s) => s.fmt(f),
            ScenarioChoice::Mixed => f.write_str("mixed"),
        }
    }
}

/// Draws a scenario for `mixed` among `allowed`, by weight.
pub fn draw(rng: &mut impl Rng, allowed: &[Scenario]) -> Scenario {
    let total: u32 = allowed.iter().map(|s| s.weight()).sum();
    let mut x = rng.gen_range(0..total.max(1));
    for s in allowed {
        if x < s.weight() {
            return *s;
        }
        x -= s.weight();
    }
    Scenario::Happy
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(
                s.name().parse::<ScenarioChoice>(),
                Ok(ScenarioChoice::One(s))
            );
        }
        assert_eq!("mixed".parse::<ScenarioChoice>(), Ok(ScenarioChoice::Mixed));
        assert!("nope"
            .parse::<ScenarioChoice>()
            .unwrap_err()
            .contains("happy"));
    }

    #[test]
    fn mixed_draws_every_allowed_scenario_and_nothing_else() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let allowed: Vec<Scenario> = Scenario::ALL
            .into_iter()
            .filter(|s| !s.needs_btc_refund())
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            seen.insert(draw(&mut rng, &allowed));
        }
        assert_eq!(seen.len(), allowed.len());
        assert!(seen.iter().all(|s| !s.needs_btc_refund()));
    }
}
