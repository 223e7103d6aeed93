//! Injection through a migration file's names: a version, an index and a
//! constraint named with quotes, semicolons, `$$`, spaces and unicode. They
//! work, quoted, all the way through the proxy (startup options, search_path,
//! the session move, the triggers' setting), and no statement runs that the
//! file does not state.

use pgshift::migrate::engine::{Migrator, Settings};
use tokio_postgres::NoTls;

use crate::harness::{self, Env};

const VERSION: &str = "v2'\";DROP TABLE victims;--$$ é\\";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_version_index_and_constraint_names_are_quoted_everywhere() {
    let env = Env::start().await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE victims (id int PRIMARY KEY); INSERT INTO victims VALUES (1), (2), (3);
             CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    // A session from before the migration is moved with the hostile name.
    let early = env.connect().await;
    let add = serde_json::json!({"add_column": {"table": "users", "up": "upper(name)",
        "column": {"name": "shout'; DROP TABLE victims; --", "type": "text"}}});
    let index = serde_json::json!({"create_index": {"name": "i\"; DROP TABLE victims; --",
        "table": "users", "columns": ["name"]}});
    let check = serde_json::json!({"create_constraint": {"name": "c'$$;DROP TABLE victims",
        "table": "users", "type": "check", "columns": ["name"], "check": "length(name) > 0",
        "up": {"name": "name"}, "down": {"name": "name"}}});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("02_hostile.json");
    let mut m = Migrator::connect(Settings::new(env.direct_url()))
        .await
        .unwrap();
    // An index made before the constraint duplicates its column would be
    // lost at complete: refused, with what to do.
    let wrong_order = serde_json::json!({"name": VERSION, "operations": [add, index, check]});
    std::fs::write(&file, wrong_order.to_string()).unwrap();
    let err = m.start(&file).await.unwrap_err().to_string();
    assert!(
        err.contains("put that create_index after this operation"),
        "{err}"
    );
    let migration = serde_json::json!({"name": VERSION, "operations": [add, check, index]});
    std::fs::write(&file, migration.to_string()).unwrap();
    m.start(&file).await.unwrap();

    // A client asks for the version through libpq-style options, escaped
    // as the server splits them (backslash before spaces and backslashes).
    let escaped: String = VERSION
        .chars()
        .flat_map(|c| match c {
            ' ' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let mut config: tokio_postgres::Config = env.proxy_url("postgres", "postgres").parse().unwrap();
    config.options(format!("-c pgshift.version={escaped}"));
    let mut client = None;
    for _ in 0..40 {
        if let Ok((c, conn)) = config.connect(NoTls).await {
            tokio::spawn(conn);
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let new = client.expect("the proxy serves the hostile version");
    let row = new
        .query_one(
            "SELECT current_setting('pgshift.version'), \"shout'; DROP TABLE victims; --\" FROM users WHERE id = 4",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        (VERSION.to_string(), "USER 4".to_string())
    );
    new.execute(
        "INSERT INTO users (name, \"shout'; DROP TABLE victims; --\") VALUES ('x', 'X')",
        &[],
    )
    .await
    .unwrap();
    let path: String = early
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert!(path.starts_with("\"public_baseline\""), "{path}");
    drop((early, new));
    crate::bluegreen::finish_when_drained(&mut m, true).await;
    m.close().await.unwrap();

    let direct = env.direct().await;
    let victims: i64 = direct
        .query_one("SELECT count(*) FROM victims", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(victims, 3, "nothing ran that the file did not state");
    let named: i64 = direct
        .query_one(
            "SELECT (SELECT count(*) FROM pg_indexes WHERE indexname = 'i\"; DROP TABLE victims; --')
                  + (SELECT count(*) FROM pg_constraint WHERE conname = 'c''$$;DROP TABLE victims')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let names = harness::texts(
        &direct,
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'users'
             UNION ALL SELECT conname::text FROM pg_constraint WHERE conrelid = 'users'::regclass",
    )
    .await;
    assert_eq!(
        named, 2,
        "the index and the constraint carry their names verbatim: {names:?}"
    );
}
