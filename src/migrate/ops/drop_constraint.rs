//! Plans `drop_constraint`: the constraint's one column is duplicated
//! without the constraint, kept in step by `up` and `down`; complete drops
//! the old column, and the constraint with it.

use super::common::Columns;
use crate::migrate::format;
use crate::migrate::plan::Planner;

impl Planner<'_> {
    pub(super) fn drop_constraint(&mut self, at: &str, d: &format::DropConstraint) {
        self.drop_constraint_columns(at, &d.table, &d.name, Columns::One, |_| {
            (d.up.clone(), d.down.clone())
        });
    }
}

#[cfg(test)]
mod tests;
