//! `swapd`: the swap engine binary.

fn main() {}
