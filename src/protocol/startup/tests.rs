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
    let args = vec![b"-c".to_vec(), b"search_path=\"a b\", c\\d\x0be".to_vec()];
    assert_eq!(split_options(&join_options(&args)), args);
    let words = |s: &[u8]| -> Vec<String> {
        split_options(s)
            .into_iter()
            .map(|w| String::from_utf8(w).unwrap())
            .collect()
    };
    assert_eq!(words(b"  -c  a=1   --b=2 "), ["-c", "a=1", "--b=2"]);
    assert_eq!(words(b"-c x=a\\ b"), ["-c", "x=a b"]);
    // C's isspace: \v and \f split too; a trailing backslash is dropped.
    assert_eq!(words(b"-c\x0ba=1\x0c-c\rb=2\\"), ["-c", "a=1", "-c", "b=2"]);
}

#[test]
fn switches_are_read_with_getopts_rules() {
    let read = |s: &str| Switches::parse(split_options(s.as_bytes()));
    let setting = |name: &str, value: &str| Switch::Setting {
        name: name.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
    };
    assert_eq!(
        read("-c a=1 -cb=2 --c-d=3 -e -ec e=4 -B 8").switches,
        vec![
            setting("a", "1"),
            setting("b", "2"),
            setting("c-d", "3"),
            Switch::Other {
                letter: b'e',
                arg: None
            },
            Switch::Other {
                letter: b'e',
                arg: None
            },
            setting("e", "4"),
            Switch::Other {
                letter: b'B',
                arg: Some(b"8".to_vec())
            },
        ]
    );
    assert_eq!(
        Switch::Setting {
            name: b"PgShift.Version".to_vec(),
            value: None
        }
        .setting_name()
        .as_deref(),
        Some("pgshift.version")
    );
    assert_eq!(
        read("--search-path=x").switches[0]
            .setting_name()
            .as_deref(),
        Some("search_path")
    );
    // What the server refuses stays, verbatim, from the first bad word on.
    let bad = read("-c a=1 stray -c b=2");
    assert_eq!(bad.switches, vec![setting("a", "1")]);
    assert_eq!(
        bad.refused,
        vec![b"stray".to_vec(), b"-c".to_vec(), b"b=2".to_vec()]
    );
    assert_eq!(read("-c").refused, vec![b"-c".to_vec()]);
    let round = read("-ec a=1 -Bx");
    assert_eq!(
        Switches::parse(round.to_args()),
        round,
        "to_args gives back the same switches"
    );
}

#[test]
fn settings_are_read_as_the_server_applies_them() {
    let message = |params: &[(&str, &str)]| StartupMessage {
        code: 196608,
        params: params
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
    };
    let m = message(&[
        ("options", "-c application_name=first"),
        ("options", "-c application_name=opt -c search_path=o"),
        ("Application_Name", "param"),
        ("application_name", "last"),
    ]);
    assert_eq!(m.setting("application_name").as_deref(), Some("last"));
    assert_eq!(m.setting("search_path").as_deref(), Some("o"));
    let mut m = m;
    assert_eq!(m.take_setting("search_path").as_deref(), Some("o"));
    assert_eq!(m.take_setting("application_name").as_deref(), Some("last"));
    assert_eq!(
        m.params,
        Vec::<(Vec<u8>, Vec<u8>)>::new(),
        "nothing left: no options"
    );
    // `user` is read by the server itself, and case-sensitively.
    let m = message(&[("user", "a"), ("USER", "b"), ("user", "c")]);
    assert_eq!(m.user_and_database(), ("c".into(), "c".into()));
    assert_eq!(m.setting("user"), Some("b".into()), "USER is a setting");
}
