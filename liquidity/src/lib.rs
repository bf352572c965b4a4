//! Venue books, size-exact pricing, signed firm quotes, price locks and risk.
