//! The event bus: one interface ([`EventBus`], [`Subscription`]) with two
//! implementations of the same semantics, [`KafkaBus`] for the cluster and
//! [`LocalBus`], a durable log in the engine's own database, for embedded mode.
//!
//! The semantics both give:
//! - messages with the same key go to the same partition and are delivered in
//!   publish order;
//! - every consumer group gets every message; within a group a message is
//!   delivered at least once (consumers deduplicate by [`Message::id`]);
//! - a group's position is saved only by [`Subscription::commit`], after
//!   processing, so a consumer that restarts without committing gets the
//!   message again; a subscription's in-memory position moves on as it reads;
//! - a new group starts from the earliest message;
//! - a message is durable once [`EventBus::publish`] returns.

mod kafka;
mod local;

use std::sync::Arc;

use async_trait::async_trait;

pub use kafka::{KafkaBus, KafkaConfig};
pub use local::{ConsumerLag, LocalBus, LocalConfig, MIGRATIONS};

/// One event as published: `id` is unique (consumers deduplicate by it), `key`
/// chooses the partition (same key, same partition, same order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub key: String,
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with a fresh unique id (UUID v7, so ids sort by creation time).
    pub fn new(key: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            key: key.into(),
            payload: payload.into(),
        }
    }
}

/// A message as received by a subscription, with where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub message: Message,
}

/// A publisher and the factory of subscriptions.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Appends `message` to `topic`; returns once the message is durably
    /// acknowledged (written to the database, or acknowledged by all in-sync
    /// replicas). On an error the message may or may not have been written:
    /// retry with the same [`Message::id`] (consumers deduplicate by it).
    async fn publish(&self, topic: &str, message: Message) -> Result<(), BusError>;

    /// Opens a subscription to `topic` as a member of consumer group `group`.
    /// It starts after the group's last commit, or at the earliest message
    /// for a new group.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError>;
}

/// A consumer's position in one topic for one group.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next message. Cancel-safe: dropping the future loses no
    /// message.
    async fn next(&mut self) -> Result<Delivery, BusError>;

    /// Records that `delivery` (and everything before it in its partition)
    /// has been processed by this group. Call after processing. On an error
    /// (on Kafka, say, the partition moved to another member of the group)
    /// the delivery may come again, to this consumer or another: at least
    /// once, never lost.
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError>;
}

/// The bus as services hold it.
pub type SharedBus = Arc<dyn EventBus>;

/// Which bus to run on, for the composition root.
#[derive(Debug, Clone)]
pub enum BusConfig {
    /// Embedded mode: a durable log in the engine's database.
    Local {
        db: crate::db::Db,
        config: LocalConfig,
    },
    /// Cluster mode: a Kafka-protocol broker.
    Kafka(KafkaConfig),
}

/// Opens the configured bus (applying the local bus's migrations, or
/// creating the Kafka clients).
pub async fn open(config: BusConfig) -> Result<SharedBus, BusError> {
    Ok(match config {
        BusConfig::Local { db, config } => Arc::new(LocalBus::open(db, config).await?),
        BusConfig::Kafka(config) => Arc::new(KafkaBus::connect(config)?),
    })
}

/// What went wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid topic name {0:?}: use 1 to 249 characters from [A-Za-z0-9._-], not \".\" or \"..\"")]
    InvalidTopic(String),
    #[error("invalid consumer group name {0:?}: use 1 to 255 characters, no control characters")]
    InvalidGroup(String),
    #[error(
        "invalid partition count {partitions} for topic {topic:?}: must be between 1 and {max}"
    )]
    InvalidPartitions {
        topic: String,
        partitions: i32,
        max: i32,
    },
    #[error("invalid bus configuration: {0}")]
    InvalidConfig(String),
    #[error("delivery from {got_topic:?} partition {partition} committed on a subscription to {topic:?}")]
    ForeignDelivery {
        topic: String,
        got_topic: String,
        partition: i32,
    },
    #[error("local bus database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("local bus database setup failed: {0}")]
    DatabaseSetup(#[from] crate::db::DbError),
    #[error("local bus log is corrupt: {0}")]
    Corrupt(String),
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka could not create topic {topic:?}: {reason}")]
    TopicCreation { topic: String, reason: String },
    #[error("kafka did not answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("the bus is shut down")]
    Closed,
}

/// Largest partition count a topic may be created with.
pub const MAX_PARTITIONS: i32 = 1024;

/// Checks a topic name against Kafka's rules, so a name that works on one bus
/// works on the other.
pub fn validate_topic(topic: &str) -> Result<(), BusError> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidTopic(topic.to_owned()))
    }
}

/// Checks a consumer group name.
pub fn validate_group(group: &str) -> Result<(), BusError> {
    if group.is_empty() || group.len() > 255 || group.chars().any(char::is_control) {
        Err(BusError::InvalidGroup(group.to_owned()))
    } else {
        Ok(())
    }
}

fn validate_partitions(topic: &str, partitions: i32) -> Result<(), BusError> {
    if (1..=MAX_PARTITIONS).contains(&partitions) {
        Ok(())
    } else {
        Err(BusError::InvalidPartitions {
            topic: topic.to_owned(),
            partitions,
            max: MAX_PARTITIONS,
        })
    }
}

/// The partition of `key` among `partitions`: Kafka's Java-client partitioner
/// (murmur2, sign bit cleared, modulo), which [`KafkaBus`] also selects in
/// librdkafka, so both buses place a key in the same partition.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let n = partitions.max(1) as u32;
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % n) as i32
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's own UtilsTest (signed Java ints).
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(
                murmur2(data) as i32,
                *want,
                "murmur2({:?})",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for n in [1, 2, 3, 8, 1024] {
            for i in 0..200 {
                let key = format!("swap-{i}");
                let p = partition_for(&key, n);
                assert!((0..n).contains(&p));
                assert_eq!(p, partition_for(&key, n));
            }
        }
        // Keys spread over partitions rather than piling into one.
        let used: std::collections::BTreeSet<i32> = (0..200)
            .map(|i| partition_for(&format!("k{i}"), 8))
            .collect();
        assert_eq!(used.len(), 8);
    }

    #[test]
    fn topic_and_group_names_are_checked() {
        for good in ["swaps", "chain.events-btc_1", "a"] {
            assert!(validate_topic(good).is_ok(), "{good}");
        }
        let long = "x".repeat(250);
        for bad in ["", ".", "..", "has space", "slash/", "ünï", long.as_str()] {
            assert!(
                matches!(validate_topic(bad), Err(BusError::InvalidTopic(_))),
                "{bad:?}"
            );
        }
        assert!(validate_group("hot-wallet").is_ok());
        assert!(matches!(validate_group(""), Err(BusError::InvalidGroup(_))));
        assert!(matches!(
            validate_group("a\nb"),
            Err(BusError::InvalidGroup(_))
        ));
        assert!(validate_partitions("t", 0).is_err());
        assert!(validate_partitions("t", 4).is_ok());
    }
}
