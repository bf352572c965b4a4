//! The hot wallet's tables on SQLite and PostgreSQL: change addresses are
//! allocated once each under concurrency, outputs follow the node gateway's
//! reports, an output is spent by one signed payment only, held payments
//! come due, and approvals happen once.

use hot_wallet::repo::{PaymentRow, PaymentStatus, Repo, SpentInput, UtxoRow, UtxoState};
use infra::db::Db;

const NET: &str = "bitcoin-regtest";

fn utxo(txid: &str, vout: u32, sats: u64) -> UtxoRow {
    UtxoRow {
        network: NET.into(),
        txid: txid.into(),
        vout,
        address: format!("addr-{txid}-{vout}"),
        key_chain: 1,
        key_index: vout,
        value_sats: sats,
        confirmations: 0,
    }
}

fn intent(id: &str, amount: &str) -> PaymentRow {
    PaymentRow {
        payment_id: id.into(),
        swap_id: "00000000-0000-0000-0000-000000000001".into(),
        kind: "payout".into(),
        network: NET.into(),
        asset: "BTC".into(),
        address: "bcrt1qdest".into(),
        amount: amount.into(),
        status: PaymentStatus::Intent,
        txid: None,
        raw_tx: None,
        nonce: None,
        hold_reason: None,
        approved_by: None,
        created_at_ms: 0,
    }
}

async fn suite(db: Db) {
    let repo = Repo::open(db).await.unwrap();

    // Change addresses: 40 concurrent allocations, 40 distinct indexes from 1.
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let r = repo.clone();
        tasks.push(tokio::spawn(async move {
            r.allocate_change_address(NET, |i| Ok(format!("change-{i}")))
                .await
                .unwrap()
        }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        indexes.push(t.await.unwrap().0);
    }
    indexes.sort_unstable();
    assert_eq!(indexes, (1..=40).collect::<Vec<_>>());
    assert_eq!(
        repo.bitcoin_key_of(NET, "change-7").await.unwrap(),
        Some((1, 7))
    );
    assert_eq!(repo.bitcoin_key_of(NET, "nobody").await.unwrap(), None);

    // Outputs follow the reports; a dropped one stays dropped.
    let (a, b, c) = (
        utxo("aa", 0, 50_000),
        utxo("bb", 1, 70_000),
        utxo("cc", 2, 9_000),
    );
    repo.record_utxo(&a, UtxoState::Unconfirmed).await.unwrap();
    repo.record_utxo(&b, UtxoState::Unconfirmed).await.unwrap();
    repo.record_utxo(&c, UtxoState::Unconfirmed).await.unwrap();
    assert!(repo.spendable_utxos(NET, 1).await.unwrap().is_empty());
    repo.record_utxo(&a, UtxoState::Confirmed { depth: 1 })
        .await
        .unwrap();
    repo.record_utxo(&b, UtxoState::Confirmed { depth: 3 })
        .await
        .unwrap();
    repo.record_utxo(&c, UtxoState::Dropped).await.unwrap();
    repo.record_utxo(&c, UtxoState::Confirmed { depth: 2 })
        .await
        .unwrap();
    let spendable = repo.spendable_utxos(NET, 1).await.unwrap();
    assert_eq!(
        spendable
            .iter()
            .map(|u| (u.txid.as_str(), u.confirmations))
            .collect::<Vec<_>>(),
        vec![("aa", 1), ("bb", 3)]
    );
    assert_eq!(repo.spendable_utxos(NET, 2).await.unwrap().len(), 1);
    // A reorg takes a confirmation away.
    repo.record_utxo(&b, UtxoState::Unconfirmed).await.unwrap();
    assert_eq!(repo.spendable_utxos(NET, 1).await.unwrap().len(), 1);
    repo.record_utxo(&b, UtxoState::Confirmed { depth: 1 })
        .await
        .unwrap();

    // One output, one payment: the second payment spending `aa` records
    // nothing at all.
    repo.insert_intent(&intent("p1", "40000")).await.unwrap();
    repo.insert_intent(&intent("p2", "30000")).await.unwrap();
    let spend = |txid: &str, vout| SpentInput {
        txid: txid.into(),
        vout,
    };
    assert!(repo
        .record_signed_bitcoin("p1", "t1", "00", &[spend("aa", 0)])
        .await
        .unwrap());
    assert!(!repo
        .record_signed_bitcoin("p2", "t2", "00", &[spend("bb", 1), spend("aa", 0)])
        .await
        .unwrap());
    let p2 = repo.payment("p2").await.unwrap().unwrap();
    assert_eq!(p2.status, PaymentStatus::Intent);
    assert_eq!(p2.txid, None);
    let left = repo.spendable_utxos(NET, 1).await.unwrap();
    assert_eq!(left.len(), 1, "bb is still spendable: {left:?}");
    assert_eq!(left[0].txid, "bb");
    // Signed once only.
    assert!(!repo
        .record_signed_bitcoin("p1", "t1b", "00", &[spend("bb", 1)])
        .await
        .unwrap());

    // Held intents come due.
    repo.hold("p2", "insufficient confirmed funds", 1_000)
        .await
        .unwrap();
    assert!(repo.due_held(999).await.unwrap().is_empty());
    let due = repo.due_held(1_000).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].hold_reason.as_deref(),
        Some("insufficient confirmed funds")
    );

    // Approval: parked, listed, approved once, then due at once.
    repo.insert_intent(&intent("p3", "500000000"))
        .await
        .unwrap();
    repo.await_approval("p3", "over the limit").await.unwrap();
    let waiting = repo.awaiting_approval().await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].status, PaymentStatus::AwaitingApproval);
    assert!(
        !repo.approve("p2", "desk").await.unwrap(),
        "p2 was not waiting"
    );
    assert!(repo.approve("p3", "desk").await.unwrap());
    assert!(!repo.approve("p3", "desk").await.unwrap());
    let p3 = repo.payment("p3").await.unwrap().unwrap();
    assert_eq!(p3.status, PaymentStatus::Intent);
    assert_eq!(p3.approved_by.as_deref(), Some("desk"));
    // An approved payment is never parked again.
    repo.await_approval("p3", "again").await.unwrap();
    assert_eq!(
        repo.payment("p3").await.unwrap().unwrap().status,
        PaymentStatus::Intent
    );
    assert!(repo.awaiting_approval().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_sqlite() {
    let t = infra::testing::sqlite();
    suite(Db::connect(&t.url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres() {
    let t = infra::testing::postgres().await;
    let db = Db::connect(&t.url).await.unwrap();
    suite(db.clone()).await;
    db.pool().close().await;
}
