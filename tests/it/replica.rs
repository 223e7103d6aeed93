//! The backfill against a real streaming replica (`pg_basebackup -R` and a
//! second postmaster): while the replica's replay is paused its lag grows
//! past `--max-replica-lag`, the backfill pauses and says why (log and
//! `status`), and it finishes once replay resumes and the lag clears.

use std::time::Duration;

use pgshift::migrate::engine::{Migrator, Settings};
use tokio_postgres::Client;

use crate::harness::{self, Env};

/// Version 02_amounts of a `ledger` table: `amount` text → numeric, a
/// duplicated column that the backfill converts (pace.rs uses it too).
pub const MIGRATION: &str = r#"{"name": "02_amounts", "operations": [
  {"alter_column": {"table": "ledger", "column": "amount", "type": "numeric(12,2)",
                    "up": "amount::numeric", "down": "amount::text"}}
]}"#;

/// The backfill's checkpoint of `ledger`: rows done, what holds it back,
/// and whether it is done.
pub async fn backfill(direct: &Client) -> Option<(i64, Option<String>, bool)> {
    direct
        .query_opt(
            "SELECT rows_done, held_by, done FROM pgshift.backfill WHERE table_name = 'ledger'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_pauses_while_a_replica_lags_and_finishes_once_it_clears() {
    let env = Env::start().await;
    let direct = env.direct().await;
    direct
        .batch_execute(
            "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount text NOT NULL); \
             INSERT INTO ledger (amount) SELECT (g * 0.01)::text FROM generate_series(1, 20000) g",
        )
        .await
        .unwrap();
    let replica = {
        let primary = &env.cluster;
        std::thread::scope(|s| s.spawn(|| primary.start_replica("replica1")).join())
            .unwrap()
            .expect("a streaming replica")
    };
    assert!(
        harness::eventually(Duration::from_secs(20), || async {
            direct
                .query_opt(
                    "SELECT 1 FROM pg_stat_replication WHERE application_name = 'replica1' AND state = 'streaming'",
                    &[],
                )
                .await
                .unwrap()
                .is_some()
        })
        .await,
        "the replica never streamed"
    );
    let standby = harness::connect(&replica.url("postgres")).await;
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("02_amounts.json");
    std::fs::write(&file, MIGRATION).unwrap();
    let settings = Settings {
        max_replica_lag: Duration::from_millis(500),
        batch_size: 200,
        ..Settings::new(env.direct_url())
    };
    let start = tokio::spawn(async move {
        let mut m = Migrator::connect(settings).await.unwrap();
        let result = m.start(&file).await;
        m.close().await.unwrap();
        result
    });

    // The backfill stops, and says it waits for replica1.
    assert!(
        harness::eventually(Duration::from_secs(30), || async {
            matches!(backfill(&direct).await, Some((_, Some(held), false)) if held.contains("replica1"))
        })
        .await,
        "the backfill was never held back by the replica: {:?}",
        backfill(&direct).await
    );
    let (paused_at, held, _) = backfill(&direct).await.unwrap();
    assert!(paused_at < 20_000, "{paused_at} rows done before the pause");
    assert!(held.unwrap().starts_with("replica lag: replica1 is"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (still, _, done) = backfill(&direct).await.unwrap();
    assert_eq!(
        (still, done),
        (paused_at, false),
        "the backfill went on while the replica lagged"
    );
    assert!(!start.is_finished());

    // Replay resumes: the lag clears and the backfill finishes.
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), start)
        .await
        .expect("start finished once the lag cleared")
        .unwrap()
        .unwrap_or_else(|e| panic!("start: {e}"));
    let (rows, held, done) = backfill(&direct).await.unwrap();
    assert_eq!((rows, held, done), (20_000, None, true));
    let unconverted: i64 = direct
        .query_one(
            "SELECT count(*) FROM ledger WHERE _pgshift_new_amount IS DISTINCT FROM amount::numeric",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unconverted, 0);
}
