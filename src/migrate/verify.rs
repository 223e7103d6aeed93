//! Verification before contract: every row of every duplicated column
//! agrees between the two shapes, as the dual-write trigger would have left
//! it (README.md, "Verification before contract"). A row agrees when
//! `duplicate = up(old row)` for all its duplicated columns (last written
//! by the old version, or backfilled) or `original = down(new row)` for all
//! of them (last written by the new version). A row changed behind the
//! trigger's back (triggers disabled, `session_replication_role = replica`)
//! does not, and contracting would silently keep one side of it.
//!
//! The check reads the table in keyset batches (ctid page ranges without a
//! key), each its own statement, paced like the backfill. An `up` or `down`
//! that calls a function that is not IMMUTABLE (`now()`, `random()`,
//! `nextval`) gives another answer now than when the trigger ran, so its
//! column is reported as not verifiable rather than as a mismatch.

use std::fmt;
use std::time::Duration;

use tokio_postgres::Client;

use super::backfill::{SERVER_TIME, Tuning, next_batch_size, pages};
use super::plan::Agreement;
use crate::quote::{ident, qualified};

/// The most sample keys a report keeps.
const SAMPLES: usize = 5;

/// What verifying one table found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The physical table.
    pub table: String,
    /// The column pairs checked, `original ↔ duplicate`.
    pub checked_columns: Vec<String>,
    /// Columns left out because their `up` or `down` is not IMMUTABLE.
    pub unverifiable: Vec<String>,
    /// Rows read.
    pub rows: u64,
    /// Rows that agree in neither direction.
    pub mismatched: u64,
    /// Keys (or ctids) of the first mismatched rows, as text.
    pub samples: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table {}: {} of {} rows disagree ({})",
            self.table,
            self.mismatched,
            self.rows,
            if self.checked_columns.is_empty() {
                "no column could be checked".to_string()
            } else {
                self.checked_columns.join(", ")
            }
        )?;
        if !self.samples.is_empty() {
            write!(f, "; first keys: {}", self.samples.join("; "))?;
        }
        if !self.unverifiable.is_empty() {
            write!(
                f,
                "; not verifiable (up/down call a function that is not IMMUTABLE): {}",
                self.unverifiable.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Verifies one table. Errors: any SQL error, an `up` or `down` that
/// fails on a row included.
pub async fn run(
    client: &Client,
    agreement: &Agreement,
    tuning: Tuning,
) -> Result<Report, tokio_postgres::Error> {
    let pairs = Pairs::of(client, agreement).await?;
    let mut report = Report {
        table: agreement.table.clone(),
        checked_columns: pairs.checked.clone(),
        unverifiable: pairs.unverifiable.clone(),
        rows: 0,
        mismatched: 0,
        samples: Vec::new(),
    };
    let Some(predicate) = pairs.predicate(agreement) else {
        return Ok(report);
    };
    tracing::info!(table = %agreement.table, columns = %pairs.checked.join(", "), "verify starting");
    if agreement.key.is_empty() {
        ctid_batches(client, agreement, &predicate, tuning, &mut report).await?;
    } else {
        keyset_batches(client, agreement, &predicate, tuning, &mut report).await?;
    }
    tracing::info!(table = %agreement.table, rows = report.rows, mismatched = report.mismatched, "verify done");
    Ok(report)
}

/// The column pairs of one table that can be checked, with the physical
/// columns' types (each expression is cast to its column's type, as the
/// trigger's assignment does).
struct Pairs {
    up: Vec<(String, String, String)>,
    down: Vec<(String, String, String)>,
    checked: Vec<String>,
    unverifiable: Vec<String>,
}

impl Pairs {
    async fn of(client: &Client, a: &Agreement) -> Result<Pairs, tokio_postgres::Error> {
        let types: Vec<(String, String)> = client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
                &[&qualified(&a.schema, &a.table)],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let type_of = |c: &str| {
            types
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| "text".into())
        };
        let mut pairs = Pairs {
            up: Vec::new(),
            down: Vec::new(),
            checked: Vec::new(),
            unverifiable: Vec::new(),
        };
        for c in &a.columns {
            let name = format!("{} ↔ {}", c.original, c.duplicate);
            let exprs: Vec<&str> =
                c.up.iter()
                    .chain(c.down.iter())
                    .map(String::as_str)
                    .collect();
            if exprs.is_empty() {
                continue;
            }
            if !immutable(client, &exprs).await? {
                pairs.unverifiable.push(name);
                continue;
            }
            pairs.checked.push(name);
            if let Some(e) = &c.up {
                pairs
                    .up
                    .push((c.duplicate.clone(), e.clone(), type_of(&c.duplicate)));
            }
            if let Some(e) = &c.down {
                pairs
                    .down
                    .push((c.original.clone(), e.clone(), type_of(&c.original)));
            }
        }
        Ok(pairs)
    }

    /// The boolean SQL over row `t` that says whether it agrees; `None`
    /// when no pair can be checked.
    fn predicate(&self, a: &Agreement) -> Option<String> {
        if self.up.is_empty() && self.down.is_empty() {
            return None;
        }
        let up: Vec<String> = self
            .up
            .iter()
            .map(|(dup, e, ty)| format!("t.{} IS NOT DISTINCT FROM (({e}))::{ty}", ident(dup)))
            .collect();
        // `down` sees the new version's names: a derived table gives them.
        let new_row: Vec<String> = a
            .new_cols
            .iter()
            .map(|(name, physical)| format!("t.{} AS {}", ident(physical), ident(name)))
            .collect();
        let down: Vec<String> = self
            .down
            .iter()
            .map(|(orig, e, ty)| {
                format!(
                    "t.{} IS NOT DISTINCT FROM (SELECT (({e}))::{ty} FROM (SELECT {}) AS _pgshift_new)",
                    ident(orig),
                    new_row.join(", ")
                )
            })
            .collect();
        let side = |terms: &[String]| {
            if terms.is_empty() {
                "false".to_string()
            } else {
                format!("({})", terms.join(" AND "))
            }
        };
        Some(format!("COALESCE({} OR {}, false)", side(&up), side(&down)))
    }
}

/// Whether every function the expressions call is IMMUTABLE, and none
/// reads a clock or the session (`CURRENT_TIMESTAMP`, `CURRENT_USER`).
/// A function whose name has an overload that is not IMMUTABLE counts as
/// not: the check errs toward reporting a column as unverifiable.
async fn immutable(client: &Client, exprs: &[&str]) -> Result<bool, tokio_postgres::Error> {
    let mut names: Vec<String> = Vec::new();
    for e in exprs {
        let sql = format!("SELECT ({e})");
        let Ok(parsed) = pg_query::parse(&sql, pg_query::ParserOptions::DEFAULT) else {
            return Ok(false);
        };
        let reads_session = parsed
            .protobuf
            .nodes()
            .iter()
            .any(|(node, ..)| matches!(node, pg_query::NodeRef::SqlvalueFunction(_)));
        if reads_session {
            return Ok(false);
        }
        for f in parsed.functions() {
            names.push(f.rsplit('.').next().unwrap_or(&f).to_string());
        }
    }
    if names.is_empty() {
        return Ok(true);
    }
    let volatile: bool = client
        .query_one(
            "SELECT coalesce(bool_or(provolatile <> 'i'), false) FROM pg_proc WHERE proname = ANY($1)",
            &[&names],
        )
        .await?
        .get(0);
    Ok(!volatile)
}

/// Folds one batch's counts into `report`.
fn tally(report: &mut Report, rows: i64, mismatched: i64, samples: Option<Vec<String>>) {
    report.rows += rows as u64;
    report.mismatched += mismatched as u64;
    for s in samples.unwrap_or_default() {
        if report.samples.len() < SAMPLES {
            report.samples.push(s);
        }
    }
}

/// The counting tail of a batch over CTE `batch` (with column `ok` and a
/// text `key`): rows, mismatches, sample keys, then the server time.
const TALLY: &str = "SELECT count(*), count(*) FILTER (WHERE NOT ok), \
    (array_agg(key) FILTER (WHERE NOT ok))[1:5]";

/// The SQL of one keyset batch: `$1` the last key done (text[], only with
/// `lower`), then the batch size. Returns what [`TALLY`] does, then the
/// batch's last key (text[], NULL for an empty batch) and its server time.
fn keyset_sql(a: &Agreement, predicate: &str, lower: bool) -> String {
    let table = qualified(&a.schema, &a.table);
    let keys: Vec<String> = a
        .key
        .iter()
        .map(|(k, _)| format!("t.{}", ident(k)))
        .collect();
    let aliases: Vec<String> = (0..keys.len()).map(|i| format!("_pgshift_k{i}")).collect();
    let bound: Vec<String> = a
        .key
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("($1::text[])[{}]::{ty}", i + 1))
        .collect();
    let filter = if lower {
        format!("WHERE ({}) > ({})", keys.join(", "), bound.join(", "))
    } else {
        String::new()
    };
    let select: Vec<String> = keys
        .iter()
        .zip(&aliases)
        .map(|(k, a)| format!("{k} AS {a}"))
        .collect();
    let as_text: Vec<String> = aliases.iter().map(|a| format!("{a}::text")).collect();
    let desc: Vec<String> = aliases.iter().map(|a| format!("{a} DESC")).collect();
    format!(
        "WITH batch AS (SELECT {select}, {predicate} AS ok FROM ONLY {table} AS t {filter} \
         ORDER BY {order} LIMIT ${limit}) \
         {TALLY}, (SELECT ARRAY[{arr}] FROM batch ORDER BY {desc} LIMIT 1), {SERVER_TIME} \
         FROM (SELECT *, concat_ws(', ', {arr}) AS key FROM batch) AS b",
        select = select.join(", "),
        order = keys.join(", "),
        limit = if lower { 2 } else { 1 },
        arr = as_text.join(", "),
        desc = desc.join(", "),
    )
}

async fn keyset_batches(
    client: &Client,
    a: &Agreement,
    predicate: &str,
    tuning: Tuning,
    report: &mut Report,
) -> Result<(), tokio_postgres::Error> {
    let first = client.prepare(&keyset_sql(a, predicate, false)).await?;
    let next = client.prepare(&keyset_sql(a, predicate, true)).await?;
    // Reads hold no row locks: batches may be larger than the backfill's.
    let max = tuning.batch_size.max(1) * 10;
    let mut size = tuning.batch_size.max(1);
    let mut last: Option<Vec<String>> = None;
    loop {
        let r = match &last {
            None => client.query_one(&first, &[&size]).await?,
            Some(l) => client.query_one(&next, &[l, &size]).await?,
        };
        tally(report, r.get(0), r.get(1), r.get(2));
        let Some(k) = r.get::<_, Option<Vec<String>>>(3) else {
            return Ok(());
        };
        last = Some(k);
        let took = Duration::from_secs_f64(r.get::<_, f64>(4).max(0.0));
        size = next_batch_size(size, took, max, tuning.batch_time);
        if !tuning.batch_delay.is_zero() {
            tokio::time::sleep(tuning.batch_delay).await;
        }
    }
}

async fn ctid_batches(
    client: &Client,
    a: &Agreement,
    predicate: &str,
    tuning: Tuning,
    report: &mut Report,
) -> Result<(), tokio_postgres::Error> {
    let table = qualified(&a.schema, &a.table);
    let pages = pages(client, &table).await?;
    let statement = client
        .prepare(&format!(
            "WITH batch AS (SELECT t.ctid::text AS key, {predicate} AS ok FROM ONLY {table} AS t \
             WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid) \
             {TALLY}, {SERVER_TIME} FROM batch"
        ))
        .await?;
    let mut from = 0i64;
    let mut size = 8i64;
    while from < pages {
        let to = (from + size).min(pages);
        let r = client.query_one(&statement, &[&from, &to]).await?;
        tally(report, r.get(0), r.get(1), r.get(2));
        from = to;
        let took = Duration::from_secs_f64(r.get::<_, f64>(3).max(0.0));
        size = next_batch_size(size, took, 1024, tuning.batch_time);
        if !tuning.batch_delay.is_zero() {
            tokio::time::sleep(tuning.batch_delay).await;
        }
    }
    Ok(())
}
