//! Persistence of the node gateway: the watch list (`watched`), and per
//! network the cursor (`chain_cursor`) with the recent blocks behind it
//! (`chain_recent_blocks`).

use infra::db::{now_ms, Db, Migrations};
use proto::Network;
use sqlx::migrate::Migrator;
use sqlx::Row;

use crate::tracker::BlockRef;

fn migrations_postgres() -> Migrator {
    sqlx::migrate!("migrations/postgres")
}

fn migrations_sqlite() -> Migrator {
    sqlx::migrate!("migrations/sqlite")
}

/// The node gateway's tables, versions 3000 and up; [`crate::NodeGateway::start`]
/// applies them.
pub static MIGRATIONS: Migrations = Migrations {
    postgres: migrations_postgres,
    sqlite: migrations_sqlite,
};

/// What a watch-list row watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    Address,
    Tx,
}

impl WatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Address => "address",
            WatchKind::Tx => "tx",
        }
    }
}

/// One persisted watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRow {
    pub network: String,
    pub kind: String,
    pub value: String,
}

/// Adds a watch; watching twice is not an error.
pub async fn insert_watch(
    db: &Db,
    network: Network,
    kind: WatchKind,
    value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO watched (network, kind, value, added_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (network, kind, value) DO NOTHING",
    )
    .bind(network.to_string())
    .bind(kind.as_str())
    .bind(value)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Every persisted watch.
pub async fn load_watches(db: &Db) -> Result<Vec<WatchRow>, sqlx::Error> {
    let rows = sqlx::query("SELECT network, kind, value FROM watched ORDER BY added_at")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(WatchRow {
                network: r.try_get(0)?,
                kind: r.try_get(1)?,
                value: r.try_get(2)?,
            })
        })
        .collect()
}

/// The recent blocks of `network` up to the cursor, oldest first (empty on
/// first start).
pub async fn load_chain(db: &Db, network: Network) -> Result<Vec<BlockRef>, sqlx::Error> {
    let net = network.to_string();
    let cursor = sqlx::query("SELECT height, hash FROM chain_cursor WHERE network = $1")
        .bind(&net)
        .fetch_optional(db.pool())
        .await?;
    let Some(cursor) = cursor else {
        return Ok(Vec::new());
    };
    let tip_height: i64 = cursor.try_get(0)?;
    let tip_hash: String = cursor.try_get(1)?;
    let rows = sqlx::query(
        "SELECT height, hash, parent_hash FROM chain_recent_blocks \
         WHERE network = $1 AND height <= $2 ORDER BY height",
    )
    .bind(&net)
    .bind(tip_height)
    .fetch_all(db.pool())
    .await?;
    let mut blocks = Vec::with_capacity(rows.len());
    for r in rows {
        let height: i64 = r.try_get(0)?;
        blocks.push(BlockRef {
            height: height as u64,
            hash: r.try_get(1)?,
            parent_hash: r.try_get(2)?,
        });
    }
    // Keep only an unbroken chain ending at the cursor.
    if blocks.last().map(|b| b.hash.as_str()) != Some(tip_hash.as_str()) {
        return Ok(Vec::new());
    }
    let mut start = blocks.len() - 1;
    while start > 0
        && blocks[start - 1].height + 1 == blocks[start].height
        && blocks[start - 1].hash == blocks[start].parent_hash
    {
        start -= 1;
    }
    Ok(blocks.split_off(start))
}

/// Moves the cursor of `network` to `tip` (after a connect or a disconnect),
/// recording `tip` among the recent blocks and forgetting blocks above it and
/// more than `keep` below it. One transaction.
pub async fn save_tip(
    db: &Db,
    network: Network,
    tip: &BlockRef,
    keep: u64,
) -> Result<(), sqlx::Error> {
    let net = network.to_string();
    let height = tip.height as i64;
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO chain_cursor (network, height, hash, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (network) DO UPDATE SET height = excluded.height, hash = excluded.hash, \
         updated_at = excluded.updated_at",
    )
    .bind(&net)
    .bind(height)
    .bind(&tip.hash)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM chain_recent_blocks WHERE network = $1 AND (height >= $2 OR height < $3)",
    )
    .bind(&net)
    .bind(height)
    .bind(height - keep as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO chain_recent_blocks (network, height, hash, parent_hash) VALUES ($1, $2, $3, $4)",
    )
    .bind(&net)
    .bind(height)
    .bind(&tip.hash)
    .bind(&tip.parent_hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
