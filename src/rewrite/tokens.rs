//! The tokens of a statement text as Postgres's own scanner finds them
//! (libpg_query's `scan.l`, through `pg_query::scan_tokens`), with the
//! session's `standard_conforming_strings`, so that every edit lands on
//! token boundaries the server would see: where a qualified name's schema
//! part is, where an argument ends, what a statement begins with.

use pg_query::protobuf::{KeywordKind, Token};

unsafe extern "C" {
    /// Sets libpg_query's thread-local `standard_conforming_strings`, which
    /// its token scanner reads (`src/rewrite/scs.c`).
    fn pgshift_set_standard_conforming_strings(on: bool);
}

/// One token: its byte range and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tok {
    pub start: usize,
    pub end: usize,
    pub token: Token,
    /// True for keywords (reserved or not), which may also be names.
    pub keyword: bool,
}

impl Tok {
    /// True for a comment, which the grammar skips.
    pub fn is_comment(&self) -> bool {
        matches!(self.token, Token::CComment | Token::SqlComment)
    }

    /// True for a token that can be a name part: an identifier, a quoted
    /// identifier, or a keyword used as one.
    pub fn is_name(&self) -> bool {
        matches!(self.token, Token::Ident | Token::Uident) || self.keyword
    }
}

/// The tokens of one text, in order.
#[derive(Debug, Clone)]
pub struct Tokens {
    toks: Vec<Tok>,
}

impl Tokens {
    /// Scans `text` as a server with `standard_conforming_strings` =
    /// `scs` would. `None` when the scanner refuses the text (an
    /// unterminated string or comment); the server will refuse it too.
    pub fn scan(text: &str, scs: bool) -> Option<Tokens> {
        // SAFETY: a plain store to a thread-local bool of the linked
        // libpg_query, on this thread, before and after this thread's scan.
        unsafe { pgshift_set_standard_conforming_strings(scs) };
        let scanned = pg_query::scan_tokens(text);
        unsafe { pgshift_set_standard_conforming_strings(true) };
        let toks = scanned
            .ok()?
            .into_iter()
            .map(|t| Tok {
                start: t.start as usize,
                end: t.end as usize,
                token: Token::try_from(t.token).unwrap_or(Token::Nul),
                keyword: t.keyword_kind != KeywordKind::NoKeyword as i32,
            })
            .collect();
        Some(Tokens { toks })
    }

    /// Every token.
    pub fn all(&self) -> &[Tok] {
        &self.toks
    }

    /// The index of the token that starts at byte `offset`.
    pub fn at(&self, offset: usize) -> Option<usize> {
        self.toks.binary_search_by_key(&offset, |t| t.start).ok()
    }

    /// The index of the first token that is not a comment, from `i` on.
    pub fn significant(&self, mut i: usize) -> Option<usize> {
        while let Some(t) = self.toks.get(i) {
            if !t.is_comment() {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The indices of the `parts` name tokens of a qualified name that
    /// starts at token `i` (`a . b . c`, comments allowed between them).
    pub fn name_parts(&self, i: usize, parts: usize) -> Option<Vec<usize>> {
        let mut out = Vec::with_capacity(parts);
        let mut at = i;
        for n in 0..parts {
            if n > 0 {
                let dot = self.significant(at)?;
                if self.toks[dot].token != Token::Ascii46 {
                    return None;
                }
                at = dot + 1;
            }
            let name = self.significant(at)?;
            if !self.toks[name].is_name() {
                return None;
            }
            out.push(name);
            at = name + 1;
        }
        Some(out)
    }

    /// The byte offset where the expression that starts at token `i` ends:
    /// before the first `,` or `)` outside the parentheses and brackets it
    /// opens (an argument of a function call), or at the text's end.
    pub fn expression_end(&self, i: usize) -> usize {
        let mut depth = 0usize;
        let mut end = self.toks.get(i).map_or(0, |t| t.start);
        for t in &self.toks[i..] {
            match t.token {
                Token::Ascii40 | Token::Ascii91 => depth += 1,
                Token::Ascii41 | Token::Ascii93 if depth == 0 => return end,
                Token::Ascii41 | Token::Ascii93 => depth -= 1,
                Token::Ascii44 if depth == 0 => return end,
                _ => {}
            }
            if !t.is_comment() {
                end = t.end;
            }
        }
        end
    }

    /// The index of the `)` that closes the `(` at token `open`.
    pub fn closing_paren(&self, open: usize) -> Option<usize> {
        let mut depth = 0usize;
        for (i, t) in self.toks.iter().enumerate().skip(open) {
            match t.token {
                Token::Ascii40 => depth += 1,
                Token::Ascii41 => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
