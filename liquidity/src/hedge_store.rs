//! Persistence of hedge orders (`hedge_orders`, migrations 5000 and up): an
//! order is inserted before it is first sent, and updated after every
//! answer, so a restart resends exactly the pending ones with their ids.

use std::str::FromStr;

use infra::db::{Db, Migrations};
use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::Row;

use crate::hedge::{HedgeOrder, HedgeSide, HedgeStatus};

fn migrations_postgres() -> Migrator {
    sqlx::migrate!("migrations/postgres")
}

fn migrations_sqlite() -> Migrator {
    sqlx::migrate!("migrations/sqlite")
}

/// The liquidity engine's tables, versions 5000 and up; applied by
/// [`crate::hedger::Hedger::start`].
pub static MIGRATIONS: Migrations = Migrations {
    postgres: migrations_postgres,
    sqlite: migrations_sqlite,
};

/// A stored row that does not read back as an order.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("hedge order {id}: column {column} holds {value:?}")]
    Corrupt {
        id: String,
        column: &'static str,
        value: String,
    },
}

fn ms(t: proto::Timestamp) -> i64 {
    t.timestamp_millis()
}

fn reason(s: &HedgeStatus) -> Option<String> {
    match s {
        HedgeStatus::Rejected { reason } | HedgeStatus::GaveUp { reason } => Some(reason.clone()),
        _ => None,
    }
}

/// Inserts a new order; `false` when its client order id is already
/// stored (the hedge was planned before: the stored row stands).
pub async fn insert(db: &Db, o: &HedgeOrder) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO hedge_orders (client_order_id, swap_id, quote_id, venue, market, side, qty, \
         status, reason, filled_qty, avg_price, venue_order_id, attempts, last_error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (client_order_id) DO NOTHING",
    )
    .bind(&o.client_order_id)
    .bind(o.swap_id.to_string())
    .bind(o.quote_id.to_string())
    .bind(&o.venue)
    .bind(o.market.to_string())
    .bind(o.side.as_str())
    .bind(o.qty.to_string())
    .bind(o.status.name())
    .bind(reason(&o.status))
    .bind(o.filled_qty.to_string())
    .bind(o.avg_price.map(|p| p.to_string()))
    .bind(o.venue_order_id.clone())
    .bind(i64::from(o.attempts))
    .bind(o.last_error.clone())
    .bind(ms(o.created_at))
    .bind(ms(o.updated_at))
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Writes what an attempt changed.
pub async fn update(db: &Db, o: &HedgeOrder) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE hedge_orders SET status = $2, reason = $3, filled_qty = $4, avg_price = $5, \
         venue_order_id = $6, attempts = $7, last_error = $8, updated_at = $9 \
         WHERE client_order_id = $1",
    )
    .bind(&o.client_order_id)
    .bind(o.status.name())
    .bind(reason(&o.status))
    .bind(o.filled_qty.to_string())
    .bind(o.avg_price.map(|p| p.to_string()))
    .bind(o.venue_order_id.clone())
    .bind(i64::from(o.attempts))
    .bind(o.last_error.clone())
    .bind(ms(o.updated_at))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Every stored order, oldest first.
pub async fn load(db: &Db) -> Result<Vec<HedgeOrder>, StoreError> {
    let rows = sqlx::query(
        "SELECT client_order_id, swap_id, quote_id, venue, market, side, qty, status, reason, \
         filled_qty, avg_price, venue_order_id, attempts, last_error, created_at, updated_at \
         FROM hedge_orders ORDER BY created_at, client_order_id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(read).collect()
}

fn read(r: &sqlx::any::AnyRow) -> Result<HedgeOrder, StoreError> {
    let id: String = r.try_get(0)?;
    let corrupt = |column: &'static str, value: &str| StoreError::Corrupt {
        id: id.clone(),
        column,
        value: value.to_owned(),
    };
    fn parse<T: FromStr>(
        s: &str,
        column: &'static str,
        corrupt: &impl Fn(&'static str, &str) -> StoreError,
    ) -> Result<T, StoreError> {
        s.parse().map_err(|_| corrupt(column, s))
    }
    let text = |i: usize| -> Result<String, StoreError> { Ok(r.try_get::<String, _>(i)?) };
    let opt =
        |i: usize| -> Result<Option<String>, StoreError> { Ok(r.try_get::<Option<String>, _>(i)?) };
    let time = |i: usize, column: &'static str| -> Result<proto::Timestamp, StoreError> {
        let v: i64 = r.try_get(i)?;
        chrono::DateTime::from_timestamp_millis(v).ok_or_else(|| corrupt(column, &v.to_string()))
    };
    let side_s = text(5)?;
    let status_s = text(7)?;
    let why = opt(8)?.unwrap_or_default();
    let status = match status_s.as_str() {
        "pending" => HedgeStatus::Pending,
        "filled" => HedgeStatus::Filled,
        "partially_filled" => HedgeStatus::PartiallyFilled,
        "rejected" => HedgeStatus::Rejected { reason: why },
        "gave_up" => HedgeStatus::GaveUp { reason: why },
        other => return Err(corrupt("status", other)),
    };
    let avg_price = match opt(10)? {
        Some(p) => Some(parse::<Decimal>(&p, "avg_price", &corrupt)?),
        None => None,
    };
    let attempts: i64 = r.try_get(12)?;
    Ok(HedgeOrder {
        swap_id: parse(&text(1)?, "swap_id", &corrupt)?,
        quote_id: parse(&text(2)?, "quote_id", &corrupt)?,
        venue: text(3)?,
        market: parse(&text(4)?, "market", &corrupt)?,
        side: HedgeSide::parse(&side_s).ok_or_else(|| corrupt("side", &side_s))?,
        qty: parse(&text(6)?, "qty", &corrupt)?,
        status,
        filled_qty: parse(&text(9)?, "filled_qty", &corrupt)?,
        avg_price,
        venue_order_id: opt(11)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt("attempts", &attempts.to_string()))?,
        last_error: opt(13)?,
        created_at: time(14, "created_at")?,
        updated_at: time(15, "updated_at")?,
        client_order_id: id.clone(),
    })
}
