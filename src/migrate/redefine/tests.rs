use super::*;

fn renames(name: &str) -> Option<String> {
    match name {
        "id" => Some("_pgshift_new_id".into()),
        "Amount" => Some("_pgshift_new_Amount".into()),
        "text" => Some("_pgshift_new_text".into()),
        _ => None,
    }
}

#[test]
fn a_plain_index_gets_its_new_name_and_columns() {
    assert_eq!(
        index(
            "CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)",
            "_pgshift_dup_users_pkey",
            &renames
        )
        .unwrap(),
        (
            r#"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "_pgshift_dup_users_pkey" ON public.users USING btree ("_pgshift_new_id")"#.to_string(),
            vec!["_pgshift_new_id".to_string()]
        )
    );
}

/// Expressions, operator classes, ordering, INCLUDE, storage parameters
/// and the predicate stay as printed; only the columns change, and a
/// column named like a type (`text`) is told from the type by the tree.
#[test]
fn everything_but_the_columns_stays_as_printed() {
    let def = r#"CREATE INDEX "Odd idx" ON public.t USING btree (lower((text)::text) text_pattern_ops DESC NULLS LAST, "Amount", other) INCLUDE (id, note) WITH (fillfactor='70') WHERE (("Amount" > (0)::numeric) AND (text <> ''::text))"#;
    assert_eq!(
        index(def, "_pgshift_dup_Odd idx", &renames).unwrap().0,
        r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS "_pgshift_dup_Odd idx" ON public.t USING btree (lower(("_pgshift_new_text")::text) text_pattern_ops DESC NULLS LAST, "_pgshift_new_Amount", other) INCLUDE ("_pgshift_new_id", note) WITH (fillfactor='70') WHERE (("_pgshift_new_Amount" > (0)::numeric) AND ("_pgshift_new_text" <> ''::text))"#
    );
}

#[test]
fn a_gist_index_with_an_operator_class() {
    assert_eq!(
        index(
            "CREATE INDEX t_r_idx ON ONLY public.t USING gist (id, r range_ops)",
            "n",
            &renames
        )
        .unwrap()
        .0,
        r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS "n" ON ONLY public.t USING gist ("_pgshift_new_id", r range_ops)"#
    );
}

#[test]
fn a_check_over_the_new_columns() {
    assert_eq!(
        check(
            r#"CHECK ((("Amount" > (0)::numeric) AND (id <> 7) AND (length(text) < 10))) NO INHERIT"#,
            &renames
        )
        .unwrap(),
        r#"CHECK ((("_pgshift_new_Amount" > (0)::numeric) AND ("_pgshift_new_id" <> 7) AND (length("_pgshift_new_text") < 10))) NO INHERIT"#
    );
}

#[test]
fn a_foreign_key_from_its_parts() {
    let references = References {
        schema: "public".into(),
        table: "users".into(),
        columns: vec!["id".into()],
        on_update: 'a',
        on_delete: 'c',
        match_type: 'f',
        delete_set_columns: false,
    };
    assert_eq!(
        foreign_key(
            &["user_id".into()],
            &references,
            &["_pgshift_new_id".into()],
            true,
            true
        ),
        r#"FOREIGN KEY ("user_id") REFERENCES "public"."users" ("_pgshift_new_id") MATCH FULL ON UPDATE NO ACTION ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED"#
    );
}

#[test]
fn what_is_not_an_index_is_an_error() {
    assert!(index("SELECT 1", "n", &renames).is_err());
    assert!(index("CREATE INDEX", "n", &renames).is_err());
}
