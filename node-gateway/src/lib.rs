//! Chain nodes (Bitcoin Core JSON-RPC, Ethereum JSON-RPC) to chain events; broadcast.
