//! Framing of the message stream after startup: a scanner that walks
//! message headers in bytes that arrive in arbitrary chunks, without
//! copying bodies, so that the data path forwards raw bytes while seeing
//! every header ("Message Formats": a type byte, then an Int32 length that
//! counts itself).

use super::WireError;

/// Bytes in a message header: one type byte and an Int32 length.
pub const HEADER_LEN: usize = 5;

/// What a [`FrameVisitor`] wants to see of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Forward the body as it streams in, unseen.
    Header,
    /// Hold the frame back until it is complete and pass it to [`FrameVisitor::frame`].
    Whole,
    /// Stream the body through [`FrameVisitor::body`] as it arrives, but
    /// hold back its last `n` bytes (at most the body) until all of them
    /// are there, then pass them to [`FrameVisitor::tail`]: a frame too
    /// large to hold whole whose end may have to change.
    Tail(usize),
    /// Do not forward the frame: its header and body, as they arrive, are
    /// reported to [`FrameVisitor::dropped`] for the caller to leave out.
    Drop,
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

    /// For [`Want::Tail`]: called with each part of the body before the
    /// held tail, in order, as it is forwarded.
    fn body(&mut self, _part: &[u8]) {}

    /// For [`Want::Tail`]: called once with the held tail (the body's last
    /// bytes); `at` is its offset in the buffer passed to
    /// [`FrameScanner::scan`].
    fn tail(&mut self, _at: usize, _tail: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }

    /// For [`Want::Drop`]: bytes `at..at + len` of the buffer passed to
    /// [`FrameScanner::scan`] belong to the dropped frame (`first` for the
    /// part that holds its header).
    fn dropped(&mut self, _at: usize, _len: usize, _first: bool) {}
}

/// Walks the message frames in a byte stream that arrives in arbitrary chunks,
/// so that the data path can forward raw bytes while seeing every header. Only
/// frames that a visitor asks for whole are ever held back.
#[derive(Debug, Default)]
pub struct FrameScanner {
    /// Body bytes of the current streamed frame still to pass.
    remaining: usize,
    /// Of those, the last ones a [`Want::Tail`] frame holds back.
    hold: usize,
    /// The current frame's bytes are dropped ([`Want::Drop`]).
    dropping: bool,
    /// The header at the front of the next chunk was seen and wants the whole frame.
    awaiting_whole: bool,
}

impl FrameScanner {
    /// Scans `buf` (bytes not yet forwarded, starting where the previous call
    /// stopped) and returns how many of them may be forwarded now. The rest (an
    /// incomplete header, or an incomplete frame wanted whole) must be kept and
    /// passed again, with more bytes after it, on the next call.
    ///
    /// Errors: a length word below 4, or the visitor's own error.
    pub fn scan<V: FrameVisitor>(
        &mut self,
        buf: &[u8],
        visitor: &mut V,
    ) -> Result<usize, V::Error> {
        let mut pos = 0;
        loop {
            if self.remaining > self.hold {
                let n = (self.remaining - self.hold).min(buf.len() - pos);
                if self.hold > 0 {
                    visitor.body(&buf[pos..pos + n]);
                }
                if self.dropping && n > 0 {
                    visitor.dropped(pos, n, false);
                }
                pos += n;
                self.remaining -= n;
                if self.remaining > self.hold {
                    return Ok(pos);
                }
            }
            if self.hold > 0 {
                if buf.len() - pos < self.hold {
                    return Ok(pos);
                }
                visitor.tail(pos, &buf[pos..pos + self.hold])?;
                pos += self.hold;
                self.remaining = 0;
                self.hold = 0;
            }
            self.dropping = self.dropping && self.remaining > 0;
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
                Want::Tail(n) => {
                    pos += HEADER_LEN;
                    self.remaining = len as usize - 4;
                    self.hold = n.min(self.remaining);
                }
                Want::Drop => {
                    visitor.dropped(pos, HEADER_LEN, true);
                    pos += HEADER_LEN;
                    self.remaining = len as usize - 4;
                    self.dropping = true;
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

#[cfg(test)]
mod tests;
