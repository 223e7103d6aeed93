//! The data path of an established session: client→upstream and
//! upstream→client byte relays that forward raw chunks as they arrive, walking
//! only message headers with [`FrameScanner`]. The two directions run
//! concurrently in one task, so neither can block the other.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::SessionError;
use super::placement::Placement;
use crate::protocol::messages;
use crate::protocol::tags::{backend, frontend, status};
use crate::protocol::{FrameScanner, FrameVisitor, Want, WireError};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 32 * 1024;

/// What both directions know of a session, for draining and clean-up.
///
/// Every Query, Sync and FunctionCall that the client sends is answered by
/// exactly one ReadyForQuery ("Message Flow"), so the session has a request in
/// flight exactly when fewer ReadyForQuery messages came back than such
/// messages went out.
#[derive(Debug, Default)]
pub struct SessionState {
    sync_points_sent: AtomicU64,
    ready_received: AtomicU64,
    /// Transaction status byte of the last ReadyForQuery: 'I', 'T' or 'E'.
    transaction_status: AtomicU8,
    /// True while the upstream→client stream stands between two messages.
    client_at_boundary: AtomicBool,
    /// True once the last upstream message was an ErrorResponse.
    upstream_sent_error: AtomicBool,
    /// Set while someone waits in [`SessionState::wait_idle`].
    watch_idle: AtomicBool,
    became_idle: Notify,
    /// Set while the replies to a Query of pgshift's own (a session move)
    /// are due: they are dropped instead of reaching the client.
    swallowing: AtomicBool,
    /// The error message that Query got, if any.
    swallowed_error: Mutex<Option<String>>,
    swallow_done: Notify,
}

impl SessionState {
    /// A state for a session that has just received its first ReadyForQuery.
    pub fn new() -> Self {
        let state = SessionState::default();
        state
            .transaction_status
            .store(status::IDLE, Ordering::Relaxed);
        state.client_at_boundary.store(true, Ordering::Relaxed);
        state
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
    async fn run_own_query<W: AsyncWrite + Unpin>(
        &self,
        upstream: &mut W,
        query: &[u8],
    ) -> Result<Result<(), String>, std::io::Error> {
        let done = self.swallow_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        self.swallowing.store(true, Ordering::Relaxed);
        self.sync_points_sent.fetch_add(1, Ordering::Relaxed);
        write_flush(upstream, query).await?;
        done.await;
        Ok(
            match self.swallowed_error.lock().expect("not poisoned").take() {
                Some(message) => Err(message),
                None => Ok(()),
            },
        )
    }
}

/// How one direction of the relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// The client sent Terminate (already forwarded).
    ClientTerminated,
    /// The client closed its connection without Terminate.
    ClientClosed,
    /// The client broke the protocol or a limit; it should be told why.
    ClientViolation(SessionError),
    /// Reading from or writing to the client failed.
    ClientIo(std::io::Error),
    /// The upstream closed its connection.
    UpstreamClosed,
    /// Reading from or writing to the upstream failed.
    UpstreamIo(std::io::Error),
}

/// Limits the client→upstream direction enforces.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Longest message body accepted, in bytes.
    pub max_message_length: usize,
    /// How long a begun message may take to complete.
    pub message_timeout: Duration,
}

/// Checks each frontend message header, counts requests, spots Terminate,
/// and rewrites Query and Parse messages when the session has a rewriter.
struct ClientFrames<'a> {
    state: &'a SessionState,
    limits: ClientLimits,
    terminated: bool,
    /// True after an extended-protocol message that no Sync has closed yet.
    unsynced: bool,
    placement: Option<&'a mut Placement>,
    /// (offset, length, replacement) of frames rewritten in the current scan.
    replacements: Vec<(usize, usize, Vec<u8>)>,
}

impl FrameVisitor for ClientFrames<'_> {
    type Error = SessionError;

    fn header(&mut self, tag: u8, len: u32) -> Result<Want, SessionError> {
        if !frontend::is_known(tag) {
            return Err(SessionError::UnknownMessage(tag));
        }
        let body = len as usize - 4;
        if body > self.limits.max_message_length {
            return Err(SessionError::MessageTooLong {
                tag: tag as char,
                len: body,
                max: self.limits.max_message_length,
            });
        }
        match tag {
            tag if frontend::is_sync_point(tag) => {
                self.state.sync_points_sent.fetch_add(1, Ordering::Relaxed);
                self.unsynced = false;
            }
            frontend::TERMINATE => self.terminated = true,
            _ => self.unsynced = true,
        }
        if matches!(tag, frontend::QUERY | frontend::PARSE)
            && self
                .placement
                .as_ref()
                .is_some_and(|p| p.rewriter.is_some())
        {
            return Ok(Want::Whole);
        }
        Ok(Want::Header)
    }

    fn frame(&mut self, at: usize, frame: &[u8]) -> Result<(), SessionError> {
        let Some(placement) = self.placement.as_deref_mut() else {
            return Ok(());
        };
        placement.note_reset(frame);
        if let Some(new) = placement
            .rewriter
            .as_mut()
            .and_then(|r| r.rewrite_frame(frame))
        {
            self.replacements.push((at, frame.len(), new));
        }
        Ok(())
    }
}

/// Relays client bytes to the upstream until the client leaves or misbehaves.
/// `buf` holds bytes the client sent before the relay began. A session with
/// a `placement` follows version changes between messages: its rewriter is
/// swapped, and a pending move runs as soon as the session is idle.
pub async fn client_to_upstream<R, W>(
    client: &mut R,
    upstream: &mut W,
    mut buf: BytesMut,
    state: &SessionState,
    limits: ClientLimits,
    placement: Option<&mut Placement>,
) -> RelayEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut scanner = FrameScanner::default();
    let mut frames = ClientFrames {
        state,
        limits,
        terminated: false,
        unsynced: false,
        placement,
        replacements: Vec::new(),
    };
    loop {
        if let Some(p) = frames.placement.as_deref_mut() {
            p.refresh_if_changed();
            if p.move_pending()
                && buf.is_empty()
                && !scanner.mid_frame(0)
                && !frames.unsynced
                && state.idle()
                && let Some(query) = p.move_query()
            {
                match state.run_own_query(upstream, &query).await {
                    Ok(outcome) => p.moved(outcome),
                    Err(e) => return RelayEnd::UpstreamIo(e),
                }
            }
        }
        if !buf.is_empty() {
            let ready = match scanner.scan(&buf, &mut frames) {
                Ok(n) => n,
                Err(e) => return RelayEnd::ClientViolation(e),
            };
            if ready > 0 {
                let written = if frames.replacements.is_empty() {
                    write_flush(upstream, &buf[..ready]).await
                } else {
                    let spliced = splice(&buf[..ready], &frames.replacements);
                    frames.replacements.clear();
                    write_flush(upstream, &spliced).await
                };
                if let Err(e) = written {
                    return RelayEnd::UpstreamIo(e);
                }
                buf.advance(ready);
            }
            if frames.terminated {
                return RelayEnd::ClientTerminated;
            }
        }
        buf.reserve(READ_CHUNK);
        let read = if scanner.mid_frame(buf.len()) {
            match tokio::time::timeout(limits.message_timeout, client.read_buf(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    return RelayEnd::ClientViolation(SessionError::MessageTimeout(
                        limits.message_timeout,
                    ));
                }
            }
        } else if let Some(p) = frames.placement.as_deref_mut() {
            // Reading is cancel-safe: a branch that wins loses no client byte.
            let must_move = p.move_pending() && !frames.unsynced;
            tokio::select! {
                read = client.read_buf(&mut buf) => read,
                () = p.changed() => continue,
                () = state.wait_idle(), if must_move && !state.idle() => continue,
            }
        } else {
            client.read_buf(&mut buf).await
        };
        match read {
            Ok(0) => return RelayEnd::ClientClosed,
            Ok(_) => {}
            Err(e) => return RelayEnd::ClientIo(e),
        }
    }
}

/// Watches ReadyForQuery and ErrorResponse headers on their way to the
/// client, and drops the replies to pgshift's own queries.
struct UpstreamFrames<'a> {
    state: &'a SessionState,
    /// (offset, length, nothing) of the frames dropped in the current scan.
    dropped: Vec<(usize, usize, Vec<u8>)>,
}

/// The replies a simple Query of pgshift's own gets ("Simple Query"):
/// RowDescription, DataRow, CommandComplete, EmptyQueryResponse,
/// ErrorResponse and ReadyForQuery. Asynchronous messages (NoticeResponse,
/// NotificationResponse, ParameterStatus) still reach the client.
const OWN_QUERY_REPLIES: &[u8] = &[
    backend::ROW_DESCRIPTION,
    backend::DATA_ROW,
    backend::COMMAND_COMPLETE,
    backend::EMPTY_QUERY,
    backend::ERROR_RESPONSE,
    backend::READY_FOR_QUERY,
];

impl FrameVisitor for UpstreamFrames<'_> {
    type Error = WireError;

    fn header(&mut self, tag: u8, _len: u32) -> Result<Want, WireError> {
        let state = self.state;
        if state.swallowing.load(Ordering::Relaxed) && OWN_QUERY_REPLIES.contains(&tag) {
            return Ok(Want::Whole);
        }
        state
            .upstream_sent_error
            .store(tag == backend::ERROR_RESPONSE, Ordering::Relaxed);
        Ok(if tag == backend::READY_FOR_QUERY {
            Want::Whole
        } else {
            Want::Header
        })
    }

    fn frame(&mut self, at: usize, frame: &[u8]) -> Result<(), WireError> {
        let state = self.state;
        let own = state.swallowing.load(Ordering::Relaxed);
        if own {
            self.dropped.push((at, frame.len(), Vec::new()));
            if frame[0] == backend::ERROR_RESPONSE {
                *state.swallowed_error.lock().expect("not poisoned") =
                    Some(messages::error_message(frame));
            }
            if frame[0] != backend::READY_FOR_QUERY {
                return Ok(());
            }
        }
        let status = messages::ready_status(frame);
        state.transaction_status.store(status, Ordering::Relaxed);
        state.ready_received.fetch_add(1, Ordering::Relaxed);
        if own {
            state.swallowing.store(false, Ordering::Relaxed);
            state.swallow_done.notify_one();
        }
        if state.watch_idle.load(Ordering::Relaxed) && state.idle() {
            state.became_idle.notify_waiters();
        }
        Ok(())
    }
}

/// Relays upstream bytes to the client until either side closes.
/// `buf` holds bytes the upstream sent before the relay began.
pub async fn upstream_to_client<R, W>(
    upstream: &mut R,
    client: &mut W,
    mut buf: BytesMut,
    state: &SessionState,
) -> RelayEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut scanner = FrameScanner::default();
    let mut frames = UpstreamFrames {
        state,
        dropped: Vec::new(),
    };
    loop {
        if !buf.is_empty() {
            let ready = match scanner.scan(&buf, &mut frames) {
                Ok(n) => n,
                Err(e) => {
                    return RelayEnd::UpstreamIo(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    ));
                }
            };
            if ready > 0 {
                state.client_at_boundary.store(false, Ordering::Relaxed);
                let written = if frames.dropped.is_empty() {
                    write_flush(client, &buf[..ready]).await
                } else {
                    let kept = splice(&buf[..ready], &frames.dropped);
                    frames.dropped.clear();
                    write_flush(client, &kept).await
                };
                if let Err(e) = written {
                    return RelayEnd::ClientIo(e);
                }
                buf.advance(ready);
                state
                    .client_at_boundary
                    .store(scanner.at_boundary(0), Ordering::Relaxed);
            }
        }
        buf.reserve(READ_CHUNK);
        match upstream.read_buf(&mut buf).await {
            Ok(0) => return RelayEnd::UpstreamClosed,
            Ok(_) => {}
            Err(e) => return RelayEnd::UpstreamIo(e),
        }
    }
}

/// `bytes` with each (offset, length) range replaced, ranges in order.
fn splice(bytes: &[u8], replacements: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut last = 0;
    for (at, len, new) in replacements {
        out.extend_from_slice(&bytes[last..*at]);
        out.extend_from_slice(new);
        last = at + len;
    }
    out.extend_from_slice(&bytes[last..]);
    out
}

async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
