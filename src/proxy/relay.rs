//! The data path of an established session: client→upstream and
//! upstream→client byte relays that forward raw chunks as they arrive, walking
//! only message headers with [`FrameScanner`]. The two directions run
//! concurrently in one task, so neither can block the other.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::SessionError;
use crate::wire::{self, FrameScanner, FrameVisitor, Want, WireError};

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
    /// Set while draining: ReadyForQuery then wakes [`SessionState::became_idle`].
    watch_idle: AtomicBool,
    became_idle: Notify,
}

impl SessionState {
    /// A state for a session that has just received its first ReadyForQuery.
    pub fn new() -> Self {
        let state = SessionState::default();
        state.transaction_status.store(b'I', Ordering::Relaxed);
        state.client_at_boundary.store(true, Ordering::Relaxed);
        state
    }

    /// True while a request waits for its ReadyForQuery.
    pub fn busy(&self) -> bool {
        self.sync_points_sent.load(Ordering::Relaxed) != self.ready_received.load(Ordering::Relaxed)
    }

    /// True when nothing is in flight and no transaction is open.
    pub fn idle(&self) -> bool {
        !self.busy() && self.transaction_status.load(Ordering::Relaxed) == b'I'
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

    /// Waits until the session is idle.
    pub async fn wait_idle(&self) {
        self.watch_idle.store(true, Ordering::Relaxed);
        while !self.idle() {
            self.became_idle.notified().await;
        }
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

/// Rewrites the SQL of one session's Query and Parse messages for its
/// version, caching by statement text.
pub struct SessionRewriter {
    rewriter: crate::rewrite::Rewriter,
    /// Statement text → its replacement (`None`: unchanged).
    cache: std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Among texts the scan flagged: cache lookups that found the text, and
    /// those that did not (texts the scan clears are neither parsed nor cached).
    pub hits: u64,
    pub misses: u64,
}

/// Entries a session's rewrite cache keeps before starting afresh.
const REWRITE_CACHE_ENTRIES: usize = 1024;

impl SessionRewriter {
    /// A rewriter for a session of `view`'s version.
    pub fn new(view: crate::rewrite::VersionView) -> Self {
        SessionRewriter {
            rewriter: crate::rewrite::Rewriter::new(view),
            cache: std::collections::HashMap::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The replacement for `sql`, if it changes. Text that is not UTF-8
    /// (another client_encoding) goes unchanged.
    fn rewrite(&mut self, sql: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(sql).ok()?;
        if !self.rewriter.may_need_rewrite(text) {
            return None;
        }
        if let Some(hit) = self.cache.get(sql) {
            self.hits += 1;
            return hit.clone();
        }
        self.misses += 1;
        let out = match self.rewriter.rewrite(text) {
            Ok(crate::rewrite::Rewritten::Unchanged) => None,
            Ok(crate::rewrite::Rewritten::Text(t)) => Some(t.into_bytes()),
            Err(e) => Some(crate::rewrite::error_statement(&e.to_string()).into_bytes()),
        };
        if self.cache.len() >= REWRITE_CACHE_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(sql.to_vec(), out.clone());
        out
    }

    /// The rewritten frame for a whole Query or Parse frame, if it changes
    /// ("Message Formats": Query is a string; Parse is a name, a string and
    /// the parameter types).
    fn rewrite_frame(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let body = &frame[5..];
        let (prefix, sql, rest) = match frame[0] {
            b'Q' => {
                let end = body.iter().position(|b| *b == 0)?;
                (&body[..0], &body[..end], &body[end..])
            }
            b'P' => {
                let name_end = body.iter().position(|b| *b == 0)? + 1;
                let end = name_end + body[name_end..].iter().position(|b| *b == 0)?;
                (&body[..name_end], &body[name_end..end], &body[end..])
            }
            _ => return None,
        };
        let new_sql = self.rewrite(sql)?;
        let len = 4 + prefix.len() + new_sql.len() + rest.len();
        let mut out = Vec::with_capacity(1 + len);
        out.push(frame[0]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&new_sql);
        out.extend_from_slice(rest);
        Some(out)
    }
}

/// Checks each frontend message header, counts requests, spots Terminate,
/// and rewrites Query and Parse messages when the session has a rewriter.
struct ClientFrames<'a> {
    state: &'a SessionState,
    limits: ClientLimits,
    terminated: bool,
    rewriter: Option<&'a mut SessionRewriter>,
    /// (offset, length, replacement) of frames rewritten in the current scan.
    replacements: Vec<(usize, usize, Vec<u8>)>,
}

impl FrameVisitor for ClientFrames<'_> {
    type Error = SessionError;

    fn header(&mut self, tag: u8, len: u32) -> Result<Want, SessionError> {
        if !wire::is_frontend_tag(tag) {
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
            b'Q' | b'S' | b'F' => {
                self.state.sync_points_sent.fetch_add(1, Ordering::Relaxed);
            }
            b'X' => self.terminated = true,
            _ => {}
        }
        if self.rewriter.is_some() && matches!(tag, b'Q' | b'P') {
            return Ok(Want::Whole);
        }
        Ok(Want::Header)
    }

    fn frame(&mut self, at: usize, frame: &[u8]) -> Result<(), SessionError> {
        if let Some(rewriter) = self.rewriter.as_deref_mut()
            && let Some(new) = rewriter.rewrite_frame(frame)
        {
            self.replacements.push((at, frame.len(), new));
        }
        Ok(())
    }
}

/// Relays client bytes to the upstream until the client leaves or misbehaves.
/// `buf` holds bytes the client sent before the relay began.
pub async fn client_to_upstream<R, W>(
    client: &mut R,
    upstream: &mut W,
    mut buf: BytesMut,
    state: &SessionState,
    limits: ClientLimits,
    rewriter: Option<&mut SessionRewriter>,
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
        rewriter,
        replacements: Vec::new(),
    };
    loop {
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

/// Watches ReadyForQuery and ErrorResponse headers on their way to the client.
struct UpstreamFrames<'a> {
    state: &'a SessionState,
}

impl FrameVisitor for UpstreamFrames<'_> {
    type Error = WireError;

    fn header(&mut self, tag: u8, _len: u32) -> Result<Want, WireError> {
        self.state
            .upstream_sent_error
            .store(tag == b'E', Ordering::Relaxed);
        Ok(if tag == b'Z' {
            Want::Whole
        } else {
            Want::Header
        })
    }

    fn frame(&mut self, _at: usize, frame: &[u8]) -> Result<(), WireError> {
        // ReadyForQuery: 'Z', Int32(5), Byte1(status).
        let status = frame.get(5).copied().unwrap_or(b'I');
        let state = self.state;
        state.transaction_status.store(status, Ordering::Relaxed);
        state.ready_received.fetch_add(1, Ordering::Relaxed);
        if state.watch_idle.load(Ordering::Relaxed) && state.idle() {
            state.became_idle.notify_one();
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
    let mut frames = UpstreamFrames { state };
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
                if let Err(e) = write_flush(client, &buf[..ready]).await {
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
