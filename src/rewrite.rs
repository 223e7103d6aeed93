//! Rewriting the few statements that views cannot serve (README.md,
//! "Versions through the proxy"), for a session pinned to a version during
//! a migration. Pure: SQL text and the version's view map in, SQL text out.
//!
//! A cheap case-insensitive scan decides whether a statement can need a
//! rewrite; only those are parsed (sqlparser, Postgres dialect). The text is
//! split into statements by sqlparser's tokenizer, and only a statement that
//! changes is regenerated: every other byte, comments and literals included,
//! stays as the client sent it. A statement pgshift refuses is replaced by a
//! `DO` block that raises the error, so Postgres reports it with its own
//! protocol flow, in simple and extended queries alike.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use aho_corasick::AhoCorasick;
use sqlparser::ast::{
    CopySource, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Set, Statement, Value, visit_expressions, visit_expressions_mut,
    visit_relations_mut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use thiserror::Error;

use crate::quote;

/// What a session's version looks like to the rewriter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionView {
    /// The physical schema (`public`).
    pub schema: String,
    /// The session's version and its version schema.
    pub version: String,
    pub version_schema: String,
    /// The version's views: view name → the physical table behind it.
    pub views: BTreeMap<String, String>,
    /// Each view's columns in order: (view column, table column).
    pub columns: BTreeMap<String, Vec<(String, String)>>,
    /// Physical tables the running migration touches (their DDL is refused).
    pub migrating: BTreeSet<String>,
}

/// The outcome for one Query or Parse text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// Send the text as it is.
    Unchanged,
    /// Send this text instead.
    Text(String),
}

/// A statement that may need a rewrite but cannot be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "pgshift cannot parse {construct:?}, which it may have to rewrite for version {version}: {message}"
)]
pub struct RewriteError {
    pub construct: String,
    pub version: String,
    pub message: String,
}

fn scanner(schema: &str) -> AhoCorasick {
    let qualified = format!("{}.", schema.to_lowercase());
    let quoted = format!("{}.", quote::ident(schema));
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build([
            "search_path",
            "pgshift",
            "set_config",
            "alter",
            "drop",
            "truncate",
            "index",
            "copy",
            "pg_get_serial_sequence",
            qualified.as_str(),
            quoted.as_str(),
        ])
        .expect("valid patterns")
}

/// Rewrites `sql` (one Query or Parse text, possibly several statements)
/// for a session of `view`'s version. Builds the scan each time; a session
/// keeps a [`Rewriter`] instead.
pub fn rewrite(sql: &str, view: &VersionView) -> Result<Rewritten, RewriteError> {
    Rewriter::new(view.clone()).rewrite(sql)
}

/// The rewriter of one session: its version and the cheap scan, built once.
pub struct Rewriter {
    view: VersionView,
    scan: AhoCorasick,
}

impl Rewriter {
    /// Builds the scan for `view`'s physical schema.
    pub fn new(view: VersionView) -> Self {
        let scan = scanner(&view.schema);
        Rewriter { view, scan }
    }

    /// The version view this rewriter serves.
    pub fn view(&self) -> &VersionView {
        &self.view
    }

    /// True when `sql` may need a rewrite, by the cheap scan alone: only
    /// such texts are parsed (or worth caching).
    pub fn may_need_rewrite(&self, sql: &str) -> bool {
        self.scan.is_match(sql)
    }

    /// Rewrites `sql` for this session's version; see [`rewrite`].
    pub fn rewrite(&self, sql: &str) -> Result<Rewritten, RewriteError> {
        if !self.scan.is_match(sql) {
            return Ok(Rewritten::Unchanged);
        }
        rewrite_scanned(sql, &self.view, &self.scan)
    }
}

fn rewrite_scanned(
    sql: &str,
    view: &VersionView,
    scan: &AhoCorasick,
) -> Result<Rewritten, RewriteError> {
    let ranges = statement_ranges(sql).map_err(|message| RewriteError {
        construct: clip(sql),
        version: view.version.clone(),
        message,
    })?;
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    let mut changed = false;
    for (start, end) in ranges {
        let text = &sql[start..end];
        if !scan.is_match(text) {
            continue;
        }
        if let Some(replacement) = rewrite_statement(text, view)? {
            out.push_str(&sql[last..start]);
            out.push_str(&replacement);
            last = end;
            changed = true;
        }
    }
    if !changed {
        return Ok(Rewritten::Unchanged);
    }
    out.push_str(&sql[last..]);
    Ok(Rewritten::Text(out))
}

fn clip(sql: &str) -> String {
    let trimmed = sql.trim();
    match trimmed.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

/// Byte ranges of the statements in `sql`, split at top-level semicolons:
/// each from its first to its last significant token.
fn statement_ranges(sql: &str) -> Result<Vec<(usize, usize)>, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| e.to_string())?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> usize {
        let start = line_starts
            .get(line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or(sql.len());
        sql[start..]
            .char_indices()
            .nth(column.saturating_sub(1) as usize)
            .map(|(i, _)| start + i)
            .unwrap_or(sql.len())
    };
    // Each range runs from the statement's first significant token to the end
    // of its last, so whitespace and comments around it are never rewritten.
    let mut ranges = Vec::new();
    let mut first: Option<usize> = None;
    let mut last_end = 0;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                if let Some(start) = first.take() {
                    ranges.push((start, last_end));
                }
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => {
                if first.is_none() {
                    first = Some(offset(t.span.start.line, t.span.start.column));
                }
                last_end = offset(t.span.end.line, t.span.end.column);
            }
        }
    }
    if let Some(start) = first {
        ranges.push((start, last_end));
    }
    Ok(ranges)
}

/// The replacement text of one statement, or `None` to keep it.
fn rewrite_statement(text: &str, view: &VersionView) -> Result<Option<String>, RewriteError> {
    let dialect = PostgreSqlDialect {};
    let mut statements = match Parser::parse_sql(&dialect, text) {
        Ok(s) => s,
        Err(e) => {
            return Err(RewriteError {
                construct: clip(text),
                version: view.version.clone(),
                message: e.to_string(),
            });
        }
    };
    let Some(mut statement) = statements.pop() else {
        return Ok(None);
    };
    if let Some(reason) = refusal(&statement, view) {
        return Ok(Some(raise(&reason)));
    }
    let mut changed = false;
    if let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = &mut statement
        && is_setting(variable, "search_path")
    {
        let mapped = map_search_path(values, view);
        if mapped != *values {
            *values = mapped;
            changed = true;
        }
    }
    if let Some(copy) = rewrite_copy(&mut statement, view) {
        return Ok(Some(copy));
    }
    if let Statement::Truncate(truncate) = &mut statement {
        // TRUNCATE cannot run on a view; it names the physical tables, which
        // the relation mapping below must then leave alone.
        for target in &mut truncate.table_names {
            if let Some(physical) = view_behind(&target.name, view) {
                target.name = qualified_name(&view.schema, &physical);
                changed = true;
            }
        }
        return Ok(changed.then(|| statement.to_string()));
    }
    let _ = visit_expressions_mut(&mut statement, |e| {
        if let Expr::Function(f) = e
            && let Some(new) = map_set_config(f, view).or_else(|| map_serial_sequence(f, view))
        {
            *e = new;
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_relations_mut(&mut statement, |name| {
        if let Some(target) = qualified_view(name, view) {
            *name = target;
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(changed.then(|| statement.to_string()))
}

/// COPY of a view, which Postgres refuses: `COPY view TO` becomes `COPY
/// (SELECT ...) TO`, and `COPY view FROM` writes the table through the
/// view's column map. `None` for any other statement.
fn rewrite_copy(statement: &mut Statement, view: &VersionView) -> Option<String> {
    // COPY ... TO cannot read a view; COPY (SELECT ...) TO can.
    if let Statement::Copy {
        source: source @ CopySource::Table { .. },
        to: true,
        ..
    } = statement
        && let CopySource::Table {
            table_name,
            columns,
        } = &*source
        && let Some(table) = view_named(table_name, view)
    {
        let list = if columns.is_empty() {
            "*".to_string()
        } else {
            columns
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let select = format!(
            "SELECT {list} FROM {}",
            quote::qualified(&view.version_schema, &table)
        );
        let dialect = PostgreSqlDialect {};
        if let Ok(mut parsed) = Parser::parse_sql(&dialect, &select)
            && let Some(Statement::Query(query)) = parsed.pop()
        {
            *source = CopySource::Query(query);
            return Some(statement.to_string());
        }
    }
    // COPY ... FROM cannot write a view: it writes the table, with the view's
    // columns mapped to the table's; the session's pgshift.version makes the
    // dual-write trigger convert each row as the version wrote it.
    if let Statement::Copy {
        source: CopySource::Table {
            table_name,
            columns,
        },
        to: false,
        ..
    } = statement
        && let Some(name) = view_named(table_name, view)
        && let (Some(table), Some(mapping)) = (view.views.get(&name), view.columns.get(&name))
    {
        let physical = |c: &str| mapping.iter().find(|(v, _)| v == c).map(|(_, p)| p.clone());
        let wanted: Vec<String> = if columns.is_empty() {
            mapping.iter().map(|(v, _)| v.clone()).collect()
        } else {
            columns.iter().map(ident_value).collect()
        };
        let mapped: Option<Vec<String>> = wanted.iter().map(|c| physical(c)).collect();
        if let Some(mapped) = mapped {
            *table_name = qualified_name(&view.schema, table);
            *columns = mapped
                .into_iter()
                .map(|c| Ident::with_quote('"', c))
                .collect();
            return Some(statement.to_string());
        }
    }
    None
}

/// Why a statement is refused, if it is.
fn refusal(statement: &Statement, view: &VersionView) -> Option<String> {
    match statement {
        Statement::Set(Set::SingleAssignment { variable, .. })
            if is_setting(variable, crate::state::VERSION_SETTING) =>
        {
            Some(format!(
                "pgshift.version is set by pgshift (this session is pinned to version {}); connect with options=-c pgshift.version=<name> to choose another",
                view.version
            ))
        }
        Statement::AlterTable(alter) => migrating(&alter.name, view),
        Statement::Drop { names, .. } => names.iter().find_map(|n| migrating(n, view)),
        Statement::CreateIndex(index) => migrating(&index.table_name, view),
        _ => {
            let mut reason = None;
            let _ = visit_expressions(statement, |e| {
                if let Expr::Function(f) = e
                    && set_config_target(f).as_deref() == Some(crate::state::VERSION_SETTING)
                {
                    reason = Some(format!(
                        "pgshift.version is set by pgshift (this session is pinned to version {})",
                        view.version
                    ));
                }
                ControlFlow::<()>::Continue(())
            });
            reason
        }
    }
}

fn migrating(name: &ObjectName, view: &VersionView) -> Option<String> {
    let parts = name_parts(name);
    let (schema, table) = match parts.as_slice() {
        [table] => (None, table.clone()),
        [schema, table] => (Some(schema.clone()), table.clone()),
        _ => return None,
    };
    let physical = match schema {
        Some(s) if s == view.schema => table,
        Some(_) => return None,
        None => view.views.get(&table).cloned().unwrap_or(table),
    };
    view.migrating.contains(&physical).then(|| {
        format!(
            "table {physical:?} is being migrated (version {} is live); change its schema with a pgshift migration, not with DDL",
            view.version
        )
    })
}

/// A statement that makes Postgres raise `message` (SQLSTATE 42501), for a
/// text the proxy cannot serve at all.
pub fn error_statement(message: &str) -> String {
    raise(message)
}

/// The `DO` block that makes Postgres raise `message` (SQLSTATE 42501,
/// insufficient_privilege) where the refused statement stood.
fn raise(message: &str) -> String {
    let body = format!(
        "BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = {}; END",
        quote::literal(&format!("pgshift: {message}"))
    );
    let tag = (0..)
        .map(|n| format!("$pgshift{n}$"))
        .find(|t| !body.contains(t.as_str()))
        .expect("a free tag");
    format!("DO {tag}{body}{tag}")
}

/// Unquoted identifiers folded to lower case, as Postgres does.
fn ident_value(i: &Ident) -> String {
    match i.quote_style {
        None => i.value.to_lowercase(),
        Some(_) => i.value.clone(),
    }
}

fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(ident_value(i)),
            _ => None,
        })
        .collect()
}

fn is_setting(name: &ObjectName, setting: &str) -> bool {
    name_parts(name).join(".") == setting
}

fn qualified_name(schema: &str, table: &str) -> ObjectName {
    ObjectName(vec![
        ObjectNamePart::Identifier(Ident::with_quote('"', schema)),
        ObjectNamePart::Identifier(Ident::with_quote('"', table)),
    ])
}

/// `public.t` where `t` has a view in this version → `"public_v"."t"`.
fn qualified_view(name: &ObjectName, view: &VersionView) -> Option<ObjectName> {
    match name_parts(name).as_slice() {
        [schema, table] if *schema == view.schema && view.views.contains_key(table) => {
            Some(qualified_name(&view.version_schema, table))
        }
        _ => None,
    }
}

/// The view that `name` (bare, physical- or version-qualified) names, if any.
fn view_named(name: &ObjectName, view: &VersionView) -> Option<String> {
    match name_parts(name).as_slice() {
        [table] if view.views.contains_key(table) => Some(table.clone()),
        [schema, table]
            if (*schema == view.schema || *schema == view.version_schema)
                && view.views.contains_key(table) =>
        {
            Some(table.clone())
        }
        _ => None,
    }
}

/// The physical table behind a view named (bare or physical-qualified) by `name`.
fn view_behind(name: &ObjectName, view: &VersionView) -> Option<String> {
    match name_parts(name).as_slice() {
        [table] => view.views.get(table).cloned(),
        [schema, table] if *schema == view.schema || *schema == view.version_schema => {
            view.views.get(table).cloned()
        }
        _ => None,
    }
}

/// A search_path list with the physical schema replaced by the version
/// schema followed by the physical schema.
fn map_search_path(values: &[Expr], view: &VersionView) -> Vec<Expr> {
    let mut out = Vec::new();
    for v in values {
        let named = match v {
            Expr::Identifier(i) => Some(ident_value(i)),
            Expr::Value(value) => match &value.value {
                Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        if named.as_deref() == Some(view.schema.as_str()) {
            out.push(Expr::Identifier(Ident::with_quote(
                '"',
                view.version_schema.clone(),
            )));
        }
        out.push(v.clone());
    }
    out
}

/// `pg_get_serial_sequence('<view>', '<column>')` with literal arguments,
/// which finds nothing on a view: it asks the table and its column instead.
fn map_serial_sequence(f: &Function, view: &VersionView) -> Option<Expr> {
    if name_parts(&f.name).last().map(String::as_str) != Some("pg_get_serial_sequence") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let literal_at = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    let (relation, column) = (literal_at(0)?, literal_at(1)?);
    // The relation argument is itself SQL text: parse it as a name.
    let dialect = PostgreSqlDialect {};
    let name = Parser::new(&dialect)
        .try_with_sql(&relation)
        .ok()?
        .parse_object_name(false)
        .ok()?;
    let view_name = view_named(&name, view)?;
    let table = view.views.get(&view_name)?;
    let physical = view
        .columns
        .get(&view_name)
        .and_then(|m| m.iter().find(|(v, _)| *v == column).map(|(_, p)| p.clone()))
        .unwrap_or(column);
    let mut new = f.clone();
    if let FunctionArguments::List(list) = &mut new.args {
        list.args[0] = FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
            Value::SingleQuotedString(quote::qualified(&view.schema, table)),
        )));
        list.args[1] = FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
            Value::SingleQuotedString(physical),
        )));
    }
    Some(Expr::Function(new))
}

/// The setting a `set_config(name, ...)` call targets, when it is a literal.
fn set_config_target(f: &Function) -> Option<String> {
    if name_parts(&f.name).last().map(String::as_str) != Some("set_config") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.first() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.to_lowercase()),
            _ => None,
        },
        _ => None,
    }
}

/// `set_config('search_path', '<list>', local)` with a literal list, mapped
/// as [`map_search_path`] maps `SET search_path`.
fn map_set_config(f: &Function, view: &VersionView) -> Option<Expr> {
    if set_config_target(f).as_deref() != Some("search_path") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) = list.args.get(1) else {
        return None;
    };
    let Value::SingleQuotedString(path) = &v.value else {
        return None;
    };
    let mut parts = Vec::new();
    let mut changed = false;
    for part in path.split(',') {
        let trimmed = part.trim();
        let bare = trimmed.trim_matches('"');
        if bare == view.schema {
            parts.push(quote::ident(&view.version_schema));
            changed = true;
        }
        parts.push(trimmed.to_string());
    }
    if !changed {
        return None;
    }
    let mut new = f.clone();
    if let FunctionArguments::List(list) = &mut new.args {
        list.args[1] = FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
            Value::SingleQuotedString(parts.join(", ")),
        )));
    }
    Some(Expr::Function(new))
}

#[cfg(test)]
mod tests;
