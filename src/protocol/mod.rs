//! The Postgres wire protocol without I/O, as rust-postgres's
//! `postgres-protocol`: named message tags and codes, the startup packet,
//! framing of the message stream, and the encoders of the messages pgshift
//! writes (PostgreSQL docs, "Frontend/Backend Protocol"). No socket and no
//! async runtime is touched here; `net` reads and writes the bytes.

pub mod extended;
pub mod frame;
pub mod messages;
pub mod startup;
pub mod tags;

use thiserror::Error;

pub use frame::{FrameScanner, FrameVisitor, HEADER_LEN, Want};
pub use messages::Severity;
pub use startup::{MAX_STARTUP_PACKET_LENGTH, StartupMessage, StartupPacket};

/// A framing problem in bytes received from a peer.
#[derive(Debug, Error)]
pub enum WireError {
    #[error(
        "invalid startup packet length {0}: must be between 8 and {MAX_STARTUP_PACKET_LENGTH} bytes"
    )]
    StartupLength(u32),
    #[error("the connection closed in the middle of a startup packet")]
    TruncatedStartup,
    #[error("unsupported frontend protocol {major}.{minor}: pgshift speaks protocol 3")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("invalid startup packet: {0}")]
    BadStartup(String),
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength { tag: char, len: u32 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
