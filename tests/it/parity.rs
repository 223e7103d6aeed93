//! pgroll parity (issue 14): a history of pgroll-format files, each run as
//! start → rollback (the catalog exactly as before) → start → complete,
//! ends with the tables, columns, constraint, index and sequence names and
//! the data that pgroll (and Postgres, for the final tables) would leave.
//! Columns are nullable unless the file says otherwise
//! (`../shared/docs/migration-format.md`).

use crate::harness;
use crate::migrate::{Lab, assert_same_catalog, round_trip};

/// The history, in order: (file name, JSON).
const HISTORY: &[(&str, &str)] = &[
    (
        "01_library.json",
        r#"{"operations": [
          {"create_table": {"name": "authors", "columns": [
            {"name": "id", "type": "serial", "pk": true},
            {"name": "name", "type": "varchar(100)", "unique": true},
            {"name": "bio", "type": "text", "nullable": true}]}},
          {"create_table": {"name": "shelves", "columns": [
            {"name": "room", "type": "text", "pk": true},
            {"name": "slot", "type": "integer", "pk": true}]}}
        ]}"#,
    ),
    (
        "02_books.json",
        r#"{"operations": [
          {"create_table": {"name": "books", "columns": [
            {"name": "id", "type": "serial", "pk": true},
            {"name": "title", "type": "text"},
            {"name": "author_id", "type": "integer",
             "references": {"name": "books_author_fk", "table": "authors", "column": "id"}}]}},
          {"add_column": {"table": "books", "column": {"name": "pages", "type": "integer", "nullable": true}}},
          {"alter_column": {"table": "books", "column": "title", "name": "heading", "type": "varchar(200)",
             "check": {"name": "title_long", "constraint": "length(title) > 1"}}},
          {"create_constraint": {"table": "books", "name": "pages_positive", "type": "check",
             "columns": ["pages"], "check": "pages > 0",
             "up": {"pages": "pages"}, "down": {"pages": "pages"}}},
          {"create_index": {"table": "books", "name": "books_heading_idx", "columns": ["heading"]}},
          {"rename_constraint": {"table": "books", "from": "title_long", "to": "heading_long"}}
        ]}"#,
    ),
    (
        "03_author_key_bigint.json",
        r#"{"operations": [
          {"alter_column": {"table": "authors", "column": "id", "type": "bigint"}},
          {"alter_column": {"table": "books", "column": "author_id", "type": "bigint"}}
        ]}"#,
    ),
    (
        "04_rename.json",
        r#"{"operations": [
          {"rename_table": {"from": "authors", "to": "writers"}},
          {"alter_column": {"table": "books", "column": "pages", "name": "page_count"}}
        ]}"#,
    ),
    (
        "05_bio_not_null.json",
        r#"{"operations": [
          {"alter_column": {"table": "writers", "column": "bio", "nullable": false,
             "up": "coalesce(bio, 'unknown')", "default": "'unknown'"}},
          {"alter_column": {"table": "writers", "column": "name", "unique": {"name": "writers_name_unique"},
             "up": "name", "down": "name", "comment": "pen name"}}
        ]}"#,
    ),
    (
        "06_defaults_and_identity.json",
        r#"{"operations": [
          {"alter_column": {"table": "writers", "column": "bio", "default": null}},
          {"set_replica_identity": {"table": "books", "identity": {"type": "full"}}}
        ]}"#,
    ),
    (
        "07_drop_check.json",
        r#"{"operations": [
          {"drop_constraint": {"table": "books", "name": "pages_positive", "up": "page_count", "down": "page_count"}}
        ]}"#,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgroll_history_round_trips_and_ends_with_pgrolls_names() {
    let lab = Lab::new("").await;
    let admin = lab.admin().await;
    for (i, (name, json)) in HISTORY.iter().enumerate() {
        let file = lab.file(name, json);
        round_trip(&lab, &file).await;
        lab.complete().await;
        // Rows written between migrations must come through each one.
        match i {
            0 => admin
                .batch_execute(
                    "INSERT INTO authors (name) VALUES ('Le Guin'), ('Borges');
                     INSERT INTO shelves VALUES ('A', 1), ('A', 2)",
                )
                .await
                .unwrap(),
            1 => admin
                .batch_execute(
                    "INSERT INTO books (heading, author_id, pages) VALUES ('Earthsea', 1, 200), ('Ficciones', 2, NULL)",
                )
                .await
                .unwrap(),
            _ => {}
        }
    }
    let shape = harness::texts(
        &admin,
        "SELECT conrelid::regclass || ' ' || conname || ' ' || contype::text || ' ' || pg_get_constraintdef(oid)
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         UNION ALL SELECT 'index ' || indexrelid::regclass FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace
         UNION ALL SELECT 'sequence ' || relname || ' ' || coalesce(pg_get_serial_sequence(
              (SELECT d.refobjid::regclass::text FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'a'),
              (SELECT a.attname FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
               WHERE d.objid = c.oid AND d.deptype = 'a')), 'unowned')
           FROM pg_class c WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace
         UNION ALL SELECT 'column ' || attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod)
              || CASE WHEN attnotnull THEN ' not null' ELSE '' END
              || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
              || coalesce(' comment ' || col_description(attrelid, attnum), '')
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND attnum > 0 AND NOT attisdropped
         UNION ALL SELECT 'replica identity ' || relname || ' ' || relreplident::text FROM pg_class
           WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relreplident <> 'd'
         ORDER BY 1",
    )
    .await;
    let expected = [
        "books books_author_fk f FOREIGN KEY (author_id) REFERENCES writers(id)",
        "books books_pkey p PRIMARY KEY (id)",
        "books heading_long c CHECK ((length((heading)::text) > 1))",
        "column books.author_id bigint",
        "column books.heading character varying(200)",
        "column books.id integer not null default nextval('books_id_seq'::regclass)",
        "column books.page_count integer",
        "column shelves.room text not null",
        "column shelves.slot integer not null",
        "column writers.bio text not null",
        "column writers.id bigint not null default nextval('authors_id_seq'::regclass)",
        "column writers.name character varying(100) comment pen name",
        "index authors_name_key",
        "index authors_pkey",
        "index books_heading_idx",
        "index books_pkey",
        "index shelves_pkey",
        "index writers_name_unique",
        "replica identity books f",
        "sequence authors_id_seq public.authors_id_seq",
        "sequence books_id_seq public.books_id_seq",
        "shelves shelves_pkey p PRIMARY KEY (room, slot)",
        "writers authors_name_key u UNIQUE (name)",
        "writers authors_pkey p PRIMARY KEY (id)",
        "writers writers_name_unique u UNIQUE (name)",
    ];
    assert_eq!(shape, expected, "{shape:#?}");
    let rows = harness::texts(
        &admin,
        "SELECT w.name || ' ' || w.bio || ' ' || b.heading || ' ' || coalesce(b.page_count::text, '-')
         FROM books b JOIN writers w ON w.id = b.author_id ORDER BY b.id",
    )
    .await;
    assert_eq!(
        rows,
        ["Le Guin unknown Earthsea 200", "Borges unknown Ficciones -"]
    );
}

/// `--pass-through-views`: pgroll's version schemas, with a view of every
/// table. A client whose search_path is one version schema alone reads and
/// writes the tables the migration does not touch too, in both versions;
/// rollback removes them all; after complete the kept schema shows every
/// table, and the next migration stands its old version on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_views_let_a_version_schema_alone_see_every_table() {
    use pgshift::migrate::engine::{Migrator, Pinned, Settings};
    let lab = Lab::new(
        "CREATE TABLE accounts (id serial PRIMARY KEY, email text);
         CREATE TABLE audit (id serial PRIMARY KEY, line text);
         INSERT INTO accounts (email) VALUES ('a@x');",
    )
    .await;
    let settings = Settings {
        pass_through_views: true,
        ..lab.settings()
    };
    let first = lab.file(
        "01_name.json",
        r#"{"operations": [{"add_column": {"table": "accounts", "up": "upper(email)", "column": {"name": "name", "type": "text"}}}]}"#,
    );
    let before = lab.snapshot().await;
    let mut m = Migrator::connect(settings.clone()).await.unwrap();
    m.start(&first).await.unwrap();
    m.rollback(Pinned::Refuse).await.unwrap();
    assert_same_catalog(&before, &lab.snapshot().await);
    m.start(&first).await.unwrap();
    for (schema, version) in [
        ("public_baseline", None),
        ("public_01_name", Some("01_name")),
    ] {
        let client = lab.admin().await;
        let set = match version {
            Some(v) => format!("SET pgshift.version = '{v}'; SET search_path = {schema}"),
            None => format!("SET search_path = {schema}"),
        };
        client.batch_execute(&set).await.unwrap();
        let account = match version {
            Some(_) => format!("INSERT INTO accounts (email, name) VALUES ('{schema}@x', 'new')"),
            None => format!("INSERT INTO accounts (email) VALUES ('{schema}@x')"),
        };
        client
            .batch_execute(&format!(
                "INSERT INTO audit (line) VALUES ('{schema}'); {account}"
            ))
            .await
            .unwrap();
        let lines = harness::texts(&client, "SELECT line FROM audit ORDER BY id").await;
        assert!(lines.contains(&schema.to_string()), "{lines:?}");
    }
    m.complete(Pinned::Refuse).await.unwrap();
    let admin = lab.admin().await;
    let kept = harness::texts(
        &admin,
        "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'public_01_name' ORDER BY 1",
    )
    .await;
    assert_eq!(kept, ["accounts", "audit"]);
    let names = harness::texts(
        &admin,
        "SELECT email || ' ' || coalesce(name, '-') FROM accounts ORDER BY id",
    )
    .await;
    assert_eq!(
        names,
        [
            "a@x A@X",
            "public_baseline@x PUBLIC_BASELINE@X",
            "public_01_name@x new"
        ]
    );
    // The next migration's old version stands on the kept schema's views.
    let second = lab.file(
        "02_audit.json",
        r#"{"operations": [{"add_column": {"table": "audit", "column": {"name": "at", "type": "timestamptz", "default": "now()"}}}]}"#,
    );
    m.start(&second).await.unwrap();
    let old = lab.admin().await;
    old.batch_execute("SET search_path = public_01_name")
        .await
        .unwrap();
    let columns = harness::columns(&old, "audit").await;
    assert_eq!(columns, ["id", "line"]);
    m.complete(Pinned::Refuse).await.unwrap();
    m.close().await.unwrap();
}
