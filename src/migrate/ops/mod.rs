//! The planner's operations, one file per operation as pgroll's
//! `op_<name>.go`: each adds to the [`Planner`] the steps its operation
//! needs at start, complete and rollback, and the shapes the views and
//! triggers are built from. What several share is in `common`.

mod add_column;
mod alter_column;
mod carry;
mod common;
mod create_constraint;
mod create_index;
mod create_table;
mod created;
mod drop_column;
mod drop_constraint;
mod drop_index;
mod drop_multicolumn_constraint;
mod drop_table;
mod rename_column;
mod rename_constraint;
mod rename_table;
mod set_replica_identity;
mod sql;
#[cfg(test)]
mod testkit;

use crate::migrate::format::Operation;
use crate::migrate::plan::Planner;

impl Planner<'_> {
    /// Plans one operation; `at` is its JSON path, for problems.
    pub(in crate::migrate) fn operation(&mut self, at: &str, op: &Operation) {
        match op {
            Operation::AddColumn(a) => self.add_column(at, a),
            Operation::DropColumn(d) => self.drop_column(at, d),
            Operation::RenameColumn(r) => self.rename_column(at, r),
            Operation::AlterColumn(a) => self.alter_column(at, a),
            Operation::CreateTable(t) => self.create_table(at, t),
            Operation::CreateIndex(c) => self.create_index(at, c),
            Operation::DropIndex(d) => self.drop_index(at, d),
            Operation::Sql(s) => self.sql(s),
            Operation::RenameTable(r) => self.rename_table(at, r),
            Operation::DropTable(d) => self.drop_table(at, d),
            Operation::RenameConstraint(r) => self.rename_constraint(at, r),
            Operation::SetReplicaIdentity(r) => self.set_replica_identity(at, r),
            Operation::CreateConstraint(c) => self.create_constraint(at, c),
            Operation::DropConstraint(d) => self.drop_constraint(at, d),
            Operation::DropMulticolumnConstraint(d) => self.drop_multicolumn_constraint(at, d),
        }
    }
}

impl Planner<'_> {
    /// `REFERENCES <table> (<column>) [MATCH ...] [ON DELETE ...] [ON
    /// UPDATE ...]`: a column's foreign key, the table as it is named
    /// while start runs (a table this migration creates or renames by its
    /// physical name).
    fn column_references(&self, fk: &crate::migrate::format::ForeignKeyReference) -> String {
        let mut sql = format!(
            "REFERENCES {} ({})",
            self.table_q(&self.resolve_table(&fk.table)),
            crate::quote::ident(&fk.column)
        );
        push_fk_options(
            &mut sql,
            fk.match_type.as_deref(),
            fk.on_delete.as_deref(),
            fk.on_update.as_deref(),
        );
        sql
    }
}

/// Appends a foreign key's `MATCH`, `ON DELETE` and `ON UPDATE` clauses.
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
