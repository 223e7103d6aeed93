//! Plans `alter_column`: type, default, nullability, unique, check, foreign
//! key and comment changes, through a duplicated column kept in step by `up`
//! and `down` (each a plain copy when the file gives none, as pgroll's);
//! `name` renames the column, alone as `rename_column` does, or with the
//! other changes.

use std::collections::{BTreeMap, BTreeSet};

use crate::migrate::expr;
use crate::migrate::format::{self, Column};
use crate::migrate::plan::{ColumnChange, Planner};

impl Planner<'_> {
    pub(super) fn alter_column(&mut self, at: &str, a: &format::AlterColumn) {
        if a.only_renames() {
            let rename = format::RenameColumn {
                table: a.table.clone(),
                from: a.column.clone(),
                to: a.new_name().to_string(),
            };
            return self.rename_column(at, &rename);
        }
        if let Some(s) = self.created_shape(&a.table) {
            return self.alter_column_created(at, s, a);
        }
        let Some(s) = self.existing_shape(at, &a.table, "alter_column") else {
            return;
        };
        let new_name = a.new_name();
        if new_name != a.column && self.new_col(s, new_name).is_some() {
            self.problem(
                at,
                format!("column {new_name:?} already exists in table {:?}", a.table),
            );
            return;
        }
        let change = ColumnChange {
            type_: a.type_.clone(),
            default: a.default.clone(),
            nullable: a.nullable,
        };
        let (up, down) = (a.up_or_copy(), a.down_or_copy());
        let Some(physical) =
            self.duplicate_column(at, s, &a.column, change, &up, &down, &BTreeSet::new())
        else {
            return;
        };
        if let Some(c) = self.new_col(s, &a.column) {
            self.shapes[s].new_cols[c].0 = new_name.to_string();
        }
        let check = match renamed_check(a) {
            Ok(check) => check,
            Err(e) => return self.problem(at, e),
        };
        let col = Column {
            name: new_name.to_string(),
            type_: String::new(),
            nullable: true,
            pk: None,
            unique: a.unique.as_ref().map(|_| true),
            default: None,
            check,
            references: a.references.clone(),
            comment: match &a.comment {
                Some(Some(c)) => Some(c.clone()),
                _ => None,
            },
            generated: None,
        };
        let unique_name = a.unique.as_ref().map(|u| u.name.as_str());
        self.column_extras(s, &physical, new_name, &col, unique_name);
    }
}

/// The operation's check, over the column's new name: the file's check
/// names the column as the file knew it.
pub(super) fn renamed_check(
    a: &format::AlterColumn,
) -> Result<Option<format::CheckConstraint>, String> {
    let Some(check) = &a.check else {
        return Ok(None);
    };
    let new_name = a.new_name();
    if new_name == a.column {
        return Ok(Some(check.clone()));
    }
    let renamed = BTreeMap::from([(a.column.clone(), new_name.to_string())]);
    let constraint = expr::rename_columns(&check.constraint, &renamed)
        .map_err(|e| format!("check {:?}: {e}", check.name))?;
    Ok(Some(format::CheckConstraint {
        constraint,
        ..check.clone()
    }))
}

#[cfg(test)]
mod tests;
