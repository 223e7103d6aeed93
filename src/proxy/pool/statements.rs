//! A pooled client's prepared statements: its names mapped onto pgshift's
//! names on the servers, which are derived from the statement itself, so
//! that clients preparing the same text share one server statement and a
//! statement missing on a server can be prepared there again.

use std::collections::HashMap;
use std::sync::Arc;

/// A statement a client prepared under a name of its own.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// pgshift's name for it on every server.
    pub name: Arc<[u8]>,
    /// The Parse body after the name: query text, NUL, parameter types.
    pub body: Arc<[u8]>,
}

/// A client's named statements, by the client's name.
#[derive(Debug, Default)]
pub struct ClientStatements {
    map: HashMap<Vec<u8>, Prepared>,
}

/// pgshift's name for a statement whose Parse body (after the name) is
/// `body`: `pgshift_` and 128 bits of its SHA-256, so that two texts never
/// share a name in practice.
pub fn server_name(body: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut name = b"pgshift_".to_vec();
    for byte in &digest.as_ref()[..16] {
        name.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    name
}

impl ClientStatements {
    /// Records that the client prepared `body` as `name`; returns it.
    pub fn prepare(&mut self, name: &[u8], body: &[u8]) -> Prepared {
        let prepared = Prepared {
            name: server_name(body).into(),
            body: body.into(),
        };
        self.map.insert(name.to_vec(), prepared.clone());
        prepared
    }

    /// The statement the client calls `name`, if it prepared one.
    pub fn get(&self, name: &[u8]) -> Option<&Prepared> {
        self.map.get(name)
    }

    /// Forgets the client's statement `name` (a Close, or a failed Parse).
    pub fn close(&mut self, name: &[u8]) {
        self.map.remove(name);
    }

    /// Forgets the client's statement `name` if it still maps to `server`.
    pub fn forget_failed(&mut self, server: &[u8]) {
        self.map.retain(|_, p| &*p.name != server);
    }

    /// How many statements the client has prepared.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the client has no statement prepared.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_statement_not_the_client() {
        let mut a = ClientStatements::default();
        let mut b = ClientStatements::default();
        let one = a.prepare(b"s1", b"SELECT 1\0\0\0");
        let same = b.prepare(b"other", b"SELECT 1\0\0\0");
        let two = a.prepare(b"s2", b"SELECT 2\0\0\0");
        assert_eq!(one.name, same.name);
        assert_ne!(one.name, two.name);
        assert_eq!(one.name.len(), "pgshift_".len() + 32);
        a.close(b"s1");
        assert!(a.get(b"s1").is_none());
        a.forget_failed(&two.name);
        assert!(a.is_empty());
    }
}
