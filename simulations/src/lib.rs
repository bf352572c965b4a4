//! The whole engine exercised against the simulators (`simulators`):
//! scenarios with faults and invariant reports (`swap-sim`) and the
//! benchmark runner (`swap-bench`).

pub mod bench;
pub mod sim;
