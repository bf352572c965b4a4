//! Database connection and migrations.
//!
//! One [`Db`] handle serves PostgreSQL (cluster mode) and SQLite (embedded
//! mode) through sqlx's `Any` driver. SQL is written once with `$1`-style
//! parameters, which both databases accept. Each crate that owns tables keeps
//! its migrations in `migrations/postgres` and `migrations/sqlite` under its
//! own folder, numbered in its own range (state-machine 1000s, infra 2000s,
//! node-gateway 3000s, hot-wallet 4000s, liquidity 5000s, gateway 6000s), and
//! applies them with [`Db::migrate`]; migrations of other crates already
//! applied to the same database are left alone.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions};

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Errors opening or migrating a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database url {0:?}: expected postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A pooled connection to the engine's database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// The two migration sets a crate ships, one per backend, as constructors:
/// `Migrations { postgres: || sqlx::migrate!("migrations/postgres"), sqlite: || sqlx::migrate!("migrations/sqlite") }`.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub postgres: fn() -> Migrator,
    pub sqlite: fn() -> Migrator,
}

impl Db {
    /// Connects to `url` (`postgres://…`, or `sqlite:PATH` / `sqlite::memory:`).
    /// SQLite files are created if missing and run in WAL mode with full
    /// synchronous commits, so a committed transaction survives a crash.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        let pool = match backend {
            Backend::Postgres => {
                let opts = AnyConnectOptions::from_str(url)?.disable_statement_logging();
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire(false)
                    .before_acquire(ping_if_idle)
                    .connect_with(opts)
                    .await?
            }
            Backend::Sqlite => {
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                let mut u = url.to_owned();
                if !memory && !u.contains("mode=") {
                    u.push_str(if u.contains('?') {
                        "&mode=rwc"
                    } else {
                        "?mode=rwc"
                    });
                }
                let opts = AnyConnectOptions::from_str(&u)?.disable_statement_logging();
                // A memory database lives only as long as its one connection.
                let max = if memory { 1 } else { 8 };
                AnyPoolOptions::new()
                    .max_connections(max)
                    .min_connections(if memory { 1 } else { 0 })
                    .idle_timeout(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(1800))
                    })
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
        };
        Ok(Self { pool, backend })
    }

    /// Applies a crate's migrations for this backend. Migrations applied by
    /// other crates to the same database are ignored, not reported missing.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), DbError> {
        let mut m = match self.backend {
            Backend::Postgres => (migrations.postgres)(),
            Backend::Sqlite => (migrations.sqlite)(),
        };
        m.set_ignore_missing(true);
        m.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs `SELECT 1`; returns its round trip and records it in the
    /// database latency histogram ([`crate::metrics::DB_LATENCY`]).
    pub async fn ping(&self) -> Result<Duration, DbError> {
        let started = std::time::Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        let took = started.elapsed();
        metrics::histogram!(crate::metrics::DB_LATENCY).record(took.as_secs_f64());
        Ok(took)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `true` when `err` is a unique-constraint violation, on either backend.
    pub fn is_unique_violation(err: &sqlx::Error) -> bool {
        match err {
            sqlx::Error::Database(e) => {
                matches!(e.kind(), sqlx::error::ErrorKind::UniqueViolation)
                    || e.code().as_deref() == Some("23505")
                    || e.code().as_deref() == Some("2067")
                    || e.code().as_deref() == Some("1555")
            }
            _ => false,
        }
    }
}

/// Connections idle for longer than this are pinged before being handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// Pool `before_acquire` hook: checks a connection that sat idle for a while
/// and discards it if the server is gone. sqlx's default `test_before_acquire`
/// pings on *every* acquire: one extra round trip per transaction on top of
/// the ping sqlx always sends when a connection is returned (see
/// docs/BENCHMARKS.md).
fn ping_if_idle(
    conn: &mut sqlx::AnyConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if meta.idle_for < PING_AFTER_IDLE {
            return Ok(true);
        }
        use sqlx::Connection;
        match conn.ping().await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::info!(error = %e, "dropping a dead pooled connection");
                Ok(false)
            }
        }
    })
}

/// Milliseconds since the Unix epoch, the time column type of every table.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
