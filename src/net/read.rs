//! Reading whole startup-phase packets and messages from an async stream,
//! for the startup phase and the admin console, where messages are small
//! (the data path streams instead, with `protocol::FrameScanner`).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::{HEADER_LEN, MAX_STARTUP_PACKET_LENGTH, WireError};

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
/// off, keeping any bytes after it in `buf` for the next call.
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

#[cfg(test)]
mod tests;
