//! Query and Parse messages too long to hold for a rewrite (over
//! `max_rewrite_size`) from a session whose statements are rewritten: they
//! stream through, scanned as they pass, and only their last bytes are
//! held. When the scan finds a word that may need a rewrite or a refusal,
//! the end of the statement text is replaced (same length) by a newline
//! and an unterminated `/*` comment: whatever lexical state the text is in
//! (a string, a quoted name, a `--` comment, a dollar quote), Postgres's
//! scanner then fails, so no statement of the message runs. Postgres's
//! syntax error is replaced by pgshift's 54000, which says why.

use bytes::Bytes;

use crate::protocol::Severity;
use crate::protocol::messages::error_response;
use crate::protocol::tags::frontend;
use crate::rewrite::scan::StreamScan;

/// The bytes held at the end of a long message: a Parse's parameter types
/// (an Int16 count and up to 65535 Int32 OIDs), the text's terminating
/// zero byte, and the end of the text to replace.
pub const TAIL: usize = 2 + 4 * 65535 + 1 + 64;

/// How many bytes of the text's end are replaced (more, to reach a UTF-8
/// character boundary).
const WINDOW: usize = 16;

/// One long Query or Parse on its way upstream.
pub struct Oversized {
    tag: u8,
    body_len: usize,
    max: usize,
    /// Zero bytes in the part streamed so far (a Parse's name ends at the first).
    nuls: usize,
    scan: StreamScan,
}

/// What to do with the held tail: replace `len` bytes at `at` (in the
/// tail) with `filler`, and tell the client `error` instead of Postgres's.
pub struct Refusal {
    pub at: usize,
    pub filler: Vec<u8>,
    pub error: Bytes,
}

impl Oversized {
    /// A message of type `tag` with a body of `body_len` bytes, over `max`.
    pub fn new(tag: u8, body_len: usize, max: usize, scan: StreamScan) -> Self {
        Oversized {
            tag,
            body_len,
            max,
            nuls: 0,
            scan,
        }
    }

    /// Scans a part of the body that is forwarded now.
    pub fn body(&mut self, part: &[u8]) {
        self.nuls += part.iter().filter(|b| **b == 0).count();
        self.scan.feed(part);
    }

    /// Scans the held tail; the refusal to make, if the text names a word
    /// that may need a rewrite.
    pub fn tail(mut self, tail: &[u8]) -> Option<Refusal> {
        let sql_start;
        let sql_end = if self.tag == frontend::QUERY {
            sql_start = 0;
            tail.len().checked_sub(1)?
        } else {
            // Parse: name, zero, text, zero, parameter types.
            let mut nuls = tail
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == 0)
                .map(|(i, _)| i);
            if self.nuls == 0 {
                sql_start = nuls.next()? + 1;
            } else {
                sql_start = 0;
            }
            nuls.next()?
        };
        self.scan.feed(&tail[sql_start..sql_end]);
        let word = self.scan.found()?.to_string();
        let mut at = sql_end.saturating_sub(WINDOW).max(sql_start);
        while at > sql_start && (tail[at] & 0xC0) == 0x80 {
            at -= 1;
        }
        if sql_end - at < 3 {
            // Too short to hold a statement of its own.
            return None;
        }
        let mut filler = b"\n/*".to_vec();
        filler.resize(sql_end - at, b' ');
        let message = format!(
            "pgshift: this statement text is {} bytes, over max_rewrite_size ({} bytes), and names {word:?}, so it may need a rewrite or a refusal while a migration runs; pgshift did not let it run",
            self.body_len, self.max
        );
        Some(Refusal {
            at,
            filler,
            error: error_response(
                Severity::Error,
                "54000",
                &message,
                Some(
                    "Send it in smaller statements, or raise max_rewrite_size (--max-rewrite-size).",
                ),
            ),
        })
    }
}

#[cfg(test)]
mod tests;
