//! Backfill: converts existing rows in keyset batches over the primary key
//! (else a unique NOT NULL key, else ctid page ranges). Each batch is its own
//! short transaction that also stores its checkpoint, so an interrupted
//! backfill resumes where it stopped. Batches stop at the largest key that
//! existed when the backfill began: rows written since went through the
//! dual-write trigger already, so the backfill finishes however fast clients
//! insert. The batch size adapts toward a target batch time.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::lag::{CHECK_EVERY, LagWatch, Lagging};
use super::pace::Pace;
use super::plan::BackfillSpec;
use crate::quote::{ident, literal, qualified};
use crate::state::backfill::{self as checkpoints, save_checkpoint_cte};

/// Backfill tuning from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Rows in the first batch and the most in any batch.
    pub batch_size: i64,
    /// The time one batch should take: the batch size moves toward it.
    /// Short batches keep each burst of writes (and the row locks it
    /// holds) short, which is what the clients' tail latency feels.
    pub batch_time: Duration,
    /// Pause between batches.
    pub batch_delay: Duration,
    /// `lock_timeout` for each batch.
    pub lock_timeout: Duration,
    /// How long batches keep retrying behind row locks before the
    /// backfill gives up (`--ddl-timeout`).
    pub ddl_timeout: Duration,
    /// Batches pause while a streaming replica lags more than this
    /// (`--max-replica-lag`; zero: not watched).
    pub max_replica_lag: Duration,
    /// Keep `batch_time` and `batch_delay` as given instead of adapting
    /// them to the clients' latency ([`super::pace`]).
    pub fixed_pace: bool,
    /// The adaptive pace keeps clients' p99 within this factor of its
    /// level before the backfill.
    pub max_latency_factor: f64,
}

impl Tuning {
    /// The pace these settings give.
    pub fn pace(&self) -> Pace {
        if self.fixed_pace {
            Pace::fixed(self.batch_time, self.batch_delay, self.batch_size.max(1))
        } else {
            Pace::adaptive(
                self.batch_time,
                self.batch_delay,
                self.batch_size,
                self.max_latency_factor,
            )
        }
    }
}

/// A batch's own time on the server, in seconds (float8): the batch size
/// adapts to this rather than to the round trip, so that a distant
/// database does not shrink batches to nothing. Evaluated last, after the
/// batch's CTEs have run.
pub(super) const SERVER_TIME: &str =
    "extract(epoch FROM clock_timestamp() - statement_timestamp())::float8";

/// Sets the session's `plan_cache_mode` to `mode` (`force_generic_plan`,
/// or `auto` to undo it) on servers that have it (Postgres 12 and later); a
/// no-op elsewhere.
fn plan_cache_mode(mode: &str) -> String {
    format!(
        "SELECT set_config('plan_cache_mode', '{mode}', false) \
         WHERE current_setting('server_version_num')::int >= 120000"
    )
}

/// Which keyset batch: the first, from the start of the key, or a later
/// one, after the last key done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    First,
    After,
}

/// The SQL of one keyset batch, checkpoint included, so that a batch is a
/// single statement (one round trip, its own transaction). Parameters, in
/// order: the last key done (text[], only for [`Batch::After`]), the upper
/// bound (text[]), the batch size, then the schema, version and table of
/// the checkpoint row. It returns the rows updated, the batch's last key
/// (NULL when no row was left) and the batch's [`SERVER_TIME`].
pub fn keyset_batch_sql(spec: &BackfillSpec, batch: Batch) -> String {
    let with_lower = batch == Batch::After;
    let table = qualified(&spec.schema, &spec.table);
    let keys: Vec<String> = spec.key.iter().map(|(k, _)| ident(k)).collect();
    let aliases: Vec<String> = (0..keys.len()).map(|i| format!("_pgshift_k{i}")).collect();
    let bound = |param: usize| {
        let parts: Vec<String> = spec
            .key
            .iter()
            .enumerate()
            .map(|(i, (_, type_))| format!("(${param}::text[])[{}]::{type_}", i + 1))
            .collect();
        format!("({})", parts.join(", "))
    };
    let row = format!("({})", keys.join(", "));
    let upper = if with_lower { 2 } else { 1 };
    let mut filter = format!("{row} <= {}", bound(upper));
    if with_lower {
        filter = format!("{row} > {} AND {filter}", bound(1));
    }
    let select: Vec<String> = keys
        .iter()
        .zip(&aliases)
        .map(|(k, a)| format!("{k} AS {a}"))
        .collect();
    let last: Vec<String> = aliases.iter().map(|a| format!("{a}::text")).collect();
    let desc: Vec<String> = aliases.iter().map(|a| format!("{a} DESC")).collect();
    // The update takes the batch's key range, from after the last key done
    // to the batch's last key: one range scan of the key's index rather
    // than a lookup per row of the batch.
    let t_row = format!(
        "({})",
        keys.iter()
            .map(|k| format!("t.{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut range = format!("{t_row} <= (SELECT {} FROM hi)", aliases.join(", "));
    if with_lower {
        range = format!("{t_row} > {} AND {range}", bound(1));
    }
    format!(
        "WITH batch AS (SELECT {} FROM ONLY {table} WHERE {filter} ORDER BY {} LIMIT ${}), \
         hi AS (SELECT {} FROM batch ORDER BY {} LIMIT 1), \
         updated AS (UPDATE ONLY {table} AS t SET {} WHERE {range} RETURNING 1), \
         last AS (SELECT ARRAY[{}] AS k FROM hi), {} \
         SELECT (SELECT count(*) FROM updated), (SELECT k FROM last), {SERVER_TIME}",
        select.join(", "),
        keys.join(", "),
        upper + 1,
        aliases.join(", "),
        desc.join(", "),
        assignments(spec, &ident(&spec.touch)),
        last.join(", "),
        save_checkpoint_cte(upper + 2, upper + 3, upper + 4),
    )
}

/// The SQL of one ctid batch over pages `[$1, $2)`, checkpoint (`$2`)
/// included; `$3`, `$4`, `$5` are the schema, version and table of the
/// checkpoint row. Returns what a keyset batch returns: the rows updated,
/// the batch's last page (`$2`, as text[]) and its [`SERVER_TIME`].
pub fn ctid_batch_sql(spec: &BackfillSpec) -> String {
    let table = qualified(&spec.schema, &spec.table);
    format!(
        "WITH updated AS (UPDATE ONLY {table} AS t SET {} \
         WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid RETURNING 1), \
         last AS (SELECT ARRAY[$2::bigint::text] AS k), {} \
         SELECT (SELECT count(*) FROM updated), (SELECT k FROM last), {SERVER_TIME}",
        assignments(spec, &ident(&spec.touch)),
        save_checkpoint_cte(3, 4, 5),
    )
}

/// `SET` list: the spec's assignments, or a no-op write of `touch` that fires the trigger.
fn assignments(spec: &BackfillSpec, touch: &str) -> String {
    if spec.set.is_empty() {
        format!("{touch} = t.{touch}")
    } else {
        spec.set
            .iter()
            .map(|(col, expr)| format!("{} = {expr}", ident(col)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The next batch size: toward `target` (`--backfill-batch-time`), at
/// most doubling or halving at once, between 10 rows (or `max`, if
/// smaller) and `max`, the configured `--backfill-batch-size`.
pub fn next_batch_size(size: i64, took: Duration, max: i64, target: Duration) -> i64 {
    let ratio = target.as_secs_f64() / took.as_secs_f64().max(1e-5);
    let floor = 10.min(max) as f64;
    ((size as f64) * ratio.clamp(0.5, 2.0))
        .round()
        .clamp(floor, max as f64) as i64
}

/// Progress output: a bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    table: String,
    last_line: Instant,
}

impl Progress {
    fn new(table: &str, total: u64, done: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total.max(done));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "backfill {msg} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(table.to_string());
            bar.set_position(done);
            bar
        });
        Progress {
            bar,
            table: table.to_string(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, done: u64, batch: i64) {
        match &self.bar {
            Some(bar) => {
                if done > bar.length().unwrap_or(0) {
                    bar.set_length(done);
                }
                bar.set_position(done);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                tracing::info!(table = %self.table, rows = done, batch_size = batch, "backfill progress");
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    /// Shows what holds the backfill back (`None`: nothing any more).
    fn held_by(&self, lagging: Option<&Lagging>) {
        if let Some(bar) = &self.bar {
            match lagging {
                Some(l) => bar.set_message(format!("{} (paused: {l})", self.table)),
                None => bar.set_message(self.table.clone()),
            }
        }
    }

    fn finish(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        tracing::info!(table = %self.table, rows = done, "backfill done");
    }
}

/// Runs (or resumes) the backfill of `spec` for migration `version`.
/// Errors: any SQL error of a batch other than a lock timeout, which is retried.
pub async fn run(
    client: &mut Client,
    schema: &str,
    version: &str,
    spec: &BackfillSpec,
    tuning: Tuning,
) -> Result<u64, tokio_postgres::Error> {
    let checkpoint = checkpoints::checkpoint(client, schema, version, &spec.table).await?;
    if checkpoint.done {
        return Ok(checkpoint.rows_done);
    }
    let upper = match checkpoint.upper_key {
        Some(upper) => upper,
        None => {
            let bound = upper_bound(client, spec).await?;
            checkpoints::set_upper_key(client, schema, version, &spec.table, &bound).await?;
            bound
        }
    };
    let (estimate, rows_per_page) = estimates(client, spec).await?;
    tracing::info!(table = %spec.table, rows_done = checkpoint.rows_done, "backfill starting");
    let mut batches = Batches {
        schema,
        version,
        spec,
        tuning,
        upper,
        rows_per_page,
        last: checkpoint.last_key,
        done_rows: checkpoint.rows_done,
        progress: Progress::new(&spec.table, estimate, checkpoint.rows_done),
        lag: LagWatch::new(tuning.max_replica_lag),
        pace: tuning.pace(),
    };
    // One lock_timeout for the whole loop: each batch is a single statement.
    // A generic plan: by default Postgres plans every execution of the
    // prepared batch anew (a custom plan, about 0.1 ms of the backend's CPU
    // here), which costs more than a short batch's own work and lengthens
    // the burst that clients wait behind. The generic plan is the one a
    // keyset batch wants whatever its bounds: a range scan of the key's
    // index, then an index lookup per row. (plan_cache_mode: Postgres 12.)
    client
        .batch_execute(&format!(
            "SET lock_timeout = '{}ms'; {}",
            tuning.lock_timeout.as_millis(),
            plan_cache_mode("force_generic_plan")
        ))
        .await?;
    let outcome = batches.run(client).await;
    let reset = client
        .batch_execute(&format!("RESET lock_timeout; {}", plan_cache_mode("auto")))
        .await;
    outcome?;
    reset?;
    checkpoints::mark_done(client, schema, version, &spec.table).await?;
    batches.progress.finish(batches.done_rows);
    Ok(batches.done_rows)
}

/// The heap pages of `table` (qualified) now: where ctid batches stop.
pub(super) async fn pages(client: &Client, table: &str) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT (pg_relation_size($1::text::regclass) / current_setting('block_size')::int)::int8",
            &[&table],
        )
        .await?
        .get(0))
}

/// Where the backfill of `spec` stops, as an expression of type text[]:
/// the largest key that exists now, or for ctid batches the table's page
/// count (empty for an empty table). Rows written later are not the
/// backfill's: the dual-write trigger converts them (pgroll #652).
pub fn bound_expression(spec: &BackfillSpec) -> String {
    let table = qualified(&spec.schema, &spec.table);
    if spec.key.is_empty() {
        return format!(
            "ARRAY[(pg_relation_size({}::regclass) / current_setting('block_size')::int)::text]",
            literal(&table)
        );
    }
    let keys: Vec<String> = spec.key.iter().map(|(k, _)| ident(k)).collect();
    let as_text: Vec<String> = keys.iter().map(|k| format!("{k}::text")).collect();
    let desc: Vec<String> = keys.iter().map(|k| format!("{k} DESC")).collect();
    format!(
        "coalesce((SELECT ARRAY[{}] FROM ONLY {table} ORDER BY {} LIMIT 1), '{{}}')",
        as_text.join(", "),
        desc.join(", ")
    )
}

/// SQL that records [`bound_expression`] as the upper bound of the
/// backfill of `spec` in migration `version`, unless its batches have
/// begun. Run in the transaction that creates the table's dual-write
/// trigger, whose lock waits out every writer of the table: the bound
/// then covers exactly the rows written before the trigger.
pub fn record_bound_sql(spec: &BackfillSpec, version: &str) -> String {
    format!(
        "INSERT INTO pgshift.backfill (schema_name, version, table_name, upper_key) \
         VALUES ({}, {}, {}, {}) ON CONFLICT (schema_name, version, table_name) \
         DO UPDATE SET upper_key = EXCLUDED.upper_key WHERE pgshift.backfill.last_key IS NULL",
        literal(&spec.schema),
        literal(version),
        literal(&spec.table),
        bound_expression(spec)
    )
}

/// Where the backfill of `spec` stops when no trigger recorded it.
async fn upper_bound(
    client: &Client,
    spec: &BackfillSpec,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let sql = format!("SELECT {}", bound_expression(spec));
    Ok(client.query_one(sql.as_str(), &[]).await?.get(0))
}

/// The planner's estimates for the table of `spec`: its rows (for the
/// progress bar) and, for ctid batches, rows per page (1 for keyset ones).
async fn estimates(
    client: &Client,
    spec: &BackfillSpec,
) -> Result<(u64, f64), tokio_postgres::Error> {
    let table = qualified(&spec.schema, &spec.table);
    let row = client
        .query_one(
            "SELECT greatest(reltuples, 0)::float8, \
                    greatest(reltuples, 1)::float8 / greatest(relpages, 1)::float8 \
             FROM pg_class WHERE oid = $1::text::regclass",
            &[&table],
        )
        .await?;
    let rows_per_page = if spec.key.is_empty() {
        row.get::<_, f64>(1).max(1.0)
    } else {
        1.0
    };
    Ok((row.get::<_, f64>(0) as u64, rows_per_page))
}

/// The batch loop of one backfill and where it stands.
struct Batches<'a> {
    schema: &'a str,
    version: &'a str,
    spec: &'a BackfillSpec,
    tuning: Tuning,
    /// The key (or page, for ctid batches) at which the backfill stops.
    upper: Vec<String>,
    /// Rows per heap page, to size ctid batches.
    rows_per_page: f64,
    /// The checkpoint: the last key (or page) done.
    last: Option<Vec<String>>,
    done_rows: u64,
    progress: Progress,
    lag: LagWatch,
    pace: Pace,
}

impl Batches<'_> {
    /// Adapts the pace to the clients' latency ([`Pace::look`]); when what
    /// holds the backfill back changes, says so in the log, on the
    /// progress bar and in the checkpoint row.
    async fn follow_clients(&mut self, client: &Client) -> Result<(), tokio_postgres::Error> {
        if !self.pace.look(client, self.schema).await? {
            return Ok(());
        }
        let (schema, version, table) = (self.schema, self.version, &self.spec.table);
        match self.pace.holding() {
            Some(why) => tracing::warn!(
                table = %table,
                batch_time_us = self.pace.batch_time().as_micros() as u64,
                delay_ms = self.pace.delay().as_millis() as u64,
                "backfill slowed: {why}"
            ),
            None => {
                tracing::info!(table = %table, "backfill speeding up: client latency is back within --max-latency-factor")
            }
        }
        if let Some(bar) = &self.progress.bar {
            match self.pace.holding() {
                Some(why) => bar.set_message(format!("{table} (slowed: {why})")),
                None => bar.set_message(table.clone()),
            }
        }
        checkpoints::set_held_by(client, schema, version, table, self.pace.holding()).await?;
        Ok(())
    }

    /// Waits while a streaming replica lags past `--max-replica-lag`,
    /// saying so in the log, on the progress bar and in the checkpoint row
    /// (`status` shows it), until it falls back under the limit.
    async fn wait_for_replicas(&mut self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let Some(first) = self.lag.lagging(client).await? else {
            return Ok(());
        };
        let (schema, version, table) = (self.schema, self.version, &self.spec.table);
        let began = Instant::now();
        tracing::warn!(
            table = %table,
            replica = %first.replica,
            lag_ms = first.lag.as_millis() as u64,
            unreplayed_bytes = first.bytes,
            limit_ms = self.tuning.max_replica_lag.as_millis() as u64,
            "backfill paused: a replica lags more than --max-replica-lag"
        );
        let mut current = Some(first);
        while let Some(lagging) = current {
            self.progress.held_by(Some(&lagging));
            checkpoints::set_held_by(client, schema, version, table, Some(&lagging.to_string()))
                .await?;
            tokio::time::sleep(CHECK_EVERY).await;
            current = self.lag.lagging(client).await?;
        }
        self.progress.held_by(None);
        checkpoints::set_held_by(client, schema, version, table, self.pace.holding()).await?;
        tracing::info!(
            table = %table,
            paused_ms = began.elapsed().as_millis() as u64,
            "backfill resumed: replica lag is back under --max-replica-lag"
        );
        Ok(())
    }

    /// Runs batches until none is left. Each batch is one statement that
    /// also saves its checkpoint, so it commits or rolls back whole.
    /// Errors: any SQL error other than a lock timeout, which is retried
    /// with backoff until `ddl_timeout` has passed since the first of a
    /// run of them.
    async fn run(&mut self, client: &Client) -> Result<(), tokio_postgres::Error> {
        use tokio_postgres::types::ToSql;
        let (schema, version, spec) = (self.schema, self.version, self.spec);
        let page = |l: &[String]| l.first().and_then(|p| p.parse::<i64>().ok()).unwrap_or(0);
        let last_page = page(&self.upper);
        // Prepared once: a batch costs an execution, not a parse and plan.
        // Keyset batches have a first form, without a lower bound.
        let (first, next) = if spec.key.is_empty() {
            (None, client.prepare(&ctid_batch_sql(spec)).await?)
        } else {
            (
                Some(
                    client
                        .prepare(&keyset_batch_sql(spec, Batch::First))
                        .await?,
                ),
                client
                    .prepare(&keyset_batch_sql(spec, Batch::After))
                    .await?,
            )
        };
        // Before the first batch: the clients' latency now is the level
        // the adaptive pace keeps them near.
        self.follow_clients(client).await?;
        let mut size = self.tuning.batch_size.max(1);
        let mut attempt = 0u32;
        let mut blocked_since: Option<tokio::time::Instant> = None;
        loop {
            let from = self.last.as_deref().map_or(0, page);
            if self.upper.is_empty() || (spec.key.is_empty() && from >= last_page) {
                return Ok(());
            }
            self.wait_for_replicas(client).await?;
            self.follow_clients(client).await?;
            // ctid: pages [from, to); keyset: after the last key, up to the bound.
            let to =
                (from + ((size as f64) / self.rows_per_page).ceil().max(1.0) as i64).min(last_page);
            let checkpoint: [&(dyn ToSql + Sync); 3] = [&schema, &version, &spec.table];
            let (statement, mut params): (_, Vec<&(dyn ToSql + Sync)>) =
                match (spec.key.is_empty(), &self.last) {
                    (true, _) => (&next, vec![&from, &to]),
                    (false, Some(last)) => (&next, vec![last, &self.upper, &size]),
                    (false, None) => (
                        first.as_ref().expect("prepared for keyset batches"),
                        vec![&self.upper, &size],
                    ),
                };
            params.extend(checkpoint);
            let (updated, next_key, took) = match client.query_one(statement, &params).await {
                Ok(row) => (
                    row.get::<_, i64>(0),
                    row.get::<_, Option<Vec<String>>>(1),
                    row.get::<_, f64>(2),
                ),
                Err(e)
                    if super::ddl::is_lock_timeout(&e)
                        && blocked_since
                            .get_or_insert_with(tokio::time::Instant::now)
                            .elapsed()
                            < self.tuning.ddl_timeout =>
                {
                    attempt += 1;
                    let delay = super::ddl::backoff(attempt);
                    tracing::warn!(table = %spec.table, attempt, delay_ms = delay.as_millis() as u64, "backfill batch hit lock_timeout; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            attempt = 0;
            blocked_since = None;
            // An empty keyset batch: nothing left up to the bound.
            let Some(next_key) = next_key else {
                return Ok(());
            };
            self.done_rows += updated as u64;
            self.last = Some(next_key);
            self.progress.update(self.done_rows, size);
            size = next_batch_size(
                size,
                Duration::from_secs_f64(took.max(0.0)),
                self.pace.max_batch(),
                self.pace.batch_time(),
            );
            if !self.pace.delay().is_zero() {
                tokio::time::sleep(self.pace.delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
