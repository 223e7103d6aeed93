//! Postgres's own regression SQL (`../shared/corpus/postgres-regress/`,
//! beside the repository), split into statements, for the rewriter's
//! corpus test and as fuzz seeds: every corner of the grammar.

use std::path::PathBuf;

/// The corpus directory; its absence fails the tests that need it, with
/// this path in the message.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/postgres-regress")
}

/// Every statement of every corpus file, as (file, statement): psql
/// meta-command lines (starting with a backslash) removed, split with
/// Postgres's own scanner.
pub fn statements() -> Vec<(String, String)> {
    let dir = dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the SQL corpus belongs at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let sql: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('\\'))
            .map(|l| format!("{l}\n"))
            .collect();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for statement in pg_query::split_with_scanner(&sql).unwrap_or_default() {
            let statement = statement.trim();
            if !statement.is_empty() {
                out.push((name.clone(), statement.to_string()));
            }
        }
    }
    out
}
