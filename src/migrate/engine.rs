//! The migration lifecycle: `init`, `start`, `complete`, `rollback`,
//! `status`, `migrate` and the live-catalog check, run over one connection
//! that holds the schema's advisory lock for the whole command. Phases:
//! starting → active → completing → completed, or → rolling_back →
//! rolled_back. Each command resumes whatever its phase left undone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::{Client, GenericClient};

use super::backfill::{self, Tuning};
use super::ddl::{self, StepRef};
pub use super::error::MigrateError;
use super::error::db_message;
use super::format::{self, Migration};
use super::names;
use super::plan::{self, Context, Plan, Step};
use super::state::{self, MigrationRow};
pub use super::status::{ActiveStatus, BackfillStatus, HistoryEntry, Status, status};
use crate::catalog;
use crate::quote::literal;

/// The default time one backfill batch aims at (`--backfill-batch-time`),
/// measured on the server. Under load, clients' tail latency follows the
/// length of each burst of backfill work more than the backfill's rate: a
/// client woken on a core that a batch holds waits for it. Bursts of 0.5 ms
/// kept p99 under 2x steady state where 1 ms bursts did not
/// (bench/README.md, "A migration under live load").
pub const BATCH_TIME: Duration = Duration::from_micros(500);

/// The default pause after each backfill batch (`--backfill-batch-delay`).
/// With [`BATCH_TIME`], about 22,000 rows a second on a 2-core machine
/// with the backfill's backend at about 15% of one core.
pub const BATCH_DELAY: Duration = Duration::from_millis(2);

/// Settings every migration command takes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    /// The physical schema migrations apply to.
    pub schema: String,
    pub lock_timeout: Duration,
    /// The most rows in one backfill batch.
    pub batch_size: i64,
    /// The time one backfill batch should take (the batch size adapts).
    pub batch_time: Duration,
    /// The pause after each backfill batch.
    pub batch_delay: Duration,
    /// How long `start` waits for the old version's sessions to move onto
    /// its views (each moves at its first moment outside a transaction).
    pub session_move_timeout: Duration,
}

impl Settings {
    /// The defaults for `database_url` on schema `public`: lock_timeout
    /// 500 ms; backfill batches of at most 1000 rows that aim at
    /// [`BATCH_TIME`], with [`BATCH_DELAY`] between them; 30 s for
    /// sessions to move.
    pub fn new(database_url: String) -> Settings {
        Settings {
            database_url,
            schema: "public".into(),
            lock_timeout: Duration::from_millis(500),
            batch_size: 1000,
            batch_time: BATCH_TIME,
            batch_delay: BATCH_DELAY,
            session_move_timeout: Duration::from_secs(30),
        }
    }
}

/// One migration command's connection, holding the schema's advisory lock.
pub struct Migrator {
    client: Client,
    settings: Settings,
    force: bool,
}

impl Migrator {
    /// Connects, creates the state schema if needed (`init`), and takes the
    /// schema's advisory lock, failing at once when another command holds it.
    pub async fn connect(settings: Settings) -> Result<Migrator, MigrateError> {
        let client = crate::control::open(&settings.database_url).await?;
        // Serialize concurrent inits; CREATE ... IF NOT EXISTS alone can race.
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('pgshift.init')); {} COMMIT;",
                state::INIT_SQL
            ))
            .await?;
        // A command that has just finished may still hold the lock until the
        // server notices its connection closed: allow it a moment.
        for attempt in 0..5 {
            let locked: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtext('pgshift'), hashtext($1))",
                    &[&settings.schema],
                )
                .await?
                .get(0);
            if locked {
                return Ok(Migrator {
                    client,
                    settings,
                    force: false,
                });
            }
            if attempt < 4 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(MigrateError::Busy {
            schema: settings.schema,
        })
    }

    /// Releases the schema's lock and closes the connection. Dropping a
    /// `Migrator` does the same, but the server may notice a little later.
    pub async fn close(self) -> Result<(), MigrateError> {
        self.client
            .query_one(
                "SELECT pg_advisory_unlock(hashtext('pgshift'), hashtext($1))",
                &[&self.settings.schema],
            )
            .await?;
        Ok(())
    }

    fn schema(&self) -> &str {
        &self.settings.schema
    }

    /// Plans `migration` against the live catalog; every problem at once.
    pub async fn plan(&self, file: &str, migration: &Migration) -> Result<Plan, MigrateError> {
        let schema = self.schema();
        let tables = catalog::tables(&self.client, schema).await?;
        let indexes = catalog::indexes(&self.client, schema).await?;
        let old_version = state::current_version(&self.client, schema).await?;
        let old_schema = names::version_schema(schema, &old_version);
        let schemas: BTreeSet<String> = self
            .client
            .query("SELECT nspname::text FROM pg_namespace", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let old_schema_views: BTreeSet<String> = self
            .client
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind = 'v'",
                &[&old_schema],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let volatile_defaults = self.volatile_defaults(migration).await?;
        let server_version: i32 = self
            .client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?
            .get(0);
        let cx = Context {
            schema,
            tables: &tables,
            indexes: &indexes,
            old_version: &old_version,
            old_schema_views: &old_schema_views,
            old_schema_exists: schemas.contains(&old_schema),
            schemas: &schemas,
            volatile_defaults: &volatile_defaults,
            security_invoker: server_version >= 150000,
        };
        plan::plan(migration, &cx).map_err(|problems| MigrateError::Live {
            file: file.to_string(),
            problems,
        })
    }

    /// The default expressions in `migration` that are volatile, found by
    /// adding each to an empty temporary table: Postgres stores a
    /// non-volatile default as the column's "missing" value and cannot for a
    /// volatile one.
    async fn volatile_defaults(
        &self,
        migration: &Migration,
    ) -> Result<BTreeSet<String>, MigrateError> {
        let mut defaults = Vec::new();
        for op in &migration.operations {
            match op {
                format::Operation::AddColumn(a) => {
                    if let Some(d) = &a.column.default {
                        defaults.push((a.column.type_.clone(), d.clone()));
                    }
                }
                format::Operation::AlterColumn(a) => {
                    if let (Some(Some(d)), Some(t)) = (&a.default, &a.type_) {
                        defaults.push((t.clone(), d.clone()));
                    }
                }
                _ => {}
            }
        }
        let mut volatile = BTreeSet::new();
        for (type_, default) in defaults {
            let probe = format!(
                "BEGIN; CREATE TEMP TABLE _pgshift_probe (); ALTER TABLE _pgshift_probe ADD COLUMN c {type_} DEFAULT {default}; \
                 SELECT CASE WHEN atthasmissing THEN 'stable' ELSE 'volatile' END FROM pg_attribute \
                 WHERE attrelid = '_pgshift_probe'::regclass AND attname = 'c'"
            );
            let result = self.client.simple_query(&probe).await;
            let _ = self.client.batch_execute("ROLLBACK").await;
            let rows = result?;
            let is_volatile = rows.iter().any(|m| {
                matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("volatile"))
            });
            if is_volatile {
                volatile.insert(default);
            }
        }
        Ok(volatile)
    }

    /// Starts the migration in `path` (or resumes it after a crash), then
    /// completes it when `complete` is set.
    pub async fn start(&mut self, path: &Path, complete: bool) -> Result<(), MigrateError> {
        let migration = format::load(path)?;
        let file = path.display().to_string();
        let schema = self.schema().to_string();
        match state::active(&self.client, &schema).await? {
            Some(active) if active.version == migration.name && active.phase == "starting" => {
                tracing::info!(version = %active.version, "resuming an interrupted start");
            }
            Some(active) if active.version == migration.name && active.phase == "active" => {
                // Rerun after a crash between the last step and the phase change.
            }
            Some(active) => {
                return Err(MigrateError::Active {
                    schema,
                    version: active.version,
                    phase: active.phase,
                });
            }
            None => {
                let plan = self.plan(&file, &migration).await?;
                let tx = self.client.transaction().await?;
                state::record(&tx, &schema, &plan, &migration.raw).await?;
                tx.commit().await?;
                tracing::info!(version = %plan.version, version_schema = %plan.version_schema, "migration recorded; starting");
            }
        }
        self.run_action(&migration.name, "start").await?;
        state::set_phase(&self.client, &schema, &migration.name, "active").await?;
        tracing::info!(version = %migration.name, "migration started: both versions are live");
        if complete {
            self.complete().await?;
        }
        Ok(())
    }

    /// Completes the active migration: checks that every row is converted,
    /// then contracts. Resumes an interrupted complete.
    pub async fn complete(&mut self) -> Result<(), MigrateError> {
        let schema = self.schema().to_string();
        let active = self.active_or_err().await?;
        match active.phase.as_str() {
            "active" => {
                for check in &active.plan.verify {
                    let count: i64 = self.client.query_one(check.sql.as_str(), &[]).await?.get(0);
                    if count > 0 {
                        return Err(MigrateError::NotConverted {
                            what: check.what.clone(),
                            count,
                        });
                    }
                }
                self.enter_phase(&active, "completing", &active.parent, "complete")
                    .await?;
            }
            "completing" => {
                tracing::info!(version = %active.version, "resuming an interrupted complete")
            }
            phase => return Err(wrong_phase(&active.version, phase, "complete")),
        }
        self.run_action(&active.version, "complete").await?;
        state::set_phase(&self.client, &schema, &active.version, "completed").await?;
        tracing::info!(version = %active.version, "migration completed");
        Ok(())
    }

    /// Rolls back the active migration (also one whose start was interrupted).
    pub async fn rollback(&mut self) -> Result<(), MigrateError> {
        let schema = self.schema().to_string();
        let active = self.active_or_err().await?;
        match active.phase.as_str() {
            "starting" | "active" => {
                self.enter_phase(&active, "rolling_back", &active.version, "rollback")
                    .await?;
            }
            "rolling_back" => {
                tracing::info!(version = %active.version, "resuming an interrupted rollback")
            }
            phase => return Err(wrong_phase(&active.version, phase, "rollback")),
        }
        self.run_action(&active.version, "rollback").await?;
        state::set_phase(&self.client, &schema, &active.version, "rolled_back").await?;
        self.client
            .execute(
                "DELETE FROM pgshift.backfill WHERE schema_name = $1 AND version = $2",
                &[&schema, &active.version],
            )
            .await?;
        tracing::info!(version = %active.version, "migration rolled back");
        Ok(())
    }

    /// With `force`, `complete` and `rollback` end the sessions that would
    /// stand in their way instead of refusing.
    pub fn set_force(&mut self, force: bool) {
        self.force = force;
    }

    /// Moves migration `active` into phase `next`, in which no proxy gives a
    /// new session the version `doomed` that `command` removes; then waits a
    /// heartbeat, so that every proxy has reported its sessions (one that
    /// connected just before is not in the last report yet), and refuses
    /// (or, forced, ends) the sessions still pinned to `doomed`. A refusal
    /// puts the phase back: no step has run.
    async fn enter_phase(
        &self,
        active: &MigrationRow,
        next: &str,
        doomed: &str,
        command: &'static str,
    ) -> Result<(), MigrateError> {
        let schema = self.schema();
        // What the last reports show is refused at once.
        self.sessions_gone(doomed, command, &active.version).await?;
        state::set_phase(&self.client, schema, &active.version, next).await?;
        tokio::time::sleep(state::REPORT_WAIT).await;
        if let Err(e) = self.sessions_gone(doomed, command, &active.version).await {
            state::set_phase(&self.client, schema, &active.version, &active.phase).await?;
            return Err(e);
        }
        Ok(())
    }

    /// Refuses (or, forced, ends) the live sessions pinned to `version`,
    /// which `command` of migration `migration` is about to remove.
    async fn sessions_gone(
        &self,
        version: &str,
        command: &'static str,
        migration: &str,
    ) -> Result<(), MigrateError> {
        let schema = self.schema();
        let sessions = state::live_sessions(&self.client, schema, Some(version)).await?;
        if sessions.is_empty() {
            return Ok(());
        }
        if !self.force {
            return Err(MigrateError::SessionsPinned {
                version: version.to_string(),
                command,
                sessions,
            });
        }
        let reason = format!(
            "pgshift {command} --force of migration {migration} removed version {version}, which this session was pinned to; reconnect"
        );
        tracing::warn!(count = sessions.len(), %version, "ending the sessions pinned to the version ({command} --force)");
        state::request_kills(&self.client, &sessions, &reason).await?;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if state::live_sessions(&self.client, schema, Some(version))
                .await?
                .is_empty()
            {
                return Ok(());
            }
        }
        let sessions = state::live_sessions(&self.client, schema, Some(version)).await?;
        Err(MigrateError::SessionsPinned {
            version: version.to_string(),
            command,
            sessions,
        })
    }

    async fn active_or_err(&self) -> Result<MigrationRow, MigrateError> {
        state::active(&self.client, self.schema())
            .await?
            .ok_or_else(|| MigrateError::NoneActive {
                schema: self.schema().to_string(),
            })
    }

    async fn run_action(&mut self, version: &str, action: &str) -> Result<(), MigrateError> {
        let schema = self.settings.schema.clone();
        let pending = state::pending(&self.client, &schema, version, action).await?;
        // Start's first step builds the old version's views; the sessions
        // must stand on them before any later step changes a table.
        let moves_sessions = |position: i32| action == "start" && position == 0;
        if action == "start" && pending.first().is_some_and(|(p, _)| *p > 0) {
            self.sessions_on_views(version).await?;
        }
        for (position, step) in pending {
            let at = StepRef {
                schema: &schema,
                version,
                action,
                position,
            };
            let result = match &step {
                Step::Backfill(spec) => {
                    let tuning = Tuning {
                        batch_size: self.settings.batch_size,
                        batch_time: self.settings.batch_time,
                        batch_delay: self.settings.batch_delay,
                        lock_timeout: self.settings.lock_timeout,
                    };
                    match backfill::run(&mut self.client, &schema, version, spec, tuning).await {
                        Ok(_) => self
                            .client
                            .execute(
                                state::MARK_DONE,
                                &[&at.schema, &at.version, &at.action, &at.position],
                            )
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
                step => ddl::run(&mut self.client, at, step, self.settings.lock_timeout).await,
            };
            result.map_err(|e| MigrateError::Step {
                action: action.to_string(),
                position,
                sql: match &step {
                    Step::Sql { sql } | Step::Concurrent { sql, .. } => sql.clone(),
                    Step::Backfill(spec) => format!("backfill of {}", spec.table),
                },
                message: db_message(&e),
            })?;
            if moves_sessions(position) {
                self.sessions_on_views(version).await?;
            }
        }
        Ok(())
    }

    /// Tells every proxy that the old version's views of migration
    /// `version` exist, and waits until each live session of the old
    /// version stands on them, as the proxies' heartbeats since then report.
    async fn sessions_on_views(&self, version: &str) -> Result<(), MigrateError> {
        let schema = self.schema();
        let active = self.active_or_err().await?;
        let (old, old_schema) = (&active.parent, &active.plan.old_version_schema);
        let since = state::notify(&self.client, schema).await?;
        let deadline = tokio::time::Instant::now() + self.settings.session_move_timeout;
        // A proxy publishes only the sessions it has: one whose heartbeat has
        // not come round since the NOTIFY would go unseen. After a full
        // heartbeat, every running proxy has reported.
        tokio::time::sleep(state::REPORT_WAIT).await;
        loop {
            let unmoved =
                state::sessions_off(&self.client, schema, old, old_schema, &since).await?;
            if unmoved.is_empty() {
                tracing::info!(%version, old_version = %old, "the old version's sessions stand on its views");
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MigrateError::SessionsNotMoved {
                    version: old.clone(),
                    timeout: self.settings.session_move_timeout,
                    sessions: unmoved,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The active migration, its backfill progress, and the history.
    pub async fn status(&self) -> Result<Status, MigrateError> {
        status(&self.client, self.schema()).await
    }

    /// Pins `route` to `version`, which must be live now; every proxy hears
    /// of it through NOTIFY. New sessions of the route get the version;
    /// existing ones keep theirs.
    pub async fn pin(&self, route: &str, version: &str) -> Result<(), MigrateError> {
        pin(&self.client, self.schema(), route, version).await
    }

    /// The pins of every route: (route, version).
    pub async fn routes(&self) -> Result<Vec<(String, String)>, MigrateError> {
        let versions = state::live_versions(&self.client, self.schema()).await?;
        Ok(versions.pins.into_iter().collect())
    }

    /// Applies every migration file in `dir` not yet completed, in name
    /// order, completing each. Returns the versions applied.
    pub async fn migrate(&mut self, dir: &Path) -> Result<Vec<String>, MigrateError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| MigrateError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        files.sort();
        let completed: BTreeSet<String> = state::history(&self.client, self.schema())
            .await?
            .into_iter()
            .filter(|r| r.phase == "completed")
            .map(|r| r.version)
            .collect();
        let mut applied = Vec::new();
        for file in files {
            let migration = format::load(&file)?;
            if completed.contains(&migration.name) {
                continue;
            }
            if let Some(active) = state::active(&self.client, self.schema()).await?
                && active.version == migration.name
                && active.phase == "completing"
            {
                self.complete().await?;
            } else {
                self.start(&file, true).await?;
            }
            applied.push(migration.name);
        }
        Ok(applied)
    }
}

fn wrong_phase(version: &str, phase: &str, command: &'static str) -> MigrateError {
    let hint = match (command, phase) {
        ("complete", "starting") => "; run `pgshift start` again to finish starting it".to_string(),
        ("complete", "rolling_back") => {
            "; run `pgshift rollback` again to finish the rollback".to_string()
        }
        ("rollback", "completing") => {
            "; a complete has begun contracting, so run `pgshift complete` again".to_string()
        }
        _ => String::new(),
    };
    MigrateError::WrongPhase {
        version: version.to_string(),
        phase: phase.to_string(),
        command,
        hint,
    }
}

/// The `SET` commands a session of `version` runs so that it sees that
/// version: the setting the triggers read, and the version schema first on
/// the search_path. For the proxy and for tests.
pub fn session_setup(schema: &str, version: &str, version_schema: &str) -> String {
    format!(
        "SET pgshift.version = {}; SET search_path = {}, {}",
        literal(version),
        crate::quote::ident(version_schema),
        crate::quote::ident(schema)
    )
}

/// Pins `route` to `version` on `schema`; the version must be live now.
/// Errors: [`MigrateError::UnknownVersion`] listing the live versions.
pub async fn pin(
    client: &impl GenericClient,
    schema: &str,
    route: &str,
    version: &str,
) -> Result<(), MigrateError> {
    let live = state::live_versions(client, schema).await?.live();
    if !live.contains_key(version) {
        return Err(MigrateError::UnknownVersion {
            version: version.to_string(),
            existing: live.keys().cloned().collect(),
        });
    }
    state::pin(client, schema, route, version).await?;
    Ok(())
}
