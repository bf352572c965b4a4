//! A hardware-wallet app that hands over its account descriptor instead of
//! listing UTXOs: the gateway has the node find them (`scantxoutset`, on
//! the simulated bitcoind with Bitcoin Core's request and answer), builds
//! the PSBT with each input's key origin, an independent signer holding
//! the master key signs every input, and the relayed transaction completes
//! the swap. A confirmed UTXO is found; an unconfirmed one is not.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{CompressedPublicKey, Network as BtcNetwork, Witness};
use serde_json::{json, Value};
use tests::btc_rpc;

async fn post(url: String, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psbt_from_the_wallets_descriptor_spends_its_confirmed_utxos() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let api = format!("http://{}/v1", engine.gateway_addr);
    let rpc = engine.bitcoin_rpc_url.clone();

    let secp = Secp256k1::new();
    let master = Xpriv::new_master(BtcNetwork::Regtest, &[9u8; 32]).unwrap();
    let fingerprint = master.fingerprint(&secp);
    let account_path = DerivationPath::from_str("m/84'/1'/0'").unwrap();
    let account = Xpub::from_priv(&secp, &master.derive_priv(&secp, &account_path).unwrap());
    let address_at = |chain: u32, index: u32| {
        let path = DerivationPath::from_str(&format!("m/84'/1'/0'/{chain}/{index}")).unwrap();
        let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).unwrap());
        bitcoin::Address::p2wpkh(&CompressedPublicKey(xpub.public_key), BtcNetwork::Regtest)
    };

    // Two confirmed UTXOs at receive indexes 3 and 5, one unconfirmed at 7.
    btc_rpc(
        &rpc,
        "sendtoaddress",
        json!([address_at(0, 3).to_string(), "0.004"]),
    )
    .await;
    btc_rpc(
        &rpc,
        "sendtoaddress",
        json!([address_at(0, 5).to_string(), "0.003"]),
    )
    .await;
    let miner = btc_rpc(&rpc, "getnewaddress", json!([])).await;
    btc_rpc(&rpc, "generatetoaddress", json!([1, miner])).await;
    btc_rpc(
        &rpc,
        "sendtoaddress",
        json!([address_at(0, 7).to_string(), "0.002"]),
    )
    .await;

    let (status, quote) = post(
        format!("{api}/quotes"),
        json!({"from": "BTC", "to": "ETH", "amount": "0.005"}),
    )
    .await;
    assert_eq!(status, 200, "{quote}");
    let payout = alloy_signer_local::PrivateKeySigner::random()
        .address()
        .to_checksum(None);
    let (status, swap) = post(
        format!("{api}/swaps"),
        json!({"quote_id": quote["quote_id"], "payout_address": payout,
               "idempotency_key": "descriptor-1"}),
    )
    .await;
    assert_eq!(status, 201, "{swap}");
    let swap_id = swap["swap_id"].as_str().unwrap().to_owned();
    let change = address_at(1, 0).to_string();

    // Refusals: a descriptor the node cannot read, one with no UTXO, both
    // inputs and descriptors.
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"descriptors": ["wpkh(nonsense)"], "change_address": change}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("refused"),
        "{err}"
    );
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"descriptors": [format!("wpkh({account}/2/*)")], "change_address": change}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("no spendable"),
        "{err}"
    );

    // The account descriptor, with its origin; the UTXOs are found.
    let descriptor = format!("wpkh([{fingerprint}/84h/1h/0h]{account}/0/*)");
    let (status, answer) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"descriptors": [descriptor], "change_address": change, "fee_rate_sat_vb": 2}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["psbt"].as_str().unwrap())
        .unwrap();
    let mut psbt = Psbt::deserialize(&bytes).unwrap();
    assert_eq!(psbt.inputs.len(), 2, "the unconfirmed UTXO is not spent");
    let mut paths: Vec<String> = psbt
        .inputs
        .iter()
        .map(|i| {
            let (_, (fp, path)) = i.bip32_derivation.iter().next().expect("key origin");
            assert_eq!(*fp, fingerprint);
            path.to_string()
        })
        .collect();
    paths.sort();
    assert_eq!(paths, ["84'/1'/0'/0/3", "84'/1'/0'/0/5"]);
    let fee = psbt.fee().unwrap().to_sat();
    assert_eq!(psbt.unsigned_tx.output[0].value.to_sat(), 500_000);
    assert_eq!(
        psbt.unsigned_tx.output[1].value.to_sat(),
        700_000 - 500_000 - fee
    );

    // Signed by the independent signer, finalized, relayed.
    let signed = psbt.sign(&master, &secp).expect("signer signs its inputs");
    assert_eq!(signed.len(), 2);
    for input in &mut psbt.inputs {
        let (pk, sig) = input.partial_sigs.iter().next().unwrap();
        input.final_script_witness = Some(Witness::from_slice(&[sig.to_vec(), pk.to_bytes()]));
        input.partial_sigs.clear();
        input.bip32_derivation.clear();
    }
    let tx = psbt.extract_tx().unwrap();
    let raw = hex::encode(bitcoin::consensus::serialize(&tx));
    let (status, relayed) = post(
        format!("{api}/swaps/{swap_id}/relay"),
        json!({"raw_tx": raw}),
    )
    .await;
    assert_eq!(status, 200, "{relayed}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        btc_rpc(&rpc, "generatetoaddress", json!([1, miner])).await;
        let view: Value = reqwest::get(format!("{api}/swaps/{swap_id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["status"] == "completed" {
            assert_eq!(view["deposits"][0]["txid"], relayed["txid"]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck: {view}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    engine.stop().await;
}
