//! The `pgshift` schema: the one contract between proxies and migrators,
//! and its only reader and writer. It holds the DDL of every table
//! (migrations, steps, backfill checkpoints, sessions, session kills,
//! routes, proxies), every read and write of them, the NOTIFY channel that tells
//! proxies to reload, the migration lock, and pgshift's own connections.
//! Both halves use it; neither writes a `pgshift.*` table itself.

pub mod backfill;
pub mod connect;
pub mod migrations;
pub mod phase;
pub mod proxies;
pub mod sessions;
pub mod status;
pub mod versions;

use std::time::Duration;

use thiserror::Error;
use tokio_postgres::GenericClient;

pub use connect::{ConnectError, connect, open};
pub use phase::{Action, Phase, UnknownName};

/// The setting that carries a session's version: the proxy sets it, the
/// dual-write triggers read it, clients may not change it.
pub const VERSION_SETTING: &str = "pgshift.version";

/// The channel on which the migrator announces changes (a phase, a pin, a
/// kill request); proxies LISTEN and reload.
pub const NOTIFY_CHANNEL: &str = "pgshift";

/// How often each proxy publishes its sessions to `pgshift.sessions`.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long after a NOTIFY every running proxy has published its sessions:
/// one heartbeat, and a margin for the beat itself.
pub const REPORT_WAIT: Duration = Duration::from_millis(1500);

/// A proxy's sessions count as live while its heartbeat is younger than this.
pub const SESSION_TTL_SECONDS: i32 = 5;

/// Why a read or write of the state schema failed.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("database error: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Unknown(#[from] UnknownName),
    #[error("version {version:?} does not exist now; pin a route to one of: {}", existing.join(", "))]
    UnknownVersion {
        version: String,
        existing: Vec<String>,
    },
    #[error("the stored {what} of migration {version:?} does not read: {message}")]
    Corrupt {
        what: &'static str,
        version: String,
        message: String,
    },
}

impl StateError {
    /// The SQLSTATE of a database error, if this is one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            StateError::Db(e) => e.code(),
            _ => None,
        }
    }
}

/// The message of a database error, with its detail and hint.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                m.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                m.push_str(&format!("; hint: {hint}"));
            }
            m
        }
        None => e.to_string(),
    }
}

/// `'a', 'b', ...`: SQL literals of `texts`, for the state schema's DDL.
fn sql_list(texts: &[&str]) -> String {
    texts
        .iter()
        .map(|t| crate::quote::literal(t))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The DDL of the state schema; idempotent.
pub fn init_sql() -> String {
    let phases = sql_list(&Phase::texts(|_| true));
    let finished = sql_list(&Phase::texts(Phase::is_finished));
    let actions = sql_list(&Action::ALL.map(Action::as_str));
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS pgshift;
CREATE TABLE IF NOT EXISTS pgshift.migrations (
    schema_name text NOT NULL,
    version text NOT NULL,
    parent text NOT NULL,
    migration jsonb NOT NULL,
    plan jsonb NOT NULL,
    phase text NOT NULL CHECK (phase IN ({phases})),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_active
    ON pgshift.migrations (schema_name) WHERE phase NOT IN ({finished});
CREATE TABLE IF NOT EXISTS pgshift.steps (
    schema_name text NOT NULL,
    version text NOT NULL,
    action text NOT NULL CHECK (action IN ({actions})),
    position int NOT NULL,
    step jsonb NOT NULL,
    done_at timestamptz,
    PRIMARY KEY (schema_name, version, action, position),
    FOREIGN KEY (schema_name, version) REFERENCES pgshift.migrations ON DELETE CASCADE
);
CREATE OR REPLACE FUNCTION pgshift.hidden_relation(relation text, version text) RETURNS SETOF integer
LANGUAGE plpgsql AS $pgshift$
BEGIN
    RAISE EXCEPTION 'relation "%" does not exist in version %', relation, version
        USING ERRCODE = 'undefined_table', HINT = 'That version renames or drops it.';
END
$pgshift$;
CREATE TABLE IF NOT EXISTS pgshift.sessions (
    proxy text NOT NULL,
    session_id bigint NOT NULL,
    schema_name text NOT NULL,
    version text NOT NULL,
    application_name text NOT NULL,
    client_addr text NOT NULL,
    since timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proxy, session_id)
);
ALTER TABLE pgshift.sessions ADD COLUMN IF NOT EXISTS version_schema text;
ALTER TABLE pgshift.sessions ADD COLUMN IF NOT EXISTS backend_pid int;
ALTER TABLE pgshift.sessions ADD COLUMN IF NOT EXISTS backend_start timestamptz;
CREATE TABLE IF NOT EXISTS pgshift.proxies (
    proxy text NOT NULL,
    schema_name text NOT NULL,
    serving text,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proxy, schema_name)
);
ALTER TABLE pgshift.proxies ADD COLUMN IF NOT EXISTS latency jsonb;
CREATE TABLE IF NOT EXISTS pgshift.session_kills (
    proxy text NOT NULL,
    session_id bigint NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (proxy, session_id)
);
CREATE TABLE IF NOT EXISTS pgshift.routes (
    schema_name text NOT NULL,
    route text NOT NULL,
    version text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, route)
);
CREATE TABLE IF NOT EXISTS pgshift.backfill (
    schema_name text NOT NULL,
    version text NOT NULL,
    table_name text NOT NULL,
    last_key text[],
    upper_key text[],
    rows_done bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, version, table_name),
    FOREIGN KEY (schema_name, version) REFERENCES pgshift.migrations ON DELETE CASCADE
);
ALTER TABLE pgshift.backfill ADD COLUMN IF NOT EXISTS held_by text;
"#
    )
}

/// Creates the state schema if needed, serialized against concurrent
/// inits (`CREATE ... IF NOT EXISTS` alone can race).
pub async fn init(client: &impl GenericClient) -> Result<(), StateError> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('pgshift.init')); {} COMMIT;",
            init_sql()
        ))
        .await?;
    Ok(())
}

/// Tries to take the migration lock of `schema` (a session-level advisory
/// lock); false when another command holds it.
pub async fn try_lock(client: &impl GenericClient, schema: &str) -> Result<bool, StateError> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('pgshift'), hashtext($1))",
            &[&schema],
        )
        .await?
        .get(0))
}

/// Releases the migration lock of `schema`.
pub async fn unlock(client: &impl GenericClient, schema: &str) -> Result<(), StateError> {
    client
        .query_one(
            "SELECT pg_advisory_unlock(hashtext('pgshift'), hashtext($1))",
            &[&schema],
        )
        .await?;
    Ok(())
}

/// Tells every proxy to reload the live versions of `schema`. Returns the
/// server's clock at that moment (a timestamptz as text).
pub async fn notify(client: &impl GenericClient, schema: &str) -> Result<String, StateError> {
    Ok(client
        .query_one(
            "SELECT clock_timestamp()::text FROM pg_notify($1, $2)",
            &[&NOTIFY_CHANNEL, &schema],
        )
        .await?
        .get(0))
}

/// The `SET` commands a session of `version` runs so that it sees that
/// version: the setting the triggers read, and the version schema first on
/// the search_path. For connections that do not go through the proxy.
pub fn session_setup(schema: &str, version: &str, version_schema: &str) -> String {
    format!(
        "SET {VERSION_SETTING} = {}; SET search_path = {}, {}",
        crate::quote::literal(version),
        crate::quote::ident(version_schema),
        crate::quote::ident(schema)
    )
}
