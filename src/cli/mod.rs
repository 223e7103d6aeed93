//! The command line: clap definitions of every subcommand (here), the
//! layering of settings from flags, environment and file (`config`), the
//! proxy's startup (`proxy`), the migrator's commands (`migrate`) and what
//! they print (`render`).

pub mod config;
mod migrate;
mod proxy;
mod render;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::telemetry::{self, LogFormat};
use config::{MigrateSettings, ProxySettings};

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
        /// Start even when lint finds errors in the file
        #[arg(long)]
        allow_unsafe: bool,
        /// Give both versions' schemas a view of every table, untouched
        /// ones included, as pgroll's (for clients whose search_path is a
        /// version schema alone; see README)
        #[arg(long)]
        pass_through_views: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Complete the active migration: verify, then contract
    Complete {
        /// End the sessions still pinned to the old version instead of refusing
        #[arg(long)]
        force: bool,
        /// Contract without checking that every row agrees between the
        /// two shapes (the new version's values are kept)
        #[arg(long)]
        skip_verify: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check that every row of every converted column agrees between the
    /// two versions' shapes (complete does this first); exits 1 on a mismatch
    Verify(DbArgs),
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
    /// Apply, in name order, every migration file in DIR not yet
    /// completed: each is started and completed, except the last, which is
    /// left active (as pgroll's migrate) unless --complete
    Migrate {
        dir: PathBuf,
        /// Complete the last migration too
        #[arg(long)]
        complete: bool,
        /// Fail, changing nothing, unless exactly one migration is pending
        #[arg(long)]
        expect_one: bool,
        /// As start's: a view of every table in both versions' schemas
        #[arg(long)]
        pass_through_views: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write the migration history (completed and active migrations) that
    /// DIR lacks to DIR, one file per version, as pgroll's pull
    Pull {
        dir: PathBuf,
        /// Write JSON instead of YAML
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Adopt the schema as it is as version VERSION: write DIR/VERSION.yaml
    /// (one sql operation with the schema's DDL from pg_dump) and record it
    /// as completed without running it, as pgroll's baseline
    Baseline {
        version: String,
        dir: PathBuf,
        /// Write JSON instead of YAML
        #[arg(long)]
        json: bool,
        /// Accepted for pgroll's scripts; pgshift does not prompt
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Lint migration files (pgroll JSON/YAML, or plain .sql as Flyway,
    /// Alembic or Rails write them) for DDL that blocks or breaks clients;
    /// exits 1 on an error-level finding
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the latest version, as pgroll's `latest` does: its version
    /// schema, its name, or a connection URL that asks for it
    Latest {
        #[arg(value_enum)]
        what: Latest,
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

/// What `pgshift latest` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Latest {
    /// The latest version's schema (`public_<version>`)
    Schema,
    /// The latest migration's name (its version)
    Migration,
    /// The database URL with `options` that ask for the latest version
    /// (`pgshift.version`, and the search_path a direct connection needs)
    Url,
}

/// Settings every migration command takes: a config file and the
/// migrator's settings ([`MigrateSettings`]), layered by
/// [`config::resolve_migrate`].
#[derive(Debug, Args)]
pub struct DbArgs {
    /// TOML config file; its [migrate] table may set any of these settings
    #[arg(long, short = 'c', env = "PGSHIFT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: MigrateSettings,
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
        Command::Proxy(args) => proxy::run(args),
        command => {
            telemetry::init(LogFormat::Text);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(migrate::run(command))
        }
    }
}

#[cfg(test)]
mod tests;
