//! The transaction pool (`pool_mode = transaction`): server connections
//! kept per (database, user, version, other startup settings), lent to a
//! client for one transaction and given back at ReadyForQuery with status
//! `I`. pgshift holds no password, so servers come only from logins: the
//! backend a client's login opened joins its pool, or is closed when the
//! pool is full (pgbouncer's pools, with Postgres checking every password).

pub mod server;
pub mod session;
pub mod statements;
pub mod txn;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Semaphore;

use super::config::PoolSettings;
use crate::protocol::StartupMessage;
pub use server::Server;

/// What a pool is for: servers are interchangeable only within one key.
/// `settings` holds every startup setting of the client that the pool
/// does not keep in step itself (its `options` switches, its own
/// search_path, ...), in the client's encoding of the packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    /// The schema version the servers are pinned to ("" without routing).
    pub version: String,
    pub settings: Vec<u8>,
}

impl PoolKey {
    /// The key of a client that sent `startup` and was routed to `version`.
    /// The settings a pool keeps in step per client (ParameterStatus ones,
    /// see [`server::TRACKED`]) and `pgshift.version` are left out.
    pub fn new(startup: &StartupMessage, version: &str) -> PoolKey {
        let (user, database) = startup.user_and_database();
        let mut rest = startup.clone();
        rest.take_setting(crate::state::VERSION_SETTING);
        for name in server::TRACKED {
            rest.take_setting(&name.to_ascii_lowercase());
        }
        PoolKey {
            database,
            user,
            version: version.to_string(),
            settings: rest.encode().to_vec(),
        }
    }
}

/// Every pool of this proxy.
#[derive(Debug)]
pub struct Pools {
    pub settings: PoolSettings,
    map: DashMap<PoolKey, Arc<Pool>>,
    /// What the console's PAUSE holds.
    pause: tokio::sync::watch::Sender<Paused>,
}

/// What the console's PAUSE holds: no new transaction starts in the pools
/// of every database, or of one, until RESUME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paused {
    Nothing,
    All,
    Database(String),
}

impl Paused {
    /// True when the pools of `database` are held.
    pub fn holds(&self, database: &str) -> bool {
        match self {
            Paused::Nothing => false,
            Paused::All => true,
            Paused::Database(d) => d == database,
        }
    }
}

/// The servers of one [`PoolKey`], and who waits for them.
#[derive(Debug)]
pub struct Pool {
    pub key: PoolKey,
    settings: PoolSettings,
    /// Idle servers, the most recently used last.
    idle: Mutex<Vec<Server>>,
    /// One permit per idle server; a client takes a permit, then a server.
    available: Semaphore,
    /// Servers alive, idle or lent.
    servers: AtomicUsize,
    /// Every server alive, by backend pid, and when it connected.
    members: DashMap<i32, std::time::SystemTime>,
    /// Clients connected to the pool.
    pub clients: AtomicUsize,
    /// Clients holding a server.
    pub active: AtomicUsize,
    /// Clients waiting for a server, and since when (by waiter number).
    waiters: Mutex<BTreeMap<u64, Instant>>,
    next_waiter: AtomicU64,
    /// Set once the pool's version is no longer served.
    gone: AtomicBool,
    /// Transactions and statements served, for SHOW STATS.
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Total microseconds clients waited for a server.
    pub wait_us: AtomicU64,
}

/// Why a client got no server.
#[derive(Debug)]
pub enum Unavailable {
    /// None came back within `query_wait_timeout`.
    Timeout(Duration),
    /// The pool's version is no longer served.
    Gone,
    /// The pool has no server at all: only a new login can bring one.
    Empty,
}

impl Pools {
    pub fn new(settings: PoolSettings) -> Pools {
        Pools {
            settings,
            map: DashMap::new(),
            pause: tokio::sync::watch::Sender::new(Paused::Nothing),
        }
    }

    /// Holds new transactions in the pools of `database` (every one with
    /// `None`); those running go on. See [`Pools::active_in`].
    pub fn pause(&self, database: Option<String>) {
        self.pause.send_replace(match database {
            Some(d) => Paused::Database(d),
            None => Paused::All,
        });
    }

    /// Lets held clients go on.
    pub fn resume(&self) {
        self.pause.send_replace(Paused::Nothing);
    }

    /// What PAUSE holds now.
    pub fn paused(&self) -> Paused {
        self.pause.borrow().clone()
    }

    /// Waits while PAUSE holds `database`, at most `timeout`; false when
    /// the pause outlasted it.
    pub async fn unpaused(&self, database: &str, timeout: Duration) -> bool {
        if !self.pause.borrow().holds(database) {
            return true;
        }
        let mut watch = self.pause.subscribe();
        tokio::time::timeout(timeout, watch.wait_for(|p| !p.holds(database)))
            .await
            .is_ok()
    }

    /// Transactions running now in the pools of `database` (of every one
    /// with `None`).
    pub fn active_in(&self, database: Option<&str>) -> usize {
        self.map
            .iter()
            .filter(|e| database.is_none_or(|d| e.key().database == d))
            .map(|e| e.value().active.load(Ordering::Relaxed))
            .sum()
    }

    /// The pool for `key`, made on first use.
    pub fn get(&self, key: PoolKey) -> Arc<Pool> {
        if let Some(pool) = self.map.get(&key) {
            return Arc::clone(pool.value());
        }
        Arc::clone(
            self.map
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Pool {
                        key,
                        settings: self.settings.clone(),
                        idle: Mutex::new(Vec::new()),
                        available: Semaphore::new(0),
                        servers: AtomicUsize::new(0),
                        members: DashMap::new(),
                        clients: AtomicUsize::new(0),
                        active: AtomicUsize::new(0),
                        waiters: Mutex::new(BTreeMap::new()),
                        next_waiter: AtomicU64::new(0),
                        gone: AtomicBool::new(false),
                        transactions: AtomicU64::new(0),
                        queries: AtomicU64::new(0),
                        bytes_sent: AtomicU64::new(0),
                        bytes_received: AtomicU64::new(0),
                        wait_us: AtomicU64::new(0),
                    })
                })
                .value(),
        )
    }

    /// Every pool, ordered by key.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        let mut all: Vec<_> = self.map.iter().map(|e| Arc::clone(e.value())).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Closes what no longer serves: idle servers past
    /// `server_idle_timeout` (above `min_size`), and every idle server of a
    /// version that `live` no longer holds, whose pool then refuses its
    /// waiting clients. Pools left with neither clients nor servers are
    /// forgotten. Runs each second and at each change of the versions.
    pub async fn sweep(&self, live: Option<&BTreeMap<String, Option<String>>>) {
        for pool in self.all() {
            let gone = live.is_some_and(|live| !live.contains_key(&pool.key.version))
                && !pool.key.version.is_empty();
            if gone && !pool.gone.swap(true, Ordering::Relaxed) {
                tracing::info!(version = %pool.key.version, user = %pool.key.user, database = %pool.key.database, "the pool's version is no longer served; closing its servers");
                pool.available.close();
            }
            for server in pool.take_closable(gone) {
                pool.close(
                    server,
                    if gone {
                        "version removed"
                    } else {
                        "idle timeout"
                    },
                )
                .await;
            }
            if pool.servers() == 0 && pool.clients.load(Ordering::Relaxed) == 0 {
                self.map
                    .remove_if(&pool.key, |_, p| Arc::ptr_eq(p, &pool) && p.servers() == 0);
            }
        }
    }
}

/// When `server` connected, as wall-clock time.
fn server_since(server: &Server) -> std::time::SystemTime {
    std::time::SystemTime::now() - server.created.elapsed()
}

/// Sweeps `pools` each second and at each change of the versions, until
/// the task is aborted (see [`Pools::sweep`]).
pub async fn sweep_loop(
    pools: Arc<Pools>,
    mut versions: tokio::sync::watch::Receiver<super::versions::Snapshot>,
) {
    let mut watching = true;
    loop {
        tokio::select! {
            changed = versions.changed(), if watching => watching = changed.is_ok(),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let live = versions.borrow_and_update().as_ref().map(|v| v.live());
        pools.sweep(live.as_ref()).await;
    }
}

impl Pools {
    /// Closes every idle server (the proxy is stopping).
    pub async fn close_idle(&self) {
        for pool in self.all() {
            pool.available.close();
            let idle = std::mem::take(&mut *pool.idle.lock().expect("not poisoned"));
            for server in idle {
                pool.close(server, "proxy shutdown").await;
            }
        }
    }
}

impl Pool {
    /// Servers alive, idle or lent.
    pub fn servers(&self) -> usize {
        self.servers.load(Ordering::Relaxed)
    }

    /// Every server: (backend pid, idle, when it connected), by pid.
    pub fn server_rows(&self) -> Vec<(i32, bool, std::time::SystemTime)> {
        let idle: std::collections::HashSet<i32> = self
            .idle
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|s| s.pid)
            .collect();
        let mut rows: Vec<_> = self
            .members
            .iter()
            .map(|e| (*e.key(), idle.contains(e.key()), *e.value()))
            .collect();
        rows.sort_by_key(|r| r.0);
        rows
    }

    /// Idle servers.
    pub fn idle(&self) -> usize {
        self.idle.lock().expect("not poisoned").len()
    }

    /// Clients waiting for a server.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().expect("not poisoned").len()
    }

    /// How long the longest-waiting client has waited.
    pub fn longest_wait(&self) -> Duration {
        self.waiters
            .lock()
            .expect("not poisoned")
            .values()
            .next()
            .map(|since| since.elapsed())
            .unwrap_or_default()
    }

    /// True once the pool's version is no longer served.
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Adds `server`, a backend a client's login has just opened, when the
    /// pool has room; else replaces an idle server older than
    /// `server_lifetime`, or closes `server`. Returns whether it joined.
    pub async fn join(&self, server: Server) -> bool {
        if self.gone() {
            self.close_unjoined(server, "version removed").await;
            return false;
        }
        let size = self.settings.size.max(1);
        let reserved = self
            .servers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < size).then_some(n + 1)
            })
            .is_ok();
        if reserved {
            self.members.insert(server.pid, server_since(&server));
            self.put(server);
            return true;
        }
        // Full: a login is the one chance to renew an old server.
        let lifetime = self.settings.server_lifetime;
        let Ok(permit) = self.available.try_acquire() else {
            self.close_unjoined(server, "pool full").await;
            return false;
        };
        let joining = (server.pid, server_since(&server));
        let mut server = Some(server);
        let old = {
            let mut idle = self.idle.lock().expect("not poisoned");
            let oldest = idle
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.created)
                .map(|(i, _)| i);
            match oldest {
                Some(i) if idle[i].created.elapsed() >= lifetime => Some(std::mem::replace(
                    &mut idle[i],
                    server.take().expect("not taken yet"),
                )),
                _ => None,
            }
        };
        drop(permit);
        if let Some(old) = old {
            self.members.remove(&old.pid);
            self.members.insert(joining.0, joining.1);
            old.close("server lifetime").await;
            return true;
        }
        if let Some(server) = server {
            self.close_unjoined(server, "pool full").await;
        }
        false
    }

    async fn close_unjoined(&self, server: Server, why: &str) {
        server.close(why).await;
    }

    /// Waits up to `query_wait_timeout` for an idle server, preferring one
    /// whose socket this thread's runtime drives.
    pub async fn acquire(&self) -> Result<Server, Unavailable> {
        if self.servers() == 0 {
            return Err(Unavailable::Empty);
        }
        let permit: Result<_, ()> = match self.available.try_acquire() {
            Ok(permit) => Ok(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Unavailable::Gone),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
                let since = Instant::now();
                self.waiters.lock().expect("not poisoned").insert(id, since);
                let wait = self.settings.query_wait_timeout;
                let got = tokio::time::timeout(wait, self.available.acquire()).await;
                self.waiters.lock().expect("not poisoned").remove(&id);
                self.wait_us
                    .fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
                match got {
                    Ok(Ok(permit)) => Ok(permit),
                    Ok(Err(_)) => return Err(Unavailable::Gone),
                    Err(_) if self.servers() == 0 => return Err(Unavailable::Empty),
                    Err(_) => {
                        tracing::warn!(
                            version = %self.key.version,
                            user = %self.key.user,
                            servers = self.servers(),
                            idle = self.idle(),
                            active = self.active.load(Ordering::Relaxed),
                            waiting = self.waiting(),
                            "a client waited query_wait_timeout for a server in vain"
                        );
                        return Err(Unavailable::Timeout(wait));
                    }
                }
            }
        };
        permit.expect("handled above").forget();
        let here = std::thread::current().id();
        let mut idle = self.idle.lock().expect("not poisoned");
        if idle.is_empty() {
            // The sweep took the servers of a version that is gone.
            return Err(Unavailable::Gone);
        }
        let at = idle
            .iter()
            .rposition(|s| s.thread == here)
            .unwrap_or(idle.len() - 1);
        Ok(idle.swap_remove(at))
    }

    /// Gives back a server whose client's transaction is over.
    pub fn release(&self, mut server: Server) {
        server.idle_since = Instant::now();
        self.put(server);
    }

    fn put(&self, server: Server) {
        self.idle.lock().expect("not poisoned").push(server);
        self.available.add_permits(1);
    }

    /// Closes a lent server that cannot go back (its transaction could not
    /// be ended, its version is gone, its connection failed).
    pub async fn close(&self, server: Server, why: &str) {
        self.servers.fetch_sub(1, Ordering::AcqRel);
        self.members.remove(&server.pid);
        server.close(why).await;
    }

    /// Idle servers to close now: all of them when the version is `gone`,
    /// else those idle past `server_idle_timeout`, above `min_size`.
    fn take_closable(&self, gone: bool) -> Vec<Server> {
        let timeout = self.settings.server_idle_timeout;
        let mut taken = Vec::new();
        let mut idle = self.idle.lock().expect("not poisoned");
        let mut i = 0;
        while i < idle.len() {
            let keep = !gone
                && (idle[i].idle_since.elapsed() < timeout
                    || self.servers() - taken.len() <= self.settings.min_size);
            if keep {
                i += 1;
                continue;
            }
            // A permit per idle server: take one with the server, unless
            // a client is taking it right now.
            match self.available.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) if gone => {}
                Err(_) => break,
            }
            taken.push(idle.swap_remove(i));
        }
        taken
    }
}
