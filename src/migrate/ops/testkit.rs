//! What the operations' unit tests share: a fixture catalog (`users`,
//! `orders` referencing it, and `events` without a key), a migration
//! planned against it, and the plan rendered as text, one step a line, so
//! that a test asserts the SQL of start, complete and rollback without a
//! database.

use std::collections::{BTreeMap, BTreeSet};

use expect_test::Expect;

use crate::catalog::{ColumnInfo, Covering, CoveringKind, OwnedSequence, References, TableInfo};
use crate::migrate::format::{self, Problem};
use crate::migrate::plan::{self, Context, Plan, Step};
use crate::state::Action;

fn column(name: &str, type_: &str, not_null: bool, default: Option<&str>) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        type_: type_.into(),
        not_null,
        default: default.map(str::to_string),
        generated: false,
        identity: None,
        comment: None,
        sequence: None,
    }
}

/// A primary key, unique constraint or index over `columns` of `table`.
fn index(table: &str, name: &str, kind: CoveringKind, columns: &[&str]) -> Covering {
    let unique = matches!(kind, CoveringKind::PrimaryKey | CoveringKind::Unique);
    Covering {
        name: name.into(),
        kind,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        index_def: Some(format!(
            "CREATE {}INDEX {name} ON public.{table} USING btree ({})",
            if unique { "UNIQUE " } else { "" },
            columns.join(", ")
        )),
        check: None,
        references: None,
        deferrable: false,
        deferred: false,
        validated: true,
    }
}

fn covered(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    pairs
        .iter()
        .map(|(c, names)| (c.to_string(), names.iter().map(|n| n.to_string()).collect()))
        .collect()
}

fn columns_of(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(c, cols)| (c.to_string(), cols.iter().map(|n| n.to_string()).collect()))
        .collect()
}

/// The fixture schema `public`: `users` (integer key, unique email),
/// `orders` (bigint key, a foreign key to users), `events` (no key).
pub(super) fn tables() -> BTreeMap<String, TableInfo> {
    let users = TableInfo {
        name: "users".into(),
        columns: vec![
            ColumnInfo {
                sequence: Some(OwnedSequence {
                    schema: "public".into(),
                    name: "users_id_seq".into(),
                    type_: "integer".into(),
                    increment: 1,
                    min: 1,
                    max: i32::MAX as i64,
                    cache: 1,
                    cycle: false,
                }),
                comment: Some("The user's number".into()),
                ..column(
                    "id",
                    "integer",
                    true,
                    Some("nextval('users_id_seq'::regclass)"),
                )
            },
            column("name", "text", false, None),
            column("email", "text", true, None),
            column(
                "created_at",
                "timestamp with time zone",
                false,
                Some("now()"),
            ),
        ],
        primary_key: vec!["id".into()],
        unique_not_null: Some(vec!["email".into()]),
        constraints: vec!["users_email_key".into(), "users_pkey".into()],
        dependents: covered(&[
            ("id", &["users_pkey", "orders_user_id_fkey"]),
            ("email", &["users_email_key"]),
        ]),
        constraint_columns: columns_of(&[("users_pkey", &["id"]), ("users_email_key", &["email"])]),
        replica_identity: 'd',
        replica_index: None,
        covering: vec![
            index("users", "users_email_key", CoveringKind::Unique, &["email"]),
            index("users", "users_pkey", CoveringKind::PrimaryKey, &["id"]),
        ],
    };
    let orders = TableInfo {
        name: "orders".into(),
        columns: vec![
            column("id", "bigint", true, None),
            column("user_id", "integer", false, None),
            column("amount", "numeric(10,2)", false, None),
            column("status", "text", false, Some("'new'::text")),
        ],
        primary_key: vec!["id".into()],
        unique_not_null: None,
        constraints: vec!["orders_pkey".into(), "orders_user_id_fkey".into()],
        dependents: covered(&[
            ("id", &["orders_pkey"]),
            ("user_id", &["orders_user_id_fkey"]),
        ]),
        constraint_columns: columns_of(&[
            ("orders_pkey", &["id"]),
            ("orders_user_id_fkey", &["user_id"]),
        ]),
        replica_identity: 'd',
        replica_index: None,
        covering: vec![
            index("orders", "orders_pkey", CoveringKind::PrimaryKey, &["id"]),
            Covering {
                name: "orders_user_id_fkey".into(),
                kind: CoveringKind::ForeignKey,
                columns: vec!["user_id".into()],
                index_def: None,
                check: None,
                references: Some(References {
                    schema: "public".into(),
                    table: "users".into(),
                    columns: vec!["id".into()],
                    on_update: 'a',
                    on_delete: 'c',
                    match_type: 's',
                    delete_set_columns: false,
                }),
                deferrable: false,
                deferred: false,
                validated: true,
            },
        ],
    };
    let events = TableInfo {
        name: "events".into(),
        columns: vec![
            column("payload", "text", false, None),
            column("at", "timestamp with time zone", false, None),
        ],
        replica_identity: 'd',
        ..Default::default()
    };
    [users, orders, events]
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect()
}

/// Plans the YAML migration `02_change` against the fixture, at version
/// `01_base`, on Postgres 15 (security_invoker views).
pub(super) fn plan(yaml: &str) -> Result<Plan, Vec<Problem>> {
    let migration = format::parse("02_change.yaml", "02_change", yaml, format::Syntax::Yaml)
        .unwrap_or_else(|e| panic!("the test's migration is valid: {e}"));
    plan_with(&migration, false)
}

/// Plans `migration` against the fixture, with or without pass-through views.
pub(super) fn plan_with(
    migration: &format::Migration,
    pass_through_views: bool,
) -> Result<Plan, Vec<Problem>> {
    let tables = tables();
    let indexes = vec![
        "orders_pkey".to_string(),
        "users_email_key".to_string(),
        "users_pkey".to_string(),
    ];
    let schemas = BTreeSet::from(["public".to_string(), "pgshift".to_string()]);
    let volatile = BTreeSet::from(["gen_random_uuid()".to_string()]);
    let cx = Context {
        schema: "public",
        tables: &tables,
        indexes: &indexes,
        old_version: "01_base",
        old_version_schema: "public_01_base",
        old_schema_views: &BTreeSet::new(),
        old_schema_exists: false,
        schemas: &schemas,
        volatile_defaults: &volatile,
        security_invoker: true,
        pass_through_views,
    };
    plan::plan(migration, &cx)
}

/// The plan as text: each action's steps, one a line (a step's own
/// statements separated by `; ` stay on its line), the trigger bodies
/// included, and complete's verify queries.
pub(super) fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for action in Action::ALL {
        out.push_str(&format!("-- {action}\n"));
        for step in plan.steps(action) {
            match step {
                Step::Sql { sql } => out.push_str(&format!("{sql}\n")),
                Step::Views { sql, privileges } => out.push_str(&format!(
                    "{sql}\n  -- privileges of {}{}{}\n",
                    privileges.version_schema,
                    if privileges.duplicates.is_empty() {
                        String::new()
                    } else {
                        format!(", duplicates {:?}", privileges.duplicates)
                    },
                    if privileges.created.is_empty() {
                        String::new()
                    } else {
                        format!(", created {:?}", privileges.created)
                    },
                )),
                Step::Concurrent { sql, .. } => out.push_str(&format!("{sql}  -- concurrent\n")),
                Step::Backfill(spec) => {
                    let key: Vec<&str> = spec.key.iter().map(|(k, _)| k.as_str()).collect();
                    let set: Vec<String> =
                        spec.set.iter().map(|(c, e)| format!("{c} = {e}")).collect();
                    out.push_str(&format!(
                        "-- backfill {}.{} by [{}] set [{}]\n",
                        spec.schema,
                        spec.table,
                        key.join(", "),
                        set.join(", ")
                    ));
                }
            }
        }
    }
    for a in &plan.agreements {
        for c in &a.columns {
            out.push_str(&format!(
                "-- agreement {}.{} <-> {}: up {:?}, down {:?}\n",
                a.table, c.original, c.duplicate, c.up, c.down
            ));
        }
    }
    for v in &plan.verify {
        out.push_str(&format!("-- verify {}: {}\n", v.what, v.sql));
    }
    out
}

/// Asserts the rendered plan of `yaml`.
pub(super) fn check(yaml: &str, expect: Expect) {
    match plan(yaml) {
        Ok(plan) => expect.assert_eq(&render(&plan)),
        Err(problems) => panic!("planning failed: {problems:?}"),
    }
}

/// Asserts that planning `yaml` fails with exactly these problems, one
/// `path: message` a line.
pub(super) fn check_problems(yaml: &str, expect: Expect) {
    match plan(yaml) {
        Ok(plan) => panic!("planned, but should not have:\n{}", render(&plan)),
        Err(problems) => {
            let text: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect();
            expect.assert_eq(&(text.join("\n") + "\n"));
        }
    }
}
