//! The pure block logic on hand-built blocks: matching against the watch
//! list, confirmations up to `max_depth`, walking back over a reorganisation,
//! restoring after a restart, and mempool seen/dropped.

use std::collections::HashSet;

use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount as Sats, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxMerkleNode, TxOut, Txid, WPubkeyHash, Witness,
};
use node_gateway::eth_rpc::EthBlock;
use node_gateway::tracker::{
    BlockRef, ChainTracker, ConnectError, Matched, MempoolTracker, TrackedBlock,
};
use node_gateway::watch::WatchList;
use proto::event::{ChainEvent, TxStatus};
use proto::{Amount, AssetId, BitcoinNetwork, EthereumNetwork, Network};

const NET: Network = Network::Bitcoin(BitcoinNetwork::Regtest);

fn btc() -> AssetId {
    AssetId::new("BTC").unwrap()
}

fn script(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn address(n: u8) -> String {
    bitcoin::Address::from_script(&script(n), bitcoin::Network::Regtest)
        .unwrap()
        .to_string()
}

fn watch(list: &WatchList, n: u8) -> String {
    let a = proto::Address::parse(NET, &address(n)).unwrap();
    list.add_address(NET, &a)
}

/// A transaction spending `(prev, vout)` paying `(script n, sats)` outputs.
fn tx(prev: u8, vout: u32, outputs: &[(u8, u64)]) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([prev; 32]),
                vout,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs
            .iter()
            .map(|(n, sats)| TxOut {
                value: Sats::from_sat(*sats),
                script_pubkey: script(*n),
            })
            .collect(),
    }
}

fn block(parent: BlockHash, nonce: u32, txdata: Vec<Transaction>) -> Block {
    Block {
        header: Header {
            version: BlockVersion::TWO,
            prev_blockhash: parent,
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1_700_000_000 + nonce,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce,
        },
        txdata,
    }
}

fn block_ref(b: &Block, height: u64) -> BlockRef {
    BlockRef {
        height,
        hash: b.block_hash().to_string(),
        parent_hash: b.header.prev_blockhash.to_string(),
    }
}

fn confirmed(e: &ChainEvent) -> Option<(String, u64)> {
    match e {
        ChainEvent::Output {
            status: TxStatus::Confirmed {
                block_hash, depth, ..
            },
            ..
        }
        | ChainEvent::Transaction {
            status: TxStatus::Confirmed {
                block_hash, depth, ..
            },
            ..
        } => Some((block_hash.clone(), *depth)),
        _ => None,
    }
}

#[test]
fn block_outputs_paying_watched_scripts_and_watched_txids_match() {
    let list = WatchList::new();
    let a1 = watch(&list, 1);
    let a2 = watch(&list, 2);
    let own = tx(9, 0, &[(7, 5_000)]);
    list.add_txid(NET, &own.compute_txid().to_string());

    let deposit = tx(8, 0, &[(3, 1_000), (1, 250_000), (2, 12)]);
    let unrelated = tx(8, 1, &[(4, 99)]);
    let b = block(
        BlockHash::all_zeros(),
        1,
        vec![unrelated, deposit.clone(), own.clone()],
    );
    let m = list.match_bitcoin_block(NET, &b, &btc());
    let dep = deposit.compute_txid().to_string();
    assert_eq!(
        m,
        vec![
            Matched::Output {
                txid: dep.clone(),
                output: 1,
                address: a1,
                asset: btc(),
                amount: Amount::from_base_units(250_000),
            },
            Matched::Output {
                txid: dep,
                output: 2,
                address: a2,
                asset: btc(),
                amount: Amount::from_base_units(12),
            },
            Matched::Tx {
                txid: own.compute_txid().to_string(),
                reverted: false,
            },
        ]
    );
    // Another network's watch list is separate.
    let testnet = Network::Bitcoin(BitcoinNetwork::Testnet);
    assert!(list.match_bitcoin_block(testnet, &b, &btc()).is_empty());
    assert_eq!(list.len(NET), 3);
}

#[test]
fn confirmations_are_reported_at_each_depth_up_to_max_depth() {
    let list = WatchList::new();
    watch(&list, 1);
    let mut t = ChainTracker::new(NET, 3, 10);
    let g = block(BlockHash::all_zeros(), 0, vec![]);
    let mut blocks = vec![g.clone()];
    let ev = t.connect(block_ref(&g, 100), vec![]).unwrap();
    assert!(matches!(
        ev.as_slice(),
        [ChainEvent::BlockConnected { height: 100, .. }]
    ));

    let deposit = tx(8, 0, &[(1, 5_000)]);
    let b1 = block(g.block_hash(), 1, vec![deposit]);
    let mut depths = Vec::new();
    for i in 1..=5u32 {
        let b = if i == 1 {
            b1.clone()
        } else {
            block(blocks.last().unwrap().block_hash(), i, vec![])
        };
        let m = list.match_bitcoin_block(NET, &b, &btc());
        let ev = t.connect(block_ref(&b, 100 + u64::from(i)), m).unwrap();
        assert!(
            matches!(ev[0], ChainEvent::BlockConnected { .. }),
            "block event first"
        );
        depths.push(ev.iter().filter_map(confirmed).collect::<Vec<_>>());
        blocks.push(b);
    }
    let h = b1.block_hash().to_string();
    assert_eq!(
        depths,
        vec![
            vec![(h.clone(), 1)],
            vec![(h.clone(), 2)],
            vec![(h, 3)],
            vec![],
            vec![]
        ]
    );
    assert_eq!(t.tip().unwrap().height, 105);
    assert_eq!(t.blocks().count(), 6);
}

#[test]
fn a_block_not_on_the_tip_is_refused() {
    let mut t = ChainTracker::new(NET, 6, 10);
    let g = block(BlockHash::all_zeros(), 0, vec![]);
    t.connect(block_ref(&g, 0), vec![]).unwrap();
    let stray = block(BlockHash::from_byte_array([5; 32]), 1, vec![]);
    let err = t.connect(block_ref(&stray, 1), vec![]).unwrap_err();
    assert!(matches!(
        err,
        ConnectError::NotOnTip {
            height: 1,
            tip_height: 0,
            ..
        }
    ));
    // Right parent, wrong height.
    let wrong = block(g.block_hash(), 2, vec![]);
    assert!(t.connect(block_ref(&wrong, 5), vec![]).is_err());
    assert_eq!(t.tip().unwrap().hash, g.block_hash().to_string());
}

#[test]
fn a_reorganisation_unconfirms_then_the_new_branch_confirms() {
    let list = WatchList::new();
    watch(&list, 1);
    let deposit = tx(8, 0, &[(1, 70_000)]);
    let mut t = ChainTracker::new(NET, 6, 10);

    // a0 - a1 - a2(deposit) - a3
    let a0 = block(BlockHash::all_zeros(), 0, vec![]);
    let a1 = block(a0.block_hash(), 1, vec![]);
    let a2 = block(a1.block_hash(), 2, vec![deposit.clone()]);
    let a3 = block(a2.block_hash(), 3, vec![]);
    for (i, b) in [&a0, &a1, &a2, &a3].into_iter().enumerate() {
        t.connect(
            block_ref(b, i as u64),
            list.match_bitcoin_block(NET, b, &btc()),
        )
        .unwrap();
    }
    // The node switched to a0 - a1 - b2 - b3 - b4 (deposit in b3).
    let b2 = block(a1.block_hash(), 22, vec![]);
    let b3 = block(b2.block_hash(), 23, vec![deposit.clone()]);
    let b4 = block(b3.block_hash(), 24, vec![]);
    let node = [&a0, &a1, &b2, &b3, &b4];
    let node_hash = |h: u64| node.get(h as usize).map(|b| b.block_hash().to_string());

    let mut events = Vec::new();
    while let Some((_, ev)) = t.step_back_if_stale(node_hash(t.tip().unwrap().height).as_deref()) {
        events.extend(ev);
    }
    let a2h = a2.block_hash().to_string();
    let a3h = a3.block_hash().to_string();
    let dep = deposit.compute_txid().to_string();
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(
        matches!(&events[0], ChainEvent::BlockDisconnected { height: 3, hash, .. } if *hash == a3h)
    );
    assert!(
        matches!(&events[1], ChainEvent::BlockDisconnected { height: 2, hash, .. } if *hash == a2h)
    );
    assert!(
        matches!(&events[2], ChainEvent::Output { txid, status: TxStatus::Unconfirmed { block_hash }, .. } if *txid == dep && *block_hash == a2h)
    );
    assert_eq!(
        t.tip().unwrap().hash,
        a1.block_hash().to_string(),
        "stops at the common ancestor"
    );

    let mut confirms = Vec::new();
    for (h, b) in [(2u64, &b2), (3, &b3), (4, &b4)] {
        let ev = t
            .connect(block_ref(b, h), list.match_bitcoin_block(NET, b, &btc()))
            .unwrap();
        confirms.extend(ev.iter().filter_map(confirmed));
    }
    let b3h = b3.block_hash().to_string();
    assert_eq!(confirms, vec![(b3h.clone(), 1), (b3h, 2)]);
}

#[test]
fn a_node_with_a_shorter_chain_disconnects_our_tip() {
    let mut t = ChainTracker::new(NET, 6, 10);
    let a0 = block(BlockHash::all_zeros(), 0, vec![]);
    let a1 = block(a0.block_hash(), 1, vec![]);
    t.connect(block_ref(&a0, 0), vec![]).unwrap();
    t.connect(block_ref(&a1, 1), vec![]).unwrap();
    let (gone, ev) = t.step_back_if_stale(None).unwrap();
    assert_eq!(gone.height, 1);
    assert_eq!(ev.len(), 1);
    // The tip is in the node's chain: nothing to do.
    assert!(t
        .step_back_if_stale(Some(&a0.block_hash().to_string()))
        .is_none());
}

#[test]
fn restoring_after_a_restart_replays_the_same_event_ids() {
    let list = WatchList::new();
    watch(&list, 1);
    let deposit = tx(8, 0, &[(1, 70_000)]);
    let mut t = ChainTracker::new(NET, 3, 10);
    let mut prev = BlockHash::all_zeros();
    let mut published = HashSet::new();
    let mut refs = Vec::new();
    for i in 0..5u32 {
        let txs = if i == 3 {
            vec![deposit.clone()]
        } else {
            vec![]
        };
        let b = block(prev, i, txs);
        let m = list.match_bitcoin_block(NET, &b, &btc());
        for e in t.connect(block_ref(&b, u64::from(i)), m.clone()).unwrap() {
            published.insert(e.event_id());
        }
        refs.push((block_ref(&b, u64::from(i)), m));
        prev = b.block_hash();
    }
    let mut restarted = ChainTracker::new(NET, 3, 10);
    let blocks = refs
        .into_iter()
        .map(|(block, m)| TrackedBlock {
            block,
            matches: Some(m),
        })
        .collect();
    let replay = restarted.restore(blocks);
    assert_eq!(replay.len(), 1, "the deposit at depth 2: {replay:#?}");
    assert!(
        published.contains(&replay[0].event_id()),
        "same id as first published"
    );
    assert_eq!(restarted.tip(), t.tip());
}

#[test]
fn blocks_without_known_matches_are_flagged_for_refetch() {
    let mut t = ChainTracker::new(NET, 2, 10);
    let a0 = block(BlockHash::all_zeros(), 0, vec![]);
    t.restore(vec![TrackedBlock {
        block: block_ref(&a0, 0),
        matches: None,
    }]);
    assert!(t.tip_matches_unknown());
    let m = Matched::Tx {
        txid: "ab".repeat(32),
        reverted: false,
    };
    t.set_tip_matches(vec![m]);
    assert!(!t.tip_matches_unknown());
    let (_, ev) = t.disconnect_tip().unwrap();
    assert!(matches!(
        &ev[1],
        ChainEvent::Transaction {
            status: TxStatus::Unconfirmed { .. },
            ..
        }
    ));
}

#[test]
fn mempool_seen_then_dropped_or_replaced_or_confirmed() {
    let list = WatchList::new();
    watch(&list, 1);
    let mut m = MempoolTracker::new(NET);

    let pays = tx(8, 0, &[(1, 10_000)]);
    let other = tx(8, 5, &[(4, 10_000)]);
    let (p, o) = (
        pays.compute_txid().to_string(),
        other.compute_txid().to_string(),
    );
    let snapshot = vec![p.clone(), o.clone()];
    assert_eq!(m.unknown(&snapshot).len(), 2);
    let seen = m.add(&p, &pays, list.match_bitcoin_tx(NET, &pays, &btc()));
    assert!(matches!(
        seen.as_slice(),
        [ChainEvent::Output {
            status: TxStatus::Seen,
            output: 0,
            ..
        }]
    ));
    assert!(m
        .add(&o, &other, list.match_bitcoin_tx(NET, &other, &btc()))
        .is_empty());
    assert!(m.unknown(&snapshot).is_empty(), "nothing fetched twice");
    assert_eq!(m.seen_len(), 1);

    // Replaced: a new transaction spends the same input, paying elsewhere.
    let replacement = tx(8, 0, &[(4, 9_000)]);
    let r = replacement.compute_txid().to_string();
    m.add(
        &r,
        &replacement,
        list.match_bitcoin_tx(NET, &replacement, &btc()),
    );
    let now: HashSet<String> = [o.clone(), r.clone()].into();
    let ev = m.departed(&now, |_| false);
    assert_eq!(ev.len(), 1);
    assert!(
        matches!(&ev[0], ChainEvent::Output { txid, status: TxStatus::Dropped { replaced_by: Some(by) }, .. } if *txid == p && *by == r)
    );

    // Confirmed: leaves the mempool in a block, no event.
    let pays2 = tx(9, 0, &[(1, 20_000)]);
    let p2 = pays2.compute_txid().to_string();
    assert_eq!(
        m.add(&p2, &pays2, list.match_bitcoin_tx(NET, &pays2, &btc()))
            .len(),
        1
    );
    assert!(m.departed(&[o.clone()].into(), |t| t == p2).is_empty());

    // Evicted without a replacement.
    let pays3 = tx(10, 0, &[(1, 30_000)]);
    let p3 = pays3.compute_txid().to_string();
    m.add(&p3, &pays3, list.match_bitcoin_tx(NET, &pays3, &btc()));
    let ev = m.departed(&HashSet::new(), |_| false);
    assert!(matches!(
        ev.as_slice(),
        [ChainEvent::Output {
            status: TxStatus::Dropped { replaced_by: None },
            ..
        }]
    ));
    assert_eq!(m.seen_len(), 0);
}

#[test]
fn a_newly_watched_txid_already_in_the_mempool_is_looked_at_again() {
    let list = WatchList::new();
    let mut m = MempoolTracker::new(NET);
    let own = tx(8, 0, &[(4, 10_000)]);
    let id = own.compute_txid().to_string();
    assert!(m
        .add(&id, &own, list.match_bitcoin_tx(NET, &own, &btc()))
        .is_empty());
    list.add_txid(NET, &id);
    for t in list.take_new_txids(NET) {
        m.forget(&t);
    }
    assert!(list.take_new_txids(NET).is_empty());
    assert_eq!(m.unknown(std::slice::from_ref(&id)).len(), 1);
    let ev = m.add(&id, &own, list.match_bitcoin_tx(NET, &own, &btc()));
    assert!(matches!(
        ev.as_slice(),
        [ChainEvent::Transaction {
            status: TxStatus::Seen,
            ..
        }]
    ));
}

#[test]
fn ethereum_native_transfers_and_watched_hashes_match() {
    let net = Network::Ethereum(EthereumNetwork::Dev);
    let list = WatchList::new();
    let to = format!("0x{}", "ab".repeat(20));
    let canonical = list.add_address(net, &proto::Address::parse(net, &to).unwrap());
    let own = format!("0x{}", "77".repeat(32));
    list.add_txid(net, &own);
    let tx = |hash: &str, to: &str, value: &str| {
        serde_json::json!({"hash": hash, "from": format!("0x{}", "11".repeat(20)), "to": to,
            "value": value, "nonce": "0x0", "input": "0x"})
    };
    let b: EthBlock = serde_json::from_value(serde_json::json!({
        "number": "0x10", "hash": format!("0x{}", "01".repeat(32)),
        "parentHash": format!("0x{}", "02".repeat(32)), "timestamp": "0x1",
        "transactions": [
            tx(&format!("0x{}", "55".repeat(32)), &to, "0xde0b6b3a7640000"),
            tx(&format!("0x{}", "56".repeat(32)), &to, "0x0"),
            tx(&format!("0x{}", "57".repeat(32)), &format!("0x{}", "cd".repeat(20)), "0x5"),
            tx(&own, &format!("0x{}", "cd".repeat(20)), "0x5"),
        ]
    }))
    .unwrap();
    let eth = AssetId::new("ETH").unwrap();
    let m = list.match_eth_block(net, &b, &eth);
    assert_eq!(
        m,
        vec![
            Matched::Output {
                txid: format!("0x{}", "55".repeat(32)),
                output: 0,
                address: canonical,
                asset: eth,
                amount: Amount::from_base_units(10u128.pow(18)),
            },
            Matched::Tx {
                txid: own,
                reverted: false,
            },
        ]
    );
}

#[test]
fn txids_are_canonicalised_per_chain() {
    let h = "AB".repeat(32);
    assert_eq!(node_gateway::canonical_txid(NET, &h), Some("ab".repeat(32)));
    assert_eq!(node_gateway::canonical_txid(NET, "xyz"), None);
    let eth = Network::Ethereum(EthereumNetwork::Dev);
    assert_eq!(
        node_gateway::canonical_txid(eth, &format!("0x{h}")),
        Some(format!("0x{}", "ab".repeat(32)))
    );
    assert_eq!(node_gateway::canonical_txid(eth, &h), None);
}

#[test]
fn an_ethereum_pending_transfer_replaced_by_sender_and_nonce_is_dropped() {
    let net = Network::Ethereum(EthereumNetwork::Dev);
    let mut m = MempoolTracker::new(net);
    let deposit = Matched::Output {
        txid: format!("0x{}", "aa".repeat(32)),
        output: 0,
        address: "0xAbC".into(),
        asset: AssetId::new("ETH").unwrap(),
        amount: Amount::from_base_units(5),
    };
    let sender_nonce = format!("0x{}:7", "11".repeat(20));
    let seen = m.add_spending(
        deposit.txid(),
        vec![sender_nonce.clone()],
        vec![deposit.clone()],
    );
    assert!(matches!(
        seen.as_slice(),
        [ChainEvent::Output {
            status: TxStatus::Seen,
            ..
        }]
    ));
    let replacement = format!("0x{}", "bb".repeat(32));
    assert!(m
        .add_spending(&replacement, vec![sender_nonce], vec![])
        .is_empty());
    let ev = m.departed(&[replacement.clone()].into(), |_| false);
    assert_eq!(
        ev,
        vec![deposit.event(
            net,
            TxStatus::Dropped {
                replaced_by: Some(replacement)
            }
        )]
    );
}

/// A watched transaction mined but reverted is confirmed with `reverted`
/// at every depth; its unconfirmation says nothing of reverting.
#[test]
fn a_reverted_watched_transaction_is_confirmed_as_reverted() {
    let mut t = ChainTracker::new(NET, 2, 10);
    let a0 = block(BlockHash::all_zeros(), 0, vec![]);
    let a1 = block(a0.block_hash(), 1, vec![]);
    let txid = "cd".repeat(32);
    let own = Matched::Tx {
        txid: txid.clone(),
        reverted: true,
    };
    t.connect(block_ref(&a0, 0), vec![own]).unwrap();
    let ev = t.connect(block_ref(&a1, 1), vec![]).unwrap();
    let (_, gone) = t.disconnect_tip().unwrap();
    let (_, gone0) = t.disconnect_tip().unwrap();
    let flags: Vec<(bool, &TxStatus)> = ev
        .iter()
        .chain(&gone)
        .chain(&gone0)
        .filter_map(|e| match e {
            ChainEvent::Transaction {
                reverted, status, ..
            } => Some((*reverted, status)),
            _ => None,
        })
        .collect();
    assert_eq!(flags.len(), 2, "{flags:?}");
    assert!(matches!(
        flags[0],
        (true, TxStatus::Confirmed { depth: 2, .. })
    ));
    assert!(matches!(flags[1], (false, TxStatus::Unconfirmed { .. })));
}
