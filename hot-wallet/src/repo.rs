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
    /// Over the hot wallet's limits: waits for the desk's approval before
    /// it is signed.
    AwaitingApproval,
    /// Signed and persisted; may or may not have reached the node.
    Signed,
    /// Accepted by the node.
    Broadcast,
    Confirmed,
    /// Mined but failed (Ethereum status 0): nothing was paid.
    Reverted,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Intent => "intent",
            PaymentStatus::AwaitingApproval => "approval",
            PaymentStatus::Signed => "signed",
            PaymentStatus::Broadcast => "broadcast",
            PaymentStatus::Confirmed => "confirmed",
            PaymentStatus::Reverted => "reverted",
        }
    }

    fn parse(s: &str) -> PaymentStatus {
        match s {
            "approval" => PaymentStatus::AwaitingApproval,
            "signed" => PaymentStatus::Signed,
            "broadcast" => PaymentStatus::Broadcast,
            "confirmed" => PaymentStatus::Confirmed,
            "reverted" => PaymentStatus::Reverted,
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
    /// Why an intent is not signed yet (it is retried later).
    pub hold_reason: Option<String>,
    /// Who approved a payment over the limits.
    pub approved_by: Option<String>,
    pub created_at_ms: i64,
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
        let index = next_index(&mut tx, network, 0).await?;
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

const SELECT_PAYMENT: &str = "SELECT payment_id, swap_id, kind, network, asset, address, amount, status, txid, raw_tx, nonce, hold_reason, approved_by, created_at_ms FROM hw_payments";

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
        hold_reason: r.try_get(11)?,
        approved_by: r.try_get(12)?,
        created_at_ms: r.try_get(13)?,
    })
}

/// One output paying a Bitcoin address of the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtxoRow {
    pub network: String,
    pub txid: String,
    pub vout: u32,
    pub address: String,
    /// 0: a deposit address (`…/0/index`); 1: the internal chain
    /// (inventory and change, `…/1/index`).
    pub key_chain: u32,
    pub key_index: u32,
    pub value_sats: u64,
    pub confirmations: u32,
}

/// How the node gateway last reported an output of the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtxoState {
    /// In the mempool, or reorganised out of the chain.
    Unconfirmed,
    Confirmed {
        depth: u32,
    },
    /// Replaced or evicted: it will never be spendable.
    Dropped,
}

/// A spent input as the signed payment records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentInput {
    pub txid: String,
    pub vout: u32,
}

/// Takes the next derivation index of `counter` (starting at `first`) in
/// the caller's transaction: two callers never get the same one.
async fn next_index(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    counter: &str,
    first: i64,
) -> Result<u32, RepoError> {
    sqlx::query(
        "INSERT INTO hw_address_index (network, next_index) VALUES ($1, $2) \
         ON CONFLICT (network) DO NOTHING",
    )
    .bind(counter)
    .bind(first)
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query(
        "UPDATE hw_address_index SET next_index = next_index + 1 WHERE network = $1 \
         RETURNING next_index",
    )
    .bind(counter)
    .fetch_one(&mut **tx)
    .await?;
    let next: i64 = row.try_get(0)?;
    u32::try_from(next - 1)
        .ok()
        .filter(|i| *i < 0x8000_0000)
        .ok_or_else(|| RepoError::IndexExhausted(counter.to_owned()))
}

fn u32_col(r: &sqlx::any::AnyRow, i: usize) -> Result<u32, RepoError> {
    let v: i64 = r.try_get(i)?;
    u32::try_from(v).map_err(|_| {
        RepoError::Database(sqlx::Error::Decode(
            format!("column {i}: {v} out of range").into(),
        ))
    })
}

impl Repo {
    /// Records an address of the wallet's internal chain (idempotent).
    pub async fn record_wallet_address(
        &self,
        network: &str,
        address: &str,
        key_chain: u32,
        key_index: u32,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO hw_wallet_addresses (network, address, key_chain, key_index, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(network)
        .bind(address)
        .bind(i64::from(key_chain))
        .bind(i64::from(key_index))
        .bind(infra::db::now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Allocates a fresh change address on the internal chain (index 1 and
    /// up; 0 is the inventory address) and records it, in one transaction.
    pub async fn allocate_change_address<F>(
        &self,
        network: &str,
        derive: F,
    ) -> Result<(u32, String), RepoError>
    where
        F: FnOnce(u32) -> Result<String, String>,
    {
        let counter = format!("{network}/change");
        let mut tx = self.db.pool().begin().await?;
        let index = next_index(&mut tx, &counter, 1).await?;
        let address = derive(index).map_err(RepoError::Derivation)?;
        sqlx::query(
            "INSERT INTO hw_wallet_addresses (network, address, key_chain, key_index, created_at_ms) \
             VALUES ($1, $2, 1, $3, $4)",
        )
        .bind(network)
        .bind(&address)
        .bind(i64::from(index))
        .bind(infra::db::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((index, address))
    }

    /// The key (chain, index) of a Bitcoin address of the wallet: a deposit
    /// address (chain 0) or an internal one (chain 1).
    pub async fn bitcoin_key_of(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Option<(u32, u32)>, RepoError> {
        if let Some(r) = sqlx::query(
            "SELECT key_chain, key_index FROM hw_wallet_addresses WHERE network = $1 AND address = $2",
        )
        .bind(network)
        .bind(address)
        .fetch_optional(self.db.pool())
        .await?
        {
            return Ok(Some((u32_col(&r, 0)?, u32_col(&r, 1)?)));
        }
        let r = sqlx::query(
            "SELECT derivation_index FROM hw_deposit_addresses WHERE network = $1 AND address = $2",
        )
        .bind(network)
        .bind(address)
        .fetch_optional(self.db.pool())
        .await?;
        r.map(|r| Ok((0, u32_col(&r, 0)?))).transpose()
    }

    /// Records what the node gateway reported about an output of the
    /// wallet. Reports for one address arrive in order, so the latest wins;
    /// a dropped output stays dropped.
    pub async fn record_utxo(&self, utxo: &UtxoRow, state: UtxoState) -> Result<(), RepoError> {
        let (confirmations, dropped) = match state {
            UtxoState::Unconfirmed => (0i64, 0i64),
            UtxoState::Confirmed { depth } => (i64::from(depth), 0),
            UtxoState::Dropped => (0, 1),
        };
        let value = i64::try_from(utxo.value_sats)
            .map_err(|_| RepoError::Derivation(format!("{} sats out of range", utxo.value_sats)))?;
        sqlx::query(
            "INSERT INTO hw_utxos (network, txid, vout, address, key_chain, key_index, value_sats, confirmations, dropped, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (network, txid, vout) DO UPDATE SET confirmations = $8, \
             dropped = CASE WHEN hw_utxos.dropped = 1 THEN 1 ELSE $9 END, updated_at_ms = $10",
        )
        .bind(&utxo.network)
        .bind(&utxo.txid)
        .bind(i64::from(utxo.vout))
        .bind(&utxo.address)
        .bind(i64::from(utxo.key_chain))
        .bind(i64::from(utxo.key_index))
        .bind(value)
        .bind(confirmations)
        .bind(dropped)
        .bind(infra::db::now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Outputs a payout may spend: not dropped, not spent by a signed
    /// payment, at least `min_confirmations` deep.
    pub async fn spendable_utxos(
        &self,
        network: &str,
        min_confirmations: u32,
    ) -> Result<Vec<UtxoRow>, RepoError> {
        let rows = sqlx::query(
            "SELECT network, txid, vout, address, key_chain, key_index, value_sats, confirmations \
             FROM hw_utxos WHERE network = $1 AND spent_by IS NULL AND dropped = 0 \
             AND confirmations >= $2 ORDER BY txid, vout",
        )
        .bind(network)
        .bind(i64::from(min_confirmations))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(utxo_from_row).collect()
    }

    /// Every unspent, not dropped output of `network` (any depth).
    pub async fn unspent_utxos(&self, network: &str) -> Result<Vec<UtxoRow>, RepoError> {
        let rows = sqlx::query(
            "SELECT network, txid, vout, address, key_chain, key_index, value_sats, confirmations \
             FROM hw_utxos WHERE network = $1 AND spent_by IS NULL AND dropped = 0 ORDER BY txid, vout",
        )
        .bind(network)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(utxo_from_row).collect()
    }

    /// Stores a signed Bitcoin payment and marks the outputs it spends, in
    /// one transaction. Fails (changing nothing) if the payment is no longer
    /// an intent or an input is already spent by another payment.
    pub async fn record_signed_bitcoin(
        &self,
        payment_id: &str,
        txid: &str,
        raw_tx: &str,
        inputs: &[SpentInput],
    ) -> Result<bool, RepoError> {
        let mut tx = self.db.pool().begin().await?;
        let now = infra::db::now_ms();
        let r = sqlx::query(
            "UPDATE hw_payments SET status = 'signed', txid = $2, raw_tx = $3, hold_reason = NULL, \
             next_attempt_at_ms = NULL, updated_at_ms = $4 WHERE payment_id = $1 AND status = 'intent' \
             RETURNING network",
        )
        .bind(payment_id)
        .bind(txid)
        .bind(raw_tx)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let network: String = match r {
            Some(row) => row.try_get(0)?,
            None => return Ok(false),
        };
        for input in inputs {
            let done = sqlx::query(
                "UPDATE hw_utxos SET spent_by = $4, updated_at_ms = $5 \
                 WHERE network = $1 AND txid = $2 AND vout = $3 AND spent_by IS NULL",
            )
            .bind(&network)
            .bind(&input.txid)
            .bind(i64::from(input.vout))
            .bind(payment_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                // Rolled back on drop: nothing of this payment is recorded.
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Holds an intent that could not be signed now; it is tried again from
    /// `next_attempt_at_ms`.
    pub async fn hold(
        &self,
        payment_id: &str,
        reason: &str,
        next_attempt_at_ms: i64,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE hw_payments SET hold_reason = $2, next_attempt_at_ms = $3, updated_at_ms = $4 \
             WHERE payment_id = $1 AND status = 'intent'",
        )
        .bind(payment_id)
        .bind(reason)
        .bind(next_attempt_at_ms)
        .bind(infra::db::now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Held intents due for another attempt at `now_ms`, oldest first.
    pub async fn due_held(&self, now_ms: i64) -> Result<Vec<PaymentRow>, RepoError> {
        let rows = sqlx::query(&format!(
            "{SELECT_PAYMENT} WHERE status = 'intent' AND hold_reason IS NOT NULL \
             AND next_attempt_at_ms <= $1 ORDER BY created_at_ms"
        ))
        .bind(now_ms)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(payment_from_row).collect()
    }

    /// Parks an intent over the limits until the desk approves it.
    pub async fn await_approval(&self, payment_id: &str, reason: &str) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE hw_payments SET status = 'approval', hold_reason = $2, updated_at_ms = $3 \
             WHERE payment_id = $1 AND status = 'intent' AND approved_by IS NULL",
        )
        .bind(payment_id)
        .bind(reason)
        .bind(infra::db::now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Payments waiting for the desk, oldest first.
    pub async fn awaiting_approval(&self) -> Result<Vec<PaymentRow>, RepoError> {
        let rows = sqlx::query(&format!(
            "{SELECT_PAYMENT} WHERE status = 'approval' ORDER BY created_at_ms"
        ))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(payment_from_row).collect()
    }

    /// Approves a waiting payment: it becomes an intent again, due now.
    /// Returns false when it was not waiting for approval.
    pub async fn approve(&self, payment_id: &str, approver: &str) -> Result<bool, RepoError> {
        let now = infra::db::now_ms();
        let r = sqlx::query(
            "UPDATE hw_payments SET status = 'intent', approved_by = $2, approved_at_ms = $3, \
             hold_reason = 'approved', next_attempt_at_ms = $3, updated_at_ms = $3 \
             WHERE payment_id = $1 AND status = 'approval'",
        )
        .bind(payment_id)
        .bind(approver)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Payments of `asset` signed since `since_ms` (for the daily limit).
    pub async fn signed_since(
        &self,
        asset: &str,
        since_ms: i64,
    ) -> Result<Vec<PaymentRow>, RepoError> {
        let rows = sqlx::query(&format!(
            "{SELECT_PAYMENT} WHERE asset = $1 AND status IN ('signed', 'broadcast', 'confirmed') \
             AND updated_at_ms >= $2"
        ))
        .bind(asset)
        .bind(since_ms)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(payment_from_row).collect()
    }
}

fn utxo_from_row(r: &sqlx::any::AnyRow) -> Result<UtxoRow, RepoError> {
    let value: i64 = r.try_get(6)?;
    Ok(UtxoRow {
        network: r.try_get(0)?,
        txid: r.try_get(1)?,
        vout: u32_col(r, 2)?,
        address: r.try_get(3)?,
        key_chain: u32_col(r, 4)?,
        key_index: u32_col(r, 5)?,
        value_sats: u64::try_from(value).map_err(|_| {
            RepoError::Database(sqlx::Error::Decode(
                format!("value {value} out of range").into(),
            ))
        })?,
        confirmations: u32_col(r, 7)?,
    })
}
