use super::*;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}

fn bind(stmt: &str) -> Vec<u8> {
    msg(b'B', format!("\0{stmt}\0\0\0\0\0\0\0").as_bytes())
}

/// The tags of the messages in `bytes`, with each statement name a
/// message carries (Parse, Bind, Describe and Close).
fn tags(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        let frame = &bytes[..1 + len];
        let name = match frame[0] {
            b'P' => extended::parse_name(frame).map(|(n, _)| n.to_vec()),
            b'B' => extended::bind_statement(frame).map(<[u8]>::to_vec),
            b'D' | b'C' => extended::target(frame).map(|(_, n)| n.to_vec()),
            _ => None,
        };
        let name = name
            .map(|n| {
                let n = String::from_utf8(n).unwrap();
                if n.starts_with("pgshift_") {
                    "pgshift".to_string()
                } else {
                    n
                }
            })
            .unwrap_or_default();
        out.push(format!(
            "{}{}",
            frame[0] as char,
            if name.is_empty() {
                String::new()
            } else {
                format!("({name})")
            }
        ));
        bytes = &bytes[1 + len..];
    }
    out
}

struct World {
    txn: Txn,
    client: ClientStatements,
    server: LruCache<Vec<u8>, ()>,
    tainted: bool,
    params: (Params, Params),
}

impl World {
    fn new(capacity: usize) -> World {
        World {
            txn: Txn::default(),
            client: ClientStatements::default(),
            server: LruCache::new(std::num::NonZeroUsize::new(capacity).unwrap()),
            tainted: false,
            params: Default::default(),
        }
    }

    /// Forwards the client's messages; returns what the server receives.
    fn send(&mut self, frames: &[Vec<u8>]) -> Vec<String> {
        let mut out = Vec::new();
        let mut sides = Sides {
            client: &mut self.client,
            server: &mut self.server,
            tainted: &mut self.tainted,
        };
        for frame in frames {
            self.txn.forward(frame, &mut out, &mut sides);
        }
        tags(&out)
    }

    /// Feeds the server's replies (one tag each, 'Z' idle); returns what
    /// the client receives.
    fn reply(&mut self, replies: &str) -> Vec<String> {
        let mut out = Vec::new();
        for tag in replies.bytes() {
            let frame = if tag == b'Z' {
                msg(b'Z', b"I")
            } else {
                msg(tag, b"")
            };
            let mut before = Vec::new();
            let mut sides = Sides {
                client: &mut self.client,
                server: &mut self.server,
                tainted: &mut self.tainted,
            };
            let (a, b) = (&mut self.params.0, &mut self.params.1);
            let drop = self
                .txn
                .on_server_frame(&frame, &mut before, [a, b], &mut sides);
            out.extend_from_slice(&before);
            if !drop {
                out.extend_from_slice(&frame);
            }
        }
        self.txn.take_owed(&mut out);
        tags(&out)
    }
}

#[test]
fn a_named_statement_is_prepared_once_per_server_and_answered_in_order() {
    let mut w = World::new(10);
    let batch = [
        parse("s1", "SELECT 1"),
        bind("s1"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ];
    assert_eq!(
        w.send(&batch),
        ["C(pgshift)", "P(pgshift)", "B(pgshift)", "E", "S"]
    );
    assert_eq!(w.reply("312CZ"), ["1", "2", "C", "Z"]);
    assert!(w.txn.done());

    // Prepared again (another client, the same text): the server has it.
    assert_eq!(w.send(&batch), ["B(pgshift)", "E", "S"]);
    assert_eq!(w.reply("2CZ"), ["1", "2", "C", "Z"]);
    assert!(w.txn.done());
}

#[test]
fn a_server_without_the_statement_gets_it_before_the_bind() {
    let mut w = World::new(10);
    w.send(&[parse("s1", "SELECT 1"), msg(b'S', b"")]);
    w.reply("31Z");
    w.server.clear();
    let batch = [bind("s1"), msg(b'E', b"\0\0\0\0\0"), msg(b'S', b"")];
    assert_eq!(
        w.send(&batch),
        ["C(pgshift)", "P(pgshift)", "B(pgshift)", "E", "S"]
    );
    // pgshift's own Close and Parse answer nothing the client sees.
    assert_eq!(w.reply("312CZ"), ["2", "C", "Z"]);
}

#[test]
fn a_failed_parse_is_forgotten_and_the_rest_of_the_batch_answers_nothing() {
    let mut w = World::new(10);
    let batch = [
        parse("bad", "SELEC 1"),
        bind("bad"),
        parse("s2", "SELECT 2"),
        msg(b'S', b""),
    ];
    w.send(&batch);
    // Close, then the Parse fails: Bind, Close and Parse of s2 are skipped.
    assert_eq!(w.reply("3EZ"), ["E", "Z"]);
    assert!(w.server.is_empty(), "neither statement is on the server");
    assert!(w.client.get(b"bad").is_none());
    assert!(w.txn.done());
    // s2 is prepared again when it is next used.
    let next = w.send(&[bind("s2"), msg(b'S', b"")]);
    assert_eq!(next, ["C(pgshift)", "P(pgshift)", "B(pgshift)", "S"]);
}

#[test]
fn a_close_of_a_statement_is_answered_by_pgshift_and_the_server_keeps_it() {
    let mut w = World::new(10);
    w.send(&[parse("s1", "SELECT 1"), msg(b'S', b"")]);
    w.reply("31Z");
    let close = msg(b'C', b"Ss1\0");
    assert_eq!(w.send(&[close, msg(b'H', b"")]), ["H"]);
    assert_eq!(w.reply(""), ["3"]);
    assert_eq!(w.server.len(), 1);
    assert!(w.client.is_empty());
}

#[test]
fn the_least_used_statement_is_closed_to_make_room() {
    let mut w = World::new(1);
    w.send(&[parse("a", "SELECT 1"), msg(b'S', b"")]);
    w.reply("31Z");
    let sent = w.send(&[parse("b", "SELECT 2"), msg(b'S', b"")]);
    assert_eq!(sent, ["C(pgshift)", "C(pgshift)", "P(pgshift)", "S"]);
    assert_eq!(w.reply("331Z"), ["1", "Z"]);
    assert_eq!(w.server.len(), 1);
}

#[test]
fn statements_that_may_move_the_search_path_taint_the_server() {
    let mut w = World::new(4);
    w.send(&[msg(b'Q', b"select 1\0")]);
    assert!(!w.tainted);
    w.send(&[msg(b'Q', b"SET search_path = other\0")]);
    assert!(w.tainted);
    let mut w = World::new(4);
    w.send(&[msg(b'Q', b"DEALLOCATE ALL\0")]);
    assert!(w.tainted);
}

#[test]
fn simple_queries_keep_their_row_descriptions_and_errors() {
    let mut w = World::new(4);
    w.send(&[msg(b'Q', b"select 1; select 2\0")]);
    assert_eq!(w.reply("TDCTEZ"), ["T", "D", "C", "T", "E", "Z"]);
    assert!(w.txn.done());
}
