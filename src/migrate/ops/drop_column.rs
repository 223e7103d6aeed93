//! Plans `drop_column`: the new version no longer sees the column; new-
//! version writes fill it with `down` until complete drops it.

use crate::migrate::format;
use crate::migrate::plan::Planner;
use crate::quote::ident;

impl Planner<'_> {
    pub(super) fn drop_column(&mut self, at: &str, d: &format::DropColumn) {
        let (table, column, down) = (d.table.as_str(), d.column.as_str(), d.down.as_deref());
        if let Some(s) = self.created_shape(table) {
            return self.drop_column_created(at, s, d);
        }
        let Some(s) = self.existing_shape(at, table, "drop_column") else {
            return;
        };
        let Some(c) = self.new_col(s, column) else {
            self.problem(
                at,
                format!("column {column:?} does not exist in table {table:?}"),
            );
            return;
        };
        let (_, physical) = self.shapes[s].new_cols.remove(c);
        if let Some(info) = self.info(s).and_then(|t| t.column(&physical))
            && info.not_null
            && info.default.is_none()
            && !info.generated
            && down.is_none()
        {
            self.problem(
                    at,
                    format!("column {column:?} is NOT NULL without a default, so new-version inserts could not fill it; give `down`"),
                );
            return;
        }
        if let Some(down) = down {
            self.shapes[s]
                .down
                .push((physical.clone(), down.to_string()));
        }
        let t = self.table_q(&self.shapes[s].physical.clone());
        self.contract.push(format!(
            "ALTER TABLE {t} DROP COLUMN IF EXISTS {}",
            ident(&physical)
        ));
    }
}

#[cfg(test)]
mod tests;
