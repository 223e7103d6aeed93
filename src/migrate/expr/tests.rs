use super::*;

#[test]
fn bare_column_references_are_renamed() {
    let map = BTreeMap::from([("price".to_string(), "_pgshift_new_price".to_string())]);
    assert_eq!(
        rename_columns("price > 0 AND PRICE < 100 AND other = 'price'", &map).unwrap(),
        "\"_pgshift_new_price\" > 0 AND \"_pgshift_new_price\" < 100 AND other = 'price'"
    );
    let quoted = BTreeMap::from([("Price".to_string(), "p2".to_string())]);
    assert_eq!(
        rename_columns("\"Price\" > price", &quoted).unwrap(),
        "\"p2\" > price"
    );
    assert!(
        rename_columns("price >", &map)
            .unwrap_err()
            .contains("cannot parse")
    );
    // Every other byte stays: a printer would have turned `- -1` into a comment.
    assert_eq!(
        rename_columns("price > - -1 /* keep */", &map).unwrap(),
        "\"_pgshift_new_price\" > - -1 /* keep */"
    );
    assert!(rename_columns("1; DROP TABLE x", &map).is_err());
}
