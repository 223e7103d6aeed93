//! The proxy's view of the live schema versions: a control connection to the
//! upstream that LISTENs on the migrator's channel and reloads the versions
//! after a NOTIFY (and every few seconds in case one was missed), so a
//! migration's start or end reaches every proxy at once. Any role may
//! NOTIFY, so payloads are never read and reloads are coalesced: one runs,
//! at most one more is pending, and they are at least [`RELOAD_GAP`] apart. Sessions read the
//! latest snapshot at startup without waiting, and subscribe to follow the
//! changes that move them (onto the old version's views at a start; off the
//! rewrites when the migration ends).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::net::UpstreamConfig;
use crate::state::versions::Versions;
use crate::state::{self, NOTIFY_CHANNEL};

/// How long a snapshot may go without a reload when no NOTIFY arrives.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The shortest time between two reloads: a flood of NOTIFYs costs at most
/// one reload per gap.
pub const RELOAD_GAP: Duration = Duration::from_millis(50);

/// A snapshot of the versions as sessions see it; `None` until the first
/// load succeeds.
pub type Snapshot = Option<Arc<Versions>>;

/// The latest known versions.
#[derive(Debug)]
pub struct VersionWatch {
    latest: watch::Sender<Snapshot>,
}

impl Default for VersionWatch {
    fn default() -> Self {
        VersionWatch {
            latest: watch::Sender::new(None),
        }
    }
}

impl VersionWatch {
    /// The latest snapshot, or `None` when the versions were never read.
    pub fn snapshot(&self) -> Snapshot {
        self.latest.borrow().clone()
    }

    /// The latest snapshot, waiting up to `limit` for the first load (a
    /// proxy that has just started); `None` when the versions stay unknown.
    pub async fn loaded(&self, limit: Duration) -> Snapshot {
        let mut rx = self.latest.subscribe();
        match tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await {
            Ok(Ok(snapshot)) => snapshot.clone(),
            _ => None,
        }
    }

    /// A receiver that wakes when the versions change (not on reloads that
    /// find them unchanged).
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.latest.subscribe()
    }

    fn set(&self, versions: Versions) {
        self.latest.send_if_modified(|latest| {
            if latest.as_deref() == Some(&versions) {
                return false;
            }
            tracing::info!(
                current = %versions.current,
                migration = ?versions.migration.as_ref().map(|m| (&m.old, &m.new, m.phase)),
                "schema versions changed"
            );
            *latest = Some(Arc::new(versions));
            true
        });
    }
}

/// Starts watching `schema` on `upstream` for the proxy named `proxy`; the
/// task runs until the runtime stops.
pub fn spawn(upstream: UpstreamConfig, schema: String, proxy: String) -> Arc<VersionWatch> {
    let watch = Arc::new(VersionWatch::default());
    tokio::spawn(run(Arc::clone(&watch), upstream, schema, proxy));
    watch
}

/// Records in `pgshift.proxies` that the proxy serves `serving` (a
/// [`Versions::serving`] token) on `schema`: `start` waits for every live
/// proxy to serve its new version. A database without the state schema
/// has nothing to record. True once recorded.
async fn acknowledge(
    client: &tokio_postgres::Client,
    proxy: &str,
    schema: &str,
    serving: &str,
) -> bool {
    match state::proxies::serving(client, proxy, schema, serving).await {
        Ok(()) => true,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => false,
        Err(e) => {
            tracing::warn!(error = %e, serving, "cannot record what this proxy serves");
            false
        }
    }
}

async fn run(watch: Arc<VersionWatch>, upstream: UpstreamConfig, schema: String, proxy: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let wake = Arc::new(Notify::new());
        match state::connect(&upstream, Some(Arc::clone(&wake))).await {
            Ok(client) => {
                let listen = format!("LISTEN {}", crate::quote::ident(NOTIFY_CHANNEL));
                // What this connection last recorded the proxy serves.
                let mut served: Option<String> = None;
                match client.batch_execute(&listen).await {
                    Ok(()) => loop {
                        match state::versions::load(&client, &schema).await {
                            Ok(versions) => {
                                backoff = Duration::from_millis(100);
                                let serving = versions.serving();
                                watch.set(versions);
                                // Once sessions can be routed by the snapshot.
                                if served.as_ref() != Some(&serving)
                                    && acknowledge(&client, &proxy, &schema, &serving).await
                                {
                                    served = Some(serving);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read the schema versions; retrying");
                                break;
                            }
                        }
                        tokio::time::sleep(RELOAD_GAP).await;
                        if client.is_closed() {
                            break;
                        }
                        let _ = tokio::time::timeout(RELOAD_EVERY, wake.notified()).await;
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for version changes; retrying")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no control connection to Postgres for version routing; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
