//! Domain types, API messages and event envelopes of the swap engine (pure, no I/O).
