//! Proxy settings: merged from command-line flags, `PGSHIFT_*` environment
//! variables and a TOML file, in that order of precedence, over built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

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
    #[error("setting `{setting}` = {value:?} is not valid: {reason}")]
    Invalid {
        setting: &'static str,
        value: String,
        reason: String,
    },
}

/// How upstream connections use TLS, with the meaning of libpq's `sslmode`
/// (PostgreSQL docs, "libpq: SSL Support", table "SSL Mode Descriptions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Try TLS and fall back to plain if the server refuses; no certificate check.
    Prefer,
    /// Require TLS; no certificate check.
    Require,
    /// Require TLS, check the chain against `sslrootcert` and the host name.
    VerifyFull,
}

/// Where the upstream Postgres is and how to reach it. Parsed from a
/// `postgres://user:password@host:port/dbname?sslmode=..&sslrootcert=..` URL.
/// As in libpq, a `host` that starts with `/` (in the URL's authority or as a
/// `host=` query parameter) is the directory of a Unix-domain socket, which
/// is cheaper than loopback TCP; TLS is never used on it.
///
/// Client sessions use only `host`, `port` and the TLS settings: the user and
/// database come from each client's own startup packet. `user`, `password` and
/// `dbname` are for pgshift's own connections to the database.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// A host name, an IP address, or a Unix-socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password: Debug output reaches logs.
        f.debug_struct("UpstreamConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

impl UpstreamConfig {
    /// Parses a `postgres://` or `postgresql://` URL.
    ///
    /// Errors: a URL that does not parse, another scheme, a missing host, an
    /// unknown `sslmode`, or `verify-full` without `sslrootcert`.
    pub fn from_url(raw: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "upstream",
            value: redact_url(raw),
            reason,
        };
        let url = url::Url::parse(raw)
            .map_err(|e| invalid(format!("{e}; expected postgres://user@host:port/dbname")))?;
        if url.scheme() != "postgres" && url.scheme() != "postgresql" {
            return Err(invalid(
                "the scheme must be postgres:// or postgresql://".into(),
            ));
        }
        let mut host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
        let mut port = url.port().unwrap_or(5432);
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let mut user = Some(url.username()).filter(|u| !u.is_empty()).map(decode);
        let mut password = url.password().map(decode);
        let mut dbname = Some(url.path().trim_start_matches('/'))
            .filter(|d| !d.is_empty())
            .map(decode);
        let mut sslmode = SslMode::Prefer;
        let mut sslrootcert = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => {
                    sslmode = match value.as_ref() {
                        "disable" => SslMode::Disable,
                        "prefer" | "allow" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(invalid(format!(
                                "sslmode={other} is not supported; use disable, prefer, require or verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" => sslrootcert = Some(PathBuf::from(value.as_ref())),
                "host" => host = Some(value.into_owned()),
                "user" => user = Some(value.into_owned()),
                "password" => password = Some(value.into_owned()),
                "dbname" => dbname = Some(value.into_owned()),
                "port" => {
                    port = value
                        .parse()
                        .map_err(|_| invalid(format!("port={value} is not a port number")))?
                }
                // Harmless libpq parameters that only matter to other clients.
                "application_name" | "connect_timeout" => {}
                other => {
                    return Err(invalid(format!(
                        "URL parameter `{other}` is not supported; supported: host, port, user, password, dbname, sslmode, sslrootcert"
                    )));
                }
            }
        }
        let host = host.ok_or_else(|| {
            invalid("the URL names no host; write postgres://host:port/db or postgres:///db?host=/socket/dir".into())
        })?;
        if sslmode == SslMode::VerifyFull && sslrootcert.is_none() {
            return Err(invalid(
                "sslmode=verify-full needs sslrootcert=/path/to/ca.pem to check the server's certificate".into(),
            ));
        }
        Ok(UpstreamConfig {
            host,
            port,
            user,
            password,
            dbname,
            sslmode,
            sslrootcert,
        })
    }
}

impl UpstreamConfig {
    /// The Unix-socket path (`<dir>/.s.PGSQL.<port>`) when `host` is a directory.
    pub fn unix_socket(&self) -> Option<PathBuf> {
        self.host
            .starts_with('/')
            .then(|| Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port)))
    }
}

/// Returns the URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

/// The certificate and key that the proxy presents to clients that ask for TLS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Fully resolved proxy settings. Build one with [`ProxyConfig::new`] in tests,
/// or [`ProxyConfig::resolve`] from the layered sources.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Addresses the client listeners bind to (at least one); routes can
    /// match the port a client came in on.
    pub listen: Vec<SocketAddr>,
    /// The Postgres that sessions are relayed to. `None` only before the CLI
    /// has started a throwaway cluster.
    pub upstream: Option<UpstreamConfig>,
    /// Client-side TLS; `None` answers every SSLRequest with 'N'.
    pub tls: Option<TlsFiles>,
    /// Most client sessions at once; more get SQLSTATE 53300.
    pub max_clients: usize,
    /// How long a new connection may take to send its startup packet and finish
    /// authentication; slower ones get SQLSTATE 08P01 and are closed.
    pub startup_timeout: Duration,
    /// How long a client may take to finish a message it has begun sending.
    pub message_timeout: Duration,
    /// Longest frontend message accepted, in bytes (type byte excluded).
    pub max_message_length: usize,
    /// How long to wait for an upstream TCP connection and its TLS handshake.
    pub connect_timeout: Duration,
    /// On SIGTERM/SIGINT, how long busy sessions may run before they are closed.
    pub drain_timeout: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// Session threads, each a single-threaded runtime that sessions are
    /// dealt to in turn; 0 means one per core.
    pub workers: usize,
    /// The physical schema whose versions sessions are routed to.
    pub schema: String,
    /// Route rules (`[[routes]]` in the config file), first match wins.
    pub routes: Vec<crate::routing::RouteRule>,
    /// Postgres roles that may open the admin console (database `pgshift`);
    /// Postgres itself checks their password.
    pub admin_users: Vec<String>,
}

impl ProxyConfig {
    /// Settings with every default and the given listener and upstream.
    pub fn new(listen: SocketAddr, upstream: Option<UpstreamConfig>) -> Self {
        ProxyConfig {
            listen: vec![listen],
            upstream,
            tls: None,
            max_clients: 1000,
            startup_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(60),
            max_message_length: 256 << 20,
            connect_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            log_format: LogFormat::Text,
            workers: 0,
            schema: "public".to_string(),
            routes: Vec::new(),
            admin_users: Vec::new(),
        }
    }

    /// Layers the sources: each field of `cli` (flags, or their `PGSHIFT_*`
    /// environment variables, which clap has already merged) wins over the file,
    /// and the file wins over the defaults.
    pub fn resolve(cli: &ProxySettings, file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_file = match file {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let routes = from_file.routes;
        let merged = cli.clone().or(from_file.proxy);
        let listen_raw = merged
            .listen
            .unwrap_or_else(|| "127.0.0.1:6432".to_string());
        let listen = listen_raw
            .split(',')
            .map(|one| {
                one.trim().parse().map_err(|e| ConfigError::Invalid {
                    setting: "listen",
                    value: listen_raw.clone(),
                    reason: format!(
                        "{e}; expected HOST:PORT such as 127.0.0.1:6432, or several separated by commas"
                    ),
                })
            })
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        let upstream = merged
            .upstream
            .as_deref()
            .map(UpstreamConfig::from_url)
            .transpose()?;
        let mut config = ProxyConfig::new(listen[0], upstream);
        config.listen = listen;
        config.tls = match (merged.tls_cert, merged.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (cert, _) => {
                return Err(ConfigError::Invalid {
                    setting: if cert.is_some() {
                        "tls_key"
                    } else {
                        "tls_cert"
                    },
                    value: String::new(),
                    reason: "tls_cert and tls_key must be given together".into(),
                });
            }
        };
        let duration = |setting: &'static str, raw: Option<String>, default: Duration| match raw {
            None => Ok(default),
            Some(raw) => humantime::parse_duration(&raw).map_err(|e| ConfigError::Invalid {
                setting,
                value: raw,
                reason: format!("{e}; write a duration such as 500ms, 10s or 2m"),
            }),
        };
        config.startup_timeout = duration(
            "startup_timeout",
            merged.startup_timeout,
            config.startup_timeout,
        )?;
        config.message_timeout = duration(
            "message_timeout",
            merged.message_timeout,
            config.message_timeout,
        )?;
        config.connect_timeout = duration(
            "connect_timeout",
            merged.connect_timeout,
            config.connect_timeout,
        )?;
        config.drain_timeout =
            duration("drain_timeout", merged.drain_timeout, config.drain_timeout)?;
        config.max_clients = merged.max_clients.unwrap_or(config.max_clients);
        config.max_message_length = merged
            .max_message_length
            .unwrap_or(config.max_message_length);
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
        config.routes = routes;
        if config.max_clients == 0 {
            return Err(ConfigError::Invalid {
                setting: "max_clients",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if config.max_message_length < 1024 {
            return Err(ConfigError::Invalid {
                setting: "max_message_length",
                value: config.max_message_length.to_string(),
                reason: "must be at least 1024 bytes".into(),
            });
        }
        Ok(config)
    }
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
            connect_timeout: self.connect_timeout.or(other.connect_timeout),
            drain_timeout: self.drain_timeout.or(other.drain_timeout),
            log_format: self.log_format.or(other.log_format),
            workers: self.workers.or(other.workers),
            schema: self.schema.or(other.schema),
            admin_users: self.admin_users.or(other.admin_users),
        }
    }
}

/// The TOML config file: a `[proxy]` table with the same keys as the flags
/// (`listen`, `upstream`, `tls_cert`, `max_clients`, `startup_timeout`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub migrate: MigrateFileSettings,
    /// `[[routes]]`: which clients belong to which named route.
    #[serde(default)]
    pub routes: Vec<crate::routing::RouteRule>,
}

/// The `[migrate]` table of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateFileSettings {
    /// The database migration commands connect to.
    pub database_url: Option<String>,
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
}

#[cfg(test)]
mod tests;
