use super::*;

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
