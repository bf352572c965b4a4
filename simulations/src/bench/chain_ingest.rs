//! `chain-ingest`: what the node gateway does with every connected Bitcoin
//! block — decode the node's `getblock <hash> 0` hex with the `bitcoin`
//! crate, then match every output against the watch list (1,000,000 watched
//! scripts) and every transaction against the watched payout txids — against
//! plain decoding of the same hex, in the same run.
//!
//! The block is generated from a fixed seed to look like a full mainnet
//! block: about 4,000 transactions, 1–3 inputs (P2WPKH and taproot
//! witnesses, some legacy scriptSigs) and 1–3 outputs (P2WPKH, P2TR, P2PKH,
//! P2SH) each, about 1.6 MB. A few dozen outputs pay watched scripts and a
//! few transactions are watched payouts, as on a busy engine.
//!
//! Decode and decode-plus-match alternate for `rounds` rounds of `duration`
//! each, so machine drift hits both alike.

use std::time::{Duration, Instant};

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, PubkeyHash, ScriptBuf, ScriptHash, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, WPubkeyHash, Witness,
};
use node_gateway::watch::WatchList;
use proto::{AssetId, BitcoinNetwork, Network};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::json;

use super::{BenchConfig, BenchError, Measurement};

const NET: Network = Network::Bitcoin(BitcoinNetwork::Regtest);
const BLOCK_TXS: usize = 4_000;
const WATCHED_SCRIPTS: usize = 1_000_000;
/// Outputs in the block that pay a watched script.
const MATCHING_OUTPUTS: usize = 40;
/// Watched payout txids that are not in the block (pending elsewhere).
const WATCHED_TXIDS: usize = 1_000;
/// Watched payout txids that are in the block.
const MATCHING_TXIDS: usize = 8;
const SEED: u64 = 0x0c4a_1e57;

/// A watched script: P2WPKH or P2TR from a counter, so the set is cheap to
/// build and never collides with the block's random scripts.
fn watched_script(i: usize) -> ScriptBuf {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&(i as u64).to_le_bytes());
    h[8..12].copy_from_slice(b"watc");
    if i.is_multiple_of(4) {
        // Any 32 bytes are a valid P2TR output key for the script form.
        let mut script = vec![0x51, 0x20];
        script.extend_from_slice(&h);
        ScriptBuf::from_bytes(script)
    } else {
        let mut p = [0u8; 20];
        p.copy_from_slice(&h[..20]);
        ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(p))
    }
}

fn random_script(rng: &mut StdRng) -> ScriptBuf {
    let mut h = [0u8; 32];
    rng.fill_bytes(&mut h);
    let mut h20 = [0u8; 20];
    h20.copy_from_slice(&h[..20]);
    match rng.gen_range(0..100) {
        0..=59 => ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(h20)),
        60..=84 => {
            let mut script = vec![0x51, 0x20];
            script.extend_from_slice(&h);
            ScriptBuf::from_bytes(script)
        }
        85..=94 => ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(h20)),
        _ => ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(h20)),
    }
}

fn random_input(rng: &mut StdRng) -> TxIn {
    let mut txid = [0u8; 32];
    rng.fill_bytes(&mut txid);
    let mut bytes = |n: usize| {
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    };
    let (script_sig, witness) = match bytes(1)[0] % 10 {
        // P2WPKH: DER signature and compressed key.
        0..=5 => (
            ScriptBuf::new(),
            Witness::from_slice(&[bytes(72), bytes(33)]),
        ),
        // Taproot key path: one Schnorr signature.
        6..=8 => (ScriptBuf::new(), Witness::from_slice(&[bytes(64)])),
        // Legacy P2PKH: signature and key pushed in the scriptSig.
        _ => {
            let mut s = vec![72u8];
            s.extend(bytes(72));
            s.push(33);
            s.extend(bytes(33));
            (ScriptBuf::from_bytes(s), Witness::new())
        }
    };
    TxIn {
        previous_output: OutPoint {
            txid: Txid::from_byte_array(txid),
            vout: rng.gen_range(0..4),
        },
        script_sig,
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness,
    }
}

/// The generated block and the transactions in it that the watch list
/// follows (the engine's payouts).
fn generate_block() -> (Block, Vec<Transaction>) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut txdata: Vec<Transaction> = (0..BLOCK_TXS)
        .map(|_| {
            let inputs = rng.gen_range(1..=3);
            let outputs = rng.gen_range(1..=3);
            Transaction {
                version: Version::TWO,
                lock_time: LockTime::ZERO,
                input: (0..inputs).map(|_| random_input(&mut rng)).collect(),
                output: (0..outputs)
                    .map(|_| TxOut {
                        value: Amount::from_sat(rng.gen_range(546..50_000_000)),
                        script_pubkey: random_script(&mut rng),
                    })
                    .collect(),
            }
        })
        .collect();
    // Deposits: outputs paying watched scripts, spread over the block.
    // Distinct transactions for deposits and payouts, so each is counted once.
    for k in 0..MATCHING_OUTPUTS {
        let tx = k * (BLOCK_TXS / MATCHING_OUTPUTS) + 7;
        let out = rng.gen_range(0..txdata[tx].output.len());
        txdata[tx].output[out].script_pubkey =
            watched_script(k * (WATCHED_SCRIPTS / MATCHING_OUTPUTS));
    }
    let payouts = (0..MATCHING_TXIDS)
        .map(|k| txdata[k * (BLOCK_TXS / MATCHING_TXIDS) + 3].clone())
        .collect();
    let block = Block {
        header: Header {
            version: BlockVersion::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1_700_000_000,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata,
    };
    (block, payouts)
}

fn watch_list(payouts: &[Transaction]) -> WatchList {
    let list = WatchList::new();
    for i in 0..WATCHED_SCRIPTS {
        let script = watched_script(i);
        let address = bitcoin::Address::from_script(&script, bitcoin::Network::Regtest)
            .expect("watched scripts are standard");
        list.add_address(NET, &proto::Address::Bitcoin(address));
    }
    // Payouts the engine broadcast are watched by the outpoints they spend
    // (`NodeGateway::broadcast` registers them): pending ones elsewhere, and
    // those in this block.
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    for _ in 0..WATCHED_TXIDS {
        let pending = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![random_input(&mut rng)],
            output: vec![TxOut {
                value: Amount::from_sat(100_000),
                script_pubkey: random_script(&mut rng),
            }],
        };
        list.add_spend(NET, &pending);
    }
    for tx in payouts {
        list.add_spend(NET, tx);
    }
    // The follower takes these once; not part of the per-block cost.
    let _ = list.take_new_txids(NET);
    list
}

/// Runs `f` repeatedly for `duration`; returns (runs, elapsed).
fn time_for(duration: Duration, mut f: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut runs = 0u64;
    while runs == 0 || start.elapsed() < duration {
        f();
        runs += 1;
    }
    (runs, start.elapsed())
}

fn decode(hex: &str) -> Result<Block, BenchError> {
    deserialize_hex::<Block>(hex).map_err(|e| BenchError::Invalid(format!("block decode: {e}")))
}

pub async fn run(config: &BenchConfig) -> Result<Measurement, BenchError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || measure(&config))
        .await
        .map_err(|e| BenchError::Invalid(format!("benchmark thread: {e}")))?
}

fn measure(config: &BenchConfig) -> Result<Measurement, BenchError> {
    let (block, payouts) = generate_block();
    let hex = serialize_hex(&block);
    let block_bytes = hex.len() / 2;
    let t = Instant::now();
    let list = watch_list(&payouts);
    let build_secs = t.elapsed().as_secs_f64();
    let asset = AssetId::new("BTC").map_err(|e| BenchError::Invalid(e.to_string()))?;

    // Correctness first: the figure means nothing if matching misses.
    let matched = list.match_bitcoin_block(NET, &decode(&hex)?, &asset);
    let expected = MATCHING_OUTPUTS + MATCHING_TXIDS;
    if matched.len() != expected {
        return Err(BenchError::Invalid(format!(
            "matched {} of the block's {expected} watched outputs and payouts",
            matched.len()
        )));
    }

    let mut decode_runs = 0u64;
    let mut decode_time = Duration::ZERO;
    let mut ingest_runs = 0u64;
    let mut ingest_time = Duration::ZERO;
    let mut failure = None;
    for _ in 0..config.rounds.max(1) {
        let (n, d) = time_for(config.duration, || match decode(&hex) {
            Ok(b) => {
                std::hint::black_box(b);
            }
            Err(e) => failure = Some(e),
        });
        decode_runs += n;
        decode_time += d;
        let (n, d) = time_for(config.duration, || match decode(&hex) {
            Ok(b) => {
                std::hint::black_box(list.match_bitcoin_block(NET, &b, &asset));
            }
            Err(e) => failure = Some(e),
        });
        ingest_runs += n;
        ingest_time += d;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let per_block_ms = |d: Duration, n: u64| d.as_secs_f64() * 1e3 / n as f64;
    let ingest_ms = per_block_ms(ingest_time, ingest_runs);
    let decode_ms = per_block_ms(decode_time, decode_runs);
    Ok(Measurement {
        value: (ingest_ms * 1000.0).round() / 1000.0,
        unit: "ms/block (decode + match)",
        baseline: (decode_ms * 1000.0).round() / 1000.0,
        goal: "<=1.2",
        detail: json!({
            "baseline": "bitcoin::consensus::encode::deserialize_hex::<Block> of the same getblock hex",
            "block_txs": BLOCK_TXS,
            "block_bytes": block_bytes,
            "watched_scripts": WATCHED_SCRIPTS,
            "watched_txids": WATCHED_TXIDS + MATCHING_TXIDS,
            "matched": matched.len(),
            "match_only_ms": ((ingest_ms - decode_ms) * 1000.0).round() / 1000.0,
            "watch_list_build_s": (build_secs * 100.0).round() / 100.0,
            "ingest_runs": ingest_runs,
            "decode_runs": decode_runs,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_block_looks_like_mainnet() {
        let (block, payouts) = generate_block();
        assert_eq!(block.txdata.len(), BLOCK_TXS);
        let bytes = bitcoin::consensus::encode::serialize(&block).len();
        assert!((1_000_000..2_500_000).contains(&bytes), "{bytes} bytes");
        assert_eq!(payouts.len(), MATCHING_TXIDS);
        // Same seed, same block.
        assert_eq!(generate_block().0.block_hash(), block.block_hash());
    }

    #[test]
    fn watched_scripts_are_found_in_the_block() {
        let (block, payouts) = generate_block();
        // A small list with the scripts the block pays, and the payouts.
        let list = WatchList::new();
        for k in 0..MATCHING_OUTPUTS {
            let s = watched_script(k * (WATCHED_SCRIPTS / MATCHING_OUTPUTS));
            let a = bitcoin::Address::from_script(&s, bitcoin::Network::Regtest).expect("standard");
            list.add_address(NET, &proto::Address::Bitcoin(a));
        }
        for t in &payouts {
            list.add_spend(NET, t);
        }
        let asset = AssetId::new("BTC").expect("ticker");
        let matched = list.match_bitcoin_block(NET, &block, &asset);
        assert_eq!(matched.len(), MATCHING_OUTPUTS + MATCHING_TXIDS);
    }
}
