//! The cheap scan that decides, in time linear in the text, whether a
//! statement text can need a rewrite or a refusal at all; only texts it
//! flags are tokenized and parsed. It looks for whole words, case
//! insensitively: the words every such statement must contain (a keyword
//! such as ALTER or COPY, `search_path`, `set_config`, `pgshift`, the
//! physical schema's name) and `U&`, which can spell any identifier
//! without its letters. A word inside a string or comment flags the text
//! too; the parser then finds nothing to do, which is only slower.

use aho_corasick::automaton::Automaton;
use aho_corasick::automaton::StateID;
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, Anchored, MatchKind};

/// Words whose presence makes a text worth parsing, besides the physical
/// schema's name.
const WORDS: &[&str] = &[
    "search_path",
    "schema",
    "pgshift",
    "set_config",
    "pg_get_serial_sequence",
    "alter",
    "drop",
    "create",
    "truncate",
    "copy",
    "grant",
    "revoke",
];

/// Spells an identifier or string in Unicode escapes (`U&"\0070ublic"`).
const UNICODE_ESCAPE: &str = "u&";

/// The scan of one session: [`WORDS`], `U&`, and the physical schema's name.
#[derive(Debug, Clone)]
pub struct Scan {
    words: AhoCorasick,
    /// The same words, for texts that stream past in pieces.
    stream: std::sync::Arc<DFA>,
    patterns: Vec<String>,
}

/// A byte that can continue an identifier (scan.l's `ident_cont`).
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

impl Scan {
    /// The scan for sessions whose physical schema is `schema`.
    pub fn new(schema: &str) -> Scan {
        let mut patterns: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
        patterns.push(UNICODE_ESCAPE.to_string());
        patterns.push(schema.to_string());
        let words = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .expect("plain words build an automaton");
        let stream = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .expect("plain words build an automaton");
        Scan {
            words,
            stream: std::sync::Arc::new(stream),
            patterns,
        }
    }

    /// A scan of a text that arrives in pieces, for texts too long to hold:
    /// it looks for the words anywhere, whole or not (more flags, never
    /// fewer).
    pub fn stream(&self) -> StreamScan {
        let state = self
            .stream
            .start_state(Anchored::No)
            .expect("unanchored searches are supported");
        StreamScan {
            dfa: std::sync::Arc::clone(&self.stream),
            state,
            found: None,
            patterns: self.patterns.clone(),
        }
    }

    /// True when `text` holds one of the words as a whole word (`U&` only
    /// needs to start one).
    pub fn flags(&self, text: &str) -> bool {
        // Most texts hold none of the words: the automaton's prefilter
        // says so fastest, before any match is looked at.
        if !self.words.is_match(text) {
            return false;
        }
        let bytes = text.as_bytes();
        self.words.find_overlapping_iter(text).any(|m| {
            let before_ok = m.start() == 0 || !is_ident_byte(bytes[m.start() - 1]);
            let word = &bytes[m.start()..m.end()];
            let after_ok = word.eq_ignore_ascii_case(UNICODE_ESCAPE.as_bytes())
                || m.end() == bytes.len()
                || !is_ident_byte(bytes[m.end()]);
            before_ok && after_ok
        })
    }
}

/// The state of a [`Scan::stream`]: feed it the text's pieces in order.
#[derive(Debug, Clone)]
pub struct StreamScan {
    dfa: std::sync::Arc<DFA>,
    state: StateID,
    found: Option<usize>,
    patterns: Vec<String>,
}

impl StreamScan {
    /// Scans the next piece of the text.
    pub fn feed(&mut self, piece: &[u8]) {
        if self.found.is_some() {
            return;
        }
        for &b in piece {
            self.state = self.dfa.next_state(Anchored::No, self.state, b);
            if self.dfa.is_match(self.state) {
                self.found = Some(self.dfa.match_pattern(self.state, 0).as_usize());
                return;
            }
        }
    }

    /// The first word found so far, if any.
    pub fn found(&self) -> Option<&str> {
        self.found.map(|i| self.patterns[i].as_str())
    }
}

#[cfg(test)]
mod tests;
