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

/// Checks each frontend message header, counts requests, spots Terminate.
struct ClientFrames<'a> {
    state: &'a SessionState,
    limits: ClientLimits,
    terminated: bool,
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
        Ok(Want::Header)
    }

    fn frame(&mut self, _frame: &[u8]) -> Result<(), SessionError> {
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
    };
    loop {
        if !buf.is_empty() {
            let ready = match scanner.scan(&buf, &mut frames) {
                Ok(n) => n,
                Err(e) => return RelayEnd::ClientViolation(e),
            };
            if ready > 0 {
                if let Err(e) = write_flush(upstream, &buf[..ready]).await {
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

    fn frame(&mut self, frame: &[u8]) -> Result<(), WireError> {
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

async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
