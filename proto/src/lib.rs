//! Domain types, API messages and event envelopes of the swap engine.
//!
//! Pure: no I/O, no clocks. Money is [`Amount`] (integer base units) or
//! [`Price`] (exact decimal); never a float.

pub mod address;
pub mod amount;
pub mod api;
pub mod asset;
pub mod chain;
pub mod event;
pub mod ids;
pub mod uri;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError};
pub use asset::{AssetId, AssetKind, AssetSpec, Assets, Pair, Price};
pub use chain::{BitcoinNetwork, Chain, EthereumNetwork, Network};
pub use ids::{EventId, PartnerId, QuoteId, SwapId};

/// Wall-clock time in UTC. Services get it from a clock they are given;
/// pure code takes it as an argument.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
