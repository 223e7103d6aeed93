//! The migration engine against real Postgres, in the two-client shape that
//! pgroll and reshape use: start; an old-version and a new-version client
//! read and write side by side and see each other's writes in their own
//! shape; rollback leaves a catalog identical to the pre-start snapshot;
//! start again and complete, with the final schema and data checked.

use std::path::PathBuf;
use std::time::Duration;

use pgshift::catalog;
use pgshift::cluster::{ClusterOptions, TempCluster};
use pgshift::migrate::engine::{MigrateError, Migrator, Settings, session_setup};
use pgshift::migrate::names;
use tokio_postgres::Client;

use crate::harness::{self, init_logs};

/// A throwaway cluster and a directory of migration files.
pub struct Lab {
    pub cluster: TempCluster,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub async fn new(setup: &str) -> Lab {
        init_logs();
        let cluster =
            tokio::task::spawn_blocking(|| TempCluster::start(&ClusterOptions::default()))
                .await
                .unwrap()
                .unwrap();
        let lab = Lab {
            cluster,
            dir: tempfile::tempdir().unwrap(),
        };
        if !setup.is_empty() {
            lab.admin().await.batch_execute(setup).await.unwrap();
        }
        // `init`, so that "before" snapshots include pgshift's own state schema.
        drop(lab.migrator().await);
        lab
    }

    pub fn settings(&self) -> Settings {
        Settings {
            database_url: self.cluster.url("postgres"),
            schema: "public".into(),
            lock_timeout: Duration::from_millis(500),
            batch_size: 100,
            batch_delay: Duration::ZERO,
        }
    }

    pub async fn admin(&self) -> Client {
        harness::connect(&self.cluster.url("postgres")).await
    }

    pub fn file(&self, name: &str, json: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, json).unwrap();
        path
    }

    pub async fn migrator(&self) -> Migrator {
        Migrator::connect(self.settings()).await.unwrap()
    }

    pub async fn start(&self, path: &PathBuf) {
        self.migrator()
            .await
            .start(path, false)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
    }

    pub async fn complete(&self) {
        self.migrator()
            .await
            .complete()
            .await
            .unwrap_or_else(|e| panic!("complete: {e}"));
    }

    pub async fn rollback(&self) {
        self.migrator()
            .await
            .rollback()
            .await
            .unwrap_or_else(|e| panic!("rollback: {e}"));
    }

    /// A client of `version` as the proxy will set it up: `pgshift.version`
    /// and the version schema first on the search_path. `None` is a client
    /// with no setting (the old version).
    pub async fn client(&self, version: Option<&str>, old_version: &str) -> Client {
        let client = self.admin().await;
        match version {
            Some(v) => client
                .batch_execute(&session_setup(
                    "public",
                    v,
                    &names::version_schema("public", v),
                ))
                .await
                .unwrap(),
            None => client
                .batch_execute(&format!(
                    "SET search_path = {}, public",
                    pgshift::quote::ident(&names::version_schema("public", old_version))
                ))
                .await
                .unwrap(),
        }
        client
    }

    pub async fn snapshot(&self) -> Vec<String> {
        catalog::snapshot(&self.admin().await).await.unwrap()
    }
}

/// Asserts two catalog snapshots are equal, showing only the differing lines.
pub fn assert_same_catalog(before: &[String], after: &[String]) {
    let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
    let added: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        gone.is_empty() && added.is_empty(),
        "catalog differs\n  gone: {gone:#?}\n  added: {added:#?}"
    );
}

const USERS: &str = "
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, rating text);
INSERT INTO users (name, rating) SELECT 'user ' || g, (g % 5 + 1)::text FROM generate_series(1, 1000) g;
";

const MULTI: &str = r#"{"operations": [
  {"rename_column": {"table": "users", "from": "name", "to": "full_name"}},
  {"alter_column": {"table": "users", "column": "rating", "type": "integer",
     "up": "CAST(rating AS integer)", "down": "CAST(rating AS text)"}},
  {"add_column": {"table": "users", "up": "name || '@example.com'",
     "column": {"name": "email", "type": "text", "nullable": false}}}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_operation_lifecycle_with_two_clients() {
    let lab = Lab::new(USERS).await;
    let before = lab.snapshot().await;
    let file = lab.file("01_users.json", MULTI);

    lab.start(&file).await;
    let old = lab.client(None, "baseline").await;
    let new = lab.client(Some("01_users"), "baseline").await;
    // Each client writes in its own shape.
    old.execute(
        "INSERT INTO users (name, rating) VALUES ('old writer', '4')",
        &[],
    )
    .await
    .unwrap();
    new.execute(
        "INSERT INTO users (full_name, rating, email) VALUES ('new writer', 2, 'new@x.org')",
        &[],
    )
    .await
    .unwrap();
    // Each sees the other's write in its own shape.
    let row = new
        .query_one(
            "SELECT full_name, rating, email FROM users WHERE full_name = 'old writer'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2)
        ),
        ("old writer".into(), 4, "old writer@example.com".into())
    );
    let row = old
        .query_one(
            "SELECT name, rating FROM users WHERE name = 'new writer'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("new writer".into(), "2".into())
    );
    // Backfilled rows are converted; updates from either side stay in step.
    let row = new
        .query_one("SELECT rating, email FROM users WHERE id = 7", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (3, "user 7@example.com".into())
    );
    old.execute("UPDATE users SET rating = '5' WHERE id = 7", &[])
        .await
        .unwrap();
    assert_eq!(
        new.query_one("SELECT rating FROM users WHERE id = 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    new.execute("UPDATE users SET rating = 1 WHERE id = 8", &[])
        .await
        .unwrap();
    assert_eq!(
        old.query_one("SELECT rating FROM users WHERE id = 8", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "1"
    );
    // The old version cannot see the new shape, and the reverse.
    assert!(old.query("SELECT email FROM users", &[]).await.is_err());
    assert!(new.query("SELECT name FROM users", &[]).await.is_err());
    // NOT NULL holds for new-version writes already.
    let err = new
        .execute(
            "INSERT INTO users (full_name, rating) VALUES ('no email', 1)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "23514", "{err}");

    lab.rollback().await;
    assert_same_catalog(&before, &lab.snapshot().await);
    let admin = lab.admin().await;
    let count: i64 = admin
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1002, "rollback keeps rows both versions wrote");

    lab.start(&file).await;
    lab.complete().await;
    let cols: Vec<String> = admin
        .query(
            "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        cols,
        [
            "id integer NO",
            "full_name text NO",
            "rating integer YES",
            "email text NO"
        ],
        "final shape"
    );
    let bad: i64 = admin
        .query_one(
            "SELECT count(*) FROM users WHERE email IS NULL OR (id <= 1000 AND (rating <> id % 5 + 1 AND id NOT IN (7, 8)))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    // The old version's schema is gone; the new one stays usable.
    let schemas: Vec<String> = admin
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'public_%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, ["public_01_users"]);
    assert_eq!(
        new.query("SELECT full_name FROM users", &[])
            .await
            .unwrap()
            .len(),
        1002
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_fails_at_once() {
    let lab = Lab::new(USERS).await;
    let file = lab.file("01_users.json", MULTI);
    lab.start(&file).await;
    let other = lab.file(
        "02_more.json",
        r#"{"operations": [{"drop_column": {"table": "users", "column": "rating"}}]}"#,
    );
    let err = lab.migrator().await.start(&other, false).await.unwrap_err();
    assert!(matches!(err, MigrateError::Active { .. }), "{err}");
    assert!(err.to_string().contains("01_users"), "{err}");
    // While a command holds the lock, another fails at once.
    let holder = lab.migrator().await;
    let err = match Migrator::connect(lab.settings()).await {
        Err(e) => e,
        Ok(_) => panic!("a second command must not get the lock"),
    };
    assert!(matches!(err, MigrateError::Busy { .. }), "{err}");
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_catalog_problems_come_all_at_once() {
    let lab = Lab::new(USERS).await;
    let file = lab.file(
        "01_bad.json",
        r#"{"operations": [
          {"add_column": {"table": "nosuch", "column": {"name": "x", "type": "int"}}},
          {"rename_column": {"table": "users", "from": "nosuch", "to": "y"}},
          {"add_column": {"table": "users", "column": {"name": "z", "type": "int", "nullable": false}}},
          {"add_column": {"table": "users", "column": {"name": "name", "type": "int"}}}
        ]}"#,
    );
    let migration = pgshift::migrate::format::load(&file).unwrap();
    let err = lab
        .migrator()
        .await
        .plan("01_bad.json", &migration)
        .await
        .unwrap_err();
    let text = err.to_string();
    for expected in [
        "/operations/0/add_column: table \"nosuch\" does not exist",
        "/operations/1/rename_column: column \"nosuch\" does not exist",
        "/operations/2/add_column/column: column \"z\" is NOT NULL with neither `default` nor `up`",
        "/operations/3/add_column: column \"name\" already exists",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
