use super::*;

fn json(text: &str) -> Result<Migration, FormatError> {
    parse("03_test.json", "03_test", text, Syntax::Json)
}

#[test]
fn the_documented_examples_parse() {
    let yaml = "operations:\n  - add_column:\n      table: products\n      up: UPPER(name)\n      column: { name: description, type: varchar(255), nullable: true }\n";
    let m = parse(
        "03_add_description.yaml",
        "03_add_description",
        yaml,
        Syntax::Yaml,
    )
    .unwrap();
    assert_eq!(m.name, "03_add_description");
    match &m.operations[0] {
        Operation::AddColumn(a) => {
            assert_eq!(
                (a.table.as_str(), a.column.name.as_str(), a.up.as_deref()),
                ("products", "description", Some("UPPER(name)"))
            );
            assert!(a.column.nullable);
        }
        other => panic!("{other:?}"),
    }
    let m = json(
        r#"{"operations": [{"alter_column": {"table": "reviews", "column": "rating",
        "type": "integer", "up": "CAST(rating AS integer)", "down": "CAST(rating AS text)"}}]}"#,
    )
    .unwrap();
    assert!(
        matches!(&m.operations[0], Operation::AlterColumn(a) if a.type_.as_deref() == Some("integer") && a.default.is_none())
    );
    let m = parse("x.yaml", "x", "operations:\n  - create_index: { name: idx_fruits_name, table: fruits, columns: [{ column: name }] }\n", Syntax::Yaml).unwrap();
    assert!(matches!(&m.operations[0], Operation::CreateIndex(c) if c.columns[0].column == "name"));
}

#[test]
fn every_operation_kind_parses() {
    let text = r#"{"operations": [
      {"create_table": {"name": "t", "columns": [{"name": "id", "type": "int", "pk": true,
         "generated": {"identity": {"user_specified_values": "BY DEFAULT"}}},
         {"name": "r", "type": "int", "references": {"name": "fk", "table": "o", "column": "id", "on_delete": "CASCADE"},
          "check": {"name": "c", "constraint": "r > 0"}, "comment": "x", "unique": true, "default": "1"}],
         "constraints": [{"name": "u", "type": "unique", "columns": ["r"], "nulls_not_distinct": true,
          "index_parameters": {"include_columns": ["id"]}}], "comment": "table"}},
      {"drop_table": {"name": "t"}},
      {"rename_table": {"from": "a", "to": "b"}},
      {"add_column": {"table": "t", "column": {"name": "c", "type": "text"}}},
      {"drop_column": {"table": "t", "column": "c", "down": "'x'"}},
      {"rename_column": {"table": "t", "from": "a", "to": "b"}},
      {"alter_column": {"table": "t", "column": "c", "up": "c", "down": "c", "default": null, "comment": null,
         "unique": {"name": "u"}, "check": {"name": "ck", "constraint": "c <> ''"},
         "references": {"name": "f", "table": "o", "column": "id"}, "nullable": false}},
      {"create_index": {"name": "i", "table": "t", "columns": ["a", "b"], "method": "btree", "unique": true,
         "predicate": "a > 0", "storage_parameters": "fillfactor=70"}},
      {"create_index": {"name": "i2", "table": "t", "columns": {"a": {"sort": "DESC", "nulls": "LAST"}}}},
      {"drop_index": {"name": "i"}},
      {"create_constraint": {"table": "t", "name": "k", "type": "check", "columns": ["a"], "check": "a > 0",
         "up": {"a": "greatest(a, 1)"}, "down": {"a": "a"}}},
      {"drop_constraint": {"table": "t", "name": "k", "up": "a", "down": "a"}},
      {"drop_multicolumn_constraint": {"table": "t", "name": "k2", "down": {"a": "a", "b": "b"}}},
      {"rename_constraint": {"table": "t", "from": "k", "to": "k3"}},
      {"set_replica_identity": {"table": "t", "identity": {"type": "FULL", "index": ""}}}
    ]}"#;
    let m = json(text).unwrap();
    let kinds: Vec<&str> = m.operations.iter().map(Operation::kind).collect();
    assert_eq!(kinds.len(), 15);
    assert!(
        matches!(&m.operations[6], Operation::AlterColumn(a) if a.default == Some(None) && a.comment == Some(None))
    );
    assert!(
        matches!(&m.operations[8], Operation::CreateIndex(c) if c.columns[0].sort.as_deref() == Some("DESC"))
    );
    let sql = json(r#"{"operations": [{"sql": {"up": "CREATE TABLE z ()", "down": "DROP TABLE z", "onComplete": true}}]}"#).unwrap();
    assert!(matches!(&sql.operations[0], Operation::Sql(s) if s.on_complete));
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let err = json(
        r#"{"operations": [
        {"add_column": {"table": "t", "column": {"name": "c"}}},
        {"rename_column": {"table": "t", "from": "a"}},
        {"bogus_op": {}},
        {"drop_table": {"name": "t", "cascade": true}}
      ], "extra": 1}"#,
    )
    .unwrap_err();
    let FormatError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "/operations/0/add_column/column",
        "/operations/1/rename_column",
        "/operations/2",
        "/operations/3/drop_table",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert!(
        paths.contains(&""),
        "the unknown top-level key is reported: {paths:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("03_test.json: "), "{text}");
    assert!(text.contains("\"type\" is a required property"), "{text}");
    assert!(
        text.contains("an operation is one of: create_table, drop_table"),
        "{text}"
    );
}

#[test]
fn hostile_and_overlong_names() {
    // Quotes, semicolons, $$ and unicode are names like any other (they get quoted).
    let ok = json(
        r#"{"operations": [{"rename_column": {"table": "we\"ird; DROP TABLE x; --", "from": "$$a$$", "to": "ünï côdé"}}]}"#,
    );
    assert!(ok.is_ok(), "{ok:?}");
    let long = "x".repeat(64);
    let err = json(&format!(
        r#"{{"operations": [{{"drop_table": {{"name": "{long}"}}}}]}}"#
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("/operations/0/drop_table/name"),
        "{err}"
    );
    let err = json(r#"{"operations": [{"drop_table": {"name": "a\u0000b"}}]}"#).unwrap_err();
    assert!(
        err.to_string().contains("/operations/0/drop_table/name"),
        "{err}"
    );
}

#[test]
fn sql_must_stand_alone_and_syntax_errors_name_the_format() {
    let err =
        json(r#"{"operations": [{"sql": {"up": "SELECT 1"}}, {"drop_table": {"name": "t"}}]}"#)
            .unwrap_err();
    assert!(
        err.to_string().contains("must be the only operation"),
        "{err}"
    );
    let err = parse("x.yaml", "x", "operations: [\n", Syntax::Yaml).unwrap_err();
    assert!(err.to_string().contains("not valid YAML"), "{err}");
    let err = json("{").unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}
