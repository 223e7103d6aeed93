//! Criterion micro-benchmark of the rewriter: the time to decide about, parse
//! and rewrite typical ORM statements for a session during a migration.
//! Run with `cargo bench --bench rewrite`; figures in bench/README.md.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pgshift::rewrite::{Options, Rewriter, VersionView};

fn view() -> VersionView {
    VersionView {
        schema: "public".into(),
        version: "04_split_name".into(),
        version_schema: "public_04_split_name".into(),
        views: BTreeMap::from([("users".to_string(), "users".to_string())]),
        columns: BTreeMap::new(),
        migrating: BTreeSet::from(["users".to_string()]),
        version_schemas: BTreeSet::from([
            "public_03_base".to_string(),
            "public_04_split_name".to_string(),
        ]),
    }
}

/// A Hibernate/ActiveRecord-style select with a schema-qualified table, joins,
/// parameters and ordering: parsed and rewritten to the version's view.
const ORM_QUALIFIED: &str = "SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"created_at\", \"orders\".\"total\" \
FROM \"public\".\"users\" INNER JOIN \"public\".\"orders\" ON \"orders\".\"user_id\" = \"users\".\"id\" \
WHERE \"users\".\"email\" = $1 AND \"orders\".\"status\" IN ($2, $3) ORDER BY \"orders\".\"created_at\" DESC LIMIT $4";

/// The same without the schema: the cheap scan clears it, nothing is parsed.
const ORM_UNQUALIFIED: &str = "SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"created_at\", \"orders\".\"total\" \
FROM \"users\" INNER JOIN \"orders\" ON \"orders\".\"user_id\" = \"users\".\"id\" \
WHERE \"users\".\"email\" = $1 AND \"orders\".\"status\" IN ($2, $3) ORDER BY \"orders\".\"created_at\" DESC LIMIT $4";

fn rewrite(c: &mut Criterion) {
    let rewriter = Rewriter::new(view());
    let options = Options::default();
    assert!(rewriter.may_need_rewrite(ORM_QUALIFIED));
    assert!(!rewriter.may_need_rewrite(ORM_UNQUALIFIED));
    c.bench_function("parse and rewrite a qualified ORM select", |b| {
        b.iter(|| rewriter.rewrite(black_box(ORM_QUALIFIED), options))
    });
    c.bench_function("scan and pass an unqualified ORM select", |b| {
        b.iter(|| rewriter.rewrite(black_box(ORM_UNQUALIFIED), options))
    });
    c.bench_function("rewrite SET search_path", |b| {
        b.iter(|| rewriter.rewrite(black_box("SET search_path TO app, public"), options))
    });
    let in_list = format!(
        "SELECT count(*) FROM public.users WHERE id IN ({})",
        vec!["1"; 50_000].join(",")
    );
    c.bench_function("rewrite a 200 KB IN list", |b| {
        b.iter(|| rewriter.rewrite(black_box(&in_list), options))
    });
}

criterion_group!(benches, rewrite);
criterion_main!(benches);
