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
