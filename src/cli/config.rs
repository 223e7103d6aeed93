//! Settings as they arrive from their sources: command-line flags,
//! `PGSHIFT_*` environment variables and a TOML file, layered in that order
//! of precedence over built-in defaults, for the proxy and the migrator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::migrate::engine::Settings;
use crate::net::tls::TlsFiles;
use crate::net::{UpstreamConfig, UrlError};
use crate::proxy::config::ProxyConfig;
use crate::telemetry::LogFormat;

/// A configuration problem, with the setting it concerns and what to change.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(
        "no database given: pass --database-url, set PGSHIFT_DATABASE_URL, or set database_url in the config file's [migrate] table"
    )]
    NoDatabase,
    #[error("setting `{setting}` = {value:?} is not valid: {reason}")]
    Invalid {
        setting: &'static str,
        value: String,
        reason: String,
    },
}

/// Layers the proxy's sources: each field of `cli` (flags, or their
/// `PGSHIFT_*` environment variables, which clap has already merged) wins
/// over the file's `[proxy]` table, and the file wins over the defaults of
/// [`ProxyConfig::new`]. Errors name the setting and what to write instead.
pub fn resolve_proxy(cli: &ProxySettings, file: Option<&Path>) -> Result<ProxyConfig, ConfigError> {
    let from_file = FileConfig::load_or_default(file)?;
    let merged = cli.clone().or(from_file.proxy);
    let listen = listeners(merged.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let upstream = merged
        .upstream
        .as_deref()
        .map(UpstreamConfig::from_url)
        .transpose()?;
    let mut config = ProxyConfig::new(listen[0], upstream);
    config.listen = listen;
    config.tls = tls_files(merged.tls_cert, merged.tls_key)?;
    let timeouts = [
        (
            "startup_timeout",
            merged.startup_timeout,
            &mut config.startup_timeout,
        ),
        (
            "message_timeout",
            merged.message_timeout,
            &mut config.message_timeout,
        ),
        (
            "connect_timeout",
            merged.connect_timeout,
            &mut config.connect_timeout,
        ),
        (
            "drain_timeout",
            merged.drain_timeout,
            &mut config.drain_timeout,
        ),
        (
            "server_idle_timeout",
            merged.server_idle_timeout,
            &mut config.pool.server_idle_timeout,
        ),
        (
            "server_lifetime",
            merged.server_lifetime,
            &mut config.pool.server_lifetime,
        ),
        (
            "query_wait_timeout",
            merged.query_wait_timeout,
            &mut config.pool.query_wait_timeout,
        ),
    ];
    for (setting, raw, value) in timeouts {
        if let Some(raw) = raw {
            *value = duration(setting, &raw)?;
        }
    }
    config.max_clients = merged.max_clients.unwrap_or(config.max_clients);
    config.max_message_length = merged
        .max_message_length
        .unwrap_or(config.max_message_length);
    config.max_rewrite_size = merged.max_rewrite_size.unwrap_or(config.max_rewrite_size);
    config.log_format = merged.log_format.unwrap_or(config.log_format);
    config.workers = merged.workers.unwrap_or(config.workers);
    config.schema = merged.schema.unwrap_or(config.schema);
    config.admin_users = merged
        .admin_users
        .iter()
        .flat_map(|users| users.split(','))
        .map(|user| user.trim().to_string())
        .filter(|user| !user.is_empty())
        .collect();
    config.routes = from_file.routes;
    if let Some(mode) = merged.pool_mode {
        config.pool.mode = mode.parse().map_err(|reason| ConfigError::Invalid {
            setting: "pool_mode",
            value: mode.clone(),
            reason,
        })?;
    }
    config.pool.size = merged.pool_size.unwrap_or(config.pool.size);
    config.pool.min_size = merged.min_pool_size.unwrap_or(config.pool.min_size);
    config.pool.max_prepared_statements = merged
        .max_prepared_statements
        .unwrap_or(config.pool.max_prepared_statements);
    if let Some(raw) = merged.metrics_listen {
        config.metrics_listen = Some(raw.trim().parse().map_err(|e| ConfigError::Invalid {
            setting: "metrics_listen",
            value: raw.clone(),
            reason: format!("{e}; expected HOST:PORT such as 127.0.0.1:9187"),
        })?);
    }
    at_least("pool_size", config.pool.size, 1, "")?;
    at_least(
        "max_prepared_statements",
        config.pool.max_prepared_statements,
        1,
        "",
    )?;
    if config.pool.min_size > config.pool.size {
        return Err(ConfigError::Invalid {
            setting: "min_pool_size",
            value: config.pool.min_size.to_string(),
            reason: format!(
                "it exceeds pool_size ({}); lower min_pool_size or raise pool_size",
                config.pool.size
            ),
        });
    }
    at_least("max_clients", config.max_clients, 1, "")?;
    at_least(
        "max_message_length",
        config.max_message_length,
        1024,
        " bytes",
    )?;
    at_least("max_rewrite_size", config.max_rewrite_size, 1024, " bytes")?;
    Ok(config)
}

/// Where the proxy listens when no source says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6432";

/// The listener addresses in `raw`, separated by commas.
fn listeners(raw: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    raw.split(',')
        .map(|one| {
            one.trim().parse().map_err(|e| ConfigError::Invalid {
                setting: "listen",
                value: raw.to_string(),
                reason: format!(
                    "{e}; expected HOST:PORT such as 127.0.0.1:6432, or several separated by commas"
                ),
            })
        })
        .collect()
}

/// The client-side TLS files, which come as a pair or not at all.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (cert, _) => Err(ConfigError::Invalid {
            setting: if cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            },
            value: String::new(),
            reason: "tls_cert and tls_key must be given together".into(),
        }),
    }
}

/// Parses a duration such as `500ms` or `2s` for `setting`.
fn duration(setting: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw).map_err(|e| ConfigError::Invalid {
        setting,
        value: raw.to_string(),
        reason: format!("{e}; write a duration such as 500ms, 10s or 2m"),
    })
}

/// Refuses `value` of `setting` below `min` (`unit` follows the number).
fn at_least(
    setting: &'static str,
    value: usize,
    min: usize,
    unit: &str,
) -> Result<(), ConfigError> {
    if value >= min {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        setting,
        value: value.to_string(),
        reason: format!("must be at least {min}{unit}"),
    })
}

/// Proxy settings as they arrive from one source; every field is optional so
/// that sources can be layered. Used as clap arguments (with `PGSHIFT_*`
/// environment fallbacks) and as the `[proxy]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// Address to listen on, or several separated by commas (routes can match
    /// the port) [default: 127.0.0.1:6432]
    #[arg(long, env = "PGSHIFT_LISTEN")]
    pub listen: Option<String>,
    /// Upstream Postgres URL; without one, a throwaway local cluster is started
    #[arg(long, env = "PGSHIFT_UPSTREAM")]
    pub upstream: Option<String>,
    /// PEM certificate chain presented to clients that ask for TLS
    #[arg(long, env = "PGSHIFT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "PGSHIFT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Most client sessions at once [default: 1000]
    #[arg(long, env = "PGSHIFT_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// Time allowed for the startup packet and authentication [default: 10s]
    #[arg(long, env = "PGSHIFT_STARTUP_TIMEOUT")]
    pub startup_timeout: Option<String>,
    /// Time allowed to finish a message once begun [default: 60s]
    #[arg(long, env = "PGSHIFT_MESSAGE_TIMEOUT")]
    pub message_timeout: Option<String>,
    /// Longest client message in bytes [default: 268435456]
    #[arg(long, env = "PGSHIFT_MAX_MESSAGE_LENGTH")]
    pub max_message_length: Option<usize>,
    /// Longest statement text held for a rewrite during a migration, in
    /// bytes; a longer one that may need a rewrite gets SQLSTATE 54000
    /// [default: 16777216]
    #[arg(long, env = "PGSHIFT_MAX_REWRITE_SIZE")]
    pub max_rewrite_size: Option<usize>,
    /// Time allowed to connect to the upstream [default: 5s]
    #[arg(long, env = "PGSHIFT_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<String>,
    /// On SIGTERM/SIGINT, time busy sessions get before they are closed [default: 30s]
    #[arg(long, env = "PGSHIFT_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// Log format
    #[arg(long, env = "PGSHIFT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Session threads (each runs its sessions on one core); 0 means one per core [default: 0]
    #[arg(long, env = "PGSHIFT_WORKERS")]
    pub workers: Option<usize>,
    /// Schema whose versions sessions are routed to [default: public]
    #[arg(long, env = "PGSHIFT_SCHEMA")]
    pub schema: Option<String>,
    /// Postgres roles allowed on the admin console (database pgshift),
    /// separated by commas [default: none]
    #[arg(long, env = "PGSHIFT_ADMIN_USERS")]
    pub admin_users: Option<String>,
    /// session: a server connection per client; transaction: one per
    /// transaction, from a pool per (database, user, version) [default: session]
    #[arg(long, env = "PGSHIFT_POOL_MODE")]
    pub pool_mode: Option<String>,
    /// Most server connections per pool in transaction mode [default: 20]
    #[arg(long, env = "PGSHIFT_POOL_SIZE")]
    pub pool_size: Option<usize>,
    /// Server connections a pool keeps however long they idle [default: 0]
    #[arg(long, env = "PGSHIFT_MIN_POOL_SIZE")]
    pub min_pool_size: Option<usize>,
    /// Close a pooled server connection idle this long [default: 600s]
    #[arg(long, env = "PGSHIFT_SERVER_IDLE_TIMEOUT")]
    pub server_idle_timeout: Option<String>,
    /// Replace a pooled server connection this old with the next login's [default: 3600s]
    #[arg(long, env = "PGSHIFT_SERVER_LIFETIME")]
    pub server_lifetime: Option<String>,
    /// How long a client waits for a free server connection before it
    /// gets SQLSTATE 53300 [default: 120s]
    #[arg(long, env = "PGSHIFT_QUERY_WAIT_TIMEOUT")]
    pub query_wait_timeout: Option<String>,
    /// Prepared statements kept per pooled server connection [default: 200]
    #[arg(long, env = "PGSHIFT_MAX_PREPARED_STATEMENTS")]
    pub max_prepared_statements: Option<usize>,
    /// Serve OpenMetrics (Prometheus) text at http://ADDR/metrics [default: off]
    #[arg(long, env = "PGSHIFT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

impl ProxySettings {
    /// Field by field, `self` where set, else `other`.
    fn or(self, other: ProxySettings) -> ProxySettings {
        ProxySettings {
            listen: self.listen.or(other.listen),
            upstream: self.upstream.or(other.upstream),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            max_clients: self.max_clients.or(other.max_clients),
            startup_timeout: self.startup_timeout.or(other.startup_timeout),
            message_timeout: self.message_timeout.or(other.message_timeout),
            max_message_length: self.max_message_length.or(other.max_message_length),
            max_rewrite_size: self.max_rewrite_size.or(other.max_rewrite_size),
            connect_timeout: self.connect_timeout.or(other.connect_timeout),
            drain_timeout: self.drain_timeout.or(other.drain_timeout),
            log_format: self.log_format.or(other.log_format),
            workers: self.workers.or(other.workers),
            schema: self.schema.or(other.schema),
            admin_users: self.admin_users.or(other.admin_users),
            pool_mode: self.pool_mode.or(other.pool_mode),
            pool_size: self.pool_size.or(other.pool_size),
            min_pool_size: self.min_pool_size.or(other.min_pool_size),
            server_idle_timeout: self.server_idle_timeout.or(other.server_idle_timeout),
            server_lifetime: self.server_lifetime.or(other.server_lifetime),
            query_wait_timeout: self.query_wait_timeout.or(other.query_wait_timeout),
            max_prepared_statements: self
                .max_prepared_statements
                .or(other.max_prepared_statements),
            metrics_listen: self.metrics_listen.or(other.metrics_listen),
        }
    }
}

/// Migrator settings as they arrive from one source; every field is
/// optional so that sources can be layered, as [`ProxySettings`]. Used as
/// clap arguments (with `PGSHIFT_*` environment fallbacks) and as the
/// `[migrate]` table of the TOML file. The defaults are
/// [`Settings::new`]'s.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct MigrateSettings {
    /// The database to migrate (a postgres:// URL)
    #[arg(long, env = "PGSHIFT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The schema migrations apply to [default: public]
    #[arg(long, env = "PGSHIFT_SCHEMA")]
    pub schema: Option<String>,
    /// lock_timeout for every DDL statement and backfill batch [default: 500ms]
    #[arg(long, env = "PGSHIFT_LOCK_TIMEOUT")]
    pub lock_timeout: Option<String>,
    /// The most rows in one backfill batch (batches adapt toward
    /// --backfill-batch-time) [default: 1000]
    #[arg(long, env = "PGSHIFT_BACKFILL_BATCH_SIZE")]
    pub backfill_batch_size: Option<i64>,
    /// A fixed pace: the time each backfill batch aims at, measured on
    /// the server (without this or --backfill-batch-delay the pace adapts
    /// to client latency, starting here) [default: 500us]
    #[arg(long, env = "PGSHIFT_BACKFILL_BATCH_TIME")]
    pub backfill_batch_time: Option<String>,
    /// A fixed pace: the pause between backfill batches (see
    /// --backfill-batch-time) [default: 2ms]
    #[arg(long, env = "PGSHIFT_BACKFILL_BATCH_DELAY")]
    pub backfill_batch_delay: Option<String>,
    /// How long start waits for the old version's sessions to move onto its
    /// views before it changes any table [default: 30s]
    #[arg(long, env = "PGSHIFT_SESSION_MOVE_TIMEOUT")]
    pub session_move_timeout: Option<String>,
    /// How long one DDL step keeps retrying behind locks it cannot get
    /// before the command stops, naming the sessions that block it
    /// [default: 10m]
    #[arg(long, env = "PGSHIFT_DDL_TIMEOUT")]
    pub ddl_timeout: Option<String>,
    /// How long start waits for every live proxy to serve the new version
    /// [default: 10s]
    #[arg(long, env = "PGSHIFT_PROXY_TIMEOUT")]
    pub proxy_timeout: Option<String>,
    /// The backfill pauses while a streaming replica lags more than this,
    /// and resumes once it falls back under it; 0 turns the watch off
    /// [default: 1s]
    #[arg(long, env = "PGSHIFT_MAX_REPLICA_LAG")]
    pub max_replica_lag: Option<String>,
    /// The adaptive backfill keeps clients' p99 (as the proxies measure
    /// it) within this factor of its level before the backfill
    /// [default: 2]
    #[arg(long, env = "PGSHIFT_MAX_LATENCY_FACTOR")]
    pub max_latency_factor: Option<f64>,
}

impl MigrateSettings {
    /// Field by field, `self` where set, else `other`.
    fn or(self, other: MigrateSettings) -> MigrateSettings {
        MigrateSettings {
            database_url: self.database_url.or(other.database_url),
            schema: self.schema.or(other.schema),
            lock_timeout: self.lock_timeout.or(other.lock_timeout),
            backfill_batch_size: self.backfill_batch_size.or(other.backfill_batch_size),
            backfill_batch_time: self.backfill_batch_time.or(other.backfill_batch_time),
            backfill_batch_delay: self.backfill_batch_delay.or(other.backfill_batch_delay),
            session_move_timeout: self.session_move_timeout.or(other.session_move_timeout),
            ddl_timeout: self.ddl_timeout.or(other.ddl_timeout),
            proxy_timeout: self.proxy_timeout.or(other.proxy_timeout),
            max_replica_lag: self.max_replica_lag.or(other.max_replica_lag),
            max_latency_factor: self.max_latency_factor.or(other.max_latency_factor),
        }
    }
}

/// The database URL the migrator would use, from `cli` or the file's
/// `[migrate]` table; `None` when neither gives one.
pub fn migrate_database_url(
    cli: &MigrateSettings,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    let from_file = FileConfig::load_or_default(file)?;
    Ok(cli.clone().or(from_file.migrate).database_url)
}

/// Layers the migrator's sources as [`resolve_proxy`] layers the proxy's:
/// `cli` (flags and environment), then the file's `[migrate]` table, then
/// [`Settings::new`]. Errors: no database URL anywhere, or a value that
/// does not parse, naming the setting.
pub fn resolve_migrate(
    cli: &MigrateSettings,
    file: Option<&Path>,
) -> Result<Settings, ConfigError> {
    let from_file = FileConfig::load_or_default(file)?;
    let merged = cli.clone().or(from_file.migrate);
    let database_url = merged.database_url.ok_or(ConfigError::NoDatabase)?;
    let mut settings = Settings::new(database_url);
    settings.schema = merged.schema.unwrap_or(settings.schema);
    if let Some(size) = merged.backfill_batch_size {
        settings.batch_size = size.max(1);
    }
    if let Some(factor) = merged.max_latency_factor {
        settings.max_latency_factor = factor.max(1.0);
    }
    settings.fixed_pace =
        merged.backfill_batch_time.is_some() || merged.backfill_batch_delay.is_some();
    let durations = [
        (
            "lock_timeout",
            merged.lock_timeout,
            &mut settings.lock_timeout,
        ),
        (
            "backfill_batch_time",
            merged.backfill_batch_time,
            &mut settings.batch_time,
        ),
        (
            "backfill_batch_delay",
            merged.backfill_batch_delay,
            &mut settings.batch_delay,
        ),
        (
            "session_move_timeout",
            merged.session_move_timeout,
            &mut settings.session_move_timeout,
        ),
        ("ddl_timeout", merged.ddl_timeout, &mut settings.ddl_timeout),
        (
            "proxy_timeout",
            merged.proxy_timeout,
            &mut settings.proxy_timeout,
        ),
        (
            "max_replica_lag",
            merged.max_replica_lag,
            &mut settings.max_replica_lag,
        ),
    ];
    for (setting, raw, value) in durations {
        if let Some(raw) = raw {
            *value = duration(setting, &raw)?;
        }
    }
    Ok(settings)
}

/// The TOML config file: a `[proxy]` table with the same keys as the
/// proxy's flags (`listen`, `upstream`, `tls_cert`, `max_clients`,
/// `startup_timeout`, ...), a `[migrate]` table with the migrator's
/// (`database_url`, `schema`, `lock_timeout`, `backfill_batch_size`, ...),
/// and `[[routes]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub migrate: MigrateSettings,
    /// `[[routes]]`: which clients belong to which named route.
    #[serde(default)]
    pub routes: Vec<crate::routing::RouteRule>,
}

impl FileConfig {
    /// Reads and parses `path`. Errors name the file and, from the TOML parser,
    /// the line and key at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// [`FileConfig::load`] when a file is given, else an empty config.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, ConfigError> {
        path.map_or_else(|| Ok(FileConfig::default()), FileConfig::load)
    }
}

#[cfg(test)]
mod tests;
