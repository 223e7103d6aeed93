//! Query cancellation: the BackendKeyData that pgshift hands each client, and
//! the routing of a client's CancelRequest to the upstream backend it stands for
//! (PostgreSQL docs, "Frontend/Backend Protocol", "Canceling Requests in Progress").

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use bytes::Bytes;
use dashmap::DashMap;

use crate::net::UpstreamAddr;

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
    map: DashMap<i32, (i32, Option<Arc<CancelTarget>>)>,
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
        self.map.insert(pid, (secret, Some(Arc::new(target))));
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
        if secret != ours.to_be_bytes() {
            return None;
        }
        target.as_deref().cloned()
    }
}

impl CancelKey {
    /// The upstream backend this key stands for.
    pub fn target(&self) -> Option<CancelTarget> {
        self.registry
            .map
            .get(&self.pid)
            .and_then(|entry| entry.value().1.as_deref().cloned())
    }

    /// Points the key at `target`: the server a pooled client holds for
    /// its transaction, or none between transactions (a CancelRequest then
    /// has nothing to cancel, as a direct one would not).
    pub fn retarget(&self, target: Option<Arc<CancelTarget>>) {
        if let Some(mut entry) = self.registry.map.get_mut(&self.pid) {
            entry.value_mut().1 = target;
        }
    }
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.registry.map.remove(&self.pid);
    }
}

impl CancelTarget {
    /// Delivers a CancelRequest to this backend; see
    /// [`crate::net::upstream::send_cancel`].
    pub async fn send(&self) -> std::io::Result<()> {
        crate::net::upstream::send_cancel(&self.addr, self.pid, &self.secret).await
    }
}
