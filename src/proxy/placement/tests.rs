use super::mentions_reset;

#[test]
fn reset_and_discard_are_words_not_parts_of_names() {
    for sql in [
        "RESET ALL",
        "discard all",
        "BEGIN; Reset search_path;",
        "\treset\n",
    ] {
        assert!(mentions_reset(sql.as_bytes()), "{sql}");
    }
    for sql in [
        "SELECT password_reset FROM users",
        "SELECT resets, discarded FROM t",
        "SELECT 1",
    ] {
        assert!(!mentions_reset(sql.as_bytes()), "{sql}");
    }
}
