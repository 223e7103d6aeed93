//! The proxy's resolved settings: every value a running proxy reads, with
//! its default. The command line layers its sources (flags, environment,
//! file) into one of these.

use std::net::SocketAddr;
use std::time::Duration;

use crate::net::UpstreamConfig;
use crate::net::tls::TlsFiles;
use crate::telemetry::LogFormat;

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
    /// Longest Query or Parse that a session of a live migration has held
    /// whole for a rewrite, in bytes; a longer one that may need a rewrite
    /// is made to fail with SQLSTATE 54000.
    pub max_rewrite_size: usize,
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
    /// Session or transaction pooling, and the pools' limits.
    pub pool: PoolSettings,
    /// Where `GET /metrics` (OpenMetrics text) is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// How client sessions get their server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// One server connection per client session, for its whole life.
    #[default]
    Session,
    /// A server connection per transaction (or per statement outside
    /// one), taken from the pool of the client's (database, user, version)
    /// and given back at ReadyForQuery with status `I`.
    Transaction,
}

impl std::str::FromStr for PoolMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "session" => Ok(PoolMode::Session),
            "transaction" => Ok(PoolMode::Transaction),
            other => Err(format!(
                "pool_mode {other:?} is not one of: session, transaction"
            )),
        }
    }
}

impl std::fmt::Display for PoolMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        })
    }
}

/// The transaction pool's settings (pgbouncer's names where they exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub mode: PoolMode,
    /// Most server connections per pool (database, user, version).
    pub size: usize,
    /// Server connections a pool keeps however long they idle or live.
    pub min_size: usize,
    /// A server idle this long is closed (above `min_size`).
    pub server_idle_timeout: Duration,
    /// A server this old is replaced by the next login's (above `min_size`).
    pub server_lifetime: Duration,
    /// How long a client waits for a server before it gets SQLSTATE 53300.
    pub query_wait_timeout: Duration,
    /// Prepared statements kept per server; the least recently used one
    /// is closed on the server to make room.
    pub max_prepared_statements: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            mode: PoolMode::Session,
            size: 20,
            min_size: 0,
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            query_wait_timeout: Duration::from_secs(120),
            max_prepared_statements: 200,
        }
    }
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
            max_rewrite_size: 16 << 20,
            connect_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            log_format: LogFormat::Text,
            workers: 0,
            schema: "public".to_string(),
            routes: Vec::new(),
            admin_users: Vec::new(),
            pool: PoolSettings::default(),
            metrics_listen: None,
        }
    }
}
