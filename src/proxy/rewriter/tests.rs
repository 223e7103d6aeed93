use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn view() -> VersionView {
    VersionView {
        schema: "public".into(),
        version: "02".into(),
        version_schema: "public_02".into(),
        views: BTreeMap::from([("users".into(), "users".into())]),
        columns: BTreeMap::new(),
        migrating: BTreeSet::from(["users".into()]),
        version_schemas: BTreeSet::from(["public_01".into(), "public_02".into()]),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_cache_stays_within_its_bytes_and_serves_hits() {
    let rt = runtime();
    let mut r = SessionRewriter::new(view());
    let options = Options::default();
    for i in 0..2000 {
        let sql = format!("SELECT {i}, repeat('x', 1000) FROM public.users");
        let out = rt.block_on(r.rewrite(sql.as_bytes(), options)).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\"public_02\".users")
        );
        assert!(r.cache.bytes() <= CACHE_BYTES, "{} bytes", r.cache.bytes());
    }
    let again = "SELECT 1999, repeat('x', 1000) FROM public.users";
    let misses = r.misses;
    rt.block_on(r.rewrite(again.as_bytes(), options)).unwrap();
    assert_eq!(r.misses, misses, "the newest entry is still cached");
    assert!(r.hits >= 1);
}

#[test]
fn a_long_text_is_rewritten_on_a_blocking_thread_and_not_cached() {
    let rt = runtime();
    let mut r = SessionRewriter::new(view());
    let long = format!(
        "SELECT * FROM public.users WHERE id IN ({})",
        vec!["1"; CACHE_TEXT_MAX / 2].join(",")
    );
    assert!(long.len() > CACHE_TEXT_MAX);
    let out = rt
        .block_on(r.rewrite(long.as_bytes(), Options::default()))
        .unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("SELECT * FROM \"public_02\".users WHERE")
    );
    assert_eq!(r.cache.bytes(), 0);
}
