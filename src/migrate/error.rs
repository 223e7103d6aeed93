//! Why a migration command failed: `MigrateError`, whose every message says
//! what to do next, and the renderings of the sessions and problems it lists.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::format::{FormatError, Problem};
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
    #[error("{}", render_unmoved(version, timeout, sessions))]
    SessionsNotMoved {
        version: String,
        timeout: Duration,
        sessions: Vec<SessionRow>,
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
        "{count} row(s) of {what} are not converted yet; run `pgshift start` again to finish the backfill, then complete"
    )]
    NotConverted { what: String, count: i64 },
    #[error("{action} step {position} failed: {message}\n  SQL: {sql}")]
    Step {
        action: Action,
        position: i32,
        sql: String,
        message: String,
    },
    #[error("database error: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn render_sessions(version: &str, command: &Action, sessions: &[SessionRow]) -> String {
    let mut out = format!(
        "{} session(s) are pinned to version {version:?}, which {command} would remove; move them (pgshift pin, or drain the deployment) or run `pgshift {command} --force` to end them:",
        sessions.len()
    );
    out.push_str(&session_lines(sessions));
    out
}

fn render_unmoved(version: &str, timeout: &Duration, sessions: &[SessionRow]) -> String {
    let mut out = format!(
        "{} session(s) of version {version:?} still stand on the physical tables after {}; \
         each moves onto the version's views at its first moment outside a transaction. \
         No table has changed yet: end those transactions and run `pgshift start` again, or `pgshift rollback`:",
        sessions.len(),
        humantime::format_duration(*timeout)
    );
    out.push_str(&session_lines(sessions));
    out
}

/// One line per session: proxy, application_name, client address, since when.
fn session_lines(sessions: &[SessionRow]) -> String {
    sessions
        .iter()
        .map(|s| {
            format!(
                "\n  proxy {}: application_name {:?}, client {}, since {}",
                s.proxy, s.application_name, s.client_addr, s.since
            )
        })
        .collect()
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
