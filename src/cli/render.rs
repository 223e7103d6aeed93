//! What the migrator prints: `status` as text, and the SQL of a plan.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::migrate::plan::{Plan, Step};
use crate::state::Action;
use crate::state::status::Status;

/// `status` as text: the current version, the active migration and its
/// backfill, the live sessions per version, and the history.
pub fn status(status: &Status) -> String {
    let mut out = format!(
        "schema {}: current version {}\n",
        status.schema, status.current_version
    );
    match &status.active {
        Some(a) => {
            let _ = writeln!(
                out,
                "active migration {} ({}), version schema {}, from {}",
                a.version, a.phase, a.version_schema, a.old_version
            );
            for b in &a.backfill {
                let _ = writeln!(
                    out,
                    "  backfill {}: {} rows in {} batches{}{}",
                    b.table,
                    b.rows_done,
                    b.batches,
                    if b.done { ", done" } else { "" },
                    b.held_by
                        .as_deref()
                        .map(|h| format!(", held back by {h}"))
                        .unwrap_or_default()
                );
            }
        }
        None => out.push_str("no migration in progress\n"),
    }
    let mut per_version: BTreeMap<&str, usize> = BTreeMap::new();
    for session in &status.sessions {
        *per_version.entry(session.version.as_str()).or_default() += 1;
    }
    for (version, count) in per_version {
        let _ = writeln!(out, "  {count} live session(s) on version {version}");
    }
    for h in &status.history {
        let _ = writeln!(
            out,
            "  {} {} (from {}, {})",
            h.version, h.phase, h.parent, h.updated_at
        );
    }
    out
}

/// The SQL each action of `plan` runs, as `-- start`, `-- complete` and
/// `-- rollback` sections; concurrent steps and backfills are marked.
pub fn plan(plan: &Plan) -> String {
    let mut out = String::new();
    for action in Action::ALL {
        let _ = writeln!(out, "-- {action}");
        for step in plan.steps(action) {
            let _ = match step {
                Step::Sql { sql } => writeln!(out, "{sql};"),
                Step::Views { sql, privileges } => writeln!(
                    out,
                    "{sql};  -- then the privileges of {}",
                    privileges.version_schema
                ),
                Step::Concurrent { sql, .. } => writeln!(out, "{sql};  -- outside a transaction"),
                Step::Backfill(spec) => {
                    let over = if spec.key.is_empty() {
                        "ctid".to_string()
                    } else {
                        let keys: Vec<&str> = spec.key.iter().map(|k| k.0.as_str()).collect();
                        keys.join(", ")
                    };
                    writeln!(
                        out,
                        "-- backfill {}.{} in batches over {over}",
                        spec.schema, spec.table
                    )
                }
            };
        }
    }
    out
}
