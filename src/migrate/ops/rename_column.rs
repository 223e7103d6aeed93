//! Plans `rename_column`: the new version's view shows the column under its
//! new name; complete renames it.

use crate::migrate::format;
use crate::migrate::plan::Planner;

impl Planner<'_> {
    pub(super) fn rename_column(&mut self, at: &str, r: &format::RenameColumn) {
        let (table, from, to) = (r.table.as_str(), r.from.as_str(), r.to.as_str());
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
}

#[cfg(test)]
mod tests;
