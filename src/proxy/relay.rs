//! The data path of an established session: client→upstream and
//! upstream→client byte relays that forward raw chunks as they arrive, walking
//! only message headers with [`FrameScanner`]. The two directions run
//! concurrently in one task, so neither can block the other.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::SessionError;
use super::oversized::{self, Oversized};
use super::placement::Placement;
pub use super::session_state::SessionState;
use crate::protocol::messages;
use crate::protocol::tags::{backend, frontend};
use crate::protocol::{FrameScanner, FrameVisitor, Want, WireError};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 32 * 1024;

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
    /// Longest Query or Parse held whole for a rewrite, in bytes; longer
    /// ones stream through (see `oversized`).
    pub max_rewrite_size: usize,
}

/// Checks each frontend message header, counts requests, spots Terminate,
/// and holds Query and Parse messages whole when the session has a
/// rewriter, for the relay to rewrite before it forwards them.
struct ClientFrames<'a> {
    state: &'a SessionState,
    limits: ClientLimits,
    terminated: bool,
    /// True after an extended-protocol message that no Sync has closed yet.
    unsynced: bool,
    placement: Option<&'a mut Placement>,
    /// (offset, length) of the whole Query and Parse frames of the current
    /// scan, for the relay to rewrite.
    held: Vec<(usize, usize)>,
    /// (offset, length, replacement) of bytes replaced in the current scan.
    replacements: Vec<(usize, usize, Vec<u8>)>,
    /// The Query or Parse streaming through, too long to hold.
    oversized: Option<(Oversized, u64)>,
}

impl ClientFrames<'_> {
    fn rewriting(&self) -> bool {
        self.placement
            .as_ref()
            .is_some_and(|p| p.rewriter.is_some())
    }
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
                let n = self.state.sync_points_sent.fetch_add(1, Ordering::Relaxed) + 1;
                self.state.request_sent(n);
                self.unsynced = false;
            }
            frontend::TERMINATE => self.terminated = true,
            _ => self.unsynced = true,
        }
        if !matches!(tag, frontend::QUERY | frontend::PARSE) || !self.rewriting() {
            return Ok(Want::Header);
        }
        if body <= self.limits.max_rewrite_size {
            return Ok(Want::Whole);
        }
        // Its replies come after the ReadyForQuery of every earlier request.
        let sent = self.state.sync_points_sent.load(Ordering::Relaxed);
        let after_ready = if tag == frontend::QUERY {
            sent - 1
        } else {
            sent
        };
        let scan = self
            .placement
            .as_ref()
            .and_then(|p| p.rewriter.as_ref())
            .map(|r| r.scan().stream())
            .expect("rewriting");
        let oversized = Oversized::new(tag, body, self.limits.max_rewrite_size, scan);
        self.oversized = Some((oversized, after_ready));
        Ok(Want::Tail(oversized::TAIL))
    }

    fn frame(&mut self, at: usize, frame: &[u8]) -> Result<(), SessionError> {
        if let Some(placement) = self.placement.as_deref_mut() {
            placement.note_reset(frame);
            self.held.push((at, frame.len()));
        }
        Ok(())
    }

    fn body(&mut self, part: &[u8]) {
        if let Some((oversized, _)) = self.oversized.as_mut() {
            oversized.body(part);
        }
    }

    fn tail(&mut self, at: usize, tail: &[u8]) -> Result<(), SessionError> {
        let Some((oversized, after_ready)) = self.oversized.take() else {
            return Ok(());
        };
        if let Some(refusal) = oversized.tail(tail) {
            tracing::warn!(
                bytes = tail.len(),
                "a statement too long to rewrite may need a rewrite; it is made to fail"
            );
            let len = refusal.filler.len();
            self.replacements
                .push((at + refusal.at, len, refusal.filler));
            self.state.refuse(after_ready, refusal.error);
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
        held: Vec::new(),
        replacements: Vec::new(),
        oversized: None,
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
            rewrite_held(&mut frames, &buf).await;
            if ready > 0 {
                let written = if frames.replacements.is_empty() {
                    write_flush(upstream, &buf[..ready]).await
                } else {
                    frames.replacements.sort_by_key(|r| r.0);
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

/// Rewrites the Query and Parse frames the last scan held (they are all
/// within `buf`'s forwardable part), in order, adding their replacements.
async fn rewrite_held(frames: &mut ClientFrames<'_>, buf: &[u8]) {
    let held = std::mem::take(&mut frames.held);
    let options = frames.state.rewrite_options();
    let Some(rewriter) = frames
        .placement
        .as_deref_mut()
        .and_then(|p| p.rewriter.as_mut())
    else {
        return;
    };
    for (at, len) in held {
        if let Some(new) = rewriter.rewrite_frame(&buf[at..at + len], options).await {
            frames.replacements.push((at, len, new));
        }
    }
}

/// Watches ReadyForQuery, ErrorResponse and ParameterStatus on their way
/// to the client, drops the replies to pgshift's own queries, and replaces
/// the errors of requests pgshift made fail.
struct UpstreamFrames<'a> {
    state: &'a SessionState,
    /// (offset, length, replacement) of the frames replaced or dropped
    /// (empty replacement) in the current scan.
    replacements: Vec<(usize, usize, Vec<u8>)>,
    /// pgshift's error, to send instead of the long ErrorResponse being dropped.
    instead: Option<bytes::Bytes>,
}

/// ErrorResponse messages longer than this are not held whole to be
/// replaced: they are dropped as they stream, and pgshift's own sent instead.
const ERROR_HELD_MAX: usize = 64 * 1024;

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

    fn header(&mut self, tag: u8, len: u32) -> Result<Want, WireError> {
        let state = self.state;
        if state.swallowing.load(Ordering::Relaxed) && OWN_QUERY_REPLIES.contains(&tag) {
            return Ok(Want::Whole);
        }
        state
            .upstream_sent_error
            .store(tag == backend::ERROR_RESPONSE, Ordering::Relaxed);
        if tag == backend::ERROR_RESPONSE
            && state.awaits_refused_error()
            && len as usize > ERROR_HELD_MAX
        {
            let ready = state.ready_received.load(Ordering::Relaxed);
            if let Some(error) = state.refused_error_unread(ready) {
                self.instead = Some(error);
                return Ok(Want::Drop);
            }
        }
        let whole = match tag {
            backend::READY_FOR_QUERY | backend::PARAMETER_STATUS => true,
            backend::ERROR_RESPONSE => state.awaits_refused_error(),
            _ => false,
        };
        Ok(if whole { Want::Whole } else { Want::Header })
    }

    fn dropped(&mut self, at: usize, len: usize, first: bool) {
        let instead = if first {
            self.instead.take().map(|e| e.to_vec()).unwrap_or_default()
        } else {
            Vec::new()
        };
        self.replacements.push((at, len, instead));
    }

    fn frame(&mut self, at: usize, frame: &[u8]) -> Result<(), WireError> {
        let state = self.state;
        let own = state.swallowing.load(Ordering::Relaxed);
        if own && OWN_QUERY_REPLIES.contains(&frame[0]) {
            self.replacements.push((at, frame.len(), Vec::new()));
            if frame[0] == backend::ERROR_RESPONSE {
                *state.swallowed_error.lock().expect("not poisoned") =
                    Some(messages::error_message(frame));
            }
        }
        match frame[0] {
            backend::READY_FOR_QUERY => self.ready(frame, own),
            backend::PARAMETER_STATUS => {
                if let Some(("standard_conforming_strings", value)) =
                    messages::parameter_status(frame)
                {
                    state
                        .standard_conforming_strings
                        .store(value == "on", Ordering::Relaxed);
                }
            }
            backend::ERROR_RESPONSE if !own => {
                let ready = state.ready_received.load(Ordering::Relaxed);
                let code = messages::error_code(frame);
                if let Some(error) = state.refused_error(ready, code.as_deref()) {
                    self.replacements.push((at, frame.len(), error.to_vec()));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl UpstreamFrames<'_> {
    /// A ReadyForQuery: the transaction status, one request fewer in
    /// flight, the end of pgshift's own query when it was one.
    fn ready(&mut self, frame: &[u8], own: bool) {
        let state = self.state;
        state
            .transaction_status
            .store(messages::ready_status(frame), Ordering::Relaxed);
        let n = state.ready_received.fetch_add(1, Ordering::Relaxed) + 1;
        state.request_done(n, own);
        if own {
            state.swallowing.store(false, Ordering::Relaxed);
            state.swallow_done.notify_one();
        }
        if state.watch_idle.load(Ordering::Relaxed) && state.idle() {
            state.became_idle.notify_waiters();
        }
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
        replacements: Vec::new(),
        instead: None,
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
                let written = if frames.replacements.is_empty() {
                    write_flush(client, &buf[..ready]).await
                } else {
                    let kept = splice(&buf[..ready], &frames.replacements);
                    frames.replacements.clear();
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
