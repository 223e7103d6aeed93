//! Sockets below both halves of pgshift: the upstream URL, TLS configs on
//! either side, [`Stream`] (plain, TLS or Unix socket), the upstream
//! connect and CancelRequest delivery, and whole-message readers for the
//! startup phase.

pub mod read;
pub mod stream;
pub mod tls;
pub mod upstream;
pub mod url;

pub use stream::Stream;
pub use upstream::{Upstream, UpstreamAddr, UpstreamError};
pub use url::{SslMode, UpstreamConfig, UrlError, redact_url};
