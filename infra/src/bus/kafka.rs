//! [`KafkaBus`]: the event bus on a Kafka-protocol broker, through rdkafka
//! (librdkafka).
//!
//! Producer: idempotent, `acks=all`, Java-compatible murmur2 partitioner (so a
//! key lands in the same partition as [`super::partition_for`] says and as
//! Java clients would put it), the message id in a `message-id` header.
//! Consumer: one `StreamConsumer` per subscription, subscribed (group
//! membership, so the partitions of a topic are shared among the members of a
//! group across processes), no auto-commit, new groups start at the earliest
//! offset; [`Subscription::commit`] commits `offset + 1` of the delivery's
//! partition synchronously.
//!
//! Topics are created through the admin API on first use with
//! [`KafkaConfig::default_partitions`], or ahead of time with
//! [`KafkaBus::ensure_topics`].
//!
//! Notes from running against tansu 0.6.0 (a Kafka-protocol broker from
//! crates.io, storage `sqlite://`, started by `scripts/kafka.sh`) with
//! librdkafka 2.12 (rdkafka 0.39):
//! - What works: CreateTopics through the admin client (so topics are made
//!   from code, no `tansu topic create` needed), the idempotent producer with
//!   `acks=all`, headers, the murmur2 partitioner, consumer groups with
//!   subscribe (two members of a group split the partitions after a
//!   rebalance of about a second), manual commits, `auto.offset.reset=earliest`
//!   for new groups, and committed offsets surviving a broker restart. The
//!   contract tests run in about 1 s each.
//! - Concurrent CreateTopics for one topic make tansu log an ERROR
//!   `Api(TopicAlreadyExists)` per extra request (the client gets the proper
//!   error code and treats it as success); this bus sends one request per
//!   topic per process to keep that log quiet.
//! - After SIGTERM tansu stops its storage first but keeps the listener open
//!   for a second or two: produce requests then fail at once with
//!   UNKNOWN_SERVER_ERROR ("Unknown broker error", not retried by
//!   librdkafka, so `publish` returns an error and the caller must retry),
//!   and a group heartbeat hit an `unreachable!()` panic in
//!   tansu-storage `service.rs:337` in the log. A script that restarts the
//!   broker must wait for the process to exit, not for the port to close
//!   (`scripts/kafka.sh stop` does). With the broker fully down, `publish`
//!   waits (up to `publish_timeout`) and succeeds once it is back.
//! - A synchronous commit with the coordinator down blocks without end in
//!   librdkafka; `commit` therefore gives up after `commit_timeout`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{validate_group, validate_partitions, validate_topic};
use super::{BusError, Delivery, EventBus, Message, Subscription};

/// Header carrying [`Message::id`].
pub const MESSAGE_ID_HEADER: &str = "message-id";

/// Settings of a [`KafkaBus`].
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of a topic created on first use.
    pub default_partitions: i32,
    /// Replication factor of topics this bus creates.
    pub replication: i32,
    /// Create topics on first publish or subscribe.
    pub auto_create_topics: bool,
    /// How long `publish` waits for the broker's acknowledgement.
    pub publish_timeout: Duration,
    /// How long `commit` waits for the group coordinator's answer.
    pub commit_timeout: Duration,
    /// Consumer group session timeout: how long a dead member holds its
    /// partitions.
    pub session_timeout: Duration,
}

impl KafkaConfig {
    /// Defaults for `brokers`: 8 partitions, replication 1, topics created on
    /// first use, 30 s publish and commit timeouts, 10 s session timeout.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            default_partitions: 8,
            replication: 1,
            auto_create_topics: true,
            publish_timeout: Duration::from_secs(30),
            commit_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
        }
    }
}

/// Forwards librdkafka's logs and errors to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "rdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "rdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "rdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "rdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "rdkafka", %error, reason, "kafka client error");
    }
}

impl ConsumerContext for TracingContext {}

/// The event bus on Kafka. Cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: FutureProducer<TracingContext>,
    admin: AdminClient<TracingContext>,
    /// Topics known to exist (created or confirmed by this bus).
    known_topics: Mutex<HashSet<String>>,
    /// Held while creating a topic on first use, so concurrent first
    /// publishes send one CreateTopics request, not one each.
    creating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Creates the producer and admin clients. librdkafka connects lazily,
    /// so an unreachable broker shows up as a timeout on first use.
    pub fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        validate_partitions("(default)", config.default_partitions)?;
        let timeout_ms = config.publish_timeout.as_millis().max(1).to_string();
        let producer: FutureProducer<TracingContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", &timeout_ms)
            .set("linger.ms", "1")
            .create_with_context(TracingContext)?;
        let admin: AdminClient<TracingContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .create_with_context(TracingContext)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                known_topics: Mutex::new(HashSet::new()),
                creating: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The settings this bus runs with.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// Creates `topics` with the given partition counts through the admin
    /// API; a topic that already exists is left as it is.
    #[tracing::instrument(name = "bus.kafka.ensure_topics", skip_all)]
    pub async fn ensure_topics(&self, topics: &[(&str, i32)]) -> Result<(), BusError> {
        let replication = self.inner.config.replication;
        let mut new = Vec::with_capacity(topics.len());
        for (topic, partitions) in topics {
            validate_topic(topic)?;
            validate_partitions(topic, *partitions)?;
            new.push(NewTopic::new(
                topic,
                *partitions,
                TopicReplication::Fixed(replication),
            ));
        }
        if new.is_empty() {
            return Ok(());
        }
        let opts = AdminOptions::new()
            .request_timeout(Some(self.inner.config.publish_timeout))
            .operation_timeout(Some(self.inner.config.publish_timeout));
        let results = self.inner.admin.create_topics(&new, &opts).await?;
        for result in results {
            match result {
                Ok(topic) => {
                    tracing::info!(topic, "created kafka topic");
                    self.mark_known(&topic);
                }
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => self.mark_known(&topic),
                Err((topic, code)) => {
                    return Err(BusError::TopicCreation {
                        topic,
                        reason: code.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    fn mark_known(&self, topic: &str) {
        self.inner
            .known_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_owned());
    }

    fn is_known(&self, topic: &str) -> bool {
        self.inner
            .known_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(topic)
    }

    async fn ensure_used_topic(&self, topic: &str) -> Result<(), BusError> {
        validate_topic(topic)?;
        if !self.inner.config.auto_create_topics || self.is_known(topic) {
            return Ok(());
        }
        let _creating = self.inner.creating.lock().await;
        if !self.is_known(topic) {
            self.ensure_topics(&[(topic, self.inner.config.default_partitions)])
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    #[tracing::instrument(name = "bus.kafka.publish", skip_all, fields(topic = %topic, key = %message.key, id = %message.id))]
    async fn publish(&self, topic: &str, message: Message) -> Result<(), BusError> {
        self.ensure_used_topic(topic).await?;
        let headers = OwnedHeaders::new().insert(Header {
            key: MESSAGE_ID_HEADER,
            value: Some(message.id.as_bytes()),
        });
        let record = FutureRecord::to(topic)
            .key(message.key.as_bytes())
            .payload(message.payload.as_slice())
            .headers(headers);
        let timeout = self.inner.config.publish_timeout;
        match self
            .inner
            .producer
            .send(record, Timeout::After(timeout))
            .await
        {
            Ok(delivery) => {
                tracing::trace!(
                    partition = delivery.partition,
                    offset = delivery.offset,
                    "published"
                );
                Ok(())
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)) => {
                Err(BusError::Timeout {
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
            Err((e, _)) => Err(e.into()),
        }
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        validate_group(group)?;
        self.ensure_used_topic(topic).await?;
        let config = &self.inner.config;
        let consumer: StreamConsumer<TracingContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().max(1).to_string(),
            )
            .create_with_context(TracingContext)?;
        consumer.subscribe(&[topic])?;
        tracing::debug!(topic, group, "subscribed to kafka");
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
            group: group.to_owned(),
            commit_timeout: config.commit_timeout,
        }))
    }
}

/// A Kafka consumer in one group, subscribed to one topic.
struct KafkaSubscription {
    consumer: Arc<StreamConsumer<TracingContext>>,
    topic: String,
    group: String,
    commit_timeout: Duration,
}

/// Consumer errors librdkafka recovers from by itself: log and keep waiting.
fn is_transient(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::PartitionEOF
        )
    )
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            match self.consumer.recv().await {
                Ok(m) => {
                    let id = m
                        .headers()
                        .and_then(|h| {
                            h.iter()
                                .find(|h| h.key == MESSAGE_ID_HEADER)
                                .and_then(|h| h.value)
                        })
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        // A message from another producer: its position is unique too.
                        .unwrap_or_else(|| {
                            format!("{}:{}:{}", m.topic(), m.partition(), m.offset())
                        });
                    return Ok(Delivery {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        message: Message {
                            id,
                            key: m
                                .key()
                                .map(|k| String::from_utf8_lossy(k).into_owned())
                                .unwrap_or_default(),
                            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        },
                    });
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(topic = %self.topic, group = %self.group, error = %e, "kafka consumer error, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    #[tracing::instrument(name = "bus.kafka.commit", skip_all, fields(topic = %delivery.topic, group = %self.group, partition = delivery.partition, offset = delivery.offset))]
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        if delivery.topic != self.topic {
            return Err(BusError::ForeignDelivery {
                topic: self.topic.clone(),
                got_topic: delivery.topic.clone(),
                partition: delivery.partition,
            });
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &delivery.topic,
            delivery.partition,
            Offset::Offset(delivery.offset + 1),
        )?;
        let consumer = self.consumer.clone();
        // A synchronous commit blocks until the coordinator answers, which
        // with the broker down is never: wait in a blocking thread, give up
        // after the timeout (the thread finishes when librdkafka does).
        let commit = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
        match tokio::time::timeout(self.commit_timeout, commit).await {
            Ok(joined) => joined.map_err(|_| BusError::Closed)??,
            Err(_) => {
                return Err(BusError::Timeout {
                    timeout_ms: self.commit_timeout.as_millis() as u64,
                })
            }
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Deliver whatever is still queued before the producer goes away.
        if let Err(e) = self.producer.flush(Timeout::After(Duration::from_secs(5))) {
            tracing::warn!(error = %e, "kafka producer flush on shutdown failed");
        }
    }
}
