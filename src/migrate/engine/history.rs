//! pgroll's commands over the migration history, where users script them:
//! `migrate` (apply a directory, leaving the last migration active unless
//! asked to complete it), `pull` (write the history back to files) and
//! `baseline` (adopt an existing schema as the first version).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Migrator, Pinned, migration_files};
use crate::migrate::error::MigrateError;
use crate::migrate::format;
use crate::migrate::names;
use crate::migrate::plan::Plan;
use crate::state::migrations::{self, NewMigration};
use crate::state::{Action, Phase};

/// What `migrate` did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: String,
    /// False for the last one, left active (started, not completed).
    pub completed: bool,
}

/// The format `pull` and `baseline` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Yaml,
    Json,
}

impl FileFormat {
    fn extension(self) -> &'static str {
        match self {
            FileFormat::Yaml => "yaml",
            FileFormat::Json => "json",
        }
    }

    /// `value` as this format's text.
    fn render(self, value: &serde_json::Value) -> String {
        match self {
            FileFormat::Json => {
                let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
                text.push('\n');
                text
            }
            FileFormat::Yaml => serde_norway::to_string(value).expect("JSON values serialize"),
        }
    }
}

impl Migrator {
    /// pgroll's `migrate`: applies, in name order, every file of `dir`
    /// whose version has not completed; each is started (or resumed, if it
    /// is the active one) and completed, except the last, which is left
    /// active unless `complete_last`, so that old clients keep their
    /// version until the operator completes it. Every file is loaded
    /// before anything runs, so a broken file stops the command first.
    /// With `expect_one`, errors unless exactly one file is pending.
    pub async fn migrate(
        &mut self,
        dir: &Path,
        complete_last: bool,
        expect_one: bool,
    ) -> Result<Vec<Applied>, MigrateError> {
        let schema = self.schema().to_string();
        let completed: BTreeSet<String> = migrations::history(&self.client, &schema)
            .await?
            .into_iter()
            .filter(|r| r.phase == Phase::Completed)
            .map(|r| r.version)
            .collect();
        let mut pending = Vec::new();
        for file in migration_files(dir)? {
            let migration = format::load(&file)?;
            if !completed.contains(&migration.name) {
                pending.push((file, migration.name));
            }
        }
        if expect_one && pending.len() != 1 {
            return Err(MigrateError::ExpectedOne {
                dir: dir.to_path_buf(),
                pending: pending.into_iter().map(|(_, v)| v).collect(),
            });
        }
        let active = migrations::active(&self.client, &schema).await?;
        if let Some(a) = &active
            && !pending.iter().any(|(_, v)| *v == a.version)
        {
            return Err(MigrateError::Active {
                schema,
                version: a.version.clone(),
                phase: a.phase,
            });
        }
        let mut applied = Vec::new();
        let last = pending.len().saturating_sub(1);
        for (i, (file, version)) in pending.into_iter().enumerate() {
            let phase = active
                .as_ref()
                .filter(|a| a.version == version)
                .map(|a| a.phase);
            // Starting resumes an interrupted start; Active and
            // Completing are past it.
            if !matches!(phase, Some(Phase::Active | Phase::Completing)) {
                self.start(&file).await?;
            }
            let complete = i < last || complete_last || phase == Some(Phase::Completing);
            if complete {
                self.complete(Pinned::Refuse).await?;
            }
            applied.push(Applied {
                version,
                completed: complete,
            });
        }
        Ok(applied)
    }

    /// pgroll's `pull`: writes each migration of the history (completed or
    /// active, oldest first) that `dir` lacks as `<version>.yaml` (or
    /// `.json`), with the content it was started from. Returns the files
    /// written.
    pub async fn pull(&self, dir: &Path, format: FileFormat) -> Result<Vec<PathBuf>, MigrateError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MigrateError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let present: BTreeSet<String> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                let ext = path.extension()?.to_str()?;
                matches!(ext, "json" | "yaml" | "yml")
                    .then(|| path.file_stem()?.to_str().map(str::to_string))
                    .flatten()
            })
            .collect();
        let mut written = Vec::new();
        for row in migrations::history(&self.client, self.schema()).await? {
            let keep = matches!(
                row.phase,
                Phase::Completed | Phase::Active | Phase::Starting | Phase::Completing
            );
            if !keep || present.contains(&row.version) {
                continue;
            }
            let path = dir.join(format!("{}.{}", row.version, format.extension()));
            std::fs::write(&path, format.render(&row.migration)).map_err(io(&path))?;
            written.push(path);
        }
        Ok(written)
    }

    /// pgroll's `baseline`: adopts the schema as it is as version `version`.
    /// Writes `<dir>/<version>.yaml` (or `.json`), one `sql` operation
    /// holding the schema's DDL from `pg_dump --schema-only` (so that
    /// `migrate` builds the same schema on an empty database), and records
    /// it as completed without running it. Errors while a migration is
    /// active, when the file exists, or when `pg_dump` cannot run.
    pub async fn baseline(
        &mut self,
        version: &str,
        dir: &Path,
        format: FileFormat,
    ) -> Result<PathBuf, MigrateError> {
        let schema = self.schema().to_string();
        if let Some(active) = migrations::active(&self.client, &schema).await? {
            return Err(MigrateError::Active {
                schema,
                version: active.version,
                phase: active.phase,
            });
        }
        let path = dir.join(format!("{version}.{}", format.extension()));
        if path.exists() {
            return Err(MigrateError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the baseline's file exists already; remove it or name another version",
                ),
            });
        }
        let ddl = schema_ddl(&self.settings.database_url, &schema)?;
        let migration = serde_json::json!({
            "operations": [{"sql": {"up": ddl}}]
        });
        let old_version = migrations::current_version(&self.client, &schema).await?;
        let plan = Plan {
            version: version.to_string(),
            version_schema: names::version_schema(&schema, version),
            old_version_schema: names::version_schema(&schema, &old_version),
            old_version,
            start: Vec::new(),
            verify: Vec::new(),
            agreements: Vec::new(),
            complete: Vec::new(),
            rollback: Vec::new(),
        };
        let plan_json = serde_json::to_value(&plan).expect("plans serialize");
        let steps: Vec<(Action, Vec<serde_json::Value>)> =
            Action::ALL.into_iter().map(|a| (a, Vec::new())).collect();
        let tx = self.client.transaction().await?;
        migrations::record(
            &tx,
            &schema,
            &NewMigration {
                version,
                parent: &plan.old_version,
                plan: &plan_json,
                migration: &migration,
                steps: &steps,
            },
        )
        .await?;
        migrations::set_phase(&tx, &schema, version, Phase::Completed).await?;
        std::fs::create_dir_all(dir).map_err(|source| MigrateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        std::fs::write(&path, format.render(&migration)).map_err(|source| MigrateError::Io {
            path: path.clone(),
            source,
        })?;
        tx.commit().await?;
        Ok(path)
    }
}

/// `schema`'s DDL as `pg_dump --schema-only` prints it (no owners, no
/// privileges, without psql's `\restrict` lines; `CREATE SCHEMA` made
/// `IF NOT EXISTS` and its empty search_path local to the replay), from
/// the `pg_dump` on the PATH or beside the newest installed server.
fn schema_ddl(url: &str, schema: &str) -> Result<String, MigrateError> {
    let candidates = [
        Some(PathBuf::from("pg_dump")),
        crate::cluster::find_bindir()
            .ok()
            .map(|d| d.join("pg_dump")),
    ];
    let mut last_error = None;
    for program in candidates.into_iter().flatten() {
        let out = std::process::Command::new(&program)
            .args([
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                "--schema",
                schema,
            ])
            .args(["--dbname", url])
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let create = format!("CREATE SCHEMA {};", crate::quote::ident(schema));
                return Ok(text
                    .lines()
                    .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
                    .map(|l| {
                        // Replayed on a database that has the schema (public),
                        // and without leaving the migrator's session with an
                        // empty search_path.
                        if l == create || l == format!("CREATE SCHEMA {schema};") {
                            l.replacen("CREATE SCHEMA", "CREATE SCHEMA IF NOT EXISTS", 1)
                        } else {
                            l.replace(
                                "set_config('search_path', '', false)",
                                "set_config('search_path', '', true)",
                            )
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
            Ok(out) => {
                last_error = Some(String::from_utf8_lossy(&out.stderr).trim().to_string());
            }
            Err(e) => last_error = Some(format!("{}: {e}", program.display())),
        }
    }
    Err(MigrateError::Baseline {
        reason: last_error.unwrap_or_default(),
    })
}
