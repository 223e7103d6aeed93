//! The startup phase's packets, parsed and encoded in one place
//! ("Message Formats": StartupMessage, SSLRequest, GSSENCRequest,
//! CancelRequest), and the `options` parameter's escaping as the server's
//! `pg_split_opts` reads it.
//!
//! The StartupMessage keeps its parameters in order, duplicates included, as
//! raw bytes: Postgres reads them in order (a later duplicate overrides an
//! earlier one), so a map would lose what the server will see. pgwire's
//! `Startup` decodes into a map, which is why this one is parsed here.

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::{DecodeContext, Message, ProtocolVersion};

use super::WireError;
use super::tags::request;

/// Longest startup-phase packet accepted, as Postgres's MAX_STARTUP_PACKET_LENGTH.
pub const MAX_STARTUP_PACKET_LENGTH: usize = 10_000;

/// The first packet a client sends, as classified by its request code.
#[derive(Debug)]
pub enum StartupPacket {
    /// SSLRequest: the client wants TLS before anything else.
    SslRequest,
    /// GSSENCRequest: the client wants GSSAPI encryption.
    GssEncRequest,
    /// CancelRequest for the backend that `pid` and `secret` identify.
    Cancel { pid: i32, secret: Bytes },
    /// StartupMessage: `raw` is the whole packet, length word included, as
    /// sent; `message` is its parsed content.
    Startup { raw: Bytes, message: StartupMessage },
}

impl StartupPacket {
    /// Classifies and decodes a complete startup-phase packet (length word
    /// included), as `net::read_startup_packet` returns it.
    ///
    /// Errors: a protocol major version other than 3, a parameter list
    /// without its terminating zero byte, or a malformed CancelRequest.
    pub fn parse(packet: BytesMut) -> Result<Self, WireError> {
        if packet.len() < 8 {
            return Err(WireError::StartupLength(packet.len() as u32));
        }
        let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        match code {
            request::SSL => Ok(StartupPacket::SslRequest),
            request::GSSENC => Ok(StartupPacket::GssEncRequest),
            request::CANCEL => {
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
                let message = StartupMessage::parse(&packet)?;
                Ok(StartupPacket::Startup {
                    raw: packet.freeze(),
                    message,
                })
            }
        }
    }
}

/// A StartupMessage: the protocol version it asks for and its parameters,
/// in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// The protocol version code (major in the high 16 bits).
    pub code: u32,
    /// (name, value) pairs as sent, duplicates included.
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

impl StartupMessage {
    /// Parses a whole StartupMessage packet (length word included).
    ///
    /// Errors: a protocol major version other than 3 (pgshift speaks 3.x),
    /// or a parameter list that does not end with a zero byte.
    pub fn parse(packet: &[u8]) -> Result<Self, WireError> {
        let Some(code) = packet.get(4..8) else {
            return Err(WireError::StartupLength(packet.len() as u32));
        };
        let code = u32::from_be_bytes([code[0], code[1], code[2], code[3]]);
        let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
        if major != 3 {
            return Err(WireError::UnsupportedProtocol { major, minor });
        }
        let unterminated =
            || WireError::BadStartup("the parameter list does not end with a zero byte".into());
        let mut rest = &packet[8..];
        let mut params = Vec::new();
        loop {
            let end = rest.iter().position(|b| *b == 0).ok_or_else(unterminated)?;
            if end == 0 {
                // As Postgres: the terminator must be the packet's last byte.
                if rest.len() != 1 {
                    return Err(WireError::BadStartup(
                        "bytes after the parameter list's terminating zero byte".into(),
                    ));
                }
                return Ok(StartupMessage { code, params });
            }
            let name = rest[..end].to_vec();
            rest = &rest[end + 1..];
            let vend = rest.iter().position(|b| *b == 0).ok_or_else(unterminated)?;
            params.push((name, rest[..vend].to_vec()));
            rest = &rest[vend + 1..];
        }
    }

    /// The value of parameter `name` (its last occurrence, as Postgres reads
    /// it), with bytes that are not UTF-8 replaced.
    pub fn get(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The connection's user and database (the user's name when the packet
    /// names no database), as Postgres defaults them.
    pub fn user_and_database(&self) -> (String, String) {
        let user = self.get("user").unwrap_or_default();
        let database = self.get("database").unwrap_or_else(|| user.clone());
        (user, database)
    }

    /// Sets parameter `name` to `value`: the first occurrence is replaced in
    /// place, or the parameter is added at the end.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.params.iter_mut().find(|(k, _)| k == name.as_bytes()) {
            Some((_, v)) => *v = value.as_bytes().to_vec(),
            None => self
                .params
                .push((name.as_bytes().to_vec(), value.as_bytes().to_vec())),
        }
    }

    /// Encodes the packet, length word included.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        body.put_u32(self.code);
        for (k, v) in &self.params {
            body.put_slice(k);
            body.put_u8(0);
            body.put_slice(v);
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.put_u32(body.len() as u32 + 4);
        out.put_slice(&body);
        out.freeze()
    }
}

/// Splits a startup `options` string as the server does (pg_split_opts):
/// on whitespace, with a backslash taking the next character literally.
pub fn split_options(options: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            c if c.is_ascii_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(current);
    }
    out
}

/// Joins arguments into an `options` string, escaping whitespace and
/// backslashes so that [`split_options`] gives them back.
pub fn join_options(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let mut s = String::new();
            for c in a.chars() {
                if c == '\\' || c.is_ascii_whitespace() {
                    s.push('\\');
                }
                s.push(c);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Encodes an SSLRequest packet.
pub fn ssl_request() -> [u8; 8] {
    let mut packet = [0u8; 8];
    packet[..4].copy_from_slice(&8u32.to_be_bytes());
    packet[4..].copy_from_slice(&request::SSL.to_be_bytes());
    packet
}

/// Encodes a CancelRequest packet for the backend `pid` with `secret`.
pub fn cancel_request(pid: i32, secret: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(12 + secret.len());
    buf.put_u32(12 + secret.len() as u32);
    buf.put_u32(request::CANCEL);
    buf.put_i32(pid);
    buf.put_slice(secret);
    buf.freeze()
}

#[cfg(test)]
mod tests;
