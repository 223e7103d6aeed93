//! Plans `create_constraint`: the constraint's columns are duplicated and the
//! constraint built on the duplicates (a unique index CONCURRENTLY, a foreign
//! key or check NOT VALID), validated or attached at complete.

use std::collections::{BTreeMap, BTreeSet};

use super::push_fk_options;

use crate::migrate::format;
use crate::migrate::plan::{ColumnChange, Planner, Step};
use crate::quote::ident;

/// The duplicated columns a new constraint is built on.
struct Duplicates {
    /// The table, qualified, as it is during the migration and after complete.
    table: String,
    final_table: String,
    /// The duplicates, quoted, in the constraint's column order.
    columns: Vec<String>,
    /// Each constrained column → its duplicate.
    renamed: BTreeMap<String, String>,
}

impl Planner<'_> {
    pub(super) fn create_constraint(&mut self, at: &str, c: &format::CreateConstraint) {
        if let Some(s) = self.created_shape(&c.table) {
            return self.create_constraint_created(at, s, c);
        }
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
        self.shapes[s].added_constraints.insert(c.name.clone());
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
        let on = Duplicates {
            table: self.table_q(&self.shapes[s].physical.clone()),
            final_table: self.table_q(&self.shapes[s].new_name.clone()),
            columns: c.columns.iter().map(|col| ident(&renamed[col])).collect(),
            renamed,
        };
        match c.kind.as_str() {
            "unique" | "primary_key" => self.unique_on(c, &on),
            "foreign_key" => self.foreign_key_on(c, &on),
            "check" => self.check_on(at, c, &on),
            other => self.problem(at, format!("unknown constraint type {other:?}")),
        }
    }

    /// A unique or primary key constraint: a unique index built
    /// CONCURRENTLY on the duplicates at start, attached at complete.
    fn unique_on(&mut self, c: &format::CreateConstraint, on: &Duplicates) {
        let (table, final_table) = (&on.table, &on.final_table);
        self.concurrent.push(Step::Concurrent {
            sql: format!(
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {table} ({})",
                ident(&c.name),
                on.columns.join(", ")
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

    /// A foreign key on the duplicates: NOT VALID at start, validated at
    /// complete.
    fn foreign_key_on(&mut self, c: &format::CreateConstraint, on: &Duplicates) {
        let Some(r) = &c.references else { return };
        let table = &on.table;
        let target = self.resolve_table(&r.table);
        let cols: Vec<String> = r.columns.iter().map(|col| ident(col)).collect();
        let mut sql = format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})",
            ident(&c.name),
            on.columns.join(", "),
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

    /// A check over the duplicates (its expression's column names mapped to
    /// them): NOT VALID at start, validated at complete.
    fn check_on(&mut self, at: &str, c: &format::CreateConstraint, on: &Duplicates) {
        let table = &on.table;
        let expr = c.check.as_deref().unwrap_or("true");
        match crate::migrate::expr::rename_columns(expr, &on.renamed) {
            Ok(rewritten) => {
                self.expand.push(Step::Sql {
                    sql: format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({rewritten}){} NOT VALID",
                        ident(&c.name),
                        if c.no_inherit == Some(true) {
                            " NO INHERIT"
                        } else {
                            ""
                        }
                    ),
                });
                self.validate.push(Step::Sql {
                    sql: format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&c.name)),
                });
            }
            Err(message) => self.problem(&format!("{at}/check"), message),
        }
    }
}

#[cfg(test)]
mod tests;
