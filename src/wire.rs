//! Postgres wire-protocol framing: startup packets, a frame scanner that walks
//! message headers without copying bodies, and the few messages pgshift writes
//! itself. Message layouts follow the PostgreSQL docs, "Frontend/Backend
//! Protocol", sections "Message Formats" and "Message Flow"; decoding and
//! encoding of whole messages goes through pgwire's codec types.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{BackendKeyData, SecretKey, Startup};
use pgwire::messages::{DecodeContext, Message, ProtocolVersion};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Request code of an SSLRequest packet ("Message Formats": SSLRequest).
pub const SSL_REQUEST_CODE: u32 = 80877103;
/// Request code of a GSSENCRequest packet.
pub const GSSENC_REQUEST_CODE: u32 = 80877104;
/// Request code of a CancelRequest packet.
pub const CANCEL_REQUEST_CODE: u32 = 80877102;
/// Longest startup-phase packet accepted, as Postgres's MAX_STARTUP_PACKET_LENGTH.
pub const MAX_STARTUP_PACKET_LENGTH: usize = 10_000;
/// Bytes in a message header: one type byte and an Int32 length.
pub const HEADER_LEN: usize = 5;

/// A framing problem in bytes received from a peer.
#[derive(Debug, Error)]
pub enum WireError {
    #[error(
        "invalid startup packet length {0}: must be between 8 and {MAX_STARTUP_PACKET_LENGTH} bytes"
    )]
    StartupLength(u32),
    #[error("the connection closed in the middle of a startup packet")]
    TruncatedStartup,
    #[error("unsupported frontend protocol {major}.{minor}: pgshift speaks protocol 3")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("invalid startup packet: {0}")]
    BadStartup(String),
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength { tag: char, len: u32 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The first packet a client sends, as classified by its request code.
#[derive(Debug)]
pub enum StartupPacket {
    /// SSLRequest: the client wants TLS before anything else.
    SslRequest,
    /// GSSENCRequest: the client wants GSSAPI encryption.
    GssEncRequest,
    /// CancelRequest for the backend that `pid` and `secret` identify.
    Cancel { pid: i32, secret: Bytes },
    /// StartupMessage: `raw` is the whole packet, length word included, as sent.
    Startup {
        raw: Bytes,
        params: BTreeMap<String, String>,
    },
}

impl StartupPacket {
    /// Classifies and decodes a complete startup-phase packet (length word
    /// included), as returned by [`read_startup_packet`].
    pub fn parse(packet: BytesMut) -> Result<Self, WireError> {
        let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        match code {
            SSL_REQUEST_CODE => Ok(StartupPacket::SslRequest),
            GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEncRequest),
            CANCEL_REQUEST_CODE => {
                let mut buf = packet;
                let ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_2);
                match CancelRequest::decode(&mut buf, &ctx) {
                    Ok(Some(cancel)) => Ok(StartupPacket::Cancel {
                        pid: cancel.pid,
                        secret: cancel.secret_key.to_bytes(),
                    }),
                    Ok(None) => Err(WireError::BadStartup("truncated CancelRequest".into())),
                    Err(e) => Err(WireError::BadStartup(format!("CancelRequest: {e}"))),
                }
            }
            _ => {
                let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
                if major != 3 {
                    return Err(WireError::UnsupportedProtocol { major, minor });
                }
                if packet.last() != Some(&0) {
                    return Err(WireError::BadStartup(
                        "the parameter list does not end with a zero byte".into(),
                    ));
                }
                let raw = packet.clone().freeze();
                let mut buf = packet;
                let ctx = DecodeContext::default();
                match Startup::decode(&mut buf, &ctx) {
                    Ok(Some(startup)) => Ok(StartupPacket::Startup {
                        raw,
                        params: startup.parameters,
                    }),
                    Ok(None) => Err(WireError::BadStartup("truncated StartupMessage".into())),
                    Err(e) => Err(WireError::BadStartup(e.to_string())),
                }
            }
        }
    }
}

/// Reads one startup-phase packet (Int32 length, then the rest).
///
/// Returns `Ok(None)` when the peer closes before sending a byte (health
/// checks do this). Errors: a length outside 8..=10000 (checked before anything
/// is allocated) or a close in mid-packet.
pub async fn read_startup_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<BytesMut>, WireError> {
    let mut len_bytes = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut len_bytes[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::TruncatedStartup)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len_bytes);
    if !(8..=MAX_STARTUP_PACKET_LENGTH as u32).contains(&len) {
        return Err(WireError::StartupLength(len));
    }
    let mut packet = BytesMut::zeroed(len as usize);
    packet[..4].copy_from_slice(&len_bytes);
    reader.read_exact(&mut packet[4..]).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::TruncatedStartup
        } else {
            WireError::Io(e)
        }
    })?;
    Ok(Some(packet))
}

/// Reads one whole message (type byte, length, body) into `buf` and splits it
/// off, keeping any bytes after it in `buf` for the next call. For the startup
/// phase only, where messages are small; the data path streams instead.
///
/// Returns `Ok(None)` on a clean close between messages. Errors: a length
/// below 4 or a body over `max_len` bytes, or a close in mid-message.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<BytesMut>, WireError> {
    loop {
        if buf.len() >= HEADER_LEN {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            if len < 4 || len as usize - 4 > max_len {
                return Err(WireError::BadLength {
                    tag: buf[0] as char,
                    len,
                });
            }
            let total = 1 + len as usize;
            if buf.len() >= total {
                return Ok(Some(buf.split_to(total)));
            }
            buf.reserve(total - buf.len());
        } else {
            buf.reserve(4096);
        }
        if reader.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()))
            };
        }
    }
}

/// Whether `tag` is a message type a frontend may send after startup
/// ("Message Formats": Bind, Close, CopyData, CopyDone, CopyFail, Describe,
/// Execute, Flush, FunctionCall, Parse, password/SASL responses, Query, Sync,
/// Terminate).
pub fn is_frontend_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'B' | b'C'
            | b'd'
            | b'c'
            | b'f'
            | b'D'
            | b'E'
            | b'H'
            | b'F'
            | b'P'
            | b'p'
            | b'Q'
            | b'S'
            | b'X'
    )
}

/// What a [`FrameVisitor`] wants to see of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Forward the body as it streams in, unseen.
    Header,
    /// Hold the frame back until it is complete and pass it to [`FrameVisitor::frame`].
    Whole,
}

/// Receives the frames that a [`FrameScanner`] walks over.
pub trait FrameVisitor {
    /// The visitor's error; a malformed length becomes one through `From`.
    type Error: From<WireError>;
    /// Called once per frame when its 5-byte header has arrived. `len` is the
    /// length word (it counts itself, not the type byte) and is at least 4.
    fn header(&mut self, tag: u8, len: u32) -> Result<Want, Self::Error>;
    /// Called with the complete frame (type byte, length and body) when
    /// [`FrameVisitor::header`] asked for [`Want::Whole`]; `at` is its offset
    /// in the buffer passed to [`FrameScanner::scan`].
    fn frame(&mut self, at: usize, frame: &[u8]) -> Result<(), Self::Error>;
}

/// Walks the message frames in a byte stream that arrives in arbitrary chunks,
/// so that the data path can forward raw bytes while seeing every header. Only
/// frames that a visitor asks for whole are ever held back.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Body bytes of the current streamed frame still to pass.
    remaining: usize,
    /// The header at the front of the next chunk was seen and wants the whole frame.
    awaiting_whole: bool,
}

impl FrameScanner {
    /// Scans `buf` (bytes not yet forwarded, starting where the previous call
    /// stopped) and returns how many of them may be forwarded now. The rest (an
    /// incomplete header, or an incomplete frame wanted whole) must be kept and
    /// passed again, with more bytes after it, on the next call.
    pub fn scan<V: FrameVisitor>(
        &mut self,
        buf: &[u8],
        visitor: &mut V,
    ) -> Result<usize, V::Error> {
        let mut pos = 0;
        loop {
            if self.remaining > 0 {
                let n = self.remaining.min(buf.len() - pos);
                pos += n;
                self.remaining -= n;
                if self.remaining > 0 {
                    return Ok(pos);
                }
            }
            if buf.len() - pos < HEADER_LEN {
                return Ok(pos);
            }
            let tag = buf[pos];
            let len = u32::from_be_bytes([buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]]);
            let want = if self.awaiting_whole {
                Want::Whole
            } else {
                if len < 4 {
                    return Err(WireError::BadLength {
                        tag: tag as char,
                        len,
                    }
                    .into());
                }
                visitor.header(tag, len)?
            };
            match want {
                Want::Header => {
                    pos += HEADER_LEN;
                    self.remaining = len as usize - 4;
                }
                Want::Whole => {
                    let total = 1 + len as usize;
                    if buf.len() - pos < total {
                        self.awaiting_whole = true;
                        return Ok(pos);
                    }
                    self.awaiting_whole = false;
                    visitor.frame(pos, &buf[pos..pos + total])?;
                    pos += total;
                }
            }
        }
    }

    /// True when the scanner stands between two frames, so that a message of
    /// pgshift's own can be written without splitting one.
    pub fn at_boundary(&self, unforwarded: usize) -> bool {
        self.remaining == 0 && !self.awaiting_whole && unforwarded == 0
    }

    /// True when part of a frame has been seen and the rest is still due.
    pub fn mid_frame(&self, unforwarded: usize) -> bool {
        self.remaining > 0 || self.awaiting_whole || unforwarded > 0
    }
}

/// ErrorResponse severities that pgshift sends ("Error and Notice Message Fields").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// Encodes an ErrorResponse with severity, SQLSTATE `code` (five characters
/// from Appendix A, "PostgreSQL Error Codes"), message and optional hint.
pub fn error_response(severity: Severity, code: &str, message: &str, hint: Option<&str>) -> Bytes {
    let mut fields = vec![
        (b'S', severity.as_str().to_string()),
        (b'V', severity.as_str().to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ];
    if let Some(hint) = hint {
        fields.push((b'H', hint.to_string()));
    }
    let mut buf = BytesMut::new();
    ErrorResponse::new(fields)
        .encode(&mut buf)
        .expect("an ErrorResponse has no length limit");
    buf.freeze()
}

/// The message field of an ErrorResponse (whole frame), for logs: "Error and
/// Notice Message Fields" `M`, or a note that the frame could not be decoded.
pub fn error_message(frame: &[u8]) -> String {
    let mut buf = BytesMut::from(frame);
    let ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    match ErrorResponse::decode(&mut buf, &ctx) {
        Ok(Some(e)) => e
            .fields
            .iter()
            .find(|(code, _)| *code == b'M')
            .map(|(_, m)| m.clone())
            .unwrap_or_default(),
        _ => "(an ErrorResponse that does not decode)".to_string(),
    }
}

/// Encodes a whole simple-query result in text format ("Simple Query"):
/// RowDescription with `columns` (all of type text, OID 25), one DataRow per
/// row (`None` is SQL NULL), then CommandComplete with `tag`.
pub fn text_result(columns: &[&str], rows: &[Vec<Option<String>>], tag: &str) -> BytesMut {
    use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
    const TEXT_OID: u32 = 25;
    let mut out = BytesMut::new();
    let fields = columns
        .iter()
        .map(|name| FieldDescription::new(name.to_string(), 0, 0, TEXT_OID, -1, -1, 0))
        .collect();
    RowDescription::new(fields)
        .encode(&mut out)
        .expect("a RowDescription has no length limit");
    for row in rows {
        let mut data = BytesMut::new();
        for value in row {
            match value {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.put_slice(v.as_bytes());
                }
                None => data.put_i32(-1),
            }
        }
        DataRow::new(data, row.len() as i16)
            .encode(&mut out)
            .expect("a DataRow has no length limit");
    }
    out.extend_from_slice(&command_complete(tag));
    out
}

/// Encodes CommandComplete with `tag` (`PIN`, `SHOW 3`).
pub fn command_complete(tag: &str) -> BytesMut {
    let mut out = BytesMut::new();
    pgwire::messages::response::CommandComplete::new(tag.to_string())
        .encode(&mut out)
        .expect("a short tag fits");
    out
}

/// ReadyForQuery with transaction status idle ('Z', length 5, 'I').
pub const READY_IDLE: [u8; 6] = [b'Z', 0, 0, 0, 5, b'I'];

/// Encodes a BackendKeyData message with a 4-byte secret.
pub fn backend_key_data(pid: i32, secret: i32) -> Bytes {
    let mut buf = BytesMut::new();
    BackendKeyData::new(pid, SecretKey::I32(secret))
        .encode(&mut buf)
        .expect("a 4-byte key is valid");
    buf.freeze()
}

/// Decodes a BackendKeyData message (whole frame) into the pid and the secret
/// bytes (4 bytes in protocol 3.0, up to 256 in 3.2).
pub fn parse_backend_key_data(frame: &[u8]) -> Result<(i32, Bytes), WireError> {
    let mut buf = BytesMut::from(frame);
    let ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_2);
    match BackendKeyData::decode(&mut buf, &ctx) {
        Ok(Some(key)) => Ok((key.pid, key.secret_key.to_bytes())),
        Ok(None) => Err(WireError::BadStartup("truncated BackendKeyData".into())),
        Err(e) => Err(WireError::BadStartup(format!("BackendKeyData: {e}"))),
    }
}

/// Encodes a CancelRequest packet for the backend `pid` with `secret`.
pub fn cancel_request(pid: i32, secret: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(12 + secret.len());
    buf.put_u32(12 + secret.len() as u32);
    buf.put_u32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_slice(secret);
    buf.freeze()
}

/// Encodes an SSLRequest packet.
pub fn ssl_request() -> [u8; 8] {
    let mut packet = [0u8; 8];
    packet[..4].copy_from_slice(&8u32.to_be_bytes());
    packet[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    packet
}

/// The Terminate message.
pub const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

#[cfg(test)]
mod tests;
