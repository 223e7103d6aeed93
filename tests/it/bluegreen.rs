//! The blue-green scenario through the proxy: a blue client (old code, old
//! column names) and a green client (new code: a renamed column, a type
//! change, a new NOT NULL column) read and write continuously while an
//! operator starts the migration, pins green to the new version, drains blue
//! and completes (or, on the other path, drains green and rolls back). No
//! client may see an error at any point, and every row ends consistent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pgshift::migrate::engine::{Migrator, Pinned, Settings};
use pgshift::proxy::config::PoolMode;
use pgshift::routing::RouteRule;

use crate::harness::{self, Env};

const SETUP: &str = "CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, rating text NOT NULL);
INSERT INTO accounts (name, rating) SELECT 'acct ' || g, (g % 5 + 1)::text FROM generate_series(1, 100000) g;";

const MIGRATION: &str = r#"{"operations": [
  {"rename_column": {"table": "accounts", "from": "name", "to": "full_name"}},
  {"alter_column": {"table": "accounts", "column": "rating", "type": "integer",
     "up": "CAST(rating AS integer)", "down": "CAST(rating AS text)"}},
  {"add_column": {"table": "accounts", "up": "lower(name) || '@example.com'",
     "column": {"name": "email", "type": "text", "nullable": false}}}
]}"#;

/// One client's loop: connect through the proxy as `app`, then alternate
/// writes and reads in its own shape until `stop`; every error is counted.
/// A session the operator drains is ended by the client itself (it stops
/// when `drain` is set), as a deployment being switched off would.
struct Worker {
    errors: Arc<AtomicU64>,
    ops: Arc<AtomicU64>,
    drain: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

fn spawn_worker(url: String, green: bool, stop: Arc<AtomicBool>) -> Worker {
    let errors = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let drain = Arc::new(AtomicBool::new(false));
    let (e, o, d) = (errors.clone(), ops.clone(), drain.clone());
    let task = tokio::spawn(async move {
        let mut messages = Vec::new();
        let client = match harness::try_connect(&url).await {
            Ok(c) => c,
            Err(err) => {
                e.fetch_add(1, Ordering::Relaxed);
                return vec![harness::error_text(&err)];
            }
        };
        let (insert, select) = if green {
            (
                "INSERT INTO accounts (full_name, rating, email) VALUES ($1, 4, lower($1) || '@example.com') RETURNING id",
                "SELECT full_name, rating, email FROM accounts WHERE id = $1",
            )
        } else {
            (
                "INSERT INTO accounts (name, rating) VALUES ($1, '4') RETURNING id",
                "SELECT name, rating FROM accounts WHERE id = $1",
            )
        };
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) && !d.load(Ordering::Relaxed) {
            n += 1;
            let name = format!("{} {n}", if green { "green" } else { "blue" });
            let result = async {
                let id: i64 = client.query_one(insert, &[&name]).await?.get(0);
                client.query_one(select, &[&id]).await?;
                client
                    .query_one(select, &[&((n as i64 % 100000) + 1)])
                    .await?;
                Ok::<_, tokio_postgres::Error>(())
            }
            .await;
            match result {
                Ok(()) => {
                    o.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    e.fetch_add(1, Ordering::Relaxed);
                    if messages.len() < 5 {
                        messages.push(harness::error_text(&err));
                    }
                }
            }
        }
        messages
    });
    Worker {
        errors,
        ops,
        drain,
        task,
    }
}

/// The routes every scenario uses: deployments told apart by application_name.
fn routes() -> Vec<RouteRule> {
    ["blue", "green"]
        .into_iter()
        .map(|name| RouteRule {
            name: name.into(),
            application_name: Some(format!("shop-{name}")),
            ..Default::default()
        })
        .collect()
}

/// A cluster with `setup` run, a proxy with the blue and green routes in
/// front of it, the migration file written, and a migrator connected.
async fn lab(
    setup: &str,
    batch_size: i64,
    mode: PoolMode,
) -> (Env, Migrator, tempfile::TempDir, std::path::PathBuf) {
    let env = Env::with(pgshift::cluster::ClusterOptions::default(), |c| {
        c.routes = routes();
        c.pool.mode = mode;
        c.pool.size = 4;
    })
    .await;
    env.direct().await.batch_execute(setup).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("01_accounts.json");
    std::fs::write(&file, MIGRATION).unwrap();
    let settings = Settings {
        batch_size,
        ..Settings::new(env.direct_url())
    };
    let m = Migrator::connect(settings).await.unwrap();
    (env, m, dir, file)
}

/// Completes (or rolls back) once the drained deployment's sessions have
/// left the proxies' registry; until then the migrator refuses, as it should.
pub async fn finish_when_drained(m: &mut Migrator, complete: bool) {
    loop {
        let result = if complete {
            m.complete(Pinned::Refuse).await
        } else {
            m.rollback(Pinned::Refuse).await
        };
        match result {
            Ok(()) => return,
            Err(pgshift::migrate::engine::MigrateError::SessionsPinned { .. }) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
}

const PGBENCH_SETUP: &str = "CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, rating text NOT NULL);
INSERT INTO accounts (name, rating) SELECT 'acct ' || g, (g % 5 + 1)::text FROM generate_series(1, 20000) g;";

async fn scenario(complete: bool, mode: PoolMode) {
    let (env, mut m, _dir, file) = lab(SETUP, 2000, mode).await;
    let url = |app: &str| {
        format!(
            "{}&application_name={app}",
            env.proxy_url("postgres", "postgres")
        )
    };
    let stop = Arc::new(AtomicBool::new(false));

    // Blue runs before the migration exists.
    let blue = spawn_worker(url("shop-blue"), false, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.start(&file).await.unwrap();
    m.pin("green", "01_accounts").await.unwrap();
    // Green deploys: new sessions of route green get the new version.
    let green_url = url("shop-green");
    assert!(
        harness::eventually(Duration::from_secs(2), || async {
            match harness::try_connect(&green_url).await {
                Ok(c) => c
                    .query_one("SELECT email FROM accounts LIMIT 1", &[])
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        })
        .await
    );
    let green = spawn_worker(green_url.clone(), true, stop.clone());
    // A second blue session, opened during the migration (old version by default route).
    let blue2 = spawn_worker(url("shop-blue"), false, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (drained, survivors) = if complete {
        ([&blue, &blue2], vec![&green])
    } else {
        ([&green, &blue2], vec![&blue])
    };
    for w in drained {
        w.drain.store(true, Ordering::Relaxed);
    }
    let finish = finish_when_drained(&mut m, complete);
    tokio::time::timeout(Duration::from_secs(30), finish)
        .await
        .expect("the drained sessions leave the registry");
    // The survivors go on after the switch.
    let before: Vec<u64> = survivors
        .iter()
        .map(|w| w.ops.load(Ordering::Relaxed))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (w, b) in survivors.iter().zip(before) {
        assert!(
            w.ops.load(Ordering::Relaxed) > b,
            "a surviving client stopped making progress"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut report = Vec::new();
    let mut total_errors = 0;
    for (name, w) in [("blue", blue), ("green", green), ("blue2", blue2)] {
        let errors = w.errors.load(Ordering::Relaxed);
        let ops = w.ops.load(Ordering::Relaxed);
        let messages = w.task.await.unwrap();
        total_errors += errors;
        report.push(format!("{name}: {ops} ok, {errors} errors {messages:?}"));
        assert!(ops > 0, "{name} did no work");
    }
    assert_eq!(total_errors, 0, "{report:#?}");

    let admin = env.direct().await;
    let (name_col, rating_check) = if complete {
        (
            "full_name",
            "rating IS NULL OR email IS NULL OR email <> lower(full_name) || '@example.com'",
        )
    } else {
        ("name", "rating NOT IN ('1', '2', '3', '4', '5')")
    };
    let bad: i64 = admin
        .query_one(
            format!("SELECT count(*) FROM accounts WHERE {rating_check}").as_str(),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "{report:#?}");
    let count: i64 = admin
        .query_one(
            format!("SELECT count(DISTINCT {name_col}) FROM accounts").as_str(),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(count > 100000, "the clients' rows are all there");
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_complete_path_without_a_client_error() {
    scenario(true, PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_complete_path_in_transaction_mode() {
    scenario(true, PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_rollback_path_in_transaction_mode() {
    scenario(false, PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_rollback_path_without_a_client_error() {
    scenario(false, PoolMode::Session).await;
}

const BLUE_SCRIPT: &str = "\\set id random(1, 20000)
SELECT name, rating FROM accounts WHERE id = :id;
INSERT INTO accounts (name, rating) VALUES ('blue bench', '3');
";

const GREEN_SCRIPT: &str = "\\set id random(1, 20000)
SELECT full_name, rating, email FROM accounts WHERE id = :id;
INSERT INTO accounts (full_name, rating, email) VALUES ('green bench', 4, 'g@x');
";

async fn pgbench_scenario(complete: bool, mode: PoolMode) {
    let (env, mut m, dir, file) = lab(PGBENCH_SETUP, 2000, mode).await;
    // Blue runs from before the migration until it is drained (its run ends).
    let blue = {
        let (env_ref, dir_ref) = (&env, dir.path());
        harness::pgbench_script(
            env_ref,
            "shop-blue",
            BLUE_SCRIPT,
            if complete { 6 } else { 12 },
            dir_ref,
            &[],
        )
    };
    let operator = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        m.start(&file).await.unwrap();
        m.pin("green", "01_accounts").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let green =
            harness::pgbench_script(&env, "shop-green", GREEN_SCRIPT, 3, dir.path(), &[]).await;
        finish_when_drained(&mut m, complete).await;
        green
    };
    let ((blue_ok, blue_out), (green_ok, green_out)) = tokio::join!(blue, operator);
    assert!(blue_ok, "blue pgbench failed:\n{blue_out}");
    assert!(green_ok, "green pgbench failed:\n{green_out}");
    for out in [&blue_out, &green_out] {
        assert!(out.contains("number of failed transactions: 0"), "{out}");
    }
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_with_pgbench_scripts_complete_path() {
    pgbench_scenario(true, PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_with_pgbench_scripts_in_transaction_mode() {
    pgbench_scenario(true, PoolMode::Transaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_with_pgbench_scripts_rollback_path() {
    pgbench_scenario(false, PoolMode::Session).await;
}

/// The blue-green scenario driven by psycopg 3 from Python. Blue writes from
/// before the migration; green for 3 s from the moment its route is pinned.
/// On the complete path blue stops after 6 s and the migration completes; on
/// the rollback path blue goes on for 12 s, through the rollback.
async fn psycopg_scenario(complete: bool) {
    use tokio::io::AsyncWriteExt;
    let (env, mut m, _dir, file) = lab(SETUP, 5000, PoolMode::Session).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/psycopg_bluegreen.py"
    );
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(env.proxy_url("postgres", "postgres"))
        .args([if complete { "6" } else { "12" }, "3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    let mut go = child.stdin.take().unwrap();
    let clients = child.wait_with_output();
    let operator = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        m.start(&file).await.unwrap();
        m.pin("green", "01_accounts").await.unwrap();
        // Every proxy hears of the pin within moments; then green starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        go.write_all(b"go\n").await.unwrap();
        drop(go);
        if !complete {
            // Once green is connected, roll back when it has drained (after
            // its 3 s); blue is still writing.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            finish_when_drained(&mut m, false).await;
        }
    };
    let (out, ()) = tokio::join!(clients, operator);
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for side in ["blue", "green"] {
        assert!(report[side]["ok"].as_u64().unwrap_or(0) > 0, "{report}");
        assert_eq!(report[side]["errors"], serde_json::json!([]), "{report}");
    }
    // Every row both wrote, in the shape that survives.
    let check = if complete {
        // Blue has left; complete.
        finish_when_drained(&mut m, true).await;
        "SELECT count(*) FILTER (WHERE full_name LIKE 'py blue %' AND email = lower(full_name) || '@example.com'),
                count(*) FILTER (WHERE full_name LIKE 'py green %' AND rating = 2)
         FROM accounts"
    } else {
        "SELECT count(*) FILTER (WHERE name LIKE 'py blue %' AND rating = '2'),
                count(*) FILTER (WHERE name LIKE 'py green %' AND rating = '2')
         FROM accounts"
    };
    let row = env.direct().await.query_one(check, &[]).await.unwrap();
    assert_eq!(
        row.get::<_, i64>(0) as u64,
        report["blue"]["ok"].as_u64().unwrap()
    );
    assert_eq!(
        row.get::<_, i64>(1) as u64,
        report["green"]["ok"].as_u64().unwrap()
    );
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_with_psycopg_complete_path() {
    psycopg_scenario(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_with_psycopg_rollback_path() {
    psycopg_scenario(false).await;
}
