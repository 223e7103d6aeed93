//! The rewriter through the proxy, one test per defect that the rewriter on
//! Postgres's own grammar fixed: a statement that killed the proxy, one
//! that stalled the other sessions of its thread, unbounded memory, a
//! rewrite that changed a statement's meaning, valid SQL refused, and holes
//! in the guard rails. The proxy serves on after each.

use std::time::{Duration, Instant};

use tokio_postgres::SimpleQueryMessage;

use crate::harness::{self, Env, Raw};
use crate::routing::{start_users_migration, versioned_url};

/// The version schema of `01_users`, the migration `start_users_migration` runs.
const VERSION_SCHEMA: &str = "public_01_users";

/// A new-version session through the proxy at `env`.
async fn new_version(env: &Env) -> tokio_postgres::Client {
    harness::connect(&versioned_url(env, "01_users")).await
}

fn deep(terms: usize) -> String {
    format!("SELECT 1{} FROM public.nosuchtable", "+1".repeat(terms))
}

/// The SQLSTATE of a statement's error.
async fn refused_with(client: &tokio_postgres::Client, sql: &str) -> String {
    let err = client.batch_execute(sql).await.unwrap_err();
    harness::sqlstate(&err)
}

/// The proxy as its own process, so that a crash would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_statement_is_refused_and_the_proxy_lives() {
    let env = Env::start().await;
    let (mut child, addr) = harness::spawn_binary(&env.direct_url(), &[]).await;
    let mut logs = child.stderr.take().unwrap();
    tokio::spawn(async move { tokio::io::copy(&mut logs, &mut tokio::io::sink()).await });
    let (m, _dir) = start_users_migration(&env).await;
    m.close().await.unwrap();
    let url = format!(
        "postgres://postgres@{addr}/postgres?sslmode=disable&options=-c%20pgshift.version%3D01_users"
    );
    let heard = harness::eventually(Duration::from_secs(5), || async {
        harness::try_connect(&url).await.is_ok()
    })
    .await;
    assert!(heard, "the binary proxy serves the new version");
    let client = harness::connect(&url).await;
    // As a simple Query and as a Parse (refused when executed, as every
    // refusal is): 54000, not a crash.
    assert_eq!(refused_with(&client, &deep(40_000)).await, "54000");
    let statement = client.prepare(&deep(40_000)).await.unwrap();
    let err = client.query(&statement, &[]).await.unwrap_err();
    assert_eq!(harness::sqlstate(&err), "54000", "{err}");
    // A 100,000-term AND chain is over the parse limit: judged by its tokens.
    let and = format!(
        "SELECT count(*) FROM public.users WHERE {}",
        vec!["id > 0"; 100_000].join(" AND ")
    );
    let n: i64 = client.query_one(and.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(n, 100);
    assert!(child.try_wait().unwrap().is_none(), "the proxy is alive");
    let other = harness::connect(&url).await;
    let one: i32 = other.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

/// With one session thread, a session's 200 KB statement that must be
/// parsed does not hold up another session's queries: they are served
/// while it is parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_statement_does_not_stall_the_other_sessions_of_its_thread() {
    let env = Env::with(pgshift::cluster::ClusterOptions::default(), |c| {
        c.workers = 1
    })
    .await;
    let (m, _dir) = start_users_migration(&env).await;
    m.close().await.unwrap();
    let big = new_version(&env).await;
    let small = new_version(&env).await;
    small.query_one("SELECT 1", &[]).await.unwrap();
    let in_list = format!(
        "SELECT count(*) FROM public.nosuchtable WHERE id IN ({})",
        vec!["1"; 100_000].join(",")
    );
    assert!(in_list.len() > 200_000);
    let sent = Instant::now();
    let large = tokio::spawn(async move {
        let err = big.simple_query(&in_list).await.unwrap_err();
        (Instant::now(), harness::sqlstate(&err))
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut answered = Vec::new();
    for _ in 0..20 {
        small.query_one("SELECT 1", &[]).await.unwrap();
        answered.push(Instant::now());
    }
    let (large_done, code) = large.await.unwrap();
    assert_eq!(code, "42P01", "Postgres answers the rewritten statement");
    let before = answered.iter().filter(|t| **t < large_done).count();
    assert!(
        before >= 10,
        "only {before} of 20 small queries were served before the large one ({:?})",
        large_done - sent
    );
}

/// Four sessions sending 64 MiB statements that may need a rewrite, and
/// one sending 200 distinct 1 MiB ones: the proxy's memory stays bounded,
/// measured by RSS; the long ones are refused with 54000, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_whatever_the_sessions_send() {
    let env = Env::start().await;
    let (mut child, addr) = harness::spawn_binary(&env.direct_url(), &[]).await;
    let mut logs = child.stderr.take().unwrap();
    tokio::spawn(async move { tokio::io::copy(&mut logs, &mut tokio::io::sink()).await });
    let pid = child.id().unwrap();
    let (m, _dir) = start_users_migration(&env).await;
    m.close().await.unwrap();
    let url = format!(
        "postgres://postgres@{addr}/postgres?sslmode=disable&options=-c%20pgshift.version%3D01_users"
    );
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            harness::try_connect(&url).await.is_ok()
        })
        .await
    );
    let warm = harness::connect(&url).await;
    warm.query_one("SELECT count(*) FROM public.users", &[])
        .await
        .unwrap();
    let baseline = harness::rss_kib(pid);

    let huge = format!(
        "SELECT count(*) FROM public.users WHERE full_name = '{}'",
        "x".repeat(64 << 20)
    );
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let (client, sql) = (harness::connect(&url).await, huge.clone());
        sessions.push(tokio::spawn(async move {
            let err = client.simple_query(&sql).await.unwrap_err();
            (harness::sqlstate(&err), harness::error_text(&err))
        }));
    }
    let mut peak = 0;
    while !sessions.iter().all(|s| s.is_finished()) {
        peak = peak.max(harness::rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for s in sessions {
        let (code, text) = s.await.unwrap();
        assert_eq!(code, "54000", "{text}");
        assert!(text.contains("max_rewrite_size"), "{text}");
    }
    assert!(
        peak < baseline + 64 * 1024,
        "RSS went from {baseline} KiB to {peak} KiB for four 64 MiB statements"
    );

    let client = harness::connect(&url).await;
    for i in 0..200 {
        let sql = format!(
            "SELECT {i} + count(*) FROM public.users WHERE full_name <> '{}'",
            "y".repeat(1 << 20)
        );
        let n: i64 = client.query_one(sql.as_str(), &[]).await.unwrap().get(0);
        assert_eq!(n, i as i64 + 100);
        peak = peak.max(harness::rss_kib(pid));
    }
    assert!(
        peak < baseline + 128 * 1024,
        "RSS went from {baseline} KiB to {peak} KiB for 200 distinct 1 MiB statements"
    );
    eprintln!("proxy RSS: {baseline} KiB before, {peak} KiB at the most");
    assert!(child.try_wait().unwrap().is_none(), "the proxy is alive");
}

/// A rewrite changes the statement only where it must: `- -1` stays two
/// minus signs (a printer made it `--1`, a comment), and so on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_keeps_every_other_byte_of_the_statement() {
    let env = Env::start().await;
    let (m, _dir) = start_users_migration(&env).await;
    m.close().await.unwrap();
    let client = new_version(&env).await;
    let rows = client
        .simple_query("SELECT - -1 AS x, count(*) AS n FROM public.users")
        .await
        .unwrap();
    let SimpleQueryMessage::Row(row) = &rows[1] else {
        panic!("{rows:?}")
    };
    assert_eq!(row.len(), 2);
    assert_eq!((row.get("x"), row.get("n")), (Some("1"), Some("100")));
    let row = client
        .query_one("SELECT @ -5, ~ ~1, - ~1 FROM public.users LIMIT 1", &[])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, i32>(2)
        ),
        (5, 1, 2)
    );
}

/// Valid SQL that a weaker parser could not read is served, rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_sql_is_served_whatever_its_syntax() {
    let env = Env::start().await;
    let (m, _dir) = start_users_migration(&env).await;
    m.close().await.unwrap();
    let client = new_version(&env).await;
    for sql in [
        "SELECT TRIM(LEADING FROM full_name) FROM public.users WHERE id = 1",
        "SELECT full_name FROM ONLY public.users WHERE id = 1",
        "SELECT u.full_name FROM public.users u, ROWS FROM (generate_series(1, 2)) g WHERE u.id = g LIMIT 1",
        "SELECT U&'d!0061t!+000061' UESCAPE '!' FROM public.users WHERE id = 1",
    ] {
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // A walsender command over a replication connection is not SQL: it
    // goes to Postgres as it is, which answers it.
    let addr = env.proxy;
    let (mut raw, _) = Raw::startup(
        addr,
        &[
            ("replication", "database"),
            ("options", "-c pgshift.version=01_users"),
        ],
    )
    .await;
    raw.send(&harness::query("DROP_REPLICATION_SLOT no_such_slot"))
        .await;
    let msgs = raw.until_ready().await;
    let error = msgs.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(error.field(b'C').as_deref(), Some("42704"), "{msgs:?}");
}

/// Every spelling of what the guard rails refuse is refused, and every
/// spelling of a search_path change keeps the version schema first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_rails_hold_whatever_the_spelling() {
    let env = Env::start().await;
    let (mut m, _dir) = start_users_migration(&env).await;
    let client = new_version(&env).await;
    for sql in [
        "ALTER TABLE postgres.public.users ADD COLUMN z int",
        "DROP FUNCTION pgshift._pgshift_01_users_users() CASCADE",
        "DROP VIEW public_01_users.users",
        "DROP SCHEMA public_01_users CASCADE",
        "SET pgshift.\"VERSION\" = 'baseline'",
        "SELECT set_config(E'pgshift.version', 'baseline', false)",
    ] {
        assert_eq!(refused_with(&client, sql).await, "42501", "{sql}");
    }
    for sql in [
        "SET search_path = E'public'",
        "SET search_path = $$public$$",
        "SET SCHEMA 'public'",
        "SELECT set_config('search_path', 'PUBLIC', false)",
    ] {
        client.batch_execute(sql).await.unwrap();
        let first: String = client
            .query_one("SELECT (current_schemas(false))[1]::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(first, VERSION_SCHEMA, "after {sql}");
    }
    // With standard_conforming_strings off, a backslash escapes the quote:
    // Postgres reads an ALTER in the middle, and so does pgshift.
    client
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    let sql = "SELECT 'a\\', ' ; ALTER TABLE public.users ADD COLUMN x int; SELECT 1 --'";
    assert_eq!(refused_with(&client, sql).await, "42501");
    let direct = env.direct().await;
    let columns = harness::columns(&direct, "users").await;
    assert!(!columns.contains(&"x".to_string()), "{columns:?}");
    assert!(!columns.contains(&"z".to_string()), "{columns:?}");
    drop(client);
    crate::bluegreen::finish_when_drained(&mut m, false).await;
    m.close().await.unwrap();
}
