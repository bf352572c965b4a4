//! Building and signing payment transactions.
//!
//! The payment flow (in the driver) is: persist the intent under its
//! payment id; build and sign here; persist the signed bytes and txid;
//! broadcast. After a crash the stored bytes are broadcast again, so a
//! payment id never yields two different transactions.

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, Bytes, TxKind, U256};

use crate::signer::Signer;
use crate::Eip1559Fees;

/// Gas of a plain ETH transfer to an account without code.
pub const ETH_TRANSFER_GAS: u64 = 21_000;

/// A signed transaction ready to broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub txid: String,
    pub raw: Vec<u8>,
}

/// Builds an EIP-1559 transfer of `value_wei` to `to` and has `signer`
/// sign it from the Ethereum account `account`.
pub fn sign_eth_transfer(
    signer: &dyn Signer,
    account: u32,
    chain_id: u64,
    nonce: u64,
    to: Address,
    value_wei: u128,
    fees: Eip1559Fees,
) -> Result<SignedTx, String> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: ETH_TRANSFER_GAS,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas.min(fees.max_fee_per_gas),
        to: TxKind::Call(to),
        value: U256::from(value_wei),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    signer
        .sign_eip1559(account, tx)
        .map_err(|e| format!("signing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyring;
    use crate::signer::LocalSigner;
    use alloy_consensus::TxEnvelope;
    use alloy_eips::eip2718::Decodable2718;
    use std::sync::Arc;

    #[test]
    fn signed_transfer_recovers_to_the_signer() {
        let keys = Keyring::from_mnemonic(
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
            proto::BitcoinNetwork::Regtest,
        )
        .unwrap();
        let hot = keys.eth_signer(0).unwrap().address();
        let signer = LocalSigner::new(Arc::new(keys));
        let to: Address = "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359"
            .parse()
            .unwrap();
        let fees = Eip1559Fees {
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
        };
        let signed = sign_eth_transfer(&signer, 0, 31_337, 7, to, 10u128.pow(17), fees).unwrap();
        let decoded = TxEnvelope::decode_2718(&mut signed.raw.as_slice()).unwrap();
        assert_eq!(format!("{:#x}", decoded.tx_hash()), signed.txid);
        let TxEnvelope::Eip1559(tx) = &decoded else {
            panic!("expected an EIP-1559 transaction")
        };
        assert_eq!(tx.tx().nonce, 7);
        assert_eq!(tx.tx().value, U256::from(10u128.pow(17)));
        assert_eq!(tx.tx().chain_id, 31_337);
        let from = tx.recover_signer().unwrap();
        assert_eq!(from, hot);
    }
}
