//! Rewriting the few statements that views cannot serve (README.md,
//! "Versions through the proxy"), for a session pinned to a version during
//! a migration. Pure: SQL text, the version's view map and the session's
//! `standard_conforming_strings` in, SQL text out; no I/O.
//!
//! A cheap scan ([`Scan`]) decides in linear time whether a text can need
//! anything; only those are parsed, with Postgres's own grammar
//! (libpg_query, through the `pg_query` crate) and the session's string
//! settings, so statements split and read exactly as the server will.
//! Rules judge each statement's tree ([`rules`]); edits splice new text
//! into the client's own at token boundaries that Postgres's own scanner
//! finds ([`tokens`]), and every byte they do not touch stays as sent. A
//! refused statement is replaced by a `DO` block that raises the refusal,
//! so Postgres reports it with its own protocol flow, in simple and
//! extended queries alike. Text that Postgres's parser rejects goes
//! upstream unchanged, and the client gets Postgres's own syntax error.
//!
//! Bounded: a parse runs on a stack of its own ([`PARSE_STACK`]), so a
//! deeply nested statement ends in Postgres's "stack depth limit exceeded"
//! and a refusal, never a crash; texts over [`PARSE_LIMIT`] bytes are
//! judged by their tokens alone ([`bulk`]).

mod bulk;
#[cfg(test)]
pub(crate) mod corpus;
mod edits;
pub mod rules;
pub mod scan;
mod tokens;
mod tree;

use std::collections::{BTreeMap, BTreeSet};

pub use rules::{Refusal, Rule};
pub use scan::Scan;
pub use tokens::Tokens;
pub use tree::Lite;

use crate::quote;

/// Texts longer than this (bytes) are not parsed: their parse tree would
/// cost tens of times their size in memory. [`bulk`] judges them by tokens.
pub const PARSE_LIMIT: usize = 1 << 20;

/// The stack a parse runs on (bytes of address space; pages are touched
/// only as deep as a statement nests). libpg_query stops at about 2 MiB of
/// its own recursion; decoding and walking the tree it returns needs a few
/// times that on the Rust side.
pub const PARSE_STACK: usize = 256 << 20;

/// A generous bound on the stack that decoding, walking and dropping a
/// parse tree use per byte of the text it came from (a level of nesting
/// takes at least a byte or two of text, such as `+1`).
const STACK_PER_BYTE: usize = 2048;

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
    /// Every version schema of the running migration: pgshift's own.
    pub version_schemas: BTreeSet<String>,
}

/// The session settings that change how a text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The session's `standard_conforming_strings` (ParameterStatus): off,
    /// a backslash in `'...'` escapes the next character.
    pub standard_conforming_strings: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            standard_conforming_strings: true,
        }
    }
}

/// What an edit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    /// A table or column reference to the physical schema names the view.
    ViewReference,
    /// The version schema put first on a search_path.
    SearchPath,
    /// `pg_get_serial_sequence` asks the table.
    SerialSequence,
    /// `TRUNCATE` names the table.
    TruncateTable,
    /// `COPY view TO` reads a query of the view.
    CopyTo,
    /// `COPY view FROM` writes the table through the view's column map.
    CopyFrom,
    /// The statement is replaced by a `DO` block raising a refusal.
    Refusal(Rule),
}

/// One splice: bytes `start..end` of the text are replaced by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub kind: EditKind,
}

/// The outcome for one Query or Parse text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// Send the text as it is.
    Unchanged,
    /// Send this text instead.
    Text(String),
}

/// The rewriter of one session's version: the view map and its scan.
#[derive(Debug, Clone)]
pub struct Rewriter {
    view: VersionView,
    scan: Scan,
}

/// Rewrites `sql` for a session of `view` with default options; see
/// [`Rewriter::rewrite`]. A session keeps a [`Rewriter`] instead.
pub fn rewrite(sql: &str, view: &VersionView) -> Rewritten {
    Rewriter::new(view.clone()).rewrite(sql, Options::default())
}

impl Rewriter {
    /// The rewriter for `view`.
    pub fn new(view: VersionView) -> Self {
        let scan = Scan::new(&view.schema);
        Rewriter { view, scan }
    }

    /// The version view this rewriter serves.
    pub fn view(&self) -> &VersionView {
        &self.view
    }

    /// The scan of this version's sessions.
    pub fn scan(&self) -> &Scan {
        &self.scan
    }

    /// True when `sql` may need a rewrite, by the cheap scan alone: only
    /// such texts are parsed (or worth caching).
    pub fn may_need_rewrite(&self, sql: &str) -> bool {
        self.scan.flags(sql)
    }

    /// The text to send for `sql` (one Query or Parse text, any number of
    /// statements) in a session with `options`.
    pub fn rewrite(&self, sql: &str, options: Options) -> Rewritten {
        let edits = self.edits(sql, options);
        if edits.is_empty() {
            Rewritten::Unchanged
        } else {
            Rewritten::Text(apply(sql, &edits))
        }
    }

    /// The edits [`Rewriter::rewrite`] makes to `sql`, in order and not
    /// overlapping.
    pub fn edits(&self, sql: &str, options: Options) -> Vec<Edit> {
        if !self.scan.flags(sql) {
            return Vec::new();
        }
        if sql.len() > PARSE_LIMIT {
            return self.bulk(sql, options);
        }
        // A text can nest about as deep as it is long: parse it on this
        // stack when even that depth fits with room to spare, else on a
        // stack of its own (which costs a mapping of it, some microseconds).
        let need = sql.len().saturating_mul(STACK_PER_BYTE) + (1 << 20);
        match stacker::remaining_stack() {
            Some(left) if left > need => self.parsed(sql, options),
            _ => stacker::grow(PARSE_STACK, || self.parsed(sql, options)),
        }
    }

    fn bulk(&self, sql: &str, options: Options) -> Vec<Edit> {
        let Some(tokens) = Tokens::scan(sql, options.standard_conforming_strings) else {
            return Vec::new();
        };
        match bulk::edits(sql, &self.view, &tokens) {
            Ok(edits) => edits,
            Err(refusal) => vec![whole(sql, refusal)],
        }
    }

    /// Parses `sql`, then judges and edits each statement.
    fn parsed(&self, sql: &str, options: Options) -> Vec<Edit> {
        let mut parser_options = pg_query::ParserOptions::DEFAULT;
        if !options.standard_conforming_strings {
            parser_options |= pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS;
        }
        let parsed = match pg_query::parse(sql, parser_options) {
            Ok(parsed) => parsed,
            Err(pg_query::Error::Parse(message)) if message.contains("stack depth") => {
                return vec![whole(sql, too_complex(&message))];
            }
            Err(pg_query::Error::Decode(e)) => {
                return vec![whole(sql, too_complex(&e.to_string()))];
            }
            // Postgres refuses it too, with its own error.
            Err(_) => return Vec::new(),
        };
        let mut tokens = None;
        let mut out = Vec::new();
        for raw in &parsed.protobuf.stmts {
            let Some(node) = raw.stmt.as_deref() else {
                continue;
            };
            let start = raw.stmt_location.max(0) as usize;
            let end = match raw.stmt_len {
                0 => sql.len(),
                len => start + len as usize,
            };
            let stmt = Lite::of(node);
            let outcome = match rules::check(&stmt, &self.view) {
                Some(refusal) => Err(refusal),
                None => {
                    let tokens = tokens.get_or_insert_with(|| {
                        Tokens::scan(sql, options.standard_conforming_strings)
                    });
                    match tokens {
                        Some(tokens) => edits::of(&stmt, &self.view, tokens),
                        None => Err(too_complex("its tokens do not scan")),
                    }
                }
            };
            match outcome {
                Ok(edits) => out.extend(edits),
                Err(refusal) => out.push(refusal_edit(start, end, refusal)),
            }
        }
        out.sort_by_key(|e| (e.start, e.end));
        out
    }
}

fn too_complex(why: &str) -> Refusal {
    Refusal {
        rule: Rule::TooComplex,
        message: format!(
            "this statement is too deeply nested for pgshift to check ({why}) while a migration runs; write it with less nesting"
        ),
    }
}

/// The refusal of a whole text.
fn whole(sql: &str, refusal: Refusal) -> Edit {
    refusal_edit(0, sql.len(), refusal)
}

fn refusal_edit(start: usize, end: usize, refusal: Refusal) -> Edit {
    Edit {
        start,
        end,
        text: refusal_statement(refusal.rule, &refusal.message),
        kind: EditKind::Refusal(refusal.rule),
    }
}

/// The `DO` block that makes Postgres raise `message` with `rule`'s
/// SQLSTATE (PostgreSQL docs, "DO" and "Errors and Messages"), under a
/// dollar-quote tag the message does not contain.
pub fn refusal_statement(rule: Rule, message: &str) -> String {
    let body = format!(
        "BEGIN RAISE EXCEPTION USING ERRCODE = '{}', MESSAGE = {}, HINT = {}; END",
        rule.sqlstate(),
        quote::literal(&format!("pgshift: {message}")),
        quote::literal(&format!(
            "pgshift refused this statement by its rule {}",
            rule.name()
        )),
    );
    let tag = (0..)
        .map(|n| format!("$pgshift{n}$"))
        .find(|t| !body.contains(t.as_str()))
        .expect("a free tag");
    format!("DO {tag}{body}{tag}")
}

/// `sql` with `edits` (sorted, not overlapping; an edit that overlaps an
/// earlier one, which only a refusal covering its statement can do, is
/// dropped) applied.
pub fn apply(sql: &str, edits: &[Edit]) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut last = 0;
    for e in edits {
        if e.start < last {
            continue;
        }
        out.push_str(&sql[last..e.start]);
        out.push_str(&e.text);
        last = e.end;
    }
    out.push_str(&sql[last..]);
    out
}

#[cfg(test)]
mod tests;
