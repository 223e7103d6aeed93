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

    /// Whether parameter `name` is one the server reads itself
    /// (ProcessStartupPacket: `user`, `database`, `options`, `replication`
    /// and the `_pq_.` protocol options); every other name is a setting.
    fn is_special(name: &[u8]) -> bool {
        matches!(name, b"user" | b"database" | b"options" | b"replication")
            || name.starts_with(b"_pq_.")
    }

    /// The switches of the `options` parameter the server reads: the last
    /// one sent (an earlier `options` is overwritten).
    pub fn switches(&self) -> Switches {
        match self.params.iter().rev().find(|(k, _)| k == b"options") {
            Some((_, v)) => Switches::parse(split_options(v)),
            None => Switches::default(),
        }
    }

    /// The value setting `name` (a GUC name in lowercase) gets from this
    /// packet, as the server applies it (process_startup_options): the
    /// switches of `options` first, then the other parameters in order, so
    /// the last parameter of that name (in any case) wins, else the last
    /// `-c`/`--` switch naming it. Bytes that are not UTF-8 are replaced.
    pub fn setting(&self, name: &str) -> Option<String> {
        let from_params = self
            .params
            .iter()
            .rev()
            .find(|(k, _)| !Self::is_special(k) && k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.clone());
        let value = from_params.or_else(|| {
            self.switches()
                .switches
                .into_iter()
                .rev()
                .find(|s| s.setting_name().as_deref() == Some(name))
                .and_then(|s| match s {
                    Switch::Setting { value, .. } => value,
                    Switch::Other { .. } => None,
                })
        })?;
        Some(String::from_utf8_lossy(&value).into_owned())
    }

    /// Takes setting `name` (a GUC name in lowercase) out of the packet:
    /// every parameter of that name in any case, and every switch naming it
    /// in `options`. Returns the value it would have had ([`Self::setting`]).
    /// The packet keeps a single `options` (the one the server reads), and
    /// none when nothing is left in it.
    pub fn take_setting(&mut self, name: &str) -> Option<String> {
        let value = self.setting(name);
        self.params
            .retain(|(k, _)| Self::is_special(k) || !k.eq_ignore_ascii_case(name.as_bytes()));
        let Some(last) = self.params.iter().rposition(|(k, _)| k == b"options") else {
            return value;
        };
        let mut switches = Switches::parse(split_options(&self.params[last].1));
        let before = switches.switches.len();
        switches
            .switches
            .retain(|s| s.setting_name().as_deref() != Some(name));
        if switches.switches.len() != before {
            self.params[last].1 = join_options(&switches.to_args());
        }
        let empty = self.params[last].1.iter().all(|b| is_c_space(*b));
        let mut i = 0;
        self.params.retain(|(k, _)| {
            let keep = k != b"options" || (i == last && !empty);
            i += 1;
            keep
        });
        value
    }

    /// Adds setting `name` = `value` as the last parameter, where it
    /// overrides anything the packet says of it.
    pub fn push(&mut self, name: &str, value: &str) {
        self.params
            .push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
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

/// C's `isspace` in the "C" locale, which `pg_split_opts` splits on:
/// space, \t, \n, \v, \f and \r (Rust's `is_ascii_whitespace` leaves
/// out \v).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits a startup `options` value into arguments as the server does
/// (`pg_split_opts` in src/backend/utils/init/postinit.c): on C whitespace,
/// with a backslash taking the next byte literally. Bytes, not characters:
/// the value need not be UTF-8.
pub fn split_options(options: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = options.iter().copied().peekable();
    loop {
        while bytes.next_if(|b| is_c_space(*b)).is_some() {}
        if bytes.peek().is_none() {
            return out;
        }
        let mut arg = Vec::new();
        while let Some(b) = bytes.next_if(|b| !is_c_space(*b)) {
            if b == b'\\' {
                // An escaped byte, whitespace included; a trailing backslash
                // stands for nothing.
                if let Some(next) = bytes.next() {
                    arg.push(next);
                }
            } else {
                arg.push(b);
            }
        }
        out.push(arg);
    }
}

/// Joins arguments into an `options` value, escaping whitespace and
/// backslashes so that [`split_options`] gives them back.
pub fn join_options(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        for &b in arg {
            if b == b'\\' || is_c_space(b) {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    out
}

/// The switches the server accepts in `options`, in getopt's notation
/// (`process_postgres_switches` in src/backend/tcop/postgres.c): a letter
/// followed by `:` takes an argument.
const SWITCHES: &[u8] = b"B:bc:C:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:";

/// Whether switch `letter` exists, and whether it takes an argument.
fn switch_arity(letter: u8) -> Option<bool> {
    let at = SWITCHES
        .iter()
        .position(|b| *b == letter && letter != b':')?;
    Some(SWITCHES.get(at + 1) == Some(&b':'))
}

/// One switch of an `options` value, as getopt reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    /// `-c name=value` or `--name=value` (also `-cname=value`): a setting.
    /// `name` as written; `value` is `None` when there is no `=`, which
    /// the server refuses.
    Setting {
        name: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// Any other switch, with its argument when it takes one.
    Other { letter: u8, arg: Option<Vec<u8>> },
}

impl Switch {
    /// The name of the setting, as the server looks it up: ASCII lowercase
    /// (GUC names are case-insensitive) with `-` read as `_`, as
    /// `ParseLongOption` does. `None` for a switch that is not a setting.
    pub fn setting_name(&self) -> Option<String> {
        let Switch::Setting { name, .. } = self else {
            return None;
        };
        let name: Vec<u8> = name
            .iter()
            .map(|b| {
                if *b == b'-' {
                    b'_'
                } else {
                    b.to_ascii_lowercase()
                }
            })
            .collect();
        Some(String::from_utf8_lossy(&name).into_owned())
    }
}

/// An `options` value read as the server reads it: its switches in order,
/// and, from the first argument the server would refuse (not a switch, an
/// unknown letter, a missing argument), the rest verbatim. The server
/// refuses the whole connection in that case, so the rest is only kept to
/// reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switches {
    pub switches: Vec<Switch>,
    pub refused: Vec<Vec<u8>>,
}

impl Switches {
    /// Reads `args` (from [`split_options`]) with getopt's rules: a switch
    /// letter's argument is the rest of its word or else the next word, and
    /// letters that take none may be grouped (`-ec name=value`).
    pub fn parse(args: Vec<Vec<u8>>) -> Switches {
        let mut out = Switches::default();
        let mut i = 0;
        'words: while i < args.len() {
            let word = &args[i];
            if word.len() < 2 || word[0] != b'-' || word == b"--" {
                break;
            }
            let mut j = 1;
            while j < word.len() {
                let letter = word[j];
                let Some(takes_arg) = switch_arity(letter) else {
                    break 'words;
                };
                if !takes_arg {
                    out.switches.push(Switch::Other { letter, arg: None });
                    j += 1;
                    continue;
                }
                let arg = if j + 1 < word.len() {
                    word[j + 1..].to_vec()
                } else if let Some(next) = args.get(i + 1) {
                    i += 1;
                    next.clone()
                } else {
                    break 'words;
                };
                out.switches.push(if letter == b'c' || letter == b'-' {
                    let (name, value) = match arg.iter().position(|b| *b == b'=') {
                        Some(eq) => (arg[..eq].to_vec(), Some(arg[eq + 1..].to_vec())),
                        None => (arg, None),
                    };
                    Switch::Setting { name, value }
                } else {
                    Switch::Other {
                        letter,
                        arg: Some(arg),
                    }
                });
                break;
            }
            i += 1;
        }
        // The word the loop stopped in goes back whole (with any grouped
        // letters before the bad one repeated): the server refuses it.
        out.refused = args[i.min(args.len())..].to_vec();
        out
    }

    /// The arguments again, one word per switch (`-c` `name=value`), for
    /// [`join_options`].
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let mut args = Vec::new();
        for switch in &self.switches {
            match switch {
                Switch::Setting { name, value } => {
                    let mut setting = name.clone();
                    if let Some(value) = value {
                        setting.push(b'=');
                        setting.extend_from_slice(value);
                    }
                    args.push(b"-c".to_vec());
                    args.push(setting);
                }
                Switch::Other { letter, arg } => {
                    args.push(vec![b'-', *letter]);
                    args.extend(arg.iter().cloned());
                }
            }
        }
        args.extend(self.refused.iter().cloned());
        args
    }
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
