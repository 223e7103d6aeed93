//! The migrator's commands: each connects (taking the migration lock), runs
//! one engine call, releases the lock and prints what happened.

use super::config::{migrate_database_url, resolve_migrate};
use super::{Command, DbArgs, Latest, render};
use crate::migrate::engine::{Check, FileFormat, Migrator, Pinned, Settings};
use crate::migrate::format;
use crate::migrate::lint::{self, Finding, Level};

impl DbArgs {
    /// Connects with the settings these arguments resolve to.
    async fn connect(&self) -> anyhow::Result<Migrator> {
        self.connect_with(|_| {}).await
    }

    /// Connects with the settings these arguments resolve to, as `adjust`
    /// changes them (a command's own flags).
    async fn connect_with(&self, adjust: impl FnOnce(&mut Settings)) -> anyhow::Result<Migrator> {
        let mut settings = resolve_migrate(&self.settings, self.config.as_deref())?;
        adjust(&mut settings);
        Ok(Migrator::connect(settings).await?)
    }
}

fn pinned(force: bool) -> Pinned {
    if force { Pinned::End } else { Pinned::Refuse }
}

/// Runs one migrator command to completion.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init(db) => {
            db.connect().await?.close().await?;
            println!("the pgshift state schema is ready");
        }
        Command::Start {
            file,
            complete,
            allow_unsafe,
            pass_through_views,
            db,
        } => {
            let mut m = db
                .connect_with(|s| {
                    s.allow_unsafe = allow_unsafe;
                    s.pass_through_views = pass_through_views;
                })
                .await?;
            m.start(&file).await?;
            if complete {
                m.complete(Pinned::Refuse).await?;
            }
            m.close().await?;
        }
        Command::Complete {
            force,
            skip_verify,
            db,
        } => {
            let check = if skip_verify {
                Check::Skip
            } else {
                Check::Verify
            };
            let mut m = db.connect().await?;
            m.complete_checked(pinned(force), check).await?;
            m.close().await?;
        }
        Command::Verify(db) => {
            let m = db.connect().await?;
            let reports = m.verify().await?;
            m.close().await?;
            for r in &reports {
                println!("{r}");
            }
            if reports.iter().any(|r| r.mismatched > 0) {
                anyhow::bail!(
                    "rows disagree between the two versions; `pgshift complete` will refuse until they are written again through either version"
                );
            }
            if reports.is_empty() {
                println!("nothing to verify: this migration duplicates no column");
            }
        }
        Command::Rollback { force, db } => {
            let mut m = db.connect().await?;
            m.rollback(pinned(force)).await?;
            m.close().await?;
        }
        Command::Status { json, db } => {
            let m = db.connect().await?;
            let status = m.status().await?;
            m.close().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::status(&status));
            }
        }
        Command::Migrate {
            dir,
            complete,
            expect_one,
            pass_through_views,
            db,
        } => {
            let mut m = db
                .connect_with(|s| s.pass_through_views = pass_through_views)
                .await?;
            let applied = m.migrate(&dir, complete, expect_one).await?;
            m.close().await?;
            if applied.is_empty() {
                println!("no migration of {} is pending", dir.display());
            }
            for a in applied {
                if a.completed {
                    println!("{}: completed", a.version);
                } else {
                    println!(
                        "{}: started and left active; run `pgshift complete` once the old version's clients are gone",
                        a.version
                    );
                }
            }
        }
        Command::Pull { dir, json, db } => {
            let m = db.connect().await?;
            let written = m.pull(&dir, file_format(json)).await?;
            m.close().await?;
            println!("wrote {} file(s) to {}", written.len(), dir.display());
            for path in written {
                println!("  {}", path.display());
            }
        }
        Command::Baseline {
            version,
            dir,
            json,
            yes: _,
            db,
        } => {
            let mut m = db.connect().await?;
            let path = m.baseline(&version, &dir, file_format(json)).await?;
            m.close().await?;
            println!(
                "{version} is the current version; its schema is in {}",
                path.display()
            );
        }
        Command::Pin { route, version, db } => {
            let m = db.connect().await?;
            m.pin(&route, &version).await?;
            m.close().await?;
            println!("route {route} is pinned to {version}; new sessions of it get that version");
        }
        Command::Routes(db) => {
            let m = db.connect().await?;
            let routes = m.routes().await?;
            m.close().await?;
            if routes.is_empty() {
                println!("no route is pinned; every route follows the default");
            }
            for (route, version) in routes {
                println!("{route}\t{version}");
            }
        }
        Command::Plan { file, db } => {
            let migration = format::load(&file)?;
            let m = db.connect().await?;
            let plan = m.plan(&file.display().to_string(), &migration).await?;
            m.close().await?;
            print!("{}", render::plan(&plan));
        }
        Command::Validate { file, db } => validate(&file, &db).await?,
        Command::Lint { files } => lint_files(&files)?,
        Command::Latest { what, db } => {
            let m = db.connect().await?;
            let (version, version_schema) = m.latest().await?;
            m.close().await?;
            let settings = resolve_migrate(&db.settings, db.config.as_deref())?;
            println!(
                "{}",
                match what {
                    Latest::Schema => version_schema,
                    Latest::Migration => version,
                    Latest::Url => latest_url(
                        &settings.database_url,
                        &version,
                        &version_schema,
                        &settings.schema
                    ),
                }
            );
        }
        Command::Proxy(_) => unreachable!("the proxy runs on a runtime of its own"),
    }
    Ok(())
}

/// Checks `file` against the schema and, when a database is given, against
/// the live catalog.
async fn validate(file: &std::path::Path, db: &DbArgs) -> anyhow::Result<()> {
    let migration = format::load(file)?;
    let findings = lint::lint_migration(&migration);
    report(&file.display().to_string(), &findings)?;
    if migrate_database_url(&db.settings, db.config.as_deref())?.is_none() {
        println!(
            "{}: valid (pass --database-url to check it against the live catalog too)",
            file.display()
        );
        return Ok(());
    }
    let m = db.connect().await?;
    m.plan(&file.display().to_string(), &migration).await?;
    m.close().await?;
    println!(
        "{}: valid, and applies to the live database",
        file.display()
    );
    Ok(())
}

/// Lints each file: `.sql` as a plain SQL migration, anything else as a
/// migration file. Errors when any file has an error-level finding.
fn lint_files(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let findings = if file.extension().is_some_and(|e| e == "sql") {
            let sql = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
            lint::lint_sql_file(&name, &sql)
        } else {
            lint::lint_migration(&format::load(file)?)
        };
        if report(&name, &findings).is_err() {
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "lint found errors in {}; use the operation each names (`pgshift start --allow-unsafe` runs a migration file anyway)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Prints `findings` of `file` and a count; errors when one is an error.
fn report(file: &str, findings: &[Finding]) -> anyhow::Result<()> {
    for f in findings {
        if f.at.starts_with(file) {
            println!("{f}");
        } else {
            println!("{file}: {f}");
        }
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings.len() - errors;
    println!("{file}: lint: {errors} error(s), {warnings} warning(s)");
    if errors > 0 {
        anyhow::bail!("{file}: lint found {errors} error(s)");
    }
    Ok(())
}

/// `url` with an `options` parameter that asks for `version`: its
/// `pgshift.version`, and a search_path headed by its version schema (what
/// a connection straight to Postgres needs; the proxy adds it itself),
/// then the physical `schema`.
fn latest_url(url: &str, version: &str, version_schema: &str, schema: &str) -> String {
    let options = format!(
        "-c pgshift.version={version} -c search_path={},{}",
        crate::quote::ident(version_schema),
        crate::quote::ident(schema)
    );
    let encoded: String = url::form_urlencoded::byte_serialize(options.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options={encoded}")
}

/// The format `pull` and `baseline` write: YAML, as pgroll's, or JSON.
fn file_format(json: bool) -> FileFormat {
    if json {
        FileFormat::Json
    } else {
        FileFormat::Yaml
    }
}
