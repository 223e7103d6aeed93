//! Lock-bounded execution of a plan's steps: every statement runs under
//! `lock_timeout`, and a statement that cannot get its lock in time is retried
//! with capped exponential backoff and jitter, each retry logged. A
//! transactional step and its done mark commit together; a concurrent step
//! first drops the INVALID index a failed build may have left.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::plan::Step;
use crate::quote::{literal, qualified};
use crate::state::migrations::{StepRef, mark_done};

/// Most attempts at one statement before giving up.
pub const MAX_ATTEMPTS: u32 = 30;

/// The wait before retry `attempt` (1-based): 50 ms doubling per attempt,
/// capped at 5 s, times a random factor in [0.5, 1.0).
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(50).saturating_mul(1 << attempt.min(10));
    let capped = base.min(Duration::from_secs(5));
    capped.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

/// True for SQLSTATE 55P03 (lock_not_available), what `lock_timeout` raises.
pub fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// Runs a [`Step::Sql`], [`Step::Views`] or [`Step::Concurrent`] step and
/// marks it done.
/// Backfill steps are run by the engine. Errors: the statement's own error,
/// or the last lock timeout after [`MAX_ATTEMPTS`].
pub async fn run(
    client: &mut Client,
    at: StepRef<'_>,
    step: &Step,
    lock_timeout: Duration,
) -> Result<(), tokio_postgres::Error> {
    let timeout = format!("{}ms", lock_timeout.as_millis());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match step {
            Step::Sql { sql } | Step::Views { sql, .. } => {
                let tx = client.transaction().await?;
                let outcome = async {
                    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{timeout}'"))
                        .await?;
                    tx.batch_execute(sql).await?;
                    if let Step::Views { privileges, .. } = step {
                        let changes = super::privileges::sync(&tx, at.schema, privileges).await?;
                        tracing::info!(version_schema = %privileges.version_schema, changes, "version schema privileges synced");
                    }
                    mark_done(&tx, at).await?;
                    Ok::<_, tokio_postgres::Error>(())
                }
                .await;
                match outcome {
                    Ok(()) => tx.commit().await,
                    Err(e) => Err(e),
                }
            }
            Step::Concurrent { sql, invalid_index } => {
                let outcome = async {
                    client
                        .batch_execute(&format!("SET lock_timeout = '{timeout}'"))
                        .await?;
                    if let Some(index) = invalid_index {
                        drop_invalid_index(client, at.schema, index).await?;
                    }
                    client.batch_execute(sql).await?;
                    mark_done(client, at).await?;
                    Ok::<_, tokio_postgres::Error>(())
                }
                .await;
                let _ = client.batch_execute("RESET lock_timeout").await;
                outcome
            }
            Step::Backfill(_) => unreachable!("the engine runs backfill steps"),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if is_lock_timeout(&e) && attempt < MAX_ATTEMPTS => {
                let delay = backoff(attempt);
                tracing::warn!(
                    action = %at.action,
                    step = at.position,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    lock_timeout = %timeout,
                    "lock_timeout hit; retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Drops `index` if a failed concurrent build left it INVALID.
async fn drop_invalid_index(
    client: &Client,
    schema: &str,
    index: &str,
) -> Result<(), tokio_postgres::Error> {
    let invalid = client
        .query_opt(
            &format!(
                "SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass({}) AND NOT i.indisvalid",
                literal(&qualified(schema, index))
            ),
            &[],
        )
        .await?
        .is_some();
    if invalid {
        tracing::warn!(
            index,
            "dropping the INVALID index a failed build left, before building it again"
        );
        client
            .batch_execute(&format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                qualified(schema, index)
            ))
            .await?;
    }
    Ok(())
}
