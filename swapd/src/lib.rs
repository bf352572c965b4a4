//! The swap engine composed: embedded mode, the in-process wiring between
//! services, and the demo client. The binary (`main.rs`) only parses
//! arguments and calls in here.

pub mod adapters;
pub mod demo;
pub mod embedded;
pub mod liquidity;
