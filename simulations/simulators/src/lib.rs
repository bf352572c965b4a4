//! The simulated outside world the engine talks to: a bitcoind-compatible
//! regtest node, an Ethereum JSON-RPC node and an exchange venue.
//!
//! The engine's embedded mode runs on these, and the service crates' tests
//! use them; the scenario and benchmark runners in `simulations` drive the
//! whole engine against them.

pub mod bitcoin;
pub mod ethereum;
pub mod venue;
