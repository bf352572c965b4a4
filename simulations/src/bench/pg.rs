//! Scratch PostgreSQL databases for benchmarks: created fresh on the given
//! server, dropped afterwards.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use super::BenchError;

/// A database `swap_bench_<random>` on the server of `server_url`.
#[derive(Debug)]
pub struct ScratchDb {
    server_url: String,
    /// The database's name.
    pub name: String,
    /// A URL for the scratch database (same server, user and options).
    pub url: String,
}

impl ScratchDb {
    /// Creates the database.
    pub async fn create(server_url: &str) -> Result<Self, BenchError> {
        let name = format!("swap_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin(server_url).await?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        admin.close().await?;
        Ok(Self {
            server_url: server_url.to_owned(),
            url: with_database(server_url, &name),
            name,
        })
    }

    /// Runs `ALTER DATABASE <name> <clause>`, e.g. `SET synchronous_commit = off`
    /// (applies to sessions opened afterwards).
    pub async fn alter(&self, clause: &str) -> Result<(), BenchError> {
        let mut admin = admin(&self.server_url).await?;
        admin
            .execute(format!("ALTER DATABASE {} {clause}", self.name).as_str())
            .await?;
        admin.close().await?;
        Ok(())
    }

    /// Drops the database (closing other sessions on it).
    pub async fn drop_db(self) -> Result<(), BenchError> {
        let mut admin = admin(&self.server_url).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await?;
        admin.close().await?;
        Ok(())
    }
}

async fn admin(server_url: &str) -> Result<PgConnection, BenchError> {
    let opts = PgConnectOptions::from_str(server_url)?;
    Ok(PgConnection::connect_with(&opts).await?)
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "x"),
            "postgresql://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
