//! Names pgshift derives: version schemas (`public_<version>`) and the
//! temporary names of duplicated columns, created tables, triggers and
//! functions. Any name longer than Postgres's 63-byte limit is shortened with
//! a stable hash, so the same input always gives the same name.

/// Postgres's longest identifier, in bytes (NAMEDATALEN - 1).
pub const MAX_IDENT: usize = 63;

/// The prefix of every temporary name pgshift creates in a user schema.
pub const TEMP_PREFIX: &str = "_pgshift_";

/// `name` if it fits in 63 bytes; otherwise its longest prefix that leaves
/// room (cut at a character boundary) plus `_` and 8 hex digits of SHA-256.
pub fn fit(name: &str) -> String {
    if name.len() <= MAX_IDENT {
        return name.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hash: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut cut = MAX_IDENT - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

/// The version schema of `version` in `schema`: `<schema>_<version>`, fitted.
pub fn version_schema(schema: &str, version: &str) -> String {
    fit(&format!("{schema}_{version}"))
}

/// The physical name of a column that a migration adds or duplicates.
pub fn new_column(column: &str) -> String {
    fit(&format!("{TEMP_PREFIX}new_{column}"))
}

/// The physical name of a table created by a migration until it completes.
pub fn new_table(table: &str) -> String {
    fit(&format!("{TEMP_PREFIX}new_{table}"))
}

/// The trigger (and its function) that keeps `table`'s two shapes in step.
pub fn trigger(table: &str, version: &str) -> String {
    fit(&format!("{TEMP_PREFIX}{version}_{table}"))
}

/// The NOT VALID check constraint that stands for NOT NULL during a migration.
pub fn not_null_check(column: &str) -> String {
    fit(&format!("{TEMP_PREFIX}not_null_{column}"))
}

#[cfg(test)]
mod tests;
