//! Shared I/O plumbing used by every service: the database connection with
//! per-crate migrations (PostgreSQL in cluster mode, SQLite in embedded mode),
//! the event bus (Kafka, or a durable in-process log with the same semantics),
//! and the process's Prometheus metrics.

pub mod bus;
pub mod db;
pub mod metrics;
pub mod testing;
