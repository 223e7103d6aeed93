//! Protocol abuse through real sockets against the `pgshift proxy` binary:
//! a thousand connections that send nothing, identifiers that are not
//! UTF-8, and a client that never reads its results (the proxy's memory must
//! stay flat: it stops reading Postgres when the client stops reading).

use std::time::Duration;

use pgshift::cluster::{ClusterOptions, TempCluster};
use tokio::io::AsyncReadExt;

use crate::harness::{self, Raw, query, spawn_binary};

async fn cluster() -> TempCluster {
    tokio::task::spawn_blocking(|| TempCluster::start(&ClusterOptions::default()))
        .await
        .unwrap()
        .unwrap()
}

/// The proxy binary, its logs drained in the background: a pipe nobody
/// reads would block its logging once full.
async fn proxy(
    cluster: &TempCluster,
    extra: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let (mut child, addr) = spawn_binary(&cluster.url("postgres"), extra).await;
    let mut logs = child.stderr.take().unwrap();
    tokio::spawn(async move { tokio::io::copy(&mut logs, &mut tokio::io::sink()).await });
    (child, addr)
}

async fn select_one(addr: std::net::SocketAddr) -> i32 {
    let client = harness::connect(&format!(
        "postgres://postgres@{addr}/postgres?sslmode=disable"
    ))
    .await;
    client.query_one("SELECT 1", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_are_dropped_and_others_are_served() {
    let cluster = cluster().await;
    let (child, addr) = proxy(&cluster, &["--startup-timeout", "2s"]).await;
    let mut silent = Vec::new();
    for _ in 0..1000 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // A real client is served while the thousand hang on.
    assert_eq!(select_one(addr).await, 1);
    // Each silent connection is closed by the proxy after the startup timeout,
    // having cost no upstream connection.
    let mut closed = 0;
    for mut s in silent {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // the FATAL message that says why
                }
            }
        })
        .await;
        if read.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 1000);
    let direct = harness::connect(&cluster.url("postgres")).await;
    let backends: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Only the proxy's own control and heartbeat connections remain.
    assert!(backends <= 2, "{backends} client backends");
    assert_eq!(select_one(addr).await, 1);
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_that_are_not_utf8_get_errors_not_a_crash() {
    let cluster = cluster().await;
    let (child, addr) = proxy(&cluster, &[]).await;
    // A user name that is not UTF-8: Postgres refuses it; the refusal reaches
    // the client.
    let mut raw = Raw::connect(addr).await;
    let mut body = 196608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0\xff\xfe\x80\0database\0postgres\0\0");
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    raw.send(&packet).await;
    let code = raw.error_then_close().await;
    assert!(code.is_some(), "the client is told why");
    // An identifier that is not UTF-8 inside a query: an error, and the
    // session carries on.
    let (mut raw, _) = Raw::startup(addr, &[]).await;
    let mut q = b"SELECT 1 AS \"\xff\xfe\"".to_vec();
    q.push(0);
    raw.send(&harness::message(b'Q', &q)).await;
    let msgs = raw.until_ready().await;
    let error = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .expect("an ErrorResponse");
    assert_eq!(error.field(b'C').as_deref(), Some("22021"));
    raw.send(&query("SELECT 2")).await;
    let msgs = raw.until_ready().await;
    assert!(msgs.iter().any(|m| m.tag == b'D'), "{msgs:?}");
    assert_eq!(select_one(addr).await, 1);
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_grow_the_proxy() {
    let cluster = cluster().await;
    let (child, addr) = proxy(&cluster, &[]).await;
    let pid = child.id().unwrap();
    let before = harness::rss_kib(pid);
    // About 1.6 GB of results that the client never reads.
    let (mut glutton, _) = Raw::startup(addr, &[("application_name", "never-reads")]).await;
    glutton
        .send(&query(
            "SELECT repeat('x', 8192) FROM generate_series(1, 200000)",
        ))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let early = harness::rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = harness::rss_kib(pid);
    // Others are served meanwhile.
    assert_eq!(select_one(addr).await, 1);
    assert!(
        late.saturating_sub(early) < 4 * 1024 && late.saturating_sub(before) < 16 * 1024,
        "RSS grew: {before} KiB before, {early} KiB after 1 s, {late} KiB after 4 s"
    );
    // Postgres is stuck writing to the proxy, not done: nothing was buffered
    // on its behalf.
    let direct = harness::connect(&cluster.url("postgres")).await;
    let active: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'never-reads' AND state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, 1);
    // When the client goes, its query is cancelled and its backend leaves.
    drop(glutton);
    let gone = harness::eventually(Duration::from_secs(5), || async {
        harness::backends_named(&direct, "never-reads").await == 0
    })
    .await;
    assert!(gone, "the backend of the client that left is gone");
    drop(child);
}
