//! The settings every migration command takes ([`Settings`], with the one
//! place their defaults are written) and what `complete` and `rollback` are
//! told to do about pinned sessions and verification.

use std::time::Duration;

/// The time one backfill batch aims at where the adaptive pace starts, and
/// the fixed pace's when only `--backfill-batch-delay` is given. Under
/// load, clients' tail latency follows the length of each burst of
/// backfill work more than the backfill's rate: a client woken on a core
/// that a batch holds waits for it (bench/README.md, "A migration under
/// live load").
pub const BATCH_TIME: Duration = Duration::from_micros(500);

/// The pause after each backfill batch where the adaptive pace starts, and
/// the fixed pace's when only `--backfill-batch-time` is given.
pub const BATCH_DELAY: Duration = Duration::from_millis(2);

/// Settings every migration command takes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    /// The physical schema migrations apply to.
    pub schema: String,
    pub lock_timeout: Duration,
    /// The most rows in one backfill batch.
    pub batch_size: i64,
    /// The time one backfill batch should take (the batch size adapts).
    pub batch_time: Duration,
    /// The pause after each backfill batch.
    pub batch_delay: Duration,
    /// How long `start` waits for the old version's sessions to move onto
    /// its views (each moves at its first moment outside a transaction).
    pub session_move_timeout: Duration,
    /// How long one DDL step keeps retrying behind locks it cannot get
    /// before the command stops, naming what blocks it.
    pub ddl_timeout: Duration,
    /// How long `start` waits for every live proxy to serve the new version.
    pub proxy_timeout: Duration,
    /// The backfill pauses while a streaming replica lags more than this
    /// (zero: not watched).
    pub max_replica_lag: Duration,
    /// `start` runs a migration that lint finds errors in (start's
    /// `--allow-unsafe`); false by default.
    pub allow_unsafe: bool,
    /// Give the version schemas a plain view of every table the migration
    /// does not touch too, as pgroll's hold (`--pass-through-views`), for
    /// clients that set their search_path to a version schema alone.
    pub pass_through_views: bool,
    /// The backfill keeps clients' p99 within this factor of its level
    /// before the backfill ([`super::pace`]).
    pub max_latency_factor: f64,
    /// The backfill's pace is `batch_time` and `batch_delay` as they are
    /// (set when either is given), not adaptive.
    pub fixed_pace: bool,
}

impl Settings {
    /// The defaults for `database_url`, the one place they are written:
    /// schema `public`; lock_timeout 500 ms; backfill batches of at most
    /// 1000 rows that aim at [`BATCH_TIME`], with [`BATCH_DELAY`] between
    /// them; 30 s for sessions to move; 10 min for a DDL step behind locks;
    /// 10 s for the proxies to serve a new version; backfill paused while
    /// a replica lags over 1 s.
    pub fn new(database_url: String) -> Settings {
        Settings {
            database_url,
            schema: "public".into(),
            lock_timeout: Duration::from_millis(500),
            batch_size: 1000,
            batch_time: BATCH_TIME,
            batch_delay: BATCH_DELAY,
            session_move_timeout: Duration::from_secs(30),
            ddl_timeout: Duration::from_secs(600),
            proxy_timeout: Duration::from_secs(10),
            max_replica_lag: Duration::from_secs(1),
            allow_unsafe: false,
            pass_through_views: false,
            max_latency_factor: 2.0,
            fixed_pace: false,
        }
    }
}

/// What `complete` and `rollback` do about live sessions pinned to the
/// version they remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// Refuse, listing the sessions (the default).
    Refuse,
    /// End them, each client told which command removed its version
    /// (`--force`).
    End,
}

/// Whether `complete` verifies the rows before it contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Verify, refusing on any mismatch (the default).
    Verify,
    /// Contract without verifying (`--skip-verify`).
    Skip,
}
