//! [`LocalBus`]: the event bus as a durable log in the engine's own database
//! (SQLite in embedded mode, PostgreSQL also works), with Kafka's semantics.
//!
//! Tables (migrations `infra/migrations/*/2000_bus.sql`): `bus_topics` fixes
//! each topic's partition count when the topic is first used, `bus_heads`
//! holds the next offset of each topic-partition (bumped with an upsert in the
//! publishing transaction, which also serialises concurrent publishers),
//! `bus_log` is the log, `bus_offsets` the committed position of each group.
//!
//! Subscribers wake on an in-process notification when a message is
//! published through the same [`LocalBus`], and poll the database every
//! [`LocalConfig::poll_interval`] to see messages written by other processes.
//! One subscription reads all partitions of its topic. Two subscriptions of
//! the same group each read everything (there is no group coordination): run
//! one consumer per group and topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::Row;
use tokio::sync::watch;

use super::{partition_for, validate_group, validate_partitions, validate_topic};
use super::{BusError, Delivery, EventBus, Message, Subscription};
use crate::db::{now_ms, Backend, Db, Migrations};

fn migrations_postgres() -> Migrator {
    sqlx::migrate!("migrations/postgres")
}

fn migrations_sqlite() -> Migrator {
    sqlx::migrate!("migrations/sqlite")
}

/// The bus tables, versions 2000 and up. [`LocalBus::open`] applies them.
pub static MIGRATIONS: Migrations = Migrations {
    postgres: migrations_postgres,
    sqlite: migrations_sqlite,
};

/// Settings of a [`LocalBus`].
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Partitions of a topic created by first use (not by `ensure_topics`).
    pub default_partitions: i32,
    /// How often an idle subscription looks for messages published by other
    /// processes (in-process publishes wake it at once).
    pub poll_interval: Duration,
    /// Most rows read from one partition per query.
    pub batch: i64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            default_partitions: 8,
            poll_interval: Duration::from_millis(200),
            batch: 256,
        }
    }
}

/// The durable in-database event bus. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    config: LocalConfig,
    /// Bumped after every publish; subscribers wait on it.
    published: watch::Sender<u64>,
    /// On SQLite, held by every write of this bus: SQLite has one writer at
    /// a time, and writers queued in-process are far faster than writers
    /// retrying on `SQLITE_BUSY` (eight concurrent publishers went from
    /// about 460 to several thousand messages a second). `None` on
    /// PostgreSQL, where the head row lock orders publishers per partition.
    write_lock: Option<tokio::sync::Mutex<()>>,
    /// Partition counts already read from `bus_topics`.
    partitions: Mutex<HashMap<String, i32>>,
}

impl LocalBus {
    /// Opens the bus on `db`, applying its migrations.
    pub async fn open(db: Db, config: LocalConfig) -> Result<Self, BusError> {
        validate_partitions("(default)", config.default_partitions)?;
        if config.batch < 1 {
            return Err(BusError::InvalidConfig(format!(
                "batch is {}, must be at least 1",
                config.batch
            )));
        }
        if config.poll_interval < Duration::from_millis(1) {
            return Err(BusError::InvalidConfig(format!(
                "poll_interval is {:?}, must be at least 1 ms",
                config.poll_interval
            )));
        }
        db.migrate(&MIGRATIONS).await?;
        let (published, _) = watch::channel(0);
        let write_lock = (db.backend() == Backend::Sqlite).then(|| tokio::sync::Mutex::new(()));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                config,
                published,
                partitions: Mutex::new(HashMap::new()),
                write_lock,
            }),
        })
    }

    /// Connects to `url` (see [`Db::connect`]) and opens the bus there.
    pub async fn connect(url: &str, config: LocalConfig) -> Result<Self, BusError> {
        let db = Db::connect(url).await?;
        Self::open(db, config).await
    }

    /// The database the log lives in.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Creates topics with the given partition counts. A topic that already
    /// exists keeps its partition count (as on Kafka, where re-creating a
    /// topic is refused and partitions are never removed).
    pub async fn ensure_topics(&self, topics: &[(&str, i32)]) -> Result<(), BusError> {
        for (topic, partitions) in topics {
            validate_topic(topic)?;
            validate_partitions(topic, *partitions)?;
            let have = self.inner.topic_partitions(topic, *partitions).await?;
            if have != *partitions {
                tracing::warn!(
                    topic,
                    have,
                    wanted = partitions,
                    "bus topic already exists with another partition count"
                );
            }
        }
        Ok(())
    }

    /// Per consumer group and topic, how many messages are published but not
    /// yet committed by that group (summed over partitions).
    pub async fn consumer_lag(&self) -> Result<Vec<ConsumerLag>, BusError> {
        let rows = sqlx::query(
            "SELECT o.group_name AS group_name, o.topic AS topic, \
             CAST(SUM(h.next_offset - o.next_offset) AS BIGINT) AS lag \
             FROM bus_offsets o JOIN bus_heads h \
             ON h.topic = o.topic AND h.partition_no = o.partition_no \
             GROUP BY o.group_name, o.topic ORDER BY o.group_name, o.topic",
        )
        .fetch_all(self.inner.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ConsumerLag {
                    group: row.try_get("group_name")?,
                    topic: row.try_get("topic")?,
                    messages: row.try_get::<i64, _>("lag")?,
                })
            })
            .collect()
    }

    /// Partition count of `topic`, creating it with the default if new.
    pub async fn partitions(&self, topic: &str) -> Result<i32, BusError> {
        validate_topic(topic)?;
        self.inner
            .topic_partitions(topic, self.inner.config.default_partitions)
            .await
    }
}

/// What one consumer group has left to read of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    pub group: String,
    pub topic: String,
    /// Published and not yet committed by the group.
    pub messages: i64,
}

impl Inner {
    async fn topic_partitions(&self, topic: &str, if_new: i32) -> Result<i32, BusError> {
        if let Some(n) = self.cached_partitions(topic) {
            return Ok(n);
        }
        let pool = self.db.pool();
        let writing = self.lock_writes().await;
        sqlx::query("INSERT INTO bus_topics (topic, partitions, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (topic) DO NOTHING")
            .bind(topic)
            .bind(if_new)
            .bind(now_ms())
            .execute(pool)
            .await?;
        drop(writing);
        let n: i32 = sqlx::query("SELECT partitions FROM bus_topics WHERE topic = $1")
            .bind(topic)
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        if n < 1 {
            return Err(BusError::Corrupt(format!(
                "topic {topic:?} has {n} partitions"
            )));
        }
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_owned(), n);
        Ok(n)
    }

    async fn lock_writes(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    fn cached_partitions(&self, topic: &str) -> Option<i32> {
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
    }
}

#[async_trait]
impl EventBus for LocalBus {
    #[tracing::instrument(name = "bus.local.publish", skip_all, fields(topic = %topic, key = %message.key, id = %message.id))]
    async fn publish(&self, topic: &str, message: Message) -> Result<(), BusError> {
        validate_topic(topic)?;
        let inner = &self.inner;
        let partitions = inner
            .topic_partitions(topic, inner.config.default_partitions)
            .await?;
        let partition = partition_for(&message.key, partitions);
        let _writing = inner.lock_writes().await;
        let mut tx = inner.db.pool().begin().await?;
        // The upsert locks the head row, so concurrent publishers to one
        // partition take offsets one after the other and commit in that order.
        let next: i64 = sqlx::query(
            "INSERT INTO bus_heads (topic, partition_no, next_offset) VALUES ($1, $2, 1) \
             ON CONFLICT (topic, partition_no) DO UPDATE SET next_offset = bus_heads.next_offset + 1 \
             RETURNING next_offset",
        )
        .bind(topic)
        .bind(partition)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let offset = next - 1;
        sqlx::query(
            "INSERT INTO bus_log (topic, partition_no, log_offset, message_id, msg_key, payload, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(topic)
        .bind(partition)
        .bind(offset)
        .bind(&message.id)
        .bind(&message.key)
        .bind(&message.payload)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::trace!(partition, offset, "published");
        inner.published.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        validate_topic(topic)?;
        validate_group(group)?;
        let inner = &self.inner;
        let partitions = inner
            .topic_partitions(topic, inner.config.default_partitions)
            .await?;
        let mut cursors = vec![0i64; partitions as usize];
        let rows = sqlx::query("SELECT partition_no, next_offset FROM bus_offsets WHERE group_name = $1 AND topic = $2")
            .bind(group)
            .bind(topic)
            .fetch_all(inner.db.pool())
            .await?;
        for row in rows {
            let p: i32 = row.try_get(0)?;
            let next: i64 = row.try_get(1)?;
            match cursors.get_mut(p as usize) {
                Some(c) if p >= 0 => *c = next.max(0),
                _ => {
                    return Err(BusError::Corrupt(format!(
                        "group {group:?} has an offset for partition {p} of topic {topic:?}, which has {partitions} partitions"
                    )))
                }
            }
        }
        tracing::debug!(topic, group, partitions, "subscribed to local bus");
        Ok(Box::new(LocalSubscription {
            inner: self.inner.clone(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            cursors,
            buffer: VecDeque::new(),
            published: self.inner.published.subscribe(),
            start: 0,
        }))
    }
}

/// A subscription to one topic of a [`LocalBus`], reading all partitions.
#[derive(Debug)]
struct LocalSubscription {
    inner: Arc<Inner>,
    topic: String,
    group: String,
    /// Next offset to read, per partition (in memory; `commit` persists).
    cursors: Vec<i64>,
    /// Read but not yet handed out.
    buffer: VecDeque<Delivery>,
    published: watch::Receiver<u64>,
    /// Partition to read first in the next refill, for fairness.
    start: usize,
}

impl LocalSubscription {
    /// Reads the next batch of every partition with unread messages.
    async fn refill(&mut self) -> Result<(), BusError> {
        let pool = self.inner.db.pool();
        let heads = sqlx::query("SELECT partition_no, next_offset FROM bus_heads WHERE topic = $1")
            .bind(&self.topic)
            .fetch_all(pool)
            .await?;
        let mut behind = Vec::new();
        for row in heads {
            let p: i32 = row.try_get(0)?;
            let head: i64 = row.try_get(1)?;
            if let Some(c) = self.cursors.get(p as usize) {
                if head > *c {
                    behind.push(p);
                }
            }
        }
        let n = self.cursors.len();
        behind.sort_by_key(|p| (*p as usize + n - self.start % n) % n);
        self.start = (self.start + 1) % n;
        for p in behind {
            let from = self.cursors[p as usize];
            let rows = sqlx::query(
                "SELECT log_offset, message_id, msg_key, payload FROM bus_log \
                 WHERE topic = $1 AND partition_no = $2 AND log_offset >= $3 \
                 ORDER BY log_offset LIMIT $4",
            )
            .bind(&self.topic)
            .bind(p)
            .bind(from)
            .bind(self.inner.config.batch)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let offset: i64 = row.try_get(0)?;
                self.buffer.push_back(Delivery {
                    topic: self.topic.clone(),
                    partition: p,
                    offset,
                    message: Message {
                        id: row.try_get(1)?,
                        key: row.try_get(2)?,
                        payload: row.try_get(3)?,
                    },
                });
                self.cursors[p as usize] = offset + 1;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for LocalSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            if let Some(d) = self.buffer.pop_front() {
                return Ok(d);
            }
            // Mark the notification seen before reading, so a publish that
            // lands after the read wakes the wait below.
            self.published.borrow_and_update();
            self.refill().await?;
            if !self.buffer.is_empty() {
                continue;
            }
            tokio::select! {
                changed = self.published.changed() => changed.map_err(|_| BusError::Closed)?,
                () = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
    }

    #[tracing::instrument(name = "bus.local.commit", skip_all, fields(topic = %delivery.topic, group = %self.group, partition = delivery.partition, offset = delivery.offset))]
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        if delivery.topic != self.topic
            || delivery.partition < 0
            || delivery.partition as usize >= self.cursors.len()
        {
            return Err(BusError::ForeignDelivery {
                topic: self.topic.clone(),
                got_topic: delivery.topic.clone(),
                partition: delivery.partition,
            });
        }
        let _writing = self.inner.lock_writes().await;
        sqlx::query(
            "INSERT INTO bus_offsets (group_name, topic, partition_no, next_offset, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (group_name, topic, partition_no) DO UPDATE SET next_offset = excluded.next_offset, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&self.group)
        .bind(&self.topic)
        .bind(delivery.partition)
        .bind(delivery.offset + 1)
        .bind(now_ms())
        .execute(self.inner.db.pool())
        .await?;
        Ok(())
    }
}
