use super::*;

fn spec(key: &[(&str, &str)]) -> BackfillSpec {
    BackfillSpec {
        schema: "public".into(),
        table: "Order Items".into(),
        key: key
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        set: Vec::new(),
        touch: "id".into(),
    }
}

#[test]
fn keyset_sql_uses_row_comparison_and_aliases() {
    let sql = keyset_batch_sql(
        &spec(&[("order", "integer"), ("line", "text")]),
        Batch::After,
    );
    assert!(
        sql.contains(r#"("order", "line") > (($1::text[])[1]::integer, ($1::text[])[2]::text)"#),
        "{sql}"
    );
    assert!(
        sql.contains(r#"("order", "line") <= (($2::text[])[1]::integer, ($2::text[])[2]::text)"#),
        "{sql}"
    );
    // The touch is the spec's column (one the trigger writes), not the key.
    assert!(sql.contains(r#"SET "id" = t."id""#), "{sql}");
    assert!(sql.contains(r#"FROM ONLY "public"."Order Items""#), "{sql}");
    let first = keyset_batch_sql(&spec(&[("id", "bigint")]), Batch::First);
    assert!(
        first.contains(r#"("id") <= (($1::text[])[1]::bigint)"#) && first.contains("LIMIT $2"),
        "{first}"
    );
}

#[test]
fn batch_size_moves_toward_the_target() {
    let target = Duration::from_millis(10);
    let ms = Duration::from_millis;
    assert_eq!(next_batch_size(1000, ms(5), 5000, target), 2000);
    assert_eq!(next_batch_size(1000, ms(40), 5000, target), 500);
    assert_eq!(next_batch_size(1000, target, 5000, target), 1000);
    assert_eq!(
        next_batch_size(10, Duration::from_secs(5), 5000, target),
        10
    );
    assert_eq!(
        next_batch_size(4000, Duration::from_micros(100), 5000, target),
        5000,
        "never above the configured size"
    );
    assert_eq!(next_batch_size(5, ms(1), 5, target), 5);
}
