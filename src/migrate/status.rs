//! What `pgshift status` (and the proxy console's SHOW MIGRATION) reports:
//! the active migration with its backfill progress, the history, and the live
//! sessions of every proxy. Read without the migration lock.

use tokio_postgres::GenericClient;

use super::engine::MigrateError;
use super::state;

/// What `status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub schema: String,
    pub current_version: String,
    pub active: Option<ActiveStatus>,
    pub history: Vec<HistoryEntry>,
    /// Live sessions of every proxy, with their versions.
    pub sessions: Vec<state::SessionRow>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ActiveStatus {
    pub version: String,
    pub phase: String,
    pub version_schema: String,
    pub old_version: String,
    pub backfill: Vec<BackfillStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackfillStatus {
    pub table: String,
    pub rows_done: i64,
    pub batches: i64,
    pub done: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    pub version: String,
    pub parent: String,
    pub phase: String,
    pub updated_at: String,
}

/// The active migration of `schema`, its backfill progress, the history and
/// the live sessions; needs no lock, so the proxy's console uses it too.
pub async fn status(client: &impl GenericClient, schema: &str) -> Result<Status, MigrateError> {
    let active = match state::active(client, schema).await? {
        Some(row) => {
            let backfill = client
                .query(
                    "SELECT table_name, rows_done, batches, done FROM pgshift.backfill
                         WHERE schema_name = $1 AND version = $2 ORDER BY table_name",
                    &[&schema, &row.version.as_str()],
                )
                .await?
                .iter()
                .map(|r| BackfillStatus {
                    table: r.get(0),
                    rows_done: r.get(1),
                    batches: r.get(2),
                    done: r.get(3),
                })
                .collect();
            Some(ActiveStatus {
                version: row.version.clone(),
                phase: row.phase.clone(),
                version_schema: row.plan.version_schema.clone(),
                old_version: row.parent.clone(),
                backfill,
            })
        }
        None => None,
    };
    let history = state::history(client, schema)
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
        current_version: state::current_version(client, schema).await?,
        sessions: state::live_sessions(client, schema, None).await?,
        active,
        history,
    })
}
