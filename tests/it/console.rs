//! The admin console on the proxy's port: database `pgshift`, for the roles
//! in `admin_users` only (their password checked by Postgres). SHOW CLIENTS,
//! VERSIONS, ROUTES and MIGRATION answer from the proxy's own state; PIN
//! reaches every proxy like `pgshift pin`.

use std::time::Duration;

use pgshift::cluster::ClusterOptions;
use pgshift::migrate::engine::{Migrator, Settings};
use pgshift::routing::RouteRule;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::auth::{HBA, create_users};
use crate::harness::{self, Env};

const MIGRATION: &str = r#"{"operations": [
  {"add_column": {"table": "users", "up": "name || '@example.com'", "column": {"name": "email", "type": "text"}}}
]}"#;

async fn lab() -> Env {
    let options = ClusterOptions {
        hba: Some(HBA.to_string()),
        ..Default::default()
    };
    let env = Env::with(options, |c| {
        c.admin_users = vec!["scram_user".into()];
        c.routes = vec![RouteRule {
            name: "green".into(),
            application_name: Some("shop-green".into()),
            ..Default::default()
        }];
    })
    .await;
    create_users(&env).await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 50) g;",
        )
        .await
        .unwrap();
    env
}

fn console_url(env: &Env, user: &str, password: &str) -> String {
    format!(
        "postgres://{user}:{password}@{}/pgshift?sslmode=disable",
        env.proxy
    )
}

/// The rows of a simple query, each as its text values.
pub async fn rows(console: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    console
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_clients_versions_routes_and_the_migration_and_pins() {
    let env = lab().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("01_users.json");
    std::fs::write(&file, MIGRATION).unwrap();
    let mut m = Migrator::connect(Settings::new(env.direct_url()))
        .await
        .unwrap();
    m.start(&file).await.unwrap();
    m.close().await.unwrap();

    let green_url = format!(
        "{}&application_name=shop-green",
        env.proxy_url("postgres", "postgres")
    );
    let _green = harness::connect(&green_url).await;
    let console = harness::connect(&console_url(&env, "scram_user", "pw-scram_user")).await;

    let clients = rows(&console, "SHOW CLIENTS").await;
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(
        clients[0][1..5],
        [
            s("baseline"),
            s("public_baseline"),
            s("green"),
            s("shop-green")
        ]
    );
    let versions = rows(&console, "show versions;").await;
    assert_eq!(
        versions,
        [
            vec![
                s("baseline"),
                s("old"),
                s("public_baseline"),
                s("true"),
                s("active")
            ],
            vec![
                s("01_users"),
                s("new"),
                s("public_01_users"),
                s("true"),
                s("active")
            ],
        ]
    );
    let migration = rows(&console, "SHOW MIGRATION").await;
    assert_eq!(
        migration,
        [vec![
            s("01_users"),
            s("baseline"),
            s("active"),
            s("public_01_users"),
            s("users"),
            s("50"),
            s("true"),
            None
        ]]
    );

    // PIN checks the version, then reaches the proxy like `pgshift pin`.
    let err = console.simple_query("PIN green 99_nope").await.unwrap_err();
    assert_eq!(harness::sqlstate(&err), "22023", "{err}");
    assert!(harness::error_text(&err).contains("01_users"), "{err}");
    console.simple_query("PIN green '01_users'").await.unwrap();
    assert_eq!(
        rows(&console, "SHOW ROUTES").await,
        [vec![
            s("green"),
            s("01_users"),
            s("application_name=shop-green")
        ]]
    );
    let pinned = harness::eventually(Duration::from_secs(1), || async {
        let c = harness::connect(&green_url).await;
        let v: String = c
            .query_one("SELECT current_setting('pgshift.version')", &[])
            .await
            .unwrap()
            .get(0);
        v == "01_users"
    })
    .await;
    assert!(pinned);

    // Anything else is refused, and the session carries on.
    let err = console.simple_query("DROP TABLE users").await.unwrap_err();
    assert_eq!(harness::sqlstate(&err), "42601", "{err}");
    let err = console.query("SHOW CLIENTS", &[]).await.unwrap_err();
    assert_eq!(harness::sqlstate(&err), "0A000", "{err}");
    assert_eq!(rows(&console, "SHOW HELP").await.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_users_with_the_right_password_reach_the_console() {
    let env = lab().await;
    // A role that exists, with its right password, but not an admin.
    let err = harness::try_connect(&console_url(&env, "md5_user", "pw-md5_user"))
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "28000", "{err}");
    assert!(
        harness::error_text(&err).contains("not one of its admin_users"),
        "{err}"
    );
    // An admin with a wrong password: Postgres refuses it.
    let err = harness::try_connect(&console_url(&env, "scram_user", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "28P01", "{err}");
    // The same admin with the right password gets in.
    let console = harness::connect(&console_url(&env, "scram_user", "pw-scram_user")).await;
    assert_eq!(rows(&console, "SHOW CLIENTS").await.len(), 0);
}
