//! One server connection of a pool: its socket, its cancel key, the
//! ParameterStatus settings it has, where its search_path stands (its
//! version's [`Placement`]), and the statements pgshift prepared on it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use lru::LruCache;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::net::Stream;
use crate::net::read::read_message;
use crate::protocol::messages::{self, TERMINATE};
use crate::protocol::tags::backend;
use crate::proxy::cancel::CancelTarget;
use crate::proxy::placement::Placement;
use crate::quote;

/// The settings Postgres reports (ParameterStatus) that a pool keeps in
/// step per client: before a client's transaction, its server gets the
/// client's values of these (pgbouncer's tracked parameters). Others that
/// a client SETs stay on the server it ran on; README says so.
pub const TRACKED: [&str; 6] = [
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
];

/// Tracked settings by name, as last reported.
pub type Params = BTreeMap<String, String>;

/// Records `frame` (a whole ParameterStatus) in `params` when it is a
/// tracked setting.
pub fn note_parameter(params: &mut Params, frame: &[u8]) {
    if let Some((name, value)) = messages::parameter_status(frame)
        && TRACKED.contains(&name)
    {
        params.insert(name.to_string(), value.to_string());
    }
}

/// Longest message read from a server outside a client's transaction.
const MAX_OWN_REPLY: usize = 1 << 20;

/// One server connection.
pub struct Server {
    pub stream: Stream,
    /// Bytes read from the server and not yet handled (empty while idle).
    pub buf: BytesMut,
    /// The backend's process id (BackendKeyData).
    pub pid: i32,
    /// Where a CancelRequest for this backend goes.
    pub cancel: std::sync::Arc<CancelTarget>,
    /// The tracked settings the server has now.
    pub params: Params,
    /// The server's version and where its search_path stands.
    pub placement: Placement,
    /// pgshift's names of the statements prepared on the server.
    pub statements: LruCache<Vec<u8>, ()>,
    pub created: Instant,
    pub idle_since: Instant,
    /// A client's statement may have changed the search_path, or dropped
    /// prepared statements: both are put right before the next client.
    pub tainted: bool,
    /// The session thread whose runtime drives the socket.
    pub thread: std::thread::ThreadId,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("pid", &self.pid)
            .field("version", &self.placement.version())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server from the backend a login opened, with the settings its
    /// startup reported, keeping at most `max_prepared` statements.
    pub fn new(
        stream: Stream,
        buf: BytesMut,
        cancel: CancelTarget,
        params: Params,
        placement: Placement,
        max_prepared: usize,
    ) -> Server {
        let now = Instant::now();
        let capacity = std::num::NonZeroUsize::new(max_prepared.max(1)).expect("at least 1");
        Server {
            stream,
            buf,
            pid: cancel.pid,
            cancel: std::sync::Arc::new(cancel),
            params,
            placement,
            statements: LruCache::new(capacity),
            created: now,
            idle_since: now,
            tainted: false,
            thread: std::thread::current().id(),
        }
    }

    /// False when the server has closed its end or sent something while
    /// idle (Postgres says FATAL before it goes): one look, no waiting.
    pub fn is_alive(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        let mut read = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut read)
            .is_pending()
    }

    /// Puts the server right for a client whose tracked settings are
    /// `client`: its search_path back where pgshift set it (after a
    /// client's statement may have changed it), onto its version's views
    /// when a migration has built them since, and the client's settings.
    /// Errors: the connection failed, or Postgres refused a statement.
    pub async fn prepare_for(&mut self, client: &Params) -> Result<(), String> {
        if self.tainted {
            let sql = format!(
                "RESET search_path; SELECT pg_catalog.set_config({}, {}, false)",
                quote::literal(crate::state::VERSION_SETTING),
                quote::literal(self.placement.version())
            );
            self.run(messages::query(&sql)).await?;
            self.statements.clear();
            self.placement.back_at_startup();
            self.tainted = false;
        }
        self.placement.refresh_if_changed();
        if let Some(query) = self.placement.move_query() {
            let outcome = self.run(query).await;
            self.placement.moved(outcome.clone());
            outcome?;
        }
        let sets: Vec<String> = client
            .iter()
            .filter(|(name, value)| self.params.get(*name) != Some(value))
            .map(|(name, value)| {
                format!(
                    "SELECT pg_catalog.set_config({}, {}, false)",
                    quote::literal(name),
                    quote::literal(value)
                )
            })
            .collect();
        if !sets.is_empty() {
            self.run(messages::query(&sets.join("; "))).await?;
        }
        Ok(())
    }

    /// Runs `query` (a whole Query message) and reads its replies up to
    /// ReadyForQuery, noting ParameterStatus. Errors: Postgres's error
    /// message, or the connection's failure.
    pub async fn run(&mut self, query: Vec<u8>) -> Result<(), String> {
        let lost = |e: std::io::Error| format!("the connection to Postgres failed: {e}");
        self.stream.write_all(&query).await.map_err(lost)?;
        self.stream.flush().await.map_err(lost)?;
        let mut error = None;
        loop {
            let frame = read_message(&mut self.stream, &mut self.buf, MAX_OWN_REPLY)
                .await
                .map_err(|e| format!("the connection to Postgres failed: {e}"))?
                .ok_or("Postgres closed the connection")?;
            match frame[0] {
                backend::PARAMETER_STATUS => note_parameter(&mut self.params, &frame),
                backend::ERROR_RESPONSE => error = Some(messages::error_message(&frame)),
                backend::READY_FOR_QUERY => break,
                _ => {}
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// Ends the server's session (Terminate, then close), waiting at most
    /// a moment for a socket that does not take the bytes.
    pub async fn close(mut self, why: &str) {
        tracing::debug!(pid = self.pid, version = %self.placement.version(), why, "closing a pooled server connection");
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.stream.write_all(&TERMINATE).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}
