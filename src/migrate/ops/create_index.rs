//! Plans `create_index`: built CONCURRENTLY at start on the physical columns,
//! dropped CONCURRENTLY by rollback.

use crate::migrate::format;
use crate::migrate::plan::{Planner, Step};
use crate::quote::{ident, qualified};

impl Planner<'_> {
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
        if self.shapes[s].old_name.is_none() {
            // A table this migration creates is empty and seen by no one
            // yet: a plain build, in the order the operations are written.
            self.expand.push(Step::Sql {
                sql: sql.replacen(" CONCURRENTLY IF NOT EXISTS", "", 1),
            });
            return;
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
}

#[cfg(test)]
mod tests;
