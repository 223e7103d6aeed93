//! Faults with real processes: the `pgshift` migrator killed with SIGKILL
//! during start, at three points of its backfill, during complete and
//! during rollback (rerunning the same command finishes the job, the backfill
//! resumes from its checkpoint, and the consistency check passes); two
//! commands racing; a proxy killed under its clients; Postgres restarted
//! during a backfill.

use std::time::Duration;

use pgshift::cluster::{ClusterOptions, TempCluster};
use tokio_postgres::Client;

use crate::harness;

const ROWS: i64 = 20_000;

const SETUP: &str = "CREATE TABLE items (id int PRIMARY KEY, price text NOT NULL);
INSERT INTO items SELECT g, (g % 100)::text FROM generate_series(1, 20000) g;";

/// A type change with up/down and a new NOT NULL column: the backfill
/// writes every row.
const MIGRATION: &str = r#"{"operations": [
  {"alter_column": {"table": "items", "column": "price", "type": "integer",
     "up": "CAST(price AS integer)", "down": "CAST(price AS text)"}},
  {"add_column": {"table": "items", "up": "'n' || id",
     "column": {"name": "note", "type": "text", "nullable": false}}}
]}"#;

struct Lab {
    cluster: TempCluster,
    dir: tempfile::TempDir,
}

impl Lab {
    async fn new() -> Lab {
        let cluster =
            tokio::task::spawn_blocking(|| TempCluster::start(&ClusterOptions::default()))
                .await
                .unwrap()
                .unwrap();
        let lab = Lab {
            cluster,
            dir: tempfile::tempdir().unwrap(),
        };
        lab.admin().await.batch_execute(SETUP).await.unwrap();
        std::fs::write(lab.dir.path().join("01_items.json"), MIGRATION).unwrap();
        lab
    }

    async fn admin(&self) -> Client {
        harness::connect(&self.cluster.url("postgres")).await
    }

    /// `pgshift ACTION [FILE] --database-url ...` with a slow backfill, as a
    /// child process (the file for `start` only).
    fn command(&self, action: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgshift"));
        c.arg(action);
        if action == "start" {
            c.arg(self.dir.path().join("01_items.json"));
        }
        c.args(["--database-url", &self.cluster.url("postgres")])
            .args([
                "--backfill-batch-size",
                "200",
                "--backfill-batch-delay",
                "20ms",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs `pgshift ACTION` to its end; panics with its log if it fails.
    async fn finish(&self, action: &str) {
        let out = self.command(action).output().await.unwrap();
        assert!(
            out.status.success(),
            "pgshift {action} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn one_i64(&self, sql: &str) -> i64 {
        self.admin().await.query_one(sql, &[]).await.unwrap().get(0)
    }

    async fn backfill(&self) -> (i64, i64) {
        let row = self
            .admin()
            .await
            .query_opt(
                "SELECT rows_done, batches FROM pgshift.backfill WHERE table_name = 'items'",
                &[],
            )
            .await
            // No state schema yet: nothing done.
            .unwrap_or(None);
        row.map(|r| (r.get(0), r.get(1))).unwrap_or((0, 0))
    }

    async fn phase(&self) -> String {
        self.admin()
            .await
            .query_one("SELECT phase FROM pgshift.migrations", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// The consistency check: every row in both shapes where both exist
    /// (new = up(old), old = down(new)), in the one shape that survives
    /// otherwise, and the row count as the setup wrote it.
    async fn consistent(&self) {
        let admin = self.admin().await;
        assert_eq!(self.one_i64("SELECT count(*) FROM items").await, ROWS);
        let columns = harness::columns(&admin, "items").await;
        let has = |c: &str| columns.iter().any(|x| x == c);
        // Rows the backfill has not reached yet have no new values; once it
        // is done, none may lack them.
        let done = admin
            .query_opt(
                "SELECT done FROM pgshift.backfill WHERE table_name = 'items'",
                &[],
            )
            .await
            .unwrap()
            .is_some_and(|r| r.get::<_, bool>(0));
        let mut checks = Vec::new();
        if has("_pgshift_new_price") {
            checks.push("_pgshift_new_price <> CAST(price AS integer)");
            checks.push(
                "_pgshift_new_price IS NOT NULL AND price <> CAST(_pgshift_new_price AS text)",
            );
            checks.push("_pgshift_new_note <> 'n' || id");
            if done {
                checks.push("_pgshift_new_price IS NULL OR _pgshift_new_note IS NULL");
            }
        }
        if has("note") {
            checks.push("note IS DISTINCT FROM 'n' || id");
        }
        checks.push("price::text IS DISTINCT FROM (id % 100)::text");
        for check in checks {
            let bad = self
                .one_i64(&format!("SELECT count(*) FROM items WHERE {check}"))
                .await;
            assert_eq!(bad, 0, "{bad} rows where {check}");
        }
    }
}

/// Waits until `ready` holds, then kills `child` with SIGKILL.
async fn kill_when<F, Fut>(child: &mut tokio::process::Child, ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let seen = harness::eventually(Duration::from_secs(60), ready).await;
    assert!(seen, "the command never reached the point to kill it at");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrator_killed_at_any_point_finishes_when_rerun() {
    let lab = Lab::new().await;
    // 1. During start, before the backfill: a held lock keeps step 1 waiting.
    let holder = lab.admin().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let mut start = lab.command("start").spawn().unwrap();
    kill_when(&mut start, || async {
        lab.one_i64(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%'",
        )
        .await
            > 0
    })
    .await;
    assert_eq!(lab.phase().await, "starting");
    holder.batch_execute("COMMIT").await.unwrap();
    lab.consistent().await;

    // 2. Three kills during the backfill, each further along; no row is
    //    done twice, so the checkpoints carried each rerun on.
    let mut last = 0;
    for at in [3_000, 8_000, 14_000] {
        let mut start = lab.command("start").spawn().unwrap();
        kill_when(&mut start, || async { lab.backfill().await.0 >= at }).await;
        let (rows, _) = lab.backfill().await;
        assert!(
            rows > last && rows < ROWS,
            "{rows} rows after the kill at {at}"
        );
        last = rows;
        lab.consistent().await;
    }
    lab.finish("start").await;
    let (rows, _) = lab.backfill().await;
    assert_eq!(
        rows, ROWS,
        "resumed from each checkpoint: every row exactly once"
    );
    assert_eq!(lab.phase().await, "active");
    lab.consistent().await;

    // 3. During complete: a held lock keeps its switch waiting.
    holder
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let mut complete = lab.command("complete").spawn().unwrap();
    kill_when(&mut complete, || async {
        lab.one_i64(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND backend_type = 'client backend'",
        )
        .await
            > 0
    })
    .await;
    assert_eq!(lab.phase().await, "completing");
    holder.batch_execute("COMMIT").await.unwrap();
    lab.finish("complete").await;
    assert_eq!(lab.phase().await, "completed");
    lab.consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrator_killed_during_rollback_finishes_when_rerun() {
    let lab = Lab::new().await;
    lab.finish("start").await;
    let holder = lab.admin().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let mut rollback = lab.command("rollback").spawn().unwrap();
    kill_when(&mut rollback, || async {
        lab.one_i64(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND backend_type = 'client backend'",
        )
        .await
            > 0
    })
    .await;
    assert_eq!(lab.phase().await, "rolling_back");
    holder.batch_execute("COMMIT").await.unwrap();
    lab.consistent().await;
    lab.finish("rollback").await;
    assert_eq!(lab.phase().await, "rolled_back");
    lab.consistent().await;
    let leftovers = harness::columns(&lab.admin().await, "items").await.len();
    assert_eq!(leftovers, 2, "only id and price remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_commands_one_wins_and_the_other_fails_cleanly() {
    let lab = Lab::new().await;
    // Two starts at once.
    let (a, b) = tokio::join!(lab.command("start").output(), lab.command("start").output());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.status.success() != b.status.success(),
        "exactly one start wins:\n{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let loser = if a.status.success() { &b } else { &a };
    let text = String::from_utf8_lossy(&loser.stderr);
    assert!(
        text.contains("another pgshift command is running") || text.contains("is active"),
        "{text}"
    );
    lab.consistent().await;
    // complete against rollback.
    let run = |action: &str| lab.command(action).output();
    let (c, r) = tokio::join!(run("complete"), run("rollback"));
    let (c, r) = (c.unwrap(), r.unwrap());
    assert!(
        c.status.success() != r.status.success(),
        "exactly one of complete and rollback wins:\n{}\n{}",
        String::from_utf8_lossy(&c.stderr),
        String::from_utf8_lossy(&r.stderr)
    );
    let phase = lab.phase().await;
    assert_eq!(
        phase,
        if c.status.success() {
            "completed"
        } else {
            "rolled_back"
        }
    );
    lab.consistent().await;
}

/// A client through `addr` asking for `version` (None: the default route).
async fn client_at(addr: std::net::SocketAddr, app: &str, version: Option<&str>) -> Client {
    let mut url =
        format!("postgres://postgres@{addr}/postgres?sslmode=disable&application_name={app}");
    if let Some(v) = version {
        url.push_str(&format!("&options=-c%20pgshift.version%3D{v}"));
    }
    harness::connect(&url).await
}

/// A proxy binary in front of `cluster` with `extra` flags, its logs drained.
async fn proxy(
    cluster: &TempCluster,
    extra: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let (mut child, addr) = harness::spawn_binary(&cluster.url("postgres"), extra).await;
    let mut logs = child.stderr.take().unwrap();
    tokio::spawn(async move { tokio::io::copy(&mut logs, &mut tokio::io::sink()).await });
    (child, addr)
}

/// Transaction pooling, for the fault tests that run in both modes.
const TRANSACTION_MODE: &[&str] = &["--pool-mode", "transaction", "--pool-size", "4"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_proxy_leaves_nothing_open_and_clients_carry_on_through_another() {
    killed_proxy(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pooling_proxy_leaves_nothing_open_and_clients_carry_on_through_another() {
    killed_proxy(TRANSACTION_MODE).await;
}

async fn killed_proxy(extra: &[&str]) {
    let lab = Lab::new().await;
    lab.finish("start").await;
    let (mut a, a_addr) = proxy(&lab.cluster, extra).await;
    let (_b, b_addr) = proxy(&lab.cluster, extra).await;
    let old = client_at(a_addr, "old-app", None).await;
    let new = client_at(a_addr, "new-app", Some("01_items")).await;
    // The old client is inside a transaction holding a row lock when its
    // proxy dies; the new one is idle.
    old.batch_execute("BEGIN; UPDATE items SET price = '999' WHERE id = 1")
        .await
        .unwrap();
    new.query_one("SELECT price FROM items WHERE id = 1", &[])
        .await
        .unwrap();
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    assert!(old.query_one("SELECT 1", &[]).await.is_err());

    // Postgres sees both sockets close: no backend, no transaction, no lock.
    let admin = lab.admin().await;
    let gone = harness::eventually(Duration::from_secs(5), || async {
        harness::backends_named(&admin, "old-app").await
            + harness::backends_named(&admin, "new-app").await
            == 0
    })
    .await;
    assert!(gone, "the killed proxy's upstream connections are gone");
    let locks = lab
        .one_i64("SELECT count(*) FROM pg_locks WHERE relation = 'items'::regclass")
        .await;
    assert_eq!(locks, 0);

    // Through the second proxy, each carries on in its own version; the
    // unfinished transaction left nothing.
    let old = client_at(b_addr, "old-app", None).await;
    let new = client_at(b_addr, "new-app", Some("01_items")).await;
    let price: String = old
        .query_one("SELECT price FROM items WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(price, "1");
    let price: i32 = new
        .query_one("SELECT price FROM items WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(price, 1);
    lab.consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_a_backfill() {
    restarted_during_a_backfill(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_a_backfill_behind_a_pool() {
    restarted_during_a_backfill(TRANSACTION_MODE).await;
}

async fn restarted_during_a_backfill(extra: &[&str]) {
    let lab = Lab::new().await;
    let (_proxy, addr) = proxy(&lab.cluster, extra).await;
    let before = client_at(addr, "before-restart", None).await;
    let mut start = lab.command("start").spawn().unwrap();
    let reached = harness::eventually(Duration::from_secs(60), || async {
        lab.backfill().await.0 >= 3_000
    })
    .await;
    assert!(reached);
    lab.cluster.stop("fast").unwrap();
    // The migrator loses its connection and stops with an error.
    let status = tokio::time::timeout(Duration::from_secs(30), start.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    // The proxy's client is told; the proxy itself keeps running.
    let err = before.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(!err.to_string().is_empty());
    let cluster = &lab.cluster;
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    let back = harness::eventually(Duration::from_secs(10), || async {
        let url = format!("postgres://postgres@{addr}/postgres?sslmode=disable");
        match harness::try_connect(&url).await {
            Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(back, "new sessions are served once Postgres is back");
    let (rows_before, _) = lab.backfill().await;
    assert!((3_000..ROWS).contains(&rows_before));
    lab.finish("start").await;
    assert_eq!(
        lab.backfill().await.0,
        ROWS,
        "the backfill resumed from its checkpoint"
    );
    lab.consistent().await;
}
