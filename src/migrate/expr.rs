//! Rewriting the column names in a SQL expression from a migration file
//! (a check constraint written against a column's final name) to the
//! physical columns that stand for them during the migration. Parsed with
//! Postgres's own grammar; only bare column references change, each a
//! splice at its token, so every other byte stays as the file wrote it.

use std::collections::BTreeMap;

use crate::quote::ident;
use crate::rewrite::{Lite, Tokens};

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
    let mut edits = Vec::new();
    stmt.walk(|node, _| {
        if node.kind() != Some("ColumnRef") {
            return;
        }
        if let (Some([name]), Some(at)) =
            (Lite::names(node.list("fields")).as_deref(), node.location())
            && let Some(physical) = columns.get(*name)
            && let Some(i) = tokens.at(at)
        {
            let t = tokens.all()[i];
            edits.push((t.start, t.end, ident(physical)));
        }
    });
    edits.sort();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut last = PREFIX.len();
    for (start, end, text) in edits {
        out.push_str(&sql[last..start]);
        out.push_str(&text);
        last = end;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests;
