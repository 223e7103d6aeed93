//! The statement and portal names inside extended-query messages (Parse,
//! Bind, Describe, Close), read and rewritten without I/O, for the
//! transaction pool that maps a client's statement names onto names of its
//! own on each server ("Extended Query"; "Message Formats").

use super::tags::frontend;

/// ParseComplete ('1', no body).
pub const PARSE_COMPLETE: [u8; 5] = [b'1', 0, 0, 0, 4];
/// CloseComplete ('3', no body).
pub const CLOSE_COMPLETE: [u8; 5] = [b'3', 0, 0, 0, 4];

/// Which kind of object a Describe or Close names: byte 'S' or 'P'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

/// The first NUL-terminated string of `body` and what follows it.
fn cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = body.iter().position(|b| *b == 0)?;
    Some((&body[..end], &body[end + 1..]))
}

fn body(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or_default()
}

/// A whole message of type `tag` with `body`.
fn frame(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 4 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(1 + len);
    out.push(tag);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// The statement name of a whole Parse frame and the rest of its body
/// (query text, NUL, parameter types). `None` when malformed.
pub fn parse_name(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    if frame.first() != Some(&frontend::PARSE) {
        return None;
    }
    cstr(body(frame))
}

/// A Parse frame for statement `name` whose body after the name is `rest`
/// (as [`parse_name`] returns it).
pub fn parse_with_name(name: &[u8], rest: &[u8]) -> Vec<u8> {
    frame(frontend::PARSE, &[name, &[0], rest])
}

/// The statement name a whole Bind frame binds. `None` when malformed.
pub fn bind_statement(frame: &[u8]) -> Option<&[u8]> {
    if frame.first() != Some(&frontend::BIND) {
        return None;
    }
    let (_portal, rest) = cstr(body(frame))?;
    Some(cstr(rest)?.0)
}

/// The Bind frame with its statement name replaced by `statement`.
pub fn bind_with_statement(frame: &[u8], statement: &[u8]) -> Option<Vec<u8>> {
    let (portal, rest) = cstr(body(frame))?;
    let (_, after) = cstr(rest)?;
    Some(self::frame(
        frontend::BIND,
        &[portal, &[0], statement, &[0], after],
    ))
}

/// What a whole Describe or Close frame names. `None` when malformed.
pub fn target(frame: &[u8]) -> Option<(Target, &[u8])> {
    let body = body(frame);
    let kind = match body.first()? {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        _ => return None,
    };
    Some((kind, cstr(&body[1..])?.0))
}

/// A Describe (`tag` 'D') or Close ('C') of statement `name`.
pub fn statement_message(tag: u8, name: &[u8]) -> Vec<u8> {
    frame(tag, &[b"S", name, &[0]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_and_replaced_without_touching_the_rest() {
        let parse = parse_with_name(b"s1", b"SELECT $1\0\0\x01\0\0\0\x17");
        let (name, rest) = parse_name(&parse).unwrap();
        assert_eq!(name, b"s1");
        assert_eq!(rest, b"SELECT $1\0\0\x01\0\0\0\x17");
        let renamed = parse_with_name(b"pgshift_ab", rest);
        assert_eq!(
            u32::from_be_bytes(renamed[1..5].try_into().unwrap()) as usize,
            renamed.len() - 1
        );

        let bind = frame(
            frontend::BIND,
            &[b"p\0s1\0", &[0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]],
        );
        assert_eq!(bind_statement(&bind), Some(&b"s1"[..]));
        let renamed = bind_with_statement(&bind, b"pgshift_ab").unwrap();
        assert_eq!(bind_statement(&renamed), Some(&b"pgshift_ab"[..]));
        assert_eq!(&renamed[5..7], b"p\0");
        assert!(renamed.ends_with(&[0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]));

        let describe = statement_message(frontend::DESCRIBE, b"s1");
        assert_eq!(target(&describe), Some((Target::Statement, &b"s1"[..])));
        let close = frame(frontend::CLOSE, &[b"Pportal\0"]);
        assert_eq!(target(&close), Some((Target::Portal, &b"portal"[..])));
    }

    #[test]
    fn malformed_messages_give_none() {
        assert_eq!(parse_name(b"P\0\0\0\x06ab"), None);
        assert_eq!(bind_statement(b"B\0\0\0\x06p\0"), None);
        assert_eq!(target(b"D\0\0\0\x06X\0"), None);
        assert_eq!(target(b"D\0\0\0\x04"), None);
    }
}
