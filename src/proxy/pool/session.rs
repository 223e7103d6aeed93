//! A client session in transaction mode: it holds a server from its pool
//! only while a transaction, or a statement outside one, runs. Between
//! transactions it waits for its next message with no server; the version
//! it is pinned to is the pool's, so every server it meets serves it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::server::{Params, Server};
use super::statements::ClientStatements;
use super::txn::{Sides, Txn};
use super::{Pool, PoolKey, Unavailable};
use crate::protocol::messages::TERMINATE;
use crate::protocol::tags::frontend;
use crate::protocol::{FrameScanner, FrameVisitor, HEADER_LEN, Want, WireError};
use crate::proxy::placement::Placement;
use crate::proxy::registry::Registration;
use crate::proxy::relay::RelayEnd;
use crate::proxy::startup::Established;
use crate::proxy::{Drain, SessionError, Shared};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 32 * 1024;

/// How a pooled session ended, for its log line and its client.
pub enum End {
    Relay(RelayEnd),
    Shutdown,
    Killed(String),
    /// No server for the client (a wait that timed out, a version gone).
    Refused(SessionError),
    /// Not an end: the transaction is over and the server goes back.
    Release,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Relay(RelayEnd::ClientTerminated) => write!(f, "client sent Terminate"),
            End::Relay(RelayEnd::ClientClosed) => write!(f, "client closed the connection"),
            End::Relay(RelayEnd::ClientViolation(e)) => write!(f, "{e}"),
            End::Relay(RelayEnd::ClientIo(e)) => write!(f, "client connection failed: {e}"),
            End::Relay(RelayEnd::UpstreamClosed) => write!(f, "Postgres closed the connection"),
            End::Relay(RelayEnd::UpstreamIo(e)) => write!(f, "Postgres connection failed: {e}"),
            End::Shutdown => write!(f, "proxy shutdown"),
            End::Killed(reason) => write!(f, "ended by the migrator: {reason}"),
            End::Refused(e) => write!(f, "{e}"),
            End::Release => write!(f, "transaction over"),
        }
    }
}

impl End {
    /// What the client is told, if anything.
    fn into_client_error(self) -> Option<SessionError> {
        match self {
            End::Relay(RelayEnd::ClientViolation(e)) | End::Refused(e) => Some(e),
            End::Relay(RelayEnd::UpstreamClosed) => Some(SessionError::UpstreamLost(
                "Postgres closed the connection".into(),
            )),
            End::Relay(RelayEnd::UpstreamIo(e)) => Some(SessionError::UpstreamLost(e.to_string())),
            End::Shutdown => Some(SessionError::Shutdown),
            End::Killed(reason) => Some(SessionError::Killed(reason)),
            _ => None,
        }
    }
}

/// Keeps the pool's count of its clients.
struct Member<'a>(&'a Pool);

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves an authenticated session in transaction mode to its end: the
/// login's backend joins the pool, then each transaction borrows a
/// server. Returns why the session ended and whether it was inside a
/// transaction then.
pub async fn serve(
    shared: &Arc<Shared>,
    established: Established,
    registration: Option<&Registration>,
) -> (String, bool) {
    let Established {
        client,
        mut upstream,
        client_buf,
        upstream_buf,
        startup,
        cancel_key,
        permit: _permit,
        route,
        options,
        params,
        ..
    } = established;
    let version = route
        .as_ref()
        .map(|r| r.version.clone())
        .unwrap_or_default();
    let pool = shared.pools.get(PoolKey::new(&startup, &version));
    pool.clients.fetch_add(1, Ordering::Relaxed);
    let _member = Member(&pool);
    let on = route.as_ref().and_then(|r| r.version_schema.clone());
    match cancel_key.as_ref().and_then(|k| k.target()) {
        Some(target) => {
            let placement =
                Placement::new(version.clone(), on, None, shared.versions.subscribe(), None);
            let server = Server::new(
                upstream,
                upstream_buf,
                target,
                params.clone(),
                placement,
                shared.pools.settings.max_prepared_statements,
            );
            pool.join(server).await;
        }
        None => {
            // Without BackendKeyData a backend cannot be cancelled: not pooled.
            let _ = upstream.write_all(&TERMINATE).await;
        }
    }
    if let Some(key) = &cancel_key {
        key.retarget(None);
    }
    let mut placement = route.map(|route| {
        Placement::new(
            route.version,
            route.version_schema,
            route.view,
            shared.versions.subscribe(),
            registration.map(|r| Arc::clone(&r.info)),
        )
    });
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let mut session = Session {
        shared,
        pool: &pool,
        registration,
        buf: client_buf,
        statements: ClientStatements::default(),
        params: params
            .into_iter()
            .filter(|(k, _)| super::server::TRACKED.contains(&k.as_str()))
            .collect(),
        standard_conforming_strings: options.standard_conforming_strings,
        phase: shared.drain.clone(),
        at_boundary: true,
    };
    let mut in_transaction = false;
    let end = loop {
        if let Err(end) = session
            .wait_message(&mut client_read, placement.as_mut())
            .await
        {
            break end;
        }
        if session.buf[0] == frontend::TERMINATE {
            break End::Relay(RelayEnd::ClientTerminated);
        }
        if let Some(reply) = session.prepare_locally(placement.as_mut()).await {
            if let Err(e) = write_flush(&mut client_write, &reply).await {
                break End::Relay(RelayEnd::ClientIo(e));
            }
            continue;
        }
        let mut server = match session.checkout().await {
            Ok(server) => server,
            Err(e) => break End::Refused(e),
        };
        if let Some(key) = &cancel_key {
            key.retarget(Some(Arc::clone(&server.cancel)));
        }
        pool.active.fetch_add(1, Ordering::Relaxed);
        let (outcome, txn) = session
            .attached(
                &mut client_read,
                &mut client_write,
                &mut server,
                placement.as_mut(),
            )
            .await;
        pool.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(key) = &cancel_key {
            key.retarget(None);
        }
        pool.transactions.fetch_add(1, Ordering::Relaxed);
        pool.queries.fetch_add(txn.queries, Ordering::Relaxed);
        match outcome {
            End::Release => pool.release(server),
            end => {
                in_transaction = txn.status != crate::protocol::tags::status::IDLE;
                let alive = !matches!(
                    end,
                    End::Relay(RelayEnd::UpstreamClosed | RelayEnd::UpstreamIo(_))
                );
                give_back(&pool, server, &txn, alive).await;
                break end;
            }
        }
        if *session.phase.borrow() != Drain::Running {
            break End::Shutdown;
        }
    };
    let reason = end.to_string();
    if let Some(error) = end.into_client_error()
        && let Some(message) = error.to_error_response()
        && session.at_boundary
    {
        let _ = client_write.write_all(&message).await;
        let _ = client_write.flush().await;
    }
    let _ = client_write.shutdown().await;
    (reason, in_transaction)
}

/// Puts back or closes the server of a session that ended during its
/// transaction: a transaction block with nothing in flight is rolled back
/// and the server reused; a server with work in flight has it cancelled
/// and is closed, so nothing outlives the client.
async fn give_back(pool: &Pool, mut server: Server, txn: &Txn, alive: bool) {
    if !alive {
        pool.close(server, "connection failed").await;
        return;
    }
    let quiet = txn.expect.is_empty() && !txn.unsynced && !txn.writing && server.buf.is_empty();
    if quiet && txn.done() {
        pool.release(server);
        return;
    }
    if quiet {
        let rollback = crate::protocol::messages::query("ROLLBACK");
        if server.run(rollback).await.is_ok() {
            pool.release(server);
            return;
        }
    } else {
        let _ = server.cancel.send().await;
    }
    pool.close(server, "client left during a request").await;
}

/// What a pooled session keeps between transactions.
struct Session<'a> {
    shared: &'a Arc<Shared>,
    pool: &'a Arc<Pool>,
    registration: Option<&'a Registration>,
    /// Client bytes not yet forwarded.
    buf: BytesMut,
    statements: ClientStatements,
    /// The tracked settings as the client last saw them.
    params: Params,
    standard_conforming_strings: bool,
    phase: watch::Receiver<Drain>,
    /// True while the client stands between two messages.
    at_boundary: bool,
}

/// The length of the whole message at the start of `buf`, once it is all
/// there. Errors: an unknown type, or a length beyond the limit.
fn next_frame(buf: &[u8], max: usize) -> Result<Option<usize>, SessionError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    if !frontend::is_known(tag) {
        return Err(SessionError::UnknownMessage(tag));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(SessionError::Wire(WireError::BadLength {
            tag: tag as char,
            len,
        }));
    }
    let body = len as usize - 4;
    if body > max {
        return Err(SessionError::MessageTooLong {
            tag: tag as char,
            len: body,
            max,
        });
    }
    Ok((buf.len() > body + 4).then_some(body + 5))
}

/// Resolves when the versions change (never without a placement).
async fn changed(placement: Option<&mut Placement>) {
    match placement {
        Some(p) => p.changed().await,
        None => std::future::pending().await,
    }
}

/// Resolves with the reason once the migrator asks the session to end.
async fn killed(registration: Option<&Registration>) -> String {
    match registration {
        Some(r) => r.info.killed().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the drain reaches `Closing`.
async fn closing(phase: &mut watch::Receiver<Drain>) {
    loop {
        if *phase.borrow_and_update() == Drain::Closing || phase.changed().await.is_err() {
            return;
        }
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// What both directions of a transaction share.
struct Book<'a> {
    txn: Txn,
    client: &'a mut ClientStatements,
    server: &'a mut lru::LruCache<Vec<u8>, ()>,
    tainted: &'a mut bool,
    client_params: &'a mut Params,
    server_params: &'a mut Params,
    /// True while the server's stream stands between two messages with
    /// nothing unread.
    server_clean: bool,
    /// True while the client's stream stands between two messages.
    client_at_boundary: bool,
}

impl Book<'_> {
    fn forward(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let mut sides = Sides {
            client: &mut *self.client,
            server: &mut *self.server,
            tainted: &mut *self.tainted,
        };
        self.txn.forward(frame, out, &mut sides);
    }

    /// Forwards `frame` unchanged when it needs no change (see
    /// [`Txn::pass`]); false when it must go through [`Book::forward`].
    fn pass(&mut self, frame: &[u8]) -> bool {
        let mut sides = Sides {
            client: &mut *self.client,
            server: &mut *self.server,
            tainted: &mut *self.tainted,
        };
        self.txn.pass(frame, &mut sides)
    }

    fn releasable(&self) -> bool {
        self.server_clean && self.txn.done()
    }
}

/// Sees the server's replies on their way to the client: the ones that
/// end a request whole, the others by their header only.
struct ServerFrames<'a, 'b> {
    /// Held for the whole scan, which never waits.
    book: &'a mut Book<'b>,
    /// (offset, length, replacement) edits of the current scan.
    edits: Vec<(usize, usize, Vec<u8>)>,
}

impl FrameVisitor for ServerFrames<'_, '_> {
    type Error = WireError;

    fn header(&mut self, tag: u8, _len: u32) -> Result<Want, WireError> {
        Ok(if self.book.txn.wants_whole(tag) {
            Want::Whole
        } else {
            Want::Header
        })
    }

    fn frame(&mut self, at: usize, frame: &[u8]) -> Result<(), WireError> {
        let book = &mut *self.book;
        let mut before = Vec::new();
        let mut sides = Sides {
            client: &mut *book.client,
            server: &mut *book.server,
            tainted: &mut *book.tainted,
        };
        let drop = book.txn.on_server_frame(
            frame,
            &mut before,
            [&mut *book.client_params, &mut *book.server_params],
            &mut sides,
        );
        if !before.is_empty() {
            self.edits.push((at, 0, before));
        }
        if drop {
            self.edits.push((at, frame.len(), Vec::new()));
        }
        Ok(())
    }
}

/// `bytes` with each (offset, length) range replaced, ranges in order.
fn splice(bytes: &[u8], edits: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut last = 0;
    for (at, len, new) in edits {
        out.extend_from_slice(&bytes[last..*at]);
        out.extend_from_slice(new);
        last = at + len;
    }
    out.extend_from_slice(&bytes[last..]);
    out
}

impl Session<'_> {
    /// Waits until the client's next whole message is in `buf`, following
    /// version changes meanwhile: a session between transactions stands
    /// wherever its next server will (each is moved before use).
    async fn wait_message<R: AsyncRead + Unpin>(
        &mut self,
        client: &mut R,
        mut placement: Option<&mut Placement>,
    ) -> Result<(), End> {
        let limits = &self.shared.config;
        loop {
            if let Some(p) = placement.as_deref_mut() {
                p.refresh_if_changed();
                if p.move_pending() {
                    p.moved(Ok(()));
                }
            }
            match next_frame(&self.buf, limits.max_message_length) {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => return Err(End::Relay(RelayEnd::ClientViolation(e))),
            }
            if *self.phase.borrow() != Drain::Running {
                return Err(End::Shutdown);
            }
            self.buf.reserve(READ_CHUNK);
            // A begun message must finish within message_timeout; between
            // messages the wait has no timer to keep.
            let timeout = limits.message_timeout;
            let partial = !self.buf.is_empty();
            let buf = &mut self.buf;
            let client = &mut *client;
            let reading = async move {
                if partial {
                    tokio::time::timeout(timeout, client.read_buf(buf))
                        .await
                        .ok()
                } else {
                    Some(client.read_buf(buf).await)
                }
            };
            let read = tokio::select! {
                read = reading => match read {
                    Some(read) => read,
                    None => return Err(End::Relay(RelayEnd::ClientViolation(SessionError::MessageTimeout(timeout)))),
                },
                () = changed(placement.as_deref_mut()) => continue,
                reason = killed(self.registration) => return Err(End::Killed(reason)),
                _ = self.phase.changed() => continue,
            };
            match read {
                Ok(0) => return Err(End::Relay(RelayEnd::ClientClosed)),
                Ok(_) => {}
                Err(e) => return Err(End::Relay(RelayEnd::ClientIo(e))),
            }
        }
    }

    /// Answers a batch of named Parse messages and a Sync (a synchronous
    /// prepare, such as libpq's `PQprepare`) without a server: each
    /// statement is recorded for the client and prepared on a server when
    /// the client first binds or describes it. A client thread that blocks
    /// on one connection's prepare while its other connections hold every
    /// server (pgbench, -M prepared) would otherwise wait forever. The text
    /// must pass Postgres's own parser here, so that a syntax error still
    /// comes from the prepare; other errors (an unknown table) come from
    /// the first use. Returns the replies, or `None` when the batch needs
    /// a server.
    async fn prepare_locally(&mut self, mut placement: Option<&mut Placement>) -> Option<Vec<u8>> {
        let max = self.shared.config.max_message_length;
        let mut at = 0;
        let mut frames = Vec::new();
        loop {
            let len = next_frame(&self.buf[at..], max).ok()??;
            let tag = self.buf[at];
            frames.push(at..at + len);
            at += len;
            match tag {
                frontend::PARSE => {}
                frontend::SYNC => break,
                _ => return None,
            }
        }
        let options = crate::rewrite::Options {
            standard_conforming_strings: self.standard_conforming_strings,
        };
        let mut parses = Vec::new();
        for range in &frames[..frames.len() - 1] {
            let frame = &self.buf[range.clone()];
            let rewritten = match placement.as_deref_mut().and_then(|p| p.rewriter.as_mut()) {
                Some(r) => r.rewrite_frame(frame, options).await,
                None => None,
            };
            let frame = rewritten.unwrap_or_else(|| frame.to_vec());
            let (name, body) = crate::protocol::extended::parse_name(&frame)?;
            let (_, sql, _) = crate::protocol::messages::sql_of(&frame)?;
            let sql = std::str::from_utf8(sql).ok()?;
            if name.is_empty() || sql.len() > super::super::rewriter::INLINE_PARSE {
                return None;
            }
            let mut parser = pg_query::ParserOptions::DEFAULT;
            if !options.standard_conforming_strings {
                parser |= pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS;
            }
            pg_query::parse(sql, parser).ok()?;
            parses.push((name.to_vec(), body.to_vec()));
        }
        let mut reply = Vec::new();
        for (name, body) in parses {
            self.statements.prepare(&name, &body);
            reply.extend_from_slice(&crate::protocol::extended::PARSE_COMPLETE);
        }
        reply.extend_from_slice(&crate::protocol::messages::READY_IDLE);
        self.buf.advance(at);
        Some(reply)
    }

    /// A server from the pool, alive and put right for this client.
    async fn checkout(&mut self) -> Result<Server, SessionError> {
        let version = &self.pool.key.version;
        let wait = self.shared.config.pool.query_wait_timeout;
        if !self
            .shared
            .pools
            .unpaused(&self.pool.key.database, wait)
            .await
        {
            return Err(SessionError::PoolWait(wait));
        }
        loop {
            let mut server = self.pool.acquire().await.map_err(|e| match e {
                Unavailable::Timeout(d) => SessionError::PoolWait(d),
                Unavailable::Gone => SessionError::VersionGone(version.clone()),
                Unavailable::Empty => SessionError::PoolEmpty(version.clone()),
            })?;
            if !server.is_alive() {
                self.pool.close(server, "found closed").await;
                continue;
            }
            match server.prepare_for(&self.params).await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    tracing::warn!(pid = server.pid, %version, error = %e, "a pooled server could not be prepared for a client; closing it");
                    self.pool.close(server, "could not be prepared").await;
                }
            }
        }
    }

    /// Relays one transaction between the client and `server`. Returns
    /// [`End::Release`] when the server can go back to the pool, else how
    /// the session ended; and the transaction's state.
    async fn attached<R, W>(
        &mut self,
        client_read: &mut R,
        client_write: &mut W,
        server: &mut Server,
        mut placement: Option<&mut Placement>,
    ) -> (End, Txn)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let max = self.shared.config.max_message_length;
        let message_timeout = self.shared.config.message_timeout;
        let Server {
            stream,
            buf: server_buf,
            statements: cache,
            tainted,
            params: server_params,
            ..
        } = server;
        let book = Mutex::new(Book {
            txn: Txn::default(),
            client: &mut self.statements,
            server: cache,
            tainted,
            client_params: &mut self.params,
            server_params,
            server_clean: server_buf.is_empty(),
            client_at_boundary: true,
        });
        let (mut server_read, mut server_write) = tokio::io::split(stream);
        let client_buf = &mut self.buf;
        let scs = self.standard_conforming_strings;
        let pool = self.pool;

        let to_server = async {
            loop {
                if let Some(p) = placement.as_deref_mut() {
                    p.refresh_if_changed();
                }
                // The batch goes out as the client sent it (`client_buf`'s
                // first `forwarded` bytes) until a message must change;
                // from then on `out` holds what the server gets.
                let mut out = Vec::new();
                let mut copied = false;
                let mut consumed = 0;
                let mut forwarded = 0;
                let mut terminated = false;
                book.lock().expect("not poisoned").txn.writing = true;
                loop {
                    let len = match next_frame(&client_buf[consumed..], max) {
                        Ok(Some(len)) => len,
                        Ok(None) => break,
                        Err(e) => return End::Relay(RelayEnd::ClientViolation(e)),
                    };
                    let frame = &client_buf[consumed..consumed + len];
                    if frame[0] == frontend::TERMINATE {
                        terminated = true;
                        consumed += len;
                        break;
                    }
                    let rewritten = match placement.as_deref_mut().and_then(|p| p.rewriter.as_mut())
                    {
                        Some(r) if matches!(frame[0], frontend::QUERY | frontend::PARSE) => {
                            let options = crate::rewrite::Options {
                                standard_conforming_strings: scs,
                            };
                            r.rewrite_frame(frame, options).await
                        }
                        _ => None,
                    };
                    let mut book = book.lock().expect("not poisoned");
                    if rewritten.is_none() && book.pass(frame) {
                        if copied {
                            out.extend_from_slice(frame);
                        }
                    } else {
                        if !copied {
                            out.extend_from_slice(&client_buf[..consumed]);
                            copied = true;
                        }
                        book.forward(rewritten.as_deref().unwrap_or(frame), &mut out);
                    }
                    consumed += len;
                    forwarded = consumed;
                }
                let batch = if copied {
                    &out[..]
                } else {
                    &client_buf[..forwarded]
                };
                if !batch.is_empty() {
                    pool.bytes_received
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if let Err(e) = write_flush(&mut server_write, batch).await {
                        return End::Relay(RelayEnd::UpstreamIo(e));
                    }
                }
                client_buf.advance(consumed);
                book.lock().expect("not poisoned").txn.writing = false;
                if terminated {
                    return End::Relay(RelayEnd::ClientTerminated);
                }
                if book.lock().expect("not poisoned").releasable() {
                    return End::Release;
                }
                client_buf.reserve(READ_CHUNK);
                let partial = !client_buf.is_empty();
                let read = if partial {
                    match tokio::time::timeout(message_timeout, client_read.read_buf(client_buf))
                        .await
                    {
                        Ok(read) => read,
                        Err(_) => {
                            return End::Relay(RelayEnd::ClientViolation(
                                SessionError::MessageTimeout(message_timeout),
                            ));
                        }
                    }
                } else {
                    client_read.read_buf(client_buf).await
                };
                match read {
                    Ok(0) => return End::Relay(RelayEnd::ClientClosed),
                    Ok(_) => {}
                    Err(e) => return End::Relay(RelayEnd::ClientIo(e)),
                }
            }
        };

        let to_client = async {
            let mut scanner = FrameScanner::default();
            loop {
                if !server_buf.is_empty() {
                    let (scanned, edits, owed_now) = {
                        let mut guard = book.lock().expect("not poisoned");
                        let mut frames = ServerFrames {
                            book: &mut guard,
                            edits: Vec::new(),
                        };
                        let scanned = scanner.scan(server_buf, &mut frames);
                        let edits = std::mem::take(&mut frames.edits);
                        let mut owed_now = Vec::new();
                        guard.txn.take_owed(&mut owed_now);
                        if !owed_now.is_empty() || scanned.as_ref().is_ok_and(|n| *n > 0) {
                            guard.client_at_boundary = false;
                        }
                        (scanned, edits, owed_now)
                    };
                    let ready = match scanned {
                        Ok(n) => n,
                        Err(e) => {
                            return End::Relay(RelayEnd::UpstreamIo(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                e,
                            )));
                        }
                    };
                    if ready > 0 || !owed_now.is_empty() {
                        let written = if edits.is_empty() && owed_now.is_empty() {
                            write_flush(client_write, &server_buf[..ready]).await
                        } else {
                            let mut bytes = splice(&server_buf[..ready], &edits);
                            bytes.extend_from_slice(&owed_now);
                            write_flush(client_write, &bytes).await
                        };
                        if let Err(e) = written {
                            return End::Relay(RelayEnd::ClientIo(e));
                        }
                        pool.bytes_sent.fetch_add(ready as u64, Ordering::Relaxed);
                        server_buf.advance(ready);
                    }
                }
                let clean = server_buf.is_empty() && scanner.at_boundary(0);
                {
                    let mut book = book.lock().expect("not poisoned");
                    book.server_clean = clean;
                    book.client_at_boundary = clean;
                    if book.releasable() {
                        return End::Release;
                    }
                }
                server_buf.reserve(READ_CHUNK);
                // Replies pgshift owes with nothing due before them (the
                // client's Close of a statement, then Flush) go out at
                // once; both directions run in this one task, so the
                // check comes before each wait on the server.
                let mut read = std::pin::pin!(server_read.read_buf(server_buf));
                let read = std::future::poll_fn(|cx| {
                    if book.lock().expect("not poisoned").txn.owes_now() {
                        return std::task::Poll::Ready(None);
                    }
                    read.as_mut().poll(cx).map(Some)
                })
                .await;
                match read {
                    Some(Ok(0)) => return End::Relay(RelayEnd::UpstreamClosed),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return End::Relay(RelayEnd::UpstreamIo(e)),
                    None => {
                        let mut out = Vec::new();
                        book.lock().expect("not poisoned").txn.take_owed(&mut out);
                        if let Err(e) = write_flush(client_write, &out).await {
                            return End::Relay(RelayEnd::ClientIo(e));
                        }
                    }
                }
            }
        };

        let registration = self.registration;
        let phase = &mut self.phase;
        let end = tokio::select! {
            biased;
            end = to_server => end,
            end = to_client => end,
            reason = killed(registration) => End::Killed(reason),
            () = closing(phase) => End::Shutdown,
        };
        let book = book.into_inner().expect("not poisoned");
        let released = book.releasable();
        self.at_boundary = book.client_at_boundary;
        self.standard_conforming_strings = book
            .client_params
            .get("standard_conforming_strings")
            .is_none_or(|v| v == "on");
        let end = match end {
            End::Release if !released => End::Relay(RelayEnd::ClientViolation(
                SessionError::Protocol("internal: a server was released mid-transaction".into()),
            )),
            other => other,
        };
        (end, book.txn)
    }
}
