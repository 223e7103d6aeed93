//! Plans `rename_table`: the new version's view has the new name; complete
//! renames the table.

use crate::migrate::format;
use crate::migrate::plan::Planner;
use crate::quote::ident;

impl Planner<'_> {
    pub(super) fn rename_table(&mut self, at: &str, r: &format::RenameTable) {
        let (from, to) = (r.from.as_str(), r.to.as_str());
        let Some(s) = self.existing_shape(at, from, "rename_table") else {
            return;
        };
        if self.table_exists_in_new_version(to) {
            self.problem(at, format!("table {to:?} already exists"));
            return;
        }
        self.shapes[s].new_name = to.to_string();
        let physical = self.table_q(&self.shapes[s].physical.clone());
        self.contract
            .push(format!("ALTER TABLE {physical} RENAME TO {}", ident(to)));
        self.shapes[s].physical_after = Some(to.to_string());
    }
}

#[cfg(test)]
mod tests;
