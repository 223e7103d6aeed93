//! Assembles the plan once every operation has been planned: the order of
//! start's steps (old-version views, expand, concurrent indexes, triggers,
//! NOT NULL checks, new-version views, backfill), complete's (validate,
//! then one short switch transaction, then the late steps) and rollback's
//! (the exact reverse of start).

use super::trigger::trigger_sql;
use super::{Agreement, BackfillSpec, Converted, Plan, Planner, Privileges, Shape, Step};
use crate::migrate::backfill::record_bound_sql;
use crate::migrate::names;
use crate::quote::{ident, literal, qualified};

/// The dual-write triggers of a plan: the steps that create them, and the
/// SQL that drops each.
struct Triggers {
    create: Vec<Step>,
    drop: Vec<String>,
}

impl Planner<'_> {
    /// The plan, from what the operations added.
    pub(super) fn finish(self) -> Plan {
        let old_vs = self.cx.old_version_schema.to_string();
        let (old_views, created_views) = self.old_views_step(&old_vs);
        let triggers = self.triggers();
        let mut start = vec![old_views];
        start.extend(self.expand.iter().cloned());
        start.extend(self.concurrent.iter().cloned());
        start.extend(triggers.create.iter().cloned());
        start.extend(self.after_triggers.iter().cloned());
        start.push(self.new_views_step());
        start.extend(self.backfill_steps());
        start.extend(self.after_backfill.iter().cloned());
        let complete = self.complete_steps(&old_vs, &triggers);
        let rollback = self.rollback_steps(&old_vs, &triggers, &created_views);
        let agreements = self.agreements();
        Plan {
            version: self.m.name.clone(),
            version_schema: self.version_schema.clone(),
            old_version: self.cx.old_version.to_string(),
            old_version_schema: old_vs,
            start,
            verify: self.verify,
            agreements,
            complete,
            rollback,
        }
    }

    /// `WITH (security_invoker = true)` where the server has it: views then
    /// check permissions as the querying user, not the view's owner.
    fn view_options(&self) -> &'static str {
        if self.cx.security_invoker {
            "WITH (security_invoker = true) "
        } else {
            ""
        }
    }

    /// Start's first step: the old version's schema with a view of each
    /// table the migration touches (and, with `pass_through_views`, of
    /// every other table), so old sessions stand on views before any
    /// physical table changes. Also returns the views it creates in a
    /// schema that existed already (rollback drops just those).
    fn old_views_step(&self, old_vs: &str) -> (Step, Vec<String>) {
        let schema = self.cx.schema;
        let mut sql = format!("CREATE SCHEMA IF NOT EXISTS {}", ident(old_vs));
        let mut created = Vec::new();
        for shape in self.shapes.iter().filter(|s| s.old_name.is_some()) {
            let name = shape.old_name.as_ref().expect("filtered");
            if self.cx.old_schema_views.contains(name) {
                continue;
            }
            let cols: Vec<String> = shape.old_cols.iter().map(|c| ident(c)).collect();
            sql.push_str(&format!(
                "; CREATE VIEW {} {}AS SELECT {} FROM {}",
                qualified(old_vs, name),
                self.view_options(),
                cols.join(", "),
                qualified(schema, &shape.physical)
            ));
            created.push(qualified(old_vs, name));
        }
        for (name, view) in self.pass_through() {
            if self.cx.old_schema_views.contains(name) {
                continue;
            }
            sql.push_str(&format!("; CREATE VIEW {} {view}", qualified(old_vs, name)));
            created.push(qualified(old_vs, name));
        }
        let privileges = Privileges {
            version_schema: old_vs.to_string(),
            duplicates: Vec::new(),
            created: Vec::new(),
        };
        (Step::Views { sql, privileges }, created)
    }

    /// With `pass_through_views`, each table the migration does not touch,
    /// with the rest of its view's definition (`AS SELECT <every column>
    /// FROM <table>`), the same in both versions.
    fn pass_through(&self) -> Vec<(&str, String)> {
        if !self.cx.pass_through_views {
            return Vec::new();
        }
        self.cx
            .tables
            .values()
            .filter(|t| {
                !self
                    .shapes
                    .iter()
                    .any(|s| s.old_name.as_deref() == Some(t.name.as_str()) || s.new_name == t.name)
            })
            .map(|t| {
                let cols: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
                (
                    t.name.as_str(),
                    format!(
                        "{}AS SELECT {} FROM {}",
                        self.view_options(),
                        cols.join(", "),
                        qualified(self.cx.schema, &t.name)
                    ),
                )
            })
            .collect()
    }

    /// The privileges of the new version's schema, with the duplicated
    /// columns and, if `with_created`, the tables the migration creates.
    fn new_privileges(&self, with_created: bool) -> Privileges {
        Privileges {
            version_schema: self.version_schema.clone(),
            duplicates: self
                .shapes
                .iter()
                .flat_map(|s| {
                    s.duplicates
                        .iter()
                        .map(|(orig, dup)| (s.physical.clone(), orig.clone(), dup.clone()))
                })
                .collect(),
            created: if with_created {
                self.shapes
                    .iter()
                    .filter(|s| s.old_name.is_none())
                    .map(|s| s.physical.clone())
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// One dual-write trigger per table whose shapes differ.
    fn triggers(&self) -> Triggers {
        let schema = self.cx.schema;
        let version = &self.m.name;
        let mut triggers = Triggers {
            create: Vec::new(),
            drop: Vec::new(),
        };
        for shape in self
            .shapes
            .iter()
            .filter(|s| !s.up.is_empty() || !s.down.is_empty())
        {
            let name = names::trigger(&shape.physical, version);
            let table = qualified(schema, &shape.physical);
            let mut sql = trigger_sql(schema, shape, &name, (self.cx.old_version, version));
            if shape.backfill_touch || !shape.backfill_set.is_empty() {
                // The backfill's bound, under the trigger's lock: it then
                // covers the rows written before the trigger, and no more.
                sql.push_str("; ");
                sql.push_str(&record_bound_sql(&self.backfill_spec(shape), version));
            }
            triggers.create.push(Step::Sql { sql });
            triggers.drop.push(format!(
                "DROP TRIGGER IF EXISTS {} ON {table}; DROP FUNCTION IF EXISTS {}()",
                ident(&name),
                qualified("pgshift", &name)
            ));
        }
        triggers
    }

    /// The new version's schema: a view of each table in its new shape, and
    /// a view that raises 42P01 for each name the new version no longer has
    /// (dropped or renamed tables), which would otherwise still resolve to
    /// the physical table through the search_path.
    fn new_views_step(&self) -> Step {
        let schema = self.cx.schema;
        let vs = &self.version_schema;
        let mut sql = format!("CREATE SCHEMA {}", ident(vs));
        for shape in self.shapes.iter().filter(|s| !s.dropped) {
            let cols: Vec<String> = shape
                .new_cols
                .iter()
                .map(|(name, physical)| {
                    if name == physical {
                        ident(name)
                    } else {
                        format!("{} AS {}", ident(physical), ident(name))
                    }
                })
                .collect();
            sql.push_str(&format!(
                "; CREATE VIEW {} {}AS SELECT {} FROM {}",
                qualified(vs, &shape.new_name),
                self.view_options(),
                cols.join(", "),
                qualified(schema, &shape.physical)
            ));
        }
        for (name, view) in self.pass_through() {
            sql.push_str(&format!("; CREATE VIEW {} {view}", qualified(vs, name)));
        }
        for shape in &self.shapes {
            let Some(old) = &shape.old_name else { continue };
            let gone = shape.dropped || &shape.new_name != old;
            let reused = self.shapes.iter().any(|o| !o.dropped && &o.new_name == old);
            if gone && !reused {
                sql.push_str(&format!(
                    "; CREATE VIEW {} AS SELECT FROM pgshift.hidden_relation({}, {})",
                    qualified(vs, old),
                    literal(old),
                    literal(&self.m.name)
                ));
            }
        }
        Step::Views {
            sql,
            privileges: self.new_privileges(true),
        }
    }

    /// A backfill per table that has rows to convert, keyed on its primary
    /// key, else a unique NOT NULL key, else ctid.
    fn backfill_steps(&self) -> Vec<Step> {
        self.shapes
            .iter()
            .filter(|s| s.backfill_touch || !s.backfill_set.is_empty())
            .map(|shape| Step::Backfill(self.backfill_spec(shape)))
            .collect()
    }

    /// What `verify` checks: per table with duplicated columns, each
    /// column with its `up` and `down`, keyed as its backfill is.
    fn agreements(&self) -> Vec<Agreement> {
        let of = |list: &[(String, String)], column: &str| {
            list.iter()
                .find(|(c, _)| c == column)
                .map(|(_, e)| e.clone())
        };
        self.shapes
            .iter()
            .filter(|s| !s.dropped && !s.duplicates.is_empty())
            .map(|shape| Agreement {
                schema: self.cx.schema.to_string(),
                table: shape.physical.clone(),
                key: self.backfill_spec(shape).key,
                new_cols: shape.new_cols.clone(),
                columns: shape
                    .duplicates
                    .iter()
                    .map(|(original, duplicate)| Converted {
                        original: original.clone(),
                        duplicate: duplicate.clone(),
                        up: of(&shape.up, duplicate),
                        down: of(&shape.down, original),
                    })
                    .collect(),
            })
            .collect()
    }

    fn backfill_spec(&self, shape: &Shape) -> BackfillSpec {
        let info = shape.old_name.as_ref().and_then(|n| self.cx.tables.get(n));
        let key_cols = info
            .map(|t| {
                if !t.primary_key.is_empty() {
                    t.primary_key.clone()
                } else {
                    t.unique_not_null.clone().unwrap_or_default()
                }
            })
            .unwrap_or_default();
        let key = key_cols
            .iter()
            .map(|k| {
                let type_ = info
                    .and_then(|t| t.column(k))
                    .map(|c| c.type_.clone())
                    .unwrap_or_default();
                (k.clone(), type_)
            })
            .collect();
        BackfillSpec {
            schema: self.cx.schema.to_string(),
            table: shape.physical.clone(),
            key,
            set: shape.backfill_set.clone(),
            // A column the trigger writes anyway (a key may be an
            // identity GENERATED ALWAYS, which an UPDATE cannot set).
            touch: shape
                .up
                .first()
                .map(|(physical, _)| physical.clone())
                .or_else(|| {
                    shape
                        .old_cols
                        .iter()
                        .find(|c| info.and_then(|t| t.column(c)).is_none_or(|c| !c.generated))
                        .cloned()
                })
                .unwrap_or_default(),
        }
    }

    /// Complete: validate, drop the old version's schema (the new one's
    /// stays, with its privileges brought up to date), then the switch
    /// (triggers dropped, contract, renames) as one short transaction, then
    /// the late steps. With the triggers gone and the old columns not, a
    /// write that bypasses the proxy would miss its conversion, so nothing
    /// may commit in between.
    fn complete_steps(&self, old_vs: &str, triggers: &Triggers) -> Vec<Step> {
        let mut complete = self.validate.clone();
        // The new version's schema stays; its privileges are brought up to
        // date before the switch drops the originals of duplicated columns.
        complete.push(Step::Views {
            sql: format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(old_vs)),
            privileges: self.new_privileges(false),
        });
        let mut switch: Vec<String> = triggers.drop.clone();
        switch.extend(self.contract_early.iter().cloned());
        switch.extend(self.contract.iter().cloned());
        for shape in self.shapes.iter().filter(|s| !s.dropped) {
            let table = qualified(self.cx.schema, &shape.new_name);
            for (name, physical) in &shape.new_cols {
                if name != physical {
                    switch.push(format!(
                        "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                        ident(physical),
                        ident(name)
                    ));
                }
            }
        }
        for (s, physical, check) in &self.not_nulls {
            let shape = &self.shapes[*s];
            if shape.dropped {
                continue;
            }
            let table = qualified(self.cx.schema, &shape.new_name);
            if let Some((name, _)) = shape.new_cols.iter().find(|(_, p)| p == physical) {
                switch.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL; ALTER TABLE {table} DROP CONSTRAINT {}",
                    ident(name),
                    ident(check)
                ));
            }
        }
        switch.extend(self.contract_renamed.iter().cloned());
        // Serial and identity sequences of created tables were named after
        // the temporary table; they take the names Postgres gives the
        // final one's (`<table>_<column>_seq`, the column as created).
        for shape in self
            .shapes
            .iter()
            .filter(|s| !s.dropped && s.old_name.is_none())
        {
            let table = qualified(self.cx.schema, &shape.new_name);
            for (column, as_created) in &shape.sequences {
                let seq = names::postgres_object_name(&shape.new_name, Some(as_created), "seq");
                switch.push(format!(
                    "DO $pgshift$ DECLARE s text := pg_get_serial_sequence({}, {}); BEGIN \
                     IF s IS NOT NULL THEN EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', s, {}); END IF; END $pgshift$",
                    literal(&table),
                    literal(column),
                    literal(&seq)
                ));
            }
        }
        if !switch.is_empty() {
            complete.push(Step::Sql {
                sql: switch.join("; "),
            });
        }
        complete.extend(self.contract_late.iter().cloned());
        complete
    }

    /// Rollback: remove everything start added, newest first; everything is
    /// IF EXISTS, so a rollback after a partial start works too. The NOT
    /// NULL checks go before the triggers that fill their columns, or
    /// old-version writes in between would fail.
    fn rollback_steps(
        &self,
        old_vs: &str,
        triggers: &Triggers,
        created_views: &[String],
    ) -> Vec<Step> {
        let mut rollback = vec![Step::Sql {
            sql: format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                ident(&self.version_schema)
            ),
        }];
        rollback.extend(self.undo_before_triggers.iter().rev().cloned());
        for d in &triggers.drop {
            rollback.push(Step::Sql { sql: d.clone() });
        }
        rollback.extend(self.undo.iter().rev().cloned());
        if self.cx.old_schema_exists {
            for v in created_views.iter().rev() {
                rollback.push(Step::Sql {
                    sql: format!("DROP VIEW IF EXISTS {v}"),
                });
            }
        } else {
            rollback.push(Step::Sql {
                sql: format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(old_vs)),
            });
        }
        rollback
    }
}
