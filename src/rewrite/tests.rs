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
    }
}

/// `None` for "unchanged".
fn check(input: &str, expected: Option<&str>) {
    let got = rewrite(input, &view()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    match (got, expected) {
        (Rewritten::Unchanged, None) => {}
        (Rewritten::Text(text), Some(want)) => assert_eq!(text, want, "input: {input:?}"),
        (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
    }
}

fn refused(input: &str, needle: &str) {
    match rewrite(input, &view()).unwrap() {
        Rewritten::Text(text) => {
            assert!(
                text.contains("RAISE EXCEPTION USING ERRCODE = '42501'"),
                "{input:?} -> {text}"
            );
            assert!(text.contains(needle), "{input:?} -> {text}");
        }
        Rewritten::Unchanged => panic!("{input:?} should be refused"),
    }
}

#[test]
fn rewrite_table() {
    let cases: &[(&str, Option<&str>)] = &[
        // Nothing to do: the scan does not even parse these.
        ("SELECT 1", None),
        ("SELECT * FROM users WHERE id = $1", None),
        ("INSERT INTO users (name) VALUES ('x')", None),
        ("UPDATE users SET name = 'a' WHERE id = 1", None),
        ("BEGIN", None),
        ("", None),
        ("  \n\t", None),
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
        ("RESET pgshift.version", None),
        ("SELECT current_setting('pgshift.version')", None),
        ("SET search_path = app", None),
        ("SET statement_timeout = 5", None),
        ("ALTER TABLE orders ADD COLUMN x int", None),
        ("DROP TABLE orders", None),
        ("CREATE INDEX ON orders (id)", None),
        ("TRUNCATE orders", None),
        ("SELECT set_config('statement_timeout', '5s', false)", None),
        ("SELECT set_config('search_path', 'app', false)", None),
        // search_path stays inside the version.
        (
            "SET search_path = public",
            Some("SET search_path = \"public_02_split\", public"),
        ),
        (
            "SET search_path TO app, public",
            Some("SET search_path = app, \"public_02_split\", public"),
        ),
        (
            "set search_path = \"public\", app",
            Some("SET search_path = \"public_02_split\", \"public\", app"),
        ),
        (
            "SET LOCAL search_path = public",
            Some("SET LOCAL search_path = \"public_02_split\", public"),
        ),
        (
            "SET SESSION search_path TO 'public'",
            Some("SET SESSION search_path = \"public_02_split\", 'public'"),
        ),
        (
            "SELECT set_config('search_path', 'app, public', false)",
            Some("SELECT set_config('search_path', 'app, \"public_02_split\", public', false)"),
        ),
        // Physical-schema references to a table with a view name the view.
        (
            "SELECT * FROM public.users",
            Some("SELECT * FROM \"public_02_split\".\"users\""),
        ),
        (
            "SELECT * FROM \"public\".\"users\"",
            Some("SELECT * FROM \"public_02_split\".\"users\""),
        ),
        (
            "SELECT * FROM PUBLIC.USERS u",
            Some("SELECT * FROM \"public_02_split\".\"users\" u"),
        ),
        (
            "SELECT u.id FROM public.users u JOIN public.orders o ON o.user_id = u.id",
            Some(
                "SELECT u.id FROM \"public_02_split\".\"users\" u JOIN public.orders o ON o.user_id = u.id",
            ),
        ),
        (
            "SELECT * FROM orders WHERE user_id IN (SELECT id FROM public.users)",
            Some(
                "SELECT * FROM orders WHERE user_id IN (SELECT id FROM \"public_02_split\".\"users\")",
            ),
        ),
        (
            "WITH x AS (SELECT id FROM public.users) SELECT * FROM x",
            Some("WITH x AS (SELECT id FROM \"public_02_split\".\"users\") SELECT * FROM x"),
        ),
        (
            "INSERT INTO public.users (name) VALUES ('a') RETURNING id",
            Some("INSERT INTO \"public_02_split\".\"users\" (name) VALUES ('a') RETURNING id"),
        ),
        (
            "INSERT INTO public.users (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            Some(
                "INSERT INTO \"public_02_split\".\"users\" (id, name) VALUES (1, 'a') ON CONFLICT(id) DO UPDATE SET name = excluded.name",
            ),
        ),
        (
            "UPDATE public.users SET name = 'b' WHERE id = 1",
            Some("UPDATE \"public_02_split\".\"users\" SET name = 'b' WHERE id = 1"),
        ),
        (
            "DELETE FROM public.users WHERE id = 1",
            Some("DELETE FROM \"public_02_split\".\"users\" WHERE id = 1"),
        ),
        (
            "SELECT * FROM public.\"Mixed Case\"",
            Some("SELECT * FROM \"public_02_split\".\"Mixed Case\""),
        ),
        (
            "SELECT * FROM public.clients",
            Some("SELECT * FROM \"public_02_split\".\"clients\""),
        ),
        // TRUNCATE cannot run on a view: it goes to the physical table.
        ("TRUNCATE users", Some("TRUNCATE \"public\".\"users\"")),
        (
            "TRUNCATE public.clients",
            Some("TRUNCATE \"public\".\"customers\""),
        ),
        // COPY ... TO cannot read a view: it reads a query of the view.
        (
            "COPY users TO STDOUT",
            Some("COPY (SELECT * FROM \"public_02_split\".\"users\") TO STDOUT"),
        ),
        (
            "COPY public.users (id, name) TO STDOUT WITH (FORMAT csv)",
            Some(
                "COPY (SELECT id, name FROM \"public_02_split\".\"users\") TO STDOUT (FORMAT csv)",
            ),
        ),
        ("COPY orders TO STDOUT", None),
        // COPY ... FROM writes the table through the view's column map.
        (
            "COPY users (full_name, email) FROM STDIN",
            Some("COPY \"public\".\"users\" (\"name\", \"_pgshift_new_email\") FROM STDIN"),
        ),
        (
            "COPY public.users FROM STDIN WITH (FORMAT csv)",
            Some(
                "COPY \"public\".\"users\" (\"id\", \"name\", \"_pgshift_new_email\") FROM STDIN (FORMAT csv)",
            ),
        ),
        ("COPY orders FROM STDIN", None),
        // pg_get_serial_sequence finds nothing on a view: ask the table.
        (
            "SELECT pg_get_serial_sequence('users', 'id')",
            Some("SELECT pg_get_serial_sequence('\"public\".\"users\"', 'id')"),
        ),
        (
            "SELECT pg_get_serial_sequence('public.clients', 'id')",
            Some("SELECT pg_get_serial_sequence('\"public\".\"customers\"', 'id')"),
        ),
        ("SELECT pg_get_serial_sequence('orders', 'id')", None),
        ("COPY (SELECT 1) TO STDOUT", None),
        // Several statements: only the one that changes is regenerated.
        (
            "SELECT 1; SET search_path = public;  SELECT 'x' /* keep */",
            Some("SELECT 1; SET search_path = \"public_02_split\", public;  SELECT 'x' /* keep */"),
        ),
        (
            "SELECT $$;$$ ; SELECT * FROM public.users ; -- tail",
            Some("SELECT $$;$$ ; SELECT * FROM \"public_02_split\".\"users\" ; -- tail"),
        ),
        (
            "select 'a;b', E'c\\';d'; select * from public.users",
            Some("select 'a;b', E'c\\';d'; SELECT * FROM \"public_02_split\".\"users\""),
        ),
    ];
    let mut failures = Vec::new();
    for (input, expected) in cases {
        if let Err(e) = std::panic::catch_unwind(|| check(input, *expected)) {
            failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(cases.len() >= 50);
}

#[test]
fn refusals() {
    refused(
        "SET pgshift.version = '01_old'",
        "pinned to version 02_split",
    );
    refused("set PGSHIFT.VERSION to 'x'", "pinned to version 02_split");
    refused(
        "SELECT set_config('pgshift.version', 'x', false)",
        "pinned to version 02_split",
    );
    refused(
        "ALTER TABLE users ADD COLUMN x int",
        "\"users\" is being migrated",
    );
    refused(
        "ALTER TABLE public.customers RENAME TO c2",
        "\"customers\" is being migrated",
    );
    refused(
        "ALTER TABLE clients DROP COLUMN x",
        "\"customers\" is being migrated",
    );
    refused("DROP TABLE users", "is being migrated");
    refused("DROP TABLE orders, public.users", "is being migrated");
    refused("CREATE INDEX i ON users (name)", "is being migrated");
    refused(
        "ALTER TABLE \"Mixed Case\" ADD COLUMN y int",
        "is being migrated",
    );
    // The refusal replaces only its statement.
    let Rewritten::Text(text) =
        rewrite("SELECT 1; SET pgshift.version = 'x'; SELECT 2", &view()).unwrap()
    else {
        panic!()
    };
    assert!(
        text.starts_with("SELECT 1; DO $pgshift0$BEGIN RAISE EXCEPTION"),
        "{text}"
    );
    assert!(text.ends_with("; SELECT 2"), "{text}");
}

#[test]
fn a_statement_that_may_need_a_rewrite_but_does_not_parse_is_an_error() {
    let err = rewrite("SELECT FROM public.users WHERE (", &view()).unwrap_err();
    assert!(err.construct.contains("public.users"), "{err}");
    assert!(err.to_string().contains("cannot parse"), "{err}");
    // One that cannot need a rewrite passes untouched even if it does not parse.
    assert_eq!(
        rewrite("SELEC garbage (", &view()).unwrap(),
        Rewritten::Unchanged
    );
}

#[test]
fn a_message_that_would_break_the_dollar_quote_gets_another_tag() {
    let text = raise("contains $pgshift0$ on purpose");
    assert!(text.starts_with("DO $pgshift1$"), "{text}");
}
