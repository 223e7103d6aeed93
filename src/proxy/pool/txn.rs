//! What a pooled client's transaction on one server owes whom, without I/O:
//! each client message is forwarded as the server must see it (statement
//! names mapped, missing statements prepared again, a Close of a statement
//! kept on the server), and each server reply is matched to the request it
//! answers, so that replies pgshift caused are dropped and replies it owes
//! (ParseComplete, CloseComplete) are put in their place ("Extended Query":
//! after an error, messages up to Sync are skipped and answer nothing).

use std::collections::VecDeque;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use lru::LruCache;

use super::server::{Params, note_parameter};
use super::statements::ClientStatements;
use crate::protocol::extended::{self, CLOSE_COMPLETE, PARSE_COMPLETE, Target};
use crate::protocol::tags::{backend, frontend, status};

/// A reply the server owes, in the order it comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A Parse: ParseComplete. `prepares`: the pgshift name it creates;
    /// `own`: pgshift sent it, and its ParseComplete is dropped.
    Parse {
        prepares: Option<Vec<u8>>,
        own: bool,
    },
    /// A Close of pgshift's own: its CloseComplete is dropped.
    OwnClose,
    /// Bind, Execute or a Close the client sent: one reply ends it.
    Reply,
    /// Describe: RowDescription or NoData ends it.
    Describe,
    /// A reply pgshift owes the client at this point of the stream.
    Owed(&'static [u8]),
    /// Sync, Query or FunctionCall: ReadyForQuery ends it.
    Ready,
}

/// One transaction's state on its server.
#[derive(Debug)]
pub struct Txn {
    pub expect: VecDeque<Expect>,
    /// True after an extended-protocol message that no Sync has closed.
    pub unsynced: bool,
    /// The last ReadyForQuery's transaction status.
    pub status: u8,
    /// True after an error, until the ReadyForQuery of the next Sync.
    pub failed: bool,
    /// True while bytes are being written to the server.
    pub writing: bool,
    /// Requests (Query, Sync, FunctionCall) forwarded, for SHOW STATS.
    pub queries: u64,
}

impl Default for Txn {
    fn default() -> Self {
        Txn {
            expect: VecDeque::new(),
            unsynced: false,
            status: status::IDLE,
            failed: false,
            writing: false,
            queries: 0,
        }
    }
}

/// What one client message's forwarding touches besides the transaction.
pub struct Sides<'a> {
    pub client: &'a mut ClientStatements,
    pub server: &'a mut LruCache<Vec<u8>, ()>,
    /// Set when a statement may change the search_path or drop prepared
    /// statements.
    pub tainted: &'a mut bool,
}

/// Words that make a statement taint its server: it may move the
/// search_path (or `pgshift.version`) or drop prepared statements.
const TAINTING: &[&[u8]] = &[
    b"search_path",
    b"set_config",
    b"reset",
    b"discard",
    b"deallocate",
    b"pgshift",
];

/// [`TAINTING`], matched in any case.
static TAINT: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(TAINTING)
        .expect("fixed words")
});

/// True when `sql` holds one of [`TAINTING`] as a whole word.
fn taints(sql: &[u8]) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    TAINT.find_iter(sql).any(|m| {
        (m.start() == 0 || !word(sql[m.start() - 1])) && sql.get(m.end()).is_none_or(|b| !word(*b))
    })
}

impl Txn {
    /// Appends to `out` what the server must receive for the client's
    /// whole message `frame`, and records the replies it will owe.
    pub fn forward(&mut self, frame: &[u8], out: &mut Vec<u8>, sides: &mut Sides<'_>) {
        if self.pass(frame, sides) {
            out.extend_from_slice(frame);
            return;
        }
        match frame[0] {
            frontend::PARSE => {
                self.taint(frame, sides);
                self.unsynced = true;
                match extended::parse_name(frame) {
                    Some((name, body)) if !name.is_empty() => {
                        let prepared = sides.client.prepare(name, body);
                        if sides.server.get(&*prepared.name).is_some() {
                            self.expect.push_back(Expect::Owed(&PARSE_COMPLETE));
                        } else {
                            self.prepare_on_server(
                                &prepared.name,
                                &prepared.body,
                                false,
                                out,
                                sides,
                            );
                        }
                    }
                    _ => {
                        self.expect.push_back(Expect::Parse {
                            prepares: None,
                            own: false,
                        });
                        out.extend_from_slice(frame);
                    }
                }
            }
            frontend::BIND => {
                self.unsynced = true;
                let mapped = extended::bind_statement(frame)
                    .filter(|name| !name.is_empty())
                    .and_then(|name| sides.client.get(name).cloned());
                match mapped {
                    Some(prepared) => {
                        self.ensure(&prepared.name, &prepared.body, out, sides);
                        match extended::bind_with_statement(frame, &prepared.name) {
                            Some(bind) => out.extend_from_slice(&bind),
                            None => out.extend_from_slice(frame),
                        }
                    }
                    None => out.extend_from_slice(frame),
                }
                self.expect.push_back(Expect::Reply);
            }
            frontend::DESCRIBE => {
                self.unsynced = true;
                let mapped = match extended::target(frame) {
                    Some((Target::Statement, name)) if !name.is_empty() => {
                        sides.client.get(name).cloned()
                    }
                    _ => None,
                };
                match mapped {
                    Some(prepared) => {
                        self.ensure(&prepared.name, &prepared.body, out, sides);
                        out.extend_from_slice(&extended::statement_message(
                            frontend::DESCRIBE,
                            &prepared.name,
                        ));
                    }
                    None => out.extend_from_slice(frame),
                }
                self.expect.push_back(Expect::Describe);
            }
            frontend::CLOSE => {
                self.unsynced = true;
                match extended::target(frame) {
                    Some((Target::Statement, name)) if !name.is_empty() => {
                        // The server keeps it for whoever prepares it next.
                        sides.client.close(name);
                        self.expect.push_back(Expect::Owed(&CLOSE_COMPLETE));
                    }
                    _ => {
                        self.expect.push_back(Expect::Reply);
                        out.extend_from_slice(frame);
                    }
                }
            }
            _ => unreachable!("pass() takes every other message"),
        }
    }

    /// Records what the server owes for `frame` when it goes to the server
    /// unchanged (Query, Sync, FunctionCall, Execute, Flush and the COPY
    /// messages) and returns true; false, with nothing recorded, for the
    /// messages that name statements (Parse, Bind, Describe, Close), which
    /// must go through [`Txn::forward`].
    pub fn pass(&mut self, frame: &[u8], sides: &mut Sides<'_>) -> bool {
        match frame[0] {
            frontend::QUERY => {
                self.taint(frame, sides);
                self.queries += 1;
                self.expect.push_back(Expect::Ready);
                self.unsynced = false;
            }
            frontend::SYNC | frontend::FUNCTION_CALL => {
                self.queries += 1;
                self.expect.push_back(Expect::Ready);
                self.unsynced = false;
            }
            frontend::EXECUTE => {
                self.unsynced = true;
                self.expect.push_back(Expect::Reply);
            }
            frontend::PARSE | frontend::BIND | frontend::DESCRIBE | frontend::CLOSE => {
                return false;
            }
            // Flush and the COPY messages answer nothing of their own.
            _ => {}
        }
        true
    }

    fn taint(&mut self, frame: &[u8], sides: &mut Sides<'_>) {
        if !*sides.tainted && taints(frame) {
            *sides.tainted = true;
        }
    }

    /// Prepares statement `name` on the server first when it lacks it.
    fn ensure(&mut self, name: &[u8], body: &[u8], out: &mut Vec<u8>, sides: &mut Sides<'_>) {
        if sides.server.get(name).is_none() {
            self.prepare_on_server(name, body, true, out, sides);
        }
    }

    /// Sends Close then Parse of `name` (a Close of a statement that is
    /// not there is no error, and one that is there after all is replaced),
    /// making room in the server's cache by closing the least used one.
    fn prepare_on_server(
        &mut self,
        name: &[u8],
        body: &[u8],
        own: bool,
        out: &mut Vec<u8>,
        sides: &mut Sides<'_>,
    ) {
        if let Some((evicted, ())) = sides.server.push(name.to_vec(), ())
            && evicted != name
        {
            out.extend_from_slice(&extended::statement_message(frontend::CLOSE, &evicted));
            self.expect.push_back(Expect::OwnClose);
        }
        out.extend_from_slice(&extended::statement_message(frontend::CLOSE, name));
        self.expect.push_back(Expect::OwnClose);
        out.extend_from_slice(&extended::parse_with_name(name, body));
        self.expect.push_back(Expect::Parse {
            prepares: Some(name.to_vec()),
            own,
        });
    }

    /// True when the next thing due is a reply pgshift owes the client.
    pub fn owes_now(&self) -> bool {
        !self.failed && matches!(self.expect.front(), Some(Expect::Owed(_)))
    }

    /// Takes the replies pgshift owes the client now (nothing before them
    /// is due from the server), appending them to `out`.
    pub fn take_owed(&mut self, out: &mut Vec<u8>) {
        while !self.failed
            && let Some(Expect::Owed(reply)) = self.expect.front()
        {
            out.extend_from_slice(reply);
            self.expect.pop_front();
        }
    }

    /// Handles one whole server `frame` on its way to the client: the
    /// bytes to put before it (owed replies), and whether to drop it.
    pub fn on_server_frame(
        &mut self,
        frame: &[u8],
        before: &mut Vec<u8>,
        params: [&mut Params; 2],
        sides: &mut Sides<'_>,
    ) -> bool {
        self.take_owed(before);
        let head = self.expect.front();
        let in_simple = matches!(head, Some(Expect::Ready) | None);
        match frame[0] {
            b'1' => {
                if let Some(Expect::Parse { own, .. }) = head {
                    let own = *own;
                    self.expect.pop_front();
                    return own;
                }
            }
            b'3' => match head {
                Some(Expect::OwnClose) => {
                    self.expect.pop_front();
                    return true;
                }
                Some(Expect::Reply) => {
                    self.expect.pop_front();
                }
                _ => {}
            },
            b'2' | b'C' | b'I' | b's' if !in_simple && head == Some(&Expect::Reply) => {
                self.expect.pop_front();
            }
            b'n' | b'T' if head == Some(&Expect::Describe) => {
                self.expect.pop_front();
            }
            backend::ERROR_RESPONSE if !in_simple => {
                if let Some(Expect::Parse {
                    prepares: Some(name),
                    ..
                }) = head
                {
                    sides.server.pop(name);
                    sides.client.forget_failed(name);
                }
                self.expect.pop_front();
                self.failed = true;
            }
            backend::READY_FOR_QUERY => {
                self.status = frame.get(5).copied().unwrap_or(status::IDLE);
                while let Some(expect) = self.expect.pop_front() {
                    match expect {
                        Expect::Ready => break,
                        // Skipped after an error: never prepared.
                        Expect::Parse {
                            prepares: Some(name),
                            ..
                        } => {
                            sides.server.pop(&name);
                        }
                        _ => {}
                    }
                }
                self.failed = false;
            }
            backend::PARAMETER_STATUS => {
                for p in params {
                    note_parameter(p, frame);
                }
            }
            _ => {}
        }
        false
    }

    /// True when the server can go back to the pool: every reply is in,
    /// no extended-protocol batch is open, and no transaction either.
    pub fn done(&self) -> bool {
        self.expect.is_empty() && !self.unsynced && !self.writing && self.status == status::IDLE
    }

    /// Server tags the relay must see whole: every one that ends a reply
    /// or changes what is known.
    pub fn wants_whole(&self, tag: u8) -> bool {
        self.owes_now()
            || matches!(
                tag,
                b'1' | b'2' | b'3' | b'n' | b'T' | b't' | b'C' | b'I' | b's' | b'E' | b'Z' | b'S'
            )
    }
}

#[cfg(test)]
mod tests;
