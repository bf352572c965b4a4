//! Benchmark: matching a full Bitcoin block against watch lists of growing
//! size, next to the baseline every block costs anyway (decoding it from
//! the node's hex). Prints one JSON line per watch-list size.
//!
//! Run: `cargo run --release -p node-gateway --example match_bench`

use std::time::Instant;

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, WPubkeyHash, Witness,
};
use node_gateway::watch::WatchList;
use proto::{AssetId, BitcoinNetwork, Network};

const NET: Network = Network::Bitcoin(BitcoinNetwork::Regtest);
const TXS: u32 = 4_000;
const ROUNDS: u32 = 20;

fn script(i: u32) -> ScriptBuf {
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(&i.to_le_bytes());
    h[4] = 0xab;
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(h))
}

fn block() -> Block {
    let txdata = (0..TXS)
        .map(|i| Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([(i % 251) as u8; 32]),
                    vout: i,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![1u8; 72], vec![2u8; 33]]),
            }],
            // Outputs: every 400th transaction pays watched script `i`, the
            // rest pay scripts nobody watches.
            output: vec![
                TxOut {
                    value: Amount::from_sat(10_000 + u64::from(i)),
                    script_pubkey: if i % 400 == 0 {
                        script(i)
                    } else {
                        script(u32::MAX - i)
                    },
                },
                TxOut {
                    value: Amount::from_sat(5_000),
                    script_pubkey: script(u32::MAX / 2 - i),
                },
            ],
        })
        .collect();
    Block {
        header: Header {
            version: BlockVersion::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata,
    }
}

fn main() {
    let asset = AssetId::new("BTC").expect("ticker");
    let b = block();
    let hex = serialize_hex(&b);

    // Baseline: decoding the block from hex, as every connected block requires.
    let t = Instant::now();
    for _ in 0..ROUNDS {
        let d: Block = deserialize_hex(&hex).expect("round trip");
        std::hint::black_box(d);
    }
    let decode_us = t.elapsed().as_micros() as f64 / f64::from(ROUNDS);

    for size in [1_000u32, 100_000, 1_000_000] {
        let list = WatchList::new();
        let t = Instant::now();
        for i in 0..size {
            let addr = bitcoin::Address::from_script(&script(i), bitcoin::Network::Regtest)
                .expect("p2wpkh");
            list.add_address(NET, &proto::Address::Bitcoin(addr));
        }
        let insert_ns = t.elapsed().as_nanos() as f64 / f64::from(size);
        let t = Instant::now();
        let mut found = 0;
        for _ in 0..ROUNDS {
            found = list.match_bitcoin_block(NET, &b, &asset).len();
        }
        let match_us = t.elapsed().as_micros() as f64 / f64::from(ROUNDS);
        println!(
            "{{\"bench\":\"node_gateway.match_block\",\"watched\":{size},\"block_txs\":{TXS},\"matched\":{found},\"match_us\":{match_us:.0},\"baseline_decode_us\":{decode_us:.0},\"watch_insert_ns\":{insert_ns:.0}}}"
        );
    }
}
