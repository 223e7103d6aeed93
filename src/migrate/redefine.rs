//! Definitions of indexes and constraints, as Postgres prints them
//! (`pg_get_indexdef`, `pg_get_constraintdef`, `pg_constraint`), rewritten
//! to cover other columns under another name: how a duplicated column gets
//! every index and constraint of its original (pgroll's `duplicate`).
//!
//! Column references are found in Postgres's own parse tree (libpg_query)
//! and replaced at the token boundaries Postgres's own scanner finds
//! ([`super::expr`]'s splice), so an expression, an operator class, a
//! collation or a predicate stays exactly as printed and only the columns'
//! names change.

use pg_query::NodeEnum;
use pg_query::protobuf::Token;

use super::expr::{Edit, column_edits, splice};
use crate::catalog::References;
use crate::quote::{ident, qualified};
use crate::rewrite::{Lite, Tokens};

/// Maps a column name to its replacement, or `None` to keep it.
pub type Rename<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS <name> ON ...`: the
/// index that `def` (a `pg_get_indexdef` text) defines, named `name` and
/// over the columns `rename` gives: key columns, expressions, INCLUDE
/// columns and the predicate.
///
/// Also returns the replaced plain key and INCLUDE columns, by their new
/// names: the index's own columns are named after them (`pg_attribute`
/// of the index, which `\d` shows), and keep those names when the table's
/// columns are renamed.
///
/// Errors when `def` is not one CREATE INDEX statement, which
/// `pg_get_indexdef` never prints.
pub fn index(def: &str, name: &str, rename: Rename) -> Result<(String, Vec<String>), String> {
    let parsed = pg_query::parse(def, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| format!("cannot parse the index definition {def:?}: {e}"))?;
    let Some(NodeEnum::IndexStmt(stmt)) = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|s| s.node.as_ref())
    else {
        return Err(format!("{def:?} is not a CREATE INDEX statement"));
    };
    let tokens = Tokens::scan(def, true).ok_or_else(|| format!("cannot scan {def:?}"))?;
    let toks = tokens.all();
    let mut edits = column_edits(&Lite::of(stmt.as_ref()), &tokens, rename);
    // The name follows INDEX (pg_get_indexdef always prints one).
    let index_kw = toks
        .iter()
        .position(|t| t.token == Token::Index)
        .ok_or_else(|| format!("no INDEX in {def:?}"))?;
    let name_tok = tokens
        .significant(index_kw + 1)
        .ok_or_else(|| format!("no index name in {def:?}"))?;
    edits.push((
        toks[name_tok].start,
        toks[name_tok].end,
        format!("CONCURRENTLY IF NOT EXISTS {}", ident(name)),
    ));
    // Plain key columns (IndexElem.name) carry no location: each is the
    // first token of its element in the first parenthesised list.
    let open = toks
        .iter()
        .position(|t| t.token == Token::Ascii40)
        .ok_or_else(|| format!("no column list in {def:?}"))?;
    let names = |params: &[pg_query::protobuf::Node]| -> Vec<String> {
        params
            .iter()
            .map(|p| match p.node.as_ref() {
                Some(NodeEnum::IndexElem(e)) => e.name.clone(),
                _ => String::new(),
            })
            .collect()
    };
    let mut plain = Vec::new();
    let close = elements(
        &tokens,
        open,
        &names(&stmt.index_params),
        rename,
        &mut edits,
        &mut plain,
    )?;
    if !stmt.index_including_params.is_empty() {
        let include = toks[close..]
            .iter()
            .position(|t| t.token == Token::Include)
            .map(|i| i + close)
            .ok_or_else(|| format!("no INCLUDE list in {def:?}"))?;
        let open = tokens
            .significant(include + 1)
            .filter(|&i| toks[i].token == Token::Ascii40)
            .ok_or_else(|| format!("no INCLUDE list in {def:?}"))?;
        elements(
            &tokens,
            open,
            &names(&stmt.index_including_params),
            rename,
            &mut edits,
            &mut plain,
        )?;
    }
    Ok((splice(def, edits), plain))
}

/// A check constraint's definition (`CHECK (...)` as
/// `pg_get_constraintdef` prints it, `NO INHERIT` included) over the
/// columns `rename` gives.
///
/// Errors when `def` does not parse as a table constraint.
pub fn check(def: &str, rename: Rename) -> Result<String, String> {
    let prefix = "ALTER TABLE t ADD ";
    let text = format!("{prefix}{def}");
    let parsed = pg_query::parse(&text, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| format!("cannot parse the check {def:?}: {e}"))?;
    let stmt = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .ok_or_else(|| format!("{def:?} is not a constraint"))?;
    let tokens = Tokens::scan(&text, true).ok_or_else(|| format!("cannot scan {def:?}"))?;
    let edits = column_edits(&Lite::of(stmt.as_ref()), &tokens, rename);
    Ok(splice(&text, edits)[prefix.len()..].to_string())
}

/// `FOREIGN KEY (columns) REFERENCES schema.table (referenced) [MATCH
/// FULL] ON UPDATE ... ON DELETE ... [DEFERRABLE [INITIALLY DEFERRED]]`:
/// a foreign key's definition from its parts (`pg_constraint`'s codes).
pub fn foreign_key(
    columns: &[String],
    references: &References,
    referenced: &[String],
    deferrable: bool,
    deferred: bool,
) -> String {
    let list = |cols: &[String]| cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let action = |code: char| match code {
        'r' => "RESTRICT",
        'c' => "CASCADE",
        'n' => "SET NULL",
        'd' => "SET DEFAULT",
        _ => "NO ACTION",
    };
    let mut sql = format!(
        "FOREIGN KEY ({}) REFERENCES {} ({})",
        list(columns),
        qualified(&references.schema, &references.table),
        list(referenced)
    );
    if references.match_type == 'f' {
        sql.push_str(" MATCH FULL");
    }
    sql.push_str(&format!(
        " ON UPDATE {} ON DELETE {}",
        action(references.on_update),
        action(references.on_delete)
    ));
    sql.push_str(&deferral(deferrable, deferred));
    sql
}

/// ` DEFERRABLE [INITIALLY DEFERRED]`, or nothing.
pub fn deferral(deferrable: bool, deferred: bool) -> String {
    match (deferrable, deferred) {
        (false, _) => String::new(),
        (true, false) => " DEFERRABLE".to_string(),
        (true, true) => " DEFERRABLE INITIALLY DEFERRED".to_string(),
    }
}

/// Edits for the elements of the list that opens at token `open` whose
/// plain column name (`names[i]`, empty for an expression) `rename` maps,
/// adding each new name to `renamed` once; returns the index of the
/// closing parenthesis.
fn elements(
    tokens: &Tokens,
    open: usize,
    names: &[String],
    rename: Rename,
    edits: &mut Vec<Edit>,
    renamed: &mut Vec<String>,
) -> Result<usize, String> {
    let toks = tokens.all();
    let close = tokens
        .closing_paren(open)
        .ok_or("an unclosed column list")?;
    let mut starts = vec![open + 1];
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().take(close).skip(open + 1) {
        match t.token {
            Token::Ascii40 | Token::Ascii91 => depth += 1,
            Token::Ascii41 | Token::Ascii93 => depth = depth.saturating_sub(1),
            Token::Ascii44 if depth == 0 => starts.push(i + 1),
            _ => {}
        }
    }
    if starts.len() != names.len() {
        return Err(format!(
            "{} elements in the column list, {} in the parse tree",
            starts.len(),
            names.len()
        ));
    }
    for (start, name) in starts.into_iter().zip(names) {
        if name.is_empty() {
            continue;
        }
        let Some(new) = rename(name) else { continue };
        let at = tokens
            .significant(start)
            .filter(|&i| toks[i].is_name())
            .ok_or_else(|| format!("column {name:?} is not where the list has it"))?;
        edits.push((toks[at].start, toks[at].end, ident(&new)));
        if !renamed.contains(&new) {
            renamed.push(new);
        }
    }
    Ok(close)
}

#[cfg(test)]
mod tests;
