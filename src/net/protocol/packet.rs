//! Packets: a fixed 24-byte [`PacketHeader`] and a payload. Server → viewer:
//! frames, the end of the stream, timing and pongs ([`read_packet`]); viewer →
//! server: pings and latency reports ([`read_upstream`]). Readers check the
//! header's length against the limit for its type before they read (or size a
//! buffer for) a payload byte; unknown types are skipped within a bound.
//!
//! Run on the connection threads: the server's sender and `viewer-rx` thread per
//! native viewer, the viewer's `net-reader` and calling thread.

use std::io::{self, IoSlice, Read, Write};

use super::{
    read_first, skip, u32_at, u64_at, ProtocolError, FLAG_FINAL, MAX_MESSAGE, MAX_UNKNOWN_PAYLOAD,
    MAX_UPSTREAM_PAYLOAD, PACKET_END, PACKET_FRAME, PACKET_HEADER_LEN, PACKET_KEYFRAME_REQUEST,
    PACKET_PING, PACKET_PONG, PACKET_REPORT, PACKET_TIMING, PONG_LEN, REPORT_LEN, TIMING_LEN,
};
use super::{LINK_LEN, LINK_MEASURED, PACKET_LINK, PACKET_RENDITION, RENDITION_LEN};
use crate::net::io::write_all_vectored;

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
    /// What the server estimates this viewer's link carries: bit/s, measured
    /// with the link the limit or a lower bound, and the connection's round
    /// trip (µs) as the server's kernel smooths it.
    Link {
        bits_per_second: u64,
        measured: bool,
        rtt_us: u32,
    },
    /// The frames that follow are of another rendition (untrusted: the
    /// reader checks the size against the stream's before it uses it).
    Rendition(Rendition),
}

/// One rendition of the stream, as a rendition packet announces it: its
/// picture size, its encoder's target bitrate, and its place in the ladder
/// (0 is the stream itself, the largest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    pub bits_per_second: u32,
    pub index: u8,
    /// Renditions in the ladder.
    pub count: u8,
}

impl Rendition {
    /// Whether a viewer of `stream` can take this rendition: an even,
    /// non-zero picture no larger than the stream's, a place in its ladder.
    pub fn check(&self, stream: &crate::media::frame::FrameInfo) -> Result<(), ProtocolError> {
        let (w, h) = (self.width, self.height);
        let why = if w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 {
            format!("{w}x{h} is not an even, non-zero picture size")
        } else if w > stream.width || h > stream.height {
            format!(
                "{w}x{h} is larger than the stream's {}x{}",
                stream.width, stream.height
            )
        } else if self.index >= self.count {
            format!("rendition {} of {}", self.index, self.count)
        } else {
            return Ok(());
        };
        Err(ProtocolError::Invalid {
            what: "rendition packet",
            why,
        })
    }

    /// The packet's bytes (server side).
    pub fn packet(&self) -> [u8; PACKET_HEADER_LEN + RENDITION_LEN] {
        let mut b: [u8; PACKET_HEADER_LEN + RENDITION_LEN] = with_header(PACKET_RENDITION, 0, 0);
        b[24..28].copy_from_slice(&self.width.to_le_bytes());
        b[28..32].copy_from_slice(&self.height.to_le_bytes());
        b[32..36].copy_from_slice(&self.bits_per_second.to_le_bytes());
        b[36] = self.index;
        b[37] = self.count;
        b
    }
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
    /// Its decoder lost the chain: it wants a keyframe, and nothing before it.
    KeyframeRequest,
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
            PACKET_KEYFRAME_REQUEST => {
                fixed::<0>(r, len, "keyframe request")?;
                return Ok(Upstream::KeyframeRequest);
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

/// Asks for a keyframe (viewer side).
pub fn write_keyframe_request(w: &mut impl Write) -> io::Result<()> {
    let header = PacketHeader {
        kind: PACKET_KEYFRAME_REQUEST,
        flags: 0,
        len: 0,
        seq: 0,
        capture_us: 0,
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

/// A fixed-size packet of `kind` with its header written (its length is
/// what follows the header), for the caller to fill in the payload.
fn with_header<const N: usize>(kind: u8, seq: u64, capture_us: u64) -> [u8; N] {
    let mut b = [0u8; N];
    b[..PACKET_HEADER_LEN].copy_from_slice(
        &PacketHeader {
            kind,
            flags: 0,
            len: (N - PACKET_HEADER_LEN) as u32,
            seq,
            capture_us,
        }
        .encode(),
    );
    b
}

/// The bytes of a pong (server side): header and payload.
pub fn pong(id: u64, t1: u64, t2: u64, t3: u64) -> [u8; PACKET_HEADER_LEN + PONG_LEN] {
    let mut b: [u8; PACKET_HEADER_LEN + PONG_LEN] = with_header(PACKET_PONG, id, t1);
    b[24..32].copy_from_slice(&t2.to_le_bytes());
    b[32..40].copy_from_slice(&t3.to_le_bytes());
    b
}

/// The bytes of a link packet (server side).
pub fn link(
    bits_per_second: u64,
    measured: bool,
    rtt_us: u32,
) -> [u8; PACKET_HEADER_LEN + LINK_LEN] {
    let mut b: [u8; PACKET_HEADER_LEN + LINK_LEN] = with_header(PACKET_LINK, 0, 0);
    b[24..32].copy_from_slice(&bits_per_second.to_le_bytes());
    b[32..36].copy_from_slice(&rtt_us.to_le_bytes());
    let flags = if measured { LINK_MEASURED } else { 0 };
    b[36..40].copy_from_slice(&flags.to_le_bytes());
    b
}

/// The bytes of a timing packet (server side), sent just before frame `seq`.
pub fn timing(seq: u64, encoded_us: u64, sent_us: u64) -> [u8; PACKET_HEADER_LEN + TIMING_LEN] {
    let mut b: [u8; PACKET_HEADER_LEN + TIMING_LEN] = with_header(PACKET_TIMING, seq, encoded_us);
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
            PACKET_LINK => {
                let b = fixed::<LINK_LEN>(r, len, "link packet")?;
                return Ok(Packet::Link {
                    bits_per_second: u64_at(&b, 0),
                    rtt_us: u32_at(&b, 8),
                    // Other bits are reserved: ignored, as unknown flags are.
                    measured: u32_at(&b, 12) & LINK_MEASURED != 0,
                });
            }
            PACKET_RENDITION => {
                let b = fixed::<RENDITION_LEN>(r, len, "rendition packet")?;
                return Ok(Packet::Rendition(Rendition {
                    width: u32_at(&b, 0),
                    height: u32_at(&b, 4),
                    bits_per_second: u32_at(&b, 8),
                    index: b[12],
                    count: b[13],
                }));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::protocol::FLAG_DROPPED_BEFORE;

    /// A rendition packet reads back as written, in the documented layout;
    /// any other length is refused.
    #[test]
    fn rendition_packets_round_trip_and_are_checked() {
        let r = Rendition {
            width: 854,
            height: 480,
            bits_per_second: 1_100_000,
            index: 1,
            count: 3,
        };
        let b = r.packet();
        assert_eq!(&b[..8], &[6, 0, 0, 0, 16, 0, 0, 0]);
        assert_eq!(&b[24..28], &854u32.to_le_bytes());
        assert_eq!(&b[36..40], &[1, 3, 0, 0]);
        let mut payload = Vec::new();
        assert_eq!(
            read_packet(&mut &b[..], 1, &mut payload).unwrap(),
            Packet::Rendition(r)
        );
        let mut long = b.to_vec();
        long[4] = 17;
        long.push(0);
        let e = read_packet(&mut &long[..], 1, &mut payload).unwrap_err();
        assert!(e.to_string().contains("rendition packet"), "{e}");
        let stream = crate::media::frame::FrameInfo::packed(
            crate::media::frame::PixelFormat::Rgb24,
            1280,
            720,
        )
        .unwrap();
        assert!(r.check(&stream).is_ok());
        for (bad, says) in [
            (Rendition { width: 853, ..r }, "853x480 is not an even"),
            (Rendition { height: 0, ..r }, "854x0 is not an even"),
            (
                Rendition { width: 1920, ..r },
                "larger than the stream's 1280x720",
            ),
            (Rendition { index: 3, ..r }, "rendition 3 of 3"),
        ] {
            let e = bad.check(&stream).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    /// A link packet reads back as written, in the documented layout; its
    /// reserved flag bits are ignored and any other length is refused.
    #[test]
    fn link_packets_round_trip_and_are_checked() {
        let b = link(5_800_000, true, 1234);
        assert_eq!(&b[..8], &[5, 0, 0, 0, 16, 0, 0, 0]);
        assert_eq!(&b[24..32], &5_800_000u64.to_le_bytes());
        assert_eq!(&b[36..40], &[1, 0, 0, 0]);
        let mut payload = Vec::new();
        let read = read_packet(&mut &b[..], 1, &mut payload).unwrap();
        assert_eq!(
            read,
            Packet::Link {
                bits_per_second: 5_800_000,
                measured: true,
                rtt_us: 1234
            }
        );
        let mut reserved = b;
        reserved[36] = 0xFE;
        assert!(matches!(
            read_packet(&mut &reserved[..], 1, &mut payload).unwrap(),
            Packet::Link {
                measured: false,
                ..
            }
        ));
        let mut short = b.to_vec();
        short[4] = 15;
        short.pop();
        let e = read_packet(&mut &short[..], 1, &mut payload).unwrap_err();
        assert!(e.to_string().contains("link packet"), "{e}");
    }

    /// The byte layout is the one `docs/protocol.md` documents.
    #[test]
    fn golden_bytes() {
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
        // An end packet: seq and capture time are 0, the final flag is bit 1.
        let mut b = Vec::new();
        write_end(&mut b, "bye", true).unwrap();
        assert_eq!(&b[..8], &[2, 2, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&b[8..24], &[0; 16]);
        assert_eq!(&b[24..], b"bye");
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
