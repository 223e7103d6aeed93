//! Limits and an unavailable upstream, each with a clear error and a real
//! SQLSTATE: max_clients, startup timeout, max message length, message
//! timeout, Postgres down or restarting.

use std::time::Duration;

use pgshift::cluster::ClusterOptions;

use crate::harness::{self, Env, Raw, query, startup_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_gives_53300_and_frees_slots() {
    let env = Env::with(ClusterOptions::default(), |c| c.max_clients = 2).await;
    let a = env.connect().await;
    let b = env.connect().await;
    let err = harness::try_connect(&env.proxy_url("postgres", "postgres"))
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "53300", "{err}");
    assert!(harness::error_text(&err).contains("max_clients"), "{err}");
    drop(a);
    let ok = harness::eventually(Duration::from_secs(5), || async {
        harness::try_connect(&env.proxy_url("postgres", "postgres"))
            .await
            .is_ok()
    })
    .await;
    assert!(ok, "a slot frees when a client leaves");
    b.query_one("SELECT 1", &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_the_startup_timeout() {
    let env = Env::with(ClusterOptions::default(), |c| {
        c.startup_timeout = Duration::from_millis(300)
    })
    .await;
    let mut silent = Raw::connect(env.proxy).await;
    let started = std::time::Instant::now();
    assert_eq!(silent.error_then_close().await.as_deref(), Some("57P05"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Half a startup packet, then nothing: the same.
    let mut half = Raw::connect(env.proxy).await;
    half.send(&startup_message(&[("user", "postgres")])[..7])
        .await;
    assert_eq!(half.error_then_close().await.as_deref(), Some("57P05"));
    env.connect()
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_gives_54000() {
    let env = Env::with(ClusterOptions::default(), |c| {
        c.max_message_length = 64 * 1024
    })
    .await;
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    raw.send(&query(&"x".repeat(100 * 1024))).await;
    let code = raw.error_then_close().await;
    assert_eq!(code.as_deref(), Some("54000"));
    // Messages under the limit still pass on new sessions.
    let client = env.connect().await;
    let long = format!("SELECT '{}'::text", "y".repeat(60 * 1024));
    let row = client.query_one(long.as_str(), &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0).len(), 60 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_message_then_a_stall_times_out() {
    let env = Env::with(ClusterOptions::default(), |c| {
        c.message_timeout = Duration::from_millis(300)
    })
    .await;
    let (mut raw, _) = Raw::startup(env.proxy, &[("application_name", "staller")]).await;
    let q = query("SELECT 1");
    raw.send(&q[..q.len() - 3]).await;
    assert_eq!(raw.error_then_close().await.as_deref(), Some("08P01"));
    let direct = env.direct().await;
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            harness::backends_named(&direct, "staller").await == 0
        })
        .await
    );
    // A client that is merely idle between messages is left alone.
    let (mut idle, _) = Raw::startup(env.proxy, &[]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    idle.send(&query("SELECT 1")).await;
    assert_eq!(idle.until_ready().await.last().unwrap().tag, b'Z');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_then_back() {
    let env = Env::start().await;
    let survivor = env.connect().await;
    survivor.query_one("SELECT 1", &[]).await.unwrap();
    let cluster = &env.cluster;
    tokio::task::block_in_place(|| cluster.stop("fast")).unwrap();
    // A new client is told what is wrong.
    let err = harness::try_connect(&env.proxy_url("postgres", "postgres"))
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "08006", "{err}");
    assert!(
        harness::error_text(&err).contains("cannot connect to Postgres"),
        "{err}"
    );
    // The session that was open learns that its connection is gone.
    let err = survivor.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(
        err.is_closed()
            || harness::sqlstate(&err).starts_with("57P0")
            || harness::sqlstate(&err) == "08006",
        "{err}"
    );
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    let client = env.connect().await;
    assert_eq!(
        client
            .query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_during_restart_gets_an_error_not_a_hang() {
    let env = Env::start().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    let cluster = &env.cluster;
    tokio::task::block_in_place(|| cluster.stop("fast")).unwrap();
    // Postgres sent 57P01 before closing; the proxy passes it on and closes.
    let code = raw.error_then_close().await;
    assert_eq!(code.as_deref(), Some("57P01"));
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    let (mut again, _) = Raw::startup(env.proxy, &[]).await;
    again.send(&query("SELECT 1")).await;
    assert_eq!(again.until_ready().await.last().unwrap().tag, b'Z');
}
