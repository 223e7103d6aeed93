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
    create_users_on(&env.direct().await).await;
}

/// [`create_users`] through `client`, a superuser connection.
pub async fn create_users_on(client: &tokio_postgres::Client) {
    client
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

/// Refusals through the binary, with its logs captured: wrong passwords of
/// each method, an unknown user, a non-admin on the admin console, and a
/// client that requires TLS from a proxy without it. No password, the
/// upstream's included, appears in any log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_sqlstate_and_no_credential_reaches_the_log() {
    use tokio::io::AsyncReadExt;
    let cluster = tokio::task::spawn_blocking(|| {
        pgshift::cluster::TempCluster::start(&ClusterOptions {
            hba: Some(HBA.to_string()),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap();
    let upstream = format!(
        "postgres://postgres:upstream-secret-42@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let (mut child, addr) = harness::spawn_binary(
        &upstream,
        &["--admin-users", "scram_user", "--log-format", "json"],
    )
    .await;
    let mut logs = child.stderr.take().unwrap();
    let direct = harness::connect(&cluster.url("postgres")).await;
    create_users_on(&direct).await;
    let at = |user: &str, password: &str, db: &str, ssl: &str| {
        format!("postgres://{user}:{password}@{addr}/{db}?sslmode={ssl}")
    };
    for user in ["clear_user", "md5_user", "scram_user", "nobody"] {
        let err = harness::try_connect(&at(user, "wrong-secret-7", "postgres", "disable"))
            .await
            .unwrap_err();
        assert_eq!(harness::sqlstate(&err), "28P01", "{user}: {err}");
    }
    let err = harness::try_connect(&at("md5_user", "pw-md5_user", "pgshift", "disable"))
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "28000", "{err}");
    // The proxy has no certificate: it answers SSLRequest with 'N', and a
    // client that requires TLS gives up before sending anything.
    let err = harness::try_connect(&at("clear_user", "pw-clear_user", "postgres", "require"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    // Right passwords work, cleartext included.
    harness::connect(&at("clear_user", "pw-clear_user", "postgres", "disable")).await;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().await.unwrap();
    let mut text = String::new();
    logs.read_to_string(&mut text).await.unwrap();
    assert!(
        text.lines().count() > 5,
        "the log has the connection lines:\n{text}"
    );
    for secret in [
        "upstream-secret-42",
        "wrong-secret-7",
        "pw-clear_user",
        "pw-md5_user",
        "pw-scram_user",
    ] {
        assert!(!text.contains(secret), "{secret} is in the log:\n{text}");
    }
}
