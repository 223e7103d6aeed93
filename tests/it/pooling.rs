//! Transaction pooling (`--pool-mode transaction`) against real Postgres:
//! real drivers' prepared statements across servers, the number of
//! backends, a session's state kept off other clients, cancel, waits, a
//! backend that dies, a client that leaves mid-transaction, and the version
//! pin through a migration in production's shape.

use std::time::Duration;

use pgshift::cluster::ClusterOptions;
use pgshift::migrate::engine::Pinned;
use pgshift::proxy::config::{PoolMode, ProxyConfig};
use tokio_postgres::Client;

use crate::harness::{self, Env};
use crate::production::Shop;

/// A proxy in transaction mode with `size` servers per pool.
fn pooled(size: usize) -> impl FnOnce(&mut ProxyConfig) {
    move |c: &mut ProxyConfig| {
        c.pool.mode = PoolMode::Transaction;
        c.pool.size = size;
    }
}

/// Client backends other than the asking one's, as Postgres counts them.
async fn backends(direct: &Client, user: &str) -> i64 {
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND usename = $1 AND pid <> pg_backend_pid()
               AND application_name <> 'pgshift'",
            &[&user],
        )
        .await
        .unwrap()
        .get(0)
}

async fn pgbench(env: &Env, args: &[&str]) -> String {
    let out = tokio::process::Command::new(harness::pg_program(env, "pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &env.proxy.port().to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .arg("postgres")
        .output()
        .await
        .expect("pgbench must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_every_query_mode_through_a_pool_of_two() {
    let env = Env::with(ClusterOptions::default(), pooled(2)).await;
    let direct = env.direct().await;
    pgbench(&env, &["-i", "-s", "1", "-q"]).await;
    for mode in ["simple", "extended", "prepared"] {
        let text = pgbench(&env, &["-n", "-M", mode, "-c", "8", "-j", "2", "-t", "100"]).await;
        assert!(
            text.contains("number of transactions actually processed: 800/800"),
            "{mode}:\n{text}"
        );
        assert!(
            text.contains("number of failed transactions: 0"),
            "{mode}:\n{text}"
        );
        // Eight clients were served by the pool's two servers (each
        // login's own backend was closed once the pool was full).
        assert!(
            backends(&direct, "postgres").await <= 2,
            "{mode}: more than the pool"
        );
    }
    let count: i64 = direct
        .query_one("SELECT count(*) FROM pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2400, "every transaction's write landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_server_and_their_statements() {
    let env = Env::with(ClusterOptions::default(), pooled(1)).await;
    let direct = env.direct().await;
    direct
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    // tokio-postgres prepares every query as a named statement, and
    // closes it when the statement is dropped.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(env.connect().await);
    }
    let prepared: Vec<_> = {
        let mut out = Vec::new();
        for c in &clients {
            out.push(c.prepare("INSERT INTO t VALUES ($1, $2)").await.unwrap());
        }
        out
    };
    for round in 0..20 {
        for (i, (c, stmt)) in clients.iter().zip(&prepared).enumerate() {
            let id = (round * 10 + i) as i32;
            c.execute(stmt, &[&id, &format!("v{id}")]).await.unwrap();
        }
    }
    // A statement that differs per client, under the same client name.
    for (i, c) in clients.iter().enumerate() {
        let row = c
            .query_one(&format!("SELECT {i}::int + $1::int"), &[&100i32])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 100 + i as i32);
    }
    let count: i64 = direct
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 100);
    assert_eq!(backends(&direct, "postgres").await, 1);
    // A failed Parse leaves the client and the server usable.
    let e = clients[0].prepare("SELEC 1").await.unwrap_err();
    assert_eq!(harness::sqlstate(&e), "42601");
    let row = clients[0].query_one("SELECT 7", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_automatic_prepares_work_through_the_pool() {
    let env = Env::with(ClusterOptions::default(), pooled(2)).await;
    let script = r#"
import sys, psycopg
url = sys.argv[1]
conns = [psycopg.connect(url, autocommit=True, prepare_threshold=0) for _ in range(6)]
conns[0].execute("CREATE TABLE py (id int, v text)")
for round in range(30):
    for i, c in enumerate(conns):
        c.execute("INSERT INTO py VALUES (%s, %s)", (round * 10 + i, f"r{round}"))
        got = c.execute("SELECT count(*) FROM py WHERE id = %s", (round * 10 + i,)).fetchone()[0]
        assert got == 1, got
with conns[1].transaction():
    conns[1].execute("INSERT INTO py VALUES (-1, 'tx')")
    conns[1].execute("INSERT INTO py VALUES (-2, 'tx')")
print(conns[2].execute("SELECT count(*) FROM py").fetchone()[0])
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, &env.proxy_url("postgres", "postgres")])
        .output()
        .await
        .expect("python3 must be installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "psycopg through the pool failed:\n{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "182");
    assert!(backends(&env.direct().await, "postgres").await <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_setting_does_not_reach_the_next_client() {
    let env = Env::with(ClusterOptions::default(), pooled(1)).await;
    let a = env.connect().await;
    let b = env.connect().await;
    let path_before: String = b
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    // Session-level SETs on the one server the two clients share.
    a.batch_execute("SET search_path = pg_catalog; SET TimeZone = 'Asia/Tokyo'")
        .await
        .unwrap();
    let row = b
        .query_one(
            "SELECT current_setting('search_path'), current_setting('TimeZone')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), path_before, "search_path leaked");
    assert_ne!(row.get::<_, String>(1), "Asia/Tokyo", "TimeZone leaked");
    // The tracked setting follows its client to whichever server it gets.
    let zone: String = a
        .query_one("SELECT current_setting('TimeZone')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(zone, "Asia/Tokyo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_server_running_the_query() {
    let env = Env::with(ClusterOptions::default(), pooled(1)).await;
    let a = env.connect().await;
    let token = a.cancel_token();
    let sleeping = tokio::spawn(async move { a.batch_execute("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel");
    let e = tokio::time::timeout(Duration::from_secs(5), sleeping)
        .await
        .expect("the cancel stopped the query")
        .unwrap()
        .unwrap_err();
    assert_eq!(harness::sqlstate(&e), "57014");
    // The server went back to the pool.
    let b = env.connect().await;
    assert_eq!(harness::texts(&b, "SELECT 'served'").await, ["served"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_waits_too_long_is_told_why() {
    let env = Env::with(ClusterOptions::default(), |c| {
        pooled(1)(c);
        c.pool.query_wait_timeout = Duration::from_millis(300);
    })
    .await;
    let a = env.connect().await;
    let b = env.connect().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let e = b.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(harness::sqlstate(&e), "53300", "{e}");
    assert!(
        harness::error_text(&e).contains("query_wait_timeout"),
        "{e}"
    );
    a.batch_execute("COMMIT").await.unwrap();
    let c = env.connect().await;
    assert_eq!(harness::texts(&c, "SELECT 'after'").await, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_transaction_leaves_nothing_behind() {
    let env = Env::with(ClusterOptions::default(), pooled(1)).await;
    let direct = env.direct().await;
    direct
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let a = env.connect().await;
    a.batch_execute("BEGIN; INSERT INTO t VALUES (1); LOCK t")
        .await
        .unwrap();
    drop(a);
    // The one server is rolled back and serves the next client.
    let b = env.connect().await;
    b.batch_execute("SET lock_timeout = '2s'; INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    assert_eq!(
        harness::texts(&b, "SELECT string_agg(id::text, ',') FROM t").await,
        ["2"]
    );
    assert_eq!(backends(&direct, "postgres").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_is_dropped_and_a_login_brings_a_new_one() {
    let env = Env::with(ClusterOptions::default(), pooled(1)).await;
    let direct = env.direct().await;
    let a = env.connect().await;
    // A simple query: nothing of the client's follows it (a prepared
    // query's statement is closed after it, which would race the kill).
    a.batch_execute("SELECT 'one'").await.unwrap();
    direct
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND usename = 'postgres' AND application_name <> 'pgshift'",
        )
        .await
        .unwrap();
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            backends(&direct, "postgres").await == 0
        })
        .await
    );
    let e = a.batch_execute("SELECT 'two'").await.unwrap_err();
    assert_eq!(harness::sqlstate(&e), "08006", "{e}");
    let b = env.connect().await;
    assert_eq!(harness::texts(&b, "SELECT 'three'").await, ["three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_keep_their_pools_through_a_migration() {
    let shop = Shop::open_with(pooled(2)).await;
    let direct = shop.env.direct().await;
    // Old-version clients, connected before the migration.
    let mut old = Vec::new();
    for _ in 0..4 {
        old.push(shop.app(None).await);
    }
    for c in &old {
        c.batch_execute("UPDATE orders SET status = 'seen' WHERE id = 1")
            .await
            .unwrap();
    }
    shop.start("owner").await;
    let mut new = Vec::new();
    for _ in 0..4 {
        new.push(shop.app(Some("02_amounts")).await);
    }
    for round in 0..10 {
        for (o, n) in old.iter().zip(&new) {
            let amount: String = o
                .query_one("SELECT amount FROM orders WHERE id = 2", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(amount, "2.50", "the old version sees text");
            let typed: String = n
                .query_one(
                    "SELECT pg_typeof(amount)::text FROM orders WHERE id = 2",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(typed, "numeric", "the new version sees numeric");
            n.execute(
                "INSERT INTO orders (customer_name, amount) VALUES ($1, 3.5)",
                &[&format!("new {round}")],
            )
            .await
            .unwrap();
            let version: String = o
                .query_one("SELECT current_setting('pgshift.version')", &[])
                .await
                .unwrap()
                .get(0);
            assert_ne!(version, "02_amounts");
        }
    }
    // Each version's pool has at most two servers.
    assert!(backends(&direct, "app").await <= 4);
    // Old-version clients are still connected: complete refuses, as in
    // session mode.
    let mut m = shop.migrator("owner").await;
    let refused = m.complete(Pinned::Refuse).await.unwrap_err();
    assert!(
        refused.to_string().contains("02_amounts") || refused.to_string().contains("pinned"),
        "{refused}"
    );
    drop(old);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    m.complete(Pinned::Refuse).await.unwrap();
    m.close().await.unwrap();
    // The old version's servers are closed; the new version's serve on.
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            backends(&direct, "app").await <= 2
        })
        .await,
        "the old version's servers were not closed"
    );
    let typed: String = new[0]
        .query_one(
            "SELECT pg_typeof(amount)::text FROM orders WHERE customer_name = 'new 9' LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(typed, "numeric");
    let count: i64 = direct
        .query_one(
            "SELECT count(*) FROM orders WHERE customer_name LIKE 'new %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 40, "every write of the new version landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_pools_servers_and_stats() {
    let env = Env::with(ClusterOptions::default(), |c| {
        pooled(2)(c);
        c.admin_users = vec!["postgres".into()];
    })
    .await;
    let direct = env.direct().await;
    let a = env.connect().await;
    let b = env.connect().await;
    let c = env.connect().await;
    for client in [&a, &b, &c] {
        client.batch_execute("SELECT 1").await.unwrap();
    }
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let console = harness::connect(&format!(
        "postgres://postgres@{}/pgshift?sslmode=disable",
        env.proxy
    ))
    .await;
    let pools = crate::console::rows(&console, "SHOW POOLS").await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        pools,
        [vec![
            s("postgres"),
            s("postgres"),
            s("baseline"),
            s("3"),
            s("0"),
            s("1"),
            s("1"),
            s("0"),
            pools[0][8].clone(),
            s("transaction"),
        ]]
    );
    let servers = crate::console::rows(&console, "SHOW SERVERS").await;
    let mut states: Vec<_> = servers.iter().map(|r| r[4].clone().unwrap()).collect();
    states.sort();
    assert_eq!(states, ["active", "idle"]);
    // The pids are the backends Postgres reports for the pool.
    for row in &servers {
        let pid: i32 = row[6].as_ref().unwrap().parse().unwrap();
        let found: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(found, 1, "server {pid} is a live backend");
    }
    let stats = crate::console::rows(&console, "SHOW STATS").await;
    let transactions: u64 = stats[0][3].as_ref().unwrap().parse().unwrap();
    assert!(transactions >= 3, "{stats:?}");
    a.batch_execute("COMMIT").await.unwrap();
}

/// The body of `GET path` from `addr` (HTTP/1.0, so the server closes).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_pools_and_the_sessions() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = Env::with(ClusterOptions::default(), |c| {
        pooled(2)(c);
        c.metrics_listen = Some(port);
    })
    .await;
    let a = env.connect().await;
    let b = env.connect().await;
    for _ in 0..5 {
        a.batch_execute("SELECT 1").await.unwrap();
        b.batch_execute("SELECT 1").await.unwrap();
    }
    let text = http_get(port, "/metrics").await;
    assert!(text.contains("application/openmetrics-text"), "{text}");
    let labels = r#"{database="postgres",user="postgres",version="baseline"}"#;
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{labels} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(value("pgshift_pool_transactions_total") >= 10.0);
    assert!(value("pgshift_pool_queries_total") >= 10.0);
    assert_eq!(value("pgshift_pool_servers_idle"), 2.0);
    assert_eq!(value("pgshift_pool_servers_active"), 0.0);
    assert_eq!(value("pgshift_pool_clients_active"), 2.0);
    assert_eq!(value("pgshift_pool_clients_waiting"), 0.0);
    assert!(value("pgshift_pool_sent_bytes_total") > 0.0);
    assert!(
        text.contains(r#"pgshift_sessions{version="baseline"} 2"#),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert!(http_get(port, "/other").await.starts_with("HTTP/1.0 404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_running_transactions_and_holds_new_ones_until_resume() {
    let env = Env::with(ClusterOptions::default(), |c| {
        pooled(2)(c);
        c.admin_users = vec!["postgres".into()];
    })
    .await;
    let direct = env.direct().await;
    direct
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let a = env.connect().await;
    let b = env.connect().await;
    a.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let console_url = format!("postgres://postgres@{}/pgshift?sslmode=disable", env.proxy);
    let console = harness::connect(&console_url).await;
    let pausing = tokio::spawn(async move {
        console.simple_query("PAUSE").await.unwrap();
        console
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pausing.is_finished(),
        "PAUSE returned while a transaction ran"
    );
    // The running transaction finishes; PAUSE then returns.
    a.batch_execute("INSERT INTO t VALUES (2); COMMIT")
        .await
        .unwrap();
    let console = tokio::time::timeout(Duration::from_secs(5), pausing)
        .await
        .expect("PAUSE returned once the transaction was done")
        .unwrap();
    // A new transaction is held, not refused, until RESUME.
    let held = tokio::spawn(async move {
        b.batch_execute("INSERT INTO t VALUES (3)").await.unwrap();
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a transaction started during PAUSE");
    let count: i64 = direct
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
    console.simple_query("RESUME").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("RESUME let the held transaction go on")
        .unwrap();
    let count: i64 = direct
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
}
