//! The admin console on the proxy's own port, in the manner of pgbouncer's:
//! a client that connects to database `pgshift` as one of `admin_users` (its
//! password checked by Postgres, through the usual authentication relay)
//! gets answers from pgshift itself, over the simple query protocol:
//! `SHOW CLIENTS`, `SHOW VERSIONS`, `SHOW ROUTES`, `SHOW MIGRATION`,
//! `SHOW POOLS`, `SHOW STATS`, `SHOW SERVERS` (pgbouncer's column names
//! where they exist), `PAUSE [db]`, `RESUME`, `PIN route version` and
//! `SHOW HELP`.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::Shared;
use crate::net::Stream;
use crate::net::read::read_message;
use crate::protocol::Severity;
use crate::protocol::messages::{self as wire, READY_IDLE};
use crate::protocol::tags::frontend;
use crate::state::{self, StateError};

/// The database name that reaches the console instead of Postgres.
pub const DATABASE: &str = "pgshift";

/// Longest console message accepted, in bytes.
const MAX_MESSAGE: usize = 64 * 1024;

/// What the console answers, one line each.
const HELP: &[(&str, &str)] = &[
    (
        "SHOW CLIENTS",
        "this proxy's sessions: version, version schema, route, client",
    ),
    (
        "SHOW VERSIONS",
        "the live schema versions and the migration's phase",
    ),
    (
        "SHOW ROUTES",
        "configured routes, what they match, and their pins",
    ),
    (
        "SHOW MIGRATION",
        "the active migration and its backfill progress",
    ),
    (
        "SHOW POOLS",
        "transaction pools: clients active and waiting, servers active and idle, longest wait",
    ),
    (
        "SHOW STATS",
        "per pool: transactions, queries, bytes and time spent waiting",
    ),
    (
        "SHOW SERVERS",
        "each pooled server connection: pool, state, backend pid, connect time",
    ),
    (
        "PAUSE [db]",
        "hold new transactions of the transaction pools (of one database); returns once those running are done",
    ),
    ("RESUME", "let held transactions go on"),
    (
        "PIN route version",
        "pin a route to a live version (every proxy hears it)",
    ),
    ("SHOW HELP", "this list"),
];

/// A failed command: SQLSTATE and message.
struct Refusal(&'static str, String);

/// Serves one console session until the client leaves; returns why it ended.
/// `buf` holds what the client sent after authentication.
pub async fn serve(shared: &Shared, client: &mut Stream, mut buf: BytesMut) -> String {
    // After an extended-protocol message: skip to Sync, as Postgres does.
    let mut skipping = false;
    let mut phase = shared.drain.clone();
    loop {
        let read = tokio::select! {
            read = read_message(client, &mut buf, MAX_MESSAGE) => read,
            () = stopping(&mut phase) => {
                let e = super::SessionError::Shutdown;
                if let Some(out) = e.to_error_response() {
                    let _ = client.write_all(&out).await;
                }
                return e.to_string();
            }
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => return "client closed the connection".into(),
            Err(e) => {
                let out = wire::error_response(Severity::Fatal, "08P01", &e.to_string(), None);
                let _ = client.write_all(&out).await;
                return e.to_string();
            }
        };
        let mut out = BytesMut::new();
        match frame[0] {
            frontend::QUERY => {
                let body = &frame[5..];
                let sql = String::from_utf8_lossy(&body[..body.len().saturating_sub(1)]);
                match run(shared, &sql).await {
                    Ok(result) => out.extend_from_slice(&result),
                    Err(Refusal(code, message)) => out.extend_from_slice(&wire::error_response(
                        Severity::Error,
                        code,
                        &message,
                        Some("The console knows SHOW CLIENTS, SHOW VERSIONS, SHOW ROUTES, SHOW MIGRATION, SHOW POOLS, SHOW STATS, SHOW SERVERS, PAUSE [db], RESUME, PIN route version and SHOW HELP."),
                    )),
                }
                out.extend_from_slice(&READY_IDLE);
            }
            frontend::TERMINATE => return "client sent Terminate".into(),
            frontend::SYNC => {
                skipping = false;
                out.extend_from_slice(&READY_IDLE);
            }
            _ if skipping => continue,
            _ => {
                skipping = true;
                out.extend_from_slice(&wire::error_response(
                    Severity::Error,
                    "0A000",
                    "pgshift's admin console speaks the simple query protocol only",
                    Some("Use psql, or your driver's simple-query call."),
                ));
            }
        }
        if client.write_all(&out).await.is_err() || client.flush().await.is_err() {
            return "client connection failed".into();
        }
    }
}

/// Resolves once the proxy is shutting down.
async fn stopping(phase: &mut tokio::sync::watch::Receiver<super::Drain>) {
    let _ = phase.wait_for(|p| *p != super::Drain::Running).await;
}

/// Runs one console command.
async fn run(shared: &Shared, sql: &str) -> Result<BytesMut, Refusal> {
    let words: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    match upper.as_slice() {
        ["SHOW", "CLIENTS"] => Ok(show_clients(shared)),
        ["SHOW", "VERSIONS"] => Ok(show_versions(shared)),
        ["SHOW", "ROUTES"] => show_routes(shared).await,
        ["SHOW", "MIGRATION"] => show_migration(shared).await,
        ["SHOW", "POOLS"] => Ok(show_pools(shared)),
        ["SHOW", "STATS"] => Ok(show_stats(shared)),
        ["SHOW", "SERVERS"] => Ok(show_servers(shared)),
        ["PAUSE"] => pause(shared, None).await,
        ["PAUSE", _] => pause(shared, Some(unquote(words[1]).to_string())).await,
        ["RESUME"] | ["RESUME", _] => {
            shared.pools.resume();
            tracing::info!("console: RESUME");
            Ok(wire::command_complete("RESUME"))
        }
        ["SHOW", "HELP"] => {
            let rows: Vec<_> = HELP
                .iter()
                .map(|(c, d)| vec![Some(c.to_string()), Some(d.to_string())])
                .collect();
            Ok(wire::text_result(
                &["command", "description"],
                &rows,
                &format!("SHOW {}", rows.len()),
            ))
        }
        ["PIN", _, _] => pin(shared, unquote(words[1]), unquote(words[2])).await,
        _ => Err(Refusal(
            "42601",
            format!(
                "pgshift's admin console does not know {:?}",
                sql.trim().chars().take(80).collect::<String>()
            ),
        )),
    }
}

/// An argument without its surrounding single or double quotes.
fn unquote(word: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = word.strip_prefix(q).and_then(|w| w.strip_suffix(q)) {
            return inner;
        }
    }
    word
}

fn show_clients(shared: &Shared) -> BytesMut {
    let rows: Vec<_> = shared
        .registry
        .sessions()
        .into_iter()
        .map(|(id, s)| {
            vec![
                Some(id.to_string()),
                Some(s.version.clone()),
                s.version_schema(),
                s.route.clone(),
                Some(s.application_name.clone()),
                Some(s.client_addr.clone()),
                Some(humantime::format_rfc3339_seconds(s.since).to_string()),
            ]
        })
        .collect();
    wire::text_result(
        &[
            "session",
            "version",
            "version_schema",
            "route",
            "application_name",
            "client_addr",
            "since",
        ],
        &rows,
        &format!("SHOW {}", rows.len()),
    )
}

/// PAUSE: holds new transactions of the transaction pools (of `database`),
/// then waits until those running are done, as pgbouncer's PAUSE.
async fn pause(shared: &Shared, database: Option<String>) -> Result<BytesMut, Refusal> {
    if shared.config.pool.mode != super::config::PoolMode::Transaction {
        return Err(Refusal(
            "55000",
            "PAUSE holds transaction pools, and this proxy runs in session mode (--pool-mode session)"
                .into(),
        ));
    }
    shared.pools.pause(database.clone());
    tracing::info!(database = ?database, "console: PAUSE; waiting for running transactions");
    while shared.pools.active_in(database.as_deref()) > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(wire::command_complete("PAUSE"))
}

/// A pool's key as the first columns of a row.
fn pool_columns(pool: &super::pool::Pool) -> Vec<Option<String>> {
    vec![
        Some(pool.key.database.clone()),
        Some(pool.key.user.clone()),
        Some(pool.key.version.clone()),
    ]
}

/// pgbouncer's SHOW POOLS columns, with the pool's version after `user`.
fn show_pools(shared: &Shared) -> BytesMut {
    use std::sync::atomic::Ordering::Relaxed;
    let mode = shared.config.pool.mode.to_string();
    let rows: Vec<_> = shared
        .pools
        .all()
        .iter()
        .map(|pool| {
            let waiting = pool.waiting();
            let active = pool.active.load(Relaxed);
            let clients = pool.clients.load(Relaxed);
            let wait = pool.longest_wait();
            let mut row = pool_columns(pool);
            row.extend([
                Some(clients.saturating_sub(waiting).to_string()),
                Some(waiting.to_string()),
                Some(active.to_string()),
                Some(pool.idle().to_string()),
                Some(wait.as_secs().to_string()),
                Some(wait.subsec_micros().to_string()),
                Some(mode.clone()),
            ]);
            row
        })
        .collect();
    wire::text_result(
        &[
            "database",
            "user",
            "version",
            "cl_active",
            "cl_waiting",
            "sv_active",
            "sv_idle",
            "maxwait",
            "maxwait_us",
            "pool_mode",
        ],
        &rows,
        &format!("SHOW {}", rows.len()),
    )
}

/// pgbouncer's SHOW STATS totals per pool (times in microseconds).
fn show_stats(shared: &Shared) -> BytesMut {
    use std::sync::atomic::Ordering::Relaxed;
    let rows: Vec<_> = shared
        .pools
        .all()
        .iter()
        .map(|pool| {
            let mut row = pool_columns(pool);
            row.extend([
                Some(pool.transactions.load(Relaxed).to_string()),
                Some(pool.queries.load(Relaxed).to_string()),
                Some(pool.bytes_received.load(Relaxed).to_string()),
                Some(pool.bytes_sent.load(Relaxed).to_string()),
                Some(pool.wait_us.load(Relaxed).to_string()),
            ]);
            row
        })
        .collect();
    wire::text_result(
        &[
            "database",
            "user",
            "version",
            "total_xact_count",
            "total_query_count",
            "total_received",
            "total_sent",
            "total_wait_time",
        ],
        &rows,
        &format!("SHOW {}", rows.len()),
    )
}

/// Each pooled server connection (pgbouncer's SHOW SERVERS, in part).
fn show_servers(shared: &Shared) -> BytesMut {
    let mut rows = Vec::new();
    for pool in shared.pools.all() {
        for (pid, idle, since) in pool.server_rows() {
            let mut row = vec![Some("S".to_string())];
            row.extend(pool_columns(&pool));
            row.extend([
                Some(if idle { "idle" } else { "active" }.to_string()),
                Some(humantime::format_rfc3339_seconds(since).to_string()),
                Some(pid.to_string()),
            ]);
            rows.push(row);
        }
    }
    wire::text_result(
        &[
            "type",
            "database",
            "user",
            "version",
            "state",
            "connect_time",
            "remote_pid",
        ],
        &rows,
        &format!("SHOW {}", rows.len()),
    )
}

fn show_versions(shared: &Shared) -> BytesMut {
    let mut rows = Vec::new();
    if let Some(versions) = shared.versions.snapshot() {
        let live = versions.live();
        let phase = versions.migration.as_ref().map(|m| m.phase.to_string());
        let mut row = |version: &str, role: &str, schema: Option<String>| {
            rows.push(vec![
                Some(version.to_string()),
                Some(role.to_string()),
                schema,
                Some(live.contains_key(version).to_string()),
                phase.clone(),
            ]);
        };
        match &versions.migration {
            Some(m) => {
                row(&m.old, "old", Some(m.old_schema.clone()));
                row(&m.new, "new", Some(m.new_schema.clone()));
            }
            None => row(&versions.current, "current", None),
        }
    }
    wire::text_result(
        &[
            "version",
            "role",
            "version_schema",
            "live",
            "migration_phase",
        ],
        &rows,
        &format!("SHOW {}", rows.len()),
    )
}

/// The pins come from the state schema, so a PIN just made shows at once.
async fn show_routes(shared: &Shared) -> Result<BytesMut, Refusal> {
    let client = state_client(shared).await?;
    let pins = state::versions::pins(&client, &shared.config.schema)
        .await
        .map_err(|e| Refusal("XX000", e.to_string()))?;
    let mut rows: Vec<Vec<Option<String>>> = shared
        .config
        .routes
        .iter()
        .map(|r| {
            let mut matches = Vec::new();
            for (key, value) in [
                ("application_name", &r.application_name),
                ("user", &r.user),
                ("database", &r.database),
            ] {
                if let Some(v) = value {
                    matches.push(format!("{key}={v}"));
                }
            }
            if let Some(port) = r.port {
                matches.push(format!("port={port}"));
            }
            vec![
                Some(r.name.clone()),
                pins.get(&r.name).cloned(),
                Some(matches.join(" ")),
            ]
        })
        .collect();
    // Pins of routes that only other proxies configure.
    for (route, version) in &pins {
        if !shared.config.routes.iter().any(|r| &r.name == route) {
            rows.push(vec![Some(route.clone()), Some(version.clone()), None]);
        }
    }
    Ok(wire::text_result(
        &["route", "pinned_version", "matches"],
        &rows,
        &format!("SHOW {}", rows.len()),
    ))
}

/// A short-lived connection to the state schema, as the proxy's control
/// connections make.
async fn state_client(shared: &Shared) -> Result<tokio_postgres::Client, Refusal> {
    let upstream = shared
        .config
        .upstream
        .as_ref()
        .ok_or_else(|| Refusal("08006", "no upstream configured".into()))?;
    state::connect(upstream, None)
        .await
        .map_err(|e| Refusal("08006", format!("cannot reach Postgres: {e}")))
}

async fn show_migration(shared: &Shared) -> Result<BytesMut, Refusal> {
    let client = state_client(shared).await?;
    let status = state::status::status(&client, &shared.config.schema)
        .await
        .map_err(|e| Refusal("XX000", e.to_string()))?;
    let mut rows = Vec::new();
    if let Some(active) = &status.active {
        let base = |table: Option<String>,
                    rows: Option<String>,
                    done: Option<String>,
                    held_by: Option<String>| {
            vec![
                Some(active.version.clone()),
                Some(active.old_version.clone()),
                Some(active.phase.to_string()),
                Some(active.version_schema.clone()),
                table,
                rows,
                done,
                held_by,
            ]
        };
        if active.backfill.is_empty() {
            rows.push(base(None, None, None, None));
        }
        for b in &active.backfill {
            rows.push(base(
                Some(b.table.clone()),
                Some(b.rows_done.to_string()),
                Some(b.done.to_string()),
                b.held_by.clone(),
            ));
        }
    }
    Ok(wire::text_result(
        &[
            "version",
            "old_version",
            "phase",
            "version_schema",
            "backfill_table",
            "backfill_rows_done",
            "backfill_done",
            "backfill_held_by",
        ],
        &rows,
        &format!("SHOW {}", rows.len()),
    ))
}

async fn pin(shared: &Shared, route: &str, version: &str) -> Result<BytesMut, Refusal> {
    let client = state_client(shared).await?;
    state::versions::pin(&client, &shared.config.schema, route, version)
        .await
        .map_err(|e| match e {
            StateError::UnknownVersion { .. } => Refusal("22023", e.to_string()),
            e => Refusal("XX000", e.to_string()),
        })?;
    tracing::info!(%route, %version, "route pinned from the admin console");
    Ok(wire::command_complete("PIN"))
}
