//! Plans `alter_column`: type, default, nullability, unique, check, foreign
//! key and comment changes, through a duplicated column kept in step by `up`
//! and `down`.

use std::collections::BTreeSet;

use crate::migrate::format::{self, Column};
use crate::migrate::plan::{ColumnChange, Planner};

impl Planner<'_> {
    pub(super) fn alter_column(&mut self, at: &str, a: &format::AlterColumn) {
        let Some(s) = self.existing_shape(at, &a.table, "alter_column") else {
            return;
        };
        let change = ColumnChange {
            type_: a.type_.clone(),
            default: a.default.clone(),
            nullable: a.nullable,
        };
        let Some(physical) =
            self.duplicate_column(at, s, &a.column, change, &a.up, &a.down, &BTreeSet::new())
        else {
            return;
        };
        let col = Column {
            name: a.column.clone(),
            type_: String::new(),
            nullable: true,
            pk: None,
            unique: a.unique.as_ref().map(|_| true),
            default: None,
            check: a.check.clone(),
            references: a.references.clone(),
            comment: match &a.comment {
                Some(Some(c)) => Some(c.clone()),
                _ => None,
            },
            generated: None,
        };
        let unique_name = a.unique.as_ref().map(|u| u.name.as_str());
        self.column_extras(s, &physical, &a.column, &col, unique_name);
    }
}

#[cfg(test)]
mod tests;
