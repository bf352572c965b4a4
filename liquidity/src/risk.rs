//! Risk: whether trading is active, reducing (an exposure beyond its
//! limit: only quotes that bring it back) or halted (by the desk, or by
//! itself when a needed market's venues are all stale). Pure.

use std::collections::BTreeMap;

use proto::{AssetId, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::AssetPolicy;
use crate::pricing::Exposure;

/// Whether the engine quotes and locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TradingState {
    Active,
    /// An exposure is beyond its limit: only quotes that reduce it are
    /// given. Ends by itself when every exposure is back within its limit.
    Reducing {
        reason: String,
        since: Timestamp,
    },
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

/// The assets whose exposure is beyond their `max_exposure`, described.
pub fn exposure_breaches(
    policies: &BTreeMap<AssetId, AssetPolicy>,
    exposure: &Exposure,
) -> Vec<String> {
    policies
        .iter()
        .filter_map(|(asset, p)| {
            let limit = p.max_exposure?;
            let e = exposure.get(asset).copied().unwrap_or_default();
            (e.abs() > limit).then(|| format!("{asset} exposure {e} beyond {limit}"))
        })
        .collect()
}

/// Whether a swap taking in `amount_in` of `from` and paying `amount_out`
/// of `to` may be quoted while `Reducing`: it grows no exposure beyond its
/// limit (an exposure already beyond may only shrink) and shrinks at least
/// one that is beyond.
pub fn reduces_exposure(
    policies: &BTreeMap<AssetId, AssetPolicy>,
    exposure: &Exposure,
    moves: [(&AssetId, Decimal); 2],
) -> bool {
    let mut shrinks_a_breach = false;
    for (asset, delta) in moves {
        let Some(limit) = policies.get(asset).and_then(|p| p.max_exposure) else {
            continue;
        };
        let before = exposure.get(asset).copied().unwrap_or_default();
        let after = before + delta;
        // Beyond the limit after, unless a breach that only shrank.
        let flipped = after.is_sign_negative() != before.is_sign_negative() && !after.is_zero();
        if after.abs() > limit && (after.abs() >= before.abs() || flipped) {
            return false;
        }
        if before.abs() > limit && after.abs() < before.abs() {
            shrinks_a_breach = true;
        }
    }
    shrinks_a_breach
}

/// The next trading state given the current one, which markets have no
/// fresh book and which exposures are beyond their limits (pure; the
/// service calls it on every check and after every execution). Stale
/// markets halt, breaches reduce; a manual halt stays until resumed.
pub fn next_state(
    current: &TradingState,
    stale_markets: &[String],
    breaches: &[String],
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
        _ if !breaches.is_empty() => {
            let reason = breaches.join("; ");
            match current {
                TradingState::Reducing { since, .. } => TradingState::Reducing {
                    reason,
                    since: *since,
                },
                _ => TradingState::Reducing { reason, since: now },
            }
        }
        _ => TradingState::Active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Amount;
    use rust_decimal_macros::dec;

    fn id(s: &str) -> AssetId {
        AssetId::new(s).unwrap()
    }

    fn policies() -> BTreeMap<AssetId, AssetPolicy> {
        let p = |limit: Option<Decimal>| AssetPolicy {
            min_amount: dec!(0),
            max_amount: dec!(100),
            network_fee: Amount::ZERO,
            inventory: Amount::ZERO,
            skew_bps_per_unit: dec!(0),
            ladder: vec![],
            max_exposure: limit,
        };
        BTreeMap::from([
            (id("BTC"), p(Some(dec!(10)))),
            (id("ETH"), p(Some(dec!(100)))),
            (id("USDC"), p(None)),
        ])
    }

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    #[test]
    fn breaches_reduce_stale_markets_halt_and_manual_halts_stay() {
        let ok = Exposure::from([(id("BTC"), dec!(-10)), (id("USDC"), dec!(1e9))]);
        assert!(exposure_breaches(&policies(), &ok).is_empty());
        let over = Exposure::from([(id("BTC"), dec!(-10.5))]);
        let b = exposure_breaches(&policies(), &over);
        assert_eq!(b, vec!["BTC exposure -10.5 beyond 10".to_string()]);

        let reducing = next_state(&TradingState::Active, &[], &b, t(0));
        assert_eq!(
            reducing,
            TradingState::Reducing {
                reason: b[0].clone(),
                since: t(0)
            }
        );
        // Still reducing later: the same since.
        assert!(
            matches!(next_state(&reducing, &[], &b, t(5)), TradingState::Reducing { since, .. } if since == t(0))
        );
        assert_eq!(next_state(&reducing, &[], &[], t(6)), TradingState::Active);
        let stale = vec!["BTC/USD".to_string()];
        assert!(matches!(
            next_state(&reducing, &stale, &b, t(7)),
            TradingState::Halted { manual: false, .. }
        ));
        let manual = TradingState::Halted {
            reason: "desk".into(),
            since: t(1),
            manual: true,
        };
        assert_eq!(next_state(&manual, &[], &b, t(8)), manual);
    }

    #[test]
    fn while_reducing_only_swaps_that_shrink_a_breach_are_quoted() {
        let ps = policies();
        // Short 12 BTC (limit 10), ETH at 95 (limit 100).
        let e = Exposure::from([(id("BTC"), dec!(-12)), (id("ETH"), dec!(95))]);
        let (btc, eth, usdc) = (id("BTC"), id("ETH"), id("USDC"));
        let cases = [
            // Taking BTC in, paying ETH out: shrinks the BTC breach.
            ([(&btc, dec!(1)), (&eth, dec!(-30))], true),
            // Paying BTC out: grows it.
            ([(&eth, dec!(3)), (&btc, dec!(-0.1))], false),
            // Shrinks BTC but takes ETH beyond its limit.
            ([(&btc, dec!(1)), (&eth, dec!(6))], false),
            // Shrinks BTC past zero to within its limit on the other side.
            ([(&btc, dec!(20)), (&usdc, dec!(-1e6))], true),
            // ... but not beyond it.
            ([(&btc, dec!(23)), (&usdc, dec!(-1e6))], false),
            // Touches no breach.
            ([(&eth, dec!(1)), (&usdc, dec!(-10))], false),
        ];
        for (moves, want) in cases {
            assert_eq!(reduces_exposure(&ps, &e, moves), want, "{moves:?}");
        }
    }
}
