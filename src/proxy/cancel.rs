//! Query cancellation: the BackendKeyData that pgshift hands each client, and
//! the routing of a client's CancelRequest to the upstream backend it stands for
//! (PostgreSQL docs, "Frontend/Backend Protocol", "Canceling Requests in Progress").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::wire;

/// Where an upstream server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Tcp(SocketAddr),
    /// The socket file `<dir>/.s.PGSQL.<port>`.
    Unix(PathBuf),
}

/// The upstream backend behind one client session, as its BackendKeyData named it.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// The upstream server's address.
    pub addr: UpstreamAddr,
    /// The backend's process id.
    pub pid: i32,
    /// The backend's secret key (4 bytes in protocol 3.0, up to 256 in 3.2).
    pub secret: Bytes,
}

/// Maps the keys pgshift gave its clients to the upstream backends' keys.
/// Shared by all sessions; entries live as long as their [`CancelKey`].
#[derive(Debug, Default)]
pub struct CancelRegistry {
    next_pid: AtomicI32,
    map: DashMap<i32, (i32, CancelTarget)>,
}

/// A key handed to one client; dropping it unregisters the key.
#[derive(Debug)]
pub struct CancelKey {
    registry: Arc<CancelRegistry>,
    /// The process id the client sees.
    pub pid: i32,
    /// The secret the client sees.
    pub secret: i32,
}

impl CancelRegistry {
    /// Issues a fresh key for a client whose session runs on `target`.
    /// The pid is a per-proxy counter, the secret is random.
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> CancelKey {
        let pid = self
            .next_pid
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
            & 0x7fff_ffff;
        let secret: i32 = rand::random();
        self.map.insert(pid, (secret, target));
        CancelKey {
            registry: Arc::clone(self),
            pid,
            secret,
        }
    }

    /// The upstream target for a client's CancelRequest, if its key is one we issued.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<CancelTarget> {
        let entry = self.map.get(&pid)?;
        let (ours, target) = entry.value();
        (secret == ours.to_be_bytes()).then(|| target.clone())
    }
}

impl CancelKey {
    /// The upstream backend this key stands for.
    pub fn target(&self) -> Option<CancelTarget> {
        self.registry
            .map
            .get(&self.pid)
            .map(|entry| entry.value().1.clone())
    }
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.registry.map.remove(&self.pid);
    }
}

/// Sends a CancelRequest for `target` on a new plain connection and waits
/// (up to 5 s) for the server to close it, which it does once the signal is
/// sent. Cancel requests are never encrypted: Postgres accepts them in the
/// clear before any authentication.
pub async fn send_cancel(target: &CancelTarget) -> std::io::Result<()> {
    let packet = wire::cancel_request(target.pid, &target.secret);
    let exchange = async {
        match &target.addr {
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
