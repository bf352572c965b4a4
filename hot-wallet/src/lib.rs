//! Keys, deposit addresses, deposit matching, swap driving and payouts.
