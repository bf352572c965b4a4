//! Against the simulated bitcoind: a deposit seen in the mempool and then
//! replaced (BIP125) by a transaction spending the same input is reported
//! dropped, naming the replacement; the replacement paying nothing watched
//! is not reported.

mod common;

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount as Sats, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Witness,
};
use common::*;
use proto::event::TxStatus;

/// A one-input transaction spending `prev` (owned by `sk`) to `outputs`, signed.
fn spend(
    sk: &SecretKey,
    prev: OutPoint,
    value: Sats,
    outputs: Vec<TxOut>,
) -> anyhow::Result<Transaction> {
    let secp = Secp256k1::new();
    let pk = CompressedPublicKey(sk.public_key(&secp));
    let spk = ScriptBuf::new_p2wpkh(&pk.wpubkey_hash());
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs,
    };
    let mut cache = SighashCache::new(&mut tx);
    let sighash = cache.p2wpkh_signature_hash(0, &spk, value, EcdsaSighashType::All)?;
    let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), sk);
    let sig = bitcoin::ecdsa::Signature {
        signature: sig,
        sighash_type: EcdsaSighashType::All,
    };
    *cache.witness_mut(0).expect("one input") = Witness::p2wpkh(&sig, &pk.0);
    Ok(tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_deposit_is_dropped_naming_its_replacement() -> anyhow::Result<()> {
    a_replaced_deposit_is_dropped_naming_its_replacement_on(Bus::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_deposit_is_dropped_naming_its_replacement_on_kafka() -> anyhow::Result<()> {
    a_replaced_deposit_is_dropped_naming_its_replacement_on(Bus::Kafka).await
}

async fn a_replaced_deposit_is_dropped_naming_its_replacement_on(bus: Bus) -> anyhow::Result<()> {
    let env = env_on(bus).await?;
    let mut events = Events::open(&env.bus, "test").await?;
    let (gw, stop) = start_gateway(&env, 3).await?;
    let rpc = gw.bitcoin_rpc().expect("bitcoin configured");

    // Coins of our own key, confirmed.
    let sk = SecretKey::from_slice(&[7u8; 32])?;
    let pk = CompressedPublicKey(sk.public_key(&Secp256k1::new()));
    let mine = bitcoin::Address::p2wpkh(&pk, bitcoin::Network::Regtest);
    let funding = env
        .sim
        .send_to_address(&mine, Sats::from_sat(100_000_000))
        .await?;
    let ftx = rpc
        .get_raw_transaction(&funding)
        .await?
        .expect("in mempool");
    let vout = ftx
        .output
        .iter()
        .position(|o| o.script_pubkey == mine.script_pubkey())
        .expect("pays us") as u32;
    env.sim.mine(1, None).await?;
    let prev = OutPoint {
        txid: funding,
        vout,
    };
    let value = Sats::from_sat(100_000_000);

    // The deposit: half to the watched address, change back, a low fee.
    let deposit_addr = env.sim.new_address().await?;
    gw.watch_address(NET, &deposit_addr.to_string()).await?;
    let deposit = spend(
        &sk,
        prev,
        value,
        vec![
            TxOut {
                value: Sats::from_sat(50_000_000),
                script_pubkey: deposit_addr.script_pubkey(),
            },
            TxOut {
                value: Sats::from_sat(49_990_000),
                script_pubkey: mine.script_pubkey(),
            },
        ],
    )?;
    let deposit_id = gw.broadcast(NET, &serialize(&deposit)).await?;
    assert_eq!(deposit_id, deposit.compute_txid().to_string());
    events
        .wait("deposit seen", |e| {
            matches!(output_status(e, &deposit_id), Some(TxStatus::Seen))
        })
        .await?;

    // The sender takes it back with a higher fee.
    let replacement = spend(
        &sk,
        prev,
        value,
        vec![TxOut {
            value: Sats::from_sat(99_900_000),
            script_pubkey: mine.script_pubkey(),
        }],
    )?;
    let replacement_id = gw.broadcast(NET, &serialize(&replacement)).await?;
    let dropped = events
        .wait("deposit dropped", |e| {
            matches!(
                output_status(e, &deposit_id),
                Some(TxStatus::Dropped { .. })
            )
        })
        .await?;
    assert_eq!(
        output_status(&dropped, &deposit_id),
        Some(&TxStatus::Dropped {
            replaced_by: Some(replacement_id.clone())
        })
    );

    // A replacement with a lower fee than the one it would replace is refused.
    let cheap = spend(
        &sk,
        prev,
        value,
        vec![TxOut {
            value: Sats::from_sat(99_950_000),
            script_pubkey: mine.script_pubkey(),
        }],
    )?;
    let err = gw.broadcast(NET, &serialize(&cheap)).await.unwrap_err();
    assert!(
        matches!(err, node_gateway::BroadcastError::FeeTooLow(_)),
        "{err:?}"
    );

    // Mined, nothing more is said about the dropped deposit.
    env.sim.mine(1, None).await?;
    let tip = env.sim.tip().await.1.to_string();
    events
        .wait("block connected", |e| is_connected(e, &tip))
        .await?;
    events.drain(std::time::Duration::from_millis(200)).await?;
    assert_eq!(
        events.output_statuses(&deposit_id),
        vec![
            TxStatus::Seen,
            TxStatus::Dropped {
                replaced_by: Some(replacement_id)
            }
        ]
    );
    stop.cancel();
    gw.stopped().await;
    Ok(())
}
