//! The command line: clap definitions of every subcommand and the code that
//! turns parsed arguments into a running proxy (runtime, throwaway cluster,
//! signals).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::cluster::{ClusterOptions, TempCluster};
use crate::config::{FileConfig, LogFormat, ProxyConfig, ProxySettings, UpstreamConfig};
use crate::migrate::engine::{Migrator, Settings};
use crate::migrate::format;
use crate::{proxy, telemetry};

/// pgshift: a Postgres proxy that runs zero-downtime schema migrations.
#[derive(Debug, Parser)]
#[command(name = "pgshift", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the wire-protocol proxy in front of Postgres (a throwaway local
    /// cluster when no upstream is given)
    Proxy(ProxyArgs),
    /// Create the pgshift state schema (idempotent; start does it too)
    Init(DbArgs),
    /// Start a migration: expand, install triggers, backfill
    Start {
        /// Migration file (.json, .yaml or .yml)
        file: PathBuf,
        /// Complete it right after starting
        #[arg(long)]
        complete: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Complete the active migration: verify, then contract
    Complete {
        /// End the sessions still pinned to the old version instead of refusing
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Roll back the active migration, leaving the schema as before start
    Rollback {
        /// End the sessions pinned to the new version instead of refusing
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show the active migration, its backfill progress and the history
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Apply, in name order, every migration file in DIR not yet completed
    Migrate {
        dir: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check a migration file against the schema and, with a database, the live catalog
    Validate {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Pin a route (from the proxies' [[routes]]) to a version
    Pin {
        route: String,
        version: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the routes' pins
    Routes(DbArgs),
    /// Print the SQL that start, complete and rollback would run
    Plan {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Settings every migration command takes.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// TOML config file; its [migrate] table may set database_url
    #[arg(long, short = 'c', env = "PGSHIFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The database to migrate
    #[arg(long, env = "PGSHIFT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The schema migrations apply to
    #[arg(long, env = "PGSHIFT_SCHEMA", default_value = "public")]
    pub schema: String,
    /// lock_timeout for every DDL statement and backfill batch
    #[arg(long, env = "PGSHIFT_LOCK_TIMEOUT", default_value = "500ms")]
    pub lock_timeout: String,
    /// The most rows in one backfill batch (batches adapt toward
    /// --backfill-batch-time)
    #[arg(long, env = "PGSHIFT_BACKFILL_BATCH_SIZE", default_value_t = 1000)]
    pub backfill_batch_size: i64,
    /// The time one backfill batch aims at, measured on the server;
    /// shorter batches disturb clients less
    #[arg(long, env = "PGSHIFT_BACKFILL_BATCH_TIME", default_value = "500us")]
    pub backfill_batch_time: String,
    /// Pause between backfill batches
    #[arg(long, env = "PGSHIFT_BACKFILL_BATCH_DELAY", default_value = "2ms")]
    pub backfill_batch_delay: String,
    /// How long start waits for the old version's sessions to move onto its
    /// views before it changes any table
    #[arg(long, env = "PGSHIFT_SESSION_MOVE_TIMEOUT", default_value = "30s")]
    pub session_move_timeout: String,
}

impl DbArgs {
    fn database_url(&self) -> anyhow::Result<Option<String>> {
        if let Some(url) = &self.database_url {
            return Ok(Some(url.clone()));
        }
        match &self.config {
            Some(path) => Ok(FileConfig::load(path)?.migrate.database_url),
            None => Ok(None),
        }
    }

    fn settings(&self) -> anyhow::Result<Settings> {
        let database_url = self.database_url()?.context(
            "no database given: pass --database-url, set PGSHIFT_DATABASE_URL, or set database_url in the config file's [migrate] table",
        )?;
        let duration = |name: &str, raw: &str| {
            humantime::parse_duration(raw)
                .with_context(|| format!("--{name} {raw:?}: write a duration such as 500ms or 2s"))
        };
        Ok(Settings {
            database_url,
            schema: self.schema.clone(),
            lock_timeout: duration("lock-timeout", &self.lock_timeout)?,
            batch_size: self.backfill_batch_size.max(1),
            batch_time: duration("backfill-batch-time", &self.backfill_batch_time)?,
            batch_delay: duration("backfill-batch-delay", &self.backfill_batch_delay)?,
            session_move_timeout: duration("session-move-timeout", &self.session_move_timeout)?,
        })
    }
}

/// Arguments of `pgshift proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// TOML config file with a [proxy] table
    #[arg(long, short = 'c', env = "PGSHIFT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: ProxySettings,
}

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Proxy(args) => run_proxy(args),
        Command::Validate { file, db } => {
            telemetry::init(LogFormat::Text);
            let migration = format::load(&file)?;
            if let Some(url) = db.database_url()? {
                let settings = Settings {
                    database_url: url,
                    ..db.settings()?
                };
                block_on(async {
                    let migrator = Migrator::connect(settings).await?;
                    migrator
                        .plan(&file.display().to_string(), &migration)
                        .await?;
                    anyhow::Ok(())
                })?;
                println!(
                    "{}: valid, and applies to the live database",
                    file.display()
                );
            } else {
                println!(
                    "{}: valid (pass --database-url to check it against the live catalog too)",
                    file.display()
                );
            }
            Ok(())
        }
        command => {
            telemetry::init(LogFormat::Text);
            block_on(run_migrator(command))
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

async fn run_migrator(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init(db) => {
            Migrator::connect(db.settings()?).await?.close().await?;
            println!("the pgshift state schema is ready");
        }
        Command::Start { file, complete, db } => {
            let mut m = Migrator::connect(db.settings()?).await?;
            m.start(&file, complete).await?;
            m.close().await?;
        }
        Command::Complete { force, db } => {
            let mut m = Migrator::connect(db.settings()?).await?;
            m.set_force(force);
            m.complete().await?;
            m.close().await?;
        }
        Command::Rollback { force, db } => {
            let mut m = Migrator::connect(db.settings()?).await?;
            m.set_force(force);
            m.rollback().await?;
            m.close().await?;
        }
        Command::Status { json, db } => {
            let m = Migrator::connect(db.settings()?).await?;
            let status = m.status().await?;
            m.close().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "schema {}: current version {}",
                    status.schema, status.current_version
                );
                match &status.active {
                    Some(a) => {
                        println!(
                            "active migration {} ({}), version schema {}, from {}",
                            a.version, a.phase, a.version_schema, a.old_version
                        );
                        for b in &a.backfill {
                            println!(
                                "  backfill {}: {} rows in {} batches{}",
                                b.table,
                                b.rows_done,
                                b.batches,
                                if b.done { ", done" } else { "" }
                            );
                        }
                    }
                    None => println!("no migration in progress"),
                }
                let mut per_version: std::collections::BTreeMap<&str, usize> = Default::default();
                for session in &status.sessions {
                    *per_version.entry(session.version.as_str()).or_default() += 1;
                }
                for (version, count) in per_version {
                    println!("  {count} live session(s) on version {version}");
                }
                for h in &status.history {
                    println!(
                        "  {} {} (from {}, {})",
                        h.version, h.phase, h.parent, h.updated_at
                    );
                }
            }
        }
        Command::Migrate { dir, db } => {
            let applied = Migrator::connect(db.settings()?)
                .await?
                .migrate(&dir)
                .await?;
            println!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
        }
        Command::Pin { route, version, db } => {
            let m = Migrator::connect(db.settings()?).await?;
            m.pin(&route, &version).await?;
            m.close().await?;
            println!("route {route} is pinned to {version}; new sessions of it get that version");
        }
        Command::Routes(db) => {
            let m = Migrator::connect(db.settings()?).await?;
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
            let m = Migrator::connect(db.settings()?).await?;
            let plan = m.plan(&file.display().to_string(), &migration).await?;
            m.close().await?;
            for (action, steps) in [
                ("start", &plan.start),
                ("complete", &plan.complete),
                ("rollback", &plan.rollback),
            ] {
                println!("-- {action}");
                for step in steps {
                    match step {
                        crate::migrate::plan::Step::Sql { sql } => println!("{sql};"),
                        crate::migrate::plan::Step::Concurrent { sql, .. } => {
                            println!("{sql};  -- outside a transaction")
                        }
                        crate::migrate::plan::Step::Backfill(spec) => println!(
                            "-- backfill {}.{} in batches over {}",
                            spec.schema,
                            spec.table,
                            if spec.key.is_empty() {
                                "ctid".to_string()
                            } else {
                                spec.key
                                    .iter()
                                    .map(|k| k.0.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    }
                }
            }
        }
        Command::Proxy(_) | Command::Validate { .. } => unreachable!("handled in run"),
    }
    Ok(())
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let mut config = ProxyConfig::resolve(&args.settings, args.config.as_deref())?;
    telemetry::init(config.log_format);
    // Kept alive until the proxy has drained; dropping it stops the cluster.
    let mut throwaway = None;
    if config.upstream.is_none() {
        let cluster = TempCluster::start(&ClusterOptions::default())
            .context("starting a throwaway Postgres (pass --upstream to use an existing one)")?;
        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.data_dir().display(),
            "started a throwaway Postgres cluster; it is removed when pgshift exits"
        );
        // The Unix socket: cheaper than loopback TCP for a local upstream.
        config.upstream = Some(UpstreamConfig::from_url(&cluster.socket_url("postgres"))?);
        throwaway = Some(cluster);
    }
    // Sessions run on session threads of their own (config.workers of
    // them); this runtime accepts and runs the control tasks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let listener =
                proxy::bind(*addr).with_context(|| format!("cannot listen on {addr}"))?;
            listeners.push(listener);
        }
        let addr = listeners[0].local_addr()?;
        let upstream = config.upstream.as_ref().expect("set above");
        let user = upstream.user.as_deref().unwrap_or("postgres");
        let dbname = upstream.dbname.as_deref().unwrap_or(user);
        tracing::info!(listen = %addr, upstream = %format!("{}:{}", upstream.host, upstream.port), "pgshift proxy is ready");
        // One write, and a closed stdout is no reason to stop serving:
        // println! would panic on EPIPE (say, under `pgshift proxy | head -1`).
        let banner = format!(
            "pgshift is listening on {addr}; connect with:\n  psql 'postgres://{user}@{addr}/{dbname}'\n"
        );
        let mut stdout = std::io::stdout().lock();
        let _ = std::io::Write::write_all(&mut stdout, banner.as_bytes()).and_then(|()| std::io::Write::flush(&mut stdout));
        drop(stdout);
        proxy::run(listeners, config, shutdown_signal()).await?;
        anyhow::Ok(())
    });
    drop(throwaway);
    result
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The migrator's flags default to the engine's own defaults, so that
    /// `pgshift start` and a `Settings::new` in code behave alike.
    #[test]
    fn migrator_flags_default_to_the_engine_defaults() {
        let cli = Cli::try_parse_from(["pgshift", "status", "--database-url", "postgres:///x"])
            .expect("parses");
        let Command::Status { db, .. } = cli.command else {
            panic!("parsed as another command");
        };
        let parsed = db.settings().expect("defaults are valid");
        let engine = Settings::new("postgres:///x".into());
        assert_eq!(parsed.lock_timeout, engine.lock_timeout);
        assert_eq!(parsed.batch_size, engine.batch_size);
        assert_eq!(parsed.batch_time, engine.batch_time);
        assert_eq!(parsed.batch_delay, engine.batch_delay);
        assert_eq!(parsed.session_move_timeout, engine.session_move_timeout);
        assert_eq!(parsed.schema, engine.schema);
    }
}
