//! Replica lag, as the backfill paces on it (README.md, "Replica lag"): a
//! backfill writes WAL as fast as a bulk UPDATE, and a streaming replica
//! that cannot replay it as fast falls behind, so the backfill pauses while
//! any replica lags more than `--max-replica-lag`.
//!
//! A replica's lag is the larger of two measures. One is the `replay_lag`
//! that `pg_stat_replication` reports (PostgreSQL docs, "The Statistics
//! Collector", `pg_stat_replication`): the time between the primary
//! flushing recent WAL and the standby replaying it. It stops moving when
//! replay stops, since it is measured from the standby's replies. The other
//! is measured here from WAL positions: each check samples
//! `pg_current_wal_lsn()`, and a replica whose `replay_lsn` is behind a
//! sample taken at time `t` has not replayed what existed at `t`, so it
//! lags at least `now - t`. That one keeps growing while replay is paused
//! or the standby is stalled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// How often the backfill looks at the replicas, at most.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The replica furthest behind, when one lags past the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Lagging {
    /// Its `application_name` (the standby's `cluster_name` or its
    /// `primary_conninfo`'s application_name), else its client address.
    pub replica: String,
    pub lag: Duration,
    /// WAL bytes not yet replayed.
    pub bytes: u64,
}

impl std::fmt::Display for Lagging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replica lag: {} is {:.1}s behind ({} KiB of WAL not replayed)",
            self.replica,
            self.lag.as_secs_f64(),
            self.bytes / 1024
        )
    }
}

/// Watches the replicas of the primary `client` is connected to.
pub struct LagWatch {
    limit: Duration,
    /// (when, `pg_current_wal_lsn()` in bytes), oldest first; samples
    /// every replica has replayed are pruned.
    samples: VecDeque<(Instant, f64)>,
    last_check: Option<Instant>,
    last_answer: Option<Lagging>,
    hidden_warned: bool,
}

impl LagWatch {
    /// A watch with `limit` (zero: never lagging).
    pub fn new(limit: Duration) -> LagWatch {
        LagWatch {
            limit,
            samples: VecDeque::new(),
            last_check: None,
            last_answer: None,
            hidden_warned: false,
        }
    }

    /// The replica furthest behind if it lags more than the limit, looking
    /// again only when [`CHECK_EVERY`] has passed since the last look.
    /// Replicas whose positions the role may not see (it needs
    /// `pg_read_all_stats`) are skipped, with one warning.
    pub async fn lagging(
        &mut self,
        client: &Client,
    ) -> Result<Option<Lagging>, tokio_postgres::Error> {
        if self.limit.is_zero() {
            return Ok(None);
        }
        if self.last_check.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return Ok(self.last_answer.clone());
        }
        let now = Instant::now();
        self.last_check = Some(now);
        let current: f64 = client
            .query_one(
                "SELECT CASE WHEN pg_is_in_recovery() THEN NULL \
                 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 END",
                &[],
            )
            .await?
            .get::<_, Option<f64>>(0)
            .unwrap_or(0.0);
        self.samples.push_back((now, current));
        let rows = client
            .query(
                "SELECT coalesce(nullif(application_name, ''), client_addr::text, 'pid ' || pid), \
                        pg_wal_lsn_diff(replay_lsn, '0/0')::float8, \
                        extract(epoch FROM replay_lag)::float8 \
                 FROM pg_stat_replication",
                &[],
            )
            .await?;
        let mut worst: Option<Lagging> = None;
        let mut least_replayed = current;
        for row in rows {
            let replica: String = row.get(0);
            let Some(replayed) = row.get::<_, Option<f64>>(1) else {
                if !self.hidden_warned {
                    tracing::warn!(replica = %replica, "cannot see this replica's replay position; grant pg_read_all_stats to the migrator's role so the backfill can pace on replica lag");
                    self.hidden_warned = true;
                }
                continue;
            };
            least_replayed = least_replayed.min(replayed);
            let reported = row
                .get::<_, Option<f64>>(2)
                .map(|s| Duration::from_secs_f64(s.max(0.0)))
                .unwrap_or_default();
            let measured = self
                .samples
                .iter()
                .find(|(_, lsn)| *lsn > replayed)
                .map(|(t, _)| now.duration_since(*t))
                .unwrap_or_default();
            let lag = reported.max(measured);
            if worst.as_ref().is_none_or(|w| lag > w.lag) {
                worst = Some(Lagging {
                    replica,
                    lag,
                    bytes: (current - replayed).max(0.0) as u64,
                });
            }
        }
        // Keep only samples some replica has not replayed, and the newest.
        while self.samples.len() > 1 && self.samples[1].1 <= least_replayed {
            self.samples.pop_front();
        }
        let answer = worst.filter(|w| w.lag > self.limit);
        self.last_answer = answer.clone();
        Ok(answer)
    }
}
