//! Authentication relayed to Postgres: trust, cleartext password, MD5 and
//! SCRAM-SHA-256, with wrong passwords and unknown users refused by Postgres
//! and the refusal reaching the client unchanged.

use pgshift::cluster::ClusterOptions;

use crate::harness::{self, Env};

pub const HBA: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
host all clear_user 127.0.0.1/32 password
host all md5_user 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
";

/// Creates the password users: clear_user, md5_user (MD5-hashed) and
/// scram_user (SCRAM-hashed), each with password `pw-<name>`.
pub async fn create_users(env: &Env) {
    env.direct()
        .await
        .batch_execute(
            "SET password_encryption = 'md5';
             CREATE ROLE md5_user LOGIN PASSWORD 'pw-md5_user';
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE scram_user LOGIN PASSWORD 'pw-scram_user';
             CREATE ROLE clear_user LOGIN PASSWORD 'pw-clear_user';",
        )
        .await
        .unwrap();
}

fn url(env: &Env, user: &str, password: &str) -> String {
    format!(
        "postgres://{user}:{password}@{}/postgres?sslmode=disable",
        env.proxy
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_is_relayed() {
    let options = ClusterOptions {
        hba: Some(HBA.to_string()),
        ..Default::default()
    };
    let env = Env::with(options, |_| {}).await;
    create_users(&env).await;
    for user in ["clear_user", "md5_user", "scram_user"] {
        let client = harness::connect(&url(&env, user, &format!("pw-{user}"))).await;
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user);
    }
    // trust: no password at all.
    let client = env.connect().await;
    client.query_one("SELECT 1", &[]).await.unwrap();
    // libpq too, for SCRAM.
    let out = harness::psql(
        &format!(
            "host=127.0.0.1 port={} user=scram_user dbname=postgres sslmode=disable",
            env.proxy.port()
        ),
        "SELECT current_user",
        Some("pw-scram_user"),
    )
    .await
    .unwrap();
    assert_eq!(out, "scram_user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_users_are_refused() {
    let options = ClusterOptions {
        hba: Some(HBA.to_string()),
        ..Default::default()
    };
    let env = Env::with(options, |_| {}).await;
    create_users(&env).await;
    for user in ["clear_user", "md5_user", "scram_user", "nobody"] {
        let err = harness::try_connect(&url(&env, user, "wrong"))
            .await
            .unwrap_err();
        assert_eq!(harness::sqlstate(&err), "28P01", "{user}: {err}");
    }
    // The proxy is unharmed and the users still work.
    harness::connect(&url(&env, "md5_user", "pw-md5_user")).await;
}
