//! Contract tests of the event bus: written once as functions of a bus, run
//! against `LocalBus` on a temporary SQLite file, `LocalBus` on a fresh
//! PostgreSQL database (server in `TEST_DATABASE_URL`; `scripts/pg.sh` starts
//! one) and `KafkaBus` on a real broker (address in `TEST_KAFKA_BROKERS`;
//! `scripts/kafka.sh` starts one).
//!
//! Filter with `cargo test -p infra --test bus local::`, `postgres::` or `kafka::`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use infra::bus::{BusError, Delivery, EventBus, Message, SharedBus, Subscription};

/// A fresh name, so tests never see each other's topics or groups.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Runs `f`, failing instead of hanging if it takes longer than `secs`.
async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// Everything the contract needs from a bus under test.
struct Fixture {
    bus: SharedBus,
    /// Longest wait for one message (Kafka needs a group join first).
    recv_secs: u64,
}

impl Fixture {
    async fn next(&self, sub: &mut Box<dyn Subscription>, what: &str) -> Delivery {
        within(self.recv_secs, what, sub.next())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn next_of(
        &self,
        next: &mut (impl Future<Output = Result<Delivery, BusError>> + Unpin),
    ) -> Delivery {
        within(self.recv_secs, "next", next)
            .await
            .unwrap_or_else(|e| panic!("next: {e}"))
    }

    async fn next_n(&self, sub: &mut Box<dyn Subscription>, n: usize, what: &str) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(
                self.next(sub, &format!("{what} ({i} of {n} received)"))
                    .await,
            );
        }
        out
    }

    async fn publish(&self, topic: &str, key: &str, payload: String) -> Message {
        let m = Message::new(key, payload.into_bytes());
        self.bus
            .publish(topic, m.clone())
            .await
            .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
        m
    }
}

fn text(d: &Delivery) -> String {
    String::from_utf8(d.message.payload.clone()).expect("payload is text")
}

mod contract {
    use super::*;

    /// A message comes back as published, both one published before the
    /// subscription and one published while the subscriber waits.
    pub async fn publish_and_consume(f: &Fixture) {
        let topic = unique("pc");
        let first = f.publish(&topic, "swap-1", "hello".into()).await;
        let mut sub = f
            .bus
            .subscribe(&topic, &unique("g"))
            .await
            .expect("subscribe");
        let d = f.next(&mut sub, "first message").await;
        assert_eq!(d.message, first);
        assert_eq!(d.topic, topic);
        assert!(d.offset >= 0 && d.partition >= 0, "{d:?}");

        let bus = f.bus.clone();
        let t = topic.clone();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let m = Message::new("swap-1", b"world".to_vec());
            bus.publish(&t, m.clone()).await.map(|()| m)
        });
        let d2 = f.next(&mut sub, "message published while waiting").await;
        let second = later.await.expect("publisher task").expect("publish");
        assert_eq!(d2.message, second);
        assert_eq!(d2.partition, d.partition, "same key, same partition");
        assert!(
            d2.offset > d.offset,
            "offsets grow: {} then {}",
            d.offset,
            d2.offset
        );
        sub.commit(&d2).await.expect("commit");

        // An empty payload and an odd key go through unchanged.
        let empty = f.publish(&topic, "ключ/κλειδί", String::new()).await;
        assert_eq!(f.next(&mut sub, "empty payload").await.message, empty);
    }

    /// Many keys published concurrently, each in order: every key's messages
    /// arrive in publish order, all from one partition, and keys use several
    /// partitions.
    pub async fn per_key_order(f: &Fixture) {
        const KEYS: usize = 24;
        const PER_KEY: usize = 12;
        let topic = unique("order");
        let mut tasks = Vec::new();
        for k in 0..KEYS {
            let bus = f.bus.clone();
            let topic = topic.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0..PER_KEY {
                    let m = Message::new(format!("key-{k}"), format!("{k}:{seq}").into_bytes());
                    bus.publish(&topic, m).await?;
                }
                Ok::<_, BusError>(())
            }));
        }
        for t in tasks {
            t.await.expect("publisher task").expect("publish");
        }
        let mut sub = f
            .bus
            .subscribe(&topic, &unique("g"))
            .await
            .expect("subscribe");
        let got = f
            .next_n(&mut sub, KEYS * PER_KEY, "all keyed messages")
            .await;
        let mut seqs: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for d in &got {
            let payload = text(d);
            let (k, seq) = payload.split_once(':').expect("k:seq payload");
            assert_eq!(d.message.key, format!("key-{k}"));
            seqs.entry(d.message.key.clone())
                .or_default()
                .push(seq.parse().expect("seq"));
            partitions
                .entry(d.message.key.clone())
                .or_default()
                .insert(d.partition);
            assert!(
                ids.insert(d.message.id.clone()),
                "duplicate delivery in one session: {d:?}"
            );
        }
        assert_eq!(seqs.len(), KEYS);
        for (key, s) in &seqs {
            assert_eq!(s, &(0..PER_KEY).collect::<Vec<_>>(), "order of {key}");
            assert_eq!(
                partitions[key].len(),
                1,
                "{key} spread over partitions {:?}",
                partitions[key]
            );
        }
        let used: BTreeSet<i32> = partitions.values().flatten().copied().collect();
        assert!(used.len() > 1, "all {KEYS} keys landed in one partition");
    }

    /// Two groups each receive every message.
    pub async fn two_groups_each_get_everything(f: &Fixture) {
        let topic = unique("groups");
        let mut sent = BTreeSet::new();
        for i in 0..30 {
            sent.insert(
                f.publish(&topic, &format!("k{}", i % 6), format!("m{i}"))
                    .await
                    .id,
            );
        }
        for name in ["a", "b"] {
            let mut sub = f
                .bus
                .subscribe(&topic, &unique(name))
                .await
                .expect("subscribe");
            let got: BTreeSet<String> = f
                .next_n(&mut sub, sent.len(), &format!("group {name}"))
                .await
                .into_iter()
                .map(|d| d.message.id)
                .collect();
            assert_eq!(got, sent, "group {name}");
        }
    }

    /// Messages read but not committed come again to the next subscription
    /// of the same group; committed ones don't.
    pub async fn uncommitted_are_redelivered(f: &Fixture) {
        let topic = unique("redeliver");
        let group = unique("g");
        let mut sent = Vec::new();
        for i in 0..5 {
            sent.push(f.publish(&topic, "one-key", format!("m{i}")).await);
        }
        {
            let mut sub = f.bus.subscribe(&topic, &group).await.expect("subscribe");
            let got = f.next_n(&mut sub, 5, "first reading").await;
            let ids: Vec<_> = got.iter().map(|d| d.message.id.clone()).collect();
            assert_eq!(ids, sent.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
            // Processed the first two only.
            sub.commit(&got[1]).await.expect("commit");
        }
        let mut sub = f.bus.subscribe(&topic, &group).await.expect("re-subscribe");
        let again = f.next_n(&mut sub, 3, "redelivery").await;
        let ids: Vec<_> = again.iter().map(|d| d.message.id.clone()).collect();
        assert_eq!(
            ids,
            sent[2..].iter().map(|m| m.id.clone()).collect::<Vec<_>>()
        );
    }

    /// After committing everything, a new subscription of the group sees only
    /// what is published afterwards.
    pub async fn committed_are_not_redelivered(f: &Fixture) {
        let topic = unique("committed");
        let group = unique("g");
        for i in 0..4 {
            f.publish(&topic, &format!("k{i}"), format!("m{i}")).await;
        }
        {
            let mut sub = f.bus.subscribe(&topic, &group).await.expect("subscribe");
            for d in f.next_n(&mut sub, 4, "first reading").await {
                sub.commit(&d).await.expect("commit");
            }
        }
        let mut sub = f.bus.subscribe(&topic, &group).await.expect("re-subscribe");
        let marker = f.publish(&topic, "k0", "after".into()).await;
        let d = f.next(&mut sub, "marker after committed messages").await;
        assert_eq!(d.message, marker, "a committed message was delivered again");
    }

    /// `next` is cancel-safe: a consumer that gives up waiting (a shutdown
    /// `select!`, a timeout) loses no message.
    pub async fn next_is_cancel_safe(f: &Fixture) {
        const N: usize = 40;
        let topic = unique("cancel");
        let mut sub = f
            .bus
            .subscribe(&topic, &unique("g"))
            .await
            .expect("subscribe");
        let mut sent = BTreeSet::new();
        let mut got = BTreeSet::new();
        let mut cancelled = 0u32;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(f.recv_secs * 2);
        let mut attempt = 0u32;
        while got.len() < N && tokio::time::Instant::now() < deadline {
            attempt += 1;
            // New messages keep arriving, so most waits have a read to do.
            if sent.len() < N {
                let i = sent.len();
                sent.insert(
                    f.publish(&topic, &format!("k{}", i % 5), format!("m{i}"))
                        .await
                        .id,
                );
            }
            let mut next = sub.next();
            if attempt.is_multiple_of(8) {
                // Every eighth wait runs to the end, so reading progresses.
                got.insert(f.next_of(&mut next).await.message.id);
                continue;
            }
            // The others are polled a few times, then dropped: abandoned at
            // different points of a read. Between polls the thread sleeps
            // (blocking on purpose) so the database or broker can answer.
            let mut done = false;
            for _ in 0..1 + attempt % 6 {
                if let std::task::Poll::Ready(d) = futures::poll!(&mut next) {
                    got.insert(d.expect("next").message.id);
                    done = true;
                    break;
                }
                std::thread::sleep(Duration::from_micros(u64::from(attempt * 37 % 400)));
            }
            if !done {
                cancelled += 1;
            }
        }
        assert_eq!(
            got, sent,
            "messages lost across {cancelled} cancelled waits"
        );
        assert!(
            cancelled > 0,
            "no wait was cancelled, the test proved nothing"
        );
    }

    /// Bad names are refused with errors that say so, and a delivery cannot
    /// be committed on another topic's subscription.
    pub async fn bad_input_is_refused(f: &Fixture) {
        let m = Message::new("k", b"x".to_vec());
        assert!(matches!(
            f.bus.publish("bad topic", m.clone()).await,
            Err(BusError::InvalidTopic(_))
        ));
        assert!(matches!(
            f.bus.publish("", m).await,
            Err(BusError::InvalidTopic(_))
        ));
        assert!(matches!(
            f.bus.subscribe("t", "").await.err(),
            Some(BusError::InvalidGroup(_))
        ));

        let topic = unique("foreign");
        f.publish(&topic, "k", "x".into()).await;
        let mut sub = f
            .bus
            .subscribe(&topic, &unique("g"))
            .await
            .expect("subscribe");
        let mut d = f.next(&mut sub, "message").await;
        d.topic = unique("other");
        let err = sub
            .commit(&d)
            .await
            .expect_err("commit of a foreign delivery");
        assert!(matches!(err, BusError::ForeignDelivery { .. }), "{err}");
    }
}

/// Consumer lag: published minus committed, per group and topic, summed
/// over partitions.
async fn consumer_lag_counts(bus: &infra::bus::LocalBus) {
    within(30, "consumer lag", async {
        let topic = unique("lag");
        let group = unique("g");
        for i in 0..5 {
            let m = Message::new(format!("k{i}"), b"x".to_vec());
            bus.publish(&topic, m).await.expect("publish");
        }
        let mut sub = bus.subscribe(&topic, &group).await.expect("subscribe");
        let lag = |all: Vec<infra::bus::ConsumerLag>| {
            all.into_iter()
                .find(|l| l.topic == topic && l.group == group)
                .map(|l| l.messages)
        };
        // A group that never committed has no position yet.
        assert_eq!(lag(bus.consumer_lag().await.expect("lag")), None);
        let mut read = Vec::new();
        for _ in 0..5 {
            read.push(sub.next().await.expect("next"));
        }
        // Commit the first delivery of each partition seen.
        let mut committed = std::collections::BTreeSet::new();
        let mut commits = 0;
        for d in &read {
            if committed.insert(d.partition) {
                sub.commit(d).await.expect("commit");
                commits += 1;
            }
        }
        assert_eq!(
            lag(bus.consumer_lag().await.expect("lag")),
            Some(5 - commits)
        );
        for d in &read {
            sub.commit(d).await.expect("commit");
        }
        assert_eq!(lag(bus.consumer_lag().await.expect("lag")), Some(0));
    })
    .await;
}

mod local {

    use infra::bus::{LocalBus, LocalConfig};

    use super::*;

    async fn open(path: &std::path::Path) -> LocalBus {
        let url = format!("sqlite:{}", path.display());
        LocalBus::connect(&url, LocalConfig::default())
            .await
            .expect("open local bus")
    }

    async fn fixture() -> (tempfile::TempDir, Fixture) {
        let dir = tempfile::tempdir().expect("temp dir");
        // Through the composition root's entry point, as the engine opens it.
        let url = format!("sqlite:{}", dir.path().join("bus.db").display());
        let db = infra::db::Db::connect(&url).await.expect("open database");
        let config = infra::bus::BusConfig::Local {
            db,
            config: LocalConfig::default(),
        };
        let bus = infra::bus::open(config).await.expect("open local bus");
        (dir, Fixture { bus, recv_secs: 10 })
    }

    #[tokio::test]
    async fn consumer_lag_counts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = open(&dir.path().join("bus.db")).await;
        super::consumer_lag_counts(&bus).await;
    }

    #[tokio::test]
    async fn publish_and_consume() {
        let (_dir, f) = fixture().await;
        within(30, "publish_and_consume", contract::publish_and_consume(&f)).await;
    }

    #[tokio::test]
    async fn per_key_order() {
        let (_dir, f) = fixture().await;
        within(60, "per_key_order", contract::per_key_order(&f)).await;
    }

    #[tokio::test]
    async fn two_groups_each_get_everything() {
        let (_dir, f) = fixture().await;
        within(
            30,
            "two_groups",
            contract::two_groups_each_get_everything(&f),
        )
        .await;
    }

    #[tokio::test]
    async fn uncommitted_are_redelivered() {
        let (_dir, f) = fixture().await;
        within(30, "uncommitted", contract::uncommitted_are_redelivered(&f)).await;
    }

    #[tokio::test]
    async fn committed_are_not_redelivered() {
        let (_dir, f) = fixture().await;
        within(30, "committed", contract::committed_are_not_redelivered(&f)).await;
    }

    #[tokio::test]
    async fn next_is_cancel_safe() {
        let (_dir, f) = fixture().await;
        within(30, "cancel_safe", contract::next_is_cancel_safe(&f)).await;
    }

    #[tokio::test]
    async fn bad_input_is_refused() {
        let (_dir, f) = fixture().await;
        within(30, "bad_input", contract::bad_input_is_refused(&f)).await;
    }

    /// Everything is in the database: after reopening the file, a group
    /// resumes after its last commit, a new group reads from the start, and
    /// offsets continue.
    #[tokio::test]
    async fn survives_reopening_the_database() {
        within(30, "reopen", async {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("bus.db");
            let topic = unique("reopen");
            let group = unique("g");
            let mut sent = Vec::new();
            {
                let bus = open(&path).await;
                for i in 0..3 {
                    let m = Message::new("swap-7", format!("m{i}").into_bytes());
                    bus.publish(&topic, m.clone()).await.expect("publish");
                    sent.push(m);
                }
                let mut sub = bus.subscribe(&topic, &group).await.expect("subscribe");
                let d = sub.next().await.expect("next");
                assert_eq!(d.message, sent[0]);
                sub.commit(&d).await.expect("commit");
                // Read but not committed: must come again after reopening.
                assert_eq!(sub.next().await.expect("next").message, sent[1]);
                drop(sub);
                bus.db().pool().close().await;
            }
            let bus = open(&path).await;
            let mut sub = bus
                .subscribe(&topic, &group)
                .await
                .expect("subscribe after reopen");
            let d1 = sub.next().await.expect("next");
            let d2 = sub.next().await.expect("next");
            assert_eq!(
                (d1.message.clone(), d2.message.clone()),
                (sent[1].clone(), sent[2].clone())
            );

            let mut fresh = bus
                .subscribe(&topic, &unique("new"))
                .await
                .expect("subscribe new group");
            for m in &sent {
                assert_eq!(&fresh.next().await.expect("next").message, m);
            }
            let m = Message::new("swap-7", b"m3".to_vec());
            bus.publish(&topic, m.clone())
                .await
                .expect("publish after reopen");
            let d3 = sub.next().await.expect("next");
            assert_eq!(d3.message, m);
            assert_eq!(
                (d3.partition, d3.offset),
                (d2.partition, d2.offset + 1),
                "offsets continue"
            );
        })
        .await;
    }

    /// A subscriber on one handle sees messages published through another
    /// handle on the same file (another process, in production) by polling.
    #[tokio::test]
    async fn sees_messages_from_another_handle() {
        within(30, "two handles", async {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("bus.db");
            let writer = open(&path).await;
            let reader = open(&path).await;
            let topic = unique("shared");
            let mut sub = reader
                .subscribe(&topic, &unique("g"))
                .await
                .expect("subscribe");
            let m = Message::new("k", b"from elsewhere".to_vec());
            let w = writer.clone();
            let t = topic.clone();
            let sent = m.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                w.publish(&t, sent).await.expect("publish");
            });
            let started = std::time::Instant::now();
            assert_eq!(sub.next().await.expect("next").message, m);
            assert!(started.elapsed() < Duration::from_secs(5));
        })
        .await;
    }

    /// A topic keeps the partition count it was created with.
    #[tokio::test]
    async fn topic_partition_count_is_fixed_at_creation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = open(&dir.path().join("bus.db")).await;
        let topic = unique("parts");
        bus.ensure_topics(&[(&topic, 3)]).await.expect("ensure");
        bus.ensure_topics(&[(&topic, 5)])
            .await
            .expect("ensure again");
        assert_eq!(bus.partitions(&topic).await.expect("partitions"), 3);
        for config in [
            LocalConfig {
                batch: 0,
                ..LocalConfig::default()
            },
            LocalConfig {
                poll_interval: Duration::ZERO,
                ..LocalConfig::default()
            },
            LocalConfig {
                default_partitions: 0,
                ..LocalConfig::default()
            },
        ] {
            let err = LocalBus::open(bus.db().clone(), config.clone())
                .await
                .expect_err("bad config");
            assert!(
                matches!(
                    err,
                    BusError::InvalidConfig(_) | BusError::InvalidPartitions { .. }
                ),
                "{config:?}: {err}"
            );
        }
        assert!(matches!(
            bus.ensure_topics(&[("zero", 0)]).await,
            Err(BusError::InvalidPartitions { .. })
        ));
        for i in 0..20 {
            bus.publish(&topic, Message::new(format!("k{i}"), Vec::new()))
                .await
                .expect("publish");
        }
        let mut sub = bus.subscribe(&topic, "g").await.expect("subscribe");
        for _ in 0..20 {
            let d = within(5, "next", sub.next()).await.expect("next");
            assert!((0..3).contains(&d.partition));
            assert_eq!(d.partition, infra::bus::partition_for(&d.message.key, 3));
        }
    }
}

mod postgres {
    use std::sync::Arc;

    use infra::bus::{LocalBus, LocalConfig};
    use infra::db::Db;
    use sqlx::Executor;

    use super::*;

    /// A fresh database on the `TEST_DATABASE_URL` server, dropped on drop.
    struct PgDatabase {
        server_url: String,
        name: String,
    }

    fn server_url() -> String {
        let url = std::env::var("TEST_DATABASE_URL").unwrap_or_default();
        assert!(
            !url.trim().is_empty(),
            "TEST_DATABASE_URL is not set: start PostgreSQL with `eval \"$(scripts/pg.sh)\"` (as root) and run the tests again"
        );
        url
    }

    /// `url` with its database name replaced by `name`.
    fn with_database(url: &str, name: &str) -> String {
        let (base, query) = url
            .split_once('?')
            .map_or((url, None), |(b, q)| (b, Some(q)));
        let after_scheme = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[after_scheme..]
            .find('/')
            .map_or(base.len(), |i| after_scheme + i);
        let mut out = format!("{}/{name}", &base[..host_end]);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }

    async fn admin_execute(server_url: &str, sql: &str) {
        let admin = Db::connect(server_url).await.unwrap_or_else(|e| {
            panic!("cannot connect to TEST_DATABASE_URL (is the server up? run scripts/pg.sh): {e}")
        });
        admin
            .pool()
            .execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        admin.pool().close().await;
    }

    impl Drop for PgDatabase {
        fn drop(&mut self) {
            let server_url = self.server_url.clone();
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            // Own thread and runtime: drop may run inside a runtime.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(admin_execute(&server_url, &sql));
            })
            .join();
            if dropped.is_err() {
                eprintln!("could not drop test database {}", self.name);
            }
        }
    }

    async fn fixture() -> (PgDatabase, Fixture) {
        let server_url = server_url();
        let name = format!("bus_test_{}", uuid::Uuid::new_v4().simple());
        admin_execute(&server_url, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&server_url, &name);
        let db = PgDatabase { server_url, name };
        let bus = LocalBus::connect(&url, LocalConfig::default())
            .await
            .expect("open local bus on postgres");
        (
            db,
            Fixture {
                bus: Arc::new(bus),
                recv_secs: 10,
            },
        )
    }

    #[tokio::test]
    async fn consumer_lag_counts() {
        let server_url = server_url();
        let name = format!("bus_test_{}", uuid::Uuid::new_v4().simple());
        admin_execute(&server_url, &format!("CREATE DATABASE {name}")).await;
        let url = with_database(&server_url, &name);
        let _db = PgDatabase { server_url, name };
        let bus = LocalBus::connect(&url, LocalConfig::default())
            .await
            .expect("open local bus on postgres");
        super::consumer_lag_counts(&bus).await;
    }

    #[test]
    fn with_database_replaces_only_the_name() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }

    #[tokio::test]
    async fn publish_and_consume() {
        let (_db, f) = fixture().await;
        within(30, "publish_and_consume", contract::publish_and_consume(&f)).await;
    }

    #[tokio::test]
    async fn per_key_order() {
        let (_db, f) = fixture().await;
        within(60, "per_key_order", contract::per_key_order(&f)).await;
    }

    #[tokio::test]
    async fn two_groups_each_get_everything() {
        let (_db, f) = fixture().await;
        within(
            30,
            "two_groups",
            contract::two_groups_each_get_everything(&f),
        )
        .await;
    }

    #[tokio::test]
    async fn uncommitted_are_redelivered() {
        let (_db, f) = fixture().await;
        within(30, "uncommitted", contract::uncommitted_are_redelivered(&f)).await;
    }

    #[tokio::test]
    async fn committed_are_not_redelivered() {
        let (_db, f) = fixture().await;
        within(30, "committed", contract::committed_are_not_redelivered(&f)).await;
    }

    #[tokio::test]
    async fn next_is_cancel_safe() {
        let (_db, f) = fixture().await;
        within(30, "cancel_safe", contract::next_is_cancel_safe(&f)).await;
    }

    #[tokio::test]
    async fn bad_input_is_refused() {
        let (_db, f) = fixture().await;
        within(30, "bad_input", contract::bad_input_is_refused(&f)).await;
    }
}

mod kafka {
    use std::sync::Arc;

    use infra::bus::{KafkaBus, KafkaConfig};

    use super::*;

    fn fixture() -> Fixture {
        let brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_default();
        assert!(
            !brokers.trim().is_empty(),
            "TEST_KAFKA_BROKERS is not set: start a local broker with `eval \"$(scripts/kafka.sh)\"` \
             (it prints `export TEST_KAFKA_BROKERS=127.0.0.1:9092`) and run the tests again"
        );
        let mut config = KafkaConfig::new(brokers);
        config.default_partitions = 4;
        config.publish_timeout = Duration::from_secs(15);
        config.session_timeout = Duration::from_secs(6);
        Fixture {
            bus: Arc::new(KafkaBus::connect(config).expect("kafka bus")),
            recv_secs: 30,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_and_consume() {
        let f = fixture();
        within(60, "publish_and_consume", contract::publish_and_consume(&f)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn per_key_order() {
        let f = fixture();
        within(90, "per_key_order", contract::per_key_order(&f)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_groups_each_get_everything() {
        let f = fixture();
        within(
            90,
            "two_groups",
            contract::two_groups_each_get_everything(&f),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uncommitted_are_redelivered() {
        let f = fixture();
        within(90, "uncommitted", contract::uncommitted_are_redelivered(&f)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_are_not_redelivered() {
        let f = fixture();
        within(90, "committed", contract::committed_are_not_redelivered(&f)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn next_is_cancel_safe() {
        let f = fixture();
        within(60, "cancel_safe", contract::next_is_cancel_safe(&f)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input_is_refused() {
        let f = fixture();
        within(60, "bad_input", contract::bad_input_is_refused(&f)).await;
    }

    /// Two members of one group split the topic's partitions between them
    /// (what LocalBus, one consumer per group, does not do) and together get
    /// every message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_members_share_the_partitions() {
        let f = fixture();
        within(60, "shared group", async {
            let topic = unique("share");
            let group = unique("g");
            let mut sent = BTreeSet::new();
            let mut batch = 0;
            let publish_batch = |batch: usize| {
                let bus = f.bus.clone();
                let topic = topic.clone();
                async move {
                    let mut ids = Vec::new();
                    for k in 0..8 {
                        let m =
                            Message::new(format!("key-{k}"), format!("{batch}:{k}").into_bytes());
                        bus.publish(&topic, m.clone()).await.expect("publish");
                        ids.push(m.id);
                    }
                    ids
                }
            };
            sent.extend(publish_batch(batch).await);
            let mut a = f.bus.subscribe(&topic, &group).await.expect("subscribe a");
            let mut b = f.bus.subscribe(&topic, &group).await.expect("subscribe b");
            let (mut got_a, mut got_b) = (BTreeSet::new(), BTreeSet::new());
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while got_a.is_empty()
                || got_b.is_empty()
                || !sent
                    .iter()
                    .all(|id| got_a.contains(id) || got_b.contains(id))
            {
                tokio::select! {
                    d = a.next() => {
                        let d = d.expect("a.next");
                        a.commit(&d).await.expect("a.commit");
                        got_a.insert(d.message.id);
                    }
                    d = b.next() => {
                        let d = d.expect("b.next");
                        b.commit(&d).await.expect("b.commit");
                        got_b.insert(d.message.id);
                    }
                    _ = tick.tick() => {
                        // Until both members hold partitions, keep traffic flowing.
                        if got_a.is_empty() || got_b.is_empty() {
                            batch += 1;
                            sent.extend(publish_batch(batch).await);
                        }
                    }
                }
            }
            assert!(
                !got_a.is_empty() && !got_b.is_empty(),
                "one member got nothing"
            );
        })
        .await;
    }

    /// The broker puts a key where `partition_for` says (murmur2 partitioner).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_match_the_local_bus() {
        let f = fixture();
        within(60, "partitions", async {
            let topic = unique("murmur");
            for i in 0..12 {
                f.publish(&topic, &format!("swap-{i}"), String::new()).await;
            }
            let mut sub = f
                .bus
                .subscribe(&topic, &unique("g"))
                .await
                .expect("subscribe");
            for d in f.next_n(&mut sub, 12, "messages").await {
                assert_eq!(
                    d.partition,
                    infra::bus::partition_for(&d.message.key, 4),
                    "{}",
                    d.message.key
                );
            }
        })
        .await;
    }
}
