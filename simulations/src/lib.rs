//! Simulated chains, venues and users, deterministic scenarios, and the
//! benchmark runner (`swap-bench`).

pub mod bench;
pub mod bitcoin;
pub mod ethereum;
pub mod venue;
