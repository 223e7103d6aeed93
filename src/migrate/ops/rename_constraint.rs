//! Plans `rename_constraint`: renamed at complete.

use crate::migrate::format;
use crate::migrate::plan::{Planner, Step};
use crate::quote::{ident, qualified};

impl Planner<'_> {
    pub(super) fn rename_constraint(&mut self, at: &str, r: &format::RenameConstraint) {
        let (table, from, to) = (r.table.as_str(), r.from.as_str(), r.to.as_str());
        if let Some(s) = self.created_shape(table) {
            // Postgres checks the names when start renames it.
            let physical = self.table_q(&self.shapes[s].physical.clone());
            self.expand.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {physical} RENAME CONSTRAINT {} TO {}",
                    ident(from),
                    ident(to)
                ),
            });
            return;
        }
        let Some(s) = self.existing_shape(at, table, "rename_constraint") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        let added = &self.shapes[s].added_constraints;
        if !info.constraints.iter().any(|c| c == from) && !added.contains(from) {
            self.problem(
                at,
                format!("constraint {from:?} does not exist on table {table:?}"),
            );
            return;
        }
        if info.constraints.iter().any(|c| c == to) || added.contains(to) {
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

#[cfg(test)]
mod tests;
