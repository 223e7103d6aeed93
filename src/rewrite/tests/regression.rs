//! Postgres's own regression SQL (`../shared/corpus`) through the
//! rewriter: every statement Postgres's parser accepts, as written and with
//! tables qualified, is refused only by a rule that names it and changes
//! only where an edit says.

use std::collections::{BTreeMap, BTreeSet};

use super::super::*;
use crate::rewrite::corpus;

/// A version that renames nothing but has views of tables the regression
/// SQL uses often, so that its statements meet every rewrite and rule.
fn corpus_view() -> VersionView {
    let tables = [
        "tenk1",
        "int8_tbl",
        "int4_tbl",
        "onek",
        "t",
        "foo",
        "t1",
        "x",
        "point_tbl",
    ];
    VersionView {
        schema: "public".into(),
        version: "02_corpus".into(),
        version_schema: "public_02_corpus".into(),
        views: tables
            .iter()
            .map(|t| (t.to_string(), t.to_string()))
            .collect(),
        columns: BTreeMap::from([(
            "int4_tbl".to_string(),
            vec![("f1".to_string(), "f1".to_string())],
        )]),
        migrating: tables.iter().map(|t| t.to_string()).collect(),
        version_schemas: BTreeSet::from(["public_01".into(), "public_02_corpus".into()]),
    }
}

/// Fields that hold offsets into the text, which move with any edit.
fn is_offset(field: &str) -> bool {
    field.ends_with("location")
        || field.ends_with("list_start")
        || field.ends_with("list_end")
        || field == "stmt_len"
}

/// The node kinds at which two trees differ, offsets aside.
fn differences(a: &Lite, b: &Lite, at: &'static str, out: &mut Vec<&'static str>) {
    match (a, b) {
        (Lite::Node(ka, fa), Lite::Node(kb, fb)) if ka == kb => {
            let fields = |f: &[(&'static str, Lite)]| -> Vec<(&'static str, Lite)> {
                f.iter().filter(|(k, _)| !is_offset(k)).cloned().collect()
            };
            let (fa, fb) = (fields(fa), fields(fb));
            if fa.len() != fb.len() || fa.iter().zip(&fb).any(|(x, y)| x.0 != y.0) {
                out.push(ka);
                return;
            }
            for ((_, x), (_, y)) in fa.iter().zip(&fb) {
                differences(x, y, ka, out);
            }
        }
        (Lite::List(xs), Lite::List(ys)) if xs.len() == ys.len() => {
            for (x, y) in xs.iter().zip(ys) {
                differences(x, y, at, out);
            }
        }
        _ if a == b => {}
        _ => out.push(at),
    }
}

/// The node kinds an edit of `kind` may change.
fn changes(kind: EditKind) -> &'static [&'static str] {
    match kind {
        EditKind::ViewReference => &["RangeVar", "String"],
        EditKind::SearchPath => &["VariableSetStmt", "FuncCall"],
        EditKind::SerialSequence => &["Sval"],
        EditKind::TruncateTable => &["RangeVar"],
        EditKind::CopyTo | EditKind::CopyFrom => &["CopyStmt", "RangeVar", "String"],
        EditKind::Refusal(_) => &["statement"],
    }
}

/// `stmt` with `FROM t`, `JOIN t`, `INTO t` and `UPDATE t` written
/// `... public.t` for the corpus view's tables, or `None` when it has none.
fn qualified_variant(stmt: &str, view: &VersionView) -> Option<String> {
    let lower = stmt.to_ascii_lowercase();
    let mut out = String::with_capacity(stmt.len() + 32);
    let mut last = 0;
    for kw in ["from ", "join ", "into ", "update "] {
        for (at, _) in lower.match_indices(kw) {
            let name_at = at + kw.len();
            let rest = &lower[name_at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let boundary = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
            if boundary && view.views.contains_key(&rest[..end]) && name_at >= last {
                out.push_str(&stmt[last..name_at]);
                out.push_str("public.");
                last = name_at;
            }
        }
    }
    (last > 0).then(|| {
        out.push_str(&stmt[last..]);
        out
    })
}

/// Every statement of Postgres's regression SQL that Postgres's parser
/// accepts, as written and with the corpus view's tables qualified with
/// the physical schema: none is refused but by a rule that names it,
/// edits lie on token boundaries, and the rewritten text parses to the
/// same tree but at the nodes the edits changed.
#[test]
fn the_corpus_is_refused_only_by_rule_and_changes_only_where_edited() {
    let view = corpus_view();
    let rewriter = Rewriter::new(view.clone());
    let options = Options::default();
    let (mut parsed, mut edited, mut refused) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut statements = corpus::statements();
    let variants: Vec<(String, String)> = statements
        .iter()
        .filter_map(|(f, s)| qualified_variant(s, &view).map(|v| (format!("{f} (qualified)"), v)))
        .collect();
    statements.extend(variants);
    for (file, stmt) in statements {
        let Ok(before) = pg_query::parse(&stmt, pg_query::ParserOptions::DEFAULT) else {
            continue;
        };
        parsed += 1;
        let edits = rewriter.edits(&stmt, options);
        if edits.is_empty() {
            continue;
        }
        edited += 1;
        let lower = stmt.to_lowercase();
        let mut fail = |why: String| failures.push(format!("{file}: {why}\n  {stmt}"));
        for e in &edits {
            if let EditKind::Refusal(rule) = e.kind {
                refused += 1;
                let named = match rule {
                    Rule::VersionSetting => lower.contains("pgshift"),
                    Rule::PgshiftObject => {
                        lower.contains("pgshift")
                            || lower.contains("public_0")
                            || lower.contains("schema")
                    }
                    Rule::MigratingTable | Rule::BindsToVersion => {
                        view.migrating.iter().any(|t| lower.contains(t.as_str()))
                            || lower.contains("schema")
                    }
                    Rule::TooComplex | Rule::SearchPath => false,
                };
                if !named {
                    fail(format!(
                        "refused by {} without naming what it refuses",
                        rule.name()
                    ));
                }
            }
        }
        let tokens = Tokens::scan(&stmt, true).expect("a parsed statement scans");
        let bounds: BTreeSet<usize> = tokens
            .all()
            .iter()
            .flat_map(|t| [t.start, t.end])
            .chain([0, stmt.len()])
            .collect();
        for e in edits
            .iter()
            .filter(|e| !matches!(e.kind, EditKind::Refusal(_)))
        {
            if !bounds.contains(&e.start) || !bounds.contains(&e.end) {
                fail(format!("edit {e:?} splits a token"));
            }
        }
        let out = apply(&stmt, &edits);
        let Ok(after) = pg_query::parse(&out, pg_query::ParserOptions::DEFAULT) else {
            fail(format!("the rewrite does not parse: {out}"));
            continue;
        };
        let (a, b) = (&before.protobuf.stmts, &after.protobuf.stmts);
        if a.len() != b.len() {
            fail(format!("{} statements became {}", a.len(), b.len()));
            continue;
        }
        let allowed: BTreeSet<&str> = edits
            .iter()
            .flat_map(|e| changes(e.kind).iter().copied())
            .collect();
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (
                Lite::of(x.stmt.as_deref().unwrap()),
                Lite::of(y.stmt.as_deref().unwrap()),
            );
            let mut diff = Vec::new();
            if x.kind() != y.kind() {
                diff.push("statement");
            } else {
                stacker::grow(PARSE_STACK, || differences(&x, &y, "statement", &mut diff));
            }
            if let Some(kind) = diff.iter().find(|k| !allowed.contains(*k)) {
                fail(format!("the tree changed at a {kind} node: {out}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        parsed > 20_000,
        "only {parsed} statements parsed: is the corpus complete?"
    );
    assert!(
        edited > 1_000 && refused > 100,
        "{edited} edited, {refused} refused"
    );
    eprintln!("corpus: {parsed} statements parsed, {edited} edited, {refused} refused by rule");
}
