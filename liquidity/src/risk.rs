//! Risk, lean for now: whether trading is active, manual and automatic
//! halts, and the largest notional one quote may carry.

use proto::Timestamp;
use serde::{Deserialize, Serialize};

/// Whether the engine quotes and locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TradingState {
    Active,
    Halted {
        reason: String,
        since: Timestamp,
        /// Set by the desk (`halt`); only `resume` ends it. An automatic
        /// halt (all venues of a needed market stale) ends by itself when
        /// prices are fresh again.
        manual: bool,
    },
}

impl TradingState {
    pub fn is_active(&self) -> bool {
        matches!(self, TradingState::Active)
    }
}

/// The next trading state given the current one and which markets have no
/// fresh book (pure; the service calls it on every check).
pub fn next_state(
    current: &TradingState,
    stale_markets: &[String],
    now: Timestamp,
) -> TradingState {
    match current {
        TradingState::Halted { manual: true, .. } => current.clone(),
        _ if !stale_markets.is_empty() => {
            let reason = format!("every venue is stale for {}", stale_markets.join(", "));
            match current {
                TradingState::Halted {
                    reason: r, since, ..
                } if *r == reason => TradingState::Halted {
                    reason,
                    since: *since,
                    manual: false,
                },
                _ => TradingState::Halted {
                    reason,
                    since: now,
                    manual: false,
                },
            }
        }
        _ => TradingState::Active,
    }
}
