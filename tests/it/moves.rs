//! Live sessions through a migration's lifecycle: a session connected before
//! `start` is moved onto the old version's views before any table changes,
//! `start` waits for sessions inside a transaction (and says which), and
//! prepared statements, `SELECT *` and positional INSERTs included, keep
//! working through start, rollback and complete, from tokio-postgres and
//! from pgbench `-M prepared`.

use std::time::Duration;

use pgshift::migrate::engine::{MigrateError, Migrator, Pinned, Settings};
use pgshift::routing::RouteRule;
use tokio_postgres::Client;

use crate::bluegreen::finish_when_drained;
use crate::harness::{self, Env};

const SETUP: &str = "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, rating text NOT NULL);
INSERT INTO users (name, rating) SELECT 'user ' || g, (g % 5 + 1)::text FROM generate_series(1, 200) g;";

/// Renames a column, changes a type and adds a NOT NULL column: the
/// physical table gains columns at start, so a session still reading it
/// directly would see its `SELECT *` change shape.
const MIGRATION: &str = r#"{"operations": [
  {"rename_column": {"table": "users", "from": "name", "to": "full_name"}},
  {"alter_column": {"table": "users", "column": "rating", "type": "integer",
     "up": "CAST(rating AS integer)", "down": "CAST(rating AS text)"}},
  {"add_column": {"table": "users", "up": "lower(name) || '@example.com'",
     "column": {"name": "email", "type": "text", "nullable": false}}}
]}"#;

const NEW: &str = "01_users";

/// A cluster with SETUP, a proxy whose route `new` (application_name
/// `moves-new`) can be pinned to the new version, and the migration file.
async fn lab() -> (Env, tempfile::TempDir, std::path::PathBuf) {
    let env = Env::with(Default::default(), |c| {
        c.routes = vec![RouteRule {
            name: "new".into(),
            application_name: Some("moves-new".into()),
            ..Default::default()
        }]
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{NEW}.json"));
    std::fs::write(&file, MIGRATION).unwrap();
    (env, dir, file)
}

async fn migrator(env: &Env) -> Migrator {
    Migrator::connect(Settings::new(env.direct_url()))
        .await
        .unwrap()
}

fn url_as(env: &Env, app: &str) -> String {
    format!(
        "{}&application_name={app}",
        env.proxy_url("postgres", "postgres")
    )
}

/// A session that asks for the new version, once the proxy has heard that
/// it exists (through NOTIFY, within moments of `start` returning).
async fn connect_new(env: &Env) -> Client {
    let url = format!(
        "{}&options=-c%20pgshift.version%3D{NEW}",
        env.proxy_url("postgres", "postgres")
    );
    for _ in 0..40 {
        if let Ok(client) = harness::try_connect(&url).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy does not serve the new version");
}

/// The old-shape row with `id`, read through a prepared `SELECT *`.
async fn old_row(
    client: &Client,
    select_all: &tokio_postgres::Statement,
    id: i32,
) -> (usize, String) {
    let row = client.query_one(select_all, &[&id]).await.unwrap();
    (row.len(), row.get::<_, String>("name"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_before_start_moves_onto_the_old_views_and_keeps_its_prepared_statements() {
    let (env, _dir, file) = lab().await;
    let old = harness::connect(&url_as(&env, "moves-old")).await;
    let select_all = old
        .prepare("SELECT * FROM users WHERE id = $1")
        .await
        .unwrap();
    let insert = old
        .prepare("INSERT INTO users VALUES (DEFAULT, $1, $2) RETURNING id")
        .await
        .unwrap();
    assert_eq!(old_row(&old, &select_all, 1).await, (3, "user 1".into()));
    let path: String = old.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    assert_eq!(
        path, "\"$user\", public",
        "no migration: the session is untouched"
    );

    let mut m = migrator(&env).await;
    m.start(&file).await.unwrap();
    // start returned only once the session stood on the old views, so the
    // physical table has changed under a session that no longer sees it.
    assert!(harness::columns(&env.direct().await, "users").await.len() > 3);
    let path: String = old.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    assert_eq!(path, "\"public_baseline\", \"$user\", public");
    let version: String = old
        .query_one("SELECT current_setting('pgshift.version')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, "baseline");
    assert_eq!(old_row(&old, &select_all, 2).await, (3, "user 2".into()));
    let id: i32 = old
        .query_one(&insert, &[&"Early Bird", &"4"])
        .await
        .unwrap()
        .get(0);
    // The proxy reported the move to the state schema.
    let reported: Option<String> = env
        .direct()
        .await
        .query_one(
            "SELECT version_schema FROM pgshift.sessions WHERE application_name = 'moves-old'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reported.as_deref(), Some("public_baseline"));
    // The new version sees the old session's write converted.
    let new = connect_new(&env).await;
    let row = new
        .query_one(
            "SELECT full_name, rating, email FROM users WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2)
        ),
        ("Early Bird".into(), 4, "early bird@example.com".into())
    );
    drop(new);

    // Rollback drops the new columns and the old views; the session falls
    // back to the restored table with the same shape.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    m.rollback(Pinned::Refuse).await.unwrap();
    assert_eq!(
        harness::columns(&env.direct().await, "users").await,
        ["id", "name", "rating"]
    );
    assert_eq!(old_row(&old, &select_all, 3).await, (3, "user 3".into()));
    old.query_one(&insert, &[&"After rollback", &"2"])
        .await
        .unwrap();

    // Started again, the session stands on the recreated views at once.
    m.start(&file).await.unwrap();
    assert_eq!(old_row(&old, &select_all, 4).await, (3, "user 4".into()));
    old.query_one(&insert, &[&"Second start", &"1"])
        .await
        .unwrap();

    // A new-version session holds a prepared SELECT * through complete.
    let green = connect_new(&env).await;
    let green_all = green
        .prepare("SELECT * FROM users WHERE id = $1")
        .await
        .unwrap();
    let before = green.query_one(&green_all, &[&5i32]).await.unwrap();
    let names: Vec<&str> = before.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["id", "full_name", "rating", "email"]);
    drop(old);
    finish_when_drained(&mut m, true).await;
    let after = green.query_one(&green_all, &[&5i32]).await.unwrap();
    assert_eq!(
        (
            after.get::<_, String>("full_name"),
            after.get::<_, i32>("rating")
        ),
        ("user 5".into(), 1)
    );
    assert_eq!(after.len(), 4);
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_waits_for_a_session_in_a_transaction_and_names_it() {
    let (env, _dir, file) = lab().await;
    let busy = harness::connect(&url_as(&env, "long-report")).await;
    busy.batch_execute("BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();

    let settings = Settings {
        session_move_timeout: Duration::from_secs(2),
        ..Settings::new(env.direct_url())
    };
    let mut m = Migrator::connect(settings).await.unwrap();
    let err = m.start(&file).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MigrateError::SessionsNotMoved { .. })
            && text.contains("\"long-report\"")
            && text.contains("No table has changed yet"),
        "{text}"
    );
    assert_eq!(
        harness::columns(&env.direct().await, "users").await,
        ["id", "name", "rating"]
    );
    // A session that connects meanwhile stands on the old views at once.
    let late = harness::connect(&url_as(&env, "late")).await;
    let path: String = late
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert!(path.starts_with("\"public_baseline\", "), "{path}");

    busy.batch_execute("COMMIT").await.unwrap();
    m.start(&file).await.unwrap();
    let row = busy
        .query_one("SELECT * FROM users LIMIT 1", &[])
        .await
        .unwrap();
    assert_eq!(row.len(), 3);
    // A pool's DISCARD ALL returns a moved session to its startup
    // search_path; the proxy moves it again before its next statement.
    busy.batch_execute("DISCARD ALL").await.unwrap();
    let row = busy
        .query_one("SELECT * FROM users LIMIT 1", &[])
        .await
        .unwrap();
    assert_eq!(row.len(), 3);
    let path: String = busy
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "\"public_baseline\", \"$user\", public");
    // A statement that only mentions the word moves it again, which
    // changes nothing: the version schema is first already.
    busy.batch_execute("SELECT 1 AS reset").await.unwrap();
    let path: String = busy
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "\"public_baseline\", \"$user\", public");
    m.close().await.unwrap();
}

const OLD_SCRIPT: &str = "\\set id random(1, 200)
SELECT * FROM users WHERE id = :id;
INSERT INTO users VALUES (DEFAULT, 'bench old', '3');
";

const NEW_SCRIPT: &str = "\\set id random(1, 200)
SELECT * FROM users WHERE id = :id;
INSERT INTO users (full_name, rating, email) VALUES ('bench new', 5, 'new@x');
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_select_star_through_start_rollback_and_complete() {
    let (env, dir, file) = lab().await;
    // Short enough that start fails if the busy pgbench sessions are not moved.
    let settings = Settings {
        session_move_timeout: Duration::from_secs(3),
        ..Settings::new(env.direct_url())
    };
    let mut m = Migrator::connect(settings).await.unwrap();
    let old = harness::pgbench_script(
        &env,
        "moves-old",
        OLD_SCRIPT,
        7,
        dir.path(),
        &["-M", "prepared"],
    );
    let operator = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        m.start(&file).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        m.rollback(Pinned::Refuse).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        m.start(&file).await.unwrap();
    };
    let ((ok, out), ()) = tokio::join!(old, operator);
    assert!(
        ok && out.contains("number of failed transactions: 0"),
        "{out}"
    );

    m.pin("new", NEW).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = harness::pgbench_script(
        &env,
        "moves-new",
        NEW_SCRIPT,
        4,
        dir.path(),
        &["-M", "prepared"],
    );
    let operator = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        finish_when_drained(&mut m, true).await;
    };
    let ((ok, out), ()) = tokio::join!(new, operator);
    assert!(
        ok && out.contains("number of failed transactions: 0"),
        "{out}"
    );
    let n: i64 = env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM users WHERE full_name = 'bench new' AND email = 'new@x'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_refuses_a_session_that_connected_just_before_it() {
    let (env, _dir, file) = lab().await;
    let mut m = migrator(&env).await;
    m.start(&file).await.unwrap();
    // No heartbeat has reported this session yet when complete begins.
    let late = harness::connect(&url_as(&env, "just-in-time")).await;
    let err = m.complete(Pinned::Refuse).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::SessionsPinned { .. })
            && err.to_string().contains("just-in-time"),
        "{err}"
    );
    let phase: String = env
        .direct()
        .await
        .query_one(
            "SELECT phase FROM pgshift.migrations WHERE version = $1",
            &[&NEW],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        phase, "active",
        "a refused complete leaves the migration as it was"
    );
    let row = late
        .query_one("SELECT * FROM users LIMIT 1", &[])
        .await
        .unwrap();
    assert_eq!(row.len(), 3);
    drop(late);
    finish_when_drained(&mut m, true).await;
    m.close().await.unwrap();
}
