//! Clients that vanish mid-transaction, mid-COPY or mid-query leave nothing
//! upstream: no backend, no open transaction, no held lock.

use std::time::Duration;

use crate::harness::{self, Env, Raw, message, query};

/// Asserts that no backend for `app` remains and that table `t` can be locked.
async fn assert_nothing_left(env: &Env, app: &str) {
    let direct = env.direct().await;
    let gone = harness::eventually(Duration::from_secs(10), || async {
        harness::backends_named(&direct, app).await == 0
    })
    .await;
    assert!(gone, "a backend for {app} outlived its client");
    direct
        .batch_execute(
            "SET lock_timeout = '2s'; BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; COMMIT",
        )
        .await
        .expect("no lock may be left behind");
    let idle_in_tx: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(idle_in_tx, 0);
}

async fn env_with_table() -> Env {
    let env = Env::start().await;
    env.direct()
        .await
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_transaction_holding_a_lock() {
    let env = env_with_table().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[("application_name", "mid-tx")]).await;
    raw.send(&query(
        "BEGIN; INSERT INTO t VALUES (1); LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
    ))
    .await;
    let msgs = raw.until_ready().await;
    assert_eq!(msgs.last().unwrap().body[0], b'T', "inside a transaction");
    drop(raw);
    assert_nothing_left(&env, "mid-tx").await;
    let count: i64 = env
        .direct()
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "the open transaction was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_copy() {
    let env = env_with_table().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[("application_name", "mid-copy")]).await;
    raw.send(&query("COPY t FROM STDIN")).await;
    assert_eq!(raw.recv().await.unwrap().tag, b'G');
    raw.send(&message(b'd', b"1\n2\n3\n")).await;
    // Half of a CopyData message, then the client vanishes.
    raw.send(&message(b'd', b"4\n5\n")[..6]).await;
    drop(raw);
    assert_nothing_left(&env, "mid-copy").await;
    let count: i64 = env
        .direct()
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_while_a_query_runs() {
    let env = env_with_table().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[("application_name", "mid-query")]).await;
    raw.send(&query("BEGIN; LOCK TABLE t; SELECT pg_sleep(60)"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(raw);
    // Postgres would not notice the closed socket until the sleep ends; the
    // proxy cancels the running query instead.
    assert_nothing_left(&env, "mid-query").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_pipeline() {
    let env = env_with_table().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[("application_name", "mid-pipe")]).await;
    let mut batch = Vec::new();
    batch.extend(message(b'P', b"\0INSERT INTO t VALUES (1)\0\0\0"));
    for _ in 0..100 {
        batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
        batch.extend(message(b'E', b"\0\0\0\0\0"));
    }
    // No Sync: the implicit transaction stays open when the client leaves.
    raw.send(&batch).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(raw);
    assert_nothing_left(&env, "mid-pipe").await;
    let count: i64 = env
        .direct()
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "an unsynced pipeline never commits");
}
