use super::*;

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

#[test]
fn startup_packets_are_classified() {
    let mut startup = BytesMut::new();
    startup.put_u32(0);
    startup.put_u32(196608);
    startup.put_slice(b"user\0alice\0database\0db\0\0");
    let len = startup.len() as u32;
    startup[..4].copy_from_slice(&len.to_be_bytes());
    match StartupPacket::parse(startup.clone()).unwrap() {
        StartupPacket::Startup { raw, params } => {
            assert_eq!(&raw[..], &startup[..]);
            assert_eq!(params["user"], "alice");
            assert_eq!(params["database"], "db");
        }
        other => panic!("expected a startup message, got {other:?}"),
    }
    let ssl = BytesMut::from(&ssl_request()[..]);
    assert!(matches!(
        StartupPacket::parse(ssl).unwrap(),
        StartupPacket::SslRequest
    ));
    let cancel = BytesMut::from(&cancel_request(42, &7i32.to_be_bytes())[..]);
    match StartupPacket::parse(cancel).unwrap() {
        StartupPacket::Cancel { pid, secret } => {
            assert_eq!((pid, &secret[..]), (42, &7i32.to_be_bytes()[..]))
        }
        other => panic!("expected a cancel request, got {other:?}"),
    }
}

#[test]
fn protocol_two_and_unterminated_parameters_are_refused() {
    let mut v2 = BytesMut::new();
    v2.put_u32(8);
    v2.put_u32(2 << 16);
    let err = StartupPacket::parse(v2).unwrap_err().to_string();
    assert!(err.contains("protocol 2.0"), "{err}");
    let mut bad = BytesMut::new();
    bad.put_u32(13);
    bad.put_u32(196608);
    bad.put_slice(b"user\0");
    bad.truncate(12);
    let len = bad.len() as u32;
    bad[..4].copy_from_slice(&len.to_be_bytes());
    assert!(StartupPacket::parse(bad).is_err());
}

#[tokio::test]
async fn startup_reader_checks_length_before_allocating() {
    let huge = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    let err = read_startup_packet(&mut &huge[..]).await.unwrap_err();
    assert!(
        matches!(err, WireError::StartupLength(0x7fff_ffff)),
        "{err}"
    );
    let short = [0, 0, 0, 20, 0, 3];
    let err = read_startup_packet(&mut &short[..]).await.unwrap_err();
    assert!(matches!(err, WireError::TruncatedStartup), "{err}");
    assert!(read_startup_packet(&mut &[][..]).await.unwrap().is_none());
}

#[test]
fn error_response_carries_the_sqlstate_and_hint() {
    let bytes = error_response(
        Severity::Fatal,
        "53300",
        "too many",
        Some("raise max_clients"),
    );
    assert_eq!(bytes[0], b'E');
    let body = String::from_utf8_lossy(&bytes[5..]);
    for part in ["SFATAL", "C53300", "Mtoo many", "Hraise max_clients"] {
        assert!(body.contains(part), "{body:?} lacks {part}");
    }
}

#[test]
fn backend_key_data_round_trips() {
    let frame = backend_key_data(77, -5);
    let (pid, secret) = parse_backend_key_data(&frame).unwrap();
    assert_eq!((pid, &secret[..]), (77, &(-5i32).to_be_bytes()[..]));
}
