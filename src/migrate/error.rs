//! Why a migration command failed: `MigrateError`, whose every message says
//! what to do next, and the renderings of the sessions and problems it lists.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::backends::Backend;
use super::format::{FormatError, Problem};
use super::lint::Finding;
use super::verify::Report;
pub(crate) use crate::state::db_message;
use crate::state::sessions::SessionRow;
use crate::state::{Action, ConnectError, Phase, StateError};

/// Why a migration command failed; each says what to do next.
#[derive(Debug, Error)]
pub enum MigrateError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{}", render_sessions(version, command, sessions))]
    SessionsPinned {
        version: String,
        command: Action,
        sessions: Vec<SessionRow>,
    },
    #[error("{}", render_unmoved(version, timeout, sessions, backends))]
    SessionsNotMoved {
        version: String,
        timeout: Duration,
        sessions: Vec<SessionRow>,
        /// What Postgres says of their backends.
        backends: Vec<Backend>,
    },
    #[error("{}", render_behind(version, timeout, proxies))]
    ProxiesBehind {
        version: String,
        timeout: Duration,
        /// (proxy, what it serves, if it said).
        proxies: Vec<(String, Option<String>)>,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}", render_live(file, problems))]
    Live {
        file: String,
        problems: Vec<Problem>,
    },
    #[error(
        "another pgshift command is running on schema {schema:?} (it holds the migration lock); wait for it to finish"
    )]
    Busy { schema: String },
    #[error(
        "migration {version:?} is {phase} on schema {schema:?}; run `pgshift complete` or `pgshift rollback` before starting another"
    )]
    Active {
        schema: String,
        version: String,
        phase: Phase,
    },
    #[error(
        "no migration is in progress on schema {schema:?}; start one with `pgshift start FILE`"
    )]
    NoneActive { schema: String },
    #[error("migration {version:?} is {phase}; `{command}` cannot run now{hint}")]
    WrongPhase {
        version: String,
        phase: Phase,
        command: Action,
        hint: String,
    },
    #[error(
        "{count} row(s) of {what} are NULL where `up` gives a value: not converted yet (run `pgshift start` again to finish the backfill, then complete), or written around the dual-write trigger (touch them: `UPDATE ... SET col = col`); if the new version wrote those NULLs on purpose, complete with --skip-verify"
    )]
    NotConverted { what: String, count: i64 },
    #[error(
        "no migration has run on schema {schema:?}: its only version is the physical schema; start one with `pgshift start FILE`"
    )]
    NoMigration { schema: String },
    #[error("{}", render_unsafe(file, findings))]
    Unsafe {
        file: String,
        findings: Vec<Finding>,
    },
    #[error("{}", render_disagree(version, reports))]
    Disagree {
        version: String,
        reports: Vec<Report>,
    },
    #[error(
        "verify could not read table {table:?}: {}; an up or down expression may fail on some row. Nothing was changed; fix the expression's input rows, or contract anyway with `pgshift complete --skip-verify`",
        db_message(source)
    )]
    VerifyFailed {
        table: String,
        source: tokio_postgres::Error,
    },
    #[error("{action} step {position} failed: {message}\n  SQL: {sql}")]
    Step {
        action: Action,
        position: i32,
        sql: String,
        message: String,
    },
    #[error("{}", render_blocked(action, *position, sql, timeout, *attempts, blockers))]
    Blocked {
        action: Action,
        position: i32,
        sql: String,
        timeout: Duration,
        attempts: u32,
        blockers: Vec<Backend>,
    },
    #[error("database error: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "--expect-one: {} migration(s) of {dir} are pending ({}), not exactly one",
        pending.len(),
        if pending.is_empty() { "none".to_string() } else { pending.join(", ") }
    )]
    ExpectedOne { dir: PathBuf, pending: Vec<String> },
    #[error(
        "baseline needs pg_dump (the PostgreSQL client; `apt-get install -y postgresql-client`, or PATH): {reason}"
    )]
    Baseline { reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn render_sessions(version: &str, command: &Action, sessions: &[SessionRow]) -> String {
    let mut out = format!(
        "{} session(s) are pinned to version {version:?}, which {command} would remove, and Postgres says their backends are alive; move them (pgshift pin, or drain the deployment) or run `pgshift {command} --force` to end them (their backends are terminated if their proxy does not end them, which needs pg_signal_backend or the sessions' role):",
        sessions.len()
    );
    out.push_str(&session_lines(sessions));
    out
}

fn render_unmoved(
    version: &str,
    timeout: &Duration,
    sessions: &[SessionRow],
    backends: &[Backend],
) -> String {
    let mut out = format!(
        "{} session(s) of version {version:?} have not moved onto the version's views after {}; \
         each moves at its first moment outside a transaction. \
         No table has changed yet: end those transactions and run `pgshift start` again, or `pgshift rollback`:",
        sessions.len(),
        humantime::format_duration(*timeout)
    );
    for s in sessions {
        out.push_str(&session_line(s));
        let Some(b) = backends.iter().find(|b| Some(b.pid) == s.backend_pid) else {
            continue;
        };
        if b.idle_in_transaction() {
            out.push_str(&format!(
                "\n    idle in a transaction: it moves when its client ends that transaction; its backend: {b}"
            ));
        } else {
            out.push_str(&format!("\n    its backend: {b}"));
        }
    }
    out
}

fn render_behind(
    version: &str,
    timeout: &Duration,
    proxies: &[(String, Option<String>)],
) -> String {
    let mut out = format!(
        "migration {version:?} is active, but {} live proxy(ies) do not serve it after {}; \
         a client that asks them for version {version:?} is refused until they do. \
         Check that each reaches Postgres (it LISTENs on channel \"pgshift\" and reloads), \
         or stop it; `pgshift status` shows the migration:",
        proxies.len(),
        humantime::format_duration(*timeout)
    );
    for (proxy, serving) in proxies {
        out.push_str(&format!(
            "\n  proxy {proxy}: serves {}",
            serving.as_deref().unwrap_or("nothing it has reported")
        ));
    }
    out
}

fn render_unsafe(file: &str, findings: &[Finding]) -> String {
    let mut out = format!(
        "{file}: lint found {} error(s); nothing was started:",
        findings.len()
    );
    for f in findings {
        out.push_str(&format!("\n  {f}"));
    }
    out.push_str(
        "\nUse the operation each finding names, or run it anyway with `pgshift start --allow-unsafe`.",
    );
    out
}

fn render_disagree(version: &str, reports: &[Report]) -> String {
    let mut out = format!(
        "complete refused: rows of migration {version:?} disagree between the two versions' shapes, \
         so contracting would keep one side and lose the other. Nothing was changed."
    );
    for r in reports.iter().filter(|r| r.mismatched > 0) {
        out.push_str(&format!("\n  {r}"));
    }
    out.push_str(
        "\nSuch a row was changed behind the dual-write trigger (triggers disabled, \
         session_replication_role = replica, or a restore). Write each row again through either \
         version, then run `pgshift complete`; `pgshift verify` checks again without completing. \
         `pgshift complete --skip-verify` contracts anyway, keeping the new version's values.",
    );
    out
}

fn render_blocked(
    action: &Action,
    position: i32,
    sql: &str,
    timeout: &Duration,
    attempts: u32,
    blockers: &[Backend],
) -> String {
    let mut out = format!(
        "{action} step {position} could not get its locks in {} ({attempts} attempts under lock_timeout); \
         nothing of it is applied, and `pgshift {action}` resumes it{}. SQL: {sql}",
        humantime::format_duration(*timeout),
        if *action == Action::Start {
            " (or `pgshift rollback` undoes the start)"
        } else {
            ""
        }
    );
    if blockers.is_empty() {
        out.push_str("\nThe blockers had gone each time pgshift looked.");
    } else {
        out.push_str("\nBlocked by (end these transactions, or pg_terminate_backend(pid)):");
        for b in blockers {
            out.push_str(&format!("\n  {b}"));
        }
    }
    out
}

/// One line per session: proxy, application_name, client address, since
/// when, upstream backend pid.
fn session_lines(sessions: &[SessionRow]) -> String {
    sessions.iter().map(session_line).collect()
}

fn session_line(s: &SessionRow) -> String {
    let mut line = format!(
        "\n  proxy {}: application_name {:?}, client {}, since {}",
        s.proxy, s.application_name, s.client_addr, s.since
    );
    if let Some(pid) = s.backend_pid {
        line.push_str(&format!(", backend pid {pid}"));
    }
    line
}

fn render_live(file: &str, problems: &[Problem]) -> String {
    let mut out = format!(
        "{file}: {} problem(s) against the live database:",
        problems.len()
    );
    for p in problems {
        out.push_str(&format!(
            "\n  at {}: {}",
            if p.path.is_empty() { "/" } else { &p.path },
            p.message
        ));
    }
    out
}
