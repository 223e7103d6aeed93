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

use super::format::{Migration, Problem};
use super::names;
use crate::catalog::TableInfo;
use crate::quote::qualified;

mod finish;
mod trigger;

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
    /// The old version's schema: the one its migration kept after
    /// complete, else `<schema>_<old version>`.
    pub old_version_schema: &'a str,
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
    /// Whether both versions' schemas show the tables the migration does
    /// not touch too, through plain views (pgroll's version schemas).
    pub pass_through_views: bool,
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
    /// Like [`Step::Sql`] (it creates or drops version schemas' views),
    /// and then, in the same transaction, gives a version schema the
    /// privileges of what it shows ([`crate::migrate::privileges`]), so
    /// that no session is routed onto views it may not use.
    Views { sql: String, privileges: Privileges },
}

/// The privileges a [`Step::Views`] brings up to date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Privileges {
    /// The version schema whose views get the table and column privileges
    /// of the tables they show, and whose USAGE goes to every role that
    /// holds one of them.
    pub version_schema: String,
    /// Duplicated columns, (physical table, original, duplicate): the
    /// duplicate gets the original's column privileges, which it keeps
    /// when complete gives it the original's name.
    #[serde(default)]
    pub duplicates: Vec<(String, String, String)>,
    /// Physical tables the migration creates: they get the default
    /// privileges of the physical schema's owner, as if the owner had
    /// created them (Postgres applies only the creating role's).
    #[serde(default)]
    pub created: Vec<String>,
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
    /// (`touch = touch`) so that the dual-write trigger converts it.
    pub set: Vec<(String, String)>,
    /// The column a touch writes: one the trigger sets anyway.
    pub touch: String,
}

/// A check that `complete` runs before contracting: the query counts rows
/// that are not converted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verify {
    pub what: String,
    pub sql: String,
}

/// How `verify` checks one table before complete contracts it: each row
/// of each duplicated column must agree between the two shapes, either
/// `duplicate = up(original row)` (last written by the old version, or
/// backfilled) or `original = down(new row)` (last written by the new
/// version), as the dual-write trigger would have made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub schema: String,
    /// The physical table.
    pub table: String,
    /// Keyset columns with their types, as the backfill's; empty means
    /// batches over ctid page ranges.
    pub key: Vec<(String, String)>,
    /// The new shape, (new-version name, physical column): the variables
    /// `down` expressions see.
    pub new_cols: Vec<(String, String)>,
    /// The duplicated columns and how each converts.
    pub columns: Vec<Converted>,
}

/// One duplicated column of an [`Agreement`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Converted {
    /// The old version's physical column.
    pub original: String,
    /// The new version's physical column (`_pgshift_new_*`).
    pub duplicate: String,
    /// `up`, over the old version's names (which are the physical columns).
    pub up: Option<String>,
    /// `down`, over the new version's names.
    pub down: Option<String>,
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
    /// What `verify` (and `complete`, before it contracts) checks; plans
    /// stored before verification existed have none.
    #[serde(default)]
    pub agreements: Vec<Agreement>,
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
            Step::Sql { sql } | Step::Concurrent { sql, .. } | Step::Views { sql, .. } => {
                sql.clone()
            }
            Step::Backfill(spec) => format!("backfill of {}", spec.table),
        }
    }
}

/// What changes about a duplicated column; `None` keeps the original's.
#[derive(Debug, Clone, Default)]
pub(in crate::migrate) struct ColumnChange {
    pub(in crate::migrate) type_: Option<String>,
    /// `Some(None)` drops the default.
    pub(in crate::migrate) default: Option<Option<String>>,
    pub(in crate::migrate) nullable: Option<bool>,
}

#[derive(Debug, Clone)]
pub(in crate::migrate) struct Shape {
    pub(in crate::migrate) physical: String,
    /// The table's name in the old version; `None` for a table this migration creates.
    pub(in crate::migrate) old_name: Option<String>,
    pub(in crate::migrate) new_name: String,
    /// The physical name once complete has renamed the table.
    pub(in crate::migrate) physical_after: Option<String>,
    pub(in crate::migrate) dropped: bool,
    pub(in crate::migrate) old_cols: Vec<String>,
    /// (new-version name, physical column).
    pub(in crate::migrate) new_cols: Vec<(String, String)>,
    /// (physical column, expression over old names) for old-version writes.
    pub(in crate::migrate) up: Vec<(String, String)>,
    /// (physical column, expression over new names) for new-version writes.
    pub(in crate::migrate) down: Vec<(String, String)>,
    pub(in crate::migrate) backfill_set: Vec<(String, String)>,
    pub(in crate::migrate) backfill_touch: bool,
    /// Duplicated columns: (original, duplicate), both physical.
    pub(in crate::migrate) duplicates: Vec<(String, String)>,
    /// Physical column → the indexes this migration creates on it.
    pub(in crate::migrate) new_indexes: BTreeMap<String, Vec<String>>,
    /// Constraints the migration drops by duplicating their columns
    /// without them: not carried over to the duplicates.
    pub(in crate::migrate) dropping: BTreeSet<String>,
    /// Duplicate (physical) → the JSON path of the operation that made it.
    pub(in crate::migrate) origins: BTreeMap<String, String>,
    /// A created table's columns that own a sequence (serial, identity):
    /// (physical column, its name when the sequence was made). Complete
    /// gives each sequence the name Postgres gives the final table's.
    pub(in crate::migrate) sequences: Vec<(String, String)>,
    /// Constraints earlier operations of this migration add to the table,
    /// which a later `rename_constraint` may name.
    pub(in crate::migrate) added_constraints: BTreeSet<String>,
}

pub(in crate::migrate) struct Planner<'a> {
    pub(in crate::migrate) cx: &'a Context<'a>,
    pub(in crate::migrate) m: &'a Migration,
    pub(in crate::migrate) version_schema: String,
    pub(in crate::migrate) shapes: Vec<Shape>,
    pub(in crate::migrate) problems: Vec<Problem>,
    pub(in crate::migrate) expand: Vec<Step>,
    pub(in crate::migrate) concurrent: Vec<Step>,
    /// NOT NULL checks, added once the triggers fill the new columns.
    pub(in crate::migrate) after_triggers: Vec<Step>,
    /// Rollback steps that must run before the triggers are dropped.
    pub(in crate::migrate) undo_before_triggers: Vec<Step>,
    pub(in crate::migrate) verify: Vec<Verify>,
    pub(in crate::migrate) validate: Vec<Step>,
    /// Steps after the backfill: foreign keys over duplicated columns,
    /// which need every row converted before they can check a new one.
    pub(in crate::migrate) after_backfill: Vec<Step>,
    /// Statements of complete's switch transaction before `contract`
    /// (physical names; what must go before the old columns do).
    pub(in crate::migrate) contract_early: Vec<String>,
    /// Statements of complete's switch transaction (drops and renames).
    pub(in crate::migrate) contract: Vec<String>,
    /// Columns that become NOT NULL at complete: (shape, physical column,
    /// the NOT VALID check that stands for it until then).
    pub(in crate::migrate) not_nulls: Vec<(usize, String, String)>,
    /// Statements of complete's switch transaction after the columns have
    /// their final names: carried-over indexes and constraints get theirs.
    pub(in crate::migrate) contract_renamed: Vec<String>,
    pub(in crate::migrate) contract_late: Vec<Step>,
    pub(in crate::migrate) undo: Vec<Step>,
}

/// Plans `migration` against `cx`. Errors list every problem found (missing
/// tables or columns, collisions, NOT NULL without a way to fill it,
/// unsupported operations), each with the JSON path of its operation.
pub fn plan(migration: &Migration, cx: &Context) -> Result<Plan, Vec<Problem>> {
    // pgroll's `version_schema` names the version's part of the schema
    // name: `<schema>_<version_schema>`, as the version name does.
    let version_schema = names::version_schema(
        cx.schema,
        migration
            .version_schema
            .as_deref()
            .unwrap_or(&migration.name),
    );
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
        after_backfill: Vec::new(),
        contract_early: Vec::new(),
        contract: Vec::new(),
        not_nulls: Vec::new(),
        contract_renamed: Vec::new(),
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
    if p.problems.is_empty() {
        p.carry_over();
    }
    if !p.problems.is_empty() {
        return Err(p.problems);
    }
    Ok(p.finish())
}

impl<'a> Planner<'a> {
    pub(in crate::migrate) fn problem(&mut self, at: &str, message: String) {
        self.problems.push(Problem {
            path: at.to_string(),
            message,
        });
    }

    pub(in crate::migrate) fn table_q(&self, physical: &str) -> String {
        qualified(self.cx.schema, physical)
    }

    /// The shape of the table named `name` in the new version, created on first use.
    pub(in crate::migrate) fn shape(&mut self, at: &str, name: &str) -> Option<usize> {
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
                    duplicates: Vec::new(),
                    new_indexes: BTreeMap::new(),
                    dropping: BTreeSet::new(),
                    origins: BTreeMap::new(),
                    added_constraints: BTreeSet::new(),
                    sequences: Vec::new(),
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
    pub(in crate::migrate) fn existing_shape(
        &mut self,
        at: &str,
        name: &str,
        kind: &str,
    ) -> Option<usize> {
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

    pub(in crate::migrate) fn new_col(&self, shape: usize, name: &str) -> Option<usize> {
        self.shapes[shape]
            .new_cols
            .iter()
            .position(|(n, _)| n == name)
    }

    pub(in crate::migrate) fn info(&self, shape: usize) -> Option<&'a TableInfo> {
        self.shapes[shape]
            .old_name
            .as_ref()
            .and_then(|n| self.cx.tables.get(n))
    }

    pub(in crate::migrate) fn resolve_table(&self, name: &str) -> String {
        self.shapes
            .iter()
            .find(|s| s.new_name == name && !s.dropped)
            .map(|s| s.physical.clone())
            .unwrap_or_else(|| name.to_string())
    }
}
