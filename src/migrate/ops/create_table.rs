//! Plans `create_table`: the table is created under a temporary name that
//! only the new version sees, and renamed at complete.

use crate::migrate::format;
use crate::migrate::names;
use crate::migrate::plan::{Planner, Shape, Step};
use crate::quote::{ident, literal};

impl Planner<'_> {
    pub(super) fn create_table(&mut self, at: &str, t: &format::CreateTable) {
        if self.cx.tables.contains_key(&t.name) || self.shapes.iter().any(|s| s.new_name == t.name)
        {
            self.problem(at, format!("table {:?} already exists", t.name));
            return;
        }
        let physical = names::new_table(&t.name);
        let table = self.table_q(&physical);
        // Constraints are named as Postgres names them for the final
        // table (pgroll creates it under that name), so that they keep
        // their names once complete renames the table.
        let pk: Vec<&str> = t
            .columns
            .iter()
            .filter(|c| c.pk == Some(true))
            .map(|c| c.name.as_str())
            .collect();
        let mut defs: Vec<String> = Vec::new();
        for col in &t.columns {
            defs.push(self.column_definition(&t.name, col));
        }
        if !pk.is_empty() {
            // `pk` on several columns is one composite key.
            defs.push(format!(
                "CONSTRAINT {} PRIMARY KEY ({})",
                ident(&names::postgres_object_name(&t.name, None, "pkey")),
                pk.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
            ));
        }
        for c in &t.constraints {
            match self.table_constraint(c) {
                Ok(def) => defs.push(def),
                Err(message) => self.problem(at, message),
            }
        }
        let mut sql = format!("CREATE TABLE {table} ({})", defs.join(", "));
        if let Some(comment) = &t.comment {
            sql.push_str(&format!(
                "; COMMENT ON TABLE {table} IS {}",
                literal(comment)
            ));
        }
        for col in &t.columns {
            if let Some(comment) = &col.comment {
                sql.push_str(&format!(
                    "; COMMENT ON COLUMN {table}.{} IS {}",
                    ident(&col.name),
                    literal(comment)
                ));
            }
        }
        self.expand.push(Step::Sql { sql });
        self.undo.push(Step::Sql {
            sql: format!("DROP TABLE IF EXISTS {table}"),
        });
        self.contract
            .push(format!("ALTER TABLE {table} RENAME TO {}", ident(&t.name)));
        // Serial and identity sequences were named after the temporary
        // table; they take the names Postgres gives the final one.
        self.shapes.push(Shape {
            physical,
            old_name: None,
            new_name: t.name.clone(),
            physical_after: Some(t.name.clone()),
            dropped: false,
            old_cols: Vec::new(),
            new_cols: t
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.name.clone()))
                .collect(),
            up: Vec::new(),
            down: Vec::new(),
            backfill_set: Vec::new(),
            backfill_touch: false,
            duplicates: Vec::new(),
            new_indexes: Default::default(),
            dropping: Default::default(),
            origins: Default::default(),
            added_constraints: Default::default(),
            sequences: t
                .columns
                .iter()
                .filter(|c| owns_sequence(c))
                .map(|c| (c.name.clone(), c.name.clone()))
                .collect(),
        });
    }

    /// A column's definition in CREATE TABLE (of final name `table`):
    /// type, generated or identity, default, NOT NULL, UNIQUE (named as
    /// Postgres names it for the final table), check and foreign key. A
    /// primary key is the table's constraint, not the column's.
    pub(super) fn column_definition(&self, table: &str, col: &format::Column) -> String {
        let mut d = format!("{} {}", ident(&col.name), col.type_);
        if let Some(generated) = &col.generated {
            if let Some(expr) = &generated.expression {
                d.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED"));
            } else if let Some(identity) = &generated.identity {
                let when = identity
                    .user_specified_values
                    .as_deref()
                    .unwrap_or("BY DEFAULT")
                    .to_uppercase();
                d.push_str(&format!(" GENERATED {when} AS IDENTITY"));
                if let Some(options) = &identity.sequence_options {
                    d.push_str(&format!(" ({options})"));
                }
            }
        }
        if let Some(default) = &col.default {
            d.push_str(&format!(" DEFAULT {default}"));
        }
        if !col.nullable {
            d.push_str(" NOT NULL");
        }
        if col.unique == Some(true) {
            d.push_str(&format!(
                " CONSTRAINT {} UNIQUE",
                ident(&names::postgres_object_name(table, Some(&col.name), "key"))
            ));
        }
        if let Some(check) = &col.check {
            d.push_str(&format!(
                " CONSTRAINT {} CHECK ({})",
                ident(&check.name),
                check.constraint
            ));
        }
        if let Some(fk) = &col.references {
            d.push_str(&format!(
                " CONSTRAINT {} {}",
                ident(&fk.name),
                self.column_references(fk)
            ));
        }
        d
    }
}

/// Whether `col` owns a sequence: a serial type or an identity.
pub(super) fn owns_sequence(col: &format::Column) -> bool {
    let type_ = col.type_.trim().to_ascii_lowercase();
    matches!(
        type_.as_str(),
        "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
    ) || col.generated.as_ref().is_some_and(|g| g.identity.is_some())
}

#[cfg(test)]
mod tests;
