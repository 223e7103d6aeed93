//! Plans `drop_table`: the new version no longer sees the table; complete
//! drops it.

use crate::migrate::format;
use crate::migrate::plan::Planner;

impl Planner<'_> {
    pub(super) fn drop_table(&mut self, at: &str, d: &format::DropTable) {
        let name = d.name.as_str();
        let Some(s) = self.existing_shape(at, name, "drop_table") else {
            return;
        };
        self.shapes[s].dropped = true;
        let physical = self.table_q(&self.shapes[s].physical.clone());
        self.contract
            .push(format!("DROP TABLE IF EXISTS {physical}"));
    }
}

#[cfg(test)]
mod tests;
