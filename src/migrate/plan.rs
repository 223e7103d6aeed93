//! The migration planner: a pure function from a migration and the live
//! catalog to the steps of `start` (expand: old-version views, new columns
//! and tables, concurrent indexes, NOT VALID constraints, dual-write
//! triggers, new-version views, backfill), `complete` (contract) and
//! `rollback`. It does no I/O; the engine runs what it returns.
//!
//! Shapes: every table the migration touches has an old shape (its physical
//! columns, which the old version sees) and a new shape (new-version column
//! names, each backed by a physical column: the same one, a renamed one, or a
//! `_pgshift_new_*` duplicate filled by `up`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::format::{Migration, Operation, Problem};
use super::names;
use crate::catalog::TableInfo;
use crate::quote::{ident, literal, qualified};

mod columns;
mod constraints;
mod tables;
mod trigger;

use trigger::trigger_sql;

/// What the planner knows of the database.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The physical schema (`public`).
    pub schema: &'a str,
    pub tables: &'a BTreeMap<String, TableInfo>,
    /// Every index name in the schema.
    pub indexes: &'a [String],
    /// The version clients use now: the last completed migration, or `baseline`.
    pub old_version: &'a str,
    /// Views that already exist in the old version's schema.
    pub old_schema_views: &'a BTreeSet<String>,
    /// Whether the old version's schema exists already.
    pub old_schema_exists: bool,
    /// Schemas that exist, to catch a version schema that would collide.
    pub schemas: &'a BTreeSet<String>,
    /// Default expressions that are volatile (each row gets its own value).
    pub volatile_defaults: &'a BTreeSet<String>,
    /// Whether views can be `security_invoker` (Postgres 15 and later).
    pub security_invoker: bool,
}

/// One unit of work, recorded in the state schema and run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Runs in one transaction under `lock_timeout`, retried when the lock
    /// is not granted; marked done in the same transaction.
    Sql { sql: String },
    /// Runs outside a transaction (`CREATE/DROP INDEX CONCURRENTLY`, user
    /// SQL). `invalid_index` names an index whose INVALID leftover from a
    /// failed build is dropped before each attempt.
    Concurrent {
        sql: String,
        invalid_index: Option<String>,
    },
    /// A batched, checkpointed backfill of one table.
    Backfill(BackfillSpec),
}

/// How to backfill one table: which rows, in which order, and what to set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillSpec {
    pub schema: String,
    /// The physical table.
    pub table: String,
    /// Keyset columns with their types (primary key, else a unique NOT NULL
    /// key); empty means batches over ctid page ranges.
    pub key: Vec<(String, String)>,
    /// Assignments `column = expression`; empty means touch each row
    /// (`key = key`) so that the dual-write trigger converts it.
    pub set: Vec<(String, String)>,
    /// A column to touch when `key` is empty.
    pub touch: String,
}

/// A check that `complete` runs before contracting: the query counts rows
/// that are not converted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verify {
    pub what: String,
    pub sql: String,
}

/// Everything the three commands will run for one migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: String,
    pub version_schema: String,
    pub old_version: String,
    pub old_version_schema: String,
    pub start: Vec<Step>,
    pub verify: Vec<Verify>,
    pub complete: Vec<Step>,
    pub rollback: Vec<Step>,
}

impl Plan {
    /// The steps of `action`, in order.
    pub fn steps(&self, action: crate::state::Action) -> &[Step] {
        use crate::state::Action;
        match action {
            Action::Start => &self.start,
            Action::Complete => &self.complete,
            Action::Rollback => &self.rollback,
        }
    }
}

impl Step {
    /// What the step runs, for messages: its SQL, or which backfill.
    pub fn describe(&self) -> String {
        match self {
            Step::Sql { sql } | Step::Concurrent { sql, .. } => sql.clone(),
            Step::Backfill(spec) => format!("backfill of {}", spec.table),
        }
    }
}

/// What changes about a duplicated column; `None` keeps the original's.
#[derive(Debug, Clone, Default)]
struct ColumnChange {
    type_: Option<String>,
    /// `Some(None)` drops the default.
    default: Option<Option<String>>,
    nullable: Option<bool>,
}

#[derive(Debug, Clone)]
struct Shape {
    physical: String,
    /// The table's name in the old version; `None` for a table this migration creates.
    old_name: Option<String>,
    new_name: String,
    /// The physical name once complete has renamed the table.
    physical_after: Option<String>,
    dropped: bool,
    old_cols: Vec<String>,
    /// (new-version name, physical column).
    new_cols: Vec<(String, String)>,
    /// (physical column, expression over old names) for old-version writes.
    up: Vec<(String, String)>,
    /// (physical column, expression over new names) for new-version writes.
    down: Vec<(String, String)>,
    backfill_set: Vec<(String, String)>,
    backfill_touch: bool,
    /// Physical column → the indexes this migration creates on it.
    new_indexes: BTreeMap<String, Vec<String>>,
}

struct Planner<'a> {
    cx: &'a Context<'a>,
    m: &'a Migration,
    version_schema: String,
    shapes: Vec<Shape>,
    problems: Vec<Problem>,
    expand: Vec<Step>,
    concurrent: Vec<Step>,
    /// NOT NULL checks, added once the triggers fill the new columns.
    after_triggers: Vec<Step>,
    /// Rollback steps that must run before the triggers are dropped.
    undo_before_triggers: Vec<Step>,
    verify: Vec<Verify>,
    validate: Vec<Step>,
    /// Statements of complete's switch transaction (drops and renames).
    contract: Vec<String>,
    contract_late: Vec<Step>,
    undo: Vec<Step>,
}

/// Plans `migration` against `cx`. Errors list every problem found (missing
/// tables or columns, collisions, NOT NULL without a way to fill it,
/// unsupported operations), each with the JSON path of its operation.
pub fn plan(migration: &Migration, cx: &Context) -> Result<Plan, Vec<Problem>> {
    let version_schema = migration
        .version_schema
        .clone()
        .unwrap_or_else(|| names::version_schema(cx.schema, &migration.name));
    let mut p = Planner {
        cx,
        m: migration,
        version_schema,
        shapes: Vec::new(),
        problems: Vec::new(),
        expand: Vec::new(),
        concurrent: Vec::new(),
        after_triggers: Vec::new(),
        undo_before_triggers: Vec::new(),
        verify: Vec::new(),
        validate: Vec::new(),
        contract: Vec::new(),
        contract_late: Vec::new(),
        undo: Vec::new(),
    };
    if cx.schemas.contains(&p.version_schema) {
        p.problem(
            "",
            format!(
                "the version schema {:?} exists already; drop it or name another with `version_schema`",
                p.version_schema
            ),
        );
    }
    for (i, op) in migration.operations.iter().enumerate() {
        let at = format!("/operations/{i}/{}", op.kind());
        p.operation(&at, op);
    }
    if !p.problems.is_empty() {
        return Err(p.problems);
    }
    Ok(p.finish())
}

impl<'a> Planner<'a> {
    fn problem(&mut self, at: &str, message: String) {
        self.problems.push(Problem {
            path: at.to_string(),
            message,
        });
    }

    fn table_q(&self, physical: &str) -> String {
        qualified(self.cx.schema, physical)
    }

    /// The shape of the table named `name` in the new version, created on first use.
    fn shape(&mut self, at: &str, name: &str) -> Option<usize> {
        if let Some(i) = self
            .shapes
            .iter()
            .position(|s| s.new_name == name && !s.dropped)
        {
            return Some(i);
        }
        let renamed_away = self
            .shapes
            .iter()
            .any(|s| s.old_name.as_deref() == Some(name));
        match self.cx.tables.get(name) {
            Some(table) if !renamed_away => {
                let cols: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
                self.shapes.push(Shape {
                    physical: name.to_string(),
                    old_name: Some(name.to_string()),
                    new_name: name.to_string(),
                    physical_after: None,
                    dropped: false,
                    new_cols: cols.iter().map(|c| (c.clone(), c.clone())).collect(),
                    old_cols: cols,
                    up: Vec::new(),
                    down: Vec::new(),
                    backfill_set: Vec::new(),
                    backfill_touch: false,
                    new_indexes: BTreeMap::new(),
                });
                Some(self.shapes.len() - 1)
            }
            _ => {
                self.problem(
                    at,
                    format!(
                        "table {name:?} does not exist in schema {:?} (in the new version)",
                        self.cx.schema
                    ),
                );
                None
            }
        }
    }

    /// Like [`Planner::shape`], but refuses tables created by this migration.
    fn existing_shape(&mut self, at: &str, name: &str, kind: &str) -> Option<usize> {
        let i = self.shape(at, name)?;
        if self.shapes[i].old_name.is_none() {
            self.problem(
                at,
                format!("{kind} on table {name:?}, which this migration creates, is not supported; put it in the next migration"),
            );
            return None;
        }
        Some(i)
    }

    fn new_col(&self, shape: usize, name: &str) -> Option<usize> {
        self.shapes[shape]
            .new_cols
            .iter()
            .position(|(n, _)| n == name)
    }

    fn info(&self, shape: usize) -> Option<&'a TableInfo> {
        self.shapes[shape]
            .old_name
            .as_ref()
            .and_then(|n| self.cx.tables.get(n))
    }

    fn operation(&mut self, at: &str, op: &Operation) {
        match op {
            Operation::AddColumn(a) => self.add_column(at, &a.table, &a.column, a.up.as_deref()),
            Operation::DropColumn(d) => {
                self.drop_column(at, &d.table, &d.column, d.down.as_deref())
            }
            Operation::RenameColumn(r) => self.rename_column(at, &r.table, &r.from, &r.to),
            Operation::AlterColumn(a) => self.alter_column(at, a),
            Operation::CreateTable(t) => self.create_table(at, t),
            Operation::CreateIndex(c) => self.create_index(at, c),
            Operation::DropIndex(d) => self.drop_index(at, &d.name),
            Operation::Sql(s) => self.raw_sql(s),
            Operation::RenameTable(r) => self.rename_table(at, &r.from, &r.to),
            Operation::DropTable(d) => self.drop_table(at, &d.name),
            Operation::RenameConstraint(r) => self.rename_constraint(at, &r.table, &r.from, &r.to),
            Operation::SetReplicaIdentity(r) => self.set_replica_identity(at, r),
            Operation::CreateConstraint(c) => self.create_constraint(at, c),
            Operation::DropConstraint(d) => self.drop_constraint(
                at,
                &d.table,
                &d.name,
                |_| (d.up.clone(), d.down.clone()),
                true,
            ),
            Operation::DropMulticolumnConstraint(d) => self.drop_constraint(
                at,
                &d.table,
                &d.name,
                |col| {
                    let fallback = ident(col);
                    (
                        d.up.get(col).cloned().unwrap_or_else(|| fallback.clone()),
                        d.down.get(col).cloned().unwrap_or(fallback),
                    )
                },
                false,
            ),
        }
    }

    fn resolve_table(&self, name: &str) -> String {
        self.shapes
            .iter()
            .find(|s| s.new_name == name && !s.dropped)
            .map(|s| s.physical.clone())
            .unwrap_or_else(|| name.to_string())
    }

    fn finish(self) -> Plan {
        let schema = self.cx.schema;
        let version = &self.m.name;
        let vs = &self.version_schema;
        let old_vs = names::version_schema(schema, self.cx.old_version);
        let mut start = Vec::new();
        let mut rollback = Vec::new();
        // Views check permissions as the querying user, not the view owner.
        let view_options = if self.cx.security_invoker {
            "WITH (security_invoker = true) "
        } else {
            ""
        };

        // 1. Old-version views first, so old sessions stand on views before any
        //    physical table changes.
        let mut old_views = Vec::new();
        let mut created_views = Vec::new();
        for shape in self.shapes.iter().filter(|s| s.old_name.is_some()) {
            let name = shape.old_name.as_ref().expect("filtered");
            if self.cx.old_schema_views.contains(name) {
                continue;
            }
            let cols: Vec<String> = shape.old_cols.iter().map(|c| ident(c)).collect();
            old_views.push(format!(
                "CREATE VIEW {} {view_options}AS SELECT {} FROM {}",
                qualified(&old_vs, name),
                cols.join(", "),
                qualified(schema, &shape.physical)
            ));
            created_views.push(qualified(&old_vs, name));
        }
        let mut sql = format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&old_vs));
        for v in &old_views {
            sql.push_str("; ");
            sql.push_str(v);
        }
        start.push(Step::Sql { sql });

        // 2. Expand, 3. concurrent indexes.
        start.extend(self.expand.iter().cloned());
        start.extend(self.concurrent.iter().cloned());

        // 4. Dual-write triggers.
        let mut drop_triggers = Vec::new();
        for shape in self
            .shapes
            .iter()
            .filter(|s| !s.up.is_empty() || !s.down.is_empty())
        {
            let name = names::trigger(&shape.physical, version);
            let table = qualified(schema, &shape.physical);
            start.push(Step::Sql {
                sql: trigger_sql(schema, shape, &name, version),
            });
            drop_triggers.push(format!(
                "DROP TRIGGER IF EXISTS {} ON {table}; DROP FUNCTION IF EXISTS {}()",
                ident(&name),
                qualified("pgshift", &name)
            ));
        }

        start.extend(self.after_triggers.iter().cloned());

        // 5. New-version views.
        let mut sql = format!("CREATE SCHEMA {}", ident(vs));
        for shape in self.shapes.iter().filter(|s| !s.dropped) {
            let cols: Vec<String> = shape
                .new_cols
                .iter()
                .map(|(name, physical)| {
                    if name == physical {
                        ident(name)
                    } else {
                        format!("{} AS {}", ident(physical), ident(name))
                    }
                })
                .collect();
            sql.push_str(&format!(
                "; CREATE VIEW {} {view_options}AS SELECT {} FROM {}",
                qualified(vs, &shape.new_name),
                cols.join(", "),
                qualified(schema, &shape.physical)
            ));
        }
        // Names the new version no longer has (dropped or renamed tables)
        // would still resolve to the physical table through the search_path;
        // a view that raises 42P01 hides them.
        for shape in &self.shapes {
            let Some(old) = &shape.old_name else { continue };
            let gone = shape.dropped || &shape.new_name != old;
            let reused = self.shapes.iter().any(|o| !o.dropped && &o.new_name == old);
            if gone && !reused {
                sql.push_str(&format!(
                    "; CREATE VIEW {} AS SELECT FROM pgshift.hidden_relation({}, {})",
                    qualified(vs, old),
                    literal(old),
                    literal(version)
                ));
            }
        }
        start.push(Step::Sql { sql });

        // 6. Backfill.
        for shape in &self.shapes {
            if !shape.backfill_touch && shape.backfill_set.is_empty() {
                continue;
            }
            let info = shape.old_name.as_ref().and_then(|n| self.cx.tables.get(n));
            let key_cols = info
                .map(|t| {
                    if !t.primary_key.is_empty() {
                        t.primary_key.clone()
                    } else {
                        t.unique_not_null.clone().unwrap_or_default()
                    }
                })
                .unwrap_or_default();
            let key = key_cols
                .iter()
                .map(|k| {
                    let type_ = info
                        .and_then(|t| t.column(k))
                        .map(|c| c.type_.clone())
                        .unwrap_or_default();
                    (k.clone(), type_)
                })
                .collect();
            start.push(Step::Backfill(BackfillSpec {
                schema: schema.to_string(),
                table: shape.physical.clone(),
                key,
                set: shape.backfill_set.clone(),
                touch: shape.old_cols.first().cloned().unwrap_or_default(),
            }));
        }

        // Complete: validate, drop the old version's schema and the triggers,
        // contract, then renames and late steps.
        let mut complete = self.validate.clone();
        complete.push(Step::Sql {
            sql: format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&old_vs)),
        });
        // The switch itself is one short transaction: with the triggers gone
        // and the old columns not, a write that bypasses the proxy would miss
        // its conversion, so nothing may commit in between.
        let mut switch: Vec<String> = drop_triggers.clone();
        switch.extend(self.contract.iter().cloned());
        for shape in self.shapes.iter().filter(|s| !s.dropped) {
            let table = qualified(schema, &shape.new_name);
            for (name, physical) in &shape.new_cols {
                if name != physical {
                    switch.push(format!(
                        "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                        ident(physical),
                        ident(name)
                    ));
                }
            }
        }
        if !switch.is_empty() {
            complete.push(Step::Sql {
                sql: switch.join("; "),
            });
        }
        complete.extend(self.contract_late.iter().cloned());

        // Rollback: remove everything start added, newest first; everything
        // is IF EXISTS, so a rollback after a partial start works too.
        rollback.push(Step::Sql {
            sql: format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(vs)),
        });
        // The exact reverse of start: the NOT NULL checks go before the
        // triggers that fill their columns, or old-version writes in between fail.
        rollback.extend(self.undo_before_triggers.iter().rev().cloned());
        for d in &drop_triggers {
            rollback.push(Step::Sql { sql: d.clone() });
        }
        rollback.extend(self.undo.iter().rev().cloned());
        if self.cx.old_schema_exists {
            for v in created_views.iter().rev() {
                rollback.push(Step::Sql {
                    sql: format!("DROP VIEW IF EXISTS {v}"),
                });
            }
        } else {
            rollback.push(Step::Sql {
                sql: format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&old_vs)),
            });
        }

        Plan {
            version: version.clone(),
            version_schema: vs.clone(),
            old_version: self.cx.old_version.to_string(),
            old_version_schema: old_vs,
            start,
            verify: self.verify,
            complete,
            rollback,
        }
    }
}

fn push_fk_options(
    sql: &mut String,
    match_type: Option<&str>,
    on_delete: Option<&str>,
    on_update: Option<&str>,
) {
    if let Some(m) = match_type {
        sql.push_str(&format!(" MATCH {}", m.to_uppercase()));
    }
    if let Some(d) = on_delete {
        sql.push_str(&format!(" ON DELETE {}", d.to_uppercase()));
    }
    if let Some(u) = on_update {
        sql.push_str(&format!(" ON UPDATE {}", u.to_uppercase()));
    }
}
