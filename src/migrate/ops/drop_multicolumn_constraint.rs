//! Plans `drop_multicolumn_constraint`: each of the constraint's columns is
//! duplicated without it, each kept in step by its own `up` and `down`
//! (the column as it is, when the file gives none).

use super::common::Columns;
use crate::migrate::format;
use crate::migrate::plan::Planner;
use crate::quote::ident;

impl Planner<'_> {
    pub(super) fn drop_multicolumn_constraint(
        &mut self,
        at: &str,
        d: &format::DropMulticolumnConstraint,
    ) {
        self.drop_constraint_columns(at, &d.table, &d.name, Columns::Several, |col| {
            let fallback = ident(col);
            (
                d.up.get(col).cloned().unwrap_or_else(|| fallback.clone()),
                d.down.get(col).cloned().unwrap_or(fallback),
            )
        });
    }
}

#[cfg(test)]
mod tests;
