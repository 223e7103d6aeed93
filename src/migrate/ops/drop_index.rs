//! Plans `drop_index`: dropped CONCURRENTLY at complete.

use crate::migrate::format;
use crate::migrate::plan::{Planner, Step};
use crate::quote::qualified;

impl Planner<'_> {
    pub(super) fn drop_index(&mut self, at: &str, d: &format::DropIndex) {
        let name = d.name.as_str();
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
}

#[cfg(test)]
mod tests;
