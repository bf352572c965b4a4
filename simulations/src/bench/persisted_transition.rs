//! `persisted-transition`: swap transitions per second persisted by
//! [`SwapStore::append`] on PostgreSQL from one connection (state update +
//! event insert + outbox insert in one transaction, synchronous commit),
//! against `pgbench` running the same statements on the same database in the
//! same run.
//!
//! Both sides work on their own 1 000 seeded swaps (ids
//! `00000000-0000-0000-0000-<n, 12 digits>`) so the store's expected versions
//! stay right; measurement and baseline alternate for `rounds` rounds.

use std::time::{Duration, Instant};

use infra::db::Db;
use serde_json::{json, Value};
use sqlx::{Connection, Row};
use state_machine::store::{NewEvent, NewSwap, OutboxMessage, StateUpdate, SwapStore};
use tokio::process::Command;
use uuid::Uuid;

use super::pg::ScratchDb;
use super::{BenchConfig, BenchError, Measurement};

const SWAPS_PER_SIDE: u64 = 1_000;
const AT_MS: i64 = 1_700_000_000_000;

fn swap_id(n: u64) -> Uuid {
    Uuid::from_u128(u128::from_str_radix(&format!("{n:012}"), 16).unwrap_or_default())
}

/// The swap snapshot both sides write (the same bytes).
fn data_json() -> Value {
    json!({
        "pair": "BTC/USDC",
        "deposit_sats": 150_000,
        "payout_base_units": "1234567890",
        "confirmations": 1,
        "quote_id": "00000000-0000-0000-0000-000000000000"
    })
}

fn payload_json() -> Value {
    json!({ "txid": "5f2c0e6fa4b1c8d3e9f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5", "vout": 0, "sats": 150_000 })
}

/// pgbench's script: the statements [`SwapStore::append`] sends, with random
/// ids, on swaps `first..=last`.
fn pgbench_script(first: u64, last: u64) -> String {
    let data = data_json().to_string().replace('\'', "''");
    let payload = payload_json().to_string().replace('\'', "''");
    let id = "('00000000-0000-0000-0000-' || lpad(CAST(:n AS text), 12, '0'))";
    format!(
        "\\set n random({first}, {last})\n\
         BEGIN;\n\
         UPDATE swaps SET version = version + 1, state = 'DepositSeen', terminal = false, data = '{data}', \
         updated_at_ms = {AT_MS} WHERE swap_id = {id} RETURNING version \\gset\n\
         INSERT INTO swap_events (event_id, swap_id, version, kind, payload, occurred_at_ms, recorded_at_ms) \
         VALUES (CAST(gen_random_uuid() AS text), {id}, :version, 'DepositSeen', '{payload}', {AT_MS}, {AT_MS});\n\
         INSERT INTO outbox (message_id, topic, key, payload, created_at_ms) \
         VALUES (CAST(gen_random_uuid() AS text), 'swap.updated', {id}, '{payload}', {AT_MS});\n\
         COMMIT;\n"
    )
}

/// Runs the benchmark on a scratch database of the configured server, with
/// synchronous commits (the server's default): every commit waits for its WAL flush.
pub async fn run(config: &BenchConfig) -> Result<Measurement, BenchError> {
    run_with(config, Commit::Synchronous).await
}

/// The same with `synchronous_commit = off` on the scratch database, for both
/// sides: without the WAL flush per commit, the figure shows the client's own
/// cost (driver, round trips, serialization) instead of the disk's.
pub async fn run_async_commit(config: &BenchConfig) -> Result<Measurement, BenchError> {
    run_with(config, Commit::Asynchronous).await
}

/// How commits wait for the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    Synchronous,
    Asynchronous,
}

async fn run_with(config: &BenchConfig, commit: Commit) -> Result<Measurement, BenchError> {
    let server = config.require_postgres()?;
    let scratch = ScratchDb::create(server).await?;
    let result = async {
        if commit == Commit::Asynchronous {
            scratch.alter("SET synchronous_commit = off").await?;
        }
        measure(config, &scratch).await
    }
    .await;
    if let Err(e) = scratch.drop_db().await {
        tracing::warn!(error = %e, "could not drop the benchmark database");
    }
    result
}

async fn measure(config: &BenchConfig, scratch: &ScratchDb) -> Result<Measurement, BenchError> {
    let db = Db::connect(&scratch.url).await?;
    let store = SwapStore::open(db.clone()).await?;

    // Seed the swaps of the store, pgbench and the unpooled connection.
    for n in 1..=3 * SWAPS_PER_SIDE {
        let swap = NewSwap {
            swap_id: swap_id(n),
            idempotency_key: None,
            deposit_chain: "bitcoin".into(),
            deposit_address: format!("bcrt1qbench{n}"),
            state: "AwaitingDeposit".into(),
            terminal: false,
            data: data_json(),
            created_at_ms: AT_MS,
        };
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            kind: "Accepted".into(),
            payload: payload_json(),
            occurred_at_ms: AT_MS,
        };
        store.create(&swap, &event, &[]).await?;
    }
    let settings = sqlx::query(
        "SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync')",
    )
    .fetch_one(db.pool())
    .await?;
    let server_version: String = settings.try_get(0)?;
    let synchronous_commit: String = settings.try_get(1)?;
    let fsync: String = settings.try_get(2)?;

    let script_path = std::env::temp_dir().join(format!("{}.pgbench.sql", scratch.name));
    std::fs::write(
        &script_path,
        pgbench_script(SWAPS_PER_SIDE + 1, 2 * SWAPS_PER_SIDE),
    )?;

    let secs = config.duration.as_secs().max(1);
    let duration = Duration::from_secs(secs);
    let mut versions = vec![1_i64; SWAPS_PER_SIDE as usize];
    let mut unpooled_versions = vec![1_i64; SWAPS_PER_SIDE as usize];
    let mut unpooled = sqlx::AnyConnection::connect(&scratch.url).await?;
    let (mut unpooled_count, mut unpooled_elapsed) = (0_u64, Duration::ZERO);
    let (mut store_count, mut store_elapsed) = (0_u64, Duration::ZERO);
    let mut baseline_tps = vec![];
    let mut rounds = vec![];
    let outcome: Result<(), BenchError> = async {
        for round in 0..config.rounds.max(1) {
            let (count, elapsed) = store_side(&store, &mut versions, duration).await?;
            store_count += count;
            store_elapsed += elapsed;
            let tps = pgbench_side(config, &script_path, &scratch.url, secs).await?;
            baseline_tps.push(tps);
            let (ucount, uelapsed) =
                unpooled_side(&mut unpooled, &mut unpooled_versions, duration).await?;
            unpooled_count += ucount;
            unpooled_elapsed += uelapsed;
            let unpooled_tps = ucount as f64 / uelapsed.as_secs_f64();
            let store_tps = count as f64 / elapsed.as_secs_f64();
            tracing::info!(
                round,
                store_tps,
                pgbench_tps = tps,
                "persisted-transition round"
            );
            rounds.push(json!({
                "store_tps": round2(store_tps),
                "pgbench_tps": round2(tps),
                "unpooled_any_connection_tps": round2(unpooled_tps),
            }));
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&script_path);
    outcome?;
    db.pool().close().await;

    let value = store_count as f64 / store_elapsed.as_secs_f64();
    let baseline = baseline_tps.iter().sum::<f64>() / baseline_tps.len() as f64;
    Ok(Measurement {
        value: round2(value),
        unit: "transitions/s",
        baseline: round2(baseline),
        goal: ">=0.8",
        detail: json!({
            "store_transitions": store_count,
            "unpooled_any_connection_tps": round2(unpooled_count as f64 / unpooled_elapsed.as_secs_f64()),
            "store_seconds": round2(store_elapsed.as_secs_f64()),
            "seconds_per_side_per_round": secs,
            "rounds": rounds,
            "connections": 1,
            "statements_per_transition": "BEGIN, UPDATE, INSERT event, INSERT outbox, COMMIT",
            "baseline_tool": "pgbench -n -c 1 -j 1 -M prepared -f <same statements>",
            "server_version": server_version,
            "synchronous_commit": synchronous_commit,
            "fsync": fsync,
        }),
    })
}

/// Transitions through the store, one at a time, for `duration`.
async fn store_side(
    store: &SwapStore,
    versions: &mut [i64],
    duration: Duration,
) -> Result<(u64, Duration), BenchError> {
    let next = StateUpdate {
        state: "DepositSeen".into(),
        terminal: false,
        data: data_json(),
        updated_at_ms: AT_MS,
    };
    let start = Instant::now();
    let mut count = 0_u64;
    let mut i = 0_usize;
    while start.elapsed() < duration {
        let id = swap_id(i as u64 + 1);
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            kind: "DepositSeen".into(),
            payload: payload_json(),
            occurred_at_ms: AT_MS,
        };
        let message = OutboxMessage {
            message_id: Uuid::new_v4(),
            topic: "swap.updated".into(),
            key: id.to_string(),
            payload: payload_json(),
        };
        let out = store
            .append(
                id,
                versions[i],
                &next,
                &event,
                std::slice::from_ref(&message),
            )
            .await?;
        match out {
            state_machine::store::AppendOutcome::Applied { version } => versions[i] = version,
            other => {
                return Err(BenchError::Invalid(format!(
                    "unexpected append outcome {other:?}"
                )))
            }
        }
        count += 1;
        i = (i + 1) % versions.len();
    }
    Ok((count, start.elapsed()))
}

/// The store's statements on one `AnyConnection` held for the whole run (no
/// pool), on swaps `2 * SWAPS_PER_SIDE + 1..`: separates the pool's cost from
/// the driver's.
async fn unpooled_side(
    conn: &mut sqlx::AnyConnection,
    versions: &mut [i64],
    duration: Duration,
) -> Result<(u64, Duration), BenchError> {
    let data = data_json().to_string();
    let start = Instant::now();
    let mut count = 0_u64;
    let mut i = 0_usize;
    while start.elapsed() < duration {
        let id = swap_id(2 * SWAPS_PER_SIDE + i as u64 + 1).to_string();
        let payload = payload_json().to_string();
        let mut tx = conn.begin().await?;
        let updated = sqlx::query(
            "UPDATE swaps SET version = version + 1, state = $1, terminal = $2, data = $3, \
             updated_at_ms = $4 WHERE swap_id = $5 AND version = $6",
        )
        .bind("DepositSeen")
        .bind(false)
        .bind(data.as_str())
        .bind(AT_MS)
        .bind(id.as_str())
        .bind(versions[i])
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(BenchError::Invalid(format!(
                "unpooled update of {id} matched no row"
            )));
        }
        versions[i] += 1;
        sqlx::query(
            "INSERT INTO swap_events (event_id, swap_id, version, kind, payload, occurred_at_ms, recorded_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(id.as_str())
        .bind(versions[i])
        .bind("DepositSeen")
        .bind(payload.as_str())
        .bind(AT_MS)
        .bind(AT_MS)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO outbox (message_id, topic, key, payload, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(Uuid::new_v4().to_string())
            .bind("swap.updated")
            .bind(id.as_str())
            .bind(payload.as_str())
            .bind(AT_MS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        count += 1;
        i = (i + 1) % versions.len();
    }
    Ok((count, start.elapsed()))
}

/// Runs pgbench for `secs` seconds and returns its tps.
async fn pgbench_side(
    config: &BenchConfig,
    script: &std::path::Path,
    url: &str,
    secs: u64,
) -> Result<f64, BenchError> {
    let tool_err = |reason: String| BenchError::Tool {
        program: config.pgbench.clone(),
        reason,
    };
    let output = Command::new(&config.pgbench)
        .args(["-n", "-c", "1", "-j", "1", "-M", "prepared", "-T"])
        .arg(secs.to_string())
        .arg("-f")
        .arg(script)
        .arg(url)
        .output()
        .await
        .map_err(|e| {
            tool_err(format!(
                "{e} (is PostgreSQL's pgbench installed? scripts/pg.sh installs it)"
            ))
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(tool_err(format!(
            "exit {}: {}",
            output.status,
            stderr.trim()
        )));
    }
    parse_pgbench(&stdout).map_err(|e| tool_err(format!("{e}; stderr: {}", stderr.trim())))
}

/// The `tps = N` figure of pgbench's report; errors if any transaction failed.
fn parse_pgbench(stdout: &str) -> Result<f64, String> {
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            if !rest.starts_with("0 ") && rest != "0" {
                return Err(format!("pgbench reported failures: {rest}"));
            }
        }
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| format!("no `tps = ` line in pgbench output: {stdout:?}"))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_report() {
        let out = "number of transactions actually processed: 12256\n\
                   number of failed transactions: 0 (0.000%)\n\
                   latency average = 0.080 ms\n\
                   tps = 12464.303439 (without initial connection time)\n";
        assert_eq!(parse_pgbench(out), Ok(12464.303439));
        assert!(parse_pgbench("number of failed transactions: 3 (1.0%)\ntps = 5 (x)\n").is_err());
        assert!(parse_pgbench("nothing here").is_err());
    }

    #[test]
    fn seeded_ids_match_the_pgbench_expression() {
        assert_eq!(
            swap_id(1001).to_string(),
            "00000000-0000-0000-0000-000000001001"
        );
        assert_ne!(swap_id(1), swap_id(2));
    }

    #[test]
    fn script_quotes_json() {
        let s = pgbench_script(1001, 2000);
        assert!(s.starts_with("\\set n random(1001, 2000)\n"));
        assert!(s.contains("RETURNING version \\gset"));
        assert_eq!(s.lines().count(), 6);
    }
}
