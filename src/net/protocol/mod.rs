//! Wire protocol v1 (specified in `docs/protocol.md`).
//!
//! The viewer speaks first with a `ClientHello`; the server answers with a
//! `ServerHello` that describes the stream (or refuses); then the server sends
//! packets, each a fixed 24-byte header and a payload. All integers little-endian.
//!
//! Parsing follows one rule: read a fixed header, check every length in it against
//! a limit, and only then read (or allocate for) what it announces.
//!
//! This file holds what both kinds of message share: the constants, the
//! [`Status`] a server answers with, and [`ProtocolError`]. The hellos are in
//! `hello.rs`, the packets in `packet.rs`; both are re-exported here, so callers
//! name everything `crate::net::protocol::X`. Pure functions over readers and
//! writers: no threads; each runs on the connection thread that calls it (the
//! server's connection and `viewer-rx` threads, the viewer's `net-reader`).
//!
//! When pairing is on, these bytes travel inside the records of `crate::secure`;
//! this module does not know about it (it reads and writes any `Read`/`Write`).

use std::io::Read;

use crate::media::frame::GeometryError;
use crate::net::io;

#[cfg(test)]
mod fuzz;
mod hello;
mod packet;

pub use hello::{ClientHello, ServerHello};
pub use packet::{
    link, pong, read_packet, read_upstream, timing, write_end, write_keyframe_request,
    write_packet, write_ping, write_report, Packet, PacketHeader, Rendition, Report, Upstream,
};

pub const MAGIC: [u8; 4] = *b"LSTR";
/// The first four bytes of the secure layer's hellos (`crate::secure`, which
/// rides on this module's readers and writers). Kept here, beside [`MAGIC`], so
/// that the sniffer knows every first byte without importing the layer above.
pub const SECURE_MAGIC: [u8; 4] = *b"LSEC";
pub const VERSION: u16 = 1;

pub const CLIENT_HELLO_LEN: usize = 12;
pub const SERVER_HELLO_LEN: usize = 48;
pub const PACKET_HEADER_LEN: usize = 24;

/// Longest codec name.
pub const MAX_CODEC_NAME: usize = 32;
/// Longest stream name or refusal message.
pub const MAX_MESSAGE: usize = 1024;
/// Longest extension block in a hello.
pub const MAX_EXTENSIONS: usize = 4096;
/// Longest payload of a packet type this version does not know (it is skipped).
pub const MAX_UNKNOWN_PAYLOAD: usize = 64 << 10;

/// Packet types, server → viewer.
pub const PACKET_FRAME: u8 = 1;
pub const PACKET_END: u8 = 2;
/// When the server encoded and started sending the frame that follows.
pub const PACKET_TIMING: u8 = 3;
/// The answer to a ping: when the server received it and when it sent this.
pub const PACKET_PONG: u8 = 4;
/// What the server estimates this viewer's link carries (about once a second).
pub const PACKET_LINK: u8 = 5;
/// The frames that follow are of another rendition: their picture size and
/// bitrate (sent only to a viewer whose hello offered [`EXT_RENDITIONS`]).
pub const PACKET_RENDITION: u8 = 6;
/// Packet types, viewer → server.
pub const PACKET_PING: u8 = 16;
/// The viewer's own latency figures, for the server's stats.
pub const PACKET_REPORT: u8 = 17;
/// The viewer lost the chain of an inter-frame stream (its decoder failed):
/// send it nothing more until a keyframe, and make one soon.
pub const PACKET_KEYFRAME_REQUEST: u8 = 18;
/// Longest payload of a viewer → server packet (others are a protocol error).
pub const MAX_UPSTREAM_PAYLOAD: usize = 64;
/// Payload lengths of the fixed-size packets.
pub const TIMING_LEN: usize = 8;
pub const PONG_LEN: usize = 16;
pub const LINK_LEN: usize = 16;
pub const RENDITION_LEN: usize = 16;
/// Client hello extension (type u16, length u16, data): the viewer takes
/// pictures smaller than the stream's, announced by rendition packets, and
/// shows them at the stream's size. No data.
pub const EXT_RENDITIONS: u16 = 1;
/// Link packet payload flag: the estimate was measured with the link the
/// limit (else the link carries at least that much).
pub const LINK_MEASURED: u32 = 1;
pub const REPORT_LEN: usize = 32;

/// Frame packet flag: frames were dropped for this viewer just before this one.
pub const FLAG_DROPPED_BEFORE: u8 = 1;
/// Frame packet flag: the payload decodes without any earlier one (every frame
/// of an intra-only codec; an IDR of H.264). Servers before it never set it.
pub const FLAG_KEYFRAME: u8 = 4;
/// End packet flag: the stream is over for good (the source ended); without it the
/// server is only going away (shutdown, restart) and a viewer may reconnect.
pub const FLAG_FINAL: u8 = 2;

/// The server's answer to a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// Too many viewers.
    Busy = 1,
    /// The viewer's protocol version is not supported.
    Version = 2,
    /// The stream is over (a finite source has ended): do not retry.
    Ended = 3,
    /// Refused for another reason, given in the message.
    Refused = 4,
    /// This server needs pairing and encryption, and the viewer spoke plaintext.
    Unauthorized = 5,
}

impl Status {
    fn from_u8(v: u8) -> Option<Status> {
        [
            Status::Ok,
            Status::Busy,
            Status::Version,
            Status::Ended,
            Status::Refused,
            Status::Unauthorized,
        ]
        .into_iter()
        .find(|s| *s as u8 == v)
    }
}

/// A peer broke the protocol, or the connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("bad magic {0:02x?}: not a livestream peer")]
    BadMagic([u8; 4]),
    #[error("protocol version {0} is not supported (this side speaks {VERSION})")]
    Version(u16),
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("unknown pixel format {0:02x?}")]
    UnknownFormat([u8; 4]),
    #[error("bad stream geometry: {0}")]
    Geometry(#[from] GeometryError),
    #[error("the server refused: {status:?}: {message}")]
    Refused { status: Status, message: String },
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("the connection closed {0}")]
    Closed(&'static str),
    #[error(transparent)]
    Io(std::io::Error),
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => ProtocolError::Timeout,
            ErrorKind::UnexpectedEof => ProtocolError::Closed("in the middle of a message"),
            _ => ProtocolError::Io(e),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|i| b[at + i]))
}

/// Reads `len` bytes (already checked against a limit) and drops them.
fn skip(r: &mut impl Read, len: usize) -> Result<(), ProtocolError> {
    Ok(io::skip(r, len)?)
}

/// `read_exact` for the first bytes of a message: a connection closed before any
/// byte is a clean close, not a torn message.
fn read_first(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    if io::read_first(r, buf)? {
        Ok(())
    } else {
        Err(ProtocolError::Closed("by the peer"))
    }
}
