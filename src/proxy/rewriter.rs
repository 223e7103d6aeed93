//! The rewriter of one session: its version's [`Rewriter`], a cache of
//! rewrites by statement text bounded in bytes, and where a parse runs:
//! on the session's thread for short texts, on a blocking thread for long
//! ones (at most [`LARGE_PARSES`] at once in the process), so that one
//! session's large statement never holds up the others on its thread.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::protocol::messages::{sql_of, with_sql};
use crate::rewrite::{Options, Rewriter, Rewritten, Rule, Scan, VersionView, refusal_statement};

/// Texts up to this many bytes are parsed on the session's own thread
/// (tens of microseconds); longer ones on a blocking thread.
pub const INLINE_PARSE: usize = 16 * 1024;

/// Parses of long texts running at once, process-wide: each may take a
/// few milliseconds and tens of megabytes.
pub static LARGE_PARSES: Semaphore = Semaphore::const_new(2);

/// Bytes (texts and their rewrites) one session's cache keeps; the oldest
/// entries go first.
pub const CACHE_BYTES: usize = 1 << 20;

/// Texts longer than this are not cached: one would push out all others.
pub const CACHE_TEXT_MAX: usize = 64 * 1024;

/// Rewrites the SQL of one session's Query and Parse messages for its
/// version, caching by statement text.
pub struct SessionRewriter {
    rewriter: Arc<Rewriter>,
    cache: Cache,
    /// Among texts the scan flagged: cache lookups that found the text, and
    /// those that did not (texts the scan clears are neither parsed nor cached).
    pub hits: u64,
    pub misses: u64,
}

impl SessionRewriter {
    /// A rewriter for a session of `view`'s version.
    pub fn new(view: VersionView) -> Self {
        SessionRewriter {
            rewriter: Arc::new(Rewriter::new(view)),
            cache: Cache::default(),
            hits: 0,
            misses: 0,
        }
    }

    /// The version view this rewriter serves.
    pub fn view(&self) -> &VersionView {
        self.rewriter.view()
    }

    /// The session's scan, for texts too long to hold.
    pub fn scan(&self) -> &Scan {
        self.rewriter.scan()
    }

    /// The rewritten frame for a whole Query or Parse frame, if it changes
    /// ("Message Formats": Query is a string; Parse is a name, a string and
    /// the parameter types). Text that is not UTF-8 (another
    /// client_encoding) goes unchanged.
    pub async fn rewrite_frame(&mut self, frame: &[u8], options: Options) -> Option<Vec<u8>> {
        let (_, sql, _) = sql_of(frame)?;
        let text = std::str::from_utf8(sql).ok()?;
        if !self.rewriter.may_need_rewrite(text) {
            return None;
        }
        // The common case: a text seen before, its rewrite built into the
        // frame straight from the cache.
        if let Some(hit) = self.cache.get(sql, options) {
            self.hits += 1;
            return with_sql(frame, hit.as_deref()?);
        }
        let new_sql = self.rewrite(sql, options).await?;
        with_sql(frame, &new_sql)
    }

    async fn rewrite(&mut self, sql: &[u8], options: Options) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(sql).ok()?;
        if !self.rewriter.may_need_rewrite(text) {
            return None;
        }
        if let Some(hit) = self.cache.get(sql, options) {
            self.hits += 1;
            return hit.clone();
        }
        self.misses += 1;
        let rewritten = if text.len() <= INLINE_PARSE {
            self.rewriter.rewrite(text, options)
        } else {
            self.rewrite_elsewhere(text, options).await
        };
        let out = match rewritten {
            Rewritten::Unchanged => None,
            Rewritten::Text(t) => Some(t.into_bytes()),
        };
        if sql.len() <= CACHE_TEXT_MAX {
            self.cache.insert(sql, options, out.clone());
        }
        out
    }

    /// Rewrites a long text on a blocking thread, waiting (this session
    /// only) for a turn among [`LARGE_PARSES`].
    async fn rewrite_elsewhere(&self, text: &str, options: Options) -> Rewritten {
        let _turn = LARGE_PARSES.acquire().await.expect("never closed");
        let rewriter = Arc::clone(&self.rewriter);
        let text = text.to_owned();
        match tokio::task::spawn_blocking(move || rewriter.rewrite(&text, options)).await {
            Ok(rewritten) => rewritten,
            // A panic in the parser is pgshift's bug; the statement does not
            // run unchecked because of it.
            Err(e) => {
                tracing::error!(error = %e, "the rewriter failed on a statement; refusing it");
                Rewritten::Text(refusal_statement(
                    Rule::TooComplex,
                    "pgshift failed to check this statement; please report it",
                ))
            }
        }
    }
}

/// Rewrites by text, one map per `standard_conforming_strings` (a text
/// reads differently under each), at most [`CACHE_BYTES`] of them, oldest
/// out first.
#[derive(Default)]
struct Cache {
    maps: [HashMap<Vec<u8>, Option<Vec<u8>>>; 2],
    order: VecDeque<(usize, Vec<u8>)>,
    bytes: usize,
}

impl Cache {
    fn get(&self, sql: &[u8], options: Options) -> Option<&Option<Vec<u8>>> {
        let map = &self.maps[options.standard_conforming_strings as usize];
        map.get(sql)
    }

    fn insert(&mut self, sql: &[u8], options: Options, out: Option<Vec<u8>>) {
        let which = options.standard_conforming_strings as usize;
        let size = sql.len() + out.as_ref().map_or(0, Vec::len);
        while self.bytes + size > CACHE_BYTES {
            let Some((map, oldest)) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.maps[map].remove(&oldest) {
                self.bytes -= oldest.len() + gone.map_or(0, |g| g.len());
            }
        }
        if self.maps[which].insert(sql.to_vec(), out).is_none() {
            self.order.push_back((which, sql.to_vec()));
            self.bytes += size;
        }
    }

    /// Bytes held (texts and rewrites).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests;
