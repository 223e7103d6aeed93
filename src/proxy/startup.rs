//! The startup phase of a client connection: SSLRequest and GSSENCRequest
//! answers, CancelRequest routing, the upstream connection, and the relay of
//! authentication between client and Postgres until the first ReadyForQuery
//! (PostgreSQL docs, "Frontend/Backend Protocol", "Start-up").

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::cancel::{CancelKey, CancelTarget};
use super::{SessionError, Shared};
use crate::net::read::{read_message, read_startup_packet};
use crate::net::{Stream, UpstreamAddr};
use crate::protocol::messages::{self, TERMINATE};
use crate::protocol::tags::{auth, backend, frontend};
use crate::protocol::{StartupMessage, StartupPacket};

/// Longest message accepted from either side during authentication. SASL
/// messages are a few hundred bytes; ParameterStatus values are short.
const MAX_STARTUP_MESSAGE: usize = 1 << 20;

/// A session whose authentication succeeded: both streams are past the first
/// ReadyForQuery, which the client has received.
pub struct Established {
    pub client: Stream,
    pub upstream: Stream,
    /// Bytes the client sent after its last authentication message.
    pub client_buf: BytesMut,
    /// Bytes the upstream sent after its first ReadyForQuery.
    pub upstream_buf: BytesMut,
    /// The client's StartupMessage (user, database, application_name, ...).
    pub startup: StartupMessage,
    /// The BackendKeyData this client holds; unregistered on drop.
    pub cancel_key: Option<CancelKey>,
    /// The process id of the upstream backend, from its BackendKeyData.
    pub backend_pid: Option<i32>,
    /// The session's place under `max_clients`.
    pub permit: OwnedSemaphorePermit,
    /// The session's version, version schema and view map, when the
    /// versions are known (its `startup` has been sent).
    pub route: Option<crate::routing::Route>,
    /// True for the admin console: Postgres has authenticated the admin,
    /// and pgshift answers the session itself.
    pub console: bool,
    /// How the session's statement texts read, from the ParameterStatus
    /// messages of its startup (standard_conforming_strings).
    pub options: crate::rewrite::Options,
    /// The tracked settings Postgres reported during the startup
    /// (ParameterStatus), which a transaction pool keeps in step.
    pub params: super::pool::server::Params,
}

/// How a connection that never became a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The peer closed before sending a startup packet.
    Closed,
    /// The connection carried a CancelRequest, which was handled.
    Cancel { matched: bool },
    /// The startup failed; the client was told why when it could be.
    Failed(SessionError),
    /// Postgres refused the session (bad password, unknown database, ...);
    /// its ErrorResponse went to the client unchanged.
    Refused,
}

/// Runs the startup phase on a new connection. Everything must finish before
/// `deadline`; errors are reported to the client before returning.
pub async fn handshake(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<Established, Ended> {
    let port = tcp.local_addr().ok().map(|a| a.port());
    let mut client = Stream::Plain(tcp);
    let (raw, message) = loop {
        let packet = match within(deadline, shared, read_startup_packet(&mut client)).await {
            Ok(Ok(Some(packet))) => packet,
            Ok(Ok(None)) => return Err(Ended::Closed),
            Ok(Err(e)) => return Err(fail(&mut client, SessionError::Wire(e)).await),
            Err(e) => return Err(fail(&mut client, e).await),
        };
        let packet = match StartupPacket::parse(packet) {
            Ok(packet) => packet,
            Err(e) => return Err(fail(&mut client, SessionError::Wire(e)).await),
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if client.is_tls() => {
                let e =
                    SessionError::Protocol("SSLRequest or GSSENCRequest sent inside TLS".into());
                return Err(fail(&mut client, e).await);
            }
            StartupPacket::SslRequest => {
                let Some(acceptor) = &shared.tls_acceptor else {
                    write_or_close(&mut client, b"N").await?;
                    continue;
                };
                write_or_close(&mut client, b"S").await?;
                let Stream::Plain(tcp) = client else {
                    unreachable!("checked above that the stream is not TLS yet")
                };
                client = match within(deadline, shared, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Stream::Server(Box::new(tls)),
                    Ok(Err(e)) => return Err(Ended::Failed(SessionError::ClientIo(e))),
                    Err(e) => return Err(Ended::Failed(e)),
                };
            }
            StartupPacket::GssEncRequest => write_or_close(&mut client, b"N").await?,
            StartupPacket::Cancel { pid, secret } => {
                let target = shared.cancel.lookup(pid, &secret);
                let matched = target.is_some();
                if let Some(target) = target
                    && let Err(e) = target.send().await
                {
                    tracing::warn!(error = %e, "could not forward a CancelRequest upstream");
                }
                return Err(Ended::Cancel { matched });
            }
            StartupPacket::Startup { raw, message } => break (raw, message),
        }
    };

    let (_, database) = message.user_and_database();
    let console = database == super::console::DATABASE;
    let routed = if console {
        console_startup(shared, &message)
    } else {
        route(shared, &raw, &message, port).await
    };
    let (startup, route) = match routed {
        Ok(routed) => routed,
        Err(e) => return Err(fail(&mut client, e).await),
    };
    let Ok(permit) = Arc::clone(&shared.clients).try_acquire_owned() else {
        let e = SessionError::TooManyClients(shared.config.max_clients);
        return Err(fail(&mut client, e).await);
    };
    let (mut upstream, upstream_addr) =
        match shared.upstream.connect(shared.config.connect_timeout).await {
            Ok(connected) => connected,
            Err(e) => return Err(fail(&mut client, SessionError::Upstream(e)).await),
        };
    match within(
        deadline,
        shared,
        relay_auth(&mut client, &mut upstream, &startup, shared, upstream_addr),
    )
    .await
    {
        Ok(Ok(auth)) => Ok(Established {
            client,
            upstream,
            client_buf: auth.client_buf,
            upstream_buf: auth.upstream_buf,
            startup: message,
            cancel_key: auth.cancel_key,
            backend_pid: auth.backend_pid,
            permit,
            route,
            console,
            options: auth.options,
            params: auth.params,
        }),
        Ok(Err(AuthError::Refused)) => Err(Ended::Refused),
        Ok(Err(AuthError::Session(e))) | Err(e) => {
            let _ = upstream.write_all(&TERMINATE).await;
            Err(fail(&mut client, e).await)
        }
    }
}

/// For the admin console: refuses anyone outside `admin_users`, and sends the
/// admin's startup packet to the upstream's own database, so that Postgres
/// checks the password.
fn console_startup(
    shared: &Shared,
    message: &StartupMessage,
) -> Result<(Bytes, Option<crate::routing::Route>), SessionError> {
    let (user, _) = message.user_and_database();
    if !shared.config.admin_users.contains(&user) {
        return Err(SessionError::NotAdmin(user));
    }
    let database = shared
        .config
        .upstream
        .as_ref()
        .and_then(|u| u.dbname.clone())
        .unwrap_or_else(|| "postgres".to_string());
    let mut startup = message.clone();
    startup.set("database", &database);
    Ok((startup.encode(), None))
}

/// The startup packet to send upstream and the session's route, as
/// [`crate::routing::route`] decides from the latest known versions.
async fn route(
    shared: &Shared,
    raw: &Bytes,
    message: &StartupMessage,
    port: Option<u16>,
) -> Result<(Bytes, Option<crate::routing::Route>), SessionError> {
    // A proxy that has just started reads the versions within milliseconds;
    // one that cannot read them serves sessions without routing.
    match shared.versions.loaded(shared.config.connect_timeout).await {
        Some(versions) => {
            let routed = crate::routing::route(message, &versions, &shared.config.routes, port)
                .map_err(SessionError::Routing)?;
            Ok((routed.startup.clone(), Some(routed)))
        }
        None => {
            if message.setting(crate::state::VERSION_SETTING).is_some() {
                Err(SessionError::VersionsUnavailable)
            } else {
                Ok((raw.clone(), None))
            }
        }
    }
}

/// Runs `future` unless `deadline` passes first.
async fn within<F: std::future::Future>(
    deadline: Instant,
    shared: &Shared,
    future: F,
) -> Result<F::Output, SessionError> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| SessionError::StartupTimeout(shared.config.startup_timeout))
}

async fn write_or_close(client: &mut Stream, bytes: &[u8]) -> Result<(), Ended> {
    client
        .write_all(bytes)
        .await
        .map_err(|e| Ended::Failed(SessionError::ClientIo(e)))
}

/// Sends `error` to the client as a FATAL ErrorResponse (when it is the kind of
/// error a client should see) and returns it for the connection log.
pub async fn fail(client: &mut Stream, error: SessionError) -> Ended {
    if let Some(message) = error.to_error_response() {
        let _ = client.write_all(&message).await;
        let _ = client.flush().await;
    }
    Ended::Failed(error)
}

struct AuthDone {
    client_buf: BytesMut,
    upstream_buf: BytesMut,
    cancel_key: Option<CancelKey>,
    backend_pid: Option<i32>,
    options: crate::rewrite::Options,
    params: super::pool::server::Params,
}

enum AuthError {
    /// Postgres sent an ErrorResponse, already relayed.
    Refused,
    Session(SessionError),
}

impl From<SessionError> for AuthError {
    fn from(e: SessionError) -> Self {
        AuthError::Session(e)
    }
}

/// Forwards the StartupMessage, then relays authentication: every upstream
/// message goes to the client, and each authentication request that expects an
/// answer (cleartext, MD5, SASL, GSS) is answered by the next client message.
/// BackendKeyData is replaced by a key of pgshift's own; SCRAM-SHA-256-PLUS is
/// withdrawn from the SASL mechanisms because channel binding ties the
/// exchange to one TLS connection, and the client's is not Postgres's.
async fn relay_auth(
    client: &mut Stream,
    upstream: &mut Stream,
    startup: &Bytes,
    shared: &Arc<Shared>,
    upstream_addr: UpstreamAddr,
) -> Result<AuthDone, AuthError> {
    let upstream_io = |e: std::io::Error| SessionError::UpstreamLost(e.to_string());
    upstream.write_all(startup).await.map_err(upstream_io)?;
    upstream.flush().await.map_err(upstream_io)?;
    let mut from_upstream = BytesMut::new();
    let mut from_client = BytesMut::new();
    let mut to_client = BytesMut::new();
    let mut cancel_key = None;
    let mut backend_pid = None;
    let mut options = crate::rewrite::Options::default();
    let mut params = super::pool::server::Params::new();
    loop {
        let frame = match read_message(upstream, &mut from_upstream, MAX_STARTUP_MESSAGE).await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                return Err(
                    SessionError::UpstreamLost("closed during authentication".into()).into(),
                );
            }
            Err(e) => return Err(SessionError::UpstreamLost(e.to_string()).into()),
        };
        let needs_answer = match frame[0] {
            backend::AUTHENTICATION => {
                let code = messages::auth_code(&frame).map_err(SessionError::Wire)?;
                if code == auth::SASL {
                    let frame = messages::sasl_without_channel_binding(frame)
                        .map_err(|e| SessionError::UpstreamLost(e.to_string()))?;
                    to_client.extend_from_slice(&frame);
                } else {
                    to_client.extend_from_slice(&frame);
                }
                auth::expects_answer(code)
            }
            backend::BACKEND_KEY_DATA => {
                let (pid, secret) =
                    messages::parse_backend_key_data(&frame).map_err(SessionError::Wire)?;
                let key = shared.cancel.register(CancelTarget {
                    addr: upstream_addr.clone(),
                    pid,
                    secret,
                });
                to_client.extend_from_slice(&messages::backend_key_data(key.pid, key.secret));
                cancel_key = Some(key);
                backend_pid = Some(pid);
                false
            }
            backend::READY_FOR_QUERY => {
                to_client.extend_from_slice(&frame);
                send(client, &mut to_client).await?;
                return Ok(AuthDone {
                    client_buf: from_client,
                    upstream_buf: from_upstream,
                    cancel_key,
                    backend_pid,
                    options,
                    params,
                });
            }
            backend::PARAMETER_STATUS => {
                super::pool::server::note_parameter(&mut params, &frame);
                if let Some(("standard_conforming_strings", value)) =
                    messages::parameter_status(&frame)
                {
                    options.standard_conforming_strings = value == "on";
                }
                to_client.extend_from_slice(&frame);
                false
            }
            backend::ERROR_RESPONSE => {
                to_client.extend_from_slice(&frame);
                send(client, &mut to_client).await?;
                return Err(AuthError::Refused);
            }
            _ => {
                to_client.extend_from_slice(&frame);
                false
            }
        };
        if needs_answer {
            send(client, &mut to_client).await?;
            let answer = match read_message(client, &mut from_client, MAX_STARTUP_MESSAGE).await {
                Ok(Some(answer)) => answer,
                Ok(None) => {
                    return Err(
                        SessionError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()).into(),
                    );
                }
                Err(e) => return Err(SessionError::Wire(e).into()),
            };
            if answer[0] != frontend::PASSWORD {
                return Err(SessionError::Protocol(format!(
                    "expected a password or SASL response, got message type {:?}",
                    answer[0] as char
                ))
                .into());
            }
            upstream.write_all(&answer).await.map_err(upstream_io)?;
            upstream.flush().await.map_err(upstream_io)?;
        }
    }
}

async fn send(client: &mut Stream, out: &mut BytesMut) -> Result<(), SessionError> {
    client
        .write_all(out)
        .await
        .map_err(SessionError::ClientIo)?;
    client.flush().await.map_err(SessionError::ClientIo)?;
    out.clear();
    Ok(())
}
