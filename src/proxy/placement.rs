//! Keeps a live session on its version while migrations come and go. A
//! session that connected with no migration running stands on the physical
//! tables; when a `start` has built the old version's views, the session is
//! moved onto them (its search_path gets the version schema first) at its
//! first moment outside a transaction, before any physical table changes.
//! Its statements are rewritten against its version's views while the
//! migration runs, and go through untouched once it has ended
//! (ARCHITECTURE.md, "Invariants").

use std::sync::Arc;

use tokio::sync::watch;

use super::registry::SessionInfo;
use super::rewriter::SessionRewriter;
use super::versions::Snapshot;
use crate::quote;
use crate::state::VERSION_SETTING;

/// True when `sql` holds the word RESET or DISCARD (any case), not as part
/// of a longer identifier such as `password_reset`.
fn mentions_reset(sql: &[u8]) -> bool {
    mentions_any(sql, &[b"reset", b"discard"])
}

/// True when `sql` holds one of `words` (lowercase ASCII, matched in any
/// case) as a whole word: not as part of a longer identifier.
pub(super) fn mentions_any(sql: &[u8], words: &[&[u8]]) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    words.iter().any(|kw| {
        sql.windows(kw.len()).enumerate().any(|(i, w)| {
            w.eq_ignore_ascii_case(kw)
                && (i == 0 || !word(sql[i - 1]))
                && sql.get(i + kw.len()).is_none_or(|b| !word(*b))
        })
    })
}

/// Where one session stands, and how it follows version changes.
pub struct Placement {
    /// The version the session is pinned to; it never changes.
    version: String,
    /// The version schema that heads the session's search_path, as pgshift
    /// set it (`None`: the physical schema).
    on: Option<String>,
    /// The one its startup packet set: what `RESET ALL`, `DISCARD ALL` and
    /// `RESET search_path` return the session to.
    at_startup: Option<String>,
    /// The version schema the session must move onto at its next idle point.
    pending_move: Option<String>,
    versions: watch::Receiver<Snapshot>,
    /// False once the version watch has gone (the proxy is stopping).
    watching: bool,
    /// Set while a migration runs and the session's version has views.
    pub rewriter: Option<SessionRewriter>,
    /// The registry's record of the session, which publishes `on`.
    info: Option<Arc<SessionInfo>>,
    /// True once the latest versions no longer serve `version` (a
    /// complete or rollback removed it).
    gone: bool,
}

impl Placement {
    /// A session pinned to `version`, standing on `on`, rewritten against
    /// `view`, following `versions` from the snapshot it was routed with.
    pub fn new(
        version: String,
        on: Option<String>,
        view: Option<crate::rewrite::VersionView>,
        mut versions: watch::Receiver<Snapshot>,
        info: Option<Arc<SessionInfo>>,
    ) -> Placement {
        // The session was routed with the snapshot current at its startup;
        // a change since then is applied at the relay's first turn.
        versions.mark_changed();
        Placement {
            version,
            at_startup: on.clone(),
            on,
            pending_move: None,
            versions,
            watching: true,
            rewriter: view.map(SessionRewriter::new),
            info,
            gone: false,
        }
    }

    /// The version the session is pinned to.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// True once the latest versions no longer serve the session's version.
    pub fn gone(&self) -> bool {
        self.gone
    }

    /// Waits for the versions to change, then applies the change: the
    /// rewriter follows the session's version's views, and a session on
    /// the physical tables gets a pending move. Never resolves once the
    /// watch has gone.
    pub async fn changed(&mut self) {
        if !self.watching || self.versions.changed().await.is_err() {
            self.watching = false;
            return std::future::pending().await;
        }
        self.refresh();
    }

    /// Applies the latest snapshot, if it changed since the last look.
    pub fn refresh_if_changed(&mut self) {
        if self.watching && self.versions.has_changed().unwrap_or(false) {
            self.refresh();
        }
    }

    fn refresh(&mut self) {
        let Some(versions) = self.versions.borrow_and_update().clone() else {
            return;
        };
        self.gone = !versions.live().contains_key(&self.version);
        let (target, view) = crate::routing::placement(&versions, &self.version);
        if self.rewriter.as_ref().map(|r| r.view()) != view.as_ref() {
            let counts = self
                .rewriter
                .as_ref()
                .map_or((0, 0), |r| (r.hits, r.misses));
            self.rewriter = view.map(|view| {
                let mut rewriter = SessionRewriter::new(view);
                (rewriter.hits, rewriter.misses) = counts;
                rewriter
            });
        }
        self.aim(target);
    }

    /// Sets the pending move for `target`, the schema the session should
    /// stand on. A schema that is gone (after a rollback) costs nothing on
    /// the search_path; only a schema to stand on needs a move.
    fn aim(&mut self, target: Option<String>) {
        self.pending_move = target.filter(|t| self.on.as_ref() != Some(t));
    }

    /// Notes that the client may have reset its search_path (`frame` is a
    /// whole Query or Parse): a session that pgshift moved is back on its
    /// startup search_path then, and is moved again at its next idle point.
    /// A false alarm costs one more move, which changes nothing.
    pub fn note_reset(&mut self, frame: &[u8]) {
        if self.on == self.at_startup {
            return;
        }
        if mentions_reset(frame) {
            self.back_at_startup();
        }
    }

    /// Records that the session's search_path is the one its startup
    /// packet set (after a `RESET search_path` of pgshift's own), and aims
    /// a move again when its version has a schema to stand on.
    pub fn back_at_startup(&mut self) {
        self.on = self.at_startup.clone();
        if let Some(info) = &self.info {
            info.set_version_schema(self.on.clone());
        }
        let versions = self.versions.borrow().clone();
        if let Some(versions) = versions {
            self.aim(crate::routing::placement(&versions, &self.version).0);
        }
    }

    /// True while the session should move at its next idle point.
    pub fn move_pending(&self) -> bool {
        self.pending_move.is_some()
    }

    /// The simple Query that moves the session: its version schema goes first
    /// on the search_path it has now (unless it is first already, so a move
    /// repeated after a false alarm changes nothing), and `pgshift.version`
    /// names its version. Its replies (one row, CommandComplete,
    /// ReadyForQuery) are pgshift's, not the client's.
    pub fn move_query(&self) -> Option<Vec<u8>> {
        let schema = self.pending_move.as_ref()?;
        let head = quote::literal(&quote::ident(schema));
        let path = "pg_catalog.current_setting('search_path')";
        let sql = format!(
            "SELECT pg_catalog.set_config('search_path', CASE \
             WHEN {path} = '' THEN {head} \
             WHEN {path} = {head} OR pg_catalog.starts_with({path}, {head} || ',') THEN {path} \
             ELSE {head} || ', ' || {path} END, false), \
             pg_catalog.set_config({}, {}, false)",
            quote::literal(VERSION_SETTING),
            quote::literal(&self.version)
        );
        Some(crate::protocol::messages::query(&sql))
    }

    /// Records the outcome of the move [`Placement::move_query`] asked for:
    /// on success the session stands on its version schema (and the
    /// registry says so); a failure is logged and not retried.
    pub fn moved(&mut self, outcome: Result<(), String>) {
        let Some(schema) = self.pending_move.take() else {
            return;
        };
        match outcome {
            Ok(()) => {
                tracing::info!(version = %self.version, version_schema = %schema, "session moved onto its version's views");
                if let Some(info) = &self.info {
                    info.set_version_schema(Some(schema.clone()));
                }
                self.on = Some(schema);
            }
            Err(e) => {
                tracing::warn!(version = %self.version, version_schema = %schema, error = %e, "could not move the session onto its version's views")
            }
        }
    }
}

#[cfg(test)]
mod tests;
