//! Lock-bounded execution of a plan's steps: every statement runs under
//! `lock_timeout`, and a statement that cannot get its lock in time is retried
//! with capped exponential backoff and jitter until `--ddl-timeout`, each
//! retry logged with the backends that block it. A
//! transactional step and its done mark commit together; a concurrent step
//! first drops the INVALID index a failed build may have left.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::backends::{self, Backend};
use super::plan::Step;
use crate::quote::{literal, qualified};
use crate::state::migrations::{StepRef, mark_done};

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

/// How a step waits for its locks.
pub struct Locking<'a> {
    /// `lock_timeout` of each attempt.
    pub lock_timeout: Duration,
    /// How long a step keeps retrying before it gives up (`--ddl-timeout`).
    pub ddl_timeout: Duration,
    /// A second connection, which looks at what blocks each attempt
    /// (`pg_blocking_pids`) while the attempt waits.
    pub watcher: &'a Client,
    /// The backend pid of the connection that runs the steps.
    pub pid: i32,
    /// The version that `complete --force` or `rollback --force` removes:
    /// the backends of its sessions are terminated when they block a step.
    pub doomed: Option<&'a str>,
}

/// Why a step did not run.
#[derive(Debug)]
pub enum DdlError {
    /// The statement's own error.
    Db(tokio_postgres::Error),
    /// The step could not get its locks before `--ddl-timeout`; the
    /// backends that blocked its last attempts.
    Deadline {
        timeout: Duration,
        attempts: u32,
        blockers: Vec<Backend>,
    },
}

impl From<tokio_postgres::Error> for DdlError {
    fn from(e: tokio_postgres::Error) -> Self {
        DdlError::Db(e)
    }
}

/// Runs a [`Step::Sql`], [`Step::Views`] or [`Step::Concurrent`] step and
/// marks it done. Each attempt runs under `lock_timeout`; while it waits,
/// the watcher notes which backends block it, and each retry's log line
/// names them. Blockers that serve sessions of `locking.doomed` are
/// terminated. Backfill
/// steps are run by the engine. Errors: the statement's own error, or
/// [`DdlError::Deadline`] once `ddl_timeout` has passed; the step is then
/// not done, and running the command again resumes it.
pub async fn run(
    client: &mut Client,
    at: StepRef<'_>,
    step: &Step,
    locking: &Locking<'_>,
) -> Result<(), DdlError> {
    let timeout = format!("{}ms", locking.lock_timeout.as_millis());
    let deadline = tokio::time::Instant::now() + locking.ddl_timeout;
    let mut blockers: Vec<Backend> = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (result, seen) =
            watched(locking, at.schema, attempt_once(client, at, step, &timeout)).await;
        if !seen.is_empty() {
            blockers = seen;
        }
        match result {
            Ok(()) => return Ok(()),
            Err(e) if is_lock_timeout(&e) => {
                let delay = backoff(attempt);
                if tokio::time::Instant::now() + delay >= deadline {
                    return Err(DdlError::Deadline {
                        timeout: locking.ddl_timeout,
                        attempts: attempt,
                        blockers,
                    });
                }
                let named: Vec<String> = blockers.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    action = %at.action,
                    step = at.position,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    lock_timeout = %timeout,
                    blockers = %if named.is_empty() { "unknown (gone before they were seen)".to_string() } else { named.join("; ") },
                    "lock_timeout hit; retrying"
                );
                terminate_doomed(locking, &blockers).await;
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(DdlError::Db(e)),
        }
    }
}

/// Runs `attempt` while the watcher looks, once the attempt has waited
/// most of its `lock_timeout`, at what blocks it. Returns the attempt's
/// outcome and the blockers seen (none when it did not wait that long).
async fn watched<F>(
    locking: &Locking<'_>,
    schema: &str,
    attempt: F,
) -> (Result<(), tokio_postgres::Error>, Vec<Backend>)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    let look = async {
        tokio::time::sleep(locking.lock_timeout.mul_f64(0.6)).await;
        backends::blocking(locking.watcher, schema, locking.pid).await
    };
    tokio::pin!(attempt, look);
    let mut seen = Vec::new();
    let mut looked = false;
    loop {
        tokio::select! {
            biased;
            result = &mut attempt => return (result, seen),
            found = &mut look, if !looked => {
                looked = true;
                match found {
                    Ok(found) => seen = found,
                    Err(e) => tracing::debug!(error = %e, "could not look at what blocks the step"),
                }
            }
        }
    }
}

/// Terminates the blockers that belong to sessions of a version being
/// removed by force.
async fn terminate_doomed(locking: &Locking<'_>, blockers: &[Backend]) {
    let Some(version) = locking.doomed else {
        return;
    };
    let doomed: Vec<i32> = blockers
        .iter()
        .filter(|b| b.session.as_ref().is_some_and(|s| s.version == version))
        .map(|b| b.pid)
        .collect();
    if doomed.is_empty() {
        return;
    }
    tracing::warn!(pids = ?doomed, "terminating blockers that belong to sessions of the removed version (--force)");
    if let Err(e) = crate::state::sessions::terminate(locking.watcher, &doomed).await {
        tracing::warn!(error = %e, "could not terminate the blockers");
    }
}

/// One attempt at `step` under `lock_timeout` (`timeout`, as SQL text).
async fn attempt_once(
    client: &mut Client,
    at: StepRef<'_>,
    step: &Step,
    timeout: &str,
) -> Result<(), tokio_postgres::Error> {
    match step {
        Step::Sql { sql } | Step::Views { sql, .. } => {
            let tx = client.transaction().await?;
            tx.batch_execute(&format!("SET LOCAL lock_timeout = '{timeout}'"))
                .await?;
            tx.batch_execute(sql).await?;
            if let Step::Views { privileges, .. } = step {
                let changes = super::privileges::sync(&tx, at.schema, privileges).await?;
                tracing::info!(version_schema = %privileges.version_schema, changes, "version schema privileges synced");
            }
            mark_done(&tx, at).await?;
            tx.commit().await
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
                mark_done(client, at).await
            }
            .await;
            let _ = client.batch_execute("RESET lock_timeout").await;
            outcome
        }
        Step::Backfill(_) => unreachable!("the engine runs backfill steps"),
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
