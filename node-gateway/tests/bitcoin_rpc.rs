//! The typed Bitcoin Core client against the simulated bitcoind: chain
//! reads, blocks and transactions decoded from hex, batches, fee estimates,
//! unspent outputs, and broadcast rejections mapped to their kinds.

mod common;

use std::str::FromStr;

use bitcoin::consensus::encode::serialize;
use bitcoin::Amount as Sats;
use common::*;
use node_gateway::{BitcoinRpc, BroadcastError, RpcError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_and_broadcast_errors() -> anyhow::Result<()> {
    let env = env().await?;
    let rpc = BitcoinRpc::new(&env.sim.rpc_url(), Some(USER), Some(PASSWORD))?;

    let info = rpc.get_blockchain_info().await?;
    assert_eq!(info.chain, "regtest");
    let (height, tip) = env.sim.tip().await;
    assert_eq!(info.blocks, u64::from(height));
    assert_eq!(rpc.get_block_count().await?, u64::from(height));
    assert_eq!(rpc.get_best_block_hash().await?, tip);
    assert_eq!(rpc.get_block_hash(u64::from(height)).await?, Some(tip));
    assert_eq!(
        rpc.get_block_hash(u64::from(height) + 1).await?,
        None,
        "above the tip"
    );

    let block = rpc.get_block(&tip).await?.expect("tip block");
    assert_eq!(block.block_hash(), tip);
    assert_eq!(rpc.get_block_header(&tip).await?.block_hash(), tip);
    let hi = rpc.get_block_header_info(&tip).await?;
    assert_eq!((hi.height, hi.confirmations), (u64::from(height), 1));
    let unknown = bitcoin::BlockHash::from_str(&"11".repeat(32))?;
    assert!(rpc.get_block(&unknown).await?.is_none());

    // A payment in the mempool, fetched singly and in a batch.
    let addr = env.sim.new_address().await?;
    let txid = env
        .sim
        .send_to_address(&addr, Sats::from_sat(7_000_000))
        .await?;
    assert!(rpc.get_raw_mempool().await?.contains(&txid));
    let tx = rpc.get_raw_transaction(&txid).await?.expect("in mempool");
    assert_eq!(tx.compute_txid(), txid);
    let missing = bitcoin::Txid::from_str(&"22".repeat(32))?;
    let both = rpc.get_raw_transactions(&[txid, missing]).await?;
    assert_eq!(both.len(), 2);
    assert_eq!(both[0].as_ref().map(|t| t.compute_txid()), Some(txid));
    assert!(both[1].is_none());
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == addr.script_pubkey())
        .expect("pays the address") as u32;
    let out = rpc.get_tx_out(&txid, vout, true).await?.expect("unspent");
    assert_eq!((out.value_sats, out.confirmations), (7_000_000, 0));

    // Mined: the output is confirmed, and sending it again is "already known".
    let mined = rpc.generate_to_address(1, &addr).await?;
    assert_eq!(mined.len(), 1);
    let out = rpc.get_tx_out(&txid, vout, false).await?.expect("unspent");
    assert_eq!(out.confirmations, 1);
    let again = rpc.send_raw_transaction(&tx).await.unwrap_err();
    assert!(
        matches!(&again, RpcError::Broadcast(e) if e.is_already_known()),
        "{again:?}"
    );

    // A transaction spending nothing that exists.
    let mut orphan = tx.clone();
    orphan.input[0].previous_output.txid = missing;
    let err = rpc.send_raw_transaction(&orphan).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Broadcast(BroadcastError::MissingInputs(_))),
        "{err:?}"
    );
    let err = rpc.send_raw_transaction_hex("00").await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Broadcast(BroadcastError::Malformed(_))),
        "{err:?}"
    );

    let fee = rpc.estimate_smart_fee(6).await?;
    assert!(
        fee.sat_per_kvb.is_some() || !fee.errors.is_empty(),
        "{fee:?}"
    );

    // Through the handle: the same classification, and the txid as events spell it.
    let (gw, stop) = start_gateway(&env, 3).await?;
    let err = gw.broadcast(NET, &serialize(&tx)).await.unwrap_err();
    assert!(err.is_already_known(), "{err:?}");
    let fresh = env.sim.new_address().await?;
    let pay = env
        .sim
        .send_to_address(&fresh, Sats::from_sat(1_000))
        .await?;
    let pay_tx = rpc.get_raw_transaction(&pay).await?.expect("in mempool");
    // The node already has it; the handle says so rather than failing.
    let r = gw.broadcast(NET, &serialize(&pay_tx)).await;
    assert!(
        r.as_ref().is_ok_and(|t| *t == pay.to_string())
            || r.as_ref().is_err_and(|e| e.is_already_known()),
        "{r:?}"
    );
    let other = proto::Network::Bitcoin(proto::BitcoinNetwork::Mainnet);
    assert!(matches!(
        gw.broadcast(other, &[0]).await,
        Err(BroadcastError::NoNode(_))
    ));
    assert!(gw
        .watch_address(other, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
        .await
        .is_err());
    assert!(gw.watch_tx(NET, "not-a-txid").await.is_err());
    stop.cancel();
    gw.stopped().await;

    // Wrong credentials are told apart from other failures.
    let bad = BitcoinRpc::new(&env.sim.rpc_url(), Some(USER), Some("wrong"))?;
    assert!(matches!(
        bad.get_block_count().await,
        Err(RpcError::Unauthorized { .. })
    ));
    Ok(())
}
