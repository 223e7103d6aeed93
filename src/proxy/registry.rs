//! The proxy's live sessions and their versions, published to the state
//! schema once a second, so that the migrator sees the sessions of every
//! proxy (a proxy that dies stops its heartbeat, and its sessions expire).
//! The same task picks up the kill requests that a forced complete or
//! rollback leaves for this proxy's sessions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dashmap::DashMap;
use tokio::sync::Notify;

use super::latency::Histogram;
use crate::net::UpstreamConfig;
use crate::state::HEARTBEAT;
use crate::state::sessions::{self, SessionReport};

/// One session pinned to a version.
#[derive(Debug)]
pub struct SessionInfo {
    pub version: String,
    /// The configured route the session belongs to, if any.
    pub route: Option<String>,
    pub application_name: String,
    pub client_addr: String,
    pub since: SystemTime,
    /// The process id of the session's upstream backend (BackendKeyData).
    pub backend_pid: Option<i32>,
    /// The version schema heading the session's search_path (`None`: the
    /// physical schema); `start` waits until the old version's sessions
    /// stand on its views.
    version_schema: Mutex<Option<String>>,
    kill_reason: Mutex<Option<String>>,
    killed: Notify,
    /// Where the session's request latencies go: its version's histogram.
    pub latency: Arc<Histogram>,
}

impl SessionInfo {
    /// The version schema the session stands on (`None`: the physical schema).
    pub fn version_schema(&self) -> Option<String> {
        self.version_schema.lock().expect("not poisoned").clone()
    }

    /// Records the version schema the session now stands on.
    pub fn set_version_schema(&self, schema: Option<String>) {
        *self.version_schema.lock().expect("not poisoned") = schema;
    }

    /// Resolves with the reason once the session has been asked to end.
    pub async fn killed(&self) -> String {
        loop {
            if let Some(reason) = self.kill_reason.lock().expect("not poisoned").clone() {
                return reason;
            }
            self.killed.notified().await;
        }
    }
}

/// The sessions of this proxy, by session id.
#[derive(Debug)]
pub struct Registry {
    /// How this proxy names itself in the state schema: listen address and pid.
    pub proxy: String,
    schema: String,
    next_id: AtomicU64,
    sessions: DashMap<u64, Arc<SessionInfo>>,
    /// Request latencies per version, for the heartbeat to publish.
    latency: DashMap<String, Arc<Histogram>>,
}

/// A registered session; dropping it unregisters the session.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    pub id: u64,
    pub info: Arc<SessionInfo>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.id);
    }
}

impl Registry {
    /// An empty registry for the proxy named `proxy`, routing on `schema`.
    pub fn new(proxy: String, schema: String) -> Arc<Registry> {
        Arc::new(Registry {
            proxy,
            schema,
            next_id: AtomicU64::new(1),
            sessions: DashMap::new(),
            latency: DashMap::new(),
        })
    }

    /// Records a session routed by `route`, served by the upstream backend
    /// `backend_pid`.
    pub fn register(
        self: &Arc<Self>,
        route: &crate::routing::Route,
        application_name: String,
        client_addr: String,
        backend_pid: Option<i32>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(SessionInfo {
            version: route.version.clone(),
            route: route.route.clone(),
            application_name,
            client_addr,
            since: SystemTime::now(),
            backend_pid,
            version_schema: Mutex::new(route.version_schema.clone()),
            kill_reason: Mutex::new(None),
            killed: Notify::new(),
            latency: Arc::clone(
                self.latency
                    .entry(route.version.clone())
                    .or_default()
                    .value(),
            ),
        });
        self.sessions.insert(id, Arc::clone(&info));
        Registration {
            registry: Arc::clone(self),
            id,
            info,
        }
    }

    /// This proxy's sessions, by id.
    pub fn sessions(&self) -> Vec<(u64, Arc<SessionInfo>)> {
        let mut all: Vec<_> = self
            .sessions
            .iter()
            .map(|e| (*e.key(), Arc::clone(e.value())))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Asks session `id` to end with `reason`; false if it is gone already.
    pub fn kill(&self, id: u64, reason: String) -> bool {
        match self.sessions.get(&id) {
            Some(info) => {
                *info.kill_reason.lock().expect("not poisoned") = Some(reason);
                info.killed.notify_one();
                true
            }
            None => false,
        }
    }

    /// Publishes the sessions and applies kill requests, once. Errors are
    /// the database's (a missing state schema is the caller's to ignore).
    async fn beat(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<(), crate::state::StateError> {
        let reports: Vec<SessionReport> = self
            .sessions
            .iter()
            .map(|entry| SessionReport {
                id: *entry.key(),
                version: entry.version.clone(),
                application_name: entry.application_name.clone(),
                client_addr: entry.client_addr.clone(),
                since: entry.since,
                version_schema: entry.version_schema(),
                backend_pid: entry.backend_pid,
            })
            .collect();
        let latency: serde_json::Map<String, serde_json::Value> = self
            .latency
            .iter()
            .filter_map(|e| {
                let summary = e.value().take()?;
                Some((e.key().clone(), serde_json::to_value(summary).ok()?))
            })
            .collect();
        let latency = serde_json::Value::Object(latency);
        let kills =
            sessions::publish(client, &self.proxy, &self.schema, &reports, &latency).await?;
        for (id, reason) in kills {
            if self.kill(id, reason.clone()) {
                tracing::warn!(session = id, %reason, "ending a session on the migrator's request");
            }
        }
        Ok(())
    }
}

/// Runs the heartbeat until the runtime stops.
pub fn spawn_heartbeat(registry: Arc<Registry>, upstream: UpstreamConfig) {
    tokio::spawn(async move {
        loop {
            match crate::state::connect(&upstream, None).await {
                Ok(mut client) => loop {
                    match registry.beat(&mut client).await {
                        Ok(()) => {}
                        // No state schema yet: nothing to publish to.
                        Err(e)
                            if e.code()
                                == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "session heartbeat failed; reconnecting");
                            break;
                        }
                    }
                    tokio::time::sleep(HEARTBEAT).await;
                },
                Err(e) => {
                    tracing::debug!(error = %e, "no connection for the session heartbeat; retrying")
                }
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    });
}
