//! What several operations share: adding a physical column (with a
//! volatile default backfilled rather than rewritten), NOT NULL as a NOT
//! VALID check, the extras a column may ask for (unique, foreign key,
//! check, comment), duplicating a column kept in step by `up` and `down`,
//! table constraints, and dropping a constraint by duplicating its columns.

use std::collections::BTreeSet;

use super::push_fk_options;
use crate::migrate::format::{self, Column};
use crate::migrate::names;
use crate::migrate::plan::{ColumnChange, Planner, Step, Verify};
use crate::quote::{ident, literal, qualified};

/// What fills a new physical column's existing rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    /// Its default (or nothing, without one).
    Default,
    /// `up`, through the dual-write trigger and the backfill.
    Up,
}

/// How many columns a dropped constraint may cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Columns {
    /// `drop_constraint`: exactly one.
    One,
    /// `drop_multicolumn_constraint`: any number.
    Several,
}

impl Planner<'_> {
    /// The physical column's DDL type and default clause for a new column,
    /// and the backfill assignment a volatile default needs. A column that
    /// `up` fills on every row (`Fill::Up`, a duplicate) is added bare and
    /// gets its default for new rows only: its original's default may be
    /// volatile (a `serial`'s `nextval`), and evaluating it for each row
    /// would rewrite the table and spend the sequence.
    pub(super) fn add_physical(
        &mut self,
        shape: usize,
        physical: &str,
        type_: &str,
        default: Option<&str>,
        fill: Fill,
    ) {
        let table = self.table_q(&self.shapes[shape].physical.clone());
        let volatile =
            fill == Fill::Up || default.is_some_and(|d| self.cx.volatile_defaults.contains(d));
        let mut sql = format!("ALTER TABLE {table} ADD COLUMN {} {type_}", ident(physical));
        if let Some(d) = default {
            if volatile {
                // A volatile default would rewrite the table under ACCESS
                // EXCLUSIVE. Add the column bare, default new rows, backfill the rest.
                sql.push_str(&format!(
                    "; ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {d}",
                    ident(physical)
                ));
                if fill == Fill::Default {
                    self.shapes[shape].backfill_set.push((
                        physical.to_string(),
                        format!("COALESCE({}, {d})", ident(physical)),
                    ));
                }
            } else {
                sql.push_str(&format!(" DEFAULT {d}"));
            }
        }
        self.expand.push(Step::Sql { sql });
        self.undo.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                ident(physical)
            ),
        });
    }

    /// NOT NULL during the migration: a NOT VALID check, validated and turned
    /// into SET NOT NULL in complete's switch without a scan.
    pub(super) fn not_null(&mut self, shape: usize, physical: &str, final_name: &str) {
        let table = self.table_q(&self.shapes[shape].physical.clone());
        let check = names::not_null_check(final_name);
        // After the triggers: before them, an old-version insert would leave
        // the column NULL and fail the check.
        self.after_triggers.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
                ident(&check),
                ident(physical)
            ),
        });
        // And off again before the triggers go, for the same reason.
        self.undo_before_triggers.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                ident(&check)
            ),
        });
        self.validate.push(Step::Sql {
            sql: format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&check)),
        });
        // In complete's switch, where a primary key or replica identity
        // over the column needs it; the validated check spares the scan.
        self.not_nulls.push((shape, physical.to_string(), check));
    }

    /// The extras a column asks for: a unique constraint (named
    /// `unique_name`, else as Postgres names it, `<table>_<column>_key`),
    /// a foreign key, a check and a comment.
    pub(super) fn column_extras(
        &mut self,
        shape: usize,
        physical: &str,
        final_name: &str,
        col: &Column,
        unique_name: Option<&str>,
    ) {
        let table = self.table_q(&self.shapes[shape].physical.clone());
        let final_table = self.table_q(&self.shapes[shape].new_name.clone());
        let added = &mut self.shapes[shape].added_constraints;
        added.extend(col.references.as_ref().map(|fk| fk.name.clone()));
        added.extend(col.check.as_ref().map(|c| c.name.clone()));
        if col.unique == Some(true) {
            let index = match unique_name {
                Some(name) => name.to_string(),
                None => names::postgres_object_name(
                    &self.shapes[shape].new_name,
                    Some(final_name),
                    "key",
                ),
            };
            self.concurrent.push(Step::Concurrent {
                sql: format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {table} ({})",
                    ident(&index),
                    ident(physical)
                ),
                invalid_index: Some(index.clone()),
            });
            self.shapes[shape].added_constraints.insert(index.clone());
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {final_table} ADD CONSTRAINT {} UNIQUE USING INDEX {}",
                    ident(&index),
                    ident(&index)
                ),
            });
        }
        if let Some(fk) = &col.references {
            let sql = format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) {} NOT VALID",
                ident(&fk.name),
                ident(physical),
                self.column_references(fk)
            );
            self.expand.push(Step::Sql { sql });
            self.validate.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
                    ident(&fk.name)
                ),
            });
        }
        if let Some(check) = &col.check {
            // The expression names the column by its final name, so the check
            // is added once the column has it, then validated.
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {final_table} ADD CONSTRAINT {} CHECK ({}){} NOT VALID",
                    ident(&check.name),
                    check.constraint,
                    if check.no_inherit == Some(true) {
                        " NO INHERIT"
                    } else {
                        ""
                    }
                ),
            });
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "ALTER TABLE {final_table} VALIDATE CONSTRAINT {}",
                    ident(&check.name)
                ),
            });
        }
        if let Some(comment) = &col.comment {
            self.contract_late.push(Step::Sql {
                sql: format!(
                    "COMMENT ON COLUMN {final_table}.{} IS {}",
                    ident(final_name),
                    literal(comment)
                ),
            });
        }
    }

    pub(super) fn verify_converted(&mut self, s: usize, physical: &str, up: &str) {
        let shape = &self.shapes[s];
        self.verify.push(Verify {
            what: format!("{}.{}", shape.new_name, physical),
            sql: format!(
                "SELECT count(*) FROM {} WHERE {} IS NULL AND ({up}) IS NOT NULL",
                self.table_q(&shape.physical),
                ident(physical)
            ),
        });
    }

    /// Duplicates the existing column `name` (its new-version name) of shape
    /// `s` into a `_pgshift_new_*` column that the new version sees, kept in
    /// step by `up` (old → new) and `down` (new → old) and backfilled; the
    /// old column is dropped at complete. The indexes and constraints on the
    /// old column are rebuilt over the duplicate once every operation is
    /// planned ([`Planner::carry_over`]), except those in `expendable`,
    /// which go with the old column. Returns the new physical column.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn duplicate_column(
        &mut self,
        at: &str,
        s: usize,
        name: &str,
        change: ColumnChange,
        up: &str,
        down: &str,
        expendable: &BTreeSet<String>,
    ) -> Option<String> {
        let table = self.shapes[s].new_name.clone();
        let Some(c) = self.new_col(s, name) else {
            self.problem(
                at,
                format!("column {name:?} does not exist in table {table:?}"),
            );
            return None;
        };
        let old_physical = self.shapes[s].new_cols[c].1.clone();
        let Some(info) = self.info(s).and_then(|t| t.column(&old_physical)).cloned() else {
            self.problem(
                at,
                format!("column {name:?} was added by this migration; change it in the next one"),
            );
            return None;
        };
        // Every other index and constraint on the column is rebuilt over
        // the duplicate (`carry_over`); these go with the old column.
        self.shapes[s].dropping.extend(expendable.iter().cloned());
        // An index an earlier operation of this file creates on the column
        // would go with the old column at complete.
        if let Some(indexes) = self.shapes[s].new_indexes.get(&old_physical) {
            let indexes = indexes.join(", ");
            self.problem(
                at,
                format!(
                    "column {name:?} is indexed by {indexes}, which an earlier operation of this migration creates; the index would go with the old column at complete, so put that create_index after this operation"
                ),
            );
            return None;
        }
        let physical = names::new_column(name);
        let type_ = change.type_.unwrap_or(info.type_.clone());
        let t = self.table_q(&self.shapes[s].physical.clone());
        // An identity's sequence goes with its column: the duplicate draws
        // from it by name (no dependency), and complete makes the
        // duplicate an identity of its own that goes on from there.
        let identity_default = info.identity.map(|_| {
            format!(
                "nextval(pg_get_serial_sequence({}, {})::regclass)",
                literal(&t),
                literal(&old_physical)
            )
        });
        let default = change
            .default
            .unwrap_or(info.default.clone())
            .or(identity_default);
        self.add_physical(s, &physical, &type_, default.as_deref(), Fill::Up);
        if !change.nullable.unwrap_or(!info.not_null) {
            self.not_null(s, &physical, name);
        }
        let shape = &mut self.shapes[s];
        shape.up.push((physical.clone(), up.to_string()));
        shape.down.push((old_physical.clone(), down.to_string()));
        shape
            .duplicates
            .push((old_physical.clone(), physical.clone()));
        shape.origins.insert(physical.clone(), at.to_string());
        shape.backfill_touch = true;
        shape.new_cols[c].1 = physical.clone();
        self.verify_converted(s, &physical, up);
        // What goes with the old column but belongs to the column: its
        // comment, and the sequence it owns (widened with the column).
        if let Some(comment) = &info.comment {
            self.contract_early.push(format!(
                "COMMENT ON COLUMN {t}.{} IS {}",
                ident(&physical),
                literal(comment)
            ));
        }
        if let Some(kind) = info.identity {
            let options = info
                .sequence
                .as_ref()
                .map(identity_options)
                .unwrap_or_default();
            self.identity_over(s, &old_physical, name, kind, &options);
        } else if let Some(seq) = &info.sequence {
            let seq_q = qualified(&seq.schema, &seq.name);
            self.contract_early.push(format!(
                "ALTER SEQUENCE {seq_q} OWNED BY {t}.{}",
                ident(&physical)
            ));
            if integer_rank(&type_) > integer_rank(&seq.type_) {
                self.contract_early
                    .push(format!("ALTER SEQUENCE {seq_q} AS {type_}"));
            }
        }
        self.contract.push(format!(
            "ALTER TABLE {t} DROP COLUMN IF EXISTS {}",
            ident(&old_physical)
        ));
        Some(physical)
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

    /// Removes constraint `name` from the new version by duplicating its
    /// columns without it. `up`/`down` give each column's conversion.
    pub(super) fn drop_constraint_columns(
        &mut self,
        at: &str,
        table: &str,
        name: &str,
        columns: Columns,
        conversion: impl Fn(&str) -> (String, String),
    ) {
        let Some(s) = self.existing_shape(at, table, "drop_constraint") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        let Some(covered) = info.constraint_columns.get(name).cloned() else {
            self.problem(
                at,
                format!("constraint {name:?} does not exist on table {table:?}"),
            );
            return;
        };
        if columns == Columns::One && covered.len() != 1 {
            self.problem(
                at,
                format!(
                    "constraint {name:?} covers {} columns; use drop_multicolumn_constraint",
                    covered.len()
                ),
            );
            return;
        }
        // Its own backing index shares its name.
        let expendable = BTreeSet::from([name.to_string()]);
        for physical in &covered {
            let Some(new_name) = self.shapes[s]
                .new_cols
                .iter()
                .find(|(_, p)| p == physical)
                .map(|(n, _)| n.clone())
            else {
                self.problem(
                    at,
                    format!(
                        "column {physical:?} of constraint {name:?} is gone from the new version"
                    ),
                );
                return;
            };
            let (up, down) = conversion(&new_name);
            self.duplicate_column(
                at,
                s,
                &new_name,
                ColumnChange::default(),
                &up,
                &down,
                &expendable,
            );
        }
    }
}

impl Planner<'_> {
    /// Complete's part for a duplicated identity column `original`
    /// (`kind`: 'a' ALWAYS, 'd' BY DEFAULT) of shape `s`, whose new-version
    /// name is `name`: before the old column (and its sequence) goes, the
    /// sequence's last value is kept in a transaction-local setting; once
    /// the duplicate has the name and NOT NULL, it becomes an identity of
    /// the same kind whose new sequence goes on from that value.
    fn identity_over(&mut self, s: usize, original: &str, name: &str, kind: char, options: &str) {
        let table = self.table_q(&self.shapes[s].physical.clone());
        let setting = format!("pgshift.identity_{s}_{}", self.shapes[s].duplicates.len());
        self.contract_early.push(format!(
            "SELECT set_config({}, coalesce(pg_sequence_last_value(pg_get_serial_sequence({}, {})::regclass)::text, ''), true)",
            literal(&setting),
            literal(&table),
            literal(original)
        ));
        let final_table = self.table_q(&self.shapes[s].new_name.clone());
        let column = ident(name);
        let when = if kind == 'a' { "ALWAYS" } else { "BY DEFAULT" };
        self.contract_renamed.push(format!(
            "ALTER TABLE {final_table} ALTER COLUMN {column} DROP DEFAULT, ALTER COLUMN {column} ADD GENERATED {when} AS IDENTITY{options}; \
             SELECT setval(pg_get_serial_sequence({}, {}), current_setting({})::bigint) WHERE current_setting({}) <> ''",
            literal(&final_table),
            literal(name),
            literal(&setting),
            literal(&setting)
        ));
    }
}

/// ` (INCREMENT BY ... CACHE ... CYCLE)`: the options of an identity's
/// sequence that differ from Postgres's defaults, for the identity complete
/// makes anew. Bounds at their type's limit are left out, so they widen
/// with the column's type.
fn identity_options(seq: &crate::catalog::OwnedSequence) -> String {
    let (type_min, type_max) = match integer_rank(&seq.type_) {
        1 => (i16::MIN as i64, i16::MAX as i64),
        2 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    };
    let mut parts = Vec::new();
    if seq.increment != 1 {
        parts.push(format!("INCREMENT BY {}", seq.increment));
    }
    let default_min = if seq.increment > 0 { 1 } else { type_min };
    if seq.min != default_min {
        parts.push(format!("MINVALUE {}", seq.min));
    }
    let default_max = if seq.increment > 0 { type_max } else { -1 };
    if seq.max != default_max {
        parts.push(format!("MAXVALUE {}", seq.max));
    }
    if seq.cache != 1 {
        parts.push(format!("CACHE {}", seq.cache));
    }
    if seq.cycle {
        parts.push("CYCLE".to_string());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(" "))
    }
}

/// The width of an integer type a sequence can have (0 for any other
/// type): a sequence is widened, never narrowed, with its column.
fn integer_rank(type_: &str) -> u8 {
    match type_.trim().to_ascii_lowercase().as_str() {
        "smallint" | "int2" => 1,
        "integer" | "int" | "int4" => 2,
        "bigint" | "int8" => 3,
        _ => 0,
    }
}
