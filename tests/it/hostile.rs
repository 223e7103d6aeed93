//! Hostile input: each case gets an error (or a clean close) and never a panic;
//! the proxy keeps serving other clients afterwards.

use crate::harness::{Env, Raw, message, startup_message};

/// After each hostile case the proxy must still serve a normal client.
async fn still_serving(env: &Env) {
    let client = env.connect().await;
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_startup_packet() {
    let env = Env::start().await;
    let packet = startup_message(&[("user", "postgres"), ("database", "postgres")]);
    for cut in [1, 3, 4, 7, 8, packet.len() - 1] {
        let mut raw = Raw::connect(env.proxy).await;
        raw.send(&packet[..cut]).await;
        raw.stream.shutdown().await.unwrap();
        // The peer closed mid-packet: nothing to answer, the connection just ends.
        assert_eq!(raw.error_then_close().await, None, "cut at {cut}");
    }
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_length_of_2_pow_31_minus_1() {
    let env = Env::start().await;
    let mut raw = Raw::connect(env.proxy).await;
    let mut packet = 0x7fff_ffffu32.to_be_bytes().to_vec();
    packet.extend_from_slice(&196608u32.to_be_bytes());
    raw.send(&packet).await;
    assert_eq!(raw.error_then_close().await.as_deref(), Some("08P01"));
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_length_of_2_pow_31_minus_1() {
    let env = Env::start().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    msg.extend_from_slice(b"SELECT 1");
    raw.send(&msg).await;
    assert_eq!(raw.error_then_close().await.as_deref(), Some("54000"));
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_field_below_four() {
    let env = Env::start().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    raw.send(&[b'Q', 0, 0, 0, 2]).await;
    assert_eq!(raw.error_then_close().await.as_deref(), Some("08P01"));
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_type() {
    let env = Env::start().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    raw.send(&message(b'~', b"junk")).await;
    let mut code = None;
    let mut text = String::new();
    while let Some(msg) = raw.recv().await {
        if msg.tag == b'E' {
            code = msg.field(b'C');
            text = msg.field(b'M').unwrap_or_default();
        }
    }
    assert_eq!(code.as_deref(), Some("08P01"));
    assert!(text.contains("invalid frontend message type '~'"), "{text}");
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_startup_packet() {
    let env = Env::start().await;
    let mut raw = Raw::connect(env.proxy).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(raw.error_then_close().await.as_deref(), Some("08P01"));
    // Protocol 2.0 is refused as unsupported.
    let mut old = Raw::connect(env.proxy).await;
    let mut packet = 16u32.to_be_bytes().to_vec();
    packet.extend_from_slice(&(2u32 << 16).to_be_bytes());
    packet.extend_from_slice(b"user\0\0\0\0");
    old.send(&packet).await;
    assert_eq!(old.error_then_close().await.as_deref(), Some("0A000"));
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_message_and_a_stall_do_not_block_others() {
    let env = Env::start().await;
    let (mut staller, _) = Raw::startup(env.proxy, &[]).await;
    let q = crate::harness::query("SELECT 1");
    staller.send(&q[..4]).await;
    // With the default 60 s message timeout the staller is still pending, and
    // other clients are unaffected.
    still_serving(&env).await;
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_and_gssenc_requests_without_tls_get_n() {
    let env = Env::start().await;
    for request in [
        pgshift::protocol::tags::request::SSL,
        pgshift::protocol::tags::request::GSSENC,
    ] {
        let mut raw = Raw::connect(env.proxy).await;
        let mut packet = 8u32.to_be_bytes().to_vec();
        packet.extend_from_slice(&request.to_be_bytes());
        raw.send(&packet).await;
        let mut answer = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut raw.stream, &mut answer)
            .await
            .unwrap();
        assert_eq!(&answer, b"N");
        // The client may then go on in the clear.
        raw.send(&startup_message(&[("user", "postgres")])).await;
        assert_eq!(raw.until_ready().await.last().unwrap().tag, b'Z');
    }
}

use tokio::io::AsyncWriteExt;
