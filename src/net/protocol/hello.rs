//! The two hellos: the viewer's [`ClientHello`] (the version it speaks) and the
//! server's [`ServerHello`] (the stream it describes, or why it refuses). Each
//! read checks the fixed part, then every length against its limit, before a
//! byte of the variable part is read. Run on the connection threads (the
//! server's per-viewer thread, the viewer's calling thread).

use std::io::{self, Read, Write};

use super::EXT_RENDITIONS;
use super::{
    read_first, skip, u16_at, u32_at, u64_at, ProtocolError, Status, CLIENT_HELLO_LEN, MAGIC,
    MAX_CODEC_NAME, MAX_EXTENSIONS, MAX_MESSAGE, SERVER_HELLO_LEN, VERSION,
};
use crate::media::frame::{FrameInfo, Limits, PixelFormat};

/// What the viewer says first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The highest protocol version the viewer speaks.
    pub version: u16,
    /// It takes smaller renditions of the stream ([`EXT_RENDITIONS`]).
    pub renditions: bool,
}

impl ClientHello {
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let mut b = [0u8; CLIENT_HELLO_LEN + 4];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        let mut len = CLIENT_HELLO_LEN;
        if self.renditions {
            b[8..10].copy_from_slice(&4u16.to_le_bytes());
            b[12..14].copy_from_slice(&EXT_RENDITIONS.to_le_bytes());
            len += 4;
        }
        w.write_all(&b[..len])
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
        let mut ext = [0u8; MAX_EXTENSIONS];
        let ext = &mut ext[..ext_len];
        r.read_exact(ext)?;
        Ok(ClientHello {
            version: u16_at(&b, 4),
            renditions: offers(ext, EXT_RENDITIONS)?,
        })
    }
}

/// Whether a client hello's extension block (type u16, length u16, data,
/// each checked to fit) offers extension `wanted`; types this version does not
/// know are passed over.
fn offers(mut block: &[u8], wanted: u16) -> Result<bool, ProtocolError> {
    let mut found = false;
    while !block.is_empty() {
        if block.len() < 4 {
            return Err(ProtocolError::Invalid {
                what: "hello extension",
                why: format!("a header of {} bytes (4 needed)", block.len()),
            });
        }
        let kind = u16_at(block, 0);
        let len = u16_at(block, 2) as usize;
        let Some(data) = block.get(4..4 + len) else {
            return Err(ProtocolError::Invalid {
                what: "hello extension",
                why: format!("type {kind} says {len} bytes, {} are left", block.len() - 4),
            });
        };
        found |= kind == wanted;
        block = &block[4 + data.len()..];
    }
    Ok(found)
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
        for renditions in [false, true] {
            let mut b = Vec::new();
            let hello = ClientHello {
                version: 1,
                renditions,
            };
            hello.write(&mut b).unwrap();
            assert_eq!(b.len(), CLIENT_HELLO_LEN + if renditions { 4 } else { 0 });
            assert_eq!(ClientHello::read(&mut &b[..]).unwrap(), hello);
        }

        let mut b = Vec::new();
        hello().write(&mut b).unwrap();
        let back = ServerHello::read(&mut &b[..], &Limits::default()).unwrap();
        assert_eq!(back, hello());
    }

    /// The byte layout is the one `docs/protocol.md` documents.
    #[test]
    fn golden_bytes() {
        let mut b = Vec::new();
        ClientHello {
            version: 1,
            renditions: false,
        }
        .write(&mut b)
        .unwrap();
        assert_eq!(b, b"LSTR\x01\x00\x00\x00\x00\x00\x00\x00");
        let mut b = Vec::new();
        ClientHello {
            version: 1,
            renditions: true,
        }
        .write(&mut b)
        .unwrap();
        assert_eq!(b, b"LSTR\x01\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00");
        let mut b = Vec::new();
        hello().write(&mut b).unwrap();
        assert_eq!(&b[..8], b"LSTR\x01\x00\x00\x03");
        assert_eq!(&b[8..12], b"NV12");
        assert_eq!(&b[12..16], &640u32.to_le_bytes());
        assert_eq!(&b[24..28], &29970u32.to_le_bytes());
        assert_eq!(&b[48..51], b"lz4");
    }

    /// Unknown extensions are passed over; one that does not fit its block
    /// is refused, saying which.
    #[test]
    fn hello_extensions_are_walked_and_checked() {
        let hello = |block: &[u8]| {
            let mut b = b"LSTR\x01\x00\x00\x00\x00\x00\x00\x00".to_vec();
            b[8..10].copy_from_slice(&(block.len() as u16).to_le_bytes());
            b.extend_from_slice(block);
            ClientHello::read(&mut &b[..])
        };
        let unknown_then_ours = [9, 0, 2, 0, 0xAA, 0xBB, 1, 0, 0, 0];
        assert!(hello(&unknown_then_ours).unwrap().renditions);
        assert!(!hello(&[9, 0, 0, 0]).unwrap().renditions);
        let e = hello(&[1, 0, 5, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("type 1 says 5 bytes, 1 are left"), "{e}");
        let e = hello(&[1, 0]).unwrap_err().to_string();
        assert!(e.contains("a header of 2 bytes"), "{e}");
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
}
