use super::*;

#[test]
fn identifiers() {
    assert_eq!(ident("users"), "\"users\"");
    assert_eq!(ident("Users"), "\"Users\"");
    assert_eq!(ident("select"), "\"select\"");
    assert_eq!(
        ident("a \"b\"; DROP TABLE x; --"),
        "\"a \"\"b\"\"; DROP TABLE x; --\""
    );
    assert_eq!(qualified("public", "my table"), "\"public\".\"my table\"");
}

#[test]
fn literals() {
    assert_eq!(literal("plain"), "'plain'");
    assert_eq!(literal("it's"), "'it''s'");
    assert_eq!(literal("back\\slash'"), "E'back\\\\slash'''");
    assert_eq!(literal("$$ünï$$"), "'$$ünï$$'");
}
