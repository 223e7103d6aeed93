//! The edits that keep a statement inside its session's version, each a
//! splice into the client's own text at token boundaries: a schema name
//! replaced, a version schema put first on a search_path, `COPY view TO`
//! wrapped as `COPY (SELECT ...) TO`, and so on. Nothing else of the text
//! changes, so its meaning cannot change elsewhere.

use super::rules::{Refusal, Rule, is_builtin, is_persisted_definition, range_var_parts};
use super::tokens::Tokens;
use super::tree::Lite;
use super::{Edit, EditKind, VersionView};
use crate::quote::{ident, literal, qualified};
use pg_query::protobuf::{Token, VariableSetKind};

/// The edits `stmt` needs for a session of `view`. Errors: an edit that
/// must be made but cannot be placed (the text and its tree disagree),
/// which refuses the statement rather than let it escape its version.
pub fn of(stmt: &Lite, view: &VersionView, tokens: &Tokens) -> Result<Vec<Edit>, Refusal> {
    let mut e = Edits {
        view,
        tokens,
        out: Vec::new(),
    };
    match stmt.kind().unwrap_or_default() {
        "VariableSetStmt" => e.search_path(stmt)?,
        "TruncateStmt" => e.truncate(stmt)?,
        "CopyStmt" if stmt.get("relation").is_some() => e.copy(stmt)?,
        _ if is_persisted_definition(stmt) => e.qualify(stmt)?,
        kind if is_dml(kind) => e.dml(stmt)?,
        _ => {}
    }
    Ok(e.out)
}

/// Statements that read or write rows, whose references to the physical
/// schema name the version's views instead.
fn is_dml(kind: &str) -> bool {
    matches!(
        kind,
        "SelectStmt"
            | "InsertStmt"
            | "UpdateStmt"
            | "DeleteStmt"
            | "MergeStmt"
            | "ExplainStmt"
            | "PrepareStmt"
            | "DeclareCursorStmt"
            | "CreateTableAsStmt"
            | "LockStmt"
            | "CallStmt"
            | "CopyStmt"
            | "ReturnStmt"
    )
}

struct Edits<'a> {
    view: &'a VersionView,
    tokens: &'a Tokens,
    out: Vec<Edit>,
}

/// An edit that cannot be placed.
fn unplaced(what: &str) -> Refusal {
    Refusal {
        rule: Rule::TooComplex,
        message: format!(
            "pgshift could not place its rewrite of {what} in this statement; write it more simply"
        ),
    }
}

impl Edits<'_> {
    fn push(&mut self, start: usize, end: usize, text: String, kind: EditKind) {
        self.out.push(Edit {
            start,
            end,
            text,
            kind,
        });
    }

    /// The token indices of the `parts` name parts at a node's location.
    fn name_tokens(&self, node: &Lite, parts: usize) -> Result<Vec<usize>, Refusal> {
        let at = node.location().ok_or_else(|| unplaced("a name"))?;
        let i = self.tokens.at(at).ok_or_else(|| unplaced("a name"))?;
        self.tokens
            .name_parts(i, parts)
            .ok_or_else(|| unplaced("a name"))
    }

    /// The view that a name (bare, or qualified with the physical schema
    /// or the version schema) names in this version.
    fn view_named<'n>(&self, parts: &[&'n str]) -> Option<&'n str> {
        let view = self.view;
        match parts {
            [v] if view.views.contains_key(*v) => Some(v),
            [.., s, v]
                if (*s == view.schema || *s == view.version_schema)
                    && view.views.contains_key(*v) =>
            {
                Some(v)
            }
            _ => None,
        }
    }

    /// References that read or write rows: `public.t` names the view of
    /// `t` in the version schema (the schema token is replaced), in table
    /// references and in column references alike; `set_config` and
    /// `pg_get_serial_sequence` calls.
    fn dml(&mut self, stmt: &Lite) -> Result<(), Refusal> {
        let mut nodes = Vec::new();
        stmt.walk(|node, ancestors| {
            // The table CREATE TABLE AS or SELECT INTO creates is not a view.
            if !ancestors.contains(&"IntoClause") {
                nodes.push(node);
            }
        });
        for node in nodes {
            match node.kind() {
                Some("RangeVar") => self.qualified_reference(node)?,
                Some("ColumnRef") => self.column_reference(node)?,
                Some("FuncCall") if is_builtin(node, "set_config") => self.set_config(node)?,
                Some("FuncCall") if is_builtin(node, "pg_get_serial_sequence") => {
                    self.serial_sequence(node)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn qualified_reference(&mut self, rv: &Lite) -> Result<(), Refusal> {
        let parts = range_var_parts(rv);
        let schema_at = match parts.as_slice() {
            [s, v] if *s == self.view.schema && self.view.views.contains_key(*v) => 0,
            [_, s, v] if *s == self.view.schema && self.view.views.contains_key(*v) => 1,
            _ => return Ok(()),
        };
        self.schema_to_version_schema(rv, parts.len(), schema_at)
    }

    /// Replaces the schema part (name `schema_at` of the first `parts`
    /// names of `node`) with the version schema.
    fn schema_to_version_schema(
        &mut self,
        node: &Lite,
        parts: usize,
        schema_at: usize,
    ) -> Result<(), Refusal> {
        let toks = self.name_tokens(node, parts)?;
        let t = self.tokens.all()[toks[schema_at]];
        self.push(
            t.start,
            t.end,
            ident(&self.view.version_schema),
            EditKind::ViewReference,
        );
        Ok(())
    }

    /// `public.t.col` (or `db.public.t.col`, or `public.t.*`) where `t` has
    /// a view: its table reference names the view, so must it.
    fn column_reference(&mut self, cr: &Lite) -> Result<(), Refusal> {
        let fields = cr.list("fields");
        let names: Vec<&str> = fields
            .iter()
            .map_while(|f| (f.kind() == Some("String")).then(|| f.str("sval")))
            .collect();
        let (schema_at, parts) = match fields.len() {
            3 => (0, 2),
            4 => (1, 3),
            _ => return Ok(()),
        };
        if names.len() < parts
            || names[schema_at] != self.view.schema
            || !self.view.views.contains_key(names[schema_at + 1])
        {
            return Ok(());
        }
        self.schema_to_version_schema(cr, parts, schema_at)
    }

    /// `SET [LOCAL|SESSION] search_path {TO|=} ...` and `SET SCHEMA '...'`:
    /// the version schema goes first, before the client's own list.
    fn search_path(&mut self, set: &Lite) -> Result<(), Refusal> {
        if !set.str("name").eq_ignore_ascii_case("search_path")
            || set.int("kind") != VariableSetKind::VarSetValue as i64
        {
            return Ok(());
        }
        let Some(first) = set.list("args").first() else {
            return Ok(());
        };
        if first.string_value() == Some(self.view.version_schema.as_str()) {
            return Ok(());
        }
        let at = first.location().ok_or_else(|| unplaced("search_path"))?;
        let i = self.tokens.at(at).ok_or_else(|| unplaced("search_path"))?;
        let head = ident(&self.view.version_schema);
        let before = (0..i)
            .rev()
            .find(|j| !self.tokens.all()[*j].is_comment())
            .map(|j| self.tokens.all()[j]);
        match before {
            // SET SCHEMA takes one value: it becomes SET search_path TO.
            Some(t) if t.token == Token::Schema => self.push(
                t.start,
                t.end,
                format!("search_path TO {head},"),
                EditKind::SearchPath,
            ),
            _ => self.push(at, at, format!("{head}, "), EditKind::SearchPath),
        }
        Ok(())
    }

    /// `set_config('search_path', value, is_local)`: the version schema is
    /// put before the value, whatever computes it.
    fn set_config(&mut self, call: &Lite) -> Result<(), Refusal> {
        let args = call.list("args");
        let is_search_path = args
            .first()
            .and_then(Lite::string_value)
            .is_some_and(|n| n.eq_ignore_ascii_case("search_path"));
        let Some(value) = args.get(1).filter(|_| is_search_path) else {
            return Ok(());
        };
        if let Some(path) = value.string_value()
            && first_path_element(path).as_deref() == Some(self.view.version_schema.as_str())
        {
            return Ok(());
        }
        let start = value.start().ok_or_else(|| unplaced("set_config"))?;
        let i = self
            .tokens
            .at(start)
            .ok_or_else(|| unplaced("set_config"))?;
        let end = self.tokens.expression_end(i);
        let head = literal(&format!("{}, ", ident(&self.view.version_schema)));
        self.push(start, start, format!("{head} || ("), EditKind::SearchPath);
        self.push(end, end, ")".into(), EditKind::SearchPath);
        Ok(())
    }

    /// `pg_get_serial_sequence('view', 'column')` finds nothing on a view:
    /// it asks the table and its column instead.
    fn serial_sequence(&mut self, call: &Lite) -> Result<(), Refusal> {
        let args = call.list("args");
        let (Some(rel), Some(col)) = (
            args.first().and_then(Lite::string_value),
            args.get(1).and_then(Lite::string_value),
        ) else {
            return Ok(());
        };
        let Some(parts) = split_qualified(rel) else {
            return Ok(());
        };
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let Some(v) = self.view_named(&parts) else {
            return Ok(());
        };
        let table = &self.view.views[v];
        let physical = self.view.columns.get(v).and_then(|m| {
            m.iter()
                .find(|(vc, _)| vc == col)
                .map(|(_, pc)| pc.as_str())
        });
        let physical_col = physical.unwrap_or(col).to_string();
        for (arg, text) in [
            (&args[0], literal(&qualified(&self.view.schema, table))),
            (&args[1], literal(&physical_col)),
        ] {
            let at = arg
                .location()
                .ok_or_else(|| unplaced("pg_get_serial_sequence"))?;
            let i = self
                .tokens
                .at(at)
                .ok_or_else(|| unplaced("pg_get_serial_sequence"))?;
            let t = self.tokens.all()[i];
            self.push(t.start, t.end, text, EditKind::SerialSequence);
        }
        Ok(())
    }

    /// `TRUNCATE view` cannot run on a view: it names the table.
    fn truncate(&mut self, stmt: &Lite) -> Result<(), Refusal> {
        for rv in stmt.list("relations") {
            let parts = range_var_parts(rv);
            let Some(v) = self.view_named(&parts) else {
                continue;
            };
            let toks = self.name_tokens(rv, parts.len())?;
            let (first, last) = (
                self.tokens.all()[toks[0]],
                self.tokens.all()[toks[toks.len() - 1]],
            );
            let table = qualified(&self.view.schema, &self.view.views[v]);
            self.push(first.start, last.end, table, EditKind::TruncateTable);
        }
        Ok(())
    }

    /// `COPY view TO` reads a query of the view; `COPY view FROM` writes
    /// the table through the view's column map (the dual-write trigger
    /// converts each row as the session's version wrote it).
    fn copy(&mut self, stmt: &Lite) -> Result<(), Refusal> {
        let rv = stmt.get("relation").expect("checked by the caller");
        let parts = range_var_parts(rv);
        let Some(v) = self.view_named(&parts) else {
            return Ok(());
        };
        let toks = self.name_tokens(rv, parts.len())?;
        let last = toks[toks.len() - 1];
        let mut end = self.tokens.all()[last].end;
        if let Some(open) = self.tokens.significant(last + 1)
            && self.tokens.all()[open].token == Token::Ascii40
        {
            let close = self
                .tokens
                .closing_paren(open)
                .ok_or_else(|| unplaced("COPY"))?;
            end = self.tokens.all()[close].end;
        }
        let start = self.tokens.all()[toks[0]].start;
        let columns: Vec<&str> = Lite::names(stmt.list("attlist")).unwrap_or_default();
        let view = self.view;
        if !stmt.bool("is_from") {
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let text = format!(
                "(SELECT {list} FROM {})",
                qualified(&view.version_schema, v)
            );
            self.push(start, end, text, EditKind::CopyTo);
            return Ok(());
        }
        if stmt.get("where_clause").is_some() {
            return Ok(());
        }
        let Some(mapping) = view.columns.get(v) else {
            return Ok(());
        };
        let wanted: Vec<&str> = if columns.is_empty() {
            mapping.iter().map(|(c, _)| c.as_str()).collect()
        } else {
            columns
        };
        let physical: Option<Vec<String>> = wanted
            .iter()
            .map(|c| {
                mapping
                    .iter()
                    .find(|(vc, _)| vc == c)
                    .map(|(_, pc)| ident(pc))
            })
            .collect();
        if let Some(physical) = physical {
            let text = format!(
                "{} ({})",
                qualified(&view.schema, &view.views[v]),
                physical.join(", ")
            );
            self.push(start, end, text, EditKind::CopyFrom);
        }
        Ok(())
    }

    /// A persisted definition (a view, a function body, a rule, a policy)
    /// names the physical tables, never a version's views, which go away
    /// at complete or rollback: a name that resolves to a version view
    /// (bare, or version-schema qualified) is qualified with the physical
    /// schema. Names of migrating tables were refused before this.
    fn qualify(&mut self, stmt: &Lite) -> Result<(), Refusal> {
        let mut rvs = Vec::new();
        stmt.walk(|node, _| {
            if node.kind() == Some("RangeVar") {
                rvs.push(node);
            }
        });
        let schema = ident(&self.view.schema);
        for rv in rvs {
            let parts = range_var_parts(rv);
            match parts.as_slice() {
                [v] if self.view.views.contains_key(*v) => {
                    let toks = self.name_tokens(rv, 1)?;
                    let at = self.tokens.all()[toks[0]].start;
                    self.push(at, at, format!("{schema}."), EditKind::ViewReference);
                }
                [s, v] if *s == self.view.version_schema && self.view.views.contains_key(*v) => {
                    let toks = self.name_tokens(rv, 2)?;
                    let t = self.tokens.all()[toks[0]];
                    self.push(t.start, t.end, schema.clone(), EditKind::ViewReference);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The first element of a search_path value, as Postgres's
/// `SplitIdentifierString` reads it: a double-quoted name as written, any
/// other folded to lower case. `None` for an empty list.
pub fn first_path_element(path: &str) -> Option<String> {
    let s = path.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        return None;
    }
    let first = s.split(',').next()?.trim();
    (!first.is_empty()).then(|| first.to_lowercase())
}

/// A qualified name written as text (`'public.users'`, `'"My Table"'`),
/// split as Postgres's `textToQualifiedNameList` does: on dots outside
/// double quotes, unquoted parts folded to lower case. `None` when it is
/// not a well-formed name.
pub fn split_qualified(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
}
