//! Shared I/O plumbing used by every service: the database connection with
//! per-crate migrations (PostgreSQL in cluster mode, SQLite in embedded mode),
//! and the event bus (Kafka, or a durable in-process log with the same semantics).

pub mod bus;
pub mod db;
pub mod testing;
