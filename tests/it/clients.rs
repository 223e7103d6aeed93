//! Real clients through the proxy: psql, pgbench in all three query modes,
//! and psycopg 3 (a non-Rust driver).

use crate::harness::{self, Env};

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
async fn pgbench_in_every_query_mode() {
    let env = Env::start().await;
    pgbench(&env, &["-i", "-s", "1", "-q"]).await;
    for mode in ["simple", "extended", "prepared"] {
        let text = pgbench(&env, &["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "100"]).await;
        assert!(
            text.contains("number of transactions actually processed: 400/400"),
            "{mode}:\n{text}"
        );
        assert!(
            text.contains("number of failed transactions: 0"),
            "{mode}:\n{text}"
        );
    }
    // The writes really happened: each TPC-B-like transaction logs one history
    // row (-n skips the vacuum step, which would truncate the history).
    let count: i64 = env
        .direct()
        .await
        .query_one("SELECT count(*) FROM pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_script_with_copy_and_variables() {
    let env = Env::start().await;
    let script = r#"
CREATE TABLE notes (id serial PRIMARY KEY, body text);
\set n 3
INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, :n) g;
COPY notes (body) FROM STDIN;
from copy 1
from copy 2
\.
BEGIN;
DELETE FROM notes;
ROLLBACK;
SELECT count(*) || ' notes' FROM notes;
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.sql");
    std::fs::write(&path, script).unwrap();
    let out = tokio::process::Command::new("psql")
        .arg(env.proxy_url("postgres", "postgres"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&path)
        .output()
        .await
        .expect("psql must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "5 notes"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_session() {
    let env = Env::start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/psycopg_smoke.py"
    );
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(env.proxy_url("postgres", "postgres"))
        .output()
        .await
        .expect("python3 must be installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "psycopg script failed (install it with `pip install 'psycopg[binary]'`):\n{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let count: i64 = env
        .direct()
        .await
        .query_one("SELECT count(*) FROM py_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 200);
}
