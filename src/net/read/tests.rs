use super::*;

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
