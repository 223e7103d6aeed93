//! What `pgshift status` (and the proxy console's SHOW MIGRATION) reports:
//! the active migration with its backfill progress, the history, and the live
//! sessions of every proxy. Read without the migration lock.

use tokio_postgres::GenericClient;

use super::backfill::{self, BackfillStatus};
use super::migrations::{active, current_version, history};
use super::sessions::{SessionRow, live_sessions};
use super::{Phase, StateError};

/// What `status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub schema: String,
    pub current_version: String,
    pub active: Option<ActiveStatus>,
    pub history: Vec<HistoryEntry>,
    /// Live sessions of every proxy, with their versions.
    pub sessions: Vec<SessionRow>,
}

/// The migration in progress.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActiveStatus {
    pub version: String,
    pub phase: Phase,
    pub version_schema: String,
    pub old_version: String,
    pub backfill: Vec<BackfillStatus>,
}

/// One migration of the history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    pub version: String,
    pub parent: String,
    pub phase: Phase,
    pub updated_at: String,
}

/// The active migration of `schema`, its backfill progress, the history and
/// the live sessions; needs no lock, so the proxy's console uses it too.
pub async fn status(client: &impl GenericClient, schema: &str) -> Result<Status, StateError> {
    let active = match active(client, schema).await? {
        Some(row) => Some(ActiveStatus {
            backfill: backfill::progress(client, schema, &row.version).await?,
            version: row.version,
            phase: row.phase,
            version_schema: row.version_schema,
            old_version: row.parent,
        }),
        None => None,
    };
    let history = history(client, schema)
        .await?
        .into_iter()
        .map(|r| HistoryEntry {
            version: r.version,
            parent: r.parent,
            phase: r.phase,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(Status {
        schema: schema.to_string(),
        current_version: current_version(client, schema).await?,
        sessions: live_sessions(client, schema, None).await?,
        active,
        history,
    })
}
