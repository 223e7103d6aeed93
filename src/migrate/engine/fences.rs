//! How the migrator waits on what the proxies serve: every proxy serving a
//! new version (`start`), the old version's sessions standing on its views
//! (`start`), and no session left on a version being removed (`complete`,
//! `rollback`), with liveness from Postgres rather than heartbeats.

use std::time::Duration;

use super::{Migrator, Pinned};
use crate::migrate::backends;
use crate::migrate::error::MigrateError;
use crate::state::{self, Action, Phase, sessions};

impl Migrator {
    /// Waits until every live proxy serves the new version of active
    /// migration `version`, so that a client that connects once `start`
    /// has returned gets it. Errors after `proxy_timeout`, naming the
    /// proxies that do not serve it (the migration stays active).
    pub(super) async fn proxies_serve(&self, version: &str) -> Result<(), MigrateError> {
        let schema = self.schema();
        let serving = state::versions::serving(version, Phase::Active);
        let deadline = tokio::time::Instant::now() + self.settings.proxy_timeout;
        loop {
            let lagging = state::proxies::not_serving(&self.client, schema, &serving).await?;
            if lagging.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MigrateError::ProxiesBehind {
                    version: version.to_string(),
                    timeout: self.settings.proxy_timeout,
                    proxies: lagging,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Refuses (or ends, as `pinned` says) the sessions pinned to `version`,
    /// which `command` of migration `migration` is about to remove, while
    /// their upstream backends are alive: Postgres says which are
    /// (`pg_stat_activity`), not a proxy's heartbeat, so a proxy that stopped
    /// beating (SIGSTOP, a paused VM, a partition) fences nothing out.
    /// Ending asks each session's proxy to close it with a message naming
    /// the command, then terminates the backends that are still alive
    /// (`pg_terminate_backend`), so no session of the removed version
    /// survives the command.
    pub(super) async fn sessions_gone(
        &self,
        version: &str,
        command: Action,
        migration: &str,
        pinned: Pinned,
    ) -> Result<(), MigrateError> {
        let schema = self.schema();
        let alive = || sessions::alive_sessions(&self.client, schema, version);
        let sessions = alive().await?;
        if sessions.is_empty() {
            return Ok(());
        }
        if pinned == Pinned::Refuse {
            return Err(MigrateError::SessionsPinned {
                version: version.to_string(),
                command,
                sessions,
            });
        }
        let reason = format!(
            "pgshift {command} --force of migration {migration} removed version {version}, which this session was pinned to; reconnect"
        );
        tracing::warn!(count = sessions.len(), %version, "ending the sessions pinned to the version ({command} --force)");
        sessions::request_kills(&self.client, &sessions, &reason).await?;
        // Proxies that beat end their sessions within a heartbeat or two;
        // the backends of the others are terminated.
        for tick in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let left = alive().await?;
            if left.is_empty() {
                return Ok(());
            }
            if tick == 30 {
                tracing::warn!(count = left.len(), %version, "terminating the backends of sessions their proxies did not end");
                let pids: Vec<i32> = left.iter().filter_map(|s| s.backend_pid).collect();
                let unsignalled = sessions::terminate(&self.client, &pids).await?;
                if !unsignalled.is_empty() {
                    tracing::warn!(pids = ?unsignalled, "could not signal these backends");
                }
            }
        }
        Err(MigrateError::SessionsPinned {
            version: version.to_string(),
            command,
            sessions: alive().await?,
        })
    }

    /// Tells every proxy that the old version's views of migration
    /// `version` exist, and waits until each live session of the old
    /// version stands on them, as the proxies' heartbeats since then report.
    pub(super) async fn sessions_on_views(&self, version: &str) -> Result<(), MigrateError> {
        let schema = self.schema();
        let active = self.active_or_err().await?;
        let (old, old_schema) = (&active.parent, &active.old_version_schema);
        let since = state::notify(&self.client, schema).await?;
        let deadline = tokio::time::Instant::now() + self.settings.session_move_timeout;
        // A proxy publishes only the sessions it has: one whose heartbeat has
        // not come round since the NOTIFY would go unseen. After a full
        // heartbeat, every running proxy has reported.
        tokio::time::sleep(state::REPORT_WAIT).await;
        loop {
            let unmoved =
                sessions::sessions_off(&self.client, schema, old, old_schema, &since).await?;
            if unmoved.is_empty() {
                tracing::info!(%version, old_version = %old, "the old version's sessions stand on its views");
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let pids: Vec<i32> = unmoved.iter().filter_map(|s| s.backend_pid).collect();
                return Err(MigrateError::SessionsNotMoved {
                    version: old.clone(),
                    timeout: self.settings.session_move_timeout,
                    sessions: unmoved,
                    backends: backends::describe(&self.client, schema, &pids).await?,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
