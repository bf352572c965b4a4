//! The hot wallet's tables: deposit-address allocation and payments.

use infra::db::{Db, Migrations};
use sqlx::Row;

pub const MIGRATIONS: Migrations = Migrations {
    postgres: || sqlx::migrate!("migrations/postgres"),
    sqlite: || sqlx::migrate!("migrations/sqlite"),
};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("derivation index exhausted for {0}")]
    IndexExhausted(String),
    #[error("deposit address derivation failed: {0}")]
    Derivation(String),
}

/// Where a payment stands in the hot wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Persisted before signing; nothing signed yet.
    Intent,
    /// Signed and persisted; may or may not have reached the node.
    Signed,
    /// Accepted by the node.
    Broadcast,
    Confirmed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Intent => "intent",
            PaymentStatus::Signed => "signed",
            PaymentStatus::Broadcast => "broadcast",
            PaymentStatus::Confirmed => "confirmed",
        }
    }

    fn parse(s: &str) -> PaymentStatus {
        match s {
            "signed" => PaymentStatus::Signed,
            "broadcast" => PaymentStatus::Broadcast,
            "confirmed" => PaymentStatus::Confirmed,
            _ => PaymentStatus::Intent,
        }
    }
}

/// A payment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub payment_id: String,
    pub swap_id: String,
    pub kind: String,
    pub network: String,
    pub asset: String,
    pub address: String,
    pub amount: String,
    pub status: PaymentStatus,
    pub txid: Option<String>,
    pub raw_tx: Option<String>,
    pub nonce: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Repo {
    db: Db,
}

impl Repo {
    pub async fn open(db: Db) -> Result<Self, infra::db::DbError> {
        db.migrate(&MIGRATIONS).await?;
        Ok(Repo { db })
    }

    /// Allocates the next derivation index of `network` for `swap_id` and
    /// records the address derived from it by `derive`, in one transaction:
    /// two workers never get the same index, and an index is never reused.
    pub async fn allocate_address<F>(
        &self,
        network: &str,
        swap_id: &str,
        derive: F,
    ) -> Result<(u32, String), RepoError>
    where
        F: FnOnce(u32) -> Result<String, String>,
    {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO hw_address_index (network, next_index) VALUES ($1, 0) \
             ON CONFLICT (network) DO NOTHING",
        )
        .bind(network)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "UPDATE hw_address_index SET next_index = next_index + 1 WHERE network = $1 \
             RETURNING next_index",
        )
        .bind(network)
        .fetch_one(&mut *tx)
        .await?;
        let next: i64 = row.try_get(0)?;
        let index = u32::try_from(next - 1)
            .ok()
            .filter(|i| *i < 0x8000_0000)
            .ok_or_else(|| RepoError::IndexExhausted(network.to_owned()))?;
        let address = derive(index).map_err(RepoError::Derivation)?;
        sqlx::query(
            "INSERT INTO hw_deposit_addresses (network, address, derivation_index, swap_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(network)
        .bind(&address)
        .bind(i64::from(index))
        .bind(swap_id)
        .bind(infra::db::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((index, address))
    }

    /// The swap an allocated deposit address belongs to.
    pub async fn address_owner(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Option<String>, RepoError> {
        let row = sqlx::query(
            "SELECT swap_id FROM hw_deposit_addresses WHERE network = $1 AND address = $2",
        )
        .bind(network)
        .bind(address)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// Records a payment intent; a second call with the same id changes
    /// nothing and returns the row as it stands.
    pub async fn insert_intent(&self, p: &PaymentRow) -> Result<PaymentRow, RepoError> {
        let now = infra::db::now_ms();
        sqlx::query(
            "INSERT INTO hw_payments (payment_id, swap_id, kind, network, asset, address, amount, status, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'intent', $8, $8) ON CONFLICT (payment_id) DO NOTHING",
        )
        .bind(&p.payment_id)
        .bind(&p.swap_id)
        .bind(&p.kind)
        .bind(&p.network)
        .bind(&p.asset)
        .bind(&p.address)
        .bind(&p.amount)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        self.payment(&p.payment_id)
            .await?
            .ok_or(RepoError::Database(sqlx::Error::RowNotFound))
    }

    pub async fn payment(&self, payment_id: &str) -> Result<Option<PaymentRow>, RepoError> {
        let row = sqlx::query(&format!("{SELECT_PAYMENT} WHERE payment_id = $1"))
            .bind(payment_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| payment_from_row(&r)).transpose()
    }

    pub async fn payment_by_txid(&self, txid: &str) -> Result<Option<PaymentRow>, RepoError> {
        let row = sqlx::query(&format!("{SELECT_PAYMENT} WHERE txid = $1"))
            .bind(txid)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| payment_from_row(&r)).transpose()
    }

    /// Payments signed but not known to be confirmed, oldest first: after a
    /// restart these are rebroadcast as they are, never re-signed.
    pub async fn unconfirmed_signed(&self) -> Result<Vec<PaymentRow>, RepoError> {
        let rows = sqlx::query(&format!(
            "{SELECT_PAYMENT} WHERE status IN ('signed', 'broadcast') ORDER BY created_at_ms"
        ))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(payment_from_row).collect()
    }

    /// Stores the signed transaction. Only an intent can become signed, so a
    /// payment is signed at most once.
    pub async fn record_signed(
        &self,
        payment_id: &str,
        txid: &str,
        raw_tx: &str,
        nonce: Option<i64>,
    ) -> Result<bool, RepoError> {
        let r = sqlx::query(
            "UPDATE hw_payments SET status = 'signed', txid = $2, raw_tx = $3, nonce = $4, updated_at_ms = $5 \
             WHERE payment_id = $1 AND status = 'intent'",
        )
        .bind(payment_id)
        .bind(txid)
        .bind(raw_tx)
        .bind(nonce)
        .bind(infra::db::now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_status(
        &self,
        payment_id: &str,
        status: PaymentStatus,
    ) -> Result<(), RepoError> {
        sqlx::query("UPDATE hw_payments SET status = $2, updated_at_ms = $3 WHERE payment_id = $1")
            .bind(payment_id)
            .bind(status.as_str())
            .bind(infra::db::now_ms())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// The highest nonce any signed payment of `network` used.
    pub async fn max_nonce(&self, network: &str) -> Result<Option<i64>, RepoError> {
        let row = sqlx::query(
            "SELECT MAX(nonce) FROM hw_payments WHERE network = $1 AND nonce IS NOT NULL",
        )
        .bind(network)
        .fetch_one(self.db.pool())
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }
}

const SELECT_PAYMENT: &str = "SELECT payment_id, swap_id, kind, network, asset, address, amount, status, txid, raw_tx, nonce FROM hw_payments";

fn payment_from_row(r: &sqlx::any::AnyRow) -> Result<PaymentRow, RepoError> {
    Ok(PaymentRow {
        payment_id: r.try_get(0)?,
        swap_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        network: r.try_get(3)?,
        asset: r.try_get(4)?,
        address: r.try_get(5)?,
        amount: r.try_get(6)?,
        status: PaymentStatus::parse(&r.try_get::<String, _>(7)?),
        txid: r.try_get(8)?,
        raw_tx: r.try_get(9)?,
        nonce: r.try_get(10)?,
    })
}
