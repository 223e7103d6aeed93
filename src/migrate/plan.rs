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

use super::format::{self, Column, Migration, Operation, Problem};
use super::names;
use crate::catalog::TableInfo;
use crate::quote::{ident, literal, qualified};

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

    /// The physical column's DDL type and default clause for a new column,
    /// and the backfill assignment a volatile default needs.
    fn add_physical(&mut self, shape: usize, physical: &str, type_: &str, default: Option<&str>) {
        let table = self.table_q(&self.shapes[shape].physical.clone());
        let volatile = default.is_some_and(|d| self.cx.volatile_defaults.contains(d));
        let mut sql = format!("ALTER TABLE {table} ADD COLUMN {} {type_}", ident(physical));
        if let Some(d) = default {
            if volatile {
                // A volatile default would rewrite the table under ACCESS
                // EXCLUSIVE. Add the column bare, default new rows, backfill the rest.
                sql.push_str(&format!(
                    "; ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {d}",
                    ident(physical)
                ));
                self.shapes[shape].backfill_set.push((
                    physical.to_string(),
                    format!("COALESCE({}, {d})", ident(physical)),
                ));
            } else {
                sql.push_str(&format!(" DEFAULT {d}"));
            }
        }
        self.expand.push(Step::Sql { sql });
        self.undo.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                ident(physical)
            ),
        });
    }

    /// NOT NULL during the migration: a NOT VALID check, validated and turned
    /// into SET NOT NULL at complete without a long lock.
    fn not_null(&mut self, shape: usize, physical: &str, final_name: &str) {
        let table = self.table_q(&self.shapes[shape].physical.clone());
        let check = names::not_null_check(final_name);
        // After the triggers: before them, an old-version insert would leave
        // the column NULL and fail the check.
        self.after_triggers.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
                ident(&check),
                ident(physical)
            ),
        });
        self.validate.push(Step::Sql {
            sql: format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&check)),
        });
        self.contract_late.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL; ALTER TABLE {table} DROP CONSTRAINT {}",
                ident(final_name),
                ident(&check)
            ),
        });
    }

    fn column_extras(&mut self, shape: usize, physical: &str, final_name: &str, col: &Column) {
        let table = self.table_q(&self.shapes[shape].physical.clone());
        let final_table = self.table_q(&self.shapes[shape].new_name.clone());
        if col.unique == Some(true) {
            let index = names::fit(&format!(
                "{}_{}_key",
                self.shapes[shape].new_name, final_name
            ));
            self.concurrent.push(Step::Concurrent {
                sql: format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {table} ({})",
                    ident(&index),
                    ident(physical)
                ),
                invalid_index: Some(index.clone()),
            });
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {final_table} ADD CONSTRAINT {} UNIQUE USING INDEX {}",
                    ident(&index),
                    ident(&index)
                ),
            });
        }
        if let Some(fk) = &col.references {
            let target = self.resolve_table(&fk.table);
            let mut sql = format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
                ident(&fk.name),
                ident(physical),
                self.table_q(&target),
                ident(&fk.column)
            );
            push_fk_options(
                &mut sql,
                fk.match_type.as_deref(),
                fk.on_delete.as_deref(),
                fk.on_update.as_deref(),
            );
            sql.push_str(" NOT VALID");
            self.expand.push(Step::Sql { sql });
            self.validate.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
                    ident(&fk.name)
                ),
            });
        }
        if let Some(check) = &col.check {
            // The expression names the column by its final name, so the check
            // is added once the column has it, then validated.
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {final_table} ADD CONSTRAINT {} CHECK ({}){} NOT VALID",
                    ident(&check.name),
                    check.constraint,
                    if check.no_inherit == Some(true) {
                        " NO INHERIT"
                    } else {
                        ""
                    }
                ),
            });
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {final_table} VALIDATE CONSTRAINT {}",
                    ident(&check.name)
                ),
            });
        }
        if let Some(comment) = &col.comment {
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "COMMENT ON COLUMN {final_table}.{} IS {}",
                    ident(final_name),
                    literal(comment)
                ),
            });
        }
    }

    fn resolve_table(&self, name: &str) -> String {
        self.shapes
            .iter()
            .find(|s| s.new_name == name && !s.dropped)
            .map(|s| s.physical.clone())
            .unwrap_or_else(|| name.to_string())
    }

    fn add_column(&mut self, at: &str, table: &str, col: &Column, up: Option<&str>) {
        let Some(s) = self.existing_shape(at, table, "add_column") else {
            return;
        };
        if self.new_col(s, &col.name).is_some() {
            self.problem(
                at,
                format!("column {:?} already exists in table {table:?}", col.name),
            );
            return;
        }
        if !col.nullable && col.default.is_none() && up.is_none() {
            self.problem(
                &format!("{at}/column"),
                format!("column {:?} is NOT NULL with neither `default` nor `up`: existing rows would have no value; add one of them", col.name),
            );
            return;
        }
        if col.pk == Some(true) || col.generated.is_some() {
            self.problem(at, "add_column with `pk` or `generated` is not supported; create the table with it instead".into());
            return;
        }
        let physical = names::new_column(&col.name);
        self.add_physical(s, &physical, &col.type_, col.default.as_deref());
        if !col.nullable {
            self.not_null(s, &physical, &col.name);
        }
        self.column_extras(s, &physical, &col.name, col);
        if let Some(up) = up {
            self.shapes[s].up.push((physical.clone(), up.to_string()));
            self.shapes[s].backfill_touch = true;
            self.verify_converted(s, &physical, up);
        }
        self.shapes[s].new_cols.push((col.name.clone(), physical));
    }

    fn verify_converted(&mut self, s: usize, physical: &str, up: &str) {
        let shape = &self.shapes[s];
        self.verify.push(Verify {
            what: format!("{}.{}", shape.new_name, physical),
            sql: format!(
                "SELECT count(*) FROM {} WHERE {} IS NULL AND ({up}) IS NOT NULL",
                self.table_q(&shape.physical),
                ident(physical)
            ),
        });
    }

    fn drop_column(&mut self, at: &str, table: &str, column: &str, down: Option<&str>) {
        let Some(s) = self.existing_shape(at, table, "drop_column") else {
            return;
        };
        let Some(c) = self.new_col(s, column) else {
            self.problem(
                at,
                format!("column {column:?} does not exist in table {table:?}"),
            );
            return;
        };
        let (_, physical) = self.shapes[s].new_cols.remove(c);
        if let Some(info) = self.info(s).and_then(|t| t.column(&physical))
            && info.not_null
            && info.default.is_none()
            && !info.generated
            && down.is_none()
        {
            self.problem(
                    at,
                    format!("column {column:?} is NOT NULL without a default, so new-version inserts could not fill it; give `down`"),
                );
            return;
        }
        if let Some(down) = down {
            self.shapes[s]
                .down
                .push((physical.clone(), down.to_string()));
        }
        let t = self.table_q(&self.shapes[s].physical.clone());
        self.contract.push(format!(
            "ALTER TABLE {t} DROP COLUMN IF EXISTS {}",
            ident(&physical)
        ));
    }

    fn rename_column(&mut self, at: &str, table: &str, from: &str, to: &str) {
        let Some(s) = self.shape(at, table) else {
            return;
        };
        let Some(c) = self.new_col(s, from) else {
            self.problem(
                at,
                format!("column {from:?} does not exist in table {table:?}"),
            );
            return;
        };
        if self.new_col(s, to).is_some() {
            self.problem(
                at,
                format!("column {to:?} already exists in table {table:?}"),
            );
            return;
        }
        self.shapes[s].new_cols[c].0 = to.to_string();
    }

    /// Duplicates the existing column `name` (its new-version name) of shape
    /// `s` into a `_pgshift_new_*` column that the new version sees, kept in
    /// step by `up` (old → new) and `down` (new → old) and backfilled; the
    /// old column is dropped at complete. The indexes and constraints on the
    /// old column go with it, so the column may carry only those in
    /// `expendable`. Returns the new physical column.
    #[allow(clippy::too_many_arguments)]
    fn duplicate_column(
        &mut self,
        at: &str,
        s: usize,
        name: &str,
        change: ColumnChange,
        up: &str,
        down: &str,
        expendable: &BTreeSet<String>,
    ) -> Option<String> {
        let table = self.shapes[s].new_name.clone();
        let Some(c) = self.new_col(s, name) else {
            self.problem(
                at,
                format!("column {name:?} does not exist in table {table:?}"),
            );
            return None;
        };
        let old_physical = self.shapes[s].new_cols[c].1.clone();
        let Some(info) = self.info(s).and_then(|t| t.column(&old_physical)).cloned() else {
            self.problem(
                at,
                format!("column {name:?} was added by this migration; change it in the next one"),
            );
            return None;
        };
        let covering: Vec<String> = self
            .info(s)
            .and_then(|t| t.dependents.get(&old_physical))
            .map(|d| {
                d.iter()
                    .filter(|n| !expendable.contains(*n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !covering.is_empty() {
            self.problem(
                at,
                format!(
                    "column {name:?} is covered by {}; pgshift does not carry indexes and constraints over to a duplicated column yet, so drop them in an earlier migration",
                    covering.join(", ")
                ),
            );
            return None;
        }
        let physical = names::new_column(name);
        let type_ = change.type_.unwrap_or(info.type_.clone());
        let default = change.default.unwrap_or(info.default.clone());
        self.add_physical(s, &physical, &type_, default.as_deref());
        if !change.nullable.unwrap_or(!info.not_null) {
            self.not_null(s, &physical, name);
        }
        let shape = &mut self.shapes[s];
        shape.up.push((physical.clone(), up.to_string()));
        shape.down.push((old_physical.clone(), down.to_string()));
        shape.backfill_touch = true;
        shape.new_cols[c].1 = physical.clone();
        self.verify_converted(s, &physical, up);
        let t = self.table_q(&self.shapes[s].physical.clone());
        self.contract.push(format!(
            "ALTER TABLE {t} DROP COLUMN IF EXISTS {}",
            ident(&old_physical)
        ));
        Some(physical)
    }

    fn alter_column(&mut self, at: &str, a: &format::AlterColumn) {
        let Some(s) = self.existing_shape(at, &a.table, "alter_column") else {
            return;
        };
        let change = ColumnChange {
            type_: a.type_.clone(),
            default: a.default.clone(),
            nullable: a.nullable,
        };
        let Some(physical) =
            self.duplicate_column(at, s, &a.column, change, &a.up, &a.down, &BTreeSet::new())
        else {
            return;
        };
        let col = Column {
            name: a.column.clone(),
            type_: String::new(),
            nullable: true,
            pk: None,
            unique: a.unique.as_ref().map(|_| true),
            default: None,
            check: a.check.clone(),
            references: a.references.clone(),
            comment: match &a.comment {
                Some(Some(c)) => Some(c.clone()),
                _ => None,
            },
            generated: None,
        };
        self.column_extras(s, &physical, &a.column, &col);
    }

    fn create_constraint(&mut self, at: &str, c: &format::CreateConstraint) {
        let Some(s) = self.existing_shape(at, &c.table, "create_constraint") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        if info.constraints.contains(&c.name) || self.cx.indexes.contains(&c.name) {
            self.problem(
                at,
                format!("a constraint or index named {:?} already exists", c.name),
            );
            return;
        }
        if c.kind == "primary_key" && !info.primary_key.is_empty() {
            self.problem(at, format!("table {:?} has a primary key already", c.table));
            return;
        }
        let mut renamed = BTreeMap::new();
        for col in &c.columns {
            let fallback = ident(col);
            let up = c.up.get(col).unwrap_or(&fallback).clone();
            let down = c.down.get(col).unwrap_or(&fallback).clone();
            let change = ColumnChange {
                nullable: (c.kind == "primary_key").then_some(false),
                ..ColumnChange::default()
            };
            match self.duplicate_column(at, s, col, change, &up, &down, &BTreeSet::new()) {
                Some(physical) => {
                    renamed.insert(col.clone(), physical);
                }
                None => return,
            }
        }
        let table = self.table_q(&self.shapes[s].physical.clone());
        let final_table = self.table_q(&self.shapes[s].new_name.clone());
        let physical_cols: Vec<String> = c.columns.iter().map(|col| ident(&renamed[col])).collect();
        match c.kind.as_str() {
            "unique" | "primary_key" => {
                self.concurrent.push(Step::Concurrent {
                    sql: format!(
                        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {table} ({})",
                        ident(&c.name),
                        physical_cols.join(", ")
                    ),
                    invalid_index: Some(c.name.clone()),
                });
                let kind = if c.kind == "unique" {
                    "UNIQUE"
                } else {
                    "PRIMARY KEY"
                };
                self.contract_late.push(Step::Sql {
                    sql: format!(
                        "ALTER TABLE {final_table} ADD CONSTRAINT {} {kind} USING INDEX {}",
                        ident(&c.name),
                        ident(&c.name)
                    ),
                });
            }
            "foreign_key" => {
                let Some(r) = &c.references else { return };
                let target = self.resolve_table(&r.table);
                let cols: Vec<String> = r.columns.iter().map(|col| ident(col)).collect();
                let mut sql = format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
                    ident(&c.name),
                    physical_cols.join(", "),
                    self.table_q(&target),
                    cols.join(", ")
                );
                push_fk_options(
                    &mut sql,
                    r.match_type.as_deref(),
                    r.on_delete.as_deref(),
                    r.on_update.as_deref(),
                );
                sql.push_str(" NOT VALID");
                self.expand.push(Step::Sql { sql });
                self.validate.push(Step::Sql {
                    sql: format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&c.name)),
                });
            }
            "check" => {
                let expr = c.check.as_deref().unwrap_or("true");
                match super::expr::rename_columns(expr, &renamed) {
                    Ok(rewritten) => {
                        self.expand.push(Step::Sql {
                            sql: format!(
                                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({rewritten}){} NOT VALID",
                                ident(&c.name),
                                if c.no_inherit == Some(true) { " NO INHERIT" } else { "" }
                            ),
                        });
                        self.validate.push(Step::Sql {
                            sql: format!(
                                "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
                                ident(&c.name)
                            ),
                        });
                    }
                    Err(message) => self.problem(&format!("{at}/check"), message),
                }
            }
            other => self.problem(at, format!("unknown constraint type {other:?}")),
        }
    }

    /// Removes constraint `name` from the new version by duplicating its
    /// columns without it. `up`/`down` give each column's conversion.
    fn drop_constraint(
        &mut self,
        at: &str,
        table: &str,
        name: &str,
        conversion: impl Fn(&str) -> (String, String),
        single: bool,
    ) {
        let Some(s) = self.existing_shape(at, table, "drop_constraint") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        let Some(columns) = info.constraint_columns.get(name).cloned() else {
            self.problem(
                at,
                format!("constraint {name:?} does not exist on table {table:?}"),
            );
            return;
        };
        if single && columns.len() != 1 {
            self.problem(
                at,
                format!(
                    "constraint {name:?} covers {} columns; use drop_multicolumn_constraint",
                    columns.len()
                ),
            );
            return;
        }
        // Its own backing index shares its name.
        let expendable = BTreeSet::from([name.to_string()]);
        for physical in &columns {
            let Some(new_name) = self.shapes[s]
                .new_cols
                .iter()
                .find(|(_, p)| p == physical)
                .map(|(n, _)| n.clone())
            else {
                self.problem(
                    at,
                    format!(
                        "column {physical:?} of constraint {name:?} is gone from the new version"
                    ),
                );
                return;
            };
            let (up, down) = conversion(&new_name);
            self.duplicate_column(
                at,
                s,
                &new_name,
                ColumnChange::default(),
                &up,
                &down,
                &expendable,
            );
        }
    }

    fn create_table(&mut self, at: &str, t: &format::CreateTable) {
        if self.cx.tables.contains_key(&t.name) || self.shapes.iter().any(|s| s.new_name == t.name)
        {
            self.problem(at, format!("table {:?} already exists", t.name));
            return;
        }
        let physical = names::new_table(&t.name);
        let table = self.table_q(&physical);
        let mut defs: Vec<String> = Vec::new();
        for col in &t.columns {
            let mut d = format!("{} {}", ident(&col.name), col.type_);
            if let Some(generated) = &col.generated {
                if let Some(expr) = &generated.expression {
                    d.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED"));
                } else if let Some(identity) = &generated.identity {
                    let when = identity
                        .user_specified_values
                        .as_deref()
                        .unwrap_or("BY DEFAULT")
                        .to_uppercase();
                    d.push_str(&format!(" GENERATED {when} AS IDENTITY"));
                    if let Some(options) = &identity.sequence_options {
                        d.push_str(&format!(" ({options})"));
                    }
                }
            }
            if let Some(default) = &col.default {
                d.push_str(&format!(" DEFAULT {default}"));
            }
            if !col.nullable {
                d.push_str(" NOT NULL");
            }
            if col.pk == Some(true) {
                d.push_str(" PRIMARY KEY");
            }
            if col.unique == Some(true) {
                d.push_str(" UNIQUE");
            }
            if let Some(check) = &col.check {
                d.push_str(&format!(
                    " CONSTRAINT {} CHECK ({})",
                    ident(&check.name),
                    check.constraint
                ));
            }
            if let Some(fk) = &col.references {
                let target = self.resolve_table(&fk.table);
                d.push_str(&format!(
                    " CONSTRAINT {} REFERENCES {} ({})",
                    ident(&fk.name),
                    self.table_q(&target),
                    ident(&fk.column)
                ));
                push_fk_options(
                    &mut d,
                    fk.match_type.as_deref(),
                    fk.on_delete.as_deref(),
                    fk.on_update.as_deref(),
                );
            }
            defs.push(d);
        }
        for c in &t.constraints {
            match self.table_constraint(c) {
                Ok(def) => defs.push(def),
                Err(message) => self.problem(at, message),
            }
        }
        let mut sql = format!("CREATE TABLE {table} ({})", defs.join(", "));
        if let Some(comment) = &t.comment {
            sql.push_str(&format!(
                "; COMMENT ON TABLE {table} IS {}",
                literal(comment)
            ));
        }
        for col in &t.columns {
            if let Some(comment) = &col.comment {
                sql.push_str(&format!(
                    "; COMMENT ON COLUMN {table}.{} IS {}",
                    ident(&col.name),
                    literal(comment)
                ));
            }
        }
        self.expand.push(Step::Sql { sql });
        self.undo.push(Step::Sql {
            sql: format!("DROP TABLE IF EXISTS {table}"),
        });
        self.contract
            .push(format!("ALTER TABLE {table} RENAME TO {}", ident(&t.name)));
        self.shapes.push(Shape {
            physical,
            old_name: None,
            new_name: t.name.clone(),
            physical_after: Some(t.name.clone()),
            dropped: false,
            old_cols: Vec::new(),
            new_cols: t
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.name.clone()))
                .collect(),
            up: Vec::new(),
            down: Vec::new(),
            backfill_set: Vec::new(),
            backfill_touch: false,
        });
    }

    fn table_constraint(&self, c: &format::TableConstraint) -> Result<String, String> {
        let cols = |names: &[String]| {
            names
                .iter()
                .map(|n| ident(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut def = format!("CONSTRAINT {} ", ident(&c.name));
        match c.kind.as_str() {
            "primary_key" => def.push_str(&format!("PRIMARY KEY ({})", cols(&c.columns))),
            "unique" => def.push_str(&format!(
                "UNIQUE{} ({})",
                if c.nulls_not_distinct == Some(true) {
                    " NULLS NOT DISTINCT"
                } else {
                    ""
                },
                cols(&c.columns)
            )),
            "check" => def.push_str(&format!(
                "CHECK ({}){}",
                c.check.as_deref().unwrap_or("true"),
                if c.no_inherit == Some(true) {
                    " NO INHERIT"
                } else {
                    ""
                }
            )),
            "foreign_key" => {
                let r = c
                    .references
                    .as_ref()
                    .ok_or("a foreign_key constraint needs `references`")?;
                def.push_str(&format!(
                    "FOREIGN KEY ({}) REFERENCES {} ({})",
                    cols(&c.columns),
                    self.table_q(&self.resolve_table(&r.table)),
                    cols(&r.columns)
                ));
                push_fk_options(
                    &mut def,
                    r.match_type.as_deref(),
                    r.on_delete.as_deref(),
                    r.on_update.as_deref(),
                );
            }
            "exclude" => {
                let e = c
                    .exclude
                    .as_ref()
                    .ok_or("an exclude constraint needs `exclude`")?;
                def.push_str(&format!(
                    "EXCLUDE USING {} ({})",
                    e.index_method.as_deref().unwrap_or("gist"),
                    e.elements.as_deref().unwrap_or("")
                ));
                if let Some(p) = &e.predicate {
                    def.push_str(&format!(" WHERE ({p})"));
                }
            }
            other => return Err(format!("unknown constraint type {other:?}")),
        }
        if let Some(params) = &c.index_parameters {
            if !params.include_columns.is_empty() {
                def.push_str(&format!(" INCLUDE ({})", cols(&params.include_columns)));
            }
            if let Some(storage) = &params.storage_parameters {
                def.push_str(&format!(" WITH ({storage})"));
            }
            if let Some(tablespace) = &params.tablespace {
                def.push_str(&format!(" USING INDEX TABLESPACE {}", ident(tablespace)));
            }
        }
        if c.deferrable == Some(true) {
            def.push_str(" DEFERRABLE");
            if c.initially_deferred == Some(true) {
                def.push_str(" INITIALLY DEFERRED");
            }
        }
        Ok(def)
    }

    fn create_index(&mut self, at: &str, c: &format::CreateIndex) {
        if self.cx.indexes.contains(&c.name) {
            self.problem(
                at,
                format!("an index (or relation) named {:?} already exists", c.name),
            );
            return;
        }
        let Some(s) = self.shape(at, &c.table) else {
            return;
        };
        let mut fields = Vec::new();
        for f in &c.columns {
            let Some(i) = self.new_col(s, &f.column) else {
                self.problem(
                    at,
                    format!(
                        "column {:?} does not exist in table {:?}",
                        f.column, c.table
                    ),
                );
                continue;
            };
            let mut field = ident(&self.shapes[s].new_cols[i].1);
            if let Some(collate) = &f.collate {
                field.push_str(&format!(" COLLATE {}", ident(collate)));
            }
            if let Some(op) = f.opclass.as_ref().and_then(|o| o.name.as_ref()) {
                field.push_str(&format!(" {op}"));
                if let Some(params) = f.opclass.as_ref().and_then(|o| o.params.as_ref()) {
                    field.push_str(&format!(" ({params})"));
                }
            }
            if let Some(sort) = &f.sort {
                field.push_str(&format!(" {}", sort.to_uppercase()));
            }
            if let Some(nulls) = &f.nulls {
                field.push_str(&format!(" NULLS {}", nulls.to_uppercase()));
            }
            fields.push(field);
        }
        let mut sql = format!(
            "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {} USING {} ({})",
            if c.unique == Some(true) {
                "UNIQUE "
            } else {
                ""
            },
            ident(&c.name),
            self.table_q(&self.shapes[s].physical.clone()),
            c.method.as_deref().unwrap_or("btree"),
            fields.join(", ")
        );
        if let Some(storage) = &c.storage_parameters {
            sql.push_str(&format!(" WITH ({storage})"));
        }
        if let Some(predicate) = &c.predicate {
            sql.push_str(&format!(" WHERE {predicate}"));
        }
        self.concurrent.push(Step::Concurrent {
            sql,
            invalid_index: Some(c.name.clone()),
        });
        self.undo.push(Step::Concurrent {
            sql: format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                qualified(self.cx.schema, &c.name)
            ),
            invalid_index: None,
        });
    }

    fn drop_index(&mut self, at: &str, name: &str) {
        if !self.cx.indexes.iter().any(|i| i == name) {
            self.problem(
                at,
                format!(
                    "index {name:?} does not exist in schema {:?}",
                    self.cx.schema
                ),
            );
            return;
        }
        self.contract_late.push(Step::Concurrent {
            sql: format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                qualified(self.cx.schema, name)
            ),
            invalid_index: None,
        });
    }

    fn table_exists_in_new_version(&self, name: &str) -> bool {
        self.shapes.iter().any(|s| s.new_name == name && !s.dropped)
            || (self.cx.tables.contains_key(name)
                && !self
                    .shapes
                    .iter()
                    .any(|s| s.old_name.as_deref() == Some(name)))
    }

    fn rename_table(&mut self, at: &str, from: &str, to: &str) {
        let Some(s) = self.existing_shape(at, from, "rename_table") else {
            return;
        };
        if self.table_exists_in_new_version(to) {
            self.problem(at, format!("table {to:?} already exists"));
            return;
        }
        self.shapes[s].new_name = to.to_string();
        let physical = self.table_q(&self.shapes[s].physical.clone());
        self.contract
            .push(format!("ALTER TABLE {physical} RENAME TO {}", ident(to)));
        self.shapes[s].physical_after = Some(to.to_string());
    }

    fn drop_table(&mut self, at: &str, name: &str) {
        let Some(s) = self.existing_shape(at, name, "drop_table") else {
            return;
        };
        self.shapes[s].dropped = true;
        let physical = self.table_q(&self.shapes[s].physical.clone());
        self.contract
            .push(format!("DROP TABLE IF EXISTS {physical}"));
    }

    fn rename_constraint(&mut self, at: &str, table: &str, from: &str, to: &str) {
        let Some(s) = self.existing_shape(at, table, "rename_constraint") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        if !info.constraints.iter().any(|c| c == from) {
            self.problem(
                at,
                format!("constraint {from:?} does not exist on table {table:?}"),
            );
            return;
        }
        if info.constraints.iter().any(|c| c == to) {
            self.problem(
                at,
                format!("constraint {to:?} already exists on table {table:?}"),
            );
            return;
        }
        let shape = &self.shapes[s];
        let final_table = qualified(
            self.cx.schema,
            shape.physical_after.as_deref().unwrap_or(&shape.physical),
        );
        self.contract_late.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {final_table} RENAME CONSTRAINT {} TO {}",
                ident(from),
                ident(to)
            ),
        });
    }

    fn set_replica_identity(&mut self, at: &str, r: &format::SetReplicaIdentity) {
        let Some(s) = self.existing_shape(at, &r.table, "set_replica_identity") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        let clause = |kind: &str, index: Option<&str>| match kind {
            "index" => format!("USING INDEX {}", ident(index.unwrap_or_default())),
            other => other.to_uppercase(),
        };
        let kind = r.identity.kind.to_lowercase();
        if kind == "index" && r.identity.index.is_empty() {
            self.problem(
                &format!("{at}/identity/index"),
                "replica identity INDEX needs the index name".into(),
            );
            return;
        }
        let previous = match info.replica_identity {
            'n' => clause("nothing", None),
            'f' => clause("full", None),
            'i' => clause("index", info.replica_index.as_deref()),
            _ => clause("default", None),
        };
        let table = self.table_q(&self.shapes[s].physical.clone());
        self.expand.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} REPLICA IDENTITY {}",
                clause(&kind, Some(&r.identity.index))
            ),
        });
        self.undo.push(Step::Sql {
            sql: format!("ALTER TABLE {table} REPLICA IDENTITY {previous}"),
        });
    }

    fn raw_sql(&mut self, s: &format::RawSql) {
        let step = Step::Concurrent {
            sql: s.up.clone(),
            invalid_index: None,
        };
        if s.on_complete {
            self.contract_late.push(step);
        } else {
            self.expand.push(step);
            if let Some(down) = &s.down {
                self.undo.push(Step::Concurrent {
                    sql: down.clone(),
                    invalid_index: None,
                });
            }
        }
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

/// A dollar-quote tag that does not occur in `body`.
fn dollar_tag(body: &str) -> String {
    (0..)
        .map(|n| format!("$pgshift{n}$"))
        .find(|tag| !body.contains(tag.as_str()))
        .expect("some tag is free")
}

/// The dual-write trigger of one table. The session's `pgshift.version`
/// setting picks the direction: the new version's writes fill the old
/// columns with `down`; every other session (old version, or no setting, as
/// a connection that bypasses the proxy) fills the new columns with `up`.
/// Expressions see the row's columns as variables named as in their version.
fn trigger_sql(schema: &str, shape: &Shape, name: &str, version: &str) -> String {
    let table = qualified(schema, &shape.physical);
    let type_of = |physical: &str| format!("{table}.{}%TYPE", ident(physical));
    let branch = |vars: &[(String, String)], assigns: &[(String, String)]| {
        let mut out = String::new();
        let mut results = String::new();
        for (i, (physical, _)) in assigns.iter().enumerate() {
            results.push_str(&format!("    _pgshift_result_{i} {};\n", type_of(physical)));
        }
        out.push_str(&format!("  DECLARE\n{results}  BEGIN\n    DECLARE\n"));
        // A variable named new or old would hide the trigger's row records.
        for (var, physical) in vars.iter().filter(|(v, _)| v != "new" && v != "old") {
            out.push_str(&format!(
                "      {} {} := NEW.{};\n",
                ident(var),
                type_of(physical),
                ident(physical)
            ));
        }
        out.push_str("    BEGIN\n");
        for (i, (_, expr)) in assigns.iter().enumerate() {
            out.push_str(&format!("      _pgshift_result_{i} := ({expr});\n"));
        }
        out.push_str("    END;\n");
        for (i, (physical, _)) in assigns.iter().enumerate() {
            out.push_str(&format!(
                "    NEW.{} := _pgshift_result_{i};\n",
                ident(physical)
            ));
        }
        out.push_str("  END;\n");
        out
    };
    let old_vars: Vec<(String, String)> = shape
        .old_cols
        .iter()
        .map(|c| (c.clone(), c.clone()))
        .collect();
    let up = branch(&old_vars, &shape.up);
    let down = branch(&shape.new_cols, &shape.down);
    let body = format!(
        "BEGIN\nIF current_setting('pgshift.version', true) IS DISTINCT FROM {} THEN\n{up}ELSE\n{down}END IF;\nRETURN NEW;\nEND",
        literal(version)
    );
    let tag = dollar_tag(&body);
    let function = qualified("pgshift", name);
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}\n{tag}; \
         CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()",
        ident(name)
    )
}
