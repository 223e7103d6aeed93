//! Connections to the upstream Postgres: TCP, then TLS negotiated with an
//! SSLRequest according to `sslmode` (PostgreSQL docs, "Frontend/Backend
//! Protocol", "SSL Session Encryption"), or a Unix-domain socket; and the
//! delivery of CancelRequests ("Canceling Requests in Progress").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::stream::Stream;
use super::tls::{self, TlsError};
use super::url::{SslMode, UpstreamConfig};
use crate::protocol::startup::{cancel_request, ssl_request};

/// Why an upstream connection could not be opened.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot connect to Postgres at {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("Postgres at {target} did not answer within {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("Postgres at {target} refused TLS, and the upstream sslmode is {mode:?}")]
    TlsRefused { target: String, mode: SslMode },
    #[error("TLS handshake with Postgres at {target} failed: {source}")]
    Handshake {
        target: String,
        source: std::io::Error,
    },
    #[error(
        "Postgres at {target} answered the SSLRequest with {byte:#04x}, which is not 'S' or 'N'"
    )]
    Protocol { target: String, byte: u8 },
}

/// Where an upstream server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Tcp(SocketAddr),
    /// The socket file `<dir>/.s.PGSQL.<port>`.
    Unix(PathBuf),
}

/// Opens upstream connections for every session; built once per proxy.
pub struct Upstream {
    config: UpstreamConfig,
    target: String,
    unix_socket: Option<PathBuf>,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

impl Upstream {
    /// Prepares the TLS settings for `config`; errors if a certificate file is unusable.
    pub fn new(config: UpstreamConfig) -> Result<Self, TlsError> {
        let unix_socket = config.unix_socket();
        // As libpq, never TLS on a Unix-domain socket.
        let mode = if unix_socket.is_some() {
            SslMode::Disable
        } else {
            config.sslmode
        };
        let tls = match tls::client_config(mode, config.sslrootcert.as_deref())? {
            Some(client) => Some((TlsConnector::from(client), tls::server_name(&config.host)?)),
            None => None,
        };
        let target = match &unix_socket {
            Some(path) => path.display().to_string(),
            None if config.host.contains(':') => format!("[{}]:{}", config.host, config.port),
            None => format!("{}:{}", config.host, config.port),
        };
        Ok(Upstream {
            config,
            target,
            unix_socket,
            tls,
        })
    }

    /// `host:port` or the socket path of the upstream, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Connects, negotiates TLS as `sslmode` says, and returns the stream and the
    /// peer address (where CancelRequests for this session go). The whole
    /// exchange is bounded by `timeout`.
    pub async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<(Stream, UpstreamAddr), UpstreamError> {
        tokio::time::timeout(timeout, self.connect_inner())
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::Timeout {
                    target: self.target.clone(),
                    timeout,
                })
            })
    }

    async fn connect_inner(&self) -> Result<(Stream, UpstreamAddr), UpstreamError> {
        let connect_err = |source| UpstreamError::Connect {
            target: self.target.clone(),
            source,
        };
        if let Some(path) = &self.unix_socket {
            let stream = UnixStream::connect(path).await.map_err(connect_err)?;
            return Ok((Stream::Unix(stream), UpstreamAddr::Unix(path.clone())));
        }
        let mut tcp = TcpStream::connect((self.config.host.as_str(), self.config.port))
            .await
            .map_err(connect_err)?;
        tcp.set_nodelay(true).map_err(connect_err)?;
        let addr = UpstreamAddr::Tcp(tcp.peer_addr().map_err(connect_err)?);
        let Some((connector, name)) = &self.tls else {
            return Ok((Stream::Plain(tcp), addr));
        };
        tcp.write_all(&ssl_request()).await.map_err(connect_err)?;
        let answer = tcp.read_u8().await.map_err(connect_err)?;
        match answer {
            b'S' => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| UpstreamError::Handshake {
                        target: self.target.clone(),
                        source,
                    })?;
                Ok((Stream::Client(Box::new(stream)), addr))
            }
            b'N' if self.config.sslmode == SslMode::Prefer => Ok((Stream::Plain(tcp), addr)),
            b'N' => Err(UpstreamError::TlsRefused {
                target: self.target.clone(),
                mode: self.config.sslmode,
            }),
            byte => Err(UpstreamError::Protocol {
                target: self.target.clone(),
                byte,
            }),
        }
    }
}

/// Sends a CancelRequest for backend `pid` (with its `secret`) at `addr` on a new plain connection and waits
/// (up to 5 s) for the server to close it, which it does once the signal is
/// sent. Cancel requests are never encrypted: Postgres accepts them in the
/// clear before any authentication.
pub async fn send_cancel(addr: &UpstreamAddr, pid: i32, secret: &[u8]) -> std::io::Result<()> {
    let packet = cancel_request(pid, secret);
    let exchange = async {
        match addr {
            UpstreamAddr::Tcp(addr) => deliver(TcpStream::connect(addr).await?, &packet).await,
            UpstreamAddr::Unix(path) => deliver(UnixStream::connect(path).await?, &packet).await,
        }
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

async fn deliver<S>(mut stream: S, packet: &[u8]) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(packet).await?;
    let mut sink = [0u8; 64];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
