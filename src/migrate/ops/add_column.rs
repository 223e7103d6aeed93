//! Plans `add_column`: a `_pgshift_new_*` column the new version sees under
//! its name, filled by `up` for old-version writes and backfilled; NOT NULL,
//! unique, check, foreign key and comment carried as the column asks.

use super::common::Fill;
use crate::migrate::format;
use crate::migrate::names;
use crate::migrate::plan::{Planner, Step};
use crate::quote::ident;

impl Planner<'_> {
    pub(super) fn add_column(&mut self, at: &str, a: &format::AddColumn) {
        let (table, col, up) = (a.table.as_str(), &a.column, a.up.as_deref());
        if let Some(s) = self.created_shape(table) {
            return self.add_column_created(at, s, a);
        }
        let Some(s) = self.existing_shape(at, table, "add_column") else {
            return;
        };
        if self.new_col(s, &col.name).is_some() {
            self.problem(
                at,
                format!("column {:?} already exists in table {table:?}", col.name),
            );
            return;
        }
        if !col.nullable && col.default.is_none() && up.is_none() {
            self.problem(
                &format!("{at}/column"),
                format!("column {:?} is NOT NULL with neither `default` nor `up`: existing rows would have no value; add one of them", col.name),
            );
            return;
        }
        if col.pk == Some(true) || col.generated.is_some() {
            self.problem(at, "add_column with `pk` or `generated` is not supported; create the table with it instead".into());
            return;
        }
        let physical = names::new_column(&col.name);
        if col.unique == Some(true)
            && let Some(default) = col.default.as_deref()
        {
            // A unique column filled with one default would fail its own
            // index: as pgroll does, the default is set after the column is
            // added (new rows get it), and existing rows get `up` (else the
            // default, evaluated per row) from the backfill.
            self.add_physical(s, &physical, &col.type_, None, Fill::Default);
            let table = self.table_q(&self.shapes[s].physical.clone());
            self.expand.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                    ident(&physical)
                ),
            });
            if up.is_none() {
                self.shapes[s].backfill_set.push((
                    physical.clone(),
                    format!("COALESCE({}, {default})", ident(&physical)),
                ));
            }
        } else {
            self.add_physical(
                s,
                &physical,
                &col.type_,
                col.default.as_deref(),
                Fill::Default,
            );
        }
        if !col.nullable {
            self.not_null(s, &physical, &col.name);
        }
        self.column_extras(s, &physical, &col.name, col, None);
        if let Some(up) = up {
            self.shapes[s].up.push((physical.clone(), up.to_string()));
            self.shapes[s].backfill_touch = true;
            self.verify_converted(s, &physical, up);
        }
        self.shapes[s].new_cols.push((col.name.clone(), physical));
    }
}

#[cfg(test)]
mod tests;
