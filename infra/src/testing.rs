//! Throw-away databases for tests, on both backends: a fresh SQLite file in
//! a temporary directory, or a fresh PostgreSQL database on the server named
//! by `TEST_DATABASE_URL` (`eval "$(scripts/pg.sh)"` sets it), dropped when
//! the handle is dropped. Without the variable the PostgreSQL tests fail:
//! CI always runs them.

use std::str::FromStr;

use sqlx::{Connection, Executor};

/// A test database; its `url` opens it with [`crate::db::Db::connect`].
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(#[allow(dead_code)] std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

/// A fresh SQLite database file; the directory is removed on drop.
pub fn sqlite() -> TestDb {
    let dir = std::env::temp_dir().join(format!("swap-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    TestDb {
        url: format!("sqlite:{}", dir.join("test.db").display()),
        kind: Kind::Sqlite(dir),
    }
}

/// The PostgreSQL server tests run against.
pub fn postgres_server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: the PostgreSQL tests need a server. \
             Run `eval \"$(scripts/pg.sh)\"` (as root) and retry."
        )
    })
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

/// A fresh PostgreSQL database `swap_test_<random>` on the test server.
pub async fn postgres() -> TestDb {
    let admin_url = postgres_server_url();
    let name = format!("swap_test_{}", uuid::Uuid::new_v4().simple());
    let opts = sqlx::postgres::PgConnectOptions::from_str(&admin_url)
        .expect("TEST_DATABASE_URL is not a valid URL");
    let mut admin = sqlx::PgConnection::connect_with(&opts)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to TEST_DATABASE_URL (is the server up? run scripts/pg.sh): {e}")
        });
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("CREATE DATABASE");
    admin.close().await.ok();
    TestDb {
        url: with_database(&admin_url, &name),
        kind: Kind::Postgres { admin_url, name },
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Kind::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Its own thread and runtime: Drop may run inside a runtime.
                let dropped = std::thread::spawn(move || -> Result<(), String> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(async {
                        let opts = sqlx::postgres::PgConnectOptions::from_str(&admin_url)
                            .map_err(|e| e.to_string())?;
                        let mut admin = sqlx::PgConnection::connect_with(&opts)
                            .await
                            .map_err(|e| e.to_string())?;
                        admin
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                        admin.close().await.map_err(|e| e.to_string())
                    })
                })
                .join();
                if !matches!(dropped, Ok(Ok(()))) {
                    eprintln!("could not drop test database {}: {dropped:?}", self.url);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_name() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
