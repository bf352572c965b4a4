//! The unsigned EIP-1559 deposit transaction a hardware wallet signs: filled
//! from the node (chain id, pending nonce, estimated gas, fees), signed by a
//! key that knows nothing of the engine from the signing hash alone,
//! assembled from the JSON fields as a wallet would, checked to pay the
//! deposit, relayed, and mined with the exact amount arriving.

use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use gateway::DepositChains;
use proto::api::DepositInstructions;
use proto::{Amount, AssetId, EthereumNetwork, Network};
use swapd::adapters::RelayChains;

fn quantity(s: &str) -> u128 {
    u128::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test]
async fn a_hardware_wallet_signs_the_unsigned_eth_deposit_and_the_relay_broadcasts_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let network = Network::Ethereum(EthereumNetwork::Dev);
    let user = PrivateKeySigner::random();
    engine
        .ethereum
        .fund(user.address(), U256::from(10u128.pow(18)))
        .await
        .unwrap();
    let deposit_address = PrivateKeySigner::random().address();
    let amount = Amount::from_base_units(12_345_678_900_000_000);
    let deposit = DepositInstructions {
        network,
        asset: AssetId::new("ETH").unwrap(),
        address: deposit_address.to_checksum(None),
        amount: amount.to_decimal_string(18),
        amount_base_units: amount,
        deadline: chrono::Utc::now(),
        payment_uri: String::new(),
        required_confirmations: 1,
    };
    let chains = RelayChains(engine.nodes.clone());
    let (to, value, data) = gateway::signing::eth_deposit_call(&deposit, None).unwrap();
    let params = chains
        .ethereum_params(network, user.address(), to, value, data)
        .await
        .unwrap();
    let unsigned =
        gateway::signing::eth_deposit_tx(&deposit, None, user.address(), params).unwrap();
    assert_eq!(unsigned.tx_type, "0x2");
    assert_eq!(
        quantity(&unsigned.chain_id),
        u128::from(EthereumNetwork::Dev.chain_id())
    );
    assert_eq!(quantity(&unsigned.nonce), 0);
    assert_eq!(quantity(&unsigned.gas), 21_000);
    assert_eq!(quantity(&unsigned.value), amount.base_units());

    // The wallet rebuilds the transaction from the fields it shows the user
    // and checks the hash it is asked to sign.
    let tx = TxEip1559 {
        chain_id: quantity(&unsigned.chain_id) as u64,
        nonce: quantity(&unsigned.nonce) as u64,
        gas_limit: quantity(&unsigned.gas) as u64,
        max_fee_per_gas: quantity(&unsigned.max_fee_per_gas),
        max_priority_fee_per_gas: quantity(&unsigned.max_priority_fee_per_gas),
        to: TxKind::Call(unsigned.to.parse::<Address>().unwrap()),
        value: U256::from(quantity(&unsigned.value)),
        access_list: Default::default(),
        input: unsigned.data.parse::<Bytes>().unwrap(),
    };
    let mut payload = Vec::new();
    tx.encode_for_signing(&mut payload);
    assert_eq!(
        format!("0x{}", hex::encode(&payload)),
        unsigned.unsigned_payload
    );
    assert_eq!(format!("{:#x}", tx.signature_hash()), unsigned.signing_hash);
    let signature = user.sign_hash_sync(&tx.signature_hash()).unwrap();
    let raw = tx.into_signed(signature).encoded_2718();

    // Relayed only because it pays the deposit.
    gateway::signing::check_relay(&deposit, None, &raw).unwrap();
    let other = DepositInstructions {
        address: PrivateKeySigner::random().address().to_checksum(None),
        ..deposit.clone()
    };
    assert!(gateway::signing::check_relay(&other, None, &raw).is_err());
    let txid = chains.relay(network, &raw).await.unwrap();
    assert_eq!(txid, format!("{:#x}", alloy_primitives::keccak256(&raw)));
    // Relaying again is not an error.
    assert_eq!(chains.relay(network, &raw).await.unwrap(), txid);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if engine.ethereum.balance(deposit_address).await == U256::from(amount.base_units()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "deposit not mined");
        engine.ethereum.mine(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.stop().await;
}
