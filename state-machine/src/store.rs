//! Persistence of swaps, their append-only events and the transactional outbox.
//!
//! The pure machine serializes its state; this store keeps that snapshot
//! (`state` name + JSON `data`) and guarantees, on PostgreSQL and SQLite alike:
//!
//! - a state change, the event that caused it and its outgoing messages commit
//!   in one transaction, or none of them does (outbox pattern);
//! - optimistic concurrency: [`SwapStore::append`] with a stale expected
//!   version returns [`StoreError::VersionConflict`] and writes nothing;
//! - event ids are unique: appending an already recorded event id is a no-op
//!   reported as [`AppendOutcome::Duplicate`] (redelivered bus messages);
//! - idempotency keys: [`SwapStore::create`] with a key that already exists
//!   returns [`CreateOutcome::Existing`] instead of a second swap;
//! - expected constraint violations become [`StoreError`] variants, never raw
//!   sqlx errors.
//!
//! A transition costs the same round trips as the plain SQL it stands for:
//! `BEGIN`, one `UPDATE`, one `INSERT` of the event, one multi-row `INSERT`
//! into the outbox, `COMMIT`, all as cached prepared statements. Unhappy
//! paths (conflict, duplicate) roll back first and only then look up why.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use infra::db::{Db, DbError, Migrations};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tracing::instrument;
use uuid::Uuid;

/// The store's migrations (versions 1000+), for [`Db::migrate`].
pub const MIGRATIONS: Migrations = Migrations {
    postgres: || sqlx::migrate!("migrations/postgres"),
    sqlite: || sqlx::migrate!("migrations/sqlite"),
};

/// Errors of the swap store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The swap moved on since the caller read it; nothing was written.
    #[error(
        "swap {swap_id} is at version {actual}, not the expected {expected}; nothing was written"
    )]
    VersionConflict {
        swap_id: Uuid,
        expected: i64,
        actual: i64,
    },
    #[error("swap {0} does not exist")]
    NotFound(Uuid),
    /// Another swap already owns this deposit address; nothing was written.
    #[error("deposit address {address} on {chain} already belongs to swap {swap_id}")]
    DepositAddressInUse {
        chain: String,
        address: String,
        swap_id: Uuid,
    },
    /// The creating event's id is already recorded (for another swap); nothing was written.
    #[error("event id {0} is already recorded")]
    EventIdInUse(Uuid),
    /// One of the outgoing message ids is already in the outbox; nothing was written.
    #[error("an outbox message id among {0:?} is already in the outbox")]
    OutboxMessageIdInUse(Vec<Uuid>),
    /// A create conflicted with a row that could not be found afterwards.
    #[error("creating swap {0} hit a unique constraint but no conflicting swap was found")]
    UnresolvedCreateConflict(Uuid),
    /// A stored row could not be read back (bad UUID or JSON text).
    #[error("stored {table}.{column} is invalid: {reason}")]
    InvalidRecord {
        table: &'static str,
        column: &'static str,
        reason: String,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("could not serialize JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("could not open the swap store: {0}")]
    Migrate(#[from] DbError),
}

/// A swap to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSwap {
    pub swap_id: Uuid,
    pub idempotency_key: Option<String>,
    pub deposit_chain: String,
    pub deposit_address: String,
    pub state: String,
    pub terminal: bool,
    pub data: Value,
    pub created_at_ms: i64,
}

/// The state a swap moves to.
#[derive(Debug, Clone, PartialEq)]
pub struct StateUpdate {
    pub state: String,
    pub terminal: bool,
    pub data: Value,
    pub updated_at_ms: i64,
}

/// The event that caused a creation or a transition.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub kind: String,
    pub payload: Value,
    pub occurred_at_ms: i64,
}

/// A message to publish once the transaction that wrote it commits.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub message_id: Uuid,
    pub topic: String,
    pub key: String,
    pub payload: Value,
}

/// A stored swap.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapRecord {
    pub swap_id: Uuid,
    /// 1 after creation, +1 per applied event.
    pub version: i64,
    pub state: String,
    pub terminal: bool,
    pub data: Value,
    pub idempotency_key: Option<String>,
    pub deposit_chain: String,
    pub deposit_address: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A recorded event; `version` is the swap version it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub event_id: Uuid,
    pub swap_id: Uuid,
    pub version: i64,
    pub kind: String,
    pub payload: Value,
    pub occurred_at_ms: i64,
    pub recorded_at_ms: i64,
}

/// An outbox row; `seq` orders rows by commit-time insertion.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub seq: i64,
    pub message_id: Uuid,
    pub topic: String,
    pub key: String,
    pub payload: Value,
    pub created_at_ms: i64,
    pub published_at_ms: Option<i64>,
}

/// What [`SwapStore::create`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(SwapRecord),
    /// A swap with this idempotency key (or swap id) already existed; nothing was written.
    Existing(SwapRecord),
}

impl CreateOutcome {
    /// The swap, whether just created or already there.
    pub fn record(&self) -> &SwapRecord {
        match self {
            CreateOutcome::Created(r) | CreateOutcome::Existing(r) => r,
        }
    }
}

/// What [`SwapStore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// State, event and outbox committed; the swap is now at `version`.
    Applied { version: i64 },
    /// The event id was already recorded; nothing was written.
    Duplicate,
}

/// Swaps, events and outbox over a [`Db`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SwapStore {
    db: Db,
}

const SWAP_COLUMNS: &str =
    "swap_id, version, state, CASE WHEN terminal THEN 1 ELSE 0 END AS terminal, data, \
     idempotency_key, deposit_chain, deposit_address, created_at_ms, updated_at_ms";

const SQL_UPDATE_SWAP: &str =
    "UPDATE swaps SET version = version + 1, state = $1, terminal = $2, data = $3, \
     updated_at_ms = $4 WHERE swap_id = $5 AND version = $6";
const SQL_INSERT_EVENT: &str = "INSERT INTO swap_events \
     (event_id, swap_id, version, kind, payload, occurred_at_ms, recorded_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING";
const SQL_INSERT_SWAP: &str = "INSERT INTO swaps \
     (swap_id, version, state, terminal, data, idempotency_key, deposit_chain, deposit_address, \
      created_at_ms, updated_at_ms) \
     VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT DO NOTHING";

/// `INSERT INTO outbox` for `n` rows, built once per `n` (statement text must
/// be stable for the prepared-statement cache).
fn outbox_insert_sql(n: usize) -> &'static str {
    const CACHED: usize = 8;
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    fn build(n: usize) -> String {
        let mut s = String::from(
            "INSERT INTO outbox (message_id, topic, key, payload, created_at_ms) VALUES ",
        );
        for i in 0..n {
            let b = i * 4;
            if i > 0 {
                s.push_str(", ");
            }
            // The last parameter is the shared creation time.
            let _ = write!(
                s,
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                n * 4 + 1
            );
        }
        s
    }
    let cached = SQL.get_or_init(|| (0..=CACHED).map(build).collect());
    match cached.get(n) {
        Some(s) => s,
        // Rare: more messages than cached shapes; leak one string per shape.
        None => {
            static MORE: OnceLock<std::sync::Mutex<BTreeMap<usize, &'static str>>> =
                OnceLock::new();
            let mut map = MORE
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(n)
                .or_insert_with(|| Box::leak(build(n).into_boxed_str()))
        }
    }
}

impl SwapStore {
    /// Opens the store over `db`, applying [`MIGRATIONS`].
    pub async fn open(db: Db) -> Result<Self, StoreError> {
        db.migrate(&MIGRATIONS).await?;
        Ok(Self { db })
    }

    /// The database handle the store uses.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates a swap at version 1 with its creating event and outgoing
    /// messages, in one transaction. If a swap with the same idempotency key
    /// (or the same swap id) exists, returns it as [`CreateOutcome::Existing`]
    /// and writes nothing.
    #[instrument(name = "swap_store.create", skip_all, fields(swap_id = %swap.swap_id))]
    pub async fn create(
        &self,
        swap: &NewSwap,
        event: &NewEvent,
        outbox: &[OutboxMessage],
    ) -> Result<CreateOutcome, StoreError> {
        let data = serde_json::to_string(&swap.data)?;
        let mut tx = self.db.pool().begin().await?;
        let inserted = sqlx::query(SQL_INSERT_SWAP)
            .bind(swap.swap_id.to_string())
            .bind(swap.state.as_str())
            .bind(swap.terminal)
            .bind(data)
            .bind(swap.idempotency_key.as_deref())
            .bind(swap.deposit_chain.as_str())
            .bind(swap.deposit_address.as_str())
            .bind(swap.created_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return self.resolve_create_conflict(swap).await;
        }
        if !insert_event(&mut tx, swap.swap_id, 1, event).await? {
            tx.rollback().await?;
            return Err(StoreError::EventIdInUse(event.event_id));
        }
        insert_outbox(&mut tx, outbox, swap.created_at_ms).await?;
        tx.commit().await?;
        tracing::debug!(state = %swap.state, "swap created");
        Ok(CreateOutcome::Created(SwapRecord {
            swap_id: swap.swap_id,
            version: 1,
            state: swap.state.clone(),
            terminal: swap.terminal,
            data: swap.data.clone(),
            idempotency_key: swap.idempotency_key.clone(),
            deposit_chain: swap.deposit_chain.clone(),
            deposit_address: swap.deposit_address.clone(),
            created_at_ms: swap.created_at_ms,
            updated_at_ms: swap.created_at_ms,
        }))
    }

    async fn resolve_create_conflict(&self, swap: &NewSwap) -> Result<CreateOutcome, StoreError> {
        if let Some(key) = &swap.idempotency_key {
            if let Some(existing) = self.get_by_idempotency_key(key).await? {
                return Ok(CreateOutcome::Existing(existing));
            }
        }
        if let Some(existing) = self.get(swap.swap_id).await? {
            return Ok(CreateOutcome::Existing(existing));
        }
        if let Some(owner) = self
            .get_by_deposit_address(&swap.deposit_chain, &swap.deposit_address)
            .await?
        {
            return Err(StoreError::DepositAddressInUse {
                chain: swap.deposit_chain.clone(),
                address: swap.deposit_address.clone(),
                swap_id: owner.swap_id,
            });
        }
        Err(StoreError::UnresolvedCreateConflict(swap.swap_id))
    }

    /// Moves swap `swap_id` from `expected_version` to `expected_version + 1`:
    /// new state, the event that caused it, and the outgoing messages, in one
    /// transaction. An already recorded `event.event_id` gives
    /// [`AppendOutcome::Duplicate`]; a stale version gives
    /// [`StoreError::VersionConflict`]; both write nothing.
    #[instrument(name = "swap_store.append", skip_all, fields(swap_id = %swap_id, expected_version))]
    pub async fn append(
        &self,
        swap_id: Uuid,
        expected_version: i64,
        next: &StateUpdate,
        event: &NewEvent,
        outbox: &[OutboxMessage],
    ) -> Result<AppendOutcome, StoreError> {
        let data = serde_json::to_string(&next.data)?;
        let mut tx = self.db.pool().begin().await?;
        let updated = sqlx::query(SQL_UPDATE_SWAP)
            .bind(next.state.as_str())
            .bind(next.terminal)
            .bind(data)
            .bind(next.updated_at_ms)
            .bind(swap_id.to_string())
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            if self.has_event(event.event_id).await? {
                return Ok(AppendOutcome::Duplicate);
            }
            return match self.version_of(swap_id).await? {
                None => Err(StoreError::NotFound(swap_id)),
                Some(actual) => Err(StoreError::VersionConflict {
                    swap_id,
                    expected: expected_version,
                    actual,
                }),
            };
        }
        let version = expected_version + 1;
        if !insert_event(&mut tx, swap_id, version, event).await? {
            tx.rollback().await?;
            return Ok(AppendOutcome::Duplicate);
        }
        insert_outbox(&mut tx, outbox, next.updated_at_ms).await?;
        tx.commit().await?;
        tracing::debug!(version, state = %next.state, "swap transition committed");
        Ok(AppendOutcome::Applied { version })
    }

    async fn version_of(&self, swap_id: Uuid) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT version FROM swaps WHERE swap_id = $1")
            .bind(swap_id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<i64, _>(0)?),
            None => None,
        })
    }

    /// The swap, if it exists.
    pub async fn get(&self, swap_id: Uuid) -> Result<Option<SwapRecord>, StoreError> {
        self.swap_where("swap_id = $1", &swap_id.to_string(), None)
            .await
    }

    /// The swap created with idempotency key `key`, if any.
    pub async fn get_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<SwapRecord>, StoreError> {
        self.swap_where("idempotency_key = $1", key, None).await
    }

    /// The swap that owns deposit `address` on `chain`, if any.
    pub async fn get_by_deposit_address(
        &self,
        chain: &str,
        address: &str,
    ) -> Result<Option<SwapRecord>, StoreError> {
        self.swap_where(
            "deposit_chain = $1 AND deposit_address = $2",
            chain,
            Some(address),
        )
        .await
    }

    async fn swap_where(
        &self,
        condition: &str,
        p1: &str,
        p2: Option<&str>,
    ) -> Result<Option<SwapRecord>, StoreError> {
        let sql = format!("SELECT {SWAP_COLUMNS} FROM swaps WHERE {condition}");
        let mut q = sqlx::query(&sql).bind(p1);
        if let Some(p2) = p2 {
            q = q.bind(p2);
        }
        match q.fetch_optional(self.db.pool()).await? {
            Some(row) => Ok(Some(swap_from_row(&row)?)),
            None => Ok(None),
        }
    }

    /// The swap's events, in version order (creation first).
    pub async fn events(&self, swap_id: Uuid) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, swap_id, version, kind, payload, occurred_at_ms, recorded_at_ms \
             FROM swap_events WHERE swap_id = $1 ORDER BY version",
        )
        .bind(swap_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EventRecord {
                    event_id: uuid_col(row, "swap_events", "event_id")?,
                    swap_id: uuid_col(row, "swap_events", "swap_id")?,
                    version: row.try_get("version")?,
                    kind: row.try_get("kind")?,
                    payload: json_col(row, "swap_events", "payload")?,
                    occurred_at_ms: row.try_get("occurred_at_ms")?,
                    recorded_at_ms: row.try_get("recorded_at_ms")?,
                })
            })
            .collect()
    }

    /// Whether an event with this id is recorded (for any swap).
    pub async fn has_event(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM swap_events WHERE event_id = $1")
            .bind(event_id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Up to `limit` swaps not in a terminal state, oldest first.
    pub async fn list_active(&self, limit: i64) -> Result<Vec<SwapRecord>, StoreError> {
        let sql = format!(
            "SELECT {SWAP_COLUMNS} FROM swaps WHERE NOT terminal ORDER BY created_at_ms, swap_id LIMIT $1"
        );
        let rows = sqlx::query(&sql)
            .bind(limit.max(0))
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(swap_from_row).collect()
    }

    /// Up to `limit` swaps, most recently changed first, only those in
    /// `state` when given (for the desk).
    pub async fn list_recent(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SwapRecord>, StoreError> {
        let rows = match state {
            Some(state) => {
                let sql = format!(
                    "SELECT {SWAP_COLUMNS} FROM swaps WHERE state = $1 ORDER BY updated_at_ms DESC, swap_id LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(state.to_owned())
                    .bind(limit.max(0))
                    .fetch_all(self.db.pool())
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {SWAP_COLUMNS} FROM swaps ORDER BY updated_at_ms DESC, swap_id LIMIT $1"
                );
                sqlx::query(&sql)
                    .bind(limit.max(0))
                    .fetch_all(self.db.pool())
                    .await?
            }
        };
        rows.iter().map(swap_from_row).collect()
    }

    /// How many swaps are in each state.
    pub async fn count_by_state(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM swaps GROUP BY state")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("state")?,
                    row.try_get::<i64, _>("n")?,
                ))
            })
            .collect()
    }

    /// Up to `limit` unpublished outbox messages, oldest first.
    pub async fn outbox_pending(&self, limit: i64) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, message_id, topic, key, payload, created_at_ms, published_at_ms \
             FROM outbox WHERE published_at_ms IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit.max(0))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxRecord {
                    seq: row.try_get("seq")?,
                    message_id: uuid_col(row, "outbox", "message_id")?,
                    topic: row.try_get("topic")?,
                    key: row.try_get("key")?,
                    payload: json_col(row, "outbox", "payload")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                    published_at_ms: row.try_get("published_at_ms")?,
                })
            })
            .collect()
    }

    /// Marks outbox rows `seqs` as published now. Unknown or already
    /// published seqs are left alone.
    #[instrument(name = "swap_store.outbox_mark_published", skip_all, fields(count = seqs.len()))]
    pub async fn outbox_mark_published(&self, seqs: &[i64]) -> Result<(), StoreError> {
        const CHUNK: usize = 500;
        let now = infra::db::now_ms();
        let mut tx = self.db.pool().begin().await?;
        for chunk in seqs.chunks(CHUNK) {
            let mut sql = String::from(
                "UPDATE outbox SET published_at_ms = $1 WHERE published_at_ms IS NULL AND seq IN (",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "${}", i + 2);
            }
            sql.push(')');
            let mut q = sqlx::query(&sql).bind(now);
            for seq in chunk {
                q = q.bind(*seq);
            }
            // Statement shapes vary with the chunk size: don't fill the cache.
            q.persistent(chunk.len() == CHUNK).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts the event; `false` when its id is already recorded.
async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    swap_id: Uuid,
    version: i64,
    event: &NewEvent,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(SQL_INSERT_EVENT)
        .bind(event.event_id.to_string())
        .bind(swap_id.to_string())
        .bind(version)
        .bind(event.kind.as_str())
        .bind(serde_json::to_string(&event.payload)?)
        .bind(event.occurred_at_ms)
        .bind(infra::db::now_ms())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// Inserts the outgoing messages in one statement.
async fn insert_outbox(
    tx: &mut Transaction<'static, Any>,
    outbox: &[OutboxMessage],
    created_at_ms: i64,
) -> Result<(), StoreError> {
    if outbox.is_empty() {
        return Ok(());
    }
    let mut q = sqlx::query(outbox_insert_sql(outbox.len()));
    for m in outbox {
        q = q
            .bind(m.message_id.to_string())
            .bind(m.topic.as_str())
            .bind(m.key.as_str())
            .bind(serde_json::to_string(&m.payload)?);
    }
    match q.bind(created_at_ms).execute(&mut **tx).await {
        Ok(_) => Ok(()),
        Err(e) if Db::is_unique_violation(&e) => Err(StoreError::OutboxMessageIdInUse(
            outbox.iter().map(|m| m.message_id).collect(),
        )),
        Err(e) => Err(e.into()),
    }
}

fn swap_from_row(row: &AnyRow) -> Result<SwapRecord, StoreError> {
    Ok(SwapRecord {
        swap_id: uuid_col(row, "swaps", "swap_id")?,
        version: row.try_get("version")?,
        state: row.try_get("state")?,
        terminal: row.try_get::<i64, _>("terminal")? != 0,
        data: json_col(row, "swaps", "data")?,
        idempotency_key: row.try_get("idempotency_key")?,
        deposit_chain: row.try_get("deposit_chain")?,
        deposit_address: row.try_get("deposit_address")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn uuid_col(row: &AnyRow, table: &'static str, column: &'static str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|e| StoreError::InvalidRecord {
        table,
        column,
        reason: format!("{text:?} is not a UUID: {e}"),
    })
}

fn json_col(row: &AnyRow, table: &'static str, column: &'static str) -> Result<Value, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::InvalidRecord {
        table,
        column,
        reason: format!("not JSON: {e}"),
    })
}
