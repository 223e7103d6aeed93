//! The backfill's adaptive pace through a real proxy: the proxy publishes
//! its clients' latency per version with its heartbeat; when the clients'
//! p99 goes past `--max-latency-factor` of its level before the backfill,
//! the backfill slows and says why (`status`), and once it is back within
//! the factor the backfill speeds up and finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgshift::migrate::engine::{Migrator, Settings};

use crate::harness::{self, Env};
use crate::replica::{MIGRATION, backfill};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_slows_while_client_latency_is_over_its_factor_and_says_why() {
    let env = Env::start().await;
    let direct = env.direct().await;
    direct
        .batch_execute(
            "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount text NOT NULL); \
             INSERT INTO ledger (amount) SELECT (g * 0.01)::text FROM generate_series(1, 200000) g",
        )
        .await
        .unwrap();
    // The state schema, as `pgshift init` makes it.
    Migrator::connect(Settings::new(env.direct_url()))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    // A client through the proxy: quick queries, or slow ones while `slow`.
    let slow = Arc::new(AtomicBool::new(false));
    let client = env.connect().await;
    let load = tokio::spawn({
        let slow = Arc::clone(&slow);
        async move {
            loop {
                let sql = if slow.load(Ordering::Relaxed) {
                    "SELECT pg_sleep(0.02)"
                } else {
                    "SELECT 1"
                };
                if client.simple_query(sql).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    // The proxy publishes its clients' latency with its heartbeat.
    assert!(
        harness::eventually(Duration::from_secs(10), || async {
            direct
                .query_one(
                    "SELECT coalesce(max((l.value->>'count')::int8), 0) \
                     FROM pgshift.proxies p, jsonb_each(coalesce(p.latency, '{}')) l",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0) >= 20)
                .unwrap_or(false)
        })
        .await,
        "the proxy never published its clients' latency"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("02_amounts.json");
    std::fs::write(&file, MIGRATION).unwrap();
    let start = tokio::spawn({
        let url = env.direct_url();
        async move {
            let mut m = Migrator::connect(Settings::new(url)).await.unwrap();
            let result = m.start(&file).await;
            m.close().await.unwrap();
            result
        }
    });
    // Once the backfill runs, the clients slow down 100-fold.
    assert!(
        harness::eventually(Duration::from_secs(30), || async {
            matches!(backfill(&direct).await, Some((done, _, false)) if done > 0)
        })
        .await,
        "the backfill never started"
    );
    slow.store(true, Ordering::Relaxed);
    assert!(
        harness::eventually(Duration::from_secs(15), || async {
            matches!(backfill(&direct).await, Some((_, Some(why), false)) if why.starts_with("client latency: p99"))
        })
        .await,
        "the backfill never said client latency held it back: {:?}",
        backfill(&direct).await
    );
    // Back to quick queries: the backfill speeds up again and finishes.
    slow.store(false, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(120), start)
        .await
        .expect("the backfill finished once latency came back")
        .unwrap()
        .unwrap_or_else(|e| panic!("start: {e}"));
    assert_eq!(backfill(&direct).await, Some((200_000, None, true)));
    load.abort();
}
