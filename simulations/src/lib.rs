//! The whole engine exercised against the simulators (`simulators`):
//! scenarios and the benchmark runner (`swap-bench`).

pub mod bench;
