//! Wire protocol v1 (specified in `docs/protocol.md`).
//!
//! The viewer speaks first with a `ClientHello`; the server answers with a
//! `ServerHello` that describes the stream (or refuses); then the server sends
//! packets, each a fixed 24-byte header and a payload. All integers little-endian.
//!
//! Parsing follows one rule: read a fixed header, check every length in it against
//! a limit, and only then read (or allocate for) what it announces.

use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use crate::media::frame::{FrameInfo, GeometryError, Limits, PixelFormat};

pub const MAGIC: [u8; 4] = *b"LSTR";
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
/// Packet types, viewer → server.
pub const PACKET_PING: u8 = 16;
/// The viewer's own latency figures, for the server's stats.
pub const PACKET_REPORT: u8 = 17;
/// Longest payload of a viewer → server packet (others are a protocol error).
pub const MAX_UPSTREAM_PAYLOAD: usize = 64;
/// Payload lengths of the fixed-size packets.
pub const TIMING_LEN: usize = 8;
pub const PONG_LEN: usize = 16;
pub const REPORT_LEN: usize = 32;

/// Frame packet flag: frames were dropped for this viewer just before this one.
pub const FLAG_DROPPED_BEFORE: u8 = 1;
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
    Secure(#[from] crate::secure::SecureError),
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for ProtocolError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ProtocolError::Timeout,
            io::ErrorKind::UnexpectedEof => ProtocolError::Closed("in the middle of a message"),
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
    let copied = io::copy(&mut r.take(len as u64), &mut io::sink())?;
    if copied as usize != len {
        return Err(ProtocolError::Closed("in the middle of a message"));
    }
    Ok(())
}

// ---- hello messages -------------------------------------------------------------

/// What the viewer says first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The highest protocol version the viewer speaks.
    pub version: u16,
}

impl ClientHello {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let mut b = [0u8; CLIENT_HELLO_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        w.write_all(&b)
    }

    /// Reads a hello. A version other than ours is returned, not refused: the
    /// server answers it with [`Status::Version`].
    pub fn read(r: &mut impl Read) -> Result<ClientHello, ProtocolError> {
        let mut b = [0u8; CLIENT_HELLO_LEN];
        read_first(r, &mut b)?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let ext_len = u16_at(&b, 8) as usize;
        if ext_len > MAX_EXTENSIONS {
            return Err(ProtocolError::TooLong {
                what: "hello extension block",
                len: ext_len,
                max: MAX_EXTENSIONS,
            });
        }
        // v1 defines no extensions: skip them (room for auth, encryption, ...).
        skip(r, ext_len)?;
        Ok(ClientHello {
            version: u16_at(&b, 4),
        })
    }
}

/// The server's description of its stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerHello {
    pub status: Status,
    pub codec: String,
    pub frame: FrameInfo,
    pub fps: f64,
    /// Largest payload the server will send (informative: the viewer computes its own bound).
    pub max_payload: u32,
    /// The server's monotonic clock when it sent this, µs.
    pub server_time_us: u64,
    /// The stream's name, or why the server refused.
    pub message: String,
}

impl ServerHello {
    pub fn refusal(status: Status, message: String) -> ServerHello {
        ServerHello {
            status,
            codec: String::new(),
            frame: FrameInfo {
                format: PixelFormat::Rgb24,
                width: 0,
                height: 0,
                stride: 0,
            },
            fps: 0.0,
            max_payload: 0,
            server_time_us: crate::media::clock::now_us(),
            message,
        }
    }

    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let codec = &self.codec.as_bytes()[..self.codec.len().min(MAX_CODEC_NAME)];
        let mut message = &self.message.as_bytes()[..self.message.len().min(MAX_MESSAGE)];
        while std::str::from_utf8(message).is_err() {
            message = &message[..message.len() - 1];
        }
        let mut b = Vec::with_capacity(SERVER_HELLO_LEN + codec.len() + message.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.push(self.status as u8);
        b.push(codec.len() as u8);
        b.extend_from_slice(&self.frame.format.fourcc());
        b.extend_from_slice(&self.frame.width.to_le_bytes());
        b.extend_from_slice(&self.frame.height.to_le_bytes());
        b.extend_from_slice(&self.frame.stride.to_le_bytes());
        b.extend_from_slice(&((self.fps * 1000.0).round() as u32).to_le_bytes());
        b.extend_from_slice(&self.max_payload.to_le_bytes());
        b.extend_from_slice(&self.server_time_us.to_le_bytes());
        b.extend_from_slice(&(message.len() as u16).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes()); // extension block length
        b.extend_from_slice(&[0; 4]);
        debug_assert_eq!(b.len(), SERVER_HELLO_LEN);
        b.extend_from_slice(codec);
        b.extend_from_slice(message);
        w.write_all(&b)
    }

    /// Reads and validates a hello. A refusal comes back as [`ProtocolError::Refused`].
    pub fn read(r: &mut impl Read, limits: &Limits) -> Result<ServerHello, ProtocolError> {
        let mut b = [0u8; SERVER_HELLO_LEN];
        read_first(r, &mut b)?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let version = u16_at(&b, 4);
        if version != VERSION {
            return Err(ProtocolError::Version(version));
        }
        let status = Status::from_u8(b[6]).ok_or_else(|| ProtocolError::Invalid {
            what: "hello status",
            why: format!("unknown status {}", b[6]),
        })?;
        let codec_len = b[7] as usize;
        let message_len = u16_at(&b, 40) as usize;
        let ext_len = u16_at(&b, 42) as usize;
        for (what, len, max) in [
            ("codec name", codec_len, MAX_CODEC_NAME),
            ("stream name", message_len, MAX_MESSAGE),
            ("hello extension block", ext_len, MAX_EXTENSIONS),
        ] {
            if len > max {
                return Err(ProtocolError::TooLong { what, len, max });
            }
        }
        let mut text = [0u8; MAX_CODEC_NAME + MAX_MESSAGE];
        r.read_exact(&mut text[..codec_len + message_len])?;
        skip(r, ext_len)?;
        let message = std::str::from_utf8(&text[codec_len..codec_len + message_len])
            .map_err(|e| ProtocolError::Invalid {
                what: "stream name",
                why: e.to_string(),
            })?
            .to_string();
        if status != Status::Ok {
            return Err(ProtocolError::Refused { status, message });
        }
        let codec = &text[..codec_len];
        if codec.is_empty()
            || !codec
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        {
            return Err(ProtocolError::Invalid {
                what: "codec name",
                why: format!("{:?}", String::from_utf8_lossy(codec)),
            });
        }
        let fourcc = [b[8], b[9], b[10], b[11]];
        let format =
            PixelFormat::from_fourcc(fourcc).ok_or(ProtocolError::UnknownFormat(fourcc))?;
        let frame = FrameInfo {
            format,
            width: u32_at(&b, 12),
            height: u32_at(&b, 16),
            stride: u32_at(&b, 20),
        };
        frame.validate(limits)?;
        Ok(ServerHello {
            status,
            codec: String::from_utf8_lossy(codec).into_owned(),
            frame,
            fps: u32_at(&b, 24) as f64 / 1000.0,
            max_payload: u32_at(&b, 28),
            server_time_us: u64_at(&b, 32),
            message,
        })
    }
}

/// `read_exact` for the first bytes of a message: a connection closed before any
/// byte is a clean close, not a torn message.
fn read_first(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(ProtocolError::Closed("by the peer")),
            Ok(0) => return Err(ProtocolError::Closed("in the middle of a message")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// ---- packets --------------------------------------------------------------------

/// The fixed part of every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    pub kind: u8,
    pub flags: u8,
    pub len: u32,
    pub seq: u64,
    pub capture_us: u64,
}

impl PacketHeader {
    pub fn encode(&self) -> [u8; PACKET_HEADER_LEN] {
        let mut b = [0u8; PACKET_HEADER_LEN];
        b[0] = self.kind;
        b[1] = self.flags;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.capture_us.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; PACKET_HEADER_LEN]) -> PacketHeader {
        PacketHeader {
            kind: b[0],
            flags: b[1],
            len: u32_at(b, 4),
            seq: u64_at(b, 8),
            capture_us: u64_at(b, 16),
        }
    }
}

/// A packet as the viewer sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// A frame; its payload was read into the caller's buffer.
    Frame(PacketHeader),
    /// The stream is over: `final_` when the source ended, else the server is
    /// going away and may come back.
    End { message: String, final_: bool },
    /// Server times of the frame that follows (server clock, µs).
    Timing {
        seq: u64,
        encoded_us: u64,
        sent_us: u64,
    },
    /// The answer to ping `id` sent at `t1` (viewer clock): received at `t2` and
    /// answered at `t3` (server clock).
    Pong { id: u64, t1: u64, t2: u64, t3: u64 },
}

/// What a viewer sends the server after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// Ping `id`, sent at `t1` on the viewer's clock.
    Ping {
        id: u64,
        t1: u64,
    },
    Report(Report),
}

/// A viewer's latency over its last few seconds, capture to presented, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub last_us: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    /// Frames presented in that time.
    pub frames: u64,
}

impl Report {
    pub fn encode(&self) -> [u8; REPORT_LEN] {
        let mut b = [0u8; REPORT_LEN];
        for (i, v) in [self.last_us, self.p50_us, self.p95_us, self.frames]
            .into_iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8; REPORT_LEN]) -> Report {
        Report {
            last_us: u64_at(b, 0),
            p50_us: u64_at(b, 8),
            p95_us: u64_at(b, 16),
            frames: u64_at(b, 24),
        }
    }
}

/// Reads a fixed-size payload, checking the announced length first.
fn fixed<const N: usize>(
    r: &mut impl Read,
    len: usize,
    what: &'static str,
) -> Result<[u8; N], ProtocolError> {
    if len != N {
        return Err(ProtocolError::Invalid {
            what,
            why: format!("payload of {len} bytes, expected {N}"),
        });
    }
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// Reads the next packet a viewer sent after the handshake (server side).
/// Unknown types up to [`MAX_UPSTREAM_PAYLOAD`] bytes are skipped; anything
/// longer is a protocol error.
pub fn read_upstream(r: &mut impl Read) -> Result<Upstream, ProtocolError> {
    loop {
        let mut b = [0u8; PACKET_HEADER_LEN];
        read_first(r, &mut b)?;
        let h = PacketHeader::decode(&b);
        let len = h.len as usize;
        if len > MAX_UPSTREAM_PAYLOAD {
            return Err(ProtocolError::TooLong {
                what: "viewer packet",
                len,
                max: MAX_UPSTREAM_PAYLOAD,
            });
        }
        match h.kind {
            PACKET_PING => {
                fixed::<0>(r, len, "ping")?;
                return Ok(Upstream::Ping {
                    id: h.seq,
                    t1: h.capture_us,
                });
            }
            PACKET_REPORT => {
                let b = fixed::<REPORT_LEN>(r, len, "report")?;
                return Ok(Upstream::Report(Report::decode(&b)));
            }
            _ => skip(r, len)?,
        }
    }
}

/// Writes a ping (viewer side).
pub fn write_ping(w: &mut impl Write, id: u64, t1: u64) -> io::Result<()> {
    let header = PacketHeader {
        kind: PACKET_PING,
        flags: 0,
        len: 0,
        seq: id,
        capture_us: t1,
    };
    w.write_all(&header.encode())
}

/// Writes a latency report (viewer side).
pub fn write_report(w: &mut impl Write, report: &Report) -> io::Result<()> {
    let header = PacketHeader {
        kind: PACKET_REPORT,
        flags: 0,
        len: REPORT_LEN as u32,
        seq: 0,
        capture_us: 0,
    };
    write_packet(w, &header, &report.encode())
}

/// The bytes of a pong (server side): header and payload.
pub fn pong(id: u64, t1: u64, t2: u64, t3: u64) -> [u8; PACKET_HEADER_LEN + PONG_LEN] {
    let mut b = [0u8; PACKET_HEADER_LEN + PONG_LEN];
    b[..PACKET_HEADER_LEN].copy_from_slice(
        &PacketHeader {
            kind: PACKET_PONG,
            flags: 0,
            len: PONG_LEN as u32,
            seq: id,
            capture_us: t1,
        }
        .encode(),
    );
    b[24..32].copy_from_slice(&t2.to_le_bytes());
    b[32..40].copy_from_slice(&t3.to_le_bytes());
    b
}

/// The bytes of a timing packet (server side), sent just before frame `seq`.
pub fn timing(seq: u64, encoded_us: u64, sent_us: u64) -> [u8; PACKET_HEADER_LEN + TIMING_LEN] {
    let mut b = [0u8; PACKET_HEADER_LEN + TIMING_LEN];
    b[..PACKET_HEADER_LEN].copy_from_slice(
        &PacketHeader {
            kind: PACKET_TIMING,
            flags: 0,
            len: TIMING_LEN as u32,
            seq,
            capture_us: encoded_us,
        }
        .encode(),
    );
    b[24..32].copy_from_slice(&sent_us.to_le_bytes());
    b
}

/// Reads the next packet the viewer understands, skipping (bounded) packets of
/// types this version does not know. Frame payloads go into `payload`, whose
/// length is checked against `max_payload` before it is resized.
pub fn read_packet(
    r: &mut impl Read,
    max_payload: usize,
    payload: &mut Vec<u8>,
) -> Result<Packet, ProtocolError> {
    loop {
        let mut b = [0u8; PACKET_HEADER_LEN];
        read_first(r, &mut b)?;
        let h = PacketHeader::decode(&b);
        let len = h.len as usize;
        match h.kind {
            PACKET_FRAME => {
                if len > max_payload {
                    return Err(ProtocolError::TooLong {
                        what: "frame payload",
                        len,
                        max: max_payload,
                    });
                }
                // Grown by doubling, as a Vec does, but never past the limit; a
                // buffer already big enough is reused as it is.
                if payload.capacity() < len {
                    let target = len.max(payload.capacity() * 2).min(max_payload);
                    payload.clear();
                    payload.reserve_exact(target);
                }
                payload.resize(len, 0);
                r.read_exact(payload)?;
                return Ok(Packet::Frame(h));
            }
            PACKET_END => {
                if len > MAX_MESSAGE {
                    return Err(ProtocolError::TooLong {
                        what: "end message",
                        len,
                        max: MAX_MESSAGE,
                    });
                }
                let mut text = [0u8; MAX_MESSAGE];
                r.read_exact(&mut text[..len])?;
                return Ok(Packet::End {
                    message: String::from_utf8_lossy(&text[..len]).into_owned(),
                    final_: h.flags & FLAG_FINAL != 0,
                });
            }
            PACKET_TIMING => {
                let b = fixed::<TIMING_LEN>(r, len, "timing packet")?;
                return Ok(Packet::Timing {
                    seq: h.seq,
                    encoded_us: h.capture_us,
                    sent_us: u64_at(&b, 0),
                });
            }
            PACKET_PONG => {
                let b = fixed::<PONG_LEN>(r, len, "pong")?;
                return Ok(Packet::Pong {
                    id: h.seq,
                    t1: h.capture_us,
                    t2: u64_at(&b, 0),
                    t3: u64_at(&b, 8),
                });
            }
            _ => {
                if len > MAX_UNKNOWN_PAYLOAD {
                    return Err(ProtocolError::TooLong {
                        what: "packet of unknown type",
                        len,
                        max: MAX_UNKNOWN_PAYLOAD,
                    });
                }
                skip(r, len)?;
            }
        }
    }
}

/// Writes a header and its payload with as few system calls as the socket allows.
pub fn write_packet(w: &mut impl Write, header: &PacketHeader, payload: &[u8]) -> io::Result<()> {
    let head = header.encode();
    write_all_vectored(w, &mut [IoSlice::new(&head), IoSlice::new(payload)])
}

/// `write_all` for several buffers at once (one `writev` when the socket takes it all).
pub fn write_all_vectored(w: &mut impl Write, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut bufs = bufs;
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes an end-of-stream packet.
pub fn write_end(w: &mut impl Write, message: &str, final_: bool) -> io::Result<()> {
    let mut text = &message.as_bytes()[..message.len().min(MAX_MESSAGE)];
    while std::str::from_utf8(text).is_err() {
        text = &text[..text.len() - 1];
    }
    let header = PacketHeader {
        kind: PACKET_END,
        flags: if final_ { FLAG_FINAL } else { 0 },
        len: text.len() as u32,
        seq: 0,
        capture_us: 0,
    };
    write_packet(w, &header, text)
}

/// A reader over a TCP stream that gives up at a deadline for the whole message,
/// not per `read` call: a peer that sends a byte a second cannot hold a
/// connection open forever.
pub struct DeadlineReader<'a> {
    pub stream: &'a std::net::TcpStream,
    pub deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        (&*self.stream).read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> ServerHello {
        ServerHello {
            status: Status::Ok,
            codec: "lz4".into(),
            frame: FrameInfo::packed(PixelFormat::Nv12, 640, 480).unwrap(),
            fps: 29.97,
            max_payload: 1 << 20,
            server_time_us: 123_456_789,
            message: "kitchen ☕".into(),
        }
    }

    #[test]
    fn hellos_round_trip() {
        let mut b = Vec::new();
        ClientHello { version: 1 }.write(&mut b).unwrap();
        assert_eq!(b.len(), CLIENT_HELLO_LEN);
        assert_eq!(
            ClientHello::read(&mut &b[..]).unwrap(),
            ClientHello { version: 1 }
        );

        let mut b = Vec::new();
        hello().write(&mut b).unwrap();
        let back = ServerHello::read(&mut &b[..], &Limits::default()).unwrap();
        assert_eq!(back, hello());
    }

    /// The byte layout is the one `docs/protocol.md` documents.
    #[test]
    fn golden_bytes() {
        let mut b = Vec::new();
        ClientHello { version: 1 }.write(&mut b).unwrap();
        assert_eq!(b, b"LSTR\x01\x00\x00\x00\x00\x00\x00\x00");
        let h = PacketHeader {
            kind: PACKET_FRAME,
            flags: FLAG_DROPPED_BEFORE,
            len: 0x0102_0304,
            seq: 5,
            capture_us: 0x1122_3344_5566_7788,
        };
        assert_eq!(
            h.encode(),
            [
                1, 1, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
                0x22, 0x11
            ]
        );
        let mut b = Vec::new();
        hello().write(&mut b).unwrap();
        assert_eq!(&b[..8], b"LSTR\x01\x00\x00\x03");
        assert_eq!(&b[8..12], b"NV12");
        assert_eq!(&b[12..16], &640u32.to_le_bytes());
        assert_eq!(&b[24..28], &29970u32.to_le_bytes());
        assert_eq!(&b[48..51], b"lz4");

        // Clock sync and timing packets.
        let t = timing(5, 0x10, 0x20);
        assert_eq!(&t[..8], &[3, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(&t[8..16], &5u64.to_le_bytes());
        assert_eq!(&t[16..24], &0x10u64.to_le_bytes());
        assert_eq!(&t[24..32], &0x20u64.to_le_bytes());
        let p = pong(7, 1, 2, 3);
        assert_eq!(&p[..8], &[4, 0, 0, 0, 16, 0, 0, 0]);
        assert_eq!(
            &p[24..40],
            &[2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut b = Vec::new();
        write_ping(&mut b, 9, 0x55).unwrap();
        assert_eq!(&b[..8], &[16, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &b[8..24],
            &[9, 0, 0, 0, 0, 0, 0, 0, 0x55, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn clock_packets_round_trip_and_are_checked() {
        let mut b = Vec::new();
        b.extend_from_slice(&timing(5, 10, 20));
        b.extend_from_slice(&pong(7, 1, 2, 3));
        let mut payload = Vec::new();
        let mut r = &b[..];
        assert_eq!(
            read_packet(&mut r, 100, &mut payload).unwrap(),
            Packet::Timing {
                seq: 5,
                encoded_us: 10,
                sent_us: 20
            }
        );
        assert_eq!(
            read_packet(&mut r, 100, &mut payload).unwrap(),
            Packet::Pong {
                id: 7,
                t1: 1,
                t2: 2,
                t3: 3
            }
        );
        // A timing packet of the wrong size is an error, not a misread.
        let mut bad = timing(5, 10, 20).to_vec();
        bad[4] = 9;
        bad.push(0);
        assert!(read_packet(&mut &bad[..], 100, &mut payload).is_err());

        let report = Report {
            last_us: 1,
            p50_us: 2,
            p95_us: 3,
            frames: 4,
        };
        let mut up = Vec::new();
        write_ping(&mut up, 3, 99).unwrap();
        write_report(&mut up, &report).unwrap();
        // An unknown small packet is skipped; a long one is refused.
        write_packet(
            &mut up,
            &PacketHeader {
                kind: 99,
                flags: 0,
                len: 8,
                seq: 0,
                capture_us: 0,
            },
            &[0; 8],
        )
        .unwrap();
        write_ping(&mut up, 4, 100).unwrap();
        let mut r = &up[..];
        assert_eq!(
            read_upstream(&mut r).unwrap(),
            Upstream::Ping { id: 3, t1: 99 }
        );
        assert_eq!(read_upstream(&mut r).unwrap(), Upstream::Report(report));
        assert_eq!(
            read_upstream(&mut r).unwrap(),
            Upstream::Ping { id: 4, t1: 100 }
        );
        let mut long = Vec::new();
        write_packet(
            &mut long,
            &PacketHeader {
                kind: 99,
                flags: 0,
                len: 1000,
                seq: 0,
                capture_us: 0,
            },
            &[0; 1000],
        )
        .unwrap();
        assert!(matches!(
            read_upstream(&mut &long[..]),
            Err(ProtocolError::TooLong { .. })
        ));
    }

    #[test]
    fn refusal_is_reported_with_its_message() {
        let mut b = Vec::new();
        ServerHello::refusal(Status::Busy, "16 viewers already".into())
            .write(&mut b)
            .unwrap();
        match ServerHello::read(&mut &b[..], &Limits::default()) {
            Err(ProtocolError::Refused { status, message }) => {
                assert_eq!(status, Status::Busy);
                assert_eq!(message, "16 viewers already");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_hellos_are_rejected_before_allocating() {
        let limits = Limits::default();
        let mut good = Vec::new();
        hello().write(&mut good).unwrap();
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|b| b[0] = b'X'), "BadMagic"),
            (Box::new(|b| b[4] = 9), "Version"),
            (Box::new(|b| b[6] = 77), "Invalid"),
            (Box::new(|b| b[7] = 200), "TooLong"),
            (
                Box::new(|b| b[40..42].copy_from_slice(&u16::MAX.to_le_bytes())),
                "TooLong",
            ),
            (
                Box::new(|b| b[8..12].copy_from_slice(b"ZZZZ")),
                "UnknownFormat",
            ),
            (
                Box::new(|b| b[12..16].copy_from_slice(&u32::MAX.to_le_bytes())),
                "Geometry",
            ),
            (
                Box::new(|b| b[20..24].copy_from_slice(&1u32.to_le_bytes())),
                "Geometry",
            ),
            (Box::new(|b| b[48] = b'!'), "Invalid"),
            (Box::new(|b| b.truncate(30)), "Closed"),
            (Box::new(|b| b.truncate(50)), "Closed"),
        ];
        for (mutate, want) in cases {
            let mut b = good.clone();
            mutate(&mut b);
            let err = ServerHello::read(&mut &b[..], &limits).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(want),
                "want {want}, got {err:?}"
            );
        }
        assert!(matches!(
            ServerHello::read(&mut &b""[..], &limits),
            Err(ProtocolError::Closed("by the peer"))
        ));
        let mut b = b"LSTR\x01\x00\x00\x00\xff\xff\x00\x00".to_vec();
        assert!(matches!(
            ClientHello::read(&mut &b[..]),
            Err(ProtocolError::TooLong { .. })
        ));
        b[0] = b'G';
        assert!(matches!(
            ClientHello::read(&mut &b[..]),
            Err(ProtocolError::BadMagic(_))
        ));
    }

    #[test]
    fn packets_round_trip_and_unknown_types_are_skipped() {
        let mut b = Vec::new();
        // A packet type from a future version, then a frame, then the end.
        write_packet(
            &mut b,
            &PacketHeader {
                kind: 9,
                flags: 0,
                len: 3,
                seq: 0,
                capture_us: 0,
            },
            b"abc",
        )
        .unwrap();
        let h = PacketHeader {
            kind: PACKET_FRAME,
            flags: 0,
            len: 4,
            seq: 7,
            capture_us: 99,
        };
        write_packet(&mut b, &h, b"wxyz").unwrap();
        write_end(&mut b, "bye", true).unwrap();
        let mut r = &b[..];
        let mut payload = Vec::new();
        assert_eq!(
            read_packet(&mut r, 10, &mut payload).unwrap(),
            Packet::Frame(h)
        );
        assert_eq!(payload, b"wxyz");
        assert_eq!(
            read_packet(&mut r, 10, &mut payload).unwrap(),
            Packet::End {
                message: "bye".into(),
                final_: true
            }
        );
        assert!(matches!(
            read_packet(&mut r, 10, &mut payload),
            Err(ProtocolError::Closed("by the peer"))
        ));
    }

    #[test]
    fn oversized_payload_is_refused_unread() {
        let h = PacketHeader {
            kind: PACKET_FRAME,
            flags: 0,
            len: u32::MAX,
            seq: 0,
            capture_us: 0,
        };
        let b = h.encode();
        let mut payload = Vec::new();
        let err = read_packet(&mut &b[..], 1 << 20, &mut payload).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLong { .. }), "{err:?}");
        assert_eq!(payload.capacity(), 0, "nothing allocated");
        let h = PacketHeader {
            kind: 200,
            flags: 0,
            len: 1 << 30,
            seq: 0,
            capture_us: 0,
        };
        let err = read_packet(&mut &h.encode()[..], 1 << 20, &mut payload).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLong { .. }), "{err:?}");
        // A truncated payload is a torn message, not a clean close.
        let h = PacketHeader {
            kind: PACKET_FRAME,
            flags: 0,
            len: 10,
            seq: 0,
            capture_us: 0,
        };
        let mut b = h.encode().to_vec();
        b.extend_from_slice(b"abc");
        let err = read_packet(&mut &b[..], 100, &mut payload).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Closed("in the middle of a message")),
            "{err:?}"
        );
    }
}

#[cfg(test)]
mod fuzz {
    //! Random and mutated input for every parser of network bytes: an error or a
    //! valid value, never a panic, never an allocation past the limits.
    use super::*;

    fn mutate(rng: &mut fastrand::Rng, good: &[u8]) -> Vec<u8> {
        match rng.u8(..4) {
            0 => (0..rng.usize(..200)).map(|_| rng.u8(..)).collect(),
            1 => good[..rng.usize(..=good.len())].to_vec(),
            _ => {
                let mut b = good.to_vec();
                for _ in 0..rng.usize(1..6) {
                    let i = rng.usize(..b.len());
                    b[i] = rng.u8(..);
                }
                b
            }
        }
    }

    #[test]
    fn parsers_survive_garbage() {
        let mut rng = fastrand::Rng::with_seed(7);
        let limits = Limits::default();
        let mut hello = Vec::new();
        ServerHello {
            status: Status::Ok,
            codec: "lz4".into(),
            frame: FrameInfo::packed(PixelFormat::I420, 64, 48).unwrap(),
            fps: 30.0,
            max_payload: 5000,
            server_time_us: 1,
            message: "x".into(),
        }
        .write(&mut hello)
        .unwrap();
        let mut client = Vec::new();
        ClientHello { version: 1 }.write(&mut client).unwrap();
        let mut packets = Vec::new();
        let h = PacketHeader {
            kind: PACKET_FRAME,
            flags: 0,
            len: 100,
            seq: 1,
            capture_us: 2,
        };
        write_packet(&mut packets, &h, &[9; 100]).unwrap();
        packets.extend_from_slice(&timing(1, 2, 3));
        packets.extend_from_slice(&pong(1, 2, 3, 4));
        write_end(&mut packets, "done", true).unwrap();
        let mut upstream = Vec::new();
        write_ping(&mut upstream, 1, 2).unwrap();
        write_report(&mut upstream, &Report::default()).unwrap();
        let mut payload = Vec::new();
        for _ in 0..20_000 {
            if let Ok(h) = ServerHello::read(&mut &mutate(&mut rng, &hello)[..], &limits) {
                assert!(h.frame.validate(&limits).is_ok());
                assert!(h.codec.len() <= MAX_CODEC_NAME && h.message.len() <= MAX_MESSAGE);
            }
            let _ = ClientHello::read(&mut &mutate(&mut rng, &client)[..]);
            let up = mutate(&mut rng, &upstream);
            let mut r = &up[..];
            while read_upstream(&mut r).is_ok() {}
            let bytes = mutate(&mut rng, &packets);
            let mut r = &bytes[..];
            while let Ok(p) = read_packet(&mut r, 4096, &mut payload) {
                if let Packet::Frame(h) = p {
                    assert!(h.len as usize <= 4096 && payload.len() == h.len as usize);
                }
            }
            assert!(payload.capacity() <= 4096, "payload grew past the limit");
        }
    }
}
