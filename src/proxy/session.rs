//! One client connection from accept to close: the startup phase, the relay,
//! the reason it ended, clean-up upstream, and the connection's log lines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::placement::Placement;
use super::relay::{self, ClientLimits, RelayEnd, SessionState};
use super::startup::{self, Ended, Established};
use super::{Drain, SessionError, Shared};
use crate::protocol::messages::TERMINATE;
use crate::protocol::tags::status;
use crate::quote::printable;

/// Serves one accepted connection to its end. Never panics on client input and
/// never returns an error: everything is logged here. `_done` tells the accept
/// loop, by being dropped, that this connection is finished.
pub async fn serve(
    shared: Arc<Shared>,
    socket: TcpStream,
    peer: SocketAddr,
    _done: mpsc::Sender<()>,
) {
    let opened = Instant::now();
    let _ = socket.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + shared.config.startup_timeout;
    let established = match startup::handshake(&shared, socket, deadline).await {
        Ok(established) => established,
        Err(ended) => {
            log_startup_end(&ended, peer, opened);
            return;
        }
    };
    let (user, database) = established.startup.user_and_database();
    let application_name = established
        .startup
        .setting("application_name")
        .unwrap_or_default();
    // What the client chose, escaped for the log lines.
    let (user, database, app) = (
        printable(&user).into_owned(),
        printable(&database).into_owned(),
        printable(&application_name).into_owned(),
    );
    let tls = established.client.is_tls();
    let version = established
        .route
        .as_ref()
        .map(|r| r.version.clone())
        .unwrap_or_default();
    tracing::info!(client = %peer, %user, %database, application_name = %app, tls, %version, "connection opened");

    if established.console {
        let Established {
            mut client,
            mut upstream,
            client_buf,
            ..
        } = established;
        // Postgres has checked the admin's password; pgshift answers from here.
        let _ = upstream.write_all(&TERMINATE).await;
        let _ = upstream.shutdown().await;
        let reason = super::console::serve(&shared, &mut client, client_buf).await;
        let _ = client.shutdown().await;
        tracing::info!(
            client = %peer,
            %user,
            console = true,
            duration_ms = opened.elapsed().as_millis() as u64,
            %reason,
            "connection closed"
        );
        return;
    }
    let registration = established.route.as_ref().map(|route| {
        shared.registry.register(
            route,
            application_name.clone(),
            peer.to_string(),
            established.backend_pid,
        )
    });
    if shared.config.pool.mode == super::config::PoolMode::Transaction {
        let (reason, in_transaction) =
            super::pool::session::serve(&shared, established, registration.as_ref()).await;
        tracing::info!(
            client = %peer,
            %user,
            %database,
            duration_ms = opened.elapsed().as_millis() as u64,
            reason = %printable(&reason),
            in_transaction,
            pool_mode = "transaction",
            "connection closed"
        );
        return;
    }
    let (reason, state, rewrites) =
        relay_session(&shared, established, registration.as_ref()).await;
    tracing::info!(
        client = %peer,
        %user,
        %database,
        duration_ms = opened.elapsed().as_millis() as u64,
        reason = %printable(&reason.to_string()),
        in_transaction = state.transaction_status() != status::IDLE,
        rewrite_cache_hits = rewrites.0,
        rewrite_cache_misses = rewrites.1,
        "connection closed"
    );
}

fn log_startup_end(ended: &Ended, peer: SocketAddr, opened: Instant) {
    let duration_ms = opened.elapsed().as_millis() as u64;
    match ended {
        Ended::Closed => {
            tracing::debug!(client = %peer, duration_ms, "connection closed before startup")
        }
        Ended::Cancel { matched } => {
            tracing::info!(client = %peer, duration_ms, matched, "cancel request")
        }
        Ended::Refused => {
            tracing::info!(client = %peer, duration_ms, "connection closed: Postgres refused the session")
        }
        Ended::Failed(e) => tracing::warn!(
            client = %peer,
            duration_ms,
            sqlstate = e.sqlstate(),
            error = %printable(&e.to_string()),
            "connection closed during startup"
        ),
    }
}

/// Runs the relay until one side ends or the proxy closes the session, then
/// cleans up: a client that leaves with a request in flight gets that request
/// cancelled upstream, and the upstream connection is always closed, so no
/// transaction, lock or idle backend outlives the client.
async fn relay_session(
    shared: &Shared,
    established: Established,
    registration: Option<&super::registry::Registration>,
) -> (String, SessionState, (u64, u64)) {
    let Established {
        client,
        upstream,
        client_buf,
        upstream_buf,
        cancel_key,
        permit: _permit,
        route,
        options,
        ..
    } = established;
    let mut placement = route.map(|route| {
        Placement::new(
            route.version,
            route.version_schema,
            route.view,
            shared.versions.subscribe(),
            registration.map(|r| Arc::clone(&r.info)),
        )
    });
    let mut state = SessionState::new(options);
    state.latency = registration.map(|r| Arc::clone(&r.info.latency));
    let limits = ClientLimits {
        max_message_length: shared.config.max_message_length,
        message_timeout: shared.config.message_timeout,
        max_rewrite_size: shared.config.max_rewrite_size,
    };
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut phase = shared.drain.clone();

    let end = tokio::select! {
        end = relay::client_to_upstream(&mut client_read, &mut upstream_write, client_buf, &state, limits, placement.as_mut()) => End::Relay(end),
        end = relay::upstream_to_client(&mut upstream_read, &mut client_write, upstream_buf, &state) => End::Relay(end),
        phase = shutdown_point(&mut phase, &state) => End::Shutdown(phase),
        reason = killed(registration) => End::Killed(reason),
    };

    let reason = end.to_string();
    let busy = state.busy();
    // Terminate went upstream already; sending it twice is pointless.
    let terminated = matches!(end, End::Relay(RelayEnd::ClientTerminated));
    let upstream_alive = !matches!(
        end,
        End::Relay(RelayEnd::UpstreamClosed | RelayEnd::UpstreamIo(_))
    );
    let tell_client = match end {
        End::Relay(RelayEnd::ClientViolation(e)) => Some(e),
        End::Relay(RelayEnd::UpstreamClosed) if !state.upstream_sent_error() => Some(
            SessionError::UpstreamLost("Postgres closed the connection".into()),
        ),
        End::Relay(RelayEnd::UpstreamIo(e)) => Some(SessionError::UpstreamLost(e.to_string())),
        End::Shutdown(_) => Some(SessionError::Shutdown),
        End::Killed(reason) => Some(SessionError::Killed(reason.clone())),
        _ => None,
    };
    if let Some(message) = tell_client.and_then(|e| e.to_error_response())
        && state.client_at_boundary()
    {
        let _ = client_write.write_all(&message).await;
        let _ = client_write.flush().await;
    }
    if upstream_alive {
        // Postgres notices a closed socket only when it next reads; a running
        // query would go on. Cancel it so nothing outlives the client.
        if busy && let Some(target) = cancel_key.as_ref().and_then(|key| key.target()) {
            let _ = target.send().await;
        }
        if !terminated {
            let _ = upstream_write.write_all(&TERMINATE).await;
        }
        let _ = upstream_write.shutdown().await;
    }
    let _ = client_write.shutdown().await;
    let rewrites = placement
        .and_then(|p| p.rewriter)
        .map(|r| (r.hits, r.misses))
        .unwrap_or_default();
    (reason, state, rewrites)
}

/// Resolves when the proxy's shutdown reaches this session: at once when the
/// drain timeout has passed, or when the session is idle during a drain.
async fn shutdown_point(phase: &mut watch::Receiver<Drain>, state: &SessionState) -> Drain {
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Drain::Running => {
                if phase.changed().await.is_err() {
                    return Drain::Closing;
                }
            }
            Drain::Draining => {
                tokio::select! {
                    _ = state.wait_idle() => return Drain::Draining,
                    changed = phase.changed() => if changed.is_err() { return Drain::Closing },
                }
            }
            Drain::Closing => return Drain::Closing,
        }
    }
}

enum End {
    Relay(RelayEnd),
    Shutdown(Drain),
    /// A forced complete or rollback ended the session.
    Killed(String),
}

/// Resolves when the migrator asks for this session to end.
async fn killed(registration: Option<&super::registry::Registration>) -> String {
    match registration {
        Some(r) => r.info.killed().await,
        None => std::future::pending().await,
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Relay(RelayEnd::ClientTerminated) => write!(f, "client sent Terminate"),
            End::Relay(RelayEnd::ClientClosed) => write!(f, "client closed the connection"),
            End::Relay(RelayEnd::ClientViolation(e)) => write!(f, "{e}"),
            End::Relay(RelayEnd::ClientIo(e)) => write!(f, "client connection failed: {e}"),
            End::Relay(RelayEnd::UpstreamClosed) => write!(f, "Postgres closed the connection"),
            End::Relay(RelayEnd::UpstreamIo(e)) => write!(f, "Postgres connection failed: {e}"),
            End::Shutdown(Drain::Draining) => write!(f, "proxy shutdown: session idle"),
            End::Shutdown(_) => write!(f, "proxy shutdown: drain timeout passed"),
            End::Killed(reason) => write!(f, "ended by the migrator: {reason}"),
        }
    }
}
