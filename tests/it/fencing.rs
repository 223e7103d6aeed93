//! Fencing and waits in production's shape (an owner migrating, an `app`
//! role with SCRAM, more than one proxy): `complete` trusts Postgres, not a
//! proxy's heartbeat, about which sessions are alive, and `--force`
//! terminates their backends; every wait has a deadline and names what it
//! waits for; `start` returns only once every live proxy serves the new
//! version.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgshift::migrate::engine::{MigrateError, Migrator, Pinned, Settings};

use crate::harness;
use crate::production::Shop;

/// What the owner needs to fence: to end the app's backends (--force) and
/// to see their state when naming them.
const OWNER_ROLES: &str = "GRANT pg_signal_backend, pg_read_all_stats TO owner";

/// A second proxy, as a process, in front of `shop`'s cluster.
async fn second_proxy(shop: &Shop) -> (tokio::process::Child, std::net::SocketAddr) {
    harness::spawn_binary(&shop.env.direct_url(), &[]).await
}

fn app_url(addr: std::net::SocketAddr, app: &str) -> String {
    format!("postgres://app:pw-app@{addr}/postgres?sslmode=disable&application_name={app}")
}

/// A Shop whose owner may end other roles' backends and see their state.
async fn shop_with_owner_roles() -> Shop {
    let shop = Shop::open().await;
    shop.env
        .direct()
        .await
        .batch_execute(OWNER_ROLES)
        .await
        .unwrap();
    shop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_proxys_sessions_still_fence_complete_and_force_terminates_them() {
    let shop = shop_with_owner_roles().await;
    let (mut paused, addr) = second_proxy(&shop).await;
    shop.start("owner").await;
    let old = harness::connect(&app_url(addr, "paused-client")).await;
    let pid: i32 = old
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // Its proxy has published the session; then the proxy stops beating,
    // as a paused VM does, for longer than a heartbeat counts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let proxy_pid = Pid::from_raw(paused.id().unwrap() as i32);
    kill(proxy_pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut m = shop.migrator("owner").await;
    let err = m.complete(Pinned::Refuse).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MigrateError::SessionsPinned { .. })
            && text.contains("paused-client")
            && text.contains(&format!("backend pid {pid}")),
        "{text}"
    );
    // --force ends it even though its proxy cannot: Postgres terminates
    // the backend.
    m.complete(Pinned::End)
        .await
        .unwrap_or_else(|e| panic!("complete --force: {e}"));
    m.close().await.unwrap();
    let alive: i64 = shop
        .env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(alive, 0, "the removed version's backend survived complete");
    kill(proxy_pid, Signal::SIGCONT).unwrap();
    let err = old
        .query_one("SELECT amount FROM orders LIMIT 1", &[])
        .await
        .expect_err("a session of the removed version must not survive");
    assert!(err.is_closed() || err.as_db_error().is_some(), "{err}");
    let _ = paused.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_behind_a_long_transaction_stops_at_its_deadline_naming_the_blocker() {
    let shop = shop_with_owner_roles().await;
    // A long transaction straight to Postgres (no session move waits for
    // it), as the app role.
    let direct = shop
        .env
        .cluster
        .url("postgres")
        .replace("postgres@", "app:pw-app@")
        + "&application_name=long-report";
    let blocker = harness::connect(&direct).await;
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM orders")
        .await
        .unwrap();

    let settings = Settings {
        lock_timeout: Duration::from_millis(200),
        ddl_timeout: Duration::from_secs(3),
        ..shop.settings("owner")
    };
    let file = shop.migration_file();
    let mut m = Migrator::connect(settings.clone()).await.unwrap();
    let began = std::time::Instant::now();
    let err = m.start(&file).await.unwrap_err();
    let took = began.elapsed();
    let text = err.to_string();
    assert!(
        matches!(err, MigrateError::Blocked { .. })
            && text.contains(&format!("pid {blocker_pid}"))
            && text.contains("\"long-report\"")
            && text.contains("idle in transaction")
            && text.contains("SELECT count(*) FROM orders")
            && text.contains("`pgshift rollback`"),
        "{text}"
    );
    assert!(took < Duration::from_secs(20), "start took {took:?}");
    m.close().await.unwrap();
    // The same command finishes once the blocker has gone.
    blocker.batch_execute("COMMIT").await.unwrap();
    let mut m = Migrator::connect(settings).await.unwrap();
    m.start(&file)
        .await
        .unwrap_or_else(|e| panic!("start again: {e}"));
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_idle_in_a_transaction_is_named_as_such() {
    let shop = shop_with_owner_roles().await;
    // asyncpg's prepare() without an execute leaves exactly this.
    let idle = harness::connect(&app_url(shop.env.proxy, "prepared-only")).await;
    idle.batch_execute("BEGIN; SELECT id FROM orders LIMIT 1")
        .await
        .unwrap();
    let settings = Settings {
        session_move_timeout: Duration::from_secs(2),
        ..shop.settings("owner")
    };
    let mut m = Migrator::connect(settings).await.unwrap();
    let err = m.start(&shop.migration_file()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MigrateError::SessionsNotMoved { .. })
            && text.contains("\"prepared-only\"")
            && text.contains("idle in a transaction")
            && text.contains("holding locks on orders"),
        "{text}"
    );
    // As the refusal says: once the transaction ends, start again.
    idle.batch_execute("COMMIT").await.unwrap();
    m.start(&shop.migration_file())
        .await
        .unwrap_or_else(|e| panic!("start again: {e}"));
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_returns_once_every_proxy_serves_the_new_version() {
    let shop = Shop::open().await;
    let (mut other, addr) = second_proxy(&shop).await;
    let file = shop.migration_file();
    // Each round: a client connects to each proxy the moment start returns.
    for round in 0..4 {
        let mut m = shop.migrator("owner").await;
        m.start(&file)
            .await
            .unwrap_or_else(|e| panic!("round {round}: start: {e}"));
        for proxy in [shop.env.proxy, addr] {
            let url = format!(
                "{}&options=-c%20pgshift.version%3D02_amounts",
                app_url(proxy, "eager")
            );
            let client = harness::try_connect(&url).await.unwrap_or_else(|e| {
                panic!(
                    "round {round}: proxy {proxy} refused the new version right after start: {}",
                    harness::error_text(&e)
                )
            });
            drop(client);
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        m.rollback(Pinned::End).await.unwrap();
        m.close().await.unwrap();
    }

    // A proxy that stops answering is named when the wait times out.
    let paused = Pid::from_raw(other.id().unwrap() as i32);
    kill(paused, Signal::SIGSTOP).unwrap();
    let settings = Settings {
        proxy_timeout: Duration::from_millis(500),
        ..shop.settings("owner")
    };
    let mut m = Migrator::connect(settings).await.unwrap();
    let err = m.start(&file).await.unwrap_err();
    kill(paused, Signal::SIGCONT).unwrap();
    let text = err.to_string();
    assert!(
        matches!(err, MigrateError::ProxiesBehind { .. })
            && text.contains(&format!("{addr}"))
            && text.contains("is active"),
        "{text}"
    );
    let _ = other.kill().await;
}
