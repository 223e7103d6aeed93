use super::*;

#[test]
fn upstream_url_parses_every_part() {
    let up = UpstreamConfig::from_url(
        "postgres://app%40x:s%2Fcret@db.internal:5433/orders?sslmode=verify-full&sslrootcert=/etc/ca.pem",
    )
    .unwrap();
    assert_eq!(up.host, "db.internal");
    assert_eq!(up.port, 5433);
    assert_eq!(up.user.as_deref(), Some("app@x"));
    assert_eq!(up.password.as_deref(), Some("s/cret"));
    assert_eq!(up.dbname.as_deref(), Some("orders"));
    assert_eq!(up.sslmode, SslMode::VerifyFull);
    assert_eq!(up.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
}

#[test]
fn upstream_url_defaults_to_prefer_and_5432() {
    let up = UpstreamConfig::from_url("postgresql://127.0.0.1").unwrap();
    assert_eq!(
        (up.port, up.sslmode, up.user, up.dbname),
        (5432, SslMode::Prefer, None, None)
    );
}

#[test]
fn upstream_url_errors_say_what_to_do() {
    let err = UpstreamConfig::from_url("postgres://h/db?sslmode=verify-ca")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("use disable, prefer, require or verify-full"),
        "{err}"
    );
    let err = UpstreamConfig::from_url("postgres://h/db?sslmode=verify-full")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sslrootcert"), "{err}");
    let err = UpstreamConfig::from_url("mysql://h/db")
        .unwrap_err()
        .to_string();
    assert!(err.contains("postgres://"), "{err}");
    let err = UpstreamConfig::from_url("postgres://u:hunter2@h/db?bogus=1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus") && !err.contains("hunter2"), "{err}");
}

#[test]
fn debug_output_redacts_the_password() {
    let up = UpstreamConfig::from_url("postgres://u:hunter2@h/db").unwrap();
    assert!(!format!("{up:?}").contains("hunter2"));
}

#[test]
fn unix_socket_upstreams_as_libpq_writes_them() {
    let up =
        UpstreamConfig::from_url("postgres:///orders?host=/var/run/postgresql&port=5433&user=app")
            .unwrap();
    assert_eq!(
        up.unix_socket(),
        Some(PathBuf::from("/var/run/postgresql/.s.PGSQL.5433"))
    );
    assert_eq!(
        (up.user.as_deref(), up.dbname.as_deref()),
        (Some("app"), Some("orders"))
    );
    let up = UpstreamConfig::from_url("postgresql:///orders?host=%2Ftmp").unwrap();
    assert_eq!(up.unix_socket(), Some(PathBuf::from("/tmp/.s.PGSQL.5432")));
    assert_eq!(
        UpstreamConfig::from_url("postgres://db:5432/x")
            .unwrap()
            .unix_socket(),
        None
    );
    let err = UpstreamConfig::from_url("postgres:///orders")
        .unwrap_err()
        .to_string();
    assert!(err.contains("host=/socket/dir"), "{err}");
}
