//! A hardware-wallet user: the app asks for a PSBT paying the deposit from
//! the user's UTXO (with its BIP32 key origin), a signer that knows nothing
//! of the engine (the `bitcoin` crate's BIP174 signer holding the user's
//! master key) signs it, the app finalizes it and hands it to the relay
//! endpoint, and the swap completes. Bad PSBT requests and relays of
//! transactions that do not pay the deposit are refused with a reason.

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

#[tokio::test]
async fn a_psbt_signed_by_an_independent_signer_pays_the_deposit_through_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tests::start_engine(dir.path()).await;
    let api = format!("http://{}/v1", engine.gateway_addr);
    let rpc = engine.bitcoin_rpc_url.clone();

    // The user's wallet: a BIP32 master key, BIP84 receive and change keys.
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(BtcNetwork::Regtest, &[7u8; 32]).unwrap();
    let fingerprint = master.fingerprint(&secp);
    let key_at = |path: &str| {
        let path = DerivationPath::from_str(path).unwrap();
        let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).unwrap());
        let pk = CompressedPublicKey(xpub.public_key);
        (
            bitcoin::Address::p2wpkh(&pk, BtcNetwork::Regtest),
            hex::encode(pk.to_bytes()),
        )
    };
    let (receive, receive_pk) = key_at("m/84'/1'/0'/0/0");
    let (change, change_pk) = key_at("m/84'/1'/0'/1/0");

    // Fund the user's address from the node's faucet; one confirmation.
    let funding_txid = btc_rpc(&rpc, "sendtoaddress", json!([receive.to_string(), "0.01"]))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let miner = btc_rpc(&rpc, "getnewaddress", json!([])).await;
    btc_rpc(&rpc, "generatetoaddress", json!([1, miner])).await;
    let funding = btc_rpc(&rpc, "getrawtransaction", json!([funding_txid, true])).await;
    let vout = funding["vout"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["scriptPubKey"]["address"] == receive.to_string())
        .unwrap()["n"]
        .as_u64()
        .unwrap();

    // Quote and swap.
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
               "refund_address": change.to_string(), "idempotency_key": "hw-1"}),
    )
    .await;
    assert_eq!(status, 201, "{swap}");
    let swap_id = swap["swap_id"].as_str().unwrap().to_owned();
    let deposit_address = swap["deposit"]["address"].as_str().unwrap().to_owned();

    let input = json!({
        "txid": funding_txid, "vout": vout, "address": receive.to_string(), "amount": "0.01",
        "previous_tx": funding["hex"],
        "key_origin": {"fingerprint": fingerprint.to_string(), "path": "m/84'/1'/0'/0/0", "pubkey": receive_pk}
    });

    // Refusals first: inputs that cannot cover the deposit, a wrong-network
    // change address, an absurd fee rate.
    let mut short = input.clone();
    short["amount"] = json!("0.001");
    short["previous_tx"] = Value::Null;
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"inputs": [short], "change_address": change.to_string()}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "invalid_amount");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("inputs total 0.001 BTC"),
        "{err}"
    );
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"inputs": [input], "change_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "invalid_address");
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"inputs": [input], "change_address": change.to_string(), "fee_rate_sat_vb": 100000}),
    )
    .await;
    assert_eq!(status, 400, "{err}");

    // The PSBT, with the change's key origin so the signer recognises it.
    let (status, answer) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"inputs": [input], "change_address": change.to_string(), "fee_rate_sat_vb": 3,
               "change_key_origin": {"fingerprint": fingerprint.to_string(), "path": "m/84'/1'/0'/1/0", "pubkey": change_pk}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["psbt"].as_str().unwrap())
        .unwrap();
    let mut psbt = Psbt::deserialize(&bytes).unwrap();
    let tx = &psbt.unsigned_tx;
    assert_eq!(tx.output.len(), 2);
    assert_eq!(tx.output[0].script_pubkey.to_hex_string(), {
        let a = bitcoin::Address::from_str(&deposit_address)
            .unwrap()
            .assume_checked();
        a.script_pubkey().to_hex_string()
    });
    assert_eq!(tx.output[0].value.to_sat(), 500_000);
    assert!(tx.input[0].sequence.is_rbf());
    let fee = psbt.fee().unwrap().to_sat();
    assert_eq!(fee.to_string(), answer["fee_base_units"].as_str().unwrap());
    assert_eq!(fee, 3 * answer["vsize"].as_u64().unwrap());
    assert_eq!(tx.output[1].value.to_sat(), 1_000_000 - 500_000 - fee);
    assert!(psbt.outputs[1].bip32_derivation.len() == 1);

    // The independent signer signs what its key origins say is its own.
    let signed = psbt.sign(&master, &secp).expect("signer signs its input");
    assert_eq!(signed.len(), 1);
    // Finalizer (BIP174 role): P2WPKH witness = [signature, pubkey].
    let (pk, sig) = psbt.inputs[0].partial_sigs.iter().next().unwrap();
    let witness = Witness::from_slice(&[sig.to_vec(), pk.to_bytes()]);
    psbt.inputs[0].final_script_witness = Some(witness);
    psbt.inputs[0].partial_sigs.clear();
    psbt.inputs[0].bip32_derivation.clear();
    let signed_tx = psbt.extract_tx().unwrap();
    let raw = hex::encode(bitcoin::consensus::serialize(&signed_tx));

    // A transaction that does not pay this deposit is not relayed.
    let stranger = btc_rpc(&rpc, "getrawtransaction", json!([funding_txid])).await;
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/relay"),
        json!({"raw_tx": stranger}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("no output paying"),
        "{err}"
    );
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/relay"),
        json!({"raw_tx": "zz"}),
    )
    .await;
    assert_eq!(status, 400, "{err}");

    // Relayed; relaying again is answered with the same txid.
    let (status, relayed) = post(
        format!("{api}/swaps/{swap_id}/relay"),
        json!({"raw_tx": raw}),
    )
    .await;
    assert_eq!(status, 200, "{relayed}");
    assert_eq!(relayed["txid"], signed_tx.compute_txid().to_string());
    let (status, again) = post(
        format!("{api}/swaps/{swap_id}/relay"),
        json!({"raw_tx": raw}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["txid"], relayed["txid"]);

    // Mined; the swap completes with one payout.
    let miner = btc_rpc(&rpc, "getnewaddress", json!([])).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let view = loop {
        btc_rpc(&rpc, "generatetoaddress", json!([1, miner])).await;
        let view: Value = reqwest::get(format!("{api}/swaps/{swap_id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["status"] == "completed" {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck: {view}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(view["deposits"][0]["txid"], relayed["txid"]);
    assert!(view["payout"]["txid"].as_str().is_some());

    // A completed swap takes no more deposits, so no more PSBTs.
    let (status, err) = post(
        format!("{api}/swaps/{swap_id}/psbt"),
        json!({"inputs": [input], "change_address": change.to_string()}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    engine.stop().await;
}
