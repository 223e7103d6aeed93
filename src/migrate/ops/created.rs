//! Operations on a table that the same migration creates, in the order
//! written (`create_table` then `add_column`, `alter_column`,
//! `create_constraint`, `drop_column`): plain DDL on its physical table,
//! which only the new version sees and which is empty while start runs
//! (the new version's views come after every expand step), so nothing
//! needs a duplicate, a trigger or a backfill.

use crate::migrate::format;
use crate::migrate::names;
use crate::migrate::plan::{Planner, Step};
use crate::quote::{ident, literal};

impl Planner<'_> {
    /// The shape of `name` when this migration creates it.
    pub(super) fn created_shape(&self, name: &str) -> Option<usize> {
        self.shapes
            .iter()
            .position(|s| s.new_name == name && !s.dropped && s.old_name.is_none())
    }

    /// `ALTER TABLE <the created table> <clauses>` at start.
    fn alter_created(&mut self, s: usize, clauses: &[String]) {
        if clauses.is_empty() {
            return;
        }
        let table = self.table_q(&self.shapes[s].physical.clone());
        let sql = clauses
            .iter()
            .map(|c| {
                if c.starts_with("COMMENT ON") {
                    c.clone()
                } else {
                    format!("ALTER TABLE {table} {c}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        self.expand.push(Step::Sql { sql });
    }

    /// `add_column` on a created table: the column as `create_table`
    /// would have defined it.
    pub(super) fn add_column_created(&mut self, at: &str, s: usize, a: &format::AddColumn) {
        let col = &a.column;
        if self.new_col(s, &col.name).is_some() {
            self.problem(
                at,
                format!(
                    "column {:?} already exists in table {:?}",
                    col.name, a.table
                ),
            );
            return;
        }
        let final_name = self.shapes[s].new_name.clone();
        let table = self.table_q(&self.shapes[s].physical.clone());
        let mut clauses = vec![format!(
            "ADD COLUMN {}",
            self.column_definition(&final_name, col)
        )];
        if col.pk == Some(true) {
            clauses.push(format!(
                "ADD CONSTRAINT {} PRIMARY KEY ({})",
                ident(&names::postgres_object_name(&final_name, None, "pkey")),
                ident(&col.name)
            ));
        }
        if let Some(comment) = &col.comment {
            clauses.push(format!(
                "COMMENT ON COLUMN {table}.{} IS {}",
                ident(&col.name),
                literal(comment)
            ));
        }
        self.alter_created(s, &clauses);
        if super::create_table::owns_sequence(col) {
            self.shapes[s]
                .sequences
                .push((col.name.clone(), col.name.clone()));
        }
        self.shapes[s]
            .new_cols
            .push((col.name.clone(), col.name.clone()));
    }

    /// `alter_column` on a created table: each change as ALTER TABLE.
    pub(super) fn alter_column_created(&mut self, at: &str, s: usize, a: &format::AlterColumn) {
        let Some(c) = self.new_col(s, &a.column) else {
            self.problem(
                at,
                format!(
                    "column {:?} does not exist in table {:?}",
                    a.column, a.table
                ),
            );
            return;
        };
        let new_name = a.new_name().to_string();
        if new_name != a.column && self.new_col(s, &new_name).is_some() {
            self.problem(
                at,
                format!("column {new_name:?} already exists in table {:?}", a.table),
            );
            return;
        }
        let physical = self.shapes[s].new_cols[c].1.clone();
        let check = match super::alter_column::renamed_check(a) {
            Ok(check) => check,
            Err(e) => return self.problem(at, e),
        };
        let col = ident(&new_name);
        let mut clauses = Vec::new();
        if new_name != physical {
            clauses.push(format!("RENAME COLUMN {} TO {col}", ident(&physical)));
        }
        if let Some(type_) = &a.type_ {
            // The table is empty; USING only has to type-check.
            clauses.push(format!(
                "ALTER COLUMN {col} TYPE {type_} USING ({col})::{type_}"
            ));
        }
        match &a.default {
            Some(Some(d)) => clauses.push(format!("ALTER COLUMN {col} SET DEFAULT {d}")),
            Some(None) => clauses.push(format!("ALTER COLUMN {col} DROP DEFAULT")),
            None => {}
        }
        match a.nullable {
            Some(false) => clauses.push(format!("ALTER COLUMN {col} SET NOT NULL")),
            Some(true) => clauses.push(format!("ALTER COLUMN {col} DROP NOT NULL")),
            None => {}
        }
        if let Some(unique) = &a.unique {
            clauses.push(format!(
                "ADD CONSTRAINT {} UNIQUE ({col})",
                ident(&unique.name)
            ));
        }
        if let Some(check) = &check {
            clauses.push(format!(
                "ADD CONSTRAINT {} CHECK ({}){}",
                ident(&check.name),
                check.constraint,
                if check.no_inherit == Some(true) {
                    " NO INHERIT"
                } else {
                    ""
                }
            ));
        }
        if let Some(fk) = &a.references {
            clauses.push(format!(
                "ADD CONSTRAINT {} FOREIGN KEY ({col}) {}",
                ident(&fk.name),
                self.column_references(fk)
            ));
        }
        let table = self.table_q(&self.shapes[s].physical.clone());
        match &a.comment {
            Some(Some(text)) => clauses.push(format!(
                "COMMENT ON COLUMN {table}.{col} IS {}",
                literal(text)
            )),
            Some(None) => clauses.push(format!("COMMENT ON COLUMN {table}.{col} IS NULL")),
            None => {}
        }
        self.alter_created(s, &clauses);
        for (seq_column, _) in &mut self.shapes[s].sequences {
            if *seq_column == physical {
                *seq_column = new_name.clone();
            }
        }
        self.shapes[s].new_cols[c] = (new_name.clone(), new_name);
    }

    /// `create_constraint` on a created table: the constraint as
    /// `create_table`'s `constraints` would have defined it.
    pub(super) fn create_constraint_created(
        &mut self,
        at: &str,
        s: usize,
        c: &format::CreateConstraint,
    ) {
        for col in &c.columns {
            if self.new_col(s, col).is_none() {
                self.problem(
                    at,
                    format!("column {col:?} does not exist in table {:?}", c.table),
                );
                return;
            }
        }
        let constraint = format::TableConstraint {
            name: c.name.clone(),
            kind: c.kind.clone(),
            columns: c.columns.clone(),
            check: c.check.clone(),
            references: c.references.clone(),
            exclude: None,
            deferrable: None,
            initially_deferred: None,
            nulls_not_distinct: None,
            no_inherit: c.no_inherit,
            index_parameters: c.index_parameters.clone(),
        };
        match self.table_constraint(&constraint) {
            Ok(def) => self.alter_created(s, &[format!("ADD {def}")]),
            Err(message) => self.problem(at, message),
        }
    }

    /// `drop_column` on a created table: dropped at start.
    pub(super) fn drop_column_created(&mut self, at: &str, s: usize, d: &format::DropColumn) {
        let Some(c) = self.new_col(s, &d.column) else {
            self.problem(
                at,
                format!(
                    "column {:?} does not exist in table {:?}",
                    d.column, d.table
                ),
            );
            return;
        };
        let (_, physical) = self.shapes[s].new_cols.remove(c);
        self.shapes[s].sequences.retain(|(p, _)| *p != physical);
        self.alter_created(s, &[format!("DROP COLUMN {}", ident(&physical))]);
    }
}
