//! Planning the table operations: create_table, rename_table, drop_table,
//! set_replica_identity, and the raw `sql` operation.

use super::{Planner, Shape, Step, push_fk_options};
use crate::migrate::format;
use crate::migrate::names;
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
        let mut defs: Vec<String> = Vec::new();
        for col in &t.columns {
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
            if col.pk == Some(true) {
                d.push_str(" PRIMARY KEY");
            }
            if col.unique == Some(true) {
                d.push_str(" UNIQUE");
            }
            if let Some(check) = &col.check {
                d.push_str(&format!(
                    " CONSTRAINT {} CHECK ({})",
                    ident(&check.name),
                    check.constraint
                ));
            }
            if let Some(fk) = &col.references {
                let target = self.resolve_table(&fk.table);
                d.push_str(&format!(
                    " CONSTRAINT {} REFERENCES {} ({})",
                    ident(&fk.name),
                    self.table_q(&target),
                    ident(&fk.column)
                ));
                push_fk_options(
                    &mut d,
                    fk.match_type.as_deref(),
                    fk.on_delete.as_deref(),
                    fk.on_update.as_deref(),
                );
            }
            defs.push(d);
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
            new_indexes: Default::default(),
        });
    }

    pub(super) fn table_constraint(&self, c: &format::TableConstraint) -> Result<String, String> {
        let cols = |names: &[String]| {
            names
                .iter()
                .map(|n| ident(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut def = format!("CONSTRAINT {} ", ident(&c.name));
        match c.kind.as_str() {
            "primary_key" => def.push_str(&format!("PRIMARY KEY ({})", cols(&c.columns))),
            "unique" => def.push_str(&format!(
                "UNIQUE{} ({})",
                if c.nulls_not_distinct == Some(true) {
                    " NULLS NOT DISTINCT"
                } else {
                    ""
                },
                cols(&c.columns)
            )),
            "check" => def.push_str(&format!(
                "CHECK ({}){}",
                c.check.as_deref().unwrap_or("true"),
                if c.no_inherit == Some(true) {
                    " NO INHERIT"
                } else {
                    ""
                }
            )),
            "foreign_key" => {
                let r = c
                    .references
                    .as_ref()
                    .ok_or("a foreign_key constraint needs `references`")?;
                def.push_str(&format!(
                    "FOREIGN KEY ({}) REFERENCES {} ({})",
                    cols(&c.columns),
                    self.table_q(&self.resolve_table(&r.table)),
                    cols(&r.columns)
                ));
                push_fk_options(
                    &mut def,
                    r.match_type.as_deref(),
                    r.on_delete.as_deref(),
                    r.on_update.as_deref(),
                );
            }
            "exclude" => {
                let e = c
                    .exclude
                    .as_ref()
                    .ok_or("an exclude constraint needs `exclude`")?;
                def.push_str(&format!(
                    "EXCLUDE USING {} ({})",
                    e.index_method.as_deref().unwrap_or("gist"),
                    e.elements.as_deref().unwrap_or("")
                ));
                if let Some(p) = &e.predicate {
                    def.push_str(&format!(" WHERE ({p})"));
                }
            }
            other => return Err(format!("unknown constraint type {other:?}")),
        }
        if let Some(params) = &c.index_parameters {
            if !params.include_columns.is_empty() {
                def.push_str(&format!(" INCLUDE ({})", cols(&params.include_columns)));
            }
            if let Some(storage) = &params.storage_parameters {
                def.push_str(&format!(" WITH ({storage})"));
            }
            if let Some(tablespace) = &params.tablespace {
                def.push_str(&format!(" USING INDEX TABLESPACE {}", ident(tablespace)));
            }
        }
        if c.deferrable == Some(true) {
            def.push_str(" DEFERRABLE");
            if c.initially_deferred == Some(true) {
                def.push_str(" INITIALLY DEFERRED");
            }
        }
        Ok(def)
    }

    pub(super) fn table_exists_in_new_version(&self, name: &str) -> bool {
        self.shapes.iter().any(|s| s.new_name == name && !s.dropped)
            || (self.cx.tables.contains_key(name)
                && !self
                    .shapes
                    .iter()
                    .any(|s| s.old_name.as_deref() == Some(name)))
    }

    pub(super) fn rename_table(&mut self, at: &str, from: &str, to: &str) {
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

    pub(super) fn drop_table(&mut self, at: &str, name: &str) {
        let Some(s) = self.existing_shape(at, name, "drop_table") else {
            return;
        };
        self.shapes[s].dropped = true;
        let physical = self.table_q(&self.shapes[s].physical.clone());
        self.contract
            .push(format!("DROP TABLE IF EXISTS {physical}"));
    }

    pub(super) fn set_replica_identity(&mut self, at: &str, r: &format::SetReplicaIdentity) {
        let Some(s) = self.existing_shape(at, &r.table, "set_replica_identity") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        let clause = |kind: &str, index: Option<&str>| match kind {
            "index" => format!("USING INDEX {}", ident(index.unwrap_or_default())),
            other => other.to_uppercase(),
        };
        let kind = r.identity.kind.to_lowercase();
        if kind == "index" && r.identity.index.is_empty() {
            self.problem(
                &format!("{at}/identity/index"),
                "replica identity INDEX needs the index name".into(),
            );
            return;
        }
        let previous = match info.replica_identity {
            'n' => clause("nothing", None),
            'f' => clause("full", None),
            'i' => clause("index", info.replica_index.as_deref()),
            _ => clause("default", None),
        };
        let table = self.table_q(&self.shapes[s].physical.clone());
        self.expand.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} REPLICA IDENTITY {}",
                clause(&kind, Some(&r.identity.index))
            ),
        });
        self.undo.push(Step::Sql {
            sql: format!("ALTER TABLE {table} REPLICA IDENTITY {previous}"),
        });
    }

    pub(super) fn raw_sql(&mut self, s: &format::RawSql) {
        let step = Step::Concurrent {
            sql: s.up.clone(),
            invalid_index: None,
        };
        if s.on_complete {
            self.contract_late.push(step);
        } else {
            self.expand.push(step);
            if let Some(down) = &s.down {
                self.undo.push(Step::Concurrent {
                    sql: down.clone(),
                    invalid_index: None,
                });
            }
        }
    }
}
