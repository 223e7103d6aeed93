use super::*;

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgshift.toml");
    std::fs::write(
        &path,
        "[proxy]\nlisten = \"127.0.0.1:7000\"\nmax_clients = 7\nstartup_timeout = \"3s\"\n",
    )
    .unwrap();
    let cli = ProxySettings {
        max_clients: Some(9),
        ..Default::default()
    };
    let config = resolve_proxy(&cli, Some(&path)).unwrap();
    assert_eq!(config.listen, ["127.0.0.1:7000".parse().unwrap()]);
    assert_eq!(config.max_clients, 9);
    assert_eq!(config.startup_timeout, Duration::from_secs(3));
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
}

#[test]
fn several_listeners_separated_by_commas() {
    let cli = ProxySettings {
        listen: Some("127.0.0.1:6432, [::1]:6433".into()),
        ..Default::default()
    };
    let config = resolve_proxy(&cli, None).unwrap();
    assert_eq!(
        config.listen,
        [
            "127.0.0.1:6432".parse().unwrap(),
            "[::1]:6433".parse().unwrap()
        ]
    );
    let cli = ProxySettings {
        listen: Some("127.0.0.1:6432,nope".into()),
        ..Default::default()
    };
    let err = resolve_proxy(&cli, None).unwrap_err().to_string();
    assert!(err.contains("several separated by commas"), "{err}");
}

#[test]
fn unknown_file_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgshift.toml");
    std::fs::write(&path, "[proxy]\nlisen = \"x\"\n").unwrap();
    let err = resolve_proxy(&ProxySettings::default(), Some(&path))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lisen") && err.contains("pgshift.toml"),
        "{err}"
    );
}

#[test]
fn bad_durations_and_lone_tls_files_are_refused() {
    let cli = ProxySettings {
        startup_timeout: Some("soon".into()),
        ..Default::default()
    };
    let err = resolve_proxy(&cli, None).unwrap_err().to_string();
    assert!(
        err.contains("startup_timeout") && err.contains("10s"),
        "{err}"
    );
    let cli = ProxySettings {
        tls_cert: Some("c.pem".into()),
        ..Default::default()
    };
    let err = resolve_proxy(&cli, None).unwrap_err().to_string();
    assert!(err.contains("together"), "{err}");
}

/// The migrator's settings are staged as the proxy's: flags and
/// environment, then the file's `[migrate]` table, then the defaults.
#[test]
fn migrator_settings_come_from_flags_then_file_then_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgshift.toml");
    std::fs::write(
        &path,
        "[migrate]\ndatabase_url = \"postgres:///from_file\"\nschema = \"app\"\nlock_timeout = \"2s\"\nbackfill_batch_size = 50\n",
    )
    .unwrap();
    let cli = MigrateSettings {
        lock_timeout: Some("750ms".into()),
        ..Default::default()
    };
    let settings = resolve_migrate(&cli, Some(&path)).unwrap();
    assert_eq!(settings.database_url, "postgres:///from_file");
    assert_eq!(settings.schema, "app");
    assert_eq!(settings.lock_timeout, Duration::from_millis(750));
    assert_eq!(settings.batch_size, 50);
    let defaults = Settings::new(String::new());
    assert_eq!(settings.batch_delay, defaults.batch_delay);
    let err = resolve_migrate(&MigrateSettings::default(), None).unwrap_err();
    assert!(err.to_string().contains("--database-url"), "{err}");
    let bad = MigrateSettings {
        database_url: Some("postgres:///x".into()),
        backfill_batch_time: Some("soon".into()),
        ..Default::default()
    };
    let err = resolve_migrate(&bad, None).unwrap_err().to_string();
    assert!(err.contains("backfill_batch_time"), "{err}");
}
