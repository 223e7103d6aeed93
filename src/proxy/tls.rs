//! TLS on both sides of the proxy (rustls with the ring provider): the server
//! config that answers clients' SSLRequest, the client config for each upstream
//! `sslmode`, and [`Stream`], a socket that is plain or TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{SslMode, TlsFiles};

/// A TLS setup problem, naming the file at fault.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read TLS certificates from {path}: {message}")]
    Certs { path: String, message: String },
    #[error("cannot read TLS private key from {path}: {message}")]
    Key { path: String, message: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Certs {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("the file holds no PEM CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Builds the config that serves TLS to clients, from a PEM certificate chain
/// and private key.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.display().to_string(),
        message: e.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Builds the config for upstream TLS, or `None` for `sslmode=disable`.
/// `prefer` and `require` encrypt without checking the certificate, as libpq
/// does; `verify-full` checks the chain against `rootcert` and the host name.
pub fn client_config(
    mode: SslMode,
    rootcert: Option<&std::path::Path>,
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider())))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let path = rootcert.ok_or_else(|| TlsError::Certs {
                path: "(none)".into(),
                message: "sslmode=verify-full needs sslrootcert".into(),
            })?;
            let mut roots = RootCertStore::empty();
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// The `server_name` to present and check for an upstream host.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|e| TlsError::Certs {
        path: host.to_string(),
        message: format!("not a valid TLS server name: {e}"),
    })
}

/// Accepts any certificate but still checks the handshake signatures, which is
/// what libpq's `sslmode=require` does: encryption without authentication.
#[derive(Debug)]
struct NoCertificateCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection to a client or to the upstream: plain TCP, TLS over TCP, or
/// a Unix-domain socket (upstream only).
pub enum Stream {
    Plain(TcpStream),
    /// A Unix-domain socket to a local upstream; never encrypted.
    Unix(UnixStream),
    /// TLS that pgshift serves to a client.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS that pgshift opened to the upstream.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// True for either TLS variant.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Server(_) | Stream::Client(_))
    }
}

macro_rules! each_stream {
    ($self:expr, $s:ident => $body:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $body
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $body
            }
            Stream::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $body
            }
            Stream::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $body
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => s.poll_shutdown(cx))
    }
}
