//! Venue books, size-exact pricing, signed firm quotes, price locks and risk.
//!
//! The engine prices a request for quote from the aggregated books of its
//! venues, signs the answer as a firm quote, locks it for one swap (reserving
//! the inventory it will pay out) and marks it executed when the deposit is
//! in. Pricing ([`pricing`]), aggregation ([`book`]) and risk ([`risk`]) are
//! pure functions of their inputs and a time given to them; the
//! [`Liquidity`] service holds the state and the venue subscriptions.
//! Executed swaps are hedged by a [`Hedger`] attached to it: orders planned
//! and P&L computed purely ([`hedge`]), persisted ([`hedge_store`]) before
//! they are sent to a venue ([`venue::orders`]).

pub mod api;
pub mod book;
pub mod clock;
pub mod config;
pub mod error;
pub mod hedge;
pub mod hedge_store;
pub mod hedger;
pub mod locks;
pub mod pricing;
pub mod quotes;
pub mod risk;
pub mod service;
pub mod venue;

pub use api::{LiquidityApi, LockStatus, PriceLock};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AssetPolicy, LiquidityConfig};
pub use error::LiquidityError;
pub use hedge::{AssetPnl, HedgeOrder, HedgeSide, HedgeStatus};
pub use hedger::{HedgeConfig, Hedger};
pub use risk::TradingState;
/// The exact decimal of prices and sizes in books, for callers that build them.
pub use rust_decimal::Decimal;
pub use service::Liquidity;
pub use venue::{Book, Level, VenueFeed, VenueHealth, VenueStatus};
