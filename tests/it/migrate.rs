//! The migration engine against real Postgres, in the two-client shape that
//! pgroll and reshape use: start; an old-version and a new-version client
//! read and write side by side and see each other's writes in their own
//! shape; rollback leaves a catalog identical to the pre-start snapshot;
//! start again and complete, with the final schema and data checked.

use std::path::PathBuf;
use std::time::Duration;

use pgshift::catalog;
use pgshift::cluster::{ClusterOptions, TempCluster};
use pgshift::migrate::engine::{MigrateError, Migrator, Pinned, Settings};
use pgshift::migrate::names;
use pgshift::state::session_setup;
use tokio_postgres::Client;

use crate::harness::{self, init_logs};

/// A throwaway cluster and a directory of migration files.
pub struct Lab {
    pub cluster: TempCluster,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub async fn new(setup: &str) -> Lab {
        Lab::with(ClusterOptions::default(), setup).await
    }

    pub async fn with(options: ClusterOptions, setup: &str) -> Lab {
        init_logs();
        let cluster = tokio::task::spawn_blocking(move || TempCluster::start(&options))
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
        lab.migrator().await.close().await.unwrap();
        lab
    }

    pub fn settings(&self) -> Settings {
        Settings {
            batch_size: 100,
            ..Settings::new(self.cluster.url("postgres"))
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

    pub async fn start(&self, path: &std::path::Path) {
        self.migrator()
            .await
            .start(path)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
    }

    pub async fn complete(&self) {
        self.migrator()
            .await
            .complete(Pinned::Refuse)
            .await
            .unwrap_or_else(|e| panic!("complete: {e}"));
    }

    pub async fn rollback(&self) {
        self.migrator()
            .await
            .rollback(Pinned::Refuse)
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
    let options: Vec<Option<String>> = lab
        .admin()
        .await
        .query(
            "SELECT array_to_string(c.reloptions, ',') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('public_01_users', 'public_baseline') AND c.relkind = 'v'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        options,
        vec![Some("security_invoker=true".to_string()); 2],
        "views check the caller's rights"
    );
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
    let cols = harness::texts(&admin, "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'users' ORDER BY ordinal_position").await;
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
    let schemas = harness::texts(
        &admin,
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'public_%' ORDER BY 1",
    )
    .await;
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
    let err = lab.migrator().await.start(&other).await.unwrap_err();
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

/// Start, rollback (catalog as before), start again, complete.
pub async fn round_trip(lab: &Lab, file: &std::path::Path) {
    let before = lab.snapshot().await;
    lab.start(file).await;
    lab.rollback().await;
    assert_same_catalog(&before, &lab.snapshot().await);
    lab.start(file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_table_and_indexes() {
    let lab = Lab::new(USERS).await;
    let file = lab.file(
        "01_orders.yaml",
        "operations:
  - create_table:
      name: orders
      comment: customer orders
      columns:
        - { name: id, type: bigint, pk: true, generated: { identity: { user_specified_values: BY DEFAULT } } }
        - { name: user_id, type: integer, nullable: false, references: { name: orders_user_fk, table: users, column: id, on_delete: CASCADE } }
        - { name: total, type: 'numeric(10,2)', default: '0', check: { name: total_positive, constraint: 'total >= 0' } }
        - { name: note, type: text, comment: free text }
      constraints:
        - { name: orders_user_note_key, type: unique, columns: [user_id, note] }
  - create_index: { name: orders_total_idx, table: orders, columns: [{ column: total, sort: DESC }] }
  - create_index: { name: users_rating_idx, table: users, columns: [rating], predicate: \"rating <> '0'\" }
",
    );
    round_trip(&lab, &file).await;
    let old = lab.client(None, "baseline").await;
    let new = lab.client(Some("01_orders"), "baseline").await;
    let err = old.query("SELECT * FROM orders", &[]).await.unwrap_err();
    assert_eq!(
        harness::sqlstate(&err),
        "42P01",
        "the old version does not see the new table"
    );
    new.execute(
        "INSERT INTO orders (user_id, total, note) VALUES (1, 9.5, 'first')",
        &[],
    )
    .await
    .unwrap();
    let err = new
        .execute("INSERT INTO orders (user_id, total) VALUES (1, -1)", &[])
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "23514");
    lab.complete().await;
    let admin = lab.admin().await;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM public.orders WHERE note = 'first'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let indexes = harness::texts(
        &admin,
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    )
    .await;
    for expected in [
        "orders_total_idx",
        "users_rating_idx",
        "orders_user_note_key",
    ] {
        assert!(
            indexes.iter().any(|i| i == expected),
            "{expected} missing: {indexes:?}"
        );
    }
    let comment: String = admin
        .query_one("SELECT obj_description('public.orders'::regclass)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, "customer orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_column_with_down() {
    let lab = Lab::new(USERS).await;
    let file = lab.file(
        "01_drop_name.json",
        r#"{"operations": [{"drop_column": {"table": "users", "column": "name", "down": "'user ' || id"}}]}"#,
    );
    round_trip(&lab, &file).await;
    let new = lab.client(Some("01_drop_name"), "baseline").await;
    let old = lab.client(None, "baseline").await;
    assert!(
        new.query("SELECT name FROM users", &[]).await.is_err(),
        "hidden from the new version"
    );
    let id: i32 = new
        .query_one("INSERT INTO users (rating) VALUES ('3') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let name: String = old
        .query_one("SELECT name FROM users WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        name,
        format!("user {id}"),
        "down filled the NOT NULL column for the old version"
    );
    lab.complete().await;
    let cols: i64 = lab
        .admin()
        .await
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'name'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(cols, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_default_unique_and_foreign_key_on_a_table_without_primary_key() {
    let setup = "CREATE TABLE accounts (id int PRIMARY KEY);
                 INSERT INTO accounts SELECT g FROM generate_series(1, 10) g;
                 CREATE TABLE events (account int, payload text);
                 INSERT INTO events SELECT g % 10 + 1, 'e' || g FROM generate_series(1, 3000) g;";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_events.json",
        r#"{"operations": [
          {"add_column": {"table": "events", "column": {"name": "uid", "type": "uuid", "nullable": false,
             "default": "gen_random_uuid()", "unique": true}}},
          {"add_column": {"table": "events", "up": "account",
             "column": {"name": "account_id", "type": "int", "references": {"name": "events_account_fk", "table": "accounts", "column": "id"}}}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    let new = lab.client(Some("01_events"), "baseline").await;
    let row = new
        .query_one(
            "SELECT count(DISTINCT uid), count(*) FILTER (WHERE account_id IS NULL) FROM events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (3000, 0),
        "every row got its own uuid and its account_id"
    );
    let err = new
        .execute(
            "INSERT INTO events (account, payload, account_id) VALUES (1, 'x', 99)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        harness::sqlstate(&err),
        "23503",
        "the foreign key holds for new rows"
    );
    lab.complete().await;
    let admin = lab.admin().await;
    let defs = harness::texts(&admin, "SELECT conname::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'events'::regclass ORDER BY 1").await;
    assert!(
        defs.iter()
            .any(|d| d.starts_with("events_account_fk FOREIGN KEY (account_id)")),
        "{defs:?}"
    );
    assert!(
        defs.iter()
            .any(|d| d.starts_with("events_uid_key UNIQUE (uid)")),
        "{defs:?}"
    );
    let not_null: bool = admin
        .query_one("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'uid'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(not_null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_primary_key_backfill() {
    let setup = "CREATE TABLE lines (order_id int, line int, qty text, PRIMARY KEY (order_id, line));
                 INSERT INTO lines SELECT g / 10, g % 10, (g % 7)::text FROM generate_series(0, 4999) g;";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_qty.json",
        r#"{"operations": [{"alter_column": {"table": "lines", "column": "qty", "type": "smallint",
            "up": "qty::smallint", "down": "qty::text", "nullable": false}}]}"#,
    );
    round_trip(&lab, &file).await;
    lab.complete().await;
    let admin = lab.admin().await;
    let row = admin
        .query_one("SELECT count(*), sum(qty)::int8, format_type(atttypid, atttypmod) FROM lines, pg_attribute WHERE attrelid = 'lines'::regclass AND attname = 'qty' GROUP BY 3", &[])
        .await
        .unwrap();
    let expected: i64 = (0..5000).map(|g: i64| g % 7).sum();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, String>(2)
        ),
        (5000, expected, "smallint".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_operation_at_start_and_on_complete() {
    let lab = Lab::new("").await;
    let file = lab.file(
        "01_sql.json",
        r#"{"operations": [{"sql": {"up": "CREATE TABLE audit (at timestamptz DEFAULT now())", "down": "DROP TABLE audit"}}]}"#,
    );
    round_trip(&lab, &file).await;
    lab.complete().await;
    let late = lab.file("02_late.json", r#"{"operations": [{"sql": {"up": "INSERT INTO audit DEFAULT VALUES", "onComplete": true}}]}"#);
    lab.start(&late).await;
    let admin = lab.admin().await;
    assert_eq!(
        admin
            .query_one("SELECT count(*) FROM audit", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    lab.complete().await;
    assert_eq!(
        admin
            .query_one("SELECT count(*) FROM audit", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_quoted() {
    let long_table = "t".repeat(63);
    let setup = format!(
        "CREATE TABLE \"Wéird \"\"Table\"\"; DROP\" (id int PRIMARY KEY, \"select\" text, \"Mixed Case\" int);
         INSERT INTO \"Wéird \"\"Table\"\"; DROP\" SELECT g, 's' || g, g FROM generate_series(1, 50) g;
         CREATE TABLE \"{long_table}\" (id int PRIMARY KEY, v int);"
    );
    let lab = Lab::new(&setup).await;
    let long_column = "c".repeat(63);
    let file = lab.file(
        "01_hostile.json",
        &format!(
            r#"{{"operations": [
              {{"rename_column": {{"table": "Wéird \"Table\"; DROP", "from": "select", "to": "from"}}}},
              {{"alter_column": {{"table": "Wéird \"Table\"; DROP", "column": "Mixed Case", "type": "text",
                 "up": "\"Mixed Case\"::text || ';$$'", "down": "split_part(\"Mixed Case\", ';', 1)::int"}}}},
              {{"add_column": {{"table": "{long_table}", "up": "v * 2", "column": {{"name": "{long_column}", "type": "int"}}}}}}
            ]}}"#
        ),
    );
    round_trip(&lab, &file).await;
    let new = lab.client(Some("01_hostile"), "baseline").await;
    let row = new
        .query_one(
            "SELECT \"from\", \"Mixed Case\" FROM \"Wéird \"\"Table\"\"; DROP\" WHERE id = 3",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("s3".into(), "3;$$".into())
    );
    lab.complete().await;
    let admin = lab.admin().await;
    let sql = format!("SELECT sum(\"{long_column}\")::int8 FROM \"{long_table}\"");
    admin.query_one(sql.as_str(), &[]).await.unwrap();
    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 2, "nothing was dropped by a name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_rolls_back_to_the_same_catalog() {
    let lab = Lab::new(USERS).await;
    let before = lab.snapshot().await;
    // rating has duplicates, so the unique index build fails midway through start.
    let file = lab.file(
        "01_unique.json",
        r#"{"operations": [
          {"add_column": {"table": "users", "up": "upper(name)", "column": {"name": "shout", "type": "text"}}},
          {"create_index": {"name": "users_rating_key", "table": "users", "columns": ["rating"], "unique": true}}
        ]}"#,
    );
    let err = lab.migrator().await.start(&file).await.unwrap_err();
    assert!(
        err.to_string().contains("could not create unique index"),
        "{err}"
    );
    let err = lab
        .migrator()
        .await
        .complete(Pinned::Refuse)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("run `pgshift start` again"),
        "{err}"
    );
    lab.rollback().await;
    assert_same_catalog(&before, &lab.snapshot().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_resumes_from_its_checkpoint() {
    let setup = "CREATE TABLE big (id int PRIMARY KEY, v int);
                 INSERT INTO big SELECT g, g FROM generate_series(1, 20000) g;";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_big.json",
        r#"{"operations": [{"add_column": {"table": "big", "up": "v + 1", "column": {"name": "w", "type": "int"}}}]}"#,
    );
    let mut settings = lab.settings();
    settings.batch_size = 50;
    settings.batch_delay = Duration::from_millis(20);
    settings.fixed_pace = true;
    let mut slow = Migrator::connect(settings).await.unwrap();
    let admin = lab.admin().await;
    // Stop the command mid-backfill, as a crash would (its connection closes).
    let progress = async {
        loop {
            let done: Option<i64> = admin
                .query_opt(
                    "SELECT rows_done FROM pgshift.backfill WHERE table_name = 'big'",
                    &[],
                )
                .await
                .unwrap()
                .map(|r| r.get(0));
            if done.is_some_and(|n| n >= 500) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        finished = slow.start(&file) => panic!("the backfill should still be running: {finished:?}"),
        () = progress => {}
    }
    drop(slow);
    let row = admin
        .query_one(
            "SELECT rows_done, batches, done FROM pgshift.backfill WHERE table_name = 'big'",
            &[],
        )
        .await
        .unwrap();
    let (rows_before, batches_before) = (row.get::<_, i64>(0), row.get::<_, i64>(1));
    assert!(
        rows_before > 0 && rows_before < 20000 && !row.get::<_, bool>(2),
        "{rows_before} rows done"
    );
    lab.start(&file).await;
    let row = admin
        .query_one(
            "SELECT rows_done, batches, done FROM pgshift.backfill WHERE table_name = 'big'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(2));
    assert_eq!(
        row.get::<_, i64>(0),
        20000,
        "resumed: every row converted exactly once"
    );
    assert!(row.get::<_, i64>(1) > batches_before);
    lab.complete().await;
    let wrong: i64 = admin
        .query_one(
            "SELECT count(*) FROM big WHERE w IS DISTINCT FROM v + 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_a_directory_of_chained_files() {
    let lab = Lab::new("").await;
    let files = [
        r#"{"operations": [{"create_table": {"name": "items", "columns": [{"name": "id", "type": "serial", "pk": true}, {"name": "title", "type": "text"}]}}]}"#,
        r#"{"operations": [{"sql": {"up": "INSERT INTO items (title) SELECT 'item ' || g FROM generate_series(1, 500) g"}}]}"#,
        r#"{"operations": [{"add_column": {"table": "items", "up": "length(title)", "column": {"name": "len", "type": "int"}}}]}"#,
        r#"{"operations": [{"rename_column": {"table": "items", "from": "title", "to": "name"}}]}"#,
        r#"{"operations": [{"alter_column": {"table": "items", "column": "len", "type": "bigint", "up": "len::bigint", "down": "len::int"}}]}"#,
        r#"{"operations": [{"create_index": {"name": "items_name_idx", "table": "items", "columns": ["name"]}}]}"#,
        r#"{"operations": [{"add_column": {"table": "items", "column": {"name": "price", "type": "numeric", "default": "0", "nullable": false}}}]}"#,
        r#"{"operations": [{"drop_index": {"name": "items_name_idx"}}]}"#,
        r#"{"operations": [{"add_column": {"table": "items", "up": "upper(name)", "column": {"name": "shout", "type": "text"}}}]}"#,
        r#"{"operations": [{"drop_column": {"table": "items", "column": "shout"}}]}"#,
        r#"{"operations": [{"create_table": {"name": "tags", "columns": [{"name": "item", "type": "int", "references": {"name": "tags_item_fk", "table": "items", "column": "id"}}, {"name": "tag", "type": "text"}]}}]}"#,
    ];
    for (i, json) in files.iter().enumerate() {
        lab.file(&format!("{:02}_step.json", i + 1), json);
    }
    // pgroll's meaning: the last one is left active...
    let applied = lab
        .migrator()
        .await
        .migrate(lab.dir.path(), false, false)
        .await
        .unwrap();
    assert_eq!(applied.len(), files.len());
    assert!(applied[..files.len() - 1].iter().all(|a| a.completed));
    assert!(!applied[files.len() - 1].completed);
    let status = lab.migrator().await.status().await.unwrap();
    assert_eq!(status.active.map(|a| a.version).as_deref(), Some("11_step"));
    // ...until `--complete`, which finishes it (it is already started)...
    let applied = lab
        .migrator()
        .await
        .migrate(lab.dir.path(), true, false)
        .await
        .unwrap();
    assert_eq!(
        applied,
        [pgshift::migrate::engine::Applied {
            version: "11_step".into(),
            completed: true
        }]
    );
    // ...and then nothing is pending: `--expect-one` says so, changing nothing.
    let mut m = lab.migrator().await;
    assert!(
        m.migrate(lab.dir.path(), true, false)
            .await
            .unwrap()
            .is_empty()
    );
    let e = m
        .migrate(lab.dir.path(), true, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("0 migration(s)") && e.contains("none"), "{e}");
    m.close().await.unwrap();
    let admin = lab.admin().await;
    let row = admin
        .query_one(
            "SELECT count(*), sum(len)::int8, sum(price)::int8 FROM items WHERE name LIKE 'item %'",
            &[],
        )
        .await
        .unwrap();
    let expected: i64 = (1..=500)
        .map(|g: i64| format!("item {g}").len() as i64)
        .sum();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (500, expected, 0)
    );
    let status = lab.migrator().await.status().await.unwrap();
    assert_eq!(status.current_version, "11_step");
    assert!(status.active.is_none());
    assert_eq!(
        status
            .history
            .iter()
            .filter(|h| h.phase.as_str() == "completed")
            .count(),
        11
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_table_and_drop_table() {
    let setup = "CREATE TABLE customers (id int PRIMARY KEY, name text);
                 INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 20) g;
                 CREATE TABLE legacy (id int);";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_tables.json",
        r#"{"operations": [
          {"rename_table": {"from": "customers", "to": "clients"}},
          {"rename_column": {"table": "clients", "from": "name", "to": "display_name"}},
          {"drop_table": {"name": "legacy"}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    let old = lab.client(None, "baseline").await;
    let new = lab.client(Some("01_tables"), "baseline").await;
    old.execute("INSERT INTO customers VALUES (100, 'from old')", &[])
        .await
        .unwrap();
    new.execute("INSERT INTO clients VALUES (101, 'from new')", &[])
        .await
        .unwrap();
    let names = harness::texts(
        &new,
        "SELECT display_name FROM clients WHERE id >= 100 ORDER BY id",
    )
    .await;
    assert_eq!(names, ["from old", "from new"]);
    for gone in ["SELECT * FROM customers", "SELECT * FROM legacy"] {
        let err = new.query(gone, &[]).await.unwrap_err();
        assert_eq!(harness::sqlstate(&err), "42P01", "{gone}: {err:?}");
    }
    assert!(
        old.query("SELECT * FROM legacy", &[]).await.is_ok(),
        "the old version still has it"
    );
    lab.complete().await;
    let admin = lab.admin().await;
    let tables = harness::texts(
        &admin,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(tables, ["clients"]);
    let n: i64 = admin
        .query_one("SELECT count(display_name) FROM clients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_constraint_and_set_replica_identity() {
    let setup = "CREATE TABLE t (id int PRIMARY KEY, v int CONSTRAINT v_positive CHECK (v > 0));
                 CREATE UNIQUE INDEX t_v_key ON t (v);
                 ALTER TABLE t ALTER COLUMN v SET NOT NULL;";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_meta.json",
        r#"{"operations": [
          {"rename_constraint": {"table": "t", "from": "v_positive", "to": "v_above_zero"}},
          {"set_replica_identity": {"table": "t", "identity": {"type": "index", "index": "t_v_key"}}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    lab.complete().await;
    let admin = lab.admin().await;
    let row = admin
        .query_one(
            "SELECT (SELECT conname::text FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'c'), relreplident::text
             FROM pg_class WHERE oid = 't'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("v_above_zero".into(), "i".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_constraint_check_unique_and_foreign_key() {
    let setup = "CREATE TABLE owners (id int PRIMARY KEY);
                 INSERT INTO owners SELECT g FROM generate_series(1, 5) g;
                 CREATE TABLE products (id int PRIMARY KEY, price int, sku text, owner int);
                 INSERT INTO products SELECT g, g - 50, 'sku' || (g % 10), g % 7 FROM generate_series(1, 200) g;";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_constraints.json",
        r#"{"operations": [
          {"create_constraint": {"table": "products", "name": "price_positive", "type": "check", "columns": ["price"],
             "check": "price >= 0", "up": {"price": "greatest(price, 0)"}, "down": {"price": "price"}}},
          {"create_constraint": {"table": "products", "name": "products_sku_key", "type": "unique", "columns": ["sku"],
             "up": {"sku": "sku || '-' || id"}, "down": {"sku": "split_part(sku, '-', 1)"}}},
          {"create_constraint": {"table": "products", "name": "products_owner_fk", "type": "foreign_key", "columns": ["owner"],
             "references": {"table": "owners", "columns": ["id"]},
             "up": {"owner": "CASE WHEN owner BETWEEN 1 AND 5 THEN owner END"}, "down": {"owner": "owner"}}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    let old = lab.client(None, "baseline").await;
    let new = lab.client(Some("01_constraints"), "baseline").await;
    // Old-version writes keep their freedom; up makes them valid for the new version.
    old.execute("INSERT INTO products VALUES (1000, -5, 'sku1', 9)", &[])
        .await
        .unwrap();
    let row = new
        .query_one(
            "SELECT price, sku, owner FROM products WHERE id = 1000",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, String>(1),
            row.get::<_, Option<i32>>(2)
        ),
        (0, "sku1-1000".into(), None)
    );
    // New-version writes are held to the constraints already.
    let err = new
        .execute("INSERT INTO products VALUES (1001, -1, 'x', 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "23514");
    let err = new
        .execute("INSERT INTO products VALUES (1002, 1, 'sku1-1000', 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "23505");
    let err = new
        .execute("INSERT INTO products VALUES (1003, 1, 'y', 77)", &[])
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "23503");
    lab.complete().await;
    let defs = harness::texts(&lab.admin().await, "SELECT conname::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'products'::regclass ORDER BY 1").await;
    assert_eq!(
        defs,
        [
            "price_positive CHECK ((price >= 0))",
            "products_owner_fk FOREIGN KEY (owner) REFERENCES owners(id)",
            "products_pkey PRIMARY KEY (id)",
            "products_sku_key UNIQUE (sku)",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_constraint_and_drop_multicolumn_constraint() {
    let setup = "CREATE TABLE slots (id int PRIMARY KEY, day int CONSTRAINT day_range CHECK (day BETWEEN 1 AND 7),
                                     room text, hour int, CONSTRAINT slots_room_hour UNIQUE (room, hour));
                 INSERT INTO slots SELECT g, g % 7 + 1, 'r' || (g % 3), g FROM generate_series(1, 100) g;";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_relax.json",
        r#"{"operations": [
          {"drop_constraint": {"table": "slots", "name": "day_range", "up": "day", "down": "least(greatest(day, 1), 7)"}},
          {"drop_multicolumn_constraint": {"table": "slots", "name": "slots_room_hour",
             "up": {"room": "room", "hour": "hour"}, "down": {"room": "room || '-' || id", "hour": "hour"}}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    let new = lab.client(Some("01_relax"), "baseline").await;
    let old = lab.client(None, "baseline").await;
    new.execute("INSERT INTO slots VALUES (500, 9, 'r1', 1)", &[])
        .await
        .unwrap();
    new.execute("INSERT INTO slots VALUES (501, 9, 'r1', 1)", &[])
        .await
        .unwrap();
    let row = old
        .query_one("SELECT day, room FROM slots WHERE id = 500", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (7, "r1-500".into()),
        "down keeps old rows valid"
    );
    lab.complete().await;
    let n: i64 = lab
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'slots'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "only the primary key is left");
}

/// A DDL step that cannot get its lock in time gives up after lock_timeout,
/// logs the retry and tries again, so that clients queued behind it wait at
/// most about lock_timeout at a time and never fail; without lock_timeout
/// they would wait behind it for as long as the long reader holds its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_waits_out_a_held_lock_with_retries() {
    let lab = Lab::new(USERS).await;
    let file = lab.file(
        "01_add.json",
        r#"{"operations": [{"add_column": {"table": "users", "column": {"name": "note", "type": "text"}}}]}"#,
    );
    // A long reader holds ACCESS SHARE; ADD COLUMN needs ACCESS EXCLUSIVE.
    // The reader lets go 1 s after the ADD COLUMN is first seen waiting
    // for its lock: ten lock_timeouts, so start must retry.
    let reader = lab.admin().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();
    let hold = Duration::from_secs(1);
    let watcher = lab.admin().await;
    let release = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE wait_event_type = 'Lock' AND query LIKE '%ADD COLUMN%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = std::time::Instant::now();
        tokio::time::sleep(hold).await;
        reader.batch_execute("COMMIT").await.unwrap();
        seen
    });
    // A client writing and reading throughout, timing each statement.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = lab.admin().await;
    let writer = tokio::spawn({
        let done = done.clone();
        async move {
            let (mut slowest, mut errors, mut inserts) = (Duration::ZERO, Vec::new(), 0i64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for (insert, sql) in [
                    (
                        true,
                        "INSERT INTO users (name, rating) VALUES ('during ddl', '1')",
                    ),
                    (false, "SELECT count(*) FROM users"),
                ] {
                    let t = std::time::Instant::now();
                    match client.batch_execute(sql).await {
                        Ok(()) => inserts += i64::from(insert),
                        Err(e) => errors.push(e.to_string()),
                    }
                    slowest = slowest.max(t.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (slowest, errors, inserts)
        }
    });
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgshift"))
        .arg("start")
        .arg(&file)
        .args(["--database-url", &lab.cluster.url("postgres")])
        .args(["--lock-timeout", "100ms"])
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (slowest, errors, inserts) = writer.await.unwrap();
    let ddl_seen = release.await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "start failed:\n{log}");
    assert!(
        ddl_seen.elapsed() >= hold,
        "start waited for the reader rather than failing"
    );
    assert!(
        log.contains("lock_timeout hit; retrying") && log.contains("lock_timeout=100ms"),
        "the retry shows in the log:\n{log}"
    );
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    assert!(inserts > 10, "the client kept working: {inserts} inserts");
    // Each wait is one lock_timeout (100 ms) plus scheduling; behind a DDL
    // without lock_timeout it would have lasted until the reader let go.
    assert!(
        slowest < Duration::from_millis(750),
        "a client waited {slowest:?} behind the DDL"
    );
    let rows: i64 = lab
        .admin()
        .await
        .query_one("SELECT count(*) FROM users WHERE name = 'during ddl'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, inserts, "every acknowledged insert is there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_refuses_unconverted_rows() {
    let lab = Lab::new(USERS).await;
    let file = lab.file(
        "01_users.json",
        r#"{"operations": [{"add_column": {"table": "users", "up": "upper(name)", "column": {"name": "shout", "type": "text"}}}]}"#,
    );
    lab.start(&file).await;
    // A write that skipped the trigger leaves a row without its new columns.
    let admin = lab.admin().await;
    admin
        .batch_execute(
            "SET session_replication_role = replica; INSERT INTO users (name, rating) VALUES ('sneaky', '3'); SET session_replication_role = origin",
        )
        .await
        .unwrap();
    let refused = || async {
        let err = lab
            .migrator()
            .await
            .complete(Pinned::Refuse)
            .await
            .unwrap_err();
        assert!(
            matches!(err, MigrateError::NotConverted { count: 1, .. }),
            "{err}"
        );
        err
    };
    let err = refused().await;
    assert!(err.to_string().contains("--skip-verify"), "{err}");
    // Touching the row runs the trigger; that row is converted then.
    admin
        .batch_execute("UPDATE users SET name = name WHERE name = 'sneaky'")
        .await
        .unwrap();
    // A NULL the new version writes on purpose looks the same to the
    // check; --skip-verify is the way past it, and keeps the NULL.
    let new = lab.client(Some("01_users"), "baseline").await;
    new.batch_execute("INSERT INTO users (name, rating, shout) VALUES ('quiet', '1', NULL)")
        .await
        .unwrap();
    refused().await;
    drop(new);
    lab.migrator()
        .await
        .complete_checked(Pinned::Refuse, pgshift::migrate::engine::Check::Skip)
        .await
        .unwrap();
    let shouts = harness::texts(
        &admin,
        "SELECT name || ' ' || coalesce(shout, '-') FROM users WHERE name IN ('sneaky', 'quiet') ORDER BY name",
    )
    .await;
    assert_eq!(shouts, ["quiet -", "sneaky SNEAKY"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_finishes_while_clients_keep_inserting() {
    let setup = "CREATE TABLE feed (id bigserial PRIMARY KEY, body text);
                 INSERT INTO feed (body) SELECT 'b' || g FROM generate_series(1, 20000) g;";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_len.json",
        r#"{"operations": [{"add_column": {"table": "feed", "up": "length(body)", "column": {"name": "len", "type": "int", "nullable": false}}}]}"#,
    );
    let writer = lab.client(None, "baseline").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let inserts = tokio::spawn(async move {
        let mut n = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            writer
                .execute("INSERT INTO feed (body) VALUES ('live')", &[])
                .await
                .unwrap();
            n += 1;
        }
        n
    });
    let mut settings = lab.settings();
    settings.batch_size = 200;
    let mut m = Migrator::connect(settings).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), m.start(&file))
        .await
        .expect("the backfill finishes despite the inserts")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let inserted = inserts.await.unwrap();
    assert!(inserted > 0);
    // The backfill converted the rows written before the trigger (its
    // bound is taken under the trigger's lock) and no more: the trigger
    // converted the rest (pgroll #652).
    let row = lab
        .admin()
        .await
        .query_one(
            "SELECT b.rows_done,
                    (SELECT count(*) FROM feed WHERE id <= b.upper_key[1]::int8),
                    (SELECT count(*) FROM feed WHERE id > b.upper_key[1]::int8)
             FROM pgshift.backfill b WHERE table_name = 'feed'",
            &[],
        )
        .await
        .unwrap();
    let (done, before, after): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(done, before, "{inserted} rows were inserted meanwhile");
    assert!(before >= 20000 && after > 0, "{before} {after}");
    m.complete(Pinned::Refuse).await.unwrap();
    let wrong: i64 = lab
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM feed WHERE len IS DISTINCT FROM length(body)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_not_null_key_backfill_and_drop_index() {
    let setup = "CREATE TABLE codes (code text NOT NULL UNIQUE, n int);
                 INSERT INTO codes SELECT 'c' || g, g FROM generate_series(1, 3000) g;
                 CREATE INDEX codes_n_idx ON codes (n);";
    let lab = Lab::new(setup).await;
    let file = lab.file(
        "01_codes.json",
        r#"{"operations": [
          {"add_column": {"table": "codes", "up": "upper(code)", "column": {"name": "shout", "type": "text"}}},
          {"drop_index": {"name": "codes_n_idx"}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    let plan_keys = {
        let m = lab.migrator().await;
        let status = m.status().await.unwrap();
        status.active.unwrap().backfill
    };
    assert_eq!(plan_keys[0].rows_done, 3000);
    lab.complete().await;
    let admin = lab.admin().await;
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE shout = upper(code)), to_regclass('codes_n_idx') IS NULL FROM codes",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1)), (3000, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrator_connects_over_tls_with_verify_full() {
    let pki = harness::TestPki::new();
    let options = ClusterOptions {
        ssl: Some((pki.cert_pem.clone(), pki.key_pem.clone())),
        hba: Some("local all all trust\nhostssl all tls_admin 127.0.0.1/32 trust\nhost all postgres 127.0.0.1/32 trust\n".into()),
        ..Default::default()
    };
    let lab = Lab::with(
        options,
        "CREATE ROLE tls_admin SUPERUSER LOGIN; CREATE TABLE t (id int PRIMARY KEY, a int);",
    )
    .await;
    let file = lab.file(
        "01_tls.json",
        r#"{"operations": [{"add_column": {"table": "t", "column": {"name": "b", "type": "int"}}}]}"#,
    );
    let mut settings = lab.settings();
    // tls_admin may only connect over TLS; verify-full checks the certificate and the name.
    settings.database_url = format!(
        "postgres://tls_admin@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        lab.cluster.port,
        pki.path("ca.pem").display()
    );
    let mut m = Migrator::connect(settings.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    m.start(&file).await.unwrap();
    m.complete(Pinned::Refuse).await.unwrap();
    m.close().await.unwrap();
    // Plain connections for that user are refused, so the migrator really used TLS.
    settings.database_url = format!(
        "postgres://tls_admin@127.0.0.1:{}/postgres?sslmode=disable",
        lab.cluster.port
    );
    let err = Migrator::connect(settings)
        .await
        .err()
        .expect("plain is refused");
    assert!(err.to_string().contains("pg_hba.conf"), "{err}");
}

/// The names pgroll's tables keep after complete: a created table's
/// primary key, unique constraints and serial sequences are named as
/// Postgres names them for the final table (compared with a twin table
/// created directly), `pk` on several columns is one composite key,
/// `alter_column`'s `unique.name` is the constraint's name, and
/// `version_schema` names the version's part of the schema name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_tables_keep_postgres_names_and_pgroll_fields_mean_what_pgroll_says() {
    let lab = Lab::new("").await;
    let long = "l".repeat(60);
    let file = lab.file(
        "01_fruits.json",
        &format!(
            r#"{{"operations": [
              {{"create_table": {{"name": "fruits", "columns": [
                  {{"name": "id", "type": "serial", "pk": true}},
                  {{"name": "name", "type": "text", "unique": true}},
                  {{"name": "color", "type": "text", "nullable": true}}]}}}},
              {{"create_table": {{"name": "pairs", "columns": [
                  {{"name": "a", "type": "integer", "pk": true}},
                  {{"name": "b", "type": "integer", "pk": true}}]}}}},
              {{"create_table": {{"name": "{long}", "columns": [
                  {{"name": "id", "type": "bigserial", "pk": true}},
                  {{"name": "code", "type": "text", "unique": true}}]}}}}
            ]}}"#
        ),
    );
    lab.start(&file).await;
    lab.complete().await;
    let admin = lab.admin().await;
    let names = |table: String| {
        let admin = &admin;
        async move {
            let constraints: Vec<String> = admin
                .query(
                    "SELECT conname::text || ':' || array_length(conkey, 1) FROM pg_constraint \
                     WHERE conrelid = $1::text::regclass ORDER BY 1",
                    &[&table],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let sequences: Vec<String> = admin
                .query(
                    "SELECT s.relname::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid \
                     WHERE d.refobjid = $1::text::regclass AND s.relkind = 'S' ORDER BY 1",
                    &[&table],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (constraints, sequences)
        }
    };
    assert_eq!(
        names("public.fruits".into()).await,
        (
            vec!["fruits_name_key:1".to_string(), "fruits_pkey:1".to_string()],
            vec!["fruits_id_seq".to_string()]
        )
    );
    assert_eq!(
        names("public.pairs".into()).await,
        (vec!["pairs_pkey:2".to_string()], vec![])
    );
    // A twin made by Postgres itself names a 60-byte table's objects the same.
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA twin; CREATE TABLE twin.{long} (id bigserial PRIMARY KEY, code text UNIQUE)"
        ))
        .await
        .unwrap();
    assert_eq!(
        names(format!("public.{long}")).await,
        names(format!("twin.{long}")).await
    );

    let file = lab.file(
        "02_colors.json",
        r#"{"version_schema": "colors", "operations": [
          {"alter_column": {"table": "fruits", "column": "color", "unique": {"name": "fruits_color_unique"},
                            "up": "color", "down": "color"}}
        ]}"#,
    );
    lab.start(&file).await;
    let schema: Option<String> = admin
        .query_one("SELECT to_regnamespace('public_colors')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema.as_deref(), Some("public_colors"));
    lab.complete().await;
    assert_eq!(
        names("public.fruits".into()).await.0,
        vec![
            "fruits_color_unique:1".to_string(),
            "fruits_name_key:1".to_string(),
            "fruits_pkey:1".to_string()
        ]
    );
}

/// A new unique column with a default: as pgroll does, the default is set
/// after the column is added, so existing rows get `up` from the backfill
/// instead of all sharing the default (which failed the unique index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_unique_column_with_a_default_is_filled_by_up_not_the_default() {
    let lab = Lab::new(
        "CREATE TABLE items (id int PRIMARY KEY, title text); \
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 3) g;",
    )
    .await;
    let file = lab.file(
        "01_sku.json",
        r#"{"operations": [{"add_column": {"table": "items", "up": "id * 10",
            "column": {"name": "sku", "type": "integer", "unique": true, "default": "0", "nullable": true}}}]}"#,
    );
    lab.start(&file).await;
    lab.complete().await;
    let admin = lab.admin().await;
    admin
        .execute("INSERT INTO items (id, title) VALUES (4, 'new')", &[])
        .await
        .unwrap();
    let skus: Vec<i32> = admin
        .query("SELECT sku FROM public.items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(skus, vec![10, 20, 30, 0]);
    let unique: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.items'::regclass AND contype = 'u'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unique, 1);
}
