//! What both directions of a session's relay know of it: requests in
//! flight and ReadyForQuery messages back, the transaction status, whether
//! the client stands between two messages, Queries of pgshift's own whose
//! replies are dropped, the session's string settings, and requests whose
//! errors pgshift replaces with its own.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::protocol::tags::status;

/// What both directions know of a session, for draining and clean-up.
///
/// Every Query, Sync and FunctionCall that the client sends is answered by
/// exactly one ReadyForQuery ("Message Flow"), so the session has a request in
/// flight exactly when fewer ReadyForQuery messages came back than such
/// messages went out.
#[derive(Debug, Default)]
pub struct SessionState {
    pub(super) sync_points_sent: AtomicU64,
    pub(super) ready_received: AtomicU64,
    /// Transaction status byte of the last ReadyForQuery: 'I', 'T' or 'E'.
    pub(super) transaction_status: AtomicU8,
    /// True while the upstream→client stream stands between two messages.
    pub(super) client_at_boundary: AtomicBool,
    /// True once the last upstream message was an ErrorResponse.
    pub(super) upstream_sent_error: AtomicBool,
    /// Set while someone waits in [`SessionState::wait_idle`].
    pub(super) watch_idle: AtomicBool,
    pub(super) became_idle: Notify,
    /// Set while the replies to a Query of pgshift's own (a session move)
    /// are due: they are dropped instead of reaching the client.
    pub(super) swallowing: AtomicBool,
    /// The error message that Query got, if any.
    pub(super) swallowed_error: Mutex<Option<String>>,
    pub(super) swallow_done: Notify,
    /// The session's standard_conforming_strings, as Postgres last
    /// reported it (ParameterStatus): how its statement texts read.
    pub(super) standard_conforming_strings: AtomicBool,
    /// Requests whose text pgshift made fail (too long to rewrite): the
    /// error Postgres answers each with is replaced by pgshift's own.
    pub(super) refused: Mutex<VecDeque<RefusedRequest>>,
    /// Where the session's request latencies go (its version's), if any.
    pub(super) latency: Option<std::sync::Arc<super::latency::Histogram>>,
    /// When each request in flight went upstream: (its sync point's
    /// number, when), at most [`MAX_TIMED`] of them.
    pub(super) sent_at: Mutex<VecDeque<(u64, std::time::Instant)>>,
}

/// Requests in flight timed at once; a client that pipelines more has the
/// rest go untimed.
const MAX_TIMED: usize = 256;

/// A request whose text pgshift made fail to parse, because it was too
/// long to hold for a rewrite it may need.
#[derive(Debug, Clone)]
pub struct RefusedRequest {
    /// Its replies come after this many ReadyForQuery messages.
    pub after_ready: u64,
    /// What the client is told instead of Postgres's syntax error.
    pub error: bytes::Bytes,
}

impl SessionState {
    /// A state for a session that has just received its first
    /// ReadyForQuery, whose statement texts read with `options` then.
    pub fn new(options: crate::rewrite::Options) -> Self {
        let state = SessionState::default();
        state
            .standard_conforming_strings
            .store(options.standard_conforming_strings, Ordering::Relaxed);
        state
            .transaction_status
            .store(status::IDLE, Ordering::Relaxed);
        state.client_at_boundary.store(true, Ordering::Relaxed);
        state
    }

    /// Times the sync point numbered `n` (1-based), just sent upstream.
    pub(super) fn request_sent(&self, n: u64) {
        if self.latency.is_none() {
            return;
        }
        let mut sent = self.sent_at.lock().expect("not poisoned");
        if sent.len() < MAX_TIMED {
            sent.push_back((n, std::time::Instant::now()));
        }
    }

    /// Records the latency of the request whose ReadyForQuery is the
    /// `n`th, unless `own` (pgshift's own query).
    pub(super) fn request_done(&self, n: u64, own: bool) {
        let Some(latency) = &self.latency else {
            return;
        };
        let mut sent = self.sent_at.lock().expect("not poisoned");
        while let Some(&(seq, at)) = sent.front() {
            if seq > n {
                break;
            }
            sent.pop_front();
            if seq == n && !own {
                latency.record(at.elapsed());
            }
        }
    }

    /// True while a request waits for its ReadyForQuery.
    pub fn busy(&self) -> bool {
        self.sync_points_sent.load(Ordering::Relaxed) != self.ready_received.load(Ordering::Relaxed)
    }

    /// True when nothing is in flight and no transaction is open.
    pub fn idle(&self) -> bool {
        !self.busy() && self.transaction_status.load(Ordering::Relaxed) == status::IDLE
    }

    /// The transaction status of the last ReadyForQuery ('I', 'T' or 'E').
    pub fn transaction_status(&self) -> u8 {
        self.transaction_status.load(Ordering::Relaxed)
    }

    /// True when pgshift may write a message of its own to the client.
    pub fn client_at_boundary(&self) -> bool {
        self.client_at_boundary.load(Ordering::Relaxed)
    }

    /// True when the last upstream message was an ErrorResponse.
    pub fn upstream_sent_error(&self) -> bool {
        self.upstream_sent_error.load(Ordering::Relaxed)
    }

    /// How the session's statement texts read now.
    pub fn rewrite_options(&self) -> crate::rewrite::Options {
        crate::rewrite::Options {
            standard_conforming_strings: self.standard_conforming_strings.load(Ordering::Relaxed),
        }
    }

    /// Records a request whose text pgshift made fail; `after_ready` is the
    /// count of ReadyForQuery messages after which its replies come.
    pub fn refuse(&self, after_ready: u64, error: bytes::Bytes) {
        self.refused
            .lock()
            .expect("not poisoned")
            .push_back(RefusedRequest { after_ready, error });
    }

    /// The replacement for an ErrorResponse with SQLSTATE `code` arriving
    /// after `ready` ReadyForQuery messages: pgshift's own error, when it
    /// made that request fail with a syntax error (42601). Forgets requests
    /// whose replies are over.
    pub fn refused_error(&self, ready: u64, code: Option<&str>) -> Option<bytes::Bytes> {
        self.refused_error_if(ready, |_| code == Some("42601"))
    }

    /// Like [`SessionState::refused_error`] for an ErrorResponse too long
    /// to read whole: Postgres's syntax error quotes the token it stopped
    /// at, and the refused text's tokens are that long. Any error of the
    /// refused request's replies is its.
    pub fn refused_error_unread(&self, ready: u64) -> Option<bytes::Bytes> {
        self.refused_error_if(ready, |_| true)
    }

    fn refused_error_if(
        &self,
        ready: u64,
        matches: impl Fn(&RefusedRequest) -> bool,
    ) -> Option<bytes::Bytes> {
        let mut refused = self.refused.lock().expect("not poisoned");
        while refused.front().is_some_and(|r| r.after_ready < ready) {
            refused.pop_front();
        }
        let next = refused.front()?;
        if next.after_ready != ready || !matches(next) {
            return None;
        }
        refused.pop_front().map(|r| r.error)
    }

    /// True while pgshift waits for the error of a request it made fail.
    pub fn awaits_refused_error(&self) -> bool {
        !self.refused.lock().expect("not poisoned").is_empty()
    }

    /// Waits until the session is idle. Any number of tasks may wait.
    pub async fn wait_idle(&self) {
        self.watch_idle.store(true, Ordering::Relaxed);
        loop {
            let notified = self.became_idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.idle() {
                return;
            }
            notified.await;
        }
    }

    /// Sends `query`, a simple Query of pgshift's own, and waits for its
    /// ReadyForQuery; its replies never reach the client. Call only while
    /// the session is idle and between two client messages. Errors: the
    /// message of the query's ErrorResponse, or the write's failure.
    pub(super) async fn run_own_query<W: AsyncWrite + Unpin>(
        &self,
        upstream: &mut W,
        query: &[u8],
    ) -> Result<Result<(), String>, std::io::Error> {
        let done = self.swallow_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        self.swallowing.store(true, Ordering::Relaxed);
        self.sync_points_sent.fetch_add(1, Ordering::Relaxed);
        upstream.write_all(query).await?;
        upstream.flush().await?;
        done.await;
        Ok(
            match self.swallowed_error.lock().expect("not poisoned").take() {
                Some(message) => Err(message),
                None => Ok(()),
            },
        )
    }
}
