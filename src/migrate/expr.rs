//! Rewriting the column names in SQL that a migration file or the catalog
//! holds (a check constraint written against a column's final name, an
//! index or check definition that Postgres printed) to the columns that
//! stand for them. Parsed with Postgres's own grammar; only bare column
//! references change, each a splice at its token, so every other byte
//! stays as written.

use std::collections::BTreeMap;

use crate::quote::ident;
use crate::rewrite::{Lite, Tokens};

/// One replacement of the bytes `start..end` of a text.
pub(crate) type Edit = (usize, usize, String);

/// Returns `expr` with every bare column reference named in `columns`
/// (final name → physical name) replaced by the quoted physical name.
/// Unquoted names match case-insensitively, as Postgres folds them.
///
/// Errors: the text is not one expression (the message says why).
pub fn rename_columns(expr: &str, columns: &BTreeMap<String, String>) -> Result<String, String> {
    const PREFIX: &str = "SELECT ";
    let sql = format!("{PREFIX}{expr}");
    let not_one = |why: String| format!("cannot parse the expression {expr:?}: {why}");
    let parsed = pg_query::parse(&sql, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| not_one(e.to_string()))?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return Err(not_one("it holds more than one statement".into()));
    };
    let stmt = Lite::of(raw.stmt.as_deref().ok_or_else(|| not_one("empty".into()))?);
    if stmt.kind() != Some("SelectStmt") || stmt.list("target_list").len() != 1 {
        return Err(not_one("it is not one expression".into()));
    }
    let tokens = Tokens::scan(&sql, true).ok_or_else(|| not_one("it does not scan".into()))?;
    let edits = column_edits(&stmt, &tokens, &|name| columns.get(name).cloned());
    Ok(splice(&sql, edits)[PREFIX.len()..].to_string())
}

/// Edits that replace every bare column reference (`ColumnRef` of one
/// name) of `tree` that `rename` maps with the quoted new name; `tokens`
/// are those of the text `tree` was parsed from.
pub(crate) fn column_edits(
    tree: &Lite,
    tokens: &Tokens,
    rename: &dyn Fn(&str) -> Option<String>,
) -> Vec<Edit> {
    let mut edits = Vec::new();
    tree.walk(|node, _| {
        if node.kind() != Some("ColumnRef") {
            return;
        }
        if let (Some([name]), Some(at)) =
            (Lite::names(node.list("fields")).as_deref(), node.location())
            && let Some(new) = rename(name)
            && let Some(i) = tokens.at(at)
        {
            let t = tokens.all()[i];
            edits.push((t.start, t.end, ident(&new)));
        }
    });
    edits
}

/// `text` with `edits` applied (they do not overlap).
pub(crate) fn splice(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort();
    let mut out = String::with_capacity(text.len() + 32);
    let mut last = 0;
    for (start, end, new) in edits {
        out.push_str(&text[last..start]);
        out.push_str(&new);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests;
