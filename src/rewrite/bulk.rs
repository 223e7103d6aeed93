//! Statements too large to parse (over [`super::PARSE_LIMIT`] bytes), met
//! in practice as bulk loads: `INSERT INTO public.t VALUES ...` with
//! thousands of rows. Their tokens are enough, found by Postgres's own
//! scanner in time and memory linear in the text: a table reference
//! `<physical schema> . <view>` names the view (its schema token is
//! replaced), and a statement that could need anything more (one that
//! begins with a utility or DDL keyword, or names `set_config`,
//! `search_path`, `pgshift` or a Unicode-escaped name anywhere) is refused
//! as too large to check.

use pg_query::protobuf::Token;

use super::rules::{Refusal, Rule};
use super::tokens::{Tok, Tokens};
use super::{Edit, EditKind, PARSE_LIMIT, VersionView};
use crate::quote::ident;

/// Keywords that begin statements pgshift must parse to judge.
const UTILITY: &[Token] = &[
    Token::Alter,
    Token::Drop,
    Token::Create,
    Token::Truncate,
    Token::Copy,
    Token::Set,
    Token::Reset,
    Token::Grant,
    Token::Revoke,
    Token::Comment,
    Token::Do,
    Token::ImportP,
    Token::Security,
    Token::Cluster,
    Token::Reindex,
];

/// Identifiers that can only be handled with a parse tree.
const NAMES: &[&str] = &[
    "set_config",
    "search_path",
    "pgshift",
    "pg_get_serial_sequence",
];

/// The edits for `text`, or the refusal of the whole text.
pub fn edits(text: &str, view: &VersionView, tokens: &Tokens) -> Result<Vec<Edit>, Refusal> {
    let too_large = |why: String| Refusal {
        rule: Rule::TooComplex,
        message: format!(
            "this statement text is {} bytes, over the {PARSE_LIMIT} that pgshift parses, and {why}; send such statements in smaller pieces while the migration runs",
            text.len()
        ),
    };
    let toks = tokens.all();
    let mut at_start = true;
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.is_comment() {
            continue;
        }
        if at_start && UTILITY.contains(&t.token) {
            return Err(too_large(format!(
                "holds a statement that begins with {}",
                &text[t.start..t.end]
            )));
        }
        at_start = t.token == Token::Ascii59;
        if matches!(t.token, Token::Uident | Token::Usconst) {
            return Err(too_large("spells a name in Unicode escapes".into()));
        }
        if t.is_name() && NAMES.iter().any(|n| name_of(text, t).as_deref() == Some(n)) {
            return Err(too_large(format!("names {}", &text[t.start..t.end])));
        }
        if let Some(edit) = view_reference(text, view, tokens, i) {
            out.push(edit);
        }
    }
    Ok(out)
}

/// A name token's value: a quoted identifier as written, another folded.
fn name_of(text: &str, t: &Tok) -> Option<String> {
    let raw = &text[t.start..t.end];
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(quoted) => Some(quoted.replace("\"\"", "\"")),
        None => Some(raw.to_lowercase()),
    }
}

/// `<schema> . <view>` at token `i` (also inside `db.<schema>.<view>` and
/// `<schema>.<view>.column`), not a function call (`(` after it, unless
/// INTO is before it) nor a type (`::` before it): the schema token names
/// the version schema.
fn view_reference(text: &str, view: &VersionView, tokens: &Tokens, i: usize) -> Option<Edit> {
    let toks = tokens.all();
    let t = toks[i];
    if !t.is_name() || name_of(text, &t)? != view.schema {
        return None;
    }
    let parts = tokens.name_parts(i, 2)?;
    let rel = name_of(text, &toks[parts[1]])?;
    if !view.views.contains_key(&rel) {
        return None;
    }
    let after = tokens.significant(parts[1] + 1).map(|j| toks[j].token);
    let before = (0..i)
        .rev()
        .find(|j| !toks[*j].is_comment())
        .map(|j| toks[j].token);
    // `INSERT INTO t (columns)`: a table, though a `(` follows.
    let call = after == Some(Token::Ascii40) && before != Some(Token::Into);
    if call || before == Some(Token::Typecast) {
        return None;
    }
    Some(Edit {
        start: t.start,
        end: t.end,
        text: ident(&view.version_schema),
        kind: EditKind::ViewReference,
    })
}
