use super::*;
use crate::protocol::WireError;

/// Records what the scanner showed it; wants 'Z' frames whole.
#[derive(Default)]
struct Recorder {
    headers: Vec<(u8, u32)>,
    wholes: Vec<Vec<u8>>,
}

impl FrameVisitor for Recorder {
    type Error = WireError;
    fn header(&mut self, tag: u8, len: u32) -> Result<Want, WireError> {
        self.headers.push((tag, len));
        Ok(if tag == b'Z' {
            Want::Whole
        } else {
            Want::Header
        })
    }
    fn frame(&mut self, _at: usize, frame: &[u8]) -> Result<(), WireError> {
        self.wholes.push(frame.to_vec());
        Ok(())
    }
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Feeds `stream` in chunks of `chunk` bytes, keeping what the scanner holds
/// back, and returns the recorder plus everything it let through.
fn feed(stream: &[u8], chunk: usize) -> (Recorder, Vec<u8>) {
    let mut scanner = FrameScanner::default();
    let mut rec = Recorder::default();
    let mut pending = Vec::new();
    let mut forwarded = Vec::new();
    for piece in stream.chunks(chunk) {
        pending.extend_from_slice(piece);
        let n = scanner.scan(&pending, &mut rec).unwrap();
        forwarded.extend(pending.drain(..n));
    }
    assert!(
        scanner.at_boundary(pending.len()),
        "scanner must end between frames"
    );
    (rec, forwarded)
}

#[test]
fn scanner_sees_every_header_whatever_the_chunking() {
    let mut stream = msg(b'T', b"rowdesc");
    stream.extend(msg(b'D', &[7u8; 1000]));
    stream.extend(msg(b'C', b"SELECT 1\0"));
    stream.extend(msg(b'Z', b"I"));
    stream.extend(msg(b'N', b""));
    for chunk in [1, 2, 3, 5, 6, 7, 64, 4096] {
        let (rec, forwarded) = feed(&stream, chunk);
        assert_eq!(forwarded, stream, "chunk {chunk}: bytes pass unchanged");
        let tags: Vec<u8> = rec.headers.iter().map(|h| h.0).collect();
        assert_eq!(tags, b"TDCZN", "chunk {chunk}");
        assert_eq!(rec.wholes, vec![msg(b'Z', b"I")], "chunk {chunk}");
    }
}

#[test]
fn scanner_holds_back_an_incomplete_header() {
    let mut scanner = FrameScanner::default();
    let mut rec = Recorder::default();
    assert_eq!(scanner.scan(&[b'Q', 0, 0], &mut rec).unwrap(), 0);
    assert!(scanner.mid_frame(3));
    assert!(rec.headers.is_empty());
}

#[test]
fn scanner_refuses_a_length_below_four() {
    let mut scanner = FrameScanner::default();
    let err = scanner
        .scan(&[b'Q', 0, 0, 0, 3], &mut Recorder::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid message length 3"),
        "{err}"
    );
}

/// Streams 'Q' bodies but holds back their last 3 bytes.
#[derive(Default)]
struct TailRecorder {
    bodies: Vec<u8>,
    tails: Vec<(usize, Vec<u8>)>,
}

impl FrameVisitor for TailRecorder {
    type Error = WireError;
    fn header(&mut self, tag: u8, _len: u32) -> Result<Want, WireError> {
        Ok(if tag == b'Q' {
            Want::Tail(3)
        } else {
            Want::Header
        })
    }
    fn frame(&mut self, _at: usize, _frame: &[u8]) -> Result<(), WireError> {
        Ok(())
    }
    fn body(&mut self, part: &[u8]) {
        self.bodies.extend_from_slice(part);
    }
    fn tail(&mut self, _at: usize, tail: &[u8]) -> Result<(), WireError> {
        self.tails.push((self.bodies.len(), tail.to_vec()));
        Ok(())
    }
}

#[test]
fn a_tail_is_held_until_it_is_whole_and_the_rest_streams() {
    let mut stream = msg(b'Q', b"SELECT 1;\0");
    stream.extend(msg(b'S', b""));
    stream.extend(msg(b'Q', b"ab"));
    for chunk in [1, 2, 3, 5, 7, 64] {
        let mut scanner = FrameScanner::default();
        let mut rec = TailRecorder::default();
        let mut pending = Vec::new();
        let mut forwarded = Vec::new();
        for piece in stream.chunks(chunk) {
            pending.extend_from_slice(piece);
            let n = scanner.scan(&pending, &mut rec).unwrap();
            forwarded.extend(pending.drain(..n));
        }
        assert_eq!(
            forwarded, stream,
            "chunk {chunk}: every byte passes, in order"
        );
        assert!(scanner.at_boundary(pending.len()), "chunk {chunk}");
        assert_eq!(
            rec.bodies, b"SELECT ",
            "chunk {chunk}: the body before the tail"
        );
        assert_eq!(
            rec.tails,
            vec![(7, b"1;\0".to_vec()), (7, b"ab".to_vec())],
            "chunk {chunk}: each tail once, whole (a short body is all tail)"
        );
    }
}

/// Drops 'E' frames, reporting their parts.
#[derive(Default)]
struct DropRecorder {
    dropped: Vec<(usize, usize, bool)>,
}

impl FrameVisitor for DropRecorder {
    type Error = WireError;
    fn header(&mut self, tag: u8, _len: u32) -> Result<Want, WireError> {
        Ok(if tag == b'E' {
            Want::Drop
        } else {
            Want::Header
        })
    }
    fn frame(&mut self, _at: usize, _frame: &[u8]) -> Result<(), WireError> {
        Ok(())
    }
    fn dropped(&mut self, at: usize, len: usize, first: bool) {
        self.dropped.push((at, len, first));
    }
}

#[test]
fn a_dropped_frame_is_reported_part_by_part_and_nothing_else() {
    let mut stream = msg(b'T', b"keep");
    stream.extend(msg(b'E', &[9u8; 100]));
    stream.extend(msg(b'Z', b"I"));
    for chunk in [1, 3, 7, 64, 4096] {
        let mut scanner = FrameScanner::default();
        let mut rec = DropRecorder::default();
        let mut pending = Vec::new();
        let mut kept = Vec::new();
        for piece in stream.chunks(chunk) {
            pending.extend_from_slice(piece);
            rec.dropped.clear();
            let n = scanner.scan(&pending, &mut rec).unwrap();
            let mut last = 0;
            for (at, len, _) in &rec.dropped {
                kept.extend_from_slice(&pending[last..*at]);
                last = at + len;
            }
            kept.extend_from_slice(&pending[last..n]);
            pending.drain(..n);
        }
        let mut want = msg(b'T', b"keep");
        want.extend(msg(b'Z', b"I"));
        assert_eq!(kept, want, "chunk {chunk}");
    }
}
