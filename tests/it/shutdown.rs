//! The `pgshift proxy` binary: SIGTERM drains (idle sessions close at once,
//! busy ones finish, the rest close at the drain timeout), and `--log-format
//! json` writes one JSON object per line with a line per connection open and close.

use std::process::Stdio;
use std::time::{Duration, Instant};

use pgshift::cluster::{ClusterOptions, TempCluster};
use tokio::io::AsyncReadExt;

use crate::harness::{Raw, query, spawn_binary};

fn signal(child: &tokio::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        signal,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_too() {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start(&ClusterOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let (mut child, addr) = spawn_binary(&cluster.url("postgres"), &[]).await;
    let (mut idle, _) = Raw::startup(addr, &[]).await;
    signal(&child, nix::sys::signal::Signal::SIGINT);
    assert_eq!(idle.error_then_close().await.as_deref(), Some("57P01"));
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_and_logs_are_json() {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start(&ClusterOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let (mut child, addr) = spawn_binary(
        &cluster.url("postgres"),
        &["--drain-timeout", "3s", "--log-format", "json"],
    )
    .await;

    let (mut idle, _) = Raw::startup(addr, &[("application_name", "idle")]).await;
    let (mut busy, _) = Raw::startup(addr, &[("application_name", "busy")]).await;
    let (mut in_tx, _) = Raw::startup(addr, &[("application_name", "in-tx")]).await;
    in_tx.send(&query("BEGIN")).await;
    assert_eq!(in_tx.until_ready().await.last().unwrap().body[0], b'T');
    busy.send(&query("SELECT pg_sleep(1)")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sent = Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGTERM);

    // The idle session is closed at once with 57P01.
    assert_eq!(idle.error_then_close().await.as_deref(), Some("57P01"));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "idle sessions close at once"
    );
    // The busy one gets its result, then the same.
    let result = busy.until_ready().await;
    assert!(
        result.iter().any(|m| m.tag == b'D'),
        "the running query finishes: {result:?}"
    );
    assert_eq!(busy.error_then_close().await.as_deref(), Some("57P01"));
    // New connections are no longer accepted.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The open transaction is closed when the drain timeout passes.
    assert_eq!(in_tx.error_then_close().await.as_deref(), Some("57P01"));
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );

    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    let mut opened = 0;
    let mut closed = 0;
    for line in logs.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        match event["message"].as_str() {
            Some("connection opened") => opened += 1,
            Some("connection closed") => {
                closed += 1;
                assert!(event["duration_ms"].is_u64(), "{line}");
            }
            _ => {}
        }
    }
    assert_eq!((opened, closed), (3, 3), "{logs}");
}

/// Regression: the banner hit a closed stdout and `println!` panicked,
/// killing the proxy (seen in CI when a test closed the pipe after reading
/// the first line). Here stdout is closed before the proxy prints anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_stop_the_proxy() {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start(&ClusterOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgshift"))
        .args([
            "proxy",
            "--listen",
            &listen,
            "--upstream",
            &cluster.url("postgres"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let up = crate::harness::eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(up, "the proxy never listened");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the proxy died when stdout was closed"
    );
    let (mut raw, _) = Raw::startup(addr, &[]).await;
    raw.send(&query("SELECT 1")).await;
    assert_eq!(raw.until_ready().await.last().unwrap().tag, b'Z');
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(child.wait().await.unwrap().success());
}
