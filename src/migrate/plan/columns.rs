//! Planning the column operations: add_column, drop_column, rename_column,
//! alter_column, and the column duplication that alter_column and the
//! constraint operations share.

use std::collections::BTreeSet;

use super::{ColumnChange, Planner, Step, Verify, push_fk_options};
use crate::migrate::format::{self, Column};
use crate::migrate::names;
use crate::quote::{ident, literal};

impl Planner<'_> {
    /// The physical column's DDL type and default clause for a new column,
    /// and the backfill assignment a volatile default needs.
    pub(super) fn add_physical(
        &mut self,
        shape: usize,
        physical: &str,
        type_: &str,
        default: Option<&str>,
    ) {
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
    pub(super) fn not_null(&mut self, shape: usize, physical: &str, final_name: &str) {
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
        // And off again before the triggers go, for the same reason.
        self.undo_before_triggers.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                ident(&check)
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

    pub(super) fn column_extras(
        &mut self,
        shape: usize,
        physical: &str,
        final_name: &str,
        col: &Column,
    ) {
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

    pub(super) fn add_column(&mut self, at: &str, table: &str, col: &Column, up: Option<&str>) {
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

    pub(super) fn verify_converted(&mut self, s: usize, physical: &str, up: &str) {
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

    pub(super) fn drop_column(&mut self, at: &str, table: &str, column: &str, down: Option<&str>) {
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

    pub(super) fn rename_column(&mut self, at: &str, table: &str, from: &str, to: &str) {
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
    pub(super) fn duplicate_column(
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
        // An index an earlier operation of this file creates on the column
        // would go with the old column at complete.
        if let Some(indexes) = self.shapes[s].new_indexes.get(&old_physical) {
            let indexes = indexes.join(", ");
            self.problem(
                at,
                format!(
                    "column {name:?} is indexed by {indexes}, which an earlier operation of this migration creates; the index would go with the old column at complete, so put that create_index after this operation"
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

    pub(super) fn alter_column(&mut self, at: &str, a: &format::AlterColumn) {
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
}
