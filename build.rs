//! Builds `src/rewrite/scs.c`, the setter of libpg_query's thread-local
//! `standard_conforming_strings` that the rewriter's token scan needs.

fn main() {
    println!("cargo:rerun-if-changed=src/rewrite/scs.c");
    cc::Build::new()
        .file("src/rewrite/scs.c")
        .compile("pgshift_scs");
}
