//! The swap lifecycle and its persistence.
//!
//! `machine` is pure: (state, event, now) in, new state and actions out, no I/O.
//! `store` persists swaps, their append-only events and the outbox, on
//! PostgreSQL or SQLite.

pub mod machine;
pub mod store;
