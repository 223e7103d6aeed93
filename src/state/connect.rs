//! pgshift's own connections to Postgres (the migrator's, and each proxy's
//! control and heartbeat connections), opened with the same URL rules as
//! `--upstream`: libpq `sslmode` up to verify-full over rustls (ring), and
//! `host=/dir` for a Unix socket.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::Notify;
use tokio_postgres::{Client, NoTls};

use super::db_message;
use crate::net::tls::{self, TlsError};
use crate::net::{SslMode, UpstreamConfig, UrlError, redact_url};

/// Why pgshift could not open a connection of its own.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot connect to {url}: {}", db_message(.source))]
    Connect {
        url: String,
        source: tokio_postgres::Error,
    },
}

/// Opens a client for a `postgres://` URL with the proxy's URL rules: libpq
/// `sslmode` (disable, prefer, require, verify-full with `sslrootcert`) over
/// rustls, and `host=/dir` for a Unix socket.
pub async fn open(url: &str) -> Result<Client, ConnectError> {
    let parsed = UpstreamConfig::from_url(url)?;
    connect(&parsed, None).await
}

/// Like [`open`], for an already parsed URL. Each NOTIFY the connection
/// receives wakes `notify`, payload unread: any role may NOTIFY, so a
/// flood of notifications stores nothing and wakes the listener once
/// (`Notify` keeps at most one pending wake-up).
pub async fn connect(
    parsed: &UpstreamConfig,
    notify: Option<Arc<Notify>>,
) -> Result<Client, ConnectError> {
    let url = format!("postgres://{}:{}", parsed.host, parsed.port);
    let url = url.as_str();
    let mut config = tokio_postgres::Config::new();
    let user = parsed
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".to_string());
    config.user(&user);
    config.dbname(parsed.dbname.as_deref().unwrap_or(&user));
    config.application_name("pgshift");
    if let Some(password) = &parsed.password {
        config.password(password);
    }
    if parsed.unix_socket().is_some() {
        config.host_path(&parsed.host);
    } else {
        config.host(&parsed.host);
    }
    config.port(parsed.port);
    config.ssl_mode(match parsed.sslmode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    let connect_err = |source| ConnectError::Connect {
        url: redact_url(url),
        source,
    };
    let tls = tls::client_config(parsed.sslmode, parsed.sslrootcert.as_deref())?;
    match tls {
        Some(tls) if parsed.unix_socket().is_none() => {
            let (client, connection) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (*tls).clone(),
                ))
                .await
                .map_err(connect_err)?;
            Ok(drive(client, connection, notify))
        }
        _ => {
            let (client, connection) = config.connect(NoTls).await.map_err(connect_err)?;
            Ok(drive(client, connection, notify))
        }
    }
}

/// Runs a connection's I/O in the background and returns its client,
/// waking `notify` on each NOTIFY when given.
fn drive<S, T>(
    client: Client,
    mut connection: tokio_postgres::Connection<S, T>,
    notify: Option<Arc<Notify>>,
) -> Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                    if let Some(notify) = &notify {
                        notify.notify_one();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "pgshift control connection ended");
                    break;
                }
                None => break,
            }
        }
    });
    client
}
