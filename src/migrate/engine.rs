//! The migration lifecycle: `init`, `start`, `complete`, `rollback`,
//! `status`, `migrate` and the live-catalog check, run over one connection
//! that holds the schema's migration lock for the whole command. Phases
//! (`state::Phase`): starting → active → completing → completed, or →
//! rolling_back → rolled_back. Each command resumes whatever its phase
//! left undone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::Client;

use super::backfill::{self, Tuning};
use super::ddl::{self, DdlError};
pub use super::error::MigrateError;
use super::error::db_message;
use super::format::{self, Migration};
use super::lint;
use super::names;
use super::plan::{self, Context, Plan, Step};
use super::verify;
use crate::catalog;
use crate::state::migrations::{self, MigrationRow, NewMigration, StepRef};
pub use crate::state::status::{ActiveStatus, HistoryEntry, Status};
use crate::state::{self, Action, Phase, StateError};

pub use super::settings::{BATCH_DELAY, BATCH_TIME, Check, Pinned, Settings};

mod fences;
mod history;

pub use history::{Applied, FileFormat};

/// One migration command's connection, holding the schema's migration
/// lock, and a second one that watches what blocks its steps.
pub struct Migrator {
    client: Client,
    /// The backend pid of `client`.
    pid: i32,
    watcher: Client,
    settings: Settings,
}

impl Migrator {
    /// Connects, creates the state schema if needed (`init`), and takes the
    /// schema's migration lock, failing at once when another command holds it.
    pub async fn connect(settings: Settings) -> Result<Migrator, MigrateError> {
        let client = state::open(&settings.database_url).await?;
        state::init(&client).await?;
        // A command that has just finished may still hold the lock until the
        // server notices its connection closed: allow it a moment.
        for attempt in 0..5 {
            if state::try_lock(&client, &settings.schema).await? {
                let pid = client
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await?
                    .get(0);
                let watcher = state::open(&settings.database_url).await?;
                return Ok(Migrator {
                    client,
                    pid,
                    watcher,
                    settings,
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
        state::unlock(&self.client, &self.settings.schema).await?;
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
        let old_version = migrations::current_version(&self.client, schema).await?;
        // The old version's schema: the one its migration kept, else the
        // name the old version would get (`baseline`'s).
        let old_schema =
            match state::versions::kept_schema(&self.client, schema, &old_version).await? {
                Some(kept) => kept,
                None => names::version_schema(schema, &old_version),
            };
        let schemas = catalog::schemas(&self.client).await?;
        let old_schema_views = catalog::view_names(&self.client, &old_schema).await?;
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
            old_version_schema: &old_schema,
            old_schema_views: &old_schema_views,
            old_schema_exists: schemas.contains(&old_schema),
            schemas: &schemas,
            volatile_defaults: &volatile_defaults,
            security_invoker: server_version >= 150000,
            pass_through_views: self.settings.pass_through_views,
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
        let mut volatile = BTreeSet::new();
        for (type_, default) in migration.defaults() {
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
                volatile.insert(default.to_string());
            }
        }
        Ok(volatile)
    }

    /// Starts the migration in `path`, or resumes it after a crash.
    pub async fn start(&mut self, path: &Path) -> Result<(), MigrateError> {
        let migration = format::load(path)?;
        let file = path.display().to_string();
        let schema = self.schema().to_string();
        match migrations::active(&self.client, &schema).await? {
            Some(active) if active.version == migration.name && active.phase == Phase::Starting => {
                tracing::info!(version = %active.version, "resuming an interrupted start");
            }
            // Rerun after a crash between the last step and the phase change.
            Some(active) if active.version == migration.name && active.phase == Phase::Active => {}
            Some(active) => {
                return Err(MigrateError::Active {
                    schema,
                    version: active.version,
                    phase: active.phase,
                });
            }
            None => {
                self.lint(&file, &migration)?;
                let plan = self.plan(&file, &migration).await?;
                self.record(&plan, &migration).await?;
                tracing::info!(version = %plan.version, version_schema = %plan.version_schema, "migration recorded; starting");
            }
        }
        self.run_action(&migration.name, Action::Start, None)
            .await?;
        migrations::set_phase(&self.client, &schema, &migration.name, Phase::Active).await?;
        self.proxies_serve(&migration.name).await?;
        tracing::info!(version = %migration.name, "migration started: both versions are live");
        Ok(())
    }

    /// The latest version of the schema and its version schema, as
    /// pgroll's `latest` reports them: the active migration's, else the
    /// last completed one's. Errors: [`MigrateError::NoMigration`] when no
    /// migration has run on the schema.
    pub async fn latest(&self) -> Result<(String, String), MigrateError> {
        let schema = self.schema();
        if let Some(active) = migrations::active(&self.client, schema).await? {
            let plan = plan_of(&active)?;
            return Ok((plan.version, plan.version_schema));
        }
        let version = migrations::current_version(&self.client, schema).await?;
        if version == "baseline" {
            return Err(MigrateError::NoMigration {
                schema: schema.to_string(),
            });
        }
        let version_schema =
            match state::versions::kept_schema(&self.client, schema, &version).await? {
                Some(kept) => kept,
                None => names::version_schema(schema, &version),
            };
        Ok((version, version_schema))
    }

    /// Lints `migration` ([`lint`]): every finding is logged; errors refuse
    /// the start unless `allow_unsafe` is set.
    fn lint(&self, file: &str, migration: &Migration) -> Result<(), MigrateError> {
        let findings = lint::lint_migration(migration);
        for f in &findings {
            tracing::warn!(file = %file, "{f}");
        }
        let errors: Vec<lint::Finding> = findings
            .into_iter()
            .filter(|f| f.level == lint::Level::Error)
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        if self.settings.allow_unsafe {
            tracing::warn!(file = %file, errors = errors.len(), "starting despite lint errors (--allow-unsafe)");
            return Ok(());
        }
        Err(MigrateError::Unsafe {
            file: file.to_string(),
            findings: errors,
        })
    }

    /// Records `plan` of `migration` and its steps, in one transaction.
    async fn record(&mut self, plan: &Plan, migration: &Migration) -> Result<(), MigrateError> {
        let schema = self.schema().to_string();
        let json = |v: serde_json::Result<serde_json::Value>| v.expect("plans and steps serialize");
        let steps: Vec<(Action, Vec<serde_json::Value>)> = Action::ALL
            .into_iter()
            .map(|a| {
                let steps = plan.steps(a).iter();
                (a, steps.map(|s| json(serde_json::to_value(s))).collect())
            })
            .collect();
        let plan_json = json(serde_json::to_value(plan));
        let tx = self.client.transaction().await?;
        migrations::record(
            &tx,
            &schema,
            &NewMigration {
                version: &plan.version,
                parent: &plan.old_version,
                plan: &plan_json,
                migration: &migration.raw,
                steps: &steps,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The backfill's pace from the settings (verify reads at it too).
    fn tuning(&self) -> Tuning {
        Tuning {
            batch_size: self.settings.batch_size,
            batch_time: self.settings.batch_time,
            batch_delay: self.settings.batch_delay,
            lock_timeout: self.settings.lock_timeout,
            ddl_timeout: self.settings.ddl_timeout,
            max_replica_lag: self.settings.max_replica_lag,
            fixed_pace: self.settings.fixed_pace,
            max_latency_factor: self.settings.max_latency_factor,
        }
    }

    /// Checks that every row of every duplicated column of the active
    /// migration agrees between the two shapes ([`verify`]), one report per
    /// table. Reads only; takes no lock beyond the migration lock.
    /// Errors: no active migration, one not fully started, or SQL errors.
    pub async fn verify(&self) -> Result<Vec<verify::Report>, MigrateError> {
        let active = self.active_or_err().await?;
        if active.phase != Phase::Active {
            return Err(wrong_phase(&active.version, active.phase, Action::Complete));
        }
        let mut reports = Vec::new();
        for agreement in &plan_of(&active)?.agreements {
            reports.push(
                verify::run(&self.client, agreement, self.tuning())
                    .await
                    .map_err(|e| MigrateError::VerifyFailed {
                        table: agreement.table.clone(),
                        source: e,
                    })?,
            );
        }
        Ok(reports)
    }

    /// Completes the active migration: checks that every row is converted
    /// and, with `check` [`Check::Verify`], that every row agrees between
    /// the two shapes; then contracts. Resumes an interrupted complete.
    /// Live sessions of the old version are refused or ended as `pinned`
    /// says. Errors: [`MigrateError::Disagree`] with nothing changed.
    pub async fn complete(&mut self, pinned: Pinned) -> Result<(), MigrateError> {
        self.complete_checked(pinned, Check::Verify).await
    }

    /// [`Migrator::complete`], choosing whether to verify first
    /// (`--skip-verify` gives [`Check::Skip`]).
    pub async fn complete_checked(
        &mut self,
        pinned: Pinned,
        check: Check,
    ) -> Result<(), MigrateError> {
        let schema = self.schema().to_string();
        let active = self.active_or_err().await?;
        match active.phase {
            // `--skip-verify` skips this too: a NULL the new version wrote
            // on purpose looks like a row the backfill missed.
            Phase::Active => {
                let converted = if check == Check::Verify {
                    plan_of(&active)?.verify
                } else {
                    Vec::new()
                };
                for check in &converted {
                    let count: i64 = self.client.query_one(check.sql.as_str(), &[]).await?.get(0);
                    if count > 0 {
                        return Err(MigrateError::NotConverted {
                            what: check.what.clone(),
                            count,
                        });
                    }
                }
                if check == Check::Verify {
                    let reports = self.verify().await?;
                    if reports.iter().any(|r| r.mismatched > 0) {
                        return Err(MigrateError::Disagree {
                            version: active.version.clone(),
                            reports,
                        });
                    }
                } else {
                    tracing::warn!(version = %active.version, "complete without verify (--skip-verify)");
                }
                let doomed = Doomed::OldVersion.of(&active);
                self.enter_phase(&active, Phase::Completing, doomed, Action::Complete, pinned)
                    .await?;
            }
            Phase::Completing => {
                tracing::info!(version = %active.version, "resuming an interrupted complete")
            }
            phase => return Err(wrong_phase(&active.version, phase, Action::Complete)),
        }
        let doomed = (pinned == Pinned::End).then_some(active.parent.as_str());
        self.run_action(&active.version, Action::Complete, doomed)
            .await?;
        migrations::set_phase(&self.client, &schema, &active.version, Phase::Completed).await?;
        tracing::info!(version = %active.version, "migration completed");
        Ok(())
    }

    /// Rolls back the active migration (also one whose start was
    /// interrupted). Live sessions of the new version are refused or ended
    /// as `pinned` says.
    pub async fn rollback(&mut self, pinned: Pinned) -> Result<(), MigrateError> {
        let schema = self.schema().to_string();
        let active = self.active_or_err().await?;
        match active.phase {
            Phase::Starting | Phase::Active => {
                let doomed = Doomed::NewVersion.of(&active);
                self.enter_phase(
                    &active,
                    Phase::RollingBack,
                    doomed,
                    Action::Rollback,
                    pinned,
                )
                .await?;
            }
            Phase::RollingBack => {
                tracing::info!(version = %active.version, "resuming an interrupted rollback")
            }
            phase => return Err(wrong_phase(&active.version, phase, Action::Rollback)),
        }
        let doomed = (pinned == Pinned::End).then_some(active.version.as_str());
        self.run_action(&active.version, Action::Rollback, doomed)
            .await?;
        migrations::set_phase(&self.client, &schema, &active.version, Phase::RolledBack).await?;
        state::backfill::forget(&self.client, &schema, &active.version).await?;
        tracing::info!(version = %active.version, "migration rolled back");
        Ok(())
    }

    /// Moves migration `active` into phase `next`, in which no proxy gives a
    /// new session the version `doomed` that `command` removes; then waits a
    /// heartbeat, so that every proxy has reported its sessions (one that
    /// connected just before is not in the last report yet), and refuses
    /// (or ends, as `pinned` says) the sessions still pinned to `doomed`. A
    /// refusal puts the phase back: no step has run.
    async fn enter_phase(
        &self,
        active: &MigrationRow,
        next: Phase,
        doomed: &str,
        command: Action,
        pinned: Pinned,
    ) -> Result<(), MigrateError> {
        let schema = self.schema();
        // What the last reports show is refused at once.
        self.sessions_gone(doomed, command, &active.version, pinned)
            .await?;
        migrations::set_phase(&self.client, schema, &active.version, next).await?;
        tokio::time::sleep(state::REPORT_WAIT).await;
        if let Err(e) = self
            .sessions_gone(doomed, command, &active.version, pinned)
            .await
        {
            migrations::set_phase(&self.client, schema, &active.version, active.phase).await?;
            return Err(e);
        }
        Ok(())
    }

    async fn active_or_err(&self) -> Result<MigrationRow, MigrateError> {
        migrations::active(&self.client, self.schema())
            .await?
            .ok_or_else(|| MigrateError::NoneActive {
                schema: self.schema().to_string(),
            })
    }

    /// Runs the steps of `action` that are not done yet, in order. Start's
    /// first step builds the old version's views; the sessions must stand
    /// on them before any later step changes a table. `doomed` is the
    /// version a forced complete or rollback removes: backends of its
    /// sessions that block a step are terminated.
    async fn run_action(
        &mut self,
        version: &str,
        action: Action,
        doomed: Option<&str>,
    ) -> Result<(), MigrateError> {
        let schema = self.settings.schema.clone();
        let pending = migrations::pending(&self.client, &schema, version, action).await?;
        let moves_sessions = |position: i32| action == Action::Start && position == 0;
        if action == Action::Start && pending.first().is_some_and(|(p, _)| *p > 0) {
            self.sessions_on_views(version).await?;
        }
        for (position, step) in pending {
            let step: Step = serde_json::from_value(step).map_err(|e| StateError::Corrupt {
                what: "step",
                version: version.to_string(),
                message: e.to_string(),
            })?;
            let at = StepRef {
                schema: &schema,
                version,
                action,
                position,
            };
            self.run_step(at, &step, doomed)
                .await
                .map_err(|e| match e {
                    DdlError::Db(e) => MigrateError::Step {
                        action,
                        position,
                        sql: step.describe(),
                        message: db_message(&e),
                    },
                    DdlError::Deadline {
                        timeout,
                        attempts,
                        blockers,
                    } => MigrateError::Blocked {
                        action,
                        position,
                        sql: step.describe(),
                        timeout,
                        attempts,
                        blockers,
                    },
                })?;
            if moves_sessions(position) {
                self.sessions_on_views(version).await?;
            }
        }
        Ok(())
    }

    /// Runs one step and marks it done.
    async fn run_step(
        &mut self,
        at: StepRef<'_>,
        step: &Step,
        doomed: Option<&str>,
    ) -> Result<(), DdlError> {
        let Step::Backfill(spec) = step else {
            let locking = ddl::Locking {
                lock_timeout: self.settings.lock_timeout,
                ddl_timeout: self.settings.ddl_timeout,
                watcher: &self.watcher,
                pid: self.pid,
                doomed,
            };
            return ddl::run(&mut self.client, at, step, &locking).await;
        };
        let tuning = self.tuning();
        backfill::run(&mut self.client, at.schema, at.version, spec, tuning).await?;
        Ok(migrations::mark_done(&self.client, at).await?)
    }

    /// The active migration, its backfill progress, and the history.
    pub async fn status(&self) -> Result<Status, MigrateError> {
        Ok(state::status::status(&self.client, self.schema()).await?)
    }

    /// Pins `route` to `version`, which must be live now; every proxy hears
    /// of it through NOTIFY. New sessions of the route get the version;
    /// existing ones keep theirs.
    pub async fn pin(&self, route: &str, version: &str) -> Result<(), MigrateError> {
        Ok(state::versions::pin(&self.client, self.schema(), route, version).await?)
    }

    /// The pins of every route: (route, version).
    pub async fn routes(&self) -> Result<Vec<(String, String)>, MigrateError> {
        let pins = state::versions::pins(&self.client, self.schema()).await?;
        Ok(pins.into_iter().collect())
    }
}

/// The migration files (`.json`, `.yaml`, `.yml`) in `dir`, in name order.
pub(super) fn migration_files(dir: &Path) -> Result<Vec<PathBuf>, MigrateError> {
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
    Ok(files)
}

/// The stored plan of `row`. Errors: a plan this pgshift cannot read.
fn plan_of(row: &MigrationRow) -> Result<Plan, MigrateError> {
    serde_json::from_value(row.plan.clone()).map_err(|e| {
        StateError::Corrupt {
            what: "plan",
            version: row.version.clone(),
            message: e.to_string(),
        }
        .into()
    })
}

/// The version a command removes.
#[derive(Debug, Clone, Copy)]
enum Doomed {
    /// complete removes the old version.
    OldVersion,
    /// rollback removes the new one.
    NewVersion,
}

impl Doomed {
    fn of(self, active: &MigrationRow) -> &str {
        match self {
            Doomed::OldVersion => &active.parent,
            Doomed::NewVersion => &active.version,
        }
    }
}

fn wrong_phase(version: &str, phase: Phase, command: Action) -> MigrateError {
    let hint = match (command, phase) {
        (Action::Complete, Phase::Starting) => "; run `pgshift start` again to finish starting it",
        (Action::Complete, Phase::RollingBack) => {
            "; run `pgshift rollback` again to finish the rollback"
        }
        (Action::Rollback, Phase::Completing) => {
            "; a complete has begun contracting, so run `pgshift complete` again"
        }
        _ => "",
    };
    MigrateError::WrongPhase {
        version: version.to_string(),
        phase,
        command,
        hint: hint.to_string(),
    }
}
