//! Quoting of identifiers and literals for generated SQL: the one place where
//! a name or a string from a migration file becomes SQL text (PostgreSQL
//! docs, "Lexical Structure": quoted identifiers and string constants).

/// Quotes an identifier: always in double quotes, with `"` doubled, so that
/// any name (upper case, spaces, reserved words, quotes) is taken literally.
///
/// Panics on a NUL byte, which no Postgres identifier can hold; migration
/// files are validated before any name reaches here.
pub fn ident(name: &str) -> String {
    assert!(
        !name.contains('\0'),
        "identifier with a NUL byte reached quote::ident"
    );
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a schema-qualified name: `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Quotes a string constant: `'...'` with `'` doubled, and as an escape
/// string (`E'...'`, backslashes doubled) when it holds a backslash, so the
/// result means the same whatever `standard_conforming_strings` is (the rule
/// of Postgres's own `quote_literal`).
///
/// Panics on a NUL byte, which no Postgres text value can hold.
pub fn literal(value: &str) -> String {
    assert!(
        !value.contains('\0'),
        "text with a NUL byte reached quote::literal"
    );
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

#[cfg(test)]
mod tests;

/// `text` with every control character escaped (`\n`, `\r`, `\u{1b}`), for
/// log lines: a client's application_name, user or database must not forge
/// a log line or send a terminal escape. Text without control characters
/// is returned as is.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
