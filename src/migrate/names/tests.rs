use super::*;

#[test]
fn short_names_are_kept_and_long_ones_fit_stably() {
    assert_eq!(version_schema("public", "03_add"), "public_03_add");
    let long = format!("public_{}", "v".repeat(80));
    let fitted = fit(&long);
    assert_eq!(fitted.len(), 63);
    assert_eq!(fitted, fit(&long), "stable");
    assert_ne!(
        fitted,
        fit(&format!("{long}x")),
        "distinct inputs give distinct names"
    );
    let unicode = "é".repeat(40);
    assert!(fit(&unicode).len() <= 63);
}

/// Postgres's own names (makeObjectName): the longer part is cut first.
/// tests/it/migrate.rs compares them with a server's for a twin table.
#[test]
fn postgres_object_names_match_the_servers() {
    assert_eq!(postgres_object_name("fruits", None, "pkey"), "fruits_pkey");
    assert_eq!(
        postgres_object_name("fruits", Some("name"), "key"),
        "fruits_name_key"
    );
    let long_table = "t".repeat(60);
    // 63 bytes: 3 for "_id", 4 for "_seq", 56 of the table.
    assert_eq!(
        postgres_object_name(&long_table, Some("id"), "seq"),
        format!("{}_id_seq", "t".repeat(56))
    );
    let both = postgres_object_name(&"a".repeat(40), Some(&"b".repeat(40)), "key");
    assert_eq!(both, format!("{}_{}_key", "a".repeat(29), "b".repeat(29)));
    assert_eq!(both.len(), 63);
}
