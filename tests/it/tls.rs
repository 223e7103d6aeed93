//! TLS on each side: the proxy serves TLS to clients that ask when it has a
//! certificate, and reaches Postgres with libpq's sslmode semantics (disable,
//! prefer, require, verify-full). SCRAM works with TLS on one side only.

use pgshift::cluster::ClusterOptions;
use pgshift::net::UpstreamConfig;
use pgshift::net::tls::TlsFiles;

use crate::auth::{HBA, create_users};
use crate::harness::{self, Env, TestPki};

fn conninfo(env: &Env, user: &str, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} dbname=postgres {extra}",
        env.proxy.port()
    )
}

const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_with_a_plain_upstream_and_scram() {
    let pki = TestPki::new();
    let options = ClusterOptions {
        hba: Some(HBA.to_string()),
        ..Default::default()
    };
    let cert = pki.path("server.pem");
    let key = pki.path("server.key");
    let env = Env::with(options, |c| c.tls = Some(TlsFiles { cert, key })).await;
    create_users(&env).await;
    // verify-full proves the client really talks TLS to pgshift's certificate.
    let info = format!(
        "host=localhost port={} user=scram_user dbname=postgres sslmode=verify-full sslrootcert={}",
        env.proxy.port(),
        pki.path("ca.pem").display()
    );
    let upstream_ssl = harness::psql(&info, SSL_IN_USE, Some("pw-scram_user"))
        .await
        .unwrap();
    assert_eq!(upstream_ssl, "f", "the upstream leg is plain");
    // md5 and cleartext over client TLS as well.
    for user in ["md5_user", "clear_user"] {
        let out = harness::psql(
            &conninfo(&env, user, "sslmode=require"),
            "SELECT current_user",
            Some(&format!("pw-{user}")),
        )
        .await
        .unwrap();
        assert_eq!(out, user);
    }
    // Plain clients are still served.
    let out = harness::psql(
        &conninfo(&env, "postgres", "sslmode=disable"),
        "SELECT 1",
        None,
    )
    .await
    .unwrap();
    assert_eq!(out, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_with_a_tls_upstream_and_scram() {
    let pki = TestPki::new();
    // hostssl only: the upstream leg must be TLS or Postgres refuses it.
    let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhost all postgres 127.0.0.1/32 trust\n";
    let options = ClusterOptions {
        ssl: Some((pki.cert_pem.clone(), pki.key_pem.clone())),
        hba: Some(hba.to_string()),
        ..Default::default()
    };
    for mode in ["require", "prefer"] {
        let env = Env::with(options.clone(), |c| {
            let up = c.upstream.as_ref().unwrap();
            c.upstream = Some(
                UpstreamConfig::from_url(&format!(
                    "postgres://127.0.0.1:{}/postgres?sslmode={mode}",
                    up.port
                ))
                .unwrap(),
            );
        })
        .await;
        env.direct()
            .await
            .batch_execute("CREATE ROLE scram_user LOGIN PASSWORD 'pw-scram_user'")
            .await
            .unwrap();
        let out = harness::psql(
            &conninfo(&env, "scram_user", "sslmode=disable"),
            SSL_IN_USE,
            Some("pw-scram_user"),
        )
        .await
        .unwrap();
        assert_eq!(out, "t", "sslmode={mode}: the upstream leg is TLS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_verify_full_checks_the_certificate() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let options = ClusterOptions {
        ssl: Some((pki.cert_pem.clone(), pki.key_pem.clone())),
        ..Default::default()
    };
    let good_ca = pki.path("ca.pem");
    let env = Env::with(options.clone(), |c| {
        let port = c.upstream.as_ref().unwrap().port;
        c.upstream = Some(
            UpstreamConfig::from_url(&format!(
                "postgres://localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
                good_ca.display()
            ))
            .unwrap(),
        );
    })
    .await;
    let client = env.connect().await;
    let ssl: bool = client.query_one(SSL_IN_USE, &[]).await.unwrap().get(0);
    assert!(ssl);
    // The same cluster, checked against a CA that did not sign its certificate.
    let wrong_ca = other.path("ca.pem");
    let port = env.cluster.port;
    let mut config = env.config.clone();
    config.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.upstream = Some(
        UpstreamConfig::from_url(&format!(
            "postgres://localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
            wrong_ca.display()
        ))
        .unwrap(),
    );
    let (addr, _stop, _task) = harness::spawn_proxy(&mut config).await;
    let err = harness::try_connect(&format!(
        "postgres://postgres@{addr}/postgres?sslmode=disable"
    ))
    .await
    .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "08006", "{err}");
    assert!(harness::error_text(&err).contains("TLS handshake"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_require_refuses_a_server_without_tls_and_disable_never_asks() {
    let env = Env::start().await;
    let port = env.cluster.port;
    for (mode, works) in [("require", false), ("prefer", true), ("disable", true)] {
        let mut config = env.config.clone();
        config.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.upstream = Some(
            UpstreamConfig::from_url(&format!(
                "postgres://127.0.0.1:{port}/postgres?sslmode={mode}"
            ))
            .unwrap(),
        );
        let (addr, _stop, _task) = harness::spawn_proxy(&mut config).await;
        let result = harness::try_connect(&format!(
            "postgres://postgres@{addr}/postgres?sslmode=disable"
        ))
        .await;
        match (works, result) {
            (true, Ok(client)) => {
                let ssl: bool = client.query_one(SSL_IN_USE, &[]).await.unwrap().get(0);
                assert!(!ssl, "sslmode={mode}");
            }
            (false, Err(err)) => {
                assert_eq!(harness::sqlstate(&err), "08006", "{err}");
                assert!(harness::error_text(&err).contains("refused TLS"), "{err}");
            }
            (works, other) => panic!(
                "sslmode={mode}: expected works={works}, got {:?}",
                other.err()
            ),
        }
    }
}
