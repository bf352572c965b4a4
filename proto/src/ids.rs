//! Identifiers: quotes, swaps, events, partners.
//!
//! Random ids are UUIDv7 (time-ordered, so indexes stay compact); event ids
//! that must come out the same on a replay are UUIDv5 of their content.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map($name).map_err(|_| IdError {
                    what: $what,
                    input: s.to_owned(),
                })
            }
        }
    };
}

/// A string that should have been an id was not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {what} (expected a UUID)")]
pub struct IdError {
    pub what: &'static str,
    pub input: String,
}

uuid_id!(
    /// A firm quote.
    QuoteId,
    "quote id"
);
uuid_id!(
    /// A swap.
    SwapId,
    "swap id"
);
uuid_id!(
    /// An event (chain, swap or bus message). Consumers deduplicate by it.
    EventId,
    "event id"
);

/// Namespace for content-derived event ids.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1f_5c4e_2d1b_4a67_9c1e_5a8d_0b3e_7f21);

impl EventId {
    /// A deterministic id from the parts that make an event what it is, so
    /// that the same fact observed twice (a replay, a restart) gets the same
    /// id and is deduplicated downstream.
    pub fn derive(parts: &[&str]) -> EventId {
        let joined = parts.join("\u{1f}");
        EventId(Uuid::new_v5(&EVENT_NAMESPACE, joined.as_bytes()))
    }
}

/// A partner app that integrates the engine (identified by its API key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartnerId(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = EventId::derive(&["bitcoin-regtest", "block", "abc", "0", "confirmed", "1"]);
        let b = EventId::derive(&["bitcoin-regtest", "block", "abc", "0", "confirmed", "1"]);
        let c = EventId::derive(&["bitcoin-regtest", "block", "abc", "0", "confirmed", "2"]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Joining with a separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(EventId::derive(&["ab", "c"]), EventId::derive(&["a", "bc"]));
    }

    #[test]
    fn parse_errors_name_the_id() {
        let e = "nope".parse::<SwapId>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"nope\" is not a valid swap id (expected a UUID)"
        );
    }
}
