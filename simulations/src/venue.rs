//! Simulated venue.
