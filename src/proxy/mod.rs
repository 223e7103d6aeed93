//! The wire-protocol proxy: the accept loop, per-proxy shared state, graceful
//! drain, and the errors a session can end with. One task per client session,
//! on one of the session threads: one upstream connection per session in
//! session mode, or one borrowed per transaction from `pool` in
//! transaction mode.

mod cancel;
pub mod config;
mod console;
#[cfg(test)]
mod fuzz;
pub mod latency;
pub mod metrics;
mod oversized;
mod placement;
pub mod pool;
pub mod registry;
mod relay;
mod rewriter;
mod session;
mod session_state;
mod startup;
mod threads;
pub mod versions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::net::tls;
use crate::net::{Upstream, UpstreamError};
use crate::protocol::messages::error_response;
use crate::protocol::{Severity, WireError};
use cancel::CancelRegistry;
use config::ProxyConfig;

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("no upstream Postgres configured; pass --upstream postgres://user@host:port/db")]
    NoUpstream,
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot start the session threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot serve metrics on {addr}: {error}; pass another --metrics-listen")]
    Metrics {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
}

/// Why a session, or a connection that never became one, ended with an error.
/// [`SessionError::to_error_response`] turns it into what the client sees.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error("no complete startup and authentication within {0:?}")]
    StartupTimeout(Duration),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("sorry, too many clients already (pgshift max_clients = {0})")]
    TooManyClients(usize),
    #[error("{0}")]
    Upstream(UpstreamError),
    #[error("the connection to Postgres was lost: {0}")]
    UpstreamLost(String),
    #[error("invalid frontend message type {:?}", *.0 as char)]
    UnknownMessage(u8),
    #[error(
        "message type {tag:?} of {len} bytes is longer than pgshift's max_message_length ({max} bytes)"
    )]
    MessageTooLong { tag: char, len: usize, max: usize },
    #[error("the client sent part of a message and nothing more for {0:?}")]
    MessageTimeout(Duration),
    #[error("terminating connection because pgshift is shutting down")]
    Shutdown,
    #[error("{0}")]
    Routing(crate::routing::RoutingError),
    #[error(
        "this session asks for a schema version, but pgshift has not read the versions from Postgres yet"
    )]
    VersionsUnavailable,
    #[error("{0}")]
    Killed(String),
    #[error("client connection failed: {0}")]
    ClientIo(std::io::Error),
    #[error(
        "database \"pgshift\" is pgshift's admin console, and {0:?} is not one of its admin_users"
    )]
    NotAdmin(String),
    #[error("no server connection of this pool became free within query_wait_timeout ({0:?})")]
    PoolWait(Duration),
    #[error(
        "the pool for schema version {0:?} has no server connection left (Postgres closed them)"
    )]
    PoolEmpty(String),
    #[error("schema version {0:?} is no longer served; a complete or rollback removed it")]
    VersionGone(String),
}

impl SessionError {
    /// The SQLSTATE (PostgreSQL docs, Appendix A) the client receives.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SessionError::StartupTimeout(_) => "57P05",
            SessionError::Wire(WireError::UnsupportedProtocol { .. }) => "0A000",
            SessionError::Wire(_)
            | SessionError::Protocol(_)
            | SessionError::UnknownMessage(_)
            | SessionError::MessageTimeout(_) => "08P01",
            SessionError::TooManyClients(_) => "53300",
            SessionError::Upstream(_) | SessionError::UpstreamLost(_) => "08006",
            SessionError::MessageTooLong { .. } => "54000",
            SessionError::Shutdown => "57P01",
            SessionError::Routing(_) => "22023",
            SessionError::VersionsUnavailable => "57P03",
            SessionError::Killed(_) => "57P01",
            SessionError::ClientIo(_) => "08006",
            SessionError::NotAdmin(_) => "28000",
            SessionError::PoolWait(_) => "53300",
            SessionError::PoolEmpty(_) => "08006",
            SessionError::VersionGone(_) => "57P01",
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            SessionError::StartupTimeout(_) => Some(
                "Send the startup packet and finish authentication sooner, or raise startup_timeout.",
            ),
            SessionError::TooManyClients(_) => {
                Some("Close idle connections, or raise max_clients in the pgshift configuration.")
            }
            SessionError::Upstream(_) | SessionError::UpstreamLost(_) => Some(
                "Postgres may be down or restarting. pgshift keeps running and serves new sessions once Postgres is back; reconnect.",
            ),
            SessionError::MessageTooLong { .. } => {
                Some("Send smaller messages (COPY in chunks), or raise max_message_length.")
            }
            SessionError::MessageTimeout(_) => {
                Some("Check the client's network, or raise message_timeout.")
            }
            SessionError::Shutdown => Some(
                "Reconnect; another pgshift instance or this one after restart will serve you.",
            ),
            SessionError::NotAdmin(_) => Some(
                "Connect as a role listed in admin_users (--admin-users, PGSHIFT_ADMIN_USERS), or to another database.",
            ),
            SessionError::PoolWait(_) => Some(
                "Every server connection is busy: shorten transactions, raise pool_size (within Postgres's max_connections), or raise query_wait_timeout.",
            ),
            SessionError::PoolEmpty(_) => Some(
                "pgshift holds no password, so only a login opens server connections: reconnect.",
            ),
            SessionError::VersionGone(_) => {
                Some("Reconnect: the new session gets a version that is served.")
            }
            _ => None,
        }
    }

    /// The FATAL ErrorResponse for this error, or `None` when the client is gone
    /// and nothing can reach it.
    pub fn to_error_response(&self) -> Option<bytes::Bytes> {
        // Nobody is listening: the client hung up or its socket failed.
        if matches!(
            self,
            SessionError::ClientIo(_) | SessionError::Wire(WireError::TruncatedStartup)
        ) {
            return None;
        }
        let message = format!("pgshift: {self}");
        Some(error_response(
            Severity::Fatal,
            self.sqlstate(),
            &message,
            self.hint(),
        ))
    }
}

/// Where the proxy stands in its shutdown; sessions watch it to drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Serving.
    Running,
    /// No longer accepting; idle sessions close, busy ones may finish.
    Draining,
    /// The drain timeout passed; every session closes now.
    Closing,
}

/// Pending connections the kernel queues for each listener (`listen(2)`'s
/// backlog, capped by `net.core.somaxconn`). The usual 128 overflows when
/// hundreds of clients connect at once, and each overflow costs a client a
/// one-second SYN retransmit.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a client listener on `addr` with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts clients on `listener` and starts a session for each on the next
/// of `threads`, until the task is aborted.
async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    threads: Arc<threads::SessionThreads>,
    done: mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(5);
                // The socket moves to the session thread's own reactor.
                let socket = match socket.into_std() {
                    Ok(socket) => socket,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot hand the connection over; closing it");
                        continue;
                    }
                };
                let (shared, done) = (Arc::clone(&shared), done.clone());
                threads.spawn(async move {
                    match tokio::net::TcpStream::from_std(socket) {
                        Ok(socket) => session::serve(shared, socket, peer, done).await,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "cannot register the connection; closing it")
                        }
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait and retry.
                tracing::warn!(error = %e, "accept failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// State shared by every session of one proxy.
pub struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) upstream: Upstream,
    pub(crate) tls_acceptor: Option<TlsAcceptor>,
    pub(crate) cancel: Arc<CancelRegistry>,
    pub(crate) clients: Arc<Semaphore>,
    pub(crate) drain: watch::Receiver<Drain>,
    pub(crate) versions: Arc<versions::VersionWatch>,
    pub(crate) registry: Arc<registry::Registry>,
    /// The transaction pools (`pool_mode = transaction`).
    pub(crate) pools: Arc<pool::Pools>,
}

/// Serves clients from `listeners` until `shutdown` resolves, then drains:
/// stops accepting, closes idle sessions at once, lets busy ones finish for up
/// to `drain_timeout`, then closes the rest with SQLSTATE 57P01.
///
/// Sessions run on `config.workers` session threads of their own
/// ([`threads::SessionThreads`]); the accept loops and the control tasks
/// (heartbeat, version watch) run on the caller's runtime.
///
/// Errors only at start-up (no upstream, unusable TLS files, no threads);
/// an error on one connection stays in that connection's task.
pub async fn run(
    listeners: Vec<TcpListener>,
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let upstream_config = config.upstream.clone().ok_or(ProxyError::NoUpstream)?;
    let upstream = Upstream::new(upstream_config.clone())?;
    let config_schema = config.schema.clone();
    let proxy_name = format!(
        "{} pid {}",
        listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        std::process::id()
    );
    let session_registry = registry::Registry::new(proxy_name.clone(), config_schema.clone());
    registry::spawn_heartbeat(Arc::clone(&session_registry), upstream_config.clone());
    let tls_acceptor = match &config.tls {
        Some(files) => Some(TlsAcceptor::from(tls::server_config(files)?)),
        None => None,
    };
    let threads =
        Arc::new(threads::SessionThreads::start(config.workers).map_err(ProxyError::Threads)?);
    let (drain_tx, drain_rx) = watch::channel(Drain::Running);
    let drain_timeout = config.drain_timeout;
    let pools = Arc::new(pool::Pools::new(config.pool.clone()));
    let shared = Arc::new(Shared {
        clients: Arc::new(Semaphore::new(config.max_clients)),
        config,
        upstream,
        tls_acceptor,
        cancel: Arc::new(CancelRegistry::default()),
        drain: drain_rx,
        versions: versions::spawn(upstream_config.clone(), config_schema.clone(), proxy_name),
        registry: Arc::clone(&session_registry),
        pools: Arc::clone(&pools),
    });
    let sweeping = tokio::spawn(pool::sweep_loop(pools, shared.versions.subscribe()));
    if let Some(addr) = shared.config.metrics_listen {
        metrics::spawn(addr, Arc::clone(&shared))
            .map_err(|error| ProxyError::Metrics { addr, error })?;
        tracing::info!(%addr, "serving metrics at /metrics");
    }
    // Each connection task holds a sender; when all are dropped, all are done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept(
            listener,
            Arc::clone(&shared),
            Arc::clone(&threads),
            done_tx.clone(),
        ));
    }
    shutdown.await;
    // Dropping the accept tasks closes the listeners.
    accepting.shutdown().await;
    let active = shared.config.max_clients - shared.clients.available_permits();
    tracing::info!(sessions = active, timeout = ?drain_timeout, "shutting down: draining sessions");
    let _ = drain_tx.send(Drain::Draining);
    drop(done_tx);
    if tokio::time::timeout(drain_timeout, done_rx.recv())
        .await
        .is_err()
    {
        let left = shared.config.max_clients - shared.clients.available_permits();
        tracing::warn!(
            sessions = left,
            "drain timeout passed; closing the remaining sessions"
        );
        let _ = drain_tx.send(Drain::Closing);
        done_rx.recv().await;
    }
    tracing::info!("all sessions closed");
    sweeping.abort();
    shared.pools.close_idle().await;
    Ok(())
}
