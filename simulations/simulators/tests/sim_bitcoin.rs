//! The simulated bitcoind, driven over its HTTP JSON-RPC as a client would.

use std::str::FromStr;
use std::time::Duration;

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, Block, BlockHash, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Txid, Witness,
};
use serde_json::{json, Value};
use simulators::bitcoin::{BitcoinSim, BitcoinSimConfig};
use tokio_util::sync::CancellationToken;

struct Rpc {
    http: reqwest::Client,
    url: String,
    auth: Option<(String, String)>,
}

#[derive(Debug)]
struct RpcErr {
    status: u16,
    code: i64,
    message: String,
}

impl Rpc {
    fn new(url: String) -> Self {
        Rpc {
            http: reqwest::Client::new(),
            url,
            auth: None,
        }
    }

    async fn try_call(&self, method: &str, params: Value) -> Result<Value, RpcErr> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params}));
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.expect("http request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json body");
        if body["error"].is_null() {
            assert_eq!(status, 200, "{method}: {body}");
            Ok(body["result"].clone())
        } else {
            Err(RpcErr {
                status,
                code: body["error"]["code"].as_i64().expect("error code"),
                message: body["error"]["message"]
                    .as_str()
                    .expect("message")
                    .to_string(),
            })
        }
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        match self.try_call(method, params.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{method} {params} failed: {e:?}"),
        }
    }
}

async fn start(dir: &std::path::Path) -> (BitcoinSim, Rpc, CancellationToken) {
    let mut cfg = BitcoinSimConfig::new(dir);
    cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
    let stop = CancellationToken::new();
    let sim = BitcoinSim::start(cfg, stop.clone())
        .await
        .expect("sim starts");
    let rpc = Rpc::new(sim.rpc_url());
    (sim, rpc, stop)
}

/// A test key outside the node's wallet.
struct Key {
    sk: SecretKey,
    pk: CompressedPublicKey,
}

impl Key {
    fn new(n: u8) -> Key {
        let sk = SecretKey::from_slice(&[n; 32]).expect("key");
        let pk = CompressedPublicKey(sk.public_key(&Secp256k1::new()));
        Key { sk, pk }
    }
    fn address(&self) -> Address {
        Address::p2wpkh(&self.pk, Network::Regtest)
    }
}

/// Spends `prev` (owned by `signer`) to `outputs`, signed P2WPKH.
fn spend(
    prev: OutPoint,
    prev_out: &TxOut,
    signer: &Key,
    outputs: Vec<TxOut>,
    rbf: bool,
) -> Transaction {
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prev,
            script_sig: ScriptBuf::new(),
            sequence: if rbf {
                Sequence::ENABLE_RBF_NO_LOCKTIME
            } else {
                Sequence::MAX
            },
            witness: Witness::new(),
        }],
        output: outputs,
    };
    let hash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(
            0,
            &prev_out.script_pubkey,
            prev_out.value,
            EcdsaSighashType::All,
        )
        .expect("sighash");
    let sig = Secp256k1::new().sign_ecdsa(&Message::from_digest(hash.to_byte_array()), &signer.sk);
    let sig = bitcoin::ecdsa::Signature {
        signature: sig,
        sighash_type: EcdsaSighashType::All,
    };
    tx.input[0].witness = Witness::p2wpkh(&sig, &signer.pk.0);
    tx
}

/// Funds `key` with `amount` from the faucet, mines it, returns the coin.
async fn funded_coin(rpc: &Rpc, key: &Key, amount: Amount) -> (OutPoint, TxOut) {
    let txid = rpc
        .call(
            "sendtoaddress",
            json!([key.address().to_string(), amount.to_btc()]),
        )
        .await;
    let txid = Txid::from_str(txid.as_str().expect("txid")).expect("txid hex");
    let miner = rpc.call("getnewaddress", json!([])).await;
    rpc.call("generatetoaddress", json!([1, miner])).await;
    let raw = rpc
        .call("getrawtransaction", json!([txid.to_string()]))
        .await;
    let tx: Transaction = deserialize_hex(raw.as_str().expect("hex")).expect("tx decodes");
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == key.address().script_pubkey())
        .expect("output to key");
    (OutPoint::new(txid, vout as u32), tx.output[vout].clone())
}

fn out(to: &Address, sats: u64) -> TxOut {
    TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: to.script_pubkey(),
    }
}

#[tokio::test]
async fn send_then_mine_then_confirmations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, rpc, _stop) = start(dir.path()).await;
    assert_eq!(rpc.call("getblockcount", json!([])).await, json!(101));
    let info = rpc.call("getblockchaininfo", json!([])).await;
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], 101);
    // One mature coinbase of 50 BTC.
    assert_eq!(rpc.call("getbalance", json!([])).await, json!(50.0));
    // Amounts are printed as bitcoind does: exact, eight decimals.
    let text = rpc
        .http
        .post(&rpc.url)
        .body(r#"{"jsonrpc":"1.0","id":1,"method":"getbalance","params":[]}"#)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(text.contains(r#""result":50.00000000"#), "{text}");

    let dest = Key::new(11).address();
    let txid = rpc
        .call("sendtoaddress", json!([dest.to_string(), 1.5]))
        .await;
    let txid = txid.as_str().expect("txid").to_string();
    let mempool = rpc.call("getrawmempool", json!([])).await;
    assert_eq!(mempool, json!([txid.clone()]));
    let entry = rpc.call("getmempoolentry", json!([txid.clone()])).await;
    assert_eq!(entry["bip125-replaceable"], true);
    assert!(entry["fees"]["base"].as_f64().expect("fee") > 0.0);
    let verbose = rpc.call("getrawmempool", json!([true])).await;
    assert!(verbose[&txid]["vsize"].as_u64().expect("vsize") > 100);
    let unconfirmed = rpc
        .call("getrawtransaction", json!([txid.clone(), true]))
        .await;
    assert!(unconfirmed.get("confirmations").is_none());

    let miner = Key::new(12).address().to_string();
    let hashes = rpc.call("generatetoaddress", json!([1, miner])).await;
    let block_hash = hashes[0].as_str().expect("hash").to_string();
    assert_eq!(rpc.call("getrawmempool", json!([])).await, json!([]));
    let tx = rpc
        .call("getrawtransaction", json!([txid.clone(), true]))
        .await;
    assert_eq!(tx["confirmations"], 1);
    assert_eq!(tx["blockhash"], block_hash);
    let paid = tx["vout"]
        .as_array()
        .expect("vout")
        .iter()
        .find(|o| o["scriptPubKey"]["address"] == dest.to_string())
        .expect("payment output")
        .clone();
    assert_eq!(paid["value"], json!(1.5));
    assert_eq!(paid["scriptPubKey"]["type"], "witness_v0_keyhash");

    rpc.call(
        "generatetoaddress",
        json!([2, Key::new(12).address().to_string()]),
    )
    .await;
    let tx = rpc
        .call("getrawtransaction", json!([txid.clone(), 1]))
        .await;
    assert_eq!(tx["confirmations"], 3);
    // With an explicit block hash too.
    let tx = rpc
        .call(
            "getrawtransaction",
            json!([txid.clone(), true, block_hash.clone()]),
        )
        .await;
    assert_eq!(tx["confirmations"], 3);
    // Block verbosity 1 lists the txid; verbosity 2 decodes it with its fee.
    let b1 = rpc.call("getblock", json!([block_hash.clone()])).await;
    assert_eq!(b1["tx"][1], json!(txid.clone()));
    assert_eq!(b1["height"], 102);
    let b2 = rpc.call("getblock", json!([block_hash.clone(), 2])).await;
    assert_eq!(b2["tx"][1]["txid"], json!(txid.clone()));
    assert!(b2["tx"][1]["fee"].as_f64().expect("fee") > 0.0);
    let header = rpc
        .call("getblockheader", json!([block_hash.clone()]))
        .await;
    assert_eq!(header["confirmations"], 3);
    assert_eq!(header["height"], 102);
    let fee = rpc.call("estimatesmartfee", json!([6])).await;
    assert!(fee["feerate"].as_f64().expect("feerate") >= 0.00001);
}

#[tokio::test]
async fn getblock_hex_decodes_with_the_bitcoin_crate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, rpc, _stop) = start(dir.path()).await;
    rpc.call(
        "sendtoaddress",
        json!([Key::new(3).address().to_string(), 0.1]),
    )
    .await;
    let hashes = rpc
        .call(
            "generatetoaddress",
            json!([1, Key::new(4).address().to_string()]),
        )
        .await;
    let hash = hashes[0].as_str().expect("hash");
    let hex = rpc.call("getblock", json!([hash, 0])).await;
    let block: Block = deserialize_hex(hex.as_str().expect("hex")).expect("block decodes");
    assert_eq!(block.block_hash(), BlockHash::from_str(hash).expect("hash"));
    assert!(block.check_merkle_root());
    assert!(block.check_witness_commitment());
    assert_eq!(block.bip34_block_height().expect("bip34"), 102);
    assert_eq!(block.header.bits.to_consensus(), 0x207f_ffff);
    assert!(block.header.validate_pow(block.header.target()).is_ok());
    assert_eq!(block.txdata.len(), 2);
    // Subsidy plus the fee of the one transaction.
    let fee = Amount::from_btc(
        rpc.call("getblock", json!([hash, 2])).await["tx"][1]["fee"]
            .as_f64()
            .expect("fee"),
    )
    .expect("amount");
    assert_eq!(
        block.txdata[0].output[0].value,
        Amount::from_int_btc(50) + fee
    );
    let header_hex = rpc.call("getblockheader", json!([hash, false])).await;
    assert_eq!(header_hex.as_str().expect("hex").len(), 160);
    let prev = rpc.call("getblockhash", json!([101])).await;
    assert_eq!(prev, json!(block.header.prev_blockhash.to_string()));
}

#[tokio::test]
async fn bad_signature_and_double_spends_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, rpc, _stop) = start(dir.path()).await;
    let alice = Key::new(21);
    let bob = Key::new(22);
    let (coin, prev) = funded_coin(&rpc, &alice, Amount::from_sat(100_000)).await;

    // Signed by the wrong key: the witness pubkey does not match.
    let forged = spend(coin, &prev, &bob, vec![out(&bob.address(), 90_000)], true);
    let e = rpc
        .try_call("sendrawtransaction", json!([serialize_hex(&forged)]))
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code), (500, -26));
    assert!(
        e.message
            .starts_with("mandatory-script-verify-flag-failed ("),
        "{}",
        e.message
    );

    // Right key, but the signature is corrupted.
    let mut bad = spend(coin, &prev, &alice, vec![out(&bob.address(), 90_000)], true);
    let mut items: Vec<Vec<u8>> = bad.input[0].witness.iter().map(|w| w.to_vec()).collect();
    items[0][10] ^= 0x01;
    bad.input[0].witness = Witness::from_slice(&items);
    let e = rpc
        .try_call("sendrawtransaction", json!([serialize_hex(&bad)]))
        .await
        .unwrap_err();
    assert_eq!(e.code, -26);
    assert!(
        e.message.starts_with("mandatory-script-verify-flag-failed"),
        "{}",
        e.message
    );

    // Too low a fee.
    let cheap = spend(coin, &prev, &alice, vec![out(&bob.address(), 99_990)], true);
    let e = rpc
        .try_call("sendrawtransaction", json!([serialize_hex(&cheap)]))
        .await
        .unwrap_err();
    assert_eq!(e.code, -26);
    assert!(
        e.message.starts_with("min relay fee not met"),
        "{}",
        e.message
    );

    // testmempoolaccept agrees without admitting.
    let good = spend(coin, &prev, &alice, vec![out(&bob.address(), 90_000)], true);
    let t = rpc
        .call("testmempoolaccept", json!([[serialize_hex(&good)]]))
        .await;
    assert_eq!(t[0]["allowed"], true);
    assert_eq!(rpc.call("getrawmempool", json!([])).await, json!([]));

    let txid = rpc
        .call("sendrawtransaction", json!([serialize_hex(&good)]))
        .await;
    assert_eq!(txid, json!(good.compute_txid().to_string()));
    // Sending it again is not an error (bitcoind returns the txid).
    assert_eq!(
        rpc.call("sendrawtransaction", json!([serialize_hex(&good)]))
            .await,
        txid
    );
    rpc.call("generatetoaddress", json!([1, bob.address().to_string()]))
        .await;

    // Once confirmed: resending is "already in block chain", a conflicting
    // spend has missing inputs.
    let e = rpc
        .try_call("sendrawtransaction", json!([serialize_hex(&good)]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-27, "Transaction already in block chain")
    );
    let double = spend(
        coin,
        &prev,
        &alice,
        vec![out(&alice.address(), 80_000)],
        true,
    );
    let e = rpc
        .try_call("sendrawtransaction", json!([serialize_hex(&double)]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (-25, "bad-txns-inputs-missingorspent")
    );

    // Garbage hex.
    let e = rpc
        .try_call("sendrawtransaction", json!(["00ff"]))
        .await
        .unwrap_err();
    assert_eq!(e.code, -22);
}

#[tokio::test]
async fn replacement_follows_bip125() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, rpc, _stop) = start(dir.path()).await;
    let alice = Key::new(31);
    let bob = Key::new(32);
    let carol = Key::new(33);
    let (coin, prev) = funded_coin(&rpc, &alice, Amount::from_sat(100_000)).await;

    let first = spend(coin, &prev, &alice, vec![out(&bob.address(), 99_000)], true); // fee 1000
    rpc.call("sendrawtransaction", json!([serialize_hex(&first)]))
        .await;

    // Same fee: refused.
    let same_fee = spend(
        coin,
        &prev,
        &alice,
        vec![out(&carol.address(), 99_000)],
        true,
    );
    let e = rpc
        .try_call("sendrawtransaction", json!([serialize_hex(&same_fee)]))
        .await
        .unwrap_err();
    assert_eq!(e.code, -26);
    assert!(e.message.starts_with("insufficient fee"), "{}", e.message);

    // Higher feerate but not enough extra to pay for its own relay: refused.
    let tiny_bump = spend(
        coin,
        &prev,
        &alice,
        vec![out(&carol.address(), 98_990)],
        true,
    );
    let e = rpc
        .try_call("sendrawtransaction", json!([serialize_hex(&tiny_bump)]))
        .await
        .unwrap_err();
    assert!(e.message.starts_with("insufficient fee"), "{}", e.message);

    // Enough: replaces the first.
    let bumped = spend(
        coin,
        &prev,
        &alice,
        vec![out(&carol.address(), 97_000)],
        true,
    );
    let txid = rpc
        .call("sendrawtransaction", json!([serialize_hex(&bumped)]))
        .await;
    assert_eq!(
        rpc.call("getrawmempool", json!([])).await,
        json!([txid.clone()])
    );
    let e = rpc
        .try_call("getmempoolentry", json!([first.compute_txid().to_string()]))
        .await
        .unwrap_err();
    assert_eq!(e.code, -5);

    rpc.call("generatetoaddress", json!([1, bob.address().to_string()]))
        .await;
    let tx = rpc.call("getrawtransaction", json!([txid, true])).await;
    assert_eq!(tx["confirmations"], 1);
}

#[tokio::test]
async fn invalidateblock_returns_transactions_to_the_mempool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, rpc, _stop) = start(dir.path()).await;
    let dest = Key::new(41).address().to_string();
    let miner = Key::new(42).address().to_string();
    let txid = rpc.call("sendtoaddress", json!([dest, 2])).await;
    let mined = rpc
        .call("generatetoaddress", json!([1, miner.clone()]))
        .await;
    let old_tip = mined[0].as_str().expect("hash").to_string();
    assert_eq!(rpc.call("getblockcount", json!([])).await, json!(102));

    rpc.call("invalidateblock", json!([old_tip.clone()])).await;
    assert_eq!(rpc.call("getblockcount", json!([])).await, json!(101));
    assert_eq!(
        rpc.call("getrawmempool", json!([])).await,
        json!([txid.clone()])
    );
    let header = rpc.call("getblockheader", json!([old_tip.clone()])).await;
    assert_eq!(header["confirmations"], -1);
    let tx = rpc
        .call("getrawtransaction", json!([txid.clone(), true]))
        .await;
    assert!(tx.get("blockhash").is_none(), "back in the mempool: {tx}");

    // The competing branch is longer and confirms the tx in another block.
    let branch = rpc.call("generatetoaddress", json!([2, miner])).await;
    assert_eq!(rpc.call("getblockcount", json!([])).await, json!(103));
    let tx = rpc
        .call("getrawtransaction", json!([txid.clone(), true]))
        .await;
    assert_eq!(tx["blockhash"], branch[0]);
    assert_eq!(tx["confirmations"], 2);

    // Reconsidering the old block does not win: its branch has less work.
    rpc.call("reconsiderblock", json!([old_tip.clone()])).await;
    assert_eq!(rpc.call("getbestblockhash", json!([])).await, branch[1]);
    let tips = rpc.call("getchaintips", json!([])).await;
    assert_eq!(
        tips,
        json!([
            {"height": 103, "hash": branch[1], "branchlen": 0, "status": "active"},
            {"height": 102, "hash": old_tip, "branchlen": 1, "status": "valid-fork"},
        ])
    );
}

#[tokio::test]
async fn restart_keeps_chain_mempool_and_wallet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tip, mempool, balance, addr) = {
        let (sim, rpc, stop) = start(dir.path()).await;
        let addr = rpc.call("getnewaddress", json!([])).await;
        rpc.call("sendtoaddress", json!([addr.clone(), 3])).await;
        rpc.call(
            "generatetoaddress",
            json!([5, Key::new(51).address().to_string()]),
        )
        .await;
        // Invalidate one block so that restart must remember it.
        let h = rpc.call("getblockhash", json!([106])).await;
        rpc.call("invalidateblock", json!([h])).await;
        rpc.call(
            "sendtoaddress",
            json!([Key::new(52).address().to_string(), 1]),
        )
        .await;
        let tip = rpc.call("getbestblockhash", json!([])).await;
        let mempool = rpc.call("getrawmempool", json!([])).await;
        let balance = rpc.call("getbalance", json!([])).await;
        assert_eq!(sim.tip().await.0, 105);
        stop.cancel();
        (tip, mempool, balance, addr)
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (sim, rpc, _stop) = start(dir.path()).await;
    assert_eq!(rpc.call("getbestblockhash", json!([])).await, tip);
    assert_eq!(rpc.call("getblockcount", json!([])).await, json!(105));
    assert_eq!(rpc.call("getrawmempool", json!([])).await, mempool);
    assert_eq!(rpc.call("getbalance", json!([])).await, balance);
    // The wallet still owns the address it handed out.
    let unspent = rpc
        .call("listunspent", json!([1, 9999999, [addr.clone()]]))
        .await;
    assert_eq!(unspent[0]["amount"], json!(3.0));
    // And the chain keeps going.
    sim.mine(1, None).await.expect("mine");
    assert_eq!(rpc.call("getrawmempool", json!([])).await, json!([]));
    assert_eq!(sim.tip().await.0, 106);
}

#[tokio::test]
async fn auth_batches_and_errors_speak_bitcoind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = BitcoinSimConfig::new(dir.path());
    cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
    cfg.rpc_user = Some("user".into());
    cfg.rpc_password = Some("secret".into());
    cfg.initial_blocks = 0;
    let stop = CancellationToken::new();
    let sim = BitcoinSim::start(cfg, stop.clone()).await.expect("start");
    let http = reqwest::Client::new();
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": []});
    let resp = http
        .post(sim.rpc_url())
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = http
        .post(sim.rpc_url())
        .basic_auth("user", Some("wrong"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);

    let mut rpc = Rpc::new(sim.rpc_url());
    rpc.auth = Some(("user".into(), "secret".into()));
    assert_eq!(rpc.call("getblockcount", json!([])).await, json!(0));
    let e = rpc.try_call("nosuchmethod", json!([])).await.unwrap_err();
    assert_eq!((e.status, e.code), (404, -32601));
    let e = rpc.try_call("getblockhash", json!([7])).await.unwrap_err();
    assert_eq!(
        (e.status, e.code, e.message.as_str()),
        (500, -8, "Block height out of range")
    );
    let e = rpc.try_call("getblock", json!(["00"])).await.unwrap_err();
    assert_eq!(e.code, -8);
    let e = rpc
        .try_call(
            "generatetoaddress",
            json!([1, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, -5);

    // Named parameters.
    let hash = rpc.call("getblockhash", json!({"height": 0})).await;
    assert_eq!(
        hash,
        json!(bitcoin::constants::genesis_block(Network::Regtest)
            .block_hash()
            .to_string())
    );

    // A batch answers each request, errors included, with HTTP 200.
    let batch = json!([
        {"jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": []},
        {"jsonrpc": "1.0", "id": 2, "method": "getblockhash", "params": [5]},
    ]);
    let resp = http
        .post(sim.rpc_url())
        .basic_auth("user", Some("secret"))
        .json(&batch)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let replies: Value = resp.json().await.expect("json");
    assert_eq!(replies[0]["result"], 0);
    assert_eq!(replies[0]["id"], 1);
    assert_eq!(replies[1]["error"]["code"], -8);
    assert_eq!(replies[1]["id"], 2);
    stop.cancel();
}

#[tokio::test]
async fn torn_writes_from_a_crash_are_dropped_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tip = {
        let (_sim, rpc, stop) = start(dir.path()).await;
        rpc.call(
            "sendtoaddress",
            json!([Key::new(61).address().to_string(), 1]),
        )
        .await;
        let tip = rpc.call("getbestblockhash", json!([])).await;
        stop.cancel();
        tip
    };
    // A crash in the middle of an append leaves a partial record behind.
    for file in ["blocks.dat", "mempool.dat"] {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(file))
            .expect("open");
        f.write_all(&[0x00, 0x10, 0x00, 0x00, 0xde, 0xad])
            .expect("write");
    }
    let (_sim, rpc, _stop) = start(dir.path()).await;
    assert_eq!(rpc.call("getbestblockhash", json!([])).await, tip);
    assert_eq!(
        rpc.call("getrawmempool", json!([]))
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Appending after the repair works.
    let hashes = rpc
        .call(
            "generatetoaddress",
            json!([1, Key::new(62).address().to_string()]),
        )
        .await;
    let (_sim2, rpc2, _stop2) = {
        _stop.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        start(dir.path()).await
    };
    assert_eq!(rpc2.call("getbestblockhash", json!([])).await, hashes[0]);
}

#[tokio::test]
async fn auto_miner_mines_on_its_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = BitcoinSimConfig::new(dir.path());
    cfg.rpc_addr = "127.0.0.1:0".parse().expect("addr");
    cfg.initial_blocks = 0;
    cfg.block_interval = Some(Duration::from_millis(20));
    let stop = CancellationToken::new();
    let sim = BitcoinSim::start(cfg, stop.clone()).await.expect("start");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.tip().await.0 < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "auto-miner did not mine"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = sim.tip().await.0;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.tip().await.0, after, "miner stops on shutdown");
}

#[tokio::test]
async fn generateblock_mines_exactly_the_given_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sim, rpc, _stop) = start(dir.path()).await;
    let a = rpc
        .call(
            "sendtoaddress",
            json!([Key::new(71).address().to_string(), 1]),
        )
        .await;
    let b = rpc
        .call(
            "sendtoaddress",
            json!([Key::new(72).address().to_string(), 1]),
        )
        .await;
    let out = rpc
        .call(
            "generateblock",
            json!([Key::new(73).address().to_string(), [a.clone()]]),
        )
        .await;
    let block = rpc.call("getblock", json!([out["hash"].clone()])).await;
    assert_eq!(block["tx"].as_array().expect("txs").len(), 2);
    assert_eq!(block["tx"][1], a);
    assert_eq!(rpc.call("getrawmempool", json!([])).await, json!([b]));
}

#[tokio::test]
async fn bumpfee_and_double_spend_replace_a_deposit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, rpc, _stop) = start(dir.path()).await;
    let deposit = Key::new(81).address();
    let refund = Key::new(82).address();
    let first = sim
        .send_to_address(&deposit, Amount::from_sat(250_000))
        .await
        .expect("send");

    let bumped = rpc.call("bumpfee", json!([first.to_string()])).await;
    assert!(
        bumped["fee"].as_f64() > bumped["origfee"].as_f64(),
        "{bumped}"
    );
    let second = Txid::from_str(bumped["txid"].as_str().expect("txid")).expect("txid");
    assert_eq!(sim.mempool().await, vec![second]);
    // The bumped copy still pays the deposit address the same amount.
    let tx = rpc
        .call("getrawtransaction", json!([second.to_string(), true]))
        .await;
    assert!(tx["vout"]
        .as_array()
        .expect("vout")
        .iter()
        .any(
            |o| o["scriptPubKey"]["address"] == deposit.to_string() && o["value"] == json!(0.0025)
        ));

    // The payer takes the money back before it confirms.
    let third = sim
        .double_spend(&second, &refund)
        .await
        .expect("double spend");
    assert_eq!(sim.mempool().await, vec![third]);
    rpc.call("generatetoaddress", json!([1, refund.to_string()]))
        .await;
    let tx = rpc
        .call("getrawtransaction", json!([third.to_string(), true]))
        .await;
    assert_eq!(tx["confirmations"], 1);
    assert_eq!(tx["vout"].as_array().map(Vec::len), Some(1));
    let e = rpc
        .try_call("bumpfee", json!([third.to_string()]))
        .await
        .unwrap_err();
    assert_eq!(e.code, -5);
}
