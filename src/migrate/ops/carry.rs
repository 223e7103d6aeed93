//! Carries every index and constraint that covers a duplicated column over
//! to its duplicate, once every operation is planned (pgroll's
//! `duplicate`, and further: primary keys, unique constraints and foreign
//! keys in both directions):
//!
//! - indexes, and the indexes of primary keys and unique constraints, are
//!   built CONCURRENTLY at start under a temporary name; complete's switch
//!   gives an index its name back, and attaches a key's index with
//!   `ADD CONSTRAINT ... USING INDEX`, which renames it;
//! - checks are added NOT VALID once the triggers fill the duplicates;
//! - foreign keys, from the duplicate and to it, are added NOT VALID once
//!   the backfill has converted every row (a row of the referenced table
//!   not yet converted would fail them);
//! - both are validated before complete's switch, which drops the old ones
//!   and renames the new ones to the old names.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{Covering, CoveringKind};
use crate::migrate::plan::{Planner, Step};
use crate::migrate::{names, redefine};
use crate::quote::{ident, qualified};

/// Physical table → its duplicated columns, original → duplicate.
type Renames = BTreeMap<String, BTreeMap<String, String>>;

/// Where one covering object lives and how its columns change.
struct Site<'r> {
    /// Its table, physical, during the migration.
    table: String,
    /// Its table's physical name once complete has renamed it.
    final_table: String,
    /// The table's duplicated columns.
    local: Option<&'r BTreeMap<String, String>>,
    /// The JSON path of the operation that duplicated a column it covers.
    at: String,
    /// The table's replica-identity index, if it has one.
    replica_index: Option<String>,
}

impl Planner<'_> {
    /// Rebuilds over the duplicates every index and constraint that covers
    /// a duplicated column, except those an operation drops; reports any
    /// it cannot rebuild.
    pub(in crate::migrate) fn carry_over(&mut self) {
        let mut renames = Renames::new();
        for shape in self
            .shapes
            .iter()
            .filter(|s| !s.dropped && s.old_name.is_some())
        {
            for (original, duplicate) in &shape.duplicates {
                renames
                    .entry(shape.physical.clone())
                    .or_default()
                    .insert(original.clone(), duplicate.clone());
            }
        }
        if renames.is_empty() {
            return;
        }
        let mut judged: BTreeSet<String> = BTreeSet::new();
        let tables = self.cx.tables;
        for (table, info) in tables {
            let shape = self.shape_of_physical(table);
            if shape.is_some_and(|s| self.shapes[s].dropped) {
                continue;
            }
            let dropping = shape
                .map(|s| self.shapes[s].dropping.clone())
                .unwrap_or_default();
            for c in &info.covering {
                let Some(site) = self.site(table, shape, c, &renames) else {
                    continue;
                };
                if dropping.contains(&c.name) {
                    continue;
                }
                // Carried, or refused with a problem of its own.
                self.carry(&site, c, &renames);
                judged.insert(c.name.clone());
            }
        }
        self.uncarried(&judged);
    }

    /// Where `c` lives, if it covers a duplicated column (of its own table
    /// or, for a foreign key, of the table it references).
    fn site<'r>(
        &self,
        table: &str,
        shape: Option<usize>,
        c: &Covering,
        renames: &'r Renames,
    ) -> Option<Site<'r>> {
        let local = renames.get(table);
        let remote = c
            .references
            .as_ref()
            .filter(|r| r.schema == self.cx.schema)
            .and_then(|r| Some((r, renames.get(&r.table)?)));
        let touched = |cols: &[String], map: &BTreeMap<String, String>| {
            cols.iter().find_map(|col| map.get(col).cloned())
        };
        let duplicate = local
            .and_then(|m| touched(&c.columns, m))
            .or_else(|| remote.and_then(|(r, m)| touched(&r.columns, m)))?;
        let origin = |physical: &str| {
            self.shapes
                .iter()
                .find_map(|s| s.origins.get(&duplicate).filter(|_| s.physical == physical))
                .cloned()
        };
        let at = origin(table)
            .or_else(|| remote.and_then(|(r, _)| origin(&r.table)))
            .unwrap_or_default();
        let final_table = shape
            .map(|s| {
                let s = &self.shapes[s];
                s.physical_after
                    .clone()
                    .unwrap_or_else(|| s.physical.clone())
            })
            .unwrap_or_else(|| table.to_string());
        let info = self.cx.tables.get(table);
        Some(Site {
            table: table.to_string(),
            final_table,
            local,
            at,
            replica_index: info
                .filter(|t| t.replica_identity == 'i')
                .and_then(|t| t.replica_index.clone()),
        })
    }

    /// Plans the rebuild of `c` at `site`, or reports why it cannot be
    /// rebuilt.
    fn carry(&mut self, site: &Site, c: &Covering, renames: &Renames) {
        let local = |col: &str| site.local.and_then(|m| m.get(col)).cloned();
        let temp = names::carried(&c.name);
        let table = self.table_q(&site.table);
        let final_table = self.table_q(&site.final_table);
        match c.kind {
            CoveringKind::Exclusion => {
                self.problem(
                    &site.at,
                    format!(
                        "exclusion constraint {:?} of table {:?} covers a column this migration duplicates; Postgres cannot attach one to a prebuilt index, so it would need a long lock: drop it in an earlier migration and create it again after this one",
                        c.name, site.table
                    ),
                );
            }
            CoveringKind::Index | CoveringKind::PrimaryKey | CoveringKind::Unique => {
                let def = c.index_def.as_deref().unwrap_or_default();
                let (sql, plain) = match redefine::index(def, &temp, &local) {
                    Ok(built) => built,
                    Err(e) => {
                        self.problem(&site.at, format!("index {:?}: {e}", c.name));
                        return;
                    }
                };
                self.concurrent.push(Step::Concurrent {
                    sql,
                    invalid_index: Some(temp.clone()),
                });
                let attach = |how: &str| {
                    format!(
                        "ALTER TABLE {final_table} ADD CONSTRAINT {} {how} USING INDEX {}{}",
                        ident(&c.name),
                        ident(&temp),
                        redefine::deferral(c.deferrable, c.deferred)
                    )
                };
                match c.kind {
                    // The switch has made the duplicates NOT NULL by now.
                    CoveringKind::PrimaryKey => self.contract_renamed.push(attach("PRIMARY KEY")),
                    CoveringKind::Unique => self.contract_renamed.push(attach("UNIQUE")),
                    _ => self.contract_renamed.push(format!(
                        "ALTER INDEX {} RENAME TO {}",
                        qualified(self.cx.schema, &temp),
                        ident(&c.name)
                    )),
                }
                // The index's own columns were named after the duplicates.
                for duplicate in plain {
                    if let Some(name) = self.final_column(&site.table, &duplicate) {
                        self.contract_renamed.push(format!(
                            "ALTER TABLE {} RENAME COLUMN {} TO {}",
                            qualified(self.cx.schema, &c.name),
                            ident(&duplicate),
                            ident(&name)
                        ));
                    }
                }
                if site.replica_index.as_deref() == Some(c.name.as_str()) {
                    self.contract_renamed.push(format!(
                        "ALTER TABLE {final_table} REPLICA IDENTITY USING INDEX {}",
                        ident(&c.name)
                    ));
                }
            }
            CoveringKind::Check => {
                let def = c.check.as_deref().unwrap_or_default();
                let def = match redefine::check(def, &local) {
                    Ok(def) => def,
                    Err(e) => {
                        self.problem(&site.at, format!("check {:?}: {e}", c.name));
                        return;
                    }
                };
                // Once the triggers fill the duplicates, as the NOT NULL checks.
                self.after_triggers.push(Step::Sql {
                    sql: format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} {def} NOT VALID",
                        ident(&temp)
                    ),
                });
                self.undo_before_triggers.push(Step::Sql {
                    sql: format!(
                        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                        ident(&temp)
                    ),
                });
                self.replace_constraint(site, c, &temp);
            }
            CoveringKind::ForeignKey => self.carry_foreign_key(site, c, renames),
        }
    }

    /// A foreign key whose columns, or whose referenced columns, are
    /// duplicated: added NOT VALID after the backfill.
    fn carry_foreign_key(&mut self, site: &Site, c: &Covering, renames: &Renames) {
        let r = c.references.as_ref().expect("a foreign key references");
        if r.delete_set_columns {
            self.problem(
                &site.at,
                format!(
                    "foreign key {:?} of table {:?} sets only some of its columns on delete; pgshift cannot rebuild it over a duplicated column yet, so drop it in an earlier migration",
                    c.name, site.table
                ),
            );
            return;
        }
        let remote = (r.schema == self.cx.schema)
            .then(|| renames.get(&r.table))
            .flatten();
        // A duplicated referenced column needs a unique key over the
        // duplicate, which only a carried key gives.
        if remote.is_some_and(|m| r.columns.iter().any(|col| m.contains_key(col)))
            && !self.keeps_unique_key(&r.table, &r.columns)
        {
            self.problem(
                &site.at,
                format!(
                    "foreign key {:?} of table {:?} references columns of {:?} that this migration duplicates without their unique key; drop the foreign key first",
                    c.name, site.table, r.table
                ),
            );
            return;
        }
        let map = |cols: &[String], renames: Option<&BTreeMap<String, String>>| -> Vec<String> {
            cols.iter()
                .map(|col| {
                    renames
                        .and_then(|m| m.get(col))
                        .cloned()
                        .unwrap_or_else(|| col.clone())
                })
                .collect()
        };
        let def = redefine::foreign_key(
            &map(&c.columns, site.local),
            r,
            &map(&r.columns, remote),
            c.deferrable,
            c.deferred,
        );
        let table = self.table_q(&site.table);
        let temp = names::carried(&c.name);
        self.after_backfill.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} {def} NOT VALID",
                ident(&temp)
            ),
        });
        // Before the duplicate it references goes (rollback undoes in reverse).
        self.undo.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                ident(&temp)
            ),
        });
        self.replace_constraint(site, c, &temp);
    }

    /// Complete's part for a rebuilt check or foreign key: validated before
    /// the switch (unless the original never was), the original dropped in
    /// it, and the rebuilt one renamed to the original's name.
    fn replace_constraint(&mut self, site: &Site, c: &Covering, temp: &str) {
        let table = self.table_q(&site.table);
        if c.validated {
            self.validate.push(Step::Sql {
                sql: format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(temp)),
            });
        }
        self.contract_early.push(format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
            ident(&c.name)
        ));
        self.contract_renamed.push(format!(
            "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
            self.table_q(&site.final_table),
            ident(temp),
            ident(&c.name)
        ));
    }

    /// Whether `table` keeps, over its new columns, a primary key or unique
    /// constraint on exactly `columns`: one not dropped by this migration.
    fn keeps_unique_key(&self, table: &str, columns: &[String]) -> bool {
        let want: BTreeSet<&String> = columns.iter().collect();
        let dropping = self
            .shape_of_physical(table)
            .map(|s| &self.shapes[s].dropping);
        self.cx.tables.get(table).is_some_and(|t| {
            t.covering.iter().any(|k| {
                matches!(k.kind, CoveringKind::PrimaryKey | CoveringKind::Unique)
                    && k.columns.iter().collect::<BTreeSet<_>>() == want
                    && !dropping.is_some_and(|d| d.contains(&k.name))
            })
        })
    }

    /// The shape of the existing table whose physical name is `table`.
    fn shape_of_physical(&self, table: &str) -> Option<usize> {
        self.shapes
            .iter()
            .position(|s| s.old_name.is_some() && s.physical == table)
    }

    /// The new-version name of a table's duplicate (physical) column.
    fn final_column(&self, table: &str, duplicate: &str) -> Option<String> {
        self.shapes[self.shape_of_physical(table)?]
            .new_cols
            .iter()
            .find(|(_, p)| p == duplicate)
            .map(|(n, _)| n.clone())
    }

    /// Reports what covers a duplicated column and was neither judged by
    /// [`Planner::carry`] nor dropped by an operation: it would go with the
    /// old column.
    fn uncarried(&mut self, judged: &BTreeSet<String>) {
        let mut problems = Vec::new();
        for shape in self.shapes.iter().filter(|s| !s.dropped) {
            let Some(info) = shape.old_name.as_ref().and_then(|n| self.cx.tables.get(n)) else {
                continue;
            };
            for (original, duplicate) in &shape.duplicates {
                for name in info.dependents.get(original).into_iter().flatten() {
                    if !judged.contains(name) && !shape.dropping.contains(name) {
                        problems.push((
                            shape.origins.get(duplicate).cloned().unwrap_or_default(),
                            format!(
                                "column {original:?} of table {:?} is covered by {name:?}, which pgshift cannot rebuild over its duplicate (an invalid index, an inherited constraint, or a foreign key from another schema); drop it in an earlier migration",
                                shape.physical
                            ),
                        ));
                    }
                }
            }
        }
        for (at, message) in problems {
            if !self.problems.iter().any(|p| p.message == message) {
                self.problem(&at, message);
            }
        }
    }
}
