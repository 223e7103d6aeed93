use super::*;

#[test]
fn strings_scan_as_the_session_reads_them() {
    let sql = "SELECT 'a\\', 'b' -- '";
    let on = Tokens::scan(sql, true).unwrap();
    let off = Tokens::scan(sql, false).unwrap();
    let strings = |t: &Tokens| {
        t.all()
            .iter()
            .filter(|t| t.token == Token::Sconst)
            .map(|t| &sql[t.start..t.end])
            .collect::<Vec<_>>()
    };
    assert_eq!(strings(&on), ["'a\\'", "'b'"]);
    assert_eq!(strings(&off), ["'a\\', '"], "b' starts a bit string then");
    // The setting is put back for the next scan on this thread.
    assert_eq!(strings(&Tokens::scan(sql, true).unwrap()), ["'a\\'", "'b'"]);
}

#[test]
fn qualified_names_and_argument_ends() {
    let sql = "SELECT f(a.b /* c */ . \"D\", (1, 2), x) FROM s.t";
    let t = Tokens::scan(sql, true).unwrap();
    let a = t.at(sql.find("a.b").unwrap()).unwrap();
    let parts = t.name_parts(a, 3).unwrap();
    let texts: Vec<&str> = parts
        .iter()
        .map(|i| &sql[t.all()[*i].start..t.all()[*i].end])
        .collect();
    assert_eq!(texts, ["a", "b", "\"D\""]);
    let second = t.at(sql.find("(1").unwrap()).unwrap();
    assert_eq!(
        &sql[sql.find("(1").unwrap()..t.expression_end(second)],
        "(1, 2)"
    );
    assert!(
        t.name_parts(t.at(sql.find("x)").unwrap()).unwrap(), 2)
            .is_none()
    );
    assert!(Tokens::scan("SELECT 'open", true).is_none());
}
