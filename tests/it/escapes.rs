//! Nothing slips past the proxy in production's shape: startup packets that
//! once put a session on another search_path or version than the one
//! reported (read now as Postgres reads them), real pgjdbc with
//! `currentSchema`, a flood of NOTIFYs from any role, and log lines forged
//! through application_name.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::harness::{self, Raw, query};
use crate::production::Shop;

/// The values of the first row of a simple query's reply, as text.
fn first_row(msgs: &[harness::Msg]) -> Vec<String> {
    let row = msgs
        .iter()
        .find(|m| m.tag == b'D')
        .unwrap_or_else(|| panic!("no row in {msgs:?}"));
    let body = &row.body[..];
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        at += 4;
        let len = len.max(0) as usize;
        out.push(String::from_utf8_lossy(&body[at..at + len]).into_owned());
        at += len;
    }
    out
}

/// The version the proxy reports (`pgshift.sessions`) for the session
/// with application_name `app`, once its heartbeat has published it.
async fn reported(shop: &Shop, app: &str) -> Option<String> {
    let direct = shop.env.direct().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let row = direct
            .query_opt(
                "SELECT version FROM pgshift.sessions WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap();
        if row.is_some() || tokio::time::Instant::now() >= deadline {
            return row.map(|r| r.get(0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_startup_packets_land_on_the_version_reported() {
    let shop = Shop::open().await;
    shop.start("owner").await;
    let old = "public_baseline";
    let new = "public_02_amounts";
    // (extra parameters, version, the head of current_schemas)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("search_path", "public")], "baseline", old),
        (
            vec![
                ("options", "-c pgshift.version=02_amounts"),
                ("options", "-c search_path=public"),
            ],
            "baseline",
            old,
        ),
        (
            vec![
                ("pgshift.version", "baseline"),
                ("pgshift.version", "02_amounts"),
            ],
            "02_amounts",
            new,
        ),
        (vec![("PGSHIFT.VERSION", "02_amounts")], "02_amounts", new),
        (
            vec![(
                "options",
                "-c search_path=public\x0b-c\x0bpgshift.version=02_amounts",
            )],
            "02_amounts",
            new,
        ),
    ];
    for (i, (params, version, head)) in cases.into_iter().enumerate() {
        let app = format!("packet-{i}");
        let mut all = vec![("application_name", app.as_str())];
        all.extend(params.iter().copied());
        let (mut raw, _) = Raw::startup(shop.env.proxy, &all).await;
        raw.send(&query(
            "SELECT current_setting('pgshift.version'), current_schemas(false)::text",
        ))
        .await;
        let row = first_row(&raw.until_ready().await);
        assert_eq!(row[0], version, "{params:?}");
        assert!(
            row[1].starts_with(&format!("{{{head},")),
            "{params:?}: current_schemas {}",
            row[1]
        );
        assert_eq!(
            reported(&shop, &app).await.as_deref(),
            Some(version),
            "{params:?}: the registry reports another version"
        );
    }
}

/// A pgjdbc probe: connects with the URL and properties given and prints
/// the session's version and schemas.
const PROBE: &str = r#"
import java.sql.*;
import java.util.Properties;
public class Probe {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        try (Connection c = DriverManager.getConnection(args[0], props);
             Statement s = c.createStatement();
             ResultSet r = s.executeQuery(
                 "SELECT current_setting('pgshift.version'), current_schemas(false)::text, " +
                 "(SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute " +
                 " WHERE attrelid = 'orders'::regclass AND attnum > 0)")) {
            r.next();
            System.out.println(r.getString(1) + "|" + r.getString(2) + "|" + r.getString(3));
        }
    }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_with_current_schema_stays_on_its_version() {
    let jar = "/usr/share/java/postgresql.jar";
    assert!(
        std::path::Path::new(jar).exists(),
        "pgjdbc is missing: apt-get install libpostgresql-jdbc-java (.ci/install does)"
    );
    let shop = Shop::open().await;
    shop.start("owner").await;
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("Probe.java");
    std::fs::write(&probe, PROBE).unwrap();
    for (extra, version, schema) in [
        ("", "baseline", "public_baseline"),
        (
            "&options=-c%20pgshift.version%3D02_amounts",
            "02_amounts",
            "public_02_amounts",
        ),
    ] {
        let url = format!(
            "jdbc:postgresql://{}/postgres?currentSchema=public&sslmode=disable{extra}",
            shop.env.proxy
        );
        let out = tokio::process::Command::new("java")
            .arg("-cp")
            .arg(jar)
            .arg(&probe)
            .args([&url, "app", "pw-app"])
            .output()
            .await
            .expect("java must be installed (apt-get install default-jdk-headless)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fields: Vec<&str> = stdout.trim().split('|').collect();
        assert_eq!(fields[0], version, "{stdout}");
        assert_eq!(
            fields[1],
            format!("{{{schema},public}}"),
            "currentSchema must not take the session off its version: {stdout}"
        );
        assert!(!fields[2].contains("_pgshift"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_flood_costs_the_proxy_a_bounded_amount() {
    let shop = Shop::open().await;
    let (mut proxy, addr) = harness::spawn_binary(&shop.env.direct_url(), &[]).await;
    let pid = proxy.id().unwrap();
    let through = format!("postgres://app:pw-app@{addr}/postgres?sslmode=disable");
    harness::connect(&through)
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap();
    let direct = shop.env.direct().await;
    let commits = || async {
        direct
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = harness::rss_kib(pid);
    let commits_before = commits().await;
    // Any role may NOTIFY: 20,000 distinct 7 KB payloads from the app role.
    let app = harness::connect(
        &shop
            .env
            .cluster
            .url("postgres")
            .replace("postgres@", "app:pw-app@"),
    )
    .await;
    app.batch_execute(
        "SELECT pg_notify('pgshift', repeat('x', 7000) || g) FROM generate_series(1, 20000) g",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    direct
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    let grown = harness::rss_kib(pid).saturating_sub(rss_before);
    let commits = commits().await - commits_before;
    assert!(
        grown < 16 * 1024,
        "the proxy grew by {grown} KiB under a NOTIFY flood"
    );
    assert!(
        commits < 3000,
        "{commits} transactions in 5 s: the reloads were not coalesced"
    );
    // The proxy still hears a migration and serves it.
    shop.start("owner").await;
    let url = format!("{through}&options=-c%20pgshift.version%3D02_amounts");
    harness::connect(&url)
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap();
    let _ = proxy.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_startup_fields_cannot_forge_log_lines() {
    let shop = Shop::open().await;
    let (mut proxy, addr) = harness::spawn_binary(&shop.env.direct_url(), &[]).await;
    let forged = "app\nFORGED ERROR pgshift: fake line\u{1b}[31m";
    let (mut raw, _) = Raw::startup(addr, &[("application_name", forged)]).await;
    raw.send(&query("SELECT 1")).await;
    raw.until_ready().await;
    drop(raw);
    // A user name with a newline is refused by Postgres, and logged too.
    let mut bad = Raw::connect(addr).await;
    bad.send(&harness::startup_message(&[
        ("user", "nobody\nFORGED user line"),
        ("database", "postgres"),
    ]))
    .await;
    bad.until_ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = proxy.kill().await;
    let mut stderr = String::new();
    proxy
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("app\\nFORGED ERROR"),
        "the application_name is logged, escaped:\n{stderr}"
    );
    for line in stderr.lines() {
        assert!(!line.starts_with("FORGED"), "a forged line:\n{stderr}");
        assert!(!line.contains('\u{1b}'), "a terminal escape:\n{stderr}");
    }
}
