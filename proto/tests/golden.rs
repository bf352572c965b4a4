//! Every API message and event payload: a round trip through JSON, and a
//! golden file per message type so that a schema change shows in review.
//! `UPDATE_GOLDEN=1 cargo test -p proto --test golden` rewrites the files.

use std::fmt::Debug;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::TimeZone;
use proto::api::*;
use proto::event::{ChainEvent, Envelope, SwapStatusChanged, TxStatus};
use proto::{Amount, AssetId, EventId, Network, Pair, Price, QuoteId, SwapId, Timestamp};
use rust_decimal_macros::dec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

fn t(secs: i64) -> Timestamp {
    chrono::Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n)
}

fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(name: &str, value: &T) {
    let json = serde_json::to_string_pretty(value).unwrap() + "\n";
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{name} does not survive a JSON round trip");

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &json).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("missing golden file {path:?}; run with UPDATE_GOLDEN=1 to create it")
    });
    assert_eq!(
        json, golden,
        "{name}'s JSON changed; if intended, run with UPDATE_GOLDEN=1 and review the diff"
    );
    // The golden file itself still parses into the same value.
    let parsed: T = serde_json::from_str(&golden).unwrap();
    assert_eq!(&parsed, value);
}

/// One golden file per message type, named by the message's `type`
/// (with its `status` where one type has several).
fn check_each<T: Serialize + DeserializeOwned + PartialEq + Debug>(prefix: &str, values: &[T]) {
    let mut names = std::collections::BTreeSet::new();
    for v in values {
        let json = serde_json::to_value(v).unwrap();
        let mut name = format!("{prefix}_{}", json["type"].as_str().unwrap());
        if let Some(status) = json.get("status").and_then(|s| s.as_str()) {
            name = format!("{name}_{status}");
        }
        assert!(
            names.insert(name.clone()),
            "two samples would share {name}.json"
        );
        check(&name, v);
    }
}

fn btc() -> AssetId {
    AssetId::new("BTC").unwrap()
}
fn eth() -> AssetId {
    AssetId::new("ETH").unwrap()
}

fn quote() -> Quote {
    Quote {
        quote_id: QuoteId(id(1)),
        from: btc(),
        to: eth(),
        amount_in: "0.015".into(),
        amount_in_base_units: Amount::from_base_units(1_500_000),
        amount_out: "0.4312".into(),
        amount_out_base_units: Amount::from_base_units(431_200_000_000_000_000),
        price: Price(dec!(28.746666666666666667)),
        network_fee: "0.000042".into(),
        partner_fee: None,
        created_at: t(0),
        expires_at: t(30),
        signature: "ab".repeat(32),
    }
}

fn swap_view() -> SwapView {
    SwapView {
        swap_id: SwapId(id(2)),
        status: SwapStatus::Confirming,
        quote_id: QuoteId(id(1)),
        from: btc(),
        to: eth(),
        amount_in: "0.015".into(),
        amount_out: "0.4312".into(),
        price: Price(dec!(28.746666666666666667)),
        deposit: DepositInstructions {
            network: Network::from_str("bitcoin-regtest").unwrap(),
            asset: btc(),
            address: "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".into(),
            amount: "0.015".into(),
            amount_base_units: Amount::from_base_units(1_500_000),
            deadline: t(3600),
            payment_uri: "bitcoin:bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw?amount=0.015".into(),
            required_confirmations: 2,
        },
        payout_address: "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into(),
        refund_address: Some("bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".into()),
        deposits: vec![DepositView {
            txid: "aa".repeat(32),
            output: 1,
            amount: "0.015".into(),
            amount_base_units: Amount::from_base_units(1_500_000),
            confirmations: 1,
            disposition: "pending".into(),
        }],
        payout: Some(PaymentView {
            payment_id: id(3).to_string(),
            asset: eth(),
            address: "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into(),
            amount: "0.4312".into(),
            amount_base_units: Amount::from_base_units(431_200_000_000_000_000),
            txid: None,
            status: "pending".into(),
            confirmations: 0,
        }),
        refunds: vec![],
        reason: None,
        created_at: t(1),
        updated_at: t(200),
    }
}

#[test]
fn rest_messages() {
    check(
        "rfq_request",
        &RfqRequest {
            from: "BTC".into(),
            to: "ETH".into(),
            amount: "0.015".into(),
            amount_side: AmountSide::From,
        },
    );
    check("quote", &quote());
    check(
        "accept_request",
        &AcceptRequest {
            quote_id: id(1).to_string(),
            payout_address: "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into(),
            refund_address: Some("bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".into()),
            idempotency_key: "wallet-7f3a-1".into(),
        },
    );
    check(
        "refund_address_request",
        &RefundAddressRequest {
            refund_address: "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".into(),
        },
    );
    check("swap_view", &swap_view());
    check(
        "indicative_prices",
        &IndicativePrices {
            pair: Pair::from_str("BTC/ETH").unwrap(),
            rungs: vec![LadderRung {
                amount_in: "0.1".into(),
                amount_out: "2.87".into(),
                price: Price(dec!(28.7)),
            }],
            at: t(5),
        },
    );
    let origin = KeyOrigin {
        fingerprint: "d34db33f".into(),
        path: "m/84'/1'/0'/0/0".into(),
        pubkey: "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c".into(),
    };
    check(
        "psbt_request",
        &PsbtRequest {
            descriptors: vec![],
            inputs: vec![PsbtInput {
                txid: "5f2c0e6fa4b1c8d3e9f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5".into(),
                vout: 1,
                address: "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".into(),
                amount: "0.01".into(),
                previous_tx: None,
                key_origin: Some(origin.clone()),
            }],
            change_address: "bcrt1q6rlaztmgg45n9ajh22rd64gkeqnmjygc5fxdl4".into(),
            change_key_origin: Some(origin),
            fee_rate_sat_vb: Some(3),
        },
    );
    check(
        "psbt_response",
        &PsbtResponse {
            psbt: "cHNidP8BAHECAAAAAQ==".into(),
            fee: "0.00000423".into(),
            fee_base_units: Amount::from_base_units(423),
            fee_rate_sat_vb: 3,
            vsize: 141,
            change: Some("0.00499577".into()),
        },
    );
    check(
        "eth_transaction_request",
        &EthTransactionRequest {
            from: "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into(),
        },
    );
    check(
        "unsigned_eth_transaction",
        &UnsignedEthTransaction {
            tx_type: "0x2".into(),
            chain_id: "0x7a69".into(),
            nonce: "0x0".into(),
            from: "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into(),
            to: "0x738b46F8018aB7F1C4b563cF032a0b973d19b9F3".into(),
            value: "0x2bdc545d6b4b8700".into(),
            data: "0x".into(),
            gas: "0x5208".into(),
            max_fee_per_gas: "0x77359400".into(),
            max_priority_fee_per_gas: "0x3b9aca00".into(),
            unsigned_payload: "0x02ef827a6980843b9aca008477359400825208".into(),
            signing_hash: "0x5f2c0e6fa4b1c8d3e9f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5"
                .into(),
        },
    );
    check(
        "relay_request",
        &RelayRequest {
            raw_tx: "02000000000101".into(),
        },
    );
    check(
        "relay_response",
        &RelayResponse {
            txid: "5f2c0e6fa4b1c8d3e9f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5".into(),
        },
    );
    check(
        "api_error",
        &ApiError::new(
            ErrorCode::QuoteExpired,
            "quote 01900000-0000-7000-8000-000000000001 expired at 2026-09-21T14:13:50Z",
        ),
    );
}

#[test]
fn websocket_messages() {
    let client = vec![
        ClientMessage::Subscribe {
            pairs: vec!["BTC/ETH".into()],
        },
        ClientMessage::Unsubscribe {
            pairs: vec!["BTC/ETH".into()],
        },
        ClientMessage::Rfq {
            request_id: Some("r1".into()),
            from: "BTC".into(),
            to: "ETH".into(),
            amount: "0.015".into(),
            amount_side: AmountSide::From,
        },
        ClientMessage::Accept {
            request_id: Some("r2".into()),
            quote_id: id(1).to_string(),
            payout_address: "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into(),
            refund_address: None,
            idempotency_key: "k1".into(),
        },
        ClientMessage::WatchSwaps {
            swap_ids: vec![id(2).to_string()],
        },
        ClientMessage::Ping {
            nonce: Some("n".into()),
        },
    ];
    check_each("ws_client", &client);
    let server = vec![
        ServerMessage::Prices(IndicativePrices {
            pair: Pair::from_str("BTC/ETH").unwrap(),
            rungs: vec![LadderRung {
                amount_in: "0.1".into(),
                amount_out: "2.87".into(),
                price: Price(dec!(28.7)),
            }],
            at: t(5),
        }),
        ServerMessage::Subscribed {
            pairs: vec![Pair::from_str("BTC/ETH").unwrap()],
        },
        ServerMessage::Quote {
            request_id: Some("r1".into()),
            quote: quote(),
        },
        ServerMessage::Swap {
            request_id: Some("r2".into()),
            swap: swap_view(),
        },
        ServerMessage::SwapStatus { swap: swap_view() },
        ServerMessage::Pong { nonce: None },
        ServerMessage::Error {
            request_id: None,
            code: ErrorCode::BadRequest,
            message: "unknown message type \"hello\"".into(),
        },
    ];
    check_each("ws_server", &server);
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_str::<ClientMessage>(r#"{"type":"ping","nonce":"a","x":1}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field"), "{err}");
    let err = serde_json::from_str::<RfqRequest>(
        r#"{"from":"BTC","to":"ETH","amount":"1","amount_sid":"to"}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `amount_sid`"), "{err}");
}

/// A transaction event written before `reverted` existed reads as not
/// reverted; the new field changes no event id.
#[test]
fn transaction_events_without_reverted_read_as_succeeded() {
    let old = r#"{"type":"transaction","network":"ethereum-dev","txid":"0xdd","status":"confirmed","block_height":41,"block_hash":"0xcc","depth":1}"#;
    let e: ChainEvent = serde_json::from_str(old).unwrap();
    let ChainEvent::Transaction { reverted, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(!reverted);
    let mut failed = e.clone();
    if let ChainEvent::Transaction { reverted, .. } = &mut failed {
        *reverted = true;
    }
    assert_eq!(e.event_id(), failed.event_id());
}

/// A native transfer (output 0) and a token transfer (output 1) in one
/// transaction to one address are two facts with two ids.
#[test]
fn native_and_token_outputs_of_one_transaction_have_distinct_ids() {
    let network = Network::from_str("ethereum-dev").unwrap();
    let out = |output, asset: AssetId| ChainEvent::Output {
        network,
        txid: format!("0x{}", "dd".repeat(32)),
        output,
        address: "0x4242424242424242424242424242424242424242".into(),
        asset,
        amount: Amount::from_base_units(5),
        status: TxStatus::Seen,
    };
    assert_ne!(
        out(0, eth()).event_id(),
        out(1, AssetId::new("USDC").unwrap()).event_id()
    );
}

#[test]
fn chain_events() {
    let network = Network::from_str("bitcoin-regtest").unwrap();
    let events = vec![
        ChainEvent::Output {
            network,
            txid: "aa".repeat(32),
            output: 1,
            address: "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".into(),
            asset: btc(),
            amount: Amount::from_base_units(1_500_000),
            status: TxStatus::Confirmed {
                block_height: 103,
                block_hash: "bb".repeat(32),
                depth: 2,
            },
        },
        ChainEvent::Output {
            network,
            txid: "aa".repeat(32),
            output: 1,
            address: "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".into(),
            asset: btc(),
            amount: Amount::from_base_units(1_500_000),
            status: TxStatus::Dropped {
                replaced_by: Some("cc".repeat(32)),
            },
        },
        ChainEvent::Transaction {
            network: Network::from_str("ethereum-dev").unwrap(),
            txid: format!("0x{}", "dd".repeat(32)),
            reverted: false,
            status: TxStatus::Seen,
        },
        ChainEvent::Transaction {
            network: Network::from_str("ethereum-dev").unwrap(),
            txid: format!("0x{}", "dd".repeat(32)),
            reverted: true,
            status: TxStatus::Confirmed {
                block_height: 41,
                block_hash: format!("0x{}", "cc".repeat(32)),
                depth: 1,
            },
        },
        ChainEvent::Transaction {
            network,
            txid: "ee".repeat(32),
            reverted: false,
            status: TxStatus::Unconfirmed {
                block_hash: "bb".repeat(32),
            },
        },
        ChainEvent::BlockConnected {
            network,
            height: 103,
            hash: "bb".repeat(32),
            parent_hash: "99".repeat(32),
        },
        ChainEvent::BlockDisconnected {
            network,
            height: 103,
            hash: "bb".repeat(32),
        },
        ChainEvent::Tip {
            network,
            height: 103,
            hash: "bb".repeat(32),
        },
        ChainEvent::Finalized {
            network: Network::Ethereum(proto::EthereumNetwork::Dev),
            height: 40,
            hash: format!("0x{}", "cc".repeat(32)),
        },
    ];
    let tip = Envelope::new(
        events[events.len() - 2].event_id(),
        t(9),
        events[events.len() - 2].clone(),
    );
    assert_eq!(
        (tip.kind.as_str(), tip.key.as_str()),
        ("chain.tip", "bitcoin-regtest")
    );
    check_each("chain_event", &events);
    let envelope = Envelope::new(events[0].event_id(), t(9), events[0].clone());
    assert_eq!(envelope.kind, "chain.output");
    assert_eq!(envelope.key, "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw");
    check("envelope_chain_output", &envelope);
    check(
        "envelope_swap_status",
        &Envelope::new(
            EventId(id(9)),
            t(10),
            SwapStatusChanged {
                version: 4,
                swap: swap_view(),
            },
        ),
    );
}
