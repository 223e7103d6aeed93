use super::*;

#[test]
fn whole_words_only_and_unicode_escapes_always() {
    let scan = Scan::new("public");
    for flagged in [
        "SELECT * FROM public.users",
        "ALTER TABLE x",
        "select set_config('a','b',false)",
        "SET SEARCH_PATH TO x",
        "SELECT * FROM U&\"\\0070ublic\".users",
        "drop",
        "x;copy t to stdout",
    ] {
        assert!(scan.flags(flagged), "{flagged}");
    }
    for clean in [
        "SELECT alternate, dropped_at, copy_count FROM t",
        "SELECT * FROM republic.users",
        "SELECT publicity FROM t",
        "SELECT 1",
    ] {
        assert!(!scan.flags(clean), "{clean}");
    }
}

#[test]
fn a_stream_finds_a_word_split_across_pieces() {
    let scan = Scan::new("public");
    let mut s = scan.stream();
    for piece in ["SELECT * FROM pub", "lic.users"] {
        s.feed(piece.as_bytes());
    }
    assert_eq!(s.found(), Some("public"));
    let mut clean = scan.stream();
    clean.feed(b"SELECT 1");
    assert_eq!(clean.found(), None);
}
