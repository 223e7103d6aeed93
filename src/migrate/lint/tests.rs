//! One test per rule: the dangerous form is flagged with the rule's name
//! and level, the safe form beside it is not.

use super::*;

/// The rules that `sql`, a plain migration, breaks, in order.
fn rules(sql: &str) -> Vec<&'static str> {
    lint_sql_file("m.sql", sql).iter().map(|f| f.rule).collect()
}

fn migration(json: &str) -> Migration {
    super::super::format::parse(
        "02_x.json",
        "02_x",
        json,
        super::super::format::Syntax::Json,
    )
    .expect("a valid migration")
}

#[test]
fn require_concurrent_index_creation() {
    assert_eq!(
        rules("CREATE INDEX users_email ON users (email)"),
        ["require-concurrent-index-creation"]
    );
    assert!(rules("CREATE INDEX CONCURRENTLY users_email ON users (email)").is_empty());
    // A table created by the same migration has no other users yet.
    assert!(rules("CREATE TABLE t (a int); CREATE INDEX ON t (a)").is_empty());
}

#[test]
fn require_concurrent_index_deletion() {
    assert_eq!(
        rules("DROP INDEX users_email"),
        ["require-concurrent-index-deletion"]
    );
    assert!(rules("DROP INDEX CONCURRENTLY users_email").is_empty());
}

#[test]
fn constraint_missing_not_valid() {
    assert_eq!(
        rules("ALTER TABLE orders ADD CONSTRAINT positive CHECK (amount > 0)"),
        ["constraint-missing-not-valid"]
    );
    assert_eq!(
        rules("ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id)"),
        ["constraint-missing-not-valid"]
    );
    assert!(
        rules(
            "ALTER TABLE orders ADD CONSTRAINT positive CHECK (amount > 0) NOT VALID; \
             ALTER TABLE orders VALIDATE CONSTRAINT positive"
        )
        .is_empty()
    );
}

#[test]
fn disallowed_unique_constraint() {
    assert_eq!(
        rules("ALTER TABLE users ADD CONSTRAINT email_key UNIQUE (email)"),
        ["disallowed-unique-constraint"]
    );
    assert_eq!(
        rules("ALTER TABLE users ADD PRIMARY KEY (id)"),
        ["disallowed-unique-constraint"]
    );
    assert!(
        rules("ALTER TABLE users ADD CONSTRAINT email_key UNIQUE USING INDEX users_email")
            .is_empty()
    );
}

#[test]
fn adding_field_with_default() {
    assert_eq!(
        rules("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()"),
        ["adding-field-with-default"]
    );
    assert_eq!(
        rules("ALTER TABLE users ADD COLUMN n bigserial"),
        ["adding-field-with-default"]
    );
    // A non-volatile default is stored once (Postgres 11 and later).
    assert!(rules("ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now()").is_empty());
    assert!(rules("ALTER TABLE users ADD COLUMN n int NOT NULL DEFAULT 0").is_empty());
}

#[test]
fn adding_required_field() {
    assert_eq!(
        rules("ALTER TABLE users ADD COLUMN age int NOT NULL"),
        ["adding-required-field"]
    );
    assert!(rules("ALTER TABLE users ADD COLUMN age int").is_empty());
}

#[test]
fn adding_not_nullable_field() {
    assert_eq!(
        rules("ALTER TABLE users ALTER COLUMN email SET NOT NULL"),
        ["adding-not-nullable-field"]
    );
    assert!(rules("ALTER TABLE users ALTER COLUMN email DROP NOT NULL").is_empty());
}

#[test]
fn changing_column_type() {
    assert_eq!(
        rules("ALTER TABLE orders ALTER COLUMN amount TYPE numeric(10,2)"),
        ["changing-column-type"]
    );
    assert!(rules("CREATE TABLE t (a int); ALTER TABLE t ALTER COLUMN a TYPE bigint").is_empty());
}

#[test]
fn renaming_column_and_table() {
    assert_eq!(
        rules("ALTER TABLE users RENAME COLUMN name TO full_name"),
        ["renaming-column"]
    );
    assert_eq!(
        rules("ALTER TABLE users RENAME TO customers"),
        ["renaming-table"]
    );
}

#[test]
fn ban_drop_column_table_and_database() {
    assert_eq!(
        rules("ALTER TABLE users DROP COLUMN legacy"),
        ["ban-drop-column"]
    );
    assert_eq!(rules("DROP TABLE public.audit"), ["ban-drop-table"]);
    assert_eq!(rules("DROP DATABASE app"), ["ban-drop-database"]);
    assert!(rules("CREATE TABLE scratch (a int); DROP TABLE scratch").is_empty());
}

#[test]
fn ban_concurrent_index_creation_in_transaction() {
    assert_eq!(
        rules("BEGIN; CREATE INDEX CONCURRENTLY i ON users (email); COMMIT;"),
        ["ban-concurrent-index-creation-in-transaction"]
    );
    assert!(rules("BEGIN; COMMIT; CREATE INDEX CONCURRENTLY i ON users (email);").is_empty());
}

#[test]
fn prefer_timestamptz_and_ban_char_field_are_warnings() {
    let found = lint_sql_file(
        "m.sql",
        "CREATE TABLE t (at timestamp, code char(3), ok timestamptz)",
    );
    let named: Vec<(&str, Level)> = found.iter().map(|f| (f.rule, f.level)).collect();
    assert_eq!(
        named,
        [
            ("prefer-timestamptz", Level::Warning),
            ("ban-char-field", Level::Warning)
        ]
    );
}

#[test]
fn findings_name_their_line_and_the_safe_operation() {
    let found = lint_sql_file(
        "V3__orders.sql",
        "-- orders\nCREATE TABLE t (a int);\n\n  ALTER TABLE orders ALTER COLUMN amount TYPE bigint;\n",
    );
    assert_eq!(found.len(), 1);
    let text = found[0].to_string();
    assert!(
        text.starts_with("V3__orders.sql:4: error [changing-column-type]"),
        "{text}"
    );
    assert!(text.contains("instead: pgroll's alter_column"), "{text}");
}

#[test]
fn unparsable_sql_is_one_error() {
    let found = lint_sql_file("m.sql", "ALTER TABLE users ADD COLUMN");
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].rule, found[0].level),
        ("syntax-error", Level::Error)
    );
}

#[test]
fn a_migrations_sql_operations_and_expressions_are_linted() {
    let at_rule = |m: &Migration| -> Vec<(String, &'static str)> {
        lint_migration(m)
            .into_iter()
            .map(|f| (f.at, f.rule))
            .collect()
    };
    let sql = migration(
        r#"{"operations": [{"sql": {
            "up": "CREATE TABLE audit (id int); CREATE INDEX ON audit (id); CREATE INDEX ON users (email)",
            "down": "DROP TABLE audit"}}]}"#,
    );
    assert_eq!(
        at_rule(&sql),
        [(
            "operations[0].sql.up, statement 3".to_string(),
            "require-concurrent-index-creation"
        )]
    );
    let expressions = migration(
        r#"{"operations": [
            {"alter_column": {"table": "users", "column": "token", "type": "uuid",
                              "up": "gen_random_uuid()", "down": "(SELECT max(token) FROM other)::text"}}
        ]}"#,
    );
    assert_eq!(
        at_rule(&expressions),
        [
            (
                "operations[0].alter_column.up".to_string(),
                "volatile-expression"
            ),
            (
                "operations[0].alter_column.down".to_string(),
                "subquery-in-expression"
            ),
        ]
    );
}

#[test]
fn every_rule_is_listed_once() {
    let mut names: Vec<&str> = RULES.iter().map(|(n, ..)| *n).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count);
}

#[test]
fn the_readme_lists_every_rule_with_its_level() {
    let readme = include_str!("../../../README.md");
    for (rule, level, _) in RULES {
        assert!(
            readme.contains(&format!("| `{rule}` | {level} |")),
            "README.md's lint table lacks `{rule}` ({level})"
        );
    }
}
