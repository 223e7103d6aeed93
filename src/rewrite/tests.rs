use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn view() -> VersionView {
    VersionView {
        schema: "public".into(),
        version: "02_split".into(),
        version_schema: "public_02_split".into(),
        views: BTreeMap::from([
            ("users".to_string(), "users".to_string()),
            ("clients".to_string(), "customers".to_string()),
            ("Mixed Case".to_string(), "Mixed Case".to_string()),
        ]),
        columns: BTreeMap::from([
            (
                "users".to_string(),
                vec![
                    ("id".to_string(), "id".to_string()),
                    ("full_name".to_string(), "name".to_string()),
                    ("email".to_string(), "_pgshift_new_email".to_string()),
                ],
            ),
            (
                "clients".to_string(),
                vec![("id".to_string(), "id".to_string())],
            ),
        ]),
        migrating: BTreeSet::from([
            "users".to_string(),
            "customers".to_string(),
            "Mixed Case".to_string(),
        ]),
        version_schemas: BTreeSet::from([
            "public_01_base".to_string(),
            "public_02_split".to_string(),
        ]),
    }
}

fn with(input: &str, options: Options) -> Rewritten {
    Rewriter::new(view()).rewrite(input, options)
}

/// `None` for "unchanged".
fn check(input: &str, expected: Option<&str>) {
    match (rewrite(input, &view()), expected) {
        (Rewritten::Unchanged, None) => {}
        (Rewritten::Text(text), Some(want)) => assert_eq!(text, want, "input: {input:?}"),
        (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
    }
}

/// Asserts that `input` is refused by `rule` with a message holding `needle`.
fn refused_by(input: &str, options: Options, rule: Rule, needle: &str) -> String {
    let Rewritten::Text(text) = with(input, options) else {
        panic!("{input:?} should be refused");
    };
    assert!(
        text.contains(&format!("ERRCODE = '{}'", rule.sqlstate())),
        "{input:?} -> {text}"
    );
    assert!(text.contains(rule.name()), "{input:?} -> {text}");
    assert!(text.contains(needle), "{input:?} -> {text}");
    text
}

fn refused(input: &str, rule: Rule, needle: &str) {
    refused_by(input, Options::default(), rule, needle);
}

#[test]
fn rewrite_table() {
    let vs = "\"public_02_split\"";
    let cases: Vec<(&str, Option<String>)> = vec![
        // Nothing to do: the scan does not even parse these.
        ("SELECT 1", None),
        ("SELECT * FROM users WHERE id = $1", None),
        ("INSERT INTO users (name) VALUES ('x')", None),
        ("UPDATE users SET name = 'a' WHERE id = 1", None),
        ("BEGIN", None),
        ("", None),
        ("  \n\t", None),
        ("SELECT alternate, dropped_at, copy_count FROM t", None),
        // Flagged words in strings and comments: parsed, nothing to do.
        ("SELECT 'public.users'", None),
        ("SELECT 1 -- public.users", None),
        ("SELECT 1 /* public.users */", None),
        ("SELECT $$ public.users $$", None),
        ("SELECT E'public.users\\n'", None),
        ("SELECT publicx.users FROM publicx", None),
        ("SELECT * FROM other.users", None),
        ("SELECT * FROM public.orders", None),
        ("SELECT * FROM \"public\".orders", None),
        ("SELECT current_setting('search_path')", None),
        ("SHOW search_path", None),
        ("RESET search_path", None),
        ("RESET ALL", None),
        ("DISCARD ALL", None),
        ("SET search_path TO DEFAULT", None),
        ("SELECT current_setting('pgshift.version')", None),
        ("SET statement_timeout = 5", None),
        ("ALTER TABLE orders ADD COLUMN x int", None),
        ("DROP TABLE orders", None),
        ("CREATE INDEX ON orders (id)", None),
        ("TRUNCATE orders", None),
        ("SELECT set_config('statement_timeout', '5s', false)", None),
        ("CREATE VIEW v AS SELECT * FROM orders", None),
        // A statement that does not parse goes as it is; Postgres answers.
        ("SELECT FROM public.users WHERE (", None),
        ("ALTER TABLE users ADD", None),
        // The version schema heads every search_path the client sets.
        (
            "SET search_path = public",
            Some(format!("SET search_path = {vs}, public")),
        ),
        (
            "SET search_path TO app, public",
            Some(format!("SET search_path TO {vs}, app, public")),
        ),
        ("SET search_path = app", Some(format!("SET search_path = {vs}, app"))),
        (
            "set search_path = \"public\", app",
            Some(format!("set search_path = {vs}, \"public\", app")),
        ),
        (
            "SET LOCAL search_path = public",
            Some(format!("SET LOCAL search_path = {vs}, public")),
        ),
        (
            "SET SESSION search_path TO 'public'",
            Some(format!("SET SESSION search_path TO {vs}, 'public'")),
        ),
        (
            "SET search_path = E'public'",
            Some(format!("SET search_path = {vs}, E'public'")),
        ),
        (
            "SET search_path = $$public$$",
            Some(format!("SET search_path = {vs}, $$public$$")),
        ),
        (
            "SET SCHEMA 'public'",
            Some(format!("SET search_path TO {vs}, 'public'")),
        ),
        ("SET search_path = \"public_02_split\", public", None),
        (
            "SELECT set_config('search_path', 'app, public', false)",
            Some(format!(
                "SELECT set_config('search_path', '{vs}, ' || ('app, public'), false)"
            )),
        ),
        (
            "SELECT pg_catalog.set_config('SEARCH_PATH', 'PUBLIC', false)",
            Some(format!(
                "SELECT pg_catalog.set_config('SEARCH_PATH', '{vs}, ' || ('PUBLIC'), false)"
            )),
        ),
        (
            "SELECT set_config('search_path', $1 || ',x', true)",
            Some(format!(
                "SELECT set_config('search_path', '{vs}, ' || ($1 || ',x'), true)"
            )),
        ),
        (
            "SELECT set_config('search_path', '\"public_02_split\", public', false)",
            None,
        ),
        // Physical-schema references to a table with a view name the view;
        // only the schema's token changes.
        (
            "SELECT * FROM public.users",
            Some(format!("SELECT * FROM {vs}.users")),
        ),
        (
            "SELECT * FROM \"public\".\"users\"",
            Some(format!("SELECT * FROM {vs}.\"users\"")),
        ),
        (
            "SELECT * FROM PUBLIC.USERS u",
            Some(format!("SELECT * FROM {vs}.USERS u")),
        ),
        (
            "SELECT * FROM public /* c */ . users",
            Some(format!("SELECT * FROM {vs} /* c */ . users")),
        ),
        (
            "SELECT * FROM U&\"\\0070ublic\".users",
            Some(format!("SELECT * FROM {vs}.users")),
        ),
        (
            "SELECT * FROM mydb.public.users",
            Some(format!("SELECT * FROM mydb.{vs}.users")),
        ),
        (
            "SELECT public.users.id, public.users.* FROM public.users",
            Some(format!("SELECT {vs}.users.id, {vs}.users.* FROM {vs}.users")),
        ),
        (
            "SELECT u.id FROM public.users u JOIN public.orders o ON o.user_id = u.id",
            Some(format!(
                "SELECT u.id FROM {vs}.users u JOIN public.orders o ON o.user_id = u.id"
            )),
        ),
        (
            "SELECT * FROM orders WHERE user_id IN (SELECT id FROM public.users)",
            Some(format!(
                "SELECT * FROM orders WHERE user_id IN (SELECT id FROM {vs}.users)"
            )),
        ),
        (
            "WITH x AS (SELECT id FROM public.users) SELECT * FROM x",
            Some(format!("WITH x AS (SELECT id FROM {vs}.users) SELECT * FROM x")),
        ),
        (
            "INSERT INTO public.users (name) VALUES ('a') RETURNING id",
            Some(format!(
                "INSERT INTO {vs}.users (name) VALUES ('a') RETURNING id"
            )),
        ),
        (
            "INSERT INTO public.users (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            Some(format!(
                "INSERT INTO {vs}.users (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = excluded.name"
            )),
        ),
        (
            "UPDATE public.users SET name = 'b' WHERE id = 1",
            Some(format!("UPDATE {vs}.users SET name = 'b' WHERE id = 1")),
        ),
        (
            "DELETE FROM public.users WHERE id = 1",
            Some(format!("DELETE FROM {vs}.users WHERE id = 1")),
        ),
        (
            "SELECT * FROM public.\"Mixed Case\"",
            Some(format!("SELECT * FROM {vs}.\"Mixed Case\"")),
        ),
        (
            "SELECT * FROM ONLY public.clients",
            Some(format!("SELECT * FROM ONLY {vs}.clients")),
        ),
        (
            "CREATE TEMP TABLE snap AS SELECT * FROM public.users",
            Some(format!("CREATE TEMP TABLE snap AS SELECT * FROM {vs}.users")),
        ),
        (
            "EXPLAIN ANALYZE SELECT * FROM public.users",
            Some(format!("EXPLAIN ANALYZE SELECT * FROM {vs}.users")),
        ),
        // What a regenerating printer got wrong: every other byte stays.
        (
            "SELECT - -1 AS x, count(*) AS n FROM public.users",
            Some(format!("SELECT - -1 AS x, count(*) AS n FROM {vs}.users")),
        ),
        (
            "SELECT @ -5, ~ ~1, - ~1 FROM public.users",
            Some(format!("SELECT @ -5, ~ ~1, - ~1 FROM {vs}.users")),
        ),
        (
            "SELECT TRIM(LEADING FROM full_name) FROM ONLY public.users",
            Some(format!(
                "SELECT TRIM(LEADING FROM full_name) FROM ONLY {vs}.users"
            )),
        ),
        // TRUNCATE cannot run on a view: it goes to the physical table.
        ("TRUNCATE users", Some("TRUNCATE \"public\".\"users\"".into())),
        (
            "TRUNCATE public.clients, orders",
            Some("TRUNCATE \"public\".\"customers\", orders".into()),
        ),
        // COPY ... TO cannot read a view: it reads a query of the view.
        (
            "COPY users TO STDOUT",
            Some(format!("COPY (SELECT * FROM {vs}.\"users\") TO STDOUT")),
        ),
        (
            "COPY public.users (id, full_name) TO STDOUT WITH (FORMAT csv)",
            Some(format!(
                "COPY (SELECT \"id\", \"full_name\" FROM {vs}.\"users\") TO STDOUT WITH (FORMAT csv)"
            )),
        ),
        ("COPY orders TO STDOUT", None),
        // COPY ... FROM writes the table through the view's column map.
        (
            "COPY users (full_name, email) FROM STDIN",
            Some("COPY \"public\".\"users\" (\"name\", \"_pgshift_new_email\") FROM STDIN".into()),
        ),
        (
            "COPY public.users FROM STDIN WITH (FORMAT csv)",
            Some(
                "COPY \"public\".\"users\" (\"id\", \"name\", \"_pgshift_new_email\") FROM STDIN WITH (FORMAT csv)"
                    .into(),
            ),
        ),
        ("COPY orders FROM STDIN", None),
        (
            "COPY (SELECT * FROM public.users) TO STDOUT",
            Some(format!("COPY (SELECT * FROM {vs}.users) TO STDOUT")),
        ),
        // pg_get_serial_sequence finds nothing on a view: ask the table.
        (
            "SELECT pg_get_serial_sequence('users', 'id')",
            Some("SELECT pg_get_serial_sequence('\"public\".\"users\"', 'id')".into()),
        ),
        (
            "SELECT pg_get_serial_sequence('public.clients', 'id')",
            Some("SELECT pg_get_serial_sequence('\"public\".\"customers\"', 'id')".into()),
        ),
        (
            "SELECT pg_get_serial_sequence('users', 'full_name')",
            Some("SELECT pg_get_serial_sequence('\"public\".\"users\"', 'name')".into()),
        ),
        ("SELECT pg_get_serial_sequence('orders', 'id')", None),
        ("COPY (SELECT 1) TO STDOUT", None),
        // Several statements: only what changes, changes.
        (
            "SELECT 1; SET search_path = public;  SELECT 'x' /* keep */",
            Some(format!(
                "SELECT 1; SET search_path = {vs}, public;  SELECT 'x' /* keep */"
            )),
        ),
        (
            "SELECT $$;$$ ; SELECT * FROM public.users ; -- tail",
            Some(format!("SELECT $$;$$ ; SELECT * FROM {vs}.users ; -- tail")),
        ),
        (
            "select 'a;b', E'c\\';d'; select * from public.users",
            Some(format!("select 'a;b', E'c\\';d'; select * from {vs}.users")),
        ),
    ];
    let mut failures = Vec::new();
    for (input, expected) in &cases {
        if let Err(e) = std::panic::catch_unwind(|| check(input, expected.as_deref())) {
            failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(cases.len() >= 70);
}

#[test]
fn refusals() {
    let pinned = "pinned to version 02_split";
    refused(
        "SET pgshift.version = '01_old'",
        Rule::VersionSetting,
        pinned,
    );
    refused("set PGSHIFT.VERSION to 'x'", Rule::VersionSetting, pinned);
    refused(
        "SET pgshift.\"VERSION\" = 'x'",
        Rule::VersionSetting,
        pinned,
    );
    refused("RESET pgshift.version", Rule::VersionSetting, pinned);
    refused(
        "ALTER ROLE app SET pgshift.version = 'x'",
        Rule::VersionSetting,
        pinned,
    );
    refused(
        "SELECT set_config('pgshift.version', 'x', false)",
        Rule::VersionSetting,
        pinned,
    );
    refused(
        "SELECT set_config(E'pgshift.\\u0076ersion', 'x', false)",
        Rule::VersionSetting,
        pinned,
    );
    refused(
        "SELECT set_config(lower('PGSHIFT.VERSION'), 'x', false)",
        Rule::VersionSetting,
        "not a literal",
    );
    let migrated = "\"users\" is being migrated";
    refused(
        "ALTER TABLE users ADD COLUMN x int",
        Rule::MigratingTable,
        migrated,
    );
    refused(
        "ALTER TABLE mydb.public.users ADD COLUMN z int",
        Rule::MigratingTable,
        migrated,
    );
    refused(
        "ALTER TABLE U&\"\\0075sers\" ADD COLUMN z int",
        Rule::MigratingTable,
        migrated,
    );
    refused(
        "ALTER TABLE public.customers RENAME TO c2",
        Rule::MigratingTable,
        "\"customers\" is being migrated",
    );
    refused(
        "ALTER TABLE clients DROP COLUMN x",
        Rule::MigratingTable,
        "\"customers\" is being migrated",
    );
    refused("DROP TABLE users", Rule::MigratingTable, migrated);
    refused(
        "DROP TABLE orders, public.users",
        Rule::MigratingTable,
        migrated,
    );
    refused(
        "CREATE INDEX i ON users (name)",
        Rule::MigratingTable,
        migrated,
    );
    refused(
        "CREATE TABLE t (u int REFERENCES users (id))",
        Rule::MigratingTable,
        migrated,
    );
    refused(
        "DROP TRIGGER _pgshift_02_split_users ON users",
        Rule::MigratingTable,
        migrated,
    );
    refused(
        "ALTER TABLE \"Mixed Case\" ADD COLUMN y int",
        Rule::MigratingTable,
        "is being migrated",
    );
    let own = "belongs to pgshift";
    refused(
        "DROP FUNCTION pgshift._pgshift_02_split_users() CASCADE",
        Rule::PgshiftObject,
        own,
    );
    refused("DROP VIEW public_02_split.users", Rule::PgshiftObject, own);
    refused(
        "DROP SCHEMA public_01_base CASCADE",
        Rule::PgshiftObject,
        own,
    );
    refused("DROP SCHEMA IF EXISTS pgshift", Rule::PgshiftObject, own);
    refused(
        "CREATE OR REPLACE FUNCTION pgshift.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        Rule::PgshiftObject,
        own,
    );
    refused(
        "REVOKE USAGE ON SCHEMA public_02_split FROM app",
        Rule::PgshiftObject,
        own,
    );
    refused(
        "CREATE VIEW v AS SELECT * FROM users",
        Rule::BindsToVersion,
        "after `pgshift complete`",
    );
    // The refusal replaces only its statement.
    let Rewritten::Text(text) = rewrite("SELECT 1; SET pgshift.version = 'x'; SELECT 2", &view())
    else {
        panic!()
    };
    assert!(
        text.starts_with("SELECT 1; DO $pgshift0$BEGIN RAISE EXCEPTION"),
        "{text}"
    );
    assert!(text.ends_with("; SELECT 2"), "{text}");
}

/// With standard_conforming_strings off, a backslash escapes a quote, so
/// what looks like one SELECT is three statements, the second an ALTER.
#[test]
fn statements_split_as_the_session_reads_them() {
    let sql = "SELECT 'a\\', ' ; ALTER TABLE public.users ADD COLUMN x int; SELECT 1 --'";
    assert_eq!(with(sql, Options::default()), Rewritten::Unchanged);
    let off = Options {
        standard_conforming_strings: false,
    };
    let text = refused_by(
        sql,
        off,
        Rule::MigratingTable,
        "\"users\" is being migrated",
    );
    assert!(text.starts_with("SELECT 'a\\', ' ; DO "), "{text}");
    assert!(text.ends_with("; SELECT 1 --'"), "{text}");
}

#[test]
fn too_deep_or_too_large_ends_in_a_refusal_not_a_crash() {
    let deep = format!("SELECT 1{} FROM public.nosuchtable", "+1".repeat(40_000));
    refused(&deep, Rule::TooComplex, "stack depth limit exceeded");
    let and = format!(
        "SELECT 1 FROM public.users WHERE {}",
        vec!["id = 1"; 60_000].join(" AND ")
    );
    assert!(and.len() < PARSE_LIMIT);
    match rewrite(&and, &view()) {
        Rewritten::Text(t) => assert!(t.starts_with("SELECT 1 FROM \"public_02_split\".users")),
        Rewritten::Unchanged => panic!("the AND chain should be rewritten"),
    }
    // Without a flagged word, nothing is parsed at all.
    let plain = format!("SELECT 1{} FROM t", "+1".repeat(40_000));
    assert_eq!(rewrite(&plain, &view()), Rewritten::Unchanged);
}

#[test]
fn texts_over_the_parse_limit_are_judged_by_their_tokens() {
    let rows = vec!["(1, 'drop it, alter it')"; PARSE_LIMIT / 20].join(", ");
    let insert = format!("INSERT INTO public.users (id, full_name) VALUES {rows}");
    assert!(insert.len() > PARSE_LIMIT);
    match rewrite(&insert, &view()) {
        Rewritten::Text(t) => {
            assert_eq!(
                t.len(),
                insert.len() + "\"public_02_split\"".len() - "public".len()
            );
            assert!(t.starts_with(
                "INSERT INTO \"public_02_split\".users (id, full_name) VALUES (1, 'drop it"
            ));
        }
        Rewritten::Unchanged => panic!("the bulk insert should name the view"),
    }
    let alter = format!("ALTER TABLE orders ADD COLUMN x int; INSERT INTO orders VALUES {rows}");
    refused(&alter, Rule::TooComplex, "begins with ALTER");
    let setting = format!("SELECT set_config('a', 'b', false) FROM (VALUES {rows}) v");
    refused(&setting, Rule::TooComplex, "names set_config");
}

#[test]
fn a_message_that_would_break_the_dollar_quote_gets_another_tag() {
    let text = refusal_statement(Rule::MigratingTable, "contains $pgshift0$ on purpose");
    assert!(text.starts_with("DO $pgshift1$"), "{text}");
}

#[test]
fn path_elements_and_qualified_names_read_as_postgres_reads_them() {
    use super::edits::{first_path_element, split_qualified};
    assert_eq!(
        first_path_element(" PUBLIC, app").as_deref(),
        Some("public")
    );
    assert_eq!(
        first_path_element("\"My \"\"S\"\"\", x").as_deref(),
        Some("My \"S\"")
    );
    assert_eq!(first_path_element("").as_deref(), None);
    assert_eq!(
        split_qualified("Public . \"Users\"").unwrap(),
        ["public", "Users"]
    );
    assert_eq!(split_qualified("a.b.c").unwrap(), ["a", "b", "c"]);
    assert!(split_qualified("a..b").is_none());
    assert!(split_qualified("\"open").is_none());
}

mod regression;
