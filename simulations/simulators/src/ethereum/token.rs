//! The committed ERC-20 `TestToken` (contracts/TestToken.sol): its creation
//! code with ABI-encoded constructor arguments, and calldata and return
//! decoding for the calls the node and tests make.

use alloy_primitives::{keccak256, Address, Bytes, U256};

/// Creation bytecode compiled from contracts/TestToken.sol (hex).
const TEST_TOKEN_BIN: &str = include_str!("../../contracts/TestToken.bin");

/// An ERC-20 token to deploy (TestToken's constructor arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// `name()`.
    pub name: String,
    /// `symbol()`.
    pub symbol: String,
    /// `decimals()`.
    pub decimals: u8,
    /// Total supply in base units, all minted to the deployer.
    pub supply: U256,
}

/// A token deployed on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedToken {
    /// What was deployed.
    pub config: TokenConfig,
    /// The contract's address.
    pub address: Address,
}

/// The committed creation code is not valid hex (a broken checkout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("contracts/TestToken.bin is not valid hex: {0}")]
pub struct BadBytecode(String);

/// The 4-byte selector of a function signature.
pub fn selector(signature: &str) -> [u8; 4] {
    let h = keccak256(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

fn word_u256(v: U256) -> [u8; 32] {
    v.to_be_bytes::<32>()
}

fn word_address(a: Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a.as_slice());
    w
}

fn encode_string_tail(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&word_u256(U256::from(s.len())));
    out.extend_from_slice(s.as_bytes());
    let pad = (32 - s.len() % 32) % 32;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// TestToken's creation code followed by its ABI-encoded constructor
/// arguments `(string name, string symbol, uint8 decimals, uint256 supply)`.
pub fn creation_code(cfg: &TokenConfig) -> Result<Bytes, BadBytecode> {
    let mut code = hex::decode(TEST_TOKEN_BIN.trim()).map_err(|e| BadBytecode(e.to_string()))?;
    let name_offset = 4 * 32;
    let name_len = 32 + cfg.name.len().div_ceil(32) * 32;
    code.extend_from_slice(&word_u256(U256::from(name_offset)));
    code.extend_from_slice(&word_u256(U256::from(name_offset + name_len)));
    code.extend_from_slice(&word_u256(U256::from(cfg.decimals)));
    code.extend_from_slice(&word_u256(cfg.supply));
    encode_string_tail(&cfg.name, &mut code);
    encode_string_tail(&cfg.symbol, &mut code);
    Ok(code.into())
}

/// Calldata of `transfer(address,uint256)`.
pub fn transfer_calldata(to: Address, amount: U256) -> Bytes {
    let mut d = selector("transfer(address,uint256)").to_vec();
    d.extend_from_slice(&word_address(to));
    d.extend_from_slice(&word_u256(amount));
    d.into()
}

/// Calldata of `balanceOf(address)`.
pub fn balance_of_calldata(owner: Address) -> Bytes {
    let mut d = selector("balanceOf(address)").to_vec();
    d.extend_from_slice(&word_address(owner));
    d.into()
}

/// Calldata of a function without arguments, e.g. `symbol()`.
pub fn no_args_calldata(signature: &str) -> Bytes {
    selector(signature).to_vec().into()
}

/// Decodes a single `uint256` return value.
pub fn decode_u256(ret: &[u8]) -> Option<U256> {
    (ret.len() == 32).then(|| U256::from_be_slice(ret))
}

/// The `Transfer(address,address,uint256)` event's topic 0.
pub fn transfer_topic() -> alloy_primitives::B256 {
    keccak256("Transfer(address,address,uint256)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_erc20() {
        assert_eq!(
            selector("transfer(address,uint256)"),
            [0xa9, 0x05, 0x9c, 0xbb]
        );
        assert_eq!(selector("balanceOf(address)"), [0x70, 0xa0, 0x82, 0x31]);
    }

    #[test]
    fn constructor_arguments_are_abi_encoded() {
        let cfg = TokenConfig {
            name: "USD Coin".into(),
            symbol: "USDC".into(),
            decimals: 6,
            supply: U256::from(1000u64),
        };
        let code = creation_code(&cfg).expect("committed bytecode");
        let bin = hex::decode(TEST_TOKEN_BIN.trim()).expect("hex");
        let args = &code[bin.len()..];
        // 4 head words, then two strings of one length word and one data word.
        assert_eq!(args.len(), 8 * 32);
        assert_eq!(U256::from_be_slice(&args[..32]), U256::from(128));
        assert_eq!(U256::from_be_slice(&args[32..64]), U256::from(192));
        assert_eq!(args[95], 6);
        assert_eq!(U256::from_be_slice(&args[96..128]), U256::from(1000));
        assert_eq!(U256::from_be_slice(&args[128..160]), U256::from(8));
        assert_eq!(&args[160..168], b"USD Coin");
        assert_eq!(U256::from_be_slice(&args[192..224]), U256::from(4));
        assert_eq!(&args[224..228], b"USDC");
    }
}
