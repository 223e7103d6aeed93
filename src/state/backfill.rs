//! Backfill checkpoints (`pgshift.backfill`): one row per table of a
//! migration with the last key done, the upper bound the backfill stops at,
//! the rows and batches done, and whether it has finished. A batch saves
//! its checkpoint in the same statement as its work, through the CTE that
//! [`save_checkpoint_cte`] writes, so the two commit or roll back together.
//! The functions the batch loop calls return plain database errors, which
//! join the batches' own error handling (lock timeouts are retried).

use tokio_postgres::GenericClient;

use super::StateError;

/// Where one table's backfill stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last key (or ctid page) done; `None` before the first batch.
    pub last_key: Option<Vec<String>>,
    /// The key (or page) the backfill stops at; `None` until it is set.
    pub upper_key: Option<Vec<String>>,
    pub rows_done: u64,
    pub done: bool,
}

/// One table's backfill progress, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackfillStatus {
    pub table: String,
    pub rows_done: i64,
    pub batches: i64,
    pub done: bool,
    /// What holds the backfill back now (`replica lag ...`), or `None`.
    pub held_by: Option<String>,
}

/// The checkpoint of `table` in migration `version`, created empty the
/// first time.
pub async fn checkpoint(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    table: &str,
) -> Result<Checkpoint, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO pgshift.backfill (schema_name, version, table_name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&schema, &version, &table],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT last_key, upper_key, rows_done, done FROM pgshift.backfill
             WHERE schema_name = $1 AND version = $2 AND table_name = $3",
            &[&schema, &version, &table],
        )
        .await?;
    Ok(Checkpoint {
        last_key: row.get(0),
        upper_key: row.get(1),
        rows_done: row.get::<_, i64>(2) as u64,
        done: row.get(3),
    })
}

/// Records the key (or page) the backfill of `table` stops at.
pub async fn set_upper_key(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    table: &str,
    upper: &[String],
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE pgshift.backfill SET upper_key = $4 WHERE schema_name = $1 AND version = $2 AND table_name = $3",
            &[&schema, &version, &table, &upper],
        )
        .await?;
    Ok(())
}

/// Records what holds the backfill of `table` back (`None`: nothing), for
/// `status` and the console.
pub async fn set_held_by(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    table: &str,
    held_by: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE pgshift.backfill SET held_by = $4 WHERE schema_name = $1 AND version = $2 AND table_name = $3",
            &[&schema, &version, &table, &held_by],
        )
        .await?;
    Ok(())
}

/// Marks the backfill of `table` finished.
pub async fn mark_done(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE pgshift.backfill SET done = true, held_by = NULL, updated_at = now() WHERE schema_name = $1 AND version = $2 AND table_name = $3",
            &[&schema, &version, &table],
        )
        .await?;
    Ok(())
}

/// Forgets every checkpoint of migration `version` (after a rollback).
pub async fn forget(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
) -> Result<(), StateError> {
    client
        .execute(
            "DELETE FROM pgshift.backfill WHERE schema_name = $1 AND version = $2",
            &[&schema, &version],
        )
        .await?;
    Ok(())
}

/// Each table's backfill progress in migration `version`, by table name.
pub async fn progress(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
) -> Result<Vec<BackfillStatus>, StateError> {
    Ok(client
        .query(
            "SELECT table_name, rows_done, batches, done, held_by FROM pgshift.backfill
             WHERE schema_name = $1 AND version = $2 ORDER BY table_name",
            &[&schema, &version],
        )
        .await?
        .iter()
        .map(|r| BackfillStatus {
            table: r.get(0),
            rows_done: r.get(1),
            batches: r.get(2),
            done: r.get(3),
            held_by: r.get(4),
        })
        .collect())
}

/// The CTE that saves a batch's checkpoint in the same statement as the
/// batch: the checkpoint row of (`$schema`, `$version`, `$table`), given as
/// the parameter numbers of those three, gets `last_key` from the batch's
/// CTE `last` and the count of its CTE `updated`, when `last` has a row.
pub fn save_checkpoint_cte(schema: usize, version: usize, table: usize) -> String {
    format!(
        "saved AS (UPDATE pgshift.backfill SET last_key = (SELECT k FROM last), \
         rows_done = rows_done + (SELECT count(*) FROM updated), batches = batches + 1, updated_at = now() \
         WHERE schema_name = ${schema} AND version = ${version} AND table_name = ${table} AND EXISTS (SELECT FROM last))"
    )
}
