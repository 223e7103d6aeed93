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
