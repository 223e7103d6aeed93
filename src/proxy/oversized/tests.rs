use super::*;
use crate::rewrite::Scan;

fn body_and_tail(body: &[u8]) -> (&[u8], &[u8]) {
    body.split_at(body.len().saturating_sub(TAIL))
}

#[test]
fn a_long_query_that_names_a_word_has_its_end_replaced() {
    let scan = Scan::new("public");
    let mut sql = b"SELECT * FROM public.users WHERE id IN (".to_vec();
    sql.extend(std::iter::repeat_n(b'1', 300_000));
    sql.extend(b") -- \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\0");
    let mut o = Oversized::new(frontend::QUERY, sql.len(), 1 << 16, scan.stream());
    let (head, tail) = body_and_tail(&sql);
    o.body(head);
    let refusal = o.tail(tail).expect("the text names public");
    let end = tail.len() - 1;
    assert_eq!(
        refusal.at + refusal.filler.len(),
        end,
        "up to the zero byte"
    );
    assert!(refusal.filler.starts_with(b"\n/*"));
    assert!(
        std::str::from_utf8(&tail[..refusal.at]).is_ok(),
        "the replacement starts on a character boundary"
    );
    assert_eq!(
        crate::protocol::messages::error_code(&refusal.error).as_deref(),
        Some("54000")
    );
}

#[test]
fn a_long_parse_without_a_word_is_left_alone_and_its_types_are_kept_out() {
    let scan = Scan::new("public");
    let mut body = b"stmt\0SELECT ".to_vec();
    body.extend(std::iter::repeat_n(b'1', 400_000));
    body.push(0);
    body.extend(1i16.to_be_bytes());
    body.extend(25i32.to_be_bytes());
    let mut o = Oversized::new(frontend::PARSE, body.len(), 1 << 16, scan.stream());
    let (head, tail) = body_and_tail(&body);
    o.body(head);
    assert!(o.tail(tail).is_none());
}
