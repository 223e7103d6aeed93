//! Planning the index and constraint operations: create_index, drop_index,
//! create_constraint, drop_constraint, drop_multicolumn_constraint and
//! rename_constraint.

use std::collections::{BTreeMap, BTreeSet};

use super::{ColumnChange, Planner, Step, push_fk_options};
use crate::migrate::format;
use crate::quote::{ident, qualified};

impl Planner<'_> {
    pub(super) fn create_constraint(&mut self, at: &str, c: &format::CreateConstraint) {
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
                match crate::migrate::expr::rename_columns(expr, &renamed) {
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
    pub(super) fn drop_constraint(
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

    pub(super) fn create_index(&mut self, at: &str, c: &format::CreateIndex) {
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
            let physical = self.shapes[s].new_cols[i].1.clone();
            self.shapes[s]
                .new_indexes
                .entry(physical.clone())
                .or_default()
                .push(c.name.clone());
            let mut field = ident(&physical);
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

    pub(super) fn drop_index(&mut self, at: &str, name: &str) {
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

    pub(super) fn rename_constraint(&mut self, at: &str, table: &str, from: &str, to: &str) {
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
}
