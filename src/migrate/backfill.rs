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

use super::plan::BackfillSpec;
use crate::quote::{ident, qualified};

/// The time one batch should take; the batch size moves toward it.
pub const TARGET_BATCH_TIME: Duration = Duration::from_millis(200);

/// Backfill tuning from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Rows in the first batch and the most in any batch; slower batches
    /// shrink toward [`TARGET_BATCH_TIME`].
    pub batch_size: i64,
    /// Pause between batches.
    pub batch_delay: Duration,
    /// `lock_timeout` for each batch.
    pub lock_timeout: Duration,
}

/// The SQL of one keyset batch. Parameters, in order: the last key done
/// (text[], only when `with_lower`), the upper bound (text[]), the batch
/// size. It returns the rows updated and the batch's last key.
pub fn keyset_batch_sql(spec: &BackfillSpec, with_lower: bool) -> String {
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
    let join: Vec<String> = keys
        .iter()
        .zip(&aliases)
        .map(|(k, a)| format!("t.{k} = batch.{a}"))
        .collect();
    let last: Vec<String> = aliases.iter().map(|a| format!("{a}::text")).collect();
    let desc: Vec<String> = aliases.iter().map(|a| format!("{a} DESC")).collect();
    format!(
        "WITH batch AS (SELECT {} FROM ONLY {table} WHERE {filter} ORDER BY {} LIMIT ${}), \
         updated AS (UPDATE ONLY {table} AS t SET {} FROM batch WHERE {} RETURNING 1) \
         SELECT (SELECT count(*) FROM updated), (SELECT ARRAY[{}] FROM batch ORDER BY {} LIMIT 1)",
        select.join(", "),
        keys.join(", "),
        upper + 1,
        assignments(spec, &keys[0]),
        join.join(" AND "),
        last.join(", "),
        desc.join(", ")
    )
}

/// The SQL of one ctid batch over pages `[$1, $2)`; returns rows updated.
pub fn ctid_batch_sql(spec: &BackfillSpec) -> String {
    let table = qualified(&spec.schema, &spec.table);
    format!(
        "WITH updated AS (UPDATE ONLY {table} AS t SET {} \
         WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid RETURNING 1) \
         SELECT count(*) FROM updated",
        assignments(spec, &ident(&spec.touch))
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

/// The next batch size: toward [`TARGET_BATCH_TIME`], at most doubling or
/// halving at once, between 10 rows (or `max`, if smaller) and `max`, the
/// configured `--backfill-batch-size`.
pub fn next_batch_size(size: i64, took: Duration, max: i64) -> i64 {
    let ratio = TARGET_BATCH_TIME.as_secs_f64() / took.as_secs_f64().max(1e-4);
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
    client
        .execute(
            "INSERT INTO pgshift.backfill (schema_name, version, table_name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&schema, &version, &spec.table],
        )
        .await?;
    let state = client
        .query_one(
            "SELECT last_key, upper_key, rows_done, done FROM pgshift.backfill
             WHERE schema_name = $1 AND version = $2 AND table_name = $3",
            &[&schema, &version, &spec.table],
        )
        .await?;
    let mut last: Option<Vec<String>> = state.get(0);
    let mut upper: Option<Vec<String>> = state.get(1);
    let mut done_rows = state.get::<_, i64>(2) as u64;
    if state.get::<_, bool>(3) {
        return Ok(done_rows);
    }
    let table = qualified(&spec.schema, &spec.table);
    let estimate: f32 = client
        .query_one(
            "SELECT greatest(reltuples, 0)::float4 FROM pg_class WHERE oid = $1::text::regclass",
            &[&table],
        )
        .await?
        .get(0);
    if upper.is_none() {
        let bound: Vec<String> = if spec.key.is_empty() {
            let pages: i64 = client
                .query_one(
                    "SELECT (pg_relation_size($1::text::regclass) / current_setting('block_size')::int)::int8",
                    &[&table],
                )
                .await?
                .get(0);
            vec![pages.to_string()]
        } else {
            let keys: Vec<String> = spec.key.iter().map(|(k, _)| ident(k)).collect();
            let as_text: Vec<String> = keys.iter().map(|k| format!("{k}::text")).collect();
            let desc: Vec<String> = keys.iter().map(|k| format!("{k} DESC")).collect();
            let sql = format!(
                "SELECT ARRAY[{}] FROM ONLY {table} ORDER BY {} LIMIT 1",
                as_text.join(", "),
                desc.join(", ")
            );
            match client.query_opt(sql.as_str(), &[]).await? {
                Some(row) => row.get(0),
                None => Vec::new(),
            }
        };
        client
            .execute(
                "UPDATE pgshift.backfill SET upper_key = $4 WHERE schema_name = $1 AND version = $2 AND table_name = $3",
                &[&schema, &version, &spec.table, &bound],
            )
            .await?;
        upper = Some(bound);
    }
    let upper = upper.expect("set above");
    tracing::info!(table = %spec.table, rows_done = done_rows, "backfill starting");
    let mut progress = Progress::new(&spec.table, estimate as u64, done_rows);
    let mut size = tuning.batch_size.max(1);
    let rows_per_page = if spec.key.is_empty() {
        let row = client
            .query_one(
                "SELECT greatest(reltuples, 1)::float8 / greatest(relpages, 1)::float8 FROM pg_class WHERE oid = $1::text::regclass",
                &[&table],
            )
            .await?;
        row.get::<_, f64>(0).max(1.0)
    } else {
        1.0
    };
    let mut attempt = 0u32;
    loop {
        let finished = upper.is_empty()
            || (spec.key.is_empty()
                && last
                    .as_ref()
                    .and_then(|l| l[0].parse::<i64>().ok())
                    .unwrap_or(0)
                    >= upper[0].parse::<i64>().unwrap_or(0));
        if finished {
            break;
        }
        let started = Instant::now();
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}ms'",
            tuning.lock_timeout.as_millis()
        ))
        .await?;
        let outcome = if spec.key.is_empty() {
            let from: i64 = last.as_ref().and_then(|l| l[0].parse().ok()).unwrap_or(0);
            let pages = ((size as f64) / rows_per_page).ceil().max(1.0) as i64;
            let to = (from + pages).min(upper[0].parse().unwrap_or(0));
            tx.query_one(ctid_batch_sql(spec).as_str(), &[&from, &to])
                .await
                .map(|row| (row.get::<_, i64>(0), Some(vec![to.to_string()])))
        } else {
            let sql = keyset_batch_sql(spec, last.is_some());
            let result = match &last {
                Some(l) => tx.query_one(sql.as_str(), &[l, &upper, &size]).await,
                None => tx.query_one(sql.as_str(), &[&upper, &size]).await,
            };
            result.map(|row| (row.get::<_, i64>(0), row.get::<_, Option<Vec<String>>>(1)))
        };
        let (updated, next) = match outcome {
            Ok(outcome) => outcome,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                    && attempt < 30 =>
            {
                drop(tx);
                attempt += 1;
                let delay = super::ddl::backoff(attempt);
                tracing::warn!(table = %spec.table, attempt, delay_ms = delay.as_millis() as u64, "backfill batch hit lock_timeout; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        attempt = 0;
        let Some(next) = next else {
            // An empty keyset batch: nothing left up to the bound.
            tx.commit().await?;
            break;
        };
        done_rows += updated as u64;
        tx.execute(
            "UPDATE pgshift.backfill SET last_key = $4, rows_done = rows_done + $5, batches = batches + 1, updated_at = now()
             WHERE schema_name = $1 AND version = $2 AND table_name = $3",
            &[&schema, &version, &spec.table, &next, &updated],
        )
        .await?;
        tx.commit().await?;
        last = Some(next);
        progress.update(done_rows, size);
        size = next_batch_size(size, started.elapsed(), tuning.batch_size.max(1));
        if !tuning.batch_delay.is_zero() {
            tokio::time::sleep(tuning.batch_delay).await;
        }
    }
    client
        .execute(
            "UPDATE pgshift.backfill SET done = true, updated_at = now() WHERE schema_name = $1 AND version = $2 AND table_name = $3",
            &[&schema, &version, &spec.table],
        )
        .await?;
    progress.finish(done_rows);
    Ok(done_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &[(&str, &str)]) -> BackfillSpec {
        BackfillSpec {
            schema: "public".into(),
            table: "Order Items".into(),
            key: key
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            set: Vec::new(),
            touch: "id".into(),
        }
    }

    #[test]
    fn keyset_sql_uses_row_comparison_and_aliases() {
        let sql = keyset_batch_sql(&spec(&[("order", "integer"), ("line", "text")]), true);
        assert!(
            sql.contains(
                r#"("order", "line") > (($1::text[])[1]::integer, ($1::text[])[2]::text)"#
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                r#"("order", "line") <= (($2::text[])[1]::integer, ($2::text[])[2]::text)"#
            ),
            "{sql}"
        );
        assert!(sql.contains(r#"SET "order" = t."order""#), "{sql}");
        assert!(sql.contains(r#"FROM ONLY "public"."Order Items""#), "{sql}");
        let first = keyset_batch_sql(&spec(&[("id", "bigint")]), false);
        assert!(
            first.contains(r#"("id") <= (($1::text[])[1]::bigint)"#) && first.contains("LIMIT $2"),
            "{first}"
        );
    }

    #[test]
    fn batch_size_moves_toward_the_target() {
        assert_eq!(
            next_batch_size(1000, Duration::from_millis(100), 5000),
            2000
        );
        assert_eq!(next_batch_size(1000, Duration::from_millis(800), 5000), 500);
        assert_eq!(next_batch_size(1000, TARGET_BATCH_TIME, 5000), 1000);
        assert_eq!(next_batch_size(10, Duration::from_secs(5), 5000), 10);
        assert_eq!(
            next_batch_size(4000, Duration::from_millis(1), 5000),
            5000,
            "never above the configured size"
        );
        assert_eq!(next_batch_size(5, Duration::from_millis(1), 5), 5);
    }
}
