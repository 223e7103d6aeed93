use bytes::{BufMut, BytesMut};

use super::*;

#[test]
fn startup_packets_are_classified() {
    let mut startup = BytesMut::new();
    startup.put_u32(0);
    startup.put_u32(196608);
    startup.put_slice(b"user\0alice\0database\0db\0\0");
    let len = startup.len() as u32;
    startup[..4].copy_from_slice(&len.to_be_bytes());
    match StartupPacket::parse(startup.clone()).unwrap() {
        StartupPacket::Startup { raw, message } => {
            assert_eq!(&raw[..], &startup[..]);
            assert_eq!(message.get("user").unwrap(), "alice");
            assert_eq!(message.get("database").unwrap(), "db");
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

#[test]
fn options_round_trip_with_escapes() {
    let args = vec!["-c".to_string(), "search_path=\"a b\", c\\d".to_string()];
    assert_eq!(split_options(&join_options(&args)), args);
    assert_eq!(split_options("  -c  a=1   --b=2 "), ["-c", "a=1", "--b=2"]);
    assert_eq!(split_options("-c x=a\\ b"), ["-c", "x=a b"]);
}
