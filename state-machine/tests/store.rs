//! Repository tests of the swap store, written once and run against SQLite
//! and PostgreSQL.
//!
//! SQLite tests use a fresh file in a temporary directory. PostgreSQL tests
//! need a server URL in `TEST_DATABASE_URL` (`eval "$(scripts/pg.sh)"` sets
//! it); each test creates its own database `swap_test_<random>` and drops it
//! afterwards. Without the variable the PostgreSQL tests fail.

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use infra::db::Db;
use serde_json::json;
use state_machine::store::{
    AppendOutcome, CreateOutcome, NewEvent, NewSwap, OutboxMessage, StateUpdate, StoreError,
    SwapStore,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Fixtures

fn new_swap(key: Option<&str>) -> NewSwap {
    let swap_id = Uuid::new_v4();
    NewSwap {
        swap_id,
        idempotency_key: key.map(str::to_owned),
        deposit_chain: "bitcoin".into(),
        deposit_address: format!("bcrt1q{}", swap_id.simple()),
        state: "AwaitingDeposit".into(),
        terminal: false,
        data: json!({ "amount_sats": 150_000, "pair": "BTC/USDC" }),
        created_at_ms: 1_700_000_000_000,
    }
}

fn event(kind: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        kind: kind.into(),
        payload: json!({ "kind": kind }),
        occurred_at_ms: 1_700_000_000_500,
    }
}

fn message(topic: &str, swap_id: Uuid) -> OutboxMessage {
    OutboxMessage {
        message_id: Uuid::new_v4(),
        topic: topic.into(),
        key: swap_id.to_string(),
        payload: json!({ "swap_id": swap_id, "topic": topic }),
    }
}

fn update(state: &str, terminal: bool, at_ms: i64) -> StateUpdate {
    StateUpdate {
        state: state.into(),
        terminal,
        data: json!({ "state": state, "at": at_ms }),
        updated_at_ms: at_ms,
    }
}

async fn created(store: &SwapStore, swap: &NewSwap) -> Result<()> {
    let out = store
        .create(
            swap,
            &event("Accepted"),
            &[message("swap.created", swap.swap_id)],
        )
        .await?;
    ensure!(
        matches!(out, CreateOutcome::Created(_)),
        "expected Created, got {out:?}"
    );
    Ok(())
}

async fn outbox_count(store: &SwapStore) -> Result<usize> {
    Ok(store.outbox_pending(10_000).await?.len())
}

// ---------------------------------------------------------------------------
// The suite: each function gets a freshly created, empty database.

mod suite {
    use super::*;

    pub async fn create_get_and_idempotent_create(db: Db) -> Result<()> {
        let store = SwapStore::open(db).await?;
        // Opening twice (a restart) re-runs no migration and fails nothing.
        let store2 = SwapStore::open(store.db().clone()).await?;

        let swap = new_swap(Some("order-1"));
        let ev = event("Accepted");
        let out = store
            .create(&swap, &ev, &[message("swap.created", swap.swap_id)])
            .await?;
        let CreateOutcome::Created(rec) = out else {
            anyhow::bail!("expected Created, got {out:?}")
        };
        ensure!(rec.version == 1 && rec.state == "AwaitingDeposit" && !rec.terminal);

        let got = store
            .get(swap.swap_id)
            .await?
            .context("created swap not found")?;
        ensure!(got == rec, "stored {got:?} differs from returned {rec:?}");
        ensure!(got.data == swap.data);
        ensure!(store2.get_by_idempotency_key("order-1").await?.as_ref() == Some(&rec));
        ensure!(store.get_by_idempotency_key("order-2").await?.is_none());
        ensure!(
            store
                .get_by_deposit_address("bitcoin", &swap.deposit_address)
                .await?
                .as_ref()
                == Some(&rec)
        );
        ensure!(store
            .get_by_deposit_address("ethereum", &swap.deposit_address)
            .await?
            .is_none());
        ensure!(store.get(Uuid::new_v4()).await?.is_none());
        let events = store.events(swap.swap_id).await?;
        ensure!(events.len() == 1 && events[0].event_id == ev.event_id && events[0].version == 1);
        ensure!(events[0].payload == ev.payload && events[0].kind == "Accepted");
        ensure!(store.has_event(ev.event_id).await?);
        ensure!(!store.has_event(Uuid::new_v4()).await?);

        // Same idempotency key, otherwise a different swap: the first one comes back.
        let mut again = new_swap(Some("order-1"));
        again.state = "Other".into();
        let out = store
            .create(
                &again,
                &event("Accepted"),
                &[message("swap.created", again.swap_id)],
            )
            .await?;
        ensure!(
            out == CreateOutcome::Existing(rec.clone()),
            "expected Existing(first), got {out:?}"
        );
        ensure!(
            store.get(again.swap_id).await?.is_none(),
            "second swap must not be written"
        );
        ensure!(
            outbox_count(&store).await? == 1,
            "second create must not write outbox rows"
        );

        // Same swap id again (a retried create without key): Existing.
        let out = store.create(&swap, &event("Accepted"), &[]).await?;
        ensure!(matches!(out, CreateOutcome::Existing(ref r) if r.swap_id == swap.swap_id));

        // Deposit address taken by another swap: a domain error, nothing written.
        let mut thief = new_swap(Some("order-3"));
        thief.deposit_address = swap.deposit_address.clone();
        match store.create(&thief, &event("Accepted"), &[]).await {
            Err(StoreError::DepositAddressInUse { swap_id, chain, .. }) => {
                ensure!(swap_id == swap.swap_id && chain == "bitcoin")
            }
            other => anyhow::bail!("expected DepositAddressInUse, got {other:?}"),
        }
        ensure!(store.get(thief.swap_id).await?.is_none());

        // A creating event id already recorded: an error, nothing written.
        let reuse = new_swap(None);
        match store.create(&reuse, &ev, &[]).await {
            Err(StoreError::EventIdInUse(id)) => ensure!(id == ev.event_id),
            other => anyhow::bail!("expected EventIdInUse, got {other:?}"),
        }
        ensure!(store.get(reuse.swap_id).await?.is_none());
        Ok(())
    }

    pub async fn append_increments_version(db: Db) -> Result<()> {
        let store = SwapStore::open(db).await?;
        let swap = new_swap(None);
        created(&store, &swap).await?;

        let steps = [
            ("DepositSeen", false),
            ("DepositConfirmed", false),
            ("PaidOut", false),
            ("Completed", true),
        ];
        let mut ids = vec![];
        for (i, (state, terminal)) in steps.iter().enumerate() {
            let expected = i as i64 + 1;
            let ev = event(state);
            ids.push(ev.event_id);
            let at = 1_700_000_001_000 + expected;
            let out = store
                .append(
                    swap.swap_id,
                    expected,
                    &update(state, *terminal, at),
                    &ev,
                    &[message("swap.updated", swap.swap_id)],
                )
                .await?;
            ensure!(
                out == AppendOutcome::Applied {
                    version: expected + 1
                },
                "step {state}: {out:?}"
            );
            let rec = store.get(swap.swap_id).await?.context("swap vanished")?;
            ensure!(
                rec.version == expected + 1 && rec.state == *state && rec.terminal == *terminal
            );
            ensure!(rec.updated_at_ms == at && rec.created_at_ms == swap.created_at_ms);
            ensure!(rec.data == json!({ "state": state, "at": at }));
        }
        let events = store.events(swap.swap_id).await?;
        ensure!(events.iter().map(|e| e.version).collect::<Vec<_>>() == vec![1, 2, 3, 4, 5]);
        ensure!(events[1..].iter().map(|e| e.event_id).collect::<Vec<_>>() == ids);
        ensure!(events.iter().all(|e| e.swap_id == swap.swap_id));
        ensure!(outbox_count(&store).await? == 5);

        // Several outgoing messages in one transition, and none.
        let other = new_swap(None);
        created(&store, &other).await?;
        let msgs: Vec<_> = (0..3).map(|_| message("notify", other.swap_id)).collect();
        store
            .append(
                other.swap_id,
                1,
                &update("DepositSeen", false, 1),
                &event("Seen"),
                &msgs,
            )
            .await?;
        store
            .append(
                other.swap_id,
                2,
                &update("DepositConfirmed", false, 2),
                &event("Conf"),
                &[],
            )
            .await?;
        let pending = store.outbox_pending(100).await?;
        ensure!(
            pending.len() == 9,
            "expected 9 outbox rows, got {}",
            pending.len()
        );
        let tail: Vec<_> = pending[6..].iter().map(|r| r.message_id).collect();
        ensure!(
            tail == msgs.iter().map(|m| m.message_id).collect::<Vec<_>>(),
            "outbox order"
        );

        // Appending to a swap that doesn't exist.
        match store
            .append(Uuid::new_v4(), 1, &update("X", false, 1), &event("X"), &[])
            .await
        {
            Err(StoreError::NotFound(_)) => {}
            other => anyhow::bail!("expected NotFound, got {other:?}"),
        }

        // Active list and counts.
        let active = store.list_active(100).await?;
        ensure!(
            active.len() == 1 && active[0].swap_id == other.swap_id,
            "active: {active:?}"
        );
        let counts = store.count_by_state().await?;
        ensure!(counts.get("Completed") == Some(&1) && counts.get("DepositConfirmed") == Some(&1));
        ensure!(counts.len() == 2, "counts: {counts:?}");
        Ok(())
    }

    pub async fn stale_version_conflicts_and_writes_nothing(db: Db) -> Result<()> {
        let store = SwapStore::open(db).await?;
        let swap = new_swap(None);
        created(&store, &swap).await?;
        store
            .append(
                swap.swap_id,
                1,
                &update("DepositSeen", false, 10),
                &event("Seen"),
                &[message("t", swap.swap_id)],
            )
            .await?;
        let before = store.get(swap.swap_id).await?;
        let events_before = store.events(swap.swap_id).await?;
        let outbox_before = store.outbox_pending(100).await?;

        let stale = event("Seen again");
        match store
            .append(
                swap.swap_id,
                1,
                &update("Refunded", true, 20),
                &stale,
                &[message("t", swap.swap_id)],
            )
            .await
        {
            Err(StoreError::VersionConflict {
                swap_id,
                expected,
                actual,
            }) => {
                ensure!(swap_id == swap.swap_id && expected == 1 && actual == 2)
            }
            other => anyhow::bail!("expected VersionConflict, got {other:?}"),
        }
        // A version from the future conflicts too.
        match store
            .append(
                swap.swap_id,
                7,
                &update("Refunded", true, 20),
                &event("Y"),
                &[],
            )
            .await
        {
            Err(StoreError::VersionConflict {
                actual: 2,
                expected: 7,
                ..
            }) => {}
            other => anyhow::bail!("expected VersionConflict, got {other:?}"),
        }
        ensure!(store.get(swap.swap_id).await? == before, "swap changed");
        ensure!(
            store.events(swap.swap_id).await? == events_before,
            "events changed"
        );
        ensure!(
            store.outbox_pending(100).await? == outbox_before,
            "outbox changed"
        );
        ensure!(!store.has_event(stale.event_id).await?);
        Ok(())
    }

    pub async fn duplicate_event_is_a_noop(db: Db) -> Result<()> {
        let store = SwapStore::open(db).await?;
        let swap = new_swap(None);
        created(&store, &swap).await?;
        let ev = event("DepositSeen");
        let first = store
            .append(
                swap.swap_id,
                1,
                &update("DepositSeen", false, 10),
                &ev,
                &[message("t", swap.swap_id)],
            )
            .await?;
        ensure!(first == AppendOutcome::Applied { version: 2 });
        let snapshot = (
            store.get(swap.swap_id).await?,
            store.events(swap.swap_id).await?,
            outbox_count(&store).await?,
        );

        // Redelivered with the version the sender saw: duplicate, not a conflict.
        let out = store
            .append(
                swap.swap_id,
                1,
                &update("DepositSeen", false, 11),
                &ev,
                &[message("t", swap.swap_id)],
            )
            .await?;
        ensure!(
            out == AppendOutcome::Duplicate,
            "redelivery at old version: {out:?}"
        );
        // Redelivered by someone who already read the new version: duplicate too,
        // and the state does not move.
        let out = store
            .append(
                swap.swap_id,
                2,
                &update("DepositConfirmed", false, 12),
                &ev,
                &[message("t", swap.swap_id)],
            )
            .await?;
        ensure!(
            out == AppendOutcome::Duplicate,
            "redelivery at current version: {out:?}"
        );
        let now = (
            store.get(swap.swap_id).await?,
            store.events(swap.swap_id).await?,
            outbox_count(&store).await?,
        );
        ensure!(now == snapshot, "a duplicate wrote something");

        // The same event id against another swap is a duplicate as well.
        let other = new_swap(None);
        created(&store, &other).await?;
        let out = store
            .append(
                other.swap_id,
                1,
                &update("DepositSeen", false, 13),
                &ev,
                &[],
            )
            .await?;
        ensure!(out == AppendOutcome::Duplicate);
        ensure!(store.get(other.swap_id).await?.context("other")?.version == 1);
        Ok(())
    }

    /// A failure after the state update and the event insert, inside the
    /// transaction (the outbox insert hits a message id already used): nothing
    /// of the transition may remain.
    pub async fn failure_mid_transaction_rolls_back_everything(db: Db) -> Result<()> {
        let store = SwapStore::open(db).await?;
        let swap = new_swap(None);
        let used = message("swap.created", swap.swap_id);
        store
            .create(&swap, &event("Accepted"), std::slice::from_ref(&used))
            .await?;
        let before = (
            store.get(swap.swap_id).await?,
            store.events(swap.swap_id).await?,
            store.outbox_pending(100).await?,
        );

        let ev = event("DepositSeen");
        let msgs = [message("swap.updated", swap.swap_id), used.clone()];
        match store
            .append(
                swap.swap_id,
                1,
                &update("DepositSeen", false, 10),
                &ev,
                &msgs,
            )
            .await
        {
            Err(StoreError::OutboxMessageIdInUse(ids)) => ensure!(ids.contains(&used.message_id)),
            other => anyhow::bail!("expected OutboxMessageIdInUse, got {other:?}"),
        }
        let after = (
            store.get(swap.swap_id).await?,
            store.events(swap.swap_id).await?,
            store.outbox_pending(100).await?,
        );
        ensure!(after == before, "a failed transition left traces");
        ensure!(!store.has_event(ev.event_id).await?);

        // The same failure on create: no swap, no event.
        let next = new_swap(None);
        let ev2 = event("Accepted");
        match store
            .create(
                &next,
                &ev2,
                &[message("swap.created", next.swap_id), used.clone()],
            )
            .await
        {
            Err(StoreError::OutboxMessageIdInUse(_)) => {}
            other => anyhow::bail!("expected OutboxMessageIdInUse, got {other:?}"),
        }
        ensure!(store.get(next.swap_id).await?.is_none() && !store.has_event(ev2.event_id).await?);
        ensure!(store.outbox_pending(100).await?.len() == 1);

        // The store still works afterwards (no half-open transaction left on a pooled connection).
        let out = store
            .append(swap.swap_id, 1, &update("DepositSeen", false, 11), &ev, &[])
            .await?;
        ensure!(out == AppendOutcome::Applied { version: 2 });
        Ok(())
    }

    pub async fn outbox_pending_and_mark(db: Db) -> Result<()> {
        let store = SwapStore::open(db).await?;
        ensure!(store.outbox_pending(10).await?.is_empty());
        let swap = new_swap(None);
        created(&store, &swap).await?;
        for v in 1..=4 {
            store
                .append(
                    swap.swap_id,
                    v,
                    &update("S", false, v),
                    &event("E"),
                    &[message(&format!("t{v}"), swap.swap_id)],
                )
                .await?;
        }
        let all = store.outbox_pending(100).await?;
        ensure!(all.len() == 5);
        ensure!(
            all.windows(2).all(|w| w[0].seq < w[1].seq),
            "not oldest first"
        );
        ensure!(
            all.iter().map(|r| r.topic.as_str()).collect::<Vec<_>>()
                == ["swap.created", "t1", "t2", "t3", "t4"]
        );
        ensure!(all
            .iter()
            .all(|r| r.published_at_ms.is_none() && r.key == swap.swap_id.to_string()));
        ensure!(all[1].payload == json!({ "swap_id": swap.swap_id, "topic": "t1" }));

        let first_two = store.outbox_pending(2).await?;
        ensure!(first_two == all[..2]);
        store
            .outbox_mark_published(&[all[0].seq, all[1].seq, all[3].seq])
            .await?;
        let left = store.outbox_pending(100).await?;
        ensure!(left.iter().map(|r| r.seq).collect::<Vec<_>>() == vec![all[2].seq, all[4].seq]);
        // Marking again, marking unknown seqs and marking nothing are harmless.
        store.outbox_mark_published(&[all[0].seq, 999_999]).await?;
        store.outbox_mark_published(&[]).await?;
        ensure!(store.outbox_pending(100).await? == left);

        // A big batch crosses the statement chunk size.
        for v in 5..=5 {
            let msgs: Vec<_> = (0..700).map(|_| message("bulk", swap.swap_id)).collect();
            store
                .append(swap.swap_id, v, &update("S", false, v), &event("E"), &msgs)
                .await?;
        }
        let pending = store.outbox_pending(10_000).await?;
        ensure!(pending.len() == 702);
        store
            .outbox_mark_published(&pending.iter().map(|r| r.seq).collect::<Vec<_>>())
            .await?;
        ensure!(store.outbox_pending(10_000).await?.is_empty());
        Ok(())
    }

    pub async fn concurrent_appends_one_winner(db: Db) -> Result<()> {
        const TASKS: usize = 16;
        let store = SwapStore::open(db).await?;
        for round in 0..3 {
            let swap = new_swap(None);
            created(&store, &swap).await?;
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
            let mut handles = vec![];
            for i in 0..TASKS {
                let store = store.clone();
                let barrier = barrier.clone();
                let id = swap.swap_id;
                handles.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let ev = event(&format!("racer-{i}"));
                    let out = store
                        .append(
                            id,
                            1,
                            &update(&format!("Won-{i}"), false, i as i64),
                            &ev,
                            &[message("t", id)],
                        )
                        .await;
                    (i, ev.event_id, out)
                }));
            }
            let mut winners = vec![];
            for h in handles {
                let (i, event_id, out) = h.await?;
                match out {
                    Ok(AppendOutcome::Applied { version: 2 }) => winners.push((i, event_id)),
                    Err(StoreError::VersionConflict {
                        expected: 1,
                        actual: 2,
                        ..
                    }) => {}
                    other => anyhow::bail!("round {round} task {i}: unexpected {other:?}"),
                }
            }
            ensure!(
                winners.len() == 1,
                "round {round}: {} winners",
                winners.len()
            );
            let (i, event_id) = winners[0];
            let rec = store.get(swap.swap_id).await?.context("swap")?;
            ensure!(rec.version == 2 && rec.state == format!("Won-{i}"));
            let events = store.events(swap.swap_id).await?;
            ensure!(events.len() == 2 && events[1].event_id == event_id);
        }
        ensure!(
            outbox_count(&store).await? == 6,
            "one outbox row per create and per winner"
        );
        Ok(())
    }

    pub async fn concurrent_creates_same_key_one_swap(db: Db) -> Result<()> {
        const TASKS: usize = 8;
        let store = SwapStore::open(db).await?;
        let mut handles = vec![];
        for _ in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let swap = new_swap(Some("same-key"));
                store
                    .create(
                        &swap,
                        &event("Accepted"),
                        &[message("swap.created", swap.swap_id)],
                    )
                    .await
            }));
        }
        let mut created = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for h in handles {
            match h.await?? {
                CreateOutcome::Created(r) => {
                    created.insert(r.swap_id);
                    seen.insert(r.swap_id);
                }
                CreateOutcome::Existing(r) => {
                    seen.insert(r.swap_id);
                }
            }
        }
        ensure!(
            created.len() == 1 && seen == created,
            "created {created:?}, seen {seen:?}"
        );
        ensure!(outbox_count(&store).await? == 1);
        ensure!(store.count_by_state().await?.values().sum::<i64>() == 1);
        Ok(())
    }

    /// Everything committed is there after closing the pool and opening the
    /// database again.
    pub async fn reopen_keeps_everything(url: String) -> Result<()> {
        let store = SwapStore::open(Db::connect(&url).await?).await?;
        let swap = new_swap(Some("restart-key"));
        created(&store, &swap).await?;
        store
            .append(
                swap.swap_id,
                1,
                &update("DepositSeen", false, 5),
                &event("Seen"),
                &[message("t", swap.swap_id)],
            )
            .await?;
        let rec = store.get(swap.swap_id).await?;
        let events = store.events(swap.swap_id).await?;
        let outbox = store.outbox_pending(100).await?;
        store.outbox_mark_published(&[outbox[0].seq]).await?;
        store.db().pool().close().await;
        drop(store);

        let store = SwapStore::open(Db::connect(&url).await?).await?;
        ensure!(store.get(swap.swap_id).await? == rec);
        ensure!(store.get_by_idempotency_key("restart-key").await? == rec);
        ensure!(store.events(swap.swap_id).await? == events);
        ensure!(store.outbox_pending(100).await? == outbox[1..]);
        let out = store
            .append(
                swap.swap_id,
                2,
                &update("DepositConfirmed", false, 6),
                &event("Conf"),
                &[],
            )
            .await?;
        ensure!(out == AppendOutcome::Applied { version: 3 });
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Databases

/// Runs each suite function against a fresh SQLite file and a fresh
/// PostgreSQL database.
macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let t = infra::testing::sqlite();
                    let db = infra::db::Db::connect(&t.url).await.expect("open sqlite");
                    super::suite::$name(db).await.unwrap();
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reopen_keeps_everything() {
                let t = infra::testing::sqlite();
                super::suite::reopen_keeps_everything(t.url.clone()).await.unwrap();
            }
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let t = infra::testing::postgres().await;
                    let db = infra::db::Db::connect(&t.url).await.expect("open postgres");
                    let result = super::suite::$name(db.clone()).await;
                    db.pool().close().await;
                    result.unwrap();
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reopen_keeps_everything() {
                let t = infra::testing::postgres().await;
                super::suite::reopen_keeps_everything(t.url.clone()).await.unwrap();
            }
        }
    };
}

both_databases!(
    create_get_and_idempotent_create,
    append_increments_version,
    stale_version_conflicts_and_writes_nothing,
    duplicate_event_is_a_noop,
    failure_mid_transaction_rolls_back_everything,
    outbox_pending_and_mark,
    concurrent_appends_one_winner,
    concurrent_creates_same_key_one_swap,
);
