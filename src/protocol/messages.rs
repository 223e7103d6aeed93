//! The messages pgshift writes itself, and the few it reads whole, encoded
//! and decoded without I/O ("Message Formats"; "Error and Notice Message
//! Fields"). Whole-message codecs are pgwire's where it has them.

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{Authentication, BackendKeyData, SecretKey};
use pgwire::messages::{DecodeContext, Message, ProtocolVersion};

use super::WireError;
use super::frame::HEADER_LEN;
use super::tags::{backend, frontend, status};

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

/// The SQLSTATE (field `C`) of an ErrorResponse (whole frame), if it decodes.
pub fn error_code(frame: &[u8]) -> Option<String> {
    let mut buf = BytesMut::from(frame);
    let ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    let e = ErrorResponse::decode(&mut buf, &ctx).ok()??;
    e.fields
        .into_iter()
        .find(|(code, _)| *code == b'C')
        .map(|(_, c)| c)
}

/// The name and value of a ParameterStatus message (whole frame: 'S',
/// length, name, value), if it is well formed.
pub fn parameter_status(frame: &[u8]) -> Option<(&str, &str)> {
    let body = frame.get(HEADER_LEN..)?;
    let name_end = body.iter().position(|b| *b == 0)?;
    let rest = &body[name_end + 1..];
    let value_end = rest.iter().position(|b| *b == 0)?;
    Some((
        std::str::from_utf8(&body[..name_end]).ok()?,
        std::str::from_utf8(&rest[..value_end]).ok()?,
    ))
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
pub const READY_IDLE: [u8; 6] = [backend::READY_FOR_QUERY, 0, 0, 0, 5, status::IDLE];

/// The Terminate message.
pub const TERMINATE: [u8; 5] = [frontend::TERMINATE, 0, 0, 0, 4];

/// The transaction status byte of a whole ReadyForQuery frame ('I', 'T' or
/// 'E'; 'I' when the frame is too short to hold one).
pub fn ready_status(frame: &[u8]) -> u8 {
    frame.get(HEADER_LEN).copied().unwrap_or(status::IDLE)
}

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

/// The request code of a whole Authentication (`R`) frame: one of
/// [`super::tags::auth`]. Errors: a frame too short to hold one.
pub fn auth_code(frame: &[u8]) -> Result<i32, WireError> {
    match frame.get(HEADER_LEN..HEADER_LEN + 4) {
        Some(c) => Ok(i32::from_be_bytes([c[0], c[1], c[2], c[3]])),
        None => Err(WireError::BadStartup(
            "an Authentication message without its code".into(),
        )),
    }
}

/// Re-encodes an AuthenticationSASL frame without the `-PLUS` (channel
/// binding) mechanisms. Errors: a frame that is not a well-formed
/// AuthenticationSASL.
pub fn sasl_without_channel_binding(mut frame: BytesMut) -> Result<BytesMut, WireError> {
    let malformed = |e: String| WireError::BadStartup(format!("malformed AuthenticationSASL: {e}"));
    let decoded = Authentication::decode(&mut frame, &DecodeContext::default())
        .map_err(|e| malformed(e.to_string()))?;
    let Some(Authentication::SASL(mechanisms)) = decoded else {
        return Err(malformed("not a SASL request".into()));
    };
    let kept: Vec<String> = mechanisms
        .into_iter()
        .filter(|m| !m.ends_with("-PLUS"))
        .collect();
    let mut out = BytesMut::new();
    Authentication::SASL(kept)
        .encode(&mut out)
        .map_err(|e| malformed(e.to_string()))?;
    Ok(out)
}

/// Encodes a simple Query message for `sql`.
pub fn query(sql: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(sql.len() + HEADER_LEN + 1);
    frame.push(frontend::QUERY);
    frame.extend_from_slice(&(sql.len() as u32 + 5).to_be_bytes());
    frame.extend_from_slice(sql.as_bytes());
    frame.push(0);
    frame
}

/// The SQL text of a whole Query or Parse frame, split as (what precedes
/// it in the body, the SQL, what follows it): Query is a string; Parse is a
/// statement name, a string and the parameter types. `None` for other
/// frames, or one whose strings are not terminated.
pub fn sql_of(frame: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let body = frame.get(HEADER_LEN..)?;
    match frame[0] {
        frontend::QUERY => {
            let end = body.iter().position(|b| *b == 0)?;
            Some((&body[..0], &body[..end], &body[end..]))
        }
        frontend::PARSE => {
            let name_end = body.iter().position(|b| *b == 0)? + 1;
            let end = name_end + body[name_end..].iter().position(|b| *b == 0)?;
            Some((&body[..name_end], &body[name_end..end], &body[end..]))
        }
        _ => None,
    }
}

/// A Query or Parse frame like `frame` with its SQL replaced by `sql`;
/// `None` when `frame` is neither (see [`sql_of`]).
pub fn with_sql(frame: &[u8], sql: &[u8]) -> Option<Vec<u8>> {
    let (prefix, _, rest) = sql_of(frame)?;
    let len = 4 + prefix.len() + sql.len() + rest.len();
    let mut out = Vec::with_capacity(1 + len);
    out.push(frame[0]);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(prefix);
    out.extend_from_slice(sql);
    out.extend_from_slice(rest);
    Some(out)
}

#[cfg(test)]
mod tests;
