//! Version routing through the proxy: the default route during a migration
//! is the old version; a client asking for a version (libpq options) gets it;
//! unknown versions are refused with the list of those that exist; the proxy
//! learns of start and complete through LISTEN/NOTIFY; and outside a
//! migration statements reach Postgres byte-identical.

use std::time::Duration;

use pgshift::migrate::engine::{Migrator, Pinned, Settings};

use crate::harness::{self, Env, Raw, query};

const USERS: &str = "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, rating text);
INSERT INTO users (name, rating) SELECT 'user ' || g, (g % 5 + 1)::text FROM generate_series(1, 100) g;";

const MIGRATION: &str = r#"{"operations": [
  {"rename_column": {"table": "users", "from": "name", "to": "full_name"}},
  {"add_column": {"table": "users", "up": "name || '@example.com'", "column": {"name": "email", "type": "text"}}}
]}"#;

fn settings(env: &Env) -> Settings {
    Settings::new(env.direct_url())
}

pub(crate) fn versioned_url(env: &Env, version: &str) -> String {
    format!(
        "{}&options=-c%20pgshift.version%3D{version}",
        env.proxy_url("postgres", "postgres")
    )
}

/// Creates `users`, starts MIGRATION (version 01_users) on it, and waits
/// until the proxy serves the new version: it hears through NOTIFY, so within
/// a second. Returns the migrator (still holding the lock) and the file's directory.
pub(crate) async fn start_users_migration(env: &Env) -> (Migrator, tempfile::TempDir) {
    env.direct().await.batch_execute(USERS).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("01_users.json");
    std::fs::write(&file, MIGRATION).unwrap();
    let mut m = Migrator::connect(settings(env)).await.unwrap();
    m.start(&file).await.unwrap();
    let url = versioned_url(env, "01_users");
    let heard = harness::eventually(Duration::from_secs(1), || async {
        harness::try_connect(&url).await.is_ok()
    })
    .await;
    assert!(heard, "the proxy did not learn of the migration within 1 s");
    (m, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_get_their_version_through_the_proxy() {
    let env = Env::start().await;
    // The proxy hears of the migration through NOTIFY, well within a second.
    let (m, _dir) = start_users_migration(&env).await;
    m.close().await.unwrap();
    let url = versioned_url(&env, "01_users");

    let old = env.connect().await;
    let new = harness::connect(&url).await;
    old.execute(
        "INSERT INTO users (name, rating) VALUES ('via old', '2')",
        &[],
    )
    .await
    .unwrap();
    new.execute(
        "INSERT INTO users (full_name, rating, email) VALUES ('via new', '3', 'n@x')",
        &[],
    )
    .await
    .unwrap();
    let row = new
        .query_one("SELECT email, current_setting('pgshift.version') FROM users WHERE full_name = 'via old'", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("via old@example.com".into(), "01_users".into())
    );
    let name: String = old
        .query_one("SELECT name FROM users WHERE name = 'via new'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "via new");
    // The old version's SELECT * does not see the new column.
    let cols = old
        .query_one("SELECT * FROM users LIMIT 1", &[])
        .await
        .unwrap()
        .columns()
        .len();
    assert_eq!(cols, 3);

    let err = harness::try_connect(&versioned_url(&env, "99_nope"))
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "22023", "{err}");
    let text = harness::error_text(&err);
    assert!(
        text.contains("\"99_nope\" does not exist") && text.contains("01_users, baseline"),
        "{text}"
    );

    // The old version's session leaves; complete waits for its proxy to say so.
    drop(old);
    let mut m = Migrator::connect(settings(&env)).await.unwrap();
    crate::bluegreen::finish_when_drained(&mut m, true).await;
    m.close().await.unwrap();
    let old_url = versioned_url(&env, "baseline");
    let gone = harness::eventually(Duration::from_secs(1), || async {
        harness::try_connect(&old_url).await.is_err()
    })
    .await;
    assert!(gone, "after complete the old version is refused");
    let plain = env.connect().await;
    let n: i64 = plain
        .query_one("SELECT count(email) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 102);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_migration_statements_reach_postgres_byte_identical() {
    let env = Env::start().await;
    let watcher = env.direct().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[("application_name", "exact")]).await;
    let sql = "SELECT /* keep\tme */  pg_sleep(0.6) ,  'public.users'::text -- trailing";
    raw.send(&query(sql)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen: String = watcher
        .query_one(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'exact'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, sql);
    assert_eq!(raw.until_ready().await.last().unwrap().tag, b'Z');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_match_the_listener_port() {
    // A port nobody holds now, for the second listener and its route.
    let green_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::with(pgshift::cluster::ClusterOptions::default(), |c| {
        c.listen
            .push(format!("127.0.0.1:{green_port}").parse().unwrap());
        c.routes = vec![pgshift::routing::RouteRule {
            name: "green".into(),
            port: Some(green_port),
            ..Default::default()
        }];
    })
    .await;
    let (m, _dir) = start_users_migration(&env).await;
    m.pin("green", "01_users").await.unwrap();
    m.close().await.unwrap();
    let version_at = |port: u16| async move {
        let client = harness::connect(&format!(
            "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        ))
        .await;
        client
            .query_one("SELECT current_setting('pgshift.version')", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let pinned = harness::eventually(Duration::from_secs(1), || async {
        version_at(green_port).await == "01_users"
    })
    .await;
    assert!(pinned, "the green listener's sessions follow the green pin");
    assert_eq!(version_at(env.proxy.port()).await, "baseline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_reaches_every_proxy_and_only_new_sessions() {
    let rules = vec![
        pgshift::routing::RouteRule {
            name: "green".into(),
            application_name: Some("shop-green".into()),
            ..Default::default()
        },
        pgshift::routing::RouteRule {
            name: "blue".into(),
            application_name: Some("shop-blue".into()),
            ..Default::default()
        },
    ];
    let env = Env::with(pgshift::cluster::ClusterOptions::default(), |c| {
        c.routes = rules.clone()
    })
    .await;
    env.direct().await.batch_execute(USERS).await.unwrap();
    // A second proxy on the same database.
    let mut second = env.config.clone();
    second.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let (second_addr, _stop, _task) = harness::spawn_proxy(&mut second).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("01_users.json");
    std::fs::write(&file, MIGRATION).unwrap();
    let mut m = Migrator::connect(settings(&env)).await.unwrap();
    m.start(&file).await.unwrap();

    let green_url = |addr: std::net::SocketAddr| {
        format!("postgres://postgres@{addr}/postgres?sslmode=disable&application_name=shop-green")
    };
    let version_of = |client: tokio_postgres::Client| async move {
        client
            .query_one("SELECT current_setting('pgshift.version', true)", &[])
            .await
            .unwrap()
            .get::<_, Option<String>>(0)
    };
    // Before the pin, green follows the default route: the old version.
    let heard = harness::eventually(Duration::from_secs(1), || async {
        version_of(harness::connect(&green_url(env.proxy)).await)
            .await
            .as_deref()
            == Some("baseline")
    })
    .await;
    assert!(heard);
    let early = harness::connect(&green_url(env.proxy)).await;

    m.pin("green", "01_users").await.unwrap();
    for addr in [env.proxy, second_addr] {
        let pinned = harness::eventually(Duration::from_secs(1), || async {
            version_of(harness::connect(&green_url(addr)).await)
                .await
                .as_deref()
                == Some("01_users")
        })
        .await;
        assert!(pinned, "the proxy at {addr} did not see the pin within 1 s");
    }
    // The new version's shape for green, the old one for blue.
    let green = harness::connect(&green_url(second_addr)).await;
    green
        .query_one("SELECT email FROM users LIMIT 1", &[])
        .await
        .unwrap();
    let blue = harness::connect(&format!(
        "postgres://postgres@{}/postgres?sslmode=disable&application_name=shop-blue",
        env.proxy
    ))
    .await;
    blue.query_one("SELECT name FROM users LIMIT 1", &[])
        .await
        .unwrap();
    // The session opened before the pin keeps its version.
    assert_eq!(version_of(early).await.as_deref(), Some("baseline"));
    // Pinning to a version that does not exist is refused.
    let err = m.pin("blue", "07_future").await.unwrap_err();
    assert!(
        err.to_string().contains("one of: 01_users, baseline"),
        "{err}"
    );
    assert_eq!(
        m.routes().await.unwrap(),
        [("green".to_string(), "01_users".to_string())]
    );

    // After complete, green's pin is stale only if it points at a gone version:
    // pin blue to the old version, complete, and blue is refused with a clear error.
    m.pin("blue", "baseline").await.unwrap();
    drop(blue);
    crate::bluegreen::finish_when_drained(&mut m, true).await;
    m.close().await.unwrap();
    let blue_url = format!(
        "postgres://postgres@{}/postgres?sslmode=disable&application_name=shop-blue",
        env.proxy
    );
    let refused = harness::eventually(Duration::from_secs(1), || async {
        match harness::try_connect(&blue_url).await {
            Err(e) => {
                harness::error_text(&e).contains("route \"blue\" is pinned to version \"baseline\"")
            }
            Ok(_) => false,
        }
    })
    .await;
    assert!(refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_and_rollback_refuse_pinned_sessions_unless_forced() {
    let env = Env::start().await;
    let (mut m, dir) = start_users_migration(&env).await;
    let url = versioned_url(&env, "01_users");

    let old_url = format!(
        "{}&application_name=old-app",
        env.proxy_url("postgres", "postgres")
    );
    let old = harness::connect(&old_url).await;
    let _new = harness::connect(&url).await;
    // The heartbeat publishes both within a second or two.
    let published = harness::eventually(Duration::from_secs(3), || async {
        m.status().await.unwrap().sessions.len() == 2
    })
    .await;
    assert!(published, "{:?}", m.status().await.unwrap().sessions);

    let err = m.complete(Pinned::Refuse).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("1 session(s) are pinned to version \"baseline\""),
        "{text}"
    );
    assert!(
        text.contains("application_name \"old-app\"") && text.contains("pid"),
        "{text}"
    );
    let err = m.rollback(Pinned::Refuse).await.unwrap_err();
    assert!(
        err.to_string().contains("pinned to version \"01_users\""),
        "{err}"
    );

    // The old session leaves; complete goes through once the heartbeat says so.
    drop(old);
    let gone = harness::eventually(Duration::from_secs(5), || async {
        m.status()
            .await
            .unwrap()
            .sessions
            .iter()
            .all(|s| s.version != "baseline")
    })
    .await;
    assert!(gone, "the old session expires from the registry");
    m.complete(Pinned::Refuse).await.unwrap();

    // Next migration: a session on its new version, then a forced rollback ends it.
    let second = dir.path().join("02_more.json");
    std::fs::write(
        &second,
        r#"{"operations": [{"add_column": {"table": "users", "column": {"name": "nick", "type": "text"}}}]}"#,
    )
    .unwrap();
    m.start(&second).await.unwrap();
    let url = versioned_url(&env, "02_more");
    assert!(
        harness::eventually(Duration::from_secs(1), || async {
            harness::try_connect(&url).await.is_ok()
        })
        .await
    );
    let (mut raw, _) = Raw::startup(env.proxy, &[("options", "-c pgshift.version=02_more")]).await;
    assert!(
        harness::eventually(Duration::from_secs(3), || async {
            m.status()
                .await
                .unwrap()
                .sessions
                .iter()
                .any(|s| s.version == "02_more")
        })
        .await
    );
    m.rollback(Pinned::End).await.unwrap();
    let mut fatal = None;
    while let Some(msg) = raw.recv().await {
        if msg.tag == b'E' {
            fatal = Some((
                msg.field(b'C').unwrap_or_default(),
                msg.field(b'M').unwrap_or_default(),
            ));
        }
    }
    let (code, message) = fatal.expect("the forced session is told why");
    assert_eq!(code, "57P01");
    assert!(
        message.contains("rollback --force of migration 02_more"),
        "{message}"
    );
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_stay_inside_the_version_through_the_proxy() {
    let env = Env::start().await;
    let (m, _dir) = start_users_migration(&env).await;
    m.close().await.unwrap();
    let url = versioned_url(&env, "01_users");
    let new = harness::connect(&url).await;

    // An ORM resetting the search_path stays in its version.
    new.batch_execute("SET search_path = public").await.unwrap();
    new.query_one("SELECT email FROM users LIMIT 1", &[])
        .await
        .unwrap();
    new.batch_execute("RESET ALL").await.unwrap();
    new.query_one("SELECT email FROM users LIMIT 1", &[])
        .await
        .unwrap();
    new.query_one("SELECT set_config('search_path', 'public', false)", &[])
        .await
        .unwrap();
    new.query_one("SELECT email FROM users LIMIT 1", &[])
        .await
        .unwrap();
    // Physical-schema references name the version's view, in both protocols.
    new.batch_execute("SELECT full_name FROM public.users LIMIT 1")
        .await
        .unwrap();
    let row = new
        .query_one(
            "SELECT full_name, email FROM public.users WHERE id = $1",
            &[&3i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "user 3@example.com");
    // The client cannot change its version, nor the shape of a migrating table.
    let err = new
        .batch_execute("SET pgshift.version = 'baseline'")
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "42501", "{err}");
    assert!(
        harness::error_text(&err).contains("pinned to version 01_users"),
        "{err}"
    );
    let err = new
        .batch_execute("ALTER TABLE users ADD COLUMN z int")
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "42501");
    // LOCK TABLE on the version's view locks the physical table behind it,
    // in either spelling.
    for lock in [
        "LOCK TABLE users IN SHARE MODE",
        "LOCK TABLE public.users IN SHARE MODE",
    ] {
        new.batch_execute(&format!("BEGIN; {lock}")).await.unwrap();
        let held: bool = env
            .direct()
            .await
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'public.users'::regclass
                 AND mode = 'ShareLock' AND granted)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(held, "{lock} holds a ShareLock on the table");
        new.batch_execute("COMMIT").await.unwrap();
    }
    // DDL on other tables passes.
    new.batch_execute("CREATE TABLE notes (id int); ALTER TABLE notes ADD COLUMN body text")
        .await
        .unwrap();
    // The old version is served the same way.
    let old = env.connect().await;
    old.batch_execute("SET search_path TO public")
        .await
        .unwrap();
    old.query_one("SELECT name FROM users LIMIT 1", &[])
        .await
        .unwrap();
    let cols = old
        .query_one("SELECT * FROM public.users LIMIT 1", &[])
        .await
        .unwrap()
        .columns()
        .len();
    assert_eq!(cols, 3, "the old version's view, not the physical table");
    // COPY ... TO, which a view refuses, reads a query of the view.
    let copied: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(
        new.copy_out("COPY public.users (full_name, email) TO STDOUT WITH (FORMAT csv)")
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let text = String::from_utf8(copied.concat()).unwrap();
    assert!(
        text.lines().any(|l| l == "user 3,user 3@example.com"),
        "{text}"
    );
    // COPY ... FROM, which a view refuses, writes the table through the view's columns.
    {
        let sink = new
            .copy_in("COPY users (full_name, rating, email) FROM STDIN")
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        futures_util::SinkExt::send(
            &mut sink,
            bytes::Bytes::from_static(b"copied one\t3\tc1@x\n"),
        )
        .await
        .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 1);
    }
    let row = old
        .query_one(
            "SELECT name, rating FROM users WHERE name = 'copied one'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(1),
        "3",
        "the old version sees the copied row"
    );
    let email: String = new
        .query_one(
            "SELECT email FROM users WHERE full_name = 'copied one'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, "c1@x");
    // pg_get_serial_sequence on the view's column finds the table's sequence.
    let seq: Option<String> = new
        .query_one("SELECT pg_get_serial_sequence('users', 'id')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seq.as_deref(), Some("public.users_id_seq"));
    // TRUNCATE, which a view refuses, reaches the table.
    new.batch_execute("TRUNCATE users").await.unwrap();
    let n: i64 = old
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
