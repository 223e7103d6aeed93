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

/// The temporary name of an index or constraint rebuilt over a duplicated
/// column until complete gives it back its own name `name`.
pub fn carried(name: &str) -> String {
    fit(&format!("{TEMP_PREFIX}dup_{name}"))
}

/// The NOT VALID check constraint that stands for NOT NULL during a migration.
pub fn not_null_check(column: &str) -> String {
    fit(&format!("{TEMP_PREFIX}not_null_{column}"))
}

/// The name Postgres gives an object it names itself, as its
/// `makeObjectName` does (src/backend/commands/indexcmds.c):
/// `<name1>_<name2>_<label>`, the longer of the two names shortened a byte
/// at a time (then cut back to a character boundary) until the whole fits
/// in 63 bytes. `<table>_pkey`, `<table>_<column>_key`,
/// `<table>_<column>_seq` are its names for primary keys, unique
/// constraints and serial sequences, which pgroll's tables keep.
pub fn postgres_object_name(name1: &str, name2: Option<&str>, label: &str) -> String {
    let overhead = name2.map_or(0, |_| 1) + label.len() + 1;
    let avail = MAX_IDENT.saturating_sub(overhead);
    let (mut n1, mut n2) = (name1.len(), name2.map_or(0, str::len));
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 -= 1;
        }
    }
    let clip = |s: &str, mut n: usize| {
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s[..n].to_string()
    };
    let mut out = clip(name1, n1);
    if let Some(name2) = name2 {
        out.push('_');
        out.push_str(&clip(name2, n2));
    }
    out.push('_');
    out.push_str(label);
    out
}

#[cfg(test)]
mod tests;
