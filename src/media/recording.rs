//! The recording format the `file` sink writes and the `file` source replays.
//!
//! All integers little-endian. A file header, then one record per frame:
//!
//! | offset | size | header field                        |
//! |-------:|-----:|-------------------------------------|
//! | 0      | 8    | magic `LSREC` 0 0 1 (version 1)     |
//! | 8      | 4    | pixel format fourcc                 |
//! | 12     | 4    | width                               |
//! | 16     | 4    | height                              |
//! | 20     | 4    | stride                              |
//! | 24     | 4    | fps × 1000 (0 = unknown)            |
//! | 28     | 4    | reserved, 0                         |
//!
//! | offset | size | record field                        |
//! |-------:|-----:|-------------------------------------|
//! | 0      | 4    | `FRAM`                              |
//! | 4      | 8    | sequence number                     |
//! | 12     | 8    | capture time, µs                    |
//! | 20     | 4    | data length                         |
//! | 24     | n    | data (exactly the frame's size, or a whole JPEG) |
//!
//! A recording cut short (power loss, `kill -9`) replays up to its last whole record.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::media::frame::{Frame, FrameInfo, GeometryError, Limits, PixelFormat, StreamInfo};

pub const MAGIC: [u8; 8] = *b"LSREC\0\0\x01";
const RECORD: [u8; 4] = *b"FRAM";
pub const HEADER_LEN: usize = 32;
const RECORD_LEN: usize = 24;

/// What is wrong with a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("not a livestream recording (bad magic)")]
    BadMagic,
    #[error("unknown pixel format {0:?}")]
    UnknownFormat([u8; 4]),
    #[error("bad frame geometry: {0}")]
    Geometry(#[from] GeometryError),
    #[error("record {index} is damaged: {why}")]
    BadRecord { index: u64, why: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes the file header for `info`.
pub fn write_header(out: &mut impl Write, info: &StreamInfo) -> io::Result<()> {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&info.frame.format.fourcc());
    h[12..16].copy_from_slice(&info.frame.width.to_le_bytes());
    h[16..20].copy_from_slice(&info.frame.height.to_le_bytes());
    h[20..24].copy_from_slice(&info.frame.stride.to_le_bytes());
    h[24..28].copy_from_slice(&((info.fps * 1000.0).round() as u32).to_le_bytes());
    out.write_all(&h)
}

/// Writes one frame record.
pub fn write_record(out: &mut impl Write, frame: &Frame) -> io::Result<()> {
    let mut r = [0u8; RECORD_LEN];
    r[..4].copy_from_slice(&RECORD);
    r[4..12].copy_from_slice(&frame.seq.to_le_bytes());
    r[12..20].copy_from_slice(&frame.capture_us.to_le_bytes());
    r[20..24].copy_from_slice(&(frame.data.len() as u32).to_le_bytes());
    out.write_all(&r)?;
    out.write_all(&frame.data)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|i| b[at + i]))
}

/// Reads a recording frame by frame into a caller-owned frame.
pub struct RecordingReader<R> {
    input: R,
    info: StreamInfo,
    max_len: usize,
    index: u64,
}

impl<R: Read> RecordingReader<R> {
    /// Reads and validates the header.
    pub fn new(mut input: R, limits: &Limits) -> Result<RecordingReader<R>, RecordingError> {
        let mut h = [0u8; HEADER_LEN];
        input.read_exact(&mut h).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => RecordingError::BadMagic,
            _ => RecordingError::Io(e),
        })?;
        if h[..8] != MAGIC {
            return Err(RecordingError::BadMagic);
        }
        let fourcc = [h[8], h[9], h[10], h[11]];
        let format =
            PixelFormat::from_fourcc(fourcc).ok_or(RecordingError::UnknownFormat(fourcc))?;
        let frame = FrameInfo {
            format,
            width: u32_at(&h, 12),
            height: u32_at(&h, 16),
            stride: u32_at(&h, 20),
        };
        let max_len = frame.validate(limits)?;
        Ok(RecordingReader {
            input,
            info: StreamInfo {
                frame,
                fps: u32_at(&h, 24) as f64 / 1000.0,
            },
            max_len,
            index: 0,
        })
    }

    pub fn stream_info(&self) -> StreamInfo {
        self.info
    }

    /// Reads the next record into `frame`. `Ok(false)` at the end of the file,
    /// including a last record cut short.
    pub fn read(&mut self, frame: &mut Frame) -> Result<bool, RecordingError> {
        let mut r = [0u8; RECORD_LEN];
        if !read_full(&mut self.input, &mut r)? {
            return Ok(false);
        }
        let bad = |why: String| RecordingError::BadRecord {
            index: self.index,
            why,
        };
        if r[..4] != RECORD {
            return Err(bad("bad record marker".into()));
        }
        let len = u32_at(&r, 20) as usize;
        let fits = if self.info.frame.format.is_compressed() {
            len > 0 && len <= self.max_len
        } else {
            len == self.max_len
        };
        if !fits {
            return Err(bad(format!(
                "{len} data bytes for a {} frame of {} bytes",
                self.info.frame, self.max_len
            )));
        }
        frame.info = self.info.frame;
        frame.data.resize(len, 0);
        if !read_full(&mut self.input, &mut frame.data)? {
            return Ok(false);
        }
        frame.seq = u64_at(&r, 4);
        frame.capture_us = u64_at(&r, 12);
        self.index += 1;
        Ok(true)
    }
}

impl<R: Read + Seek> RecordingReader<R> {
    /// Goes back to the first frame.
    pub fn rewind(&mut self) -> io::Result<()> {
        self.input.seek(SeekFrom::Start(HEADER_LEN as u64))?;
        self.index = 0;
        Ok(())
    }
}

/// `read_exact` that reports a clean or torn end as `Ok(false)`.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (StreamInfo, Vec<u8>) {
        let info = StreamInfo {
            frame: FrameInfo::packed(PixelFormat::Grey, 4, 2).unwrap(),
            fps: 30.0,
        };
        let mut out = Vec::new();
        write_header(&mut out, &info).unwrap();
        for seq in 0..3u8 {
            let f = Frame {
                info: info.frame,
                seq: seq as u64,
                capture_us: 1000 * seq as u64,
                data: vec![seq; 8],
            };
            write_record(&mut out, &f).unwrap();
        }
        (info, out)
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let (info, bytes) = sample();
        for cut in [0, 5, 20] {
            let mut r =
                RecordingReader::new(&bytes[..bytes.len() - cut], &Limits::default()).unwrap();
            assert_eq!(r.stream_info(), info);
            let mut f = Frame::empty();
            let mut seqs = vec![];
            while r.read(&mut f).unwrap() {
                assert_eq!(f.data, vec![f.seq as u8; 8]);
                seqs.push(f.seq);
            }
            let want: Vec<u64> = if cut == 0 { vec![0, 1, 2] } else { vec![0, 1] };
            assert_eq!(seqs, want, "cut {cut}");
        }
    }

    #[test]
    fn rejects_damage() {
        let (_, bytes) = sample();
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            RecordingReader::new(&bad[..], &Limits::default()),
            Err(RecordingError::BadMagic)
        ));
        let mut bad = bytes.clone();
        bad[12..16].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(matches!(
            RecordingReader::new(&bad[..], &Limits::default()),
            Err(RecordingError::Geometry(_))
        ));
        let mut bad = bytes.clone();
        // Length field of the first record: a huge length is refused before reading.
        bad[HEADER_LEN + 20..HEADER_LEN + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = RecordingReader::new(&bad[..], &Limits::default()).unwrap();
        assert!(matches!(
            r.read(&mut Frame::empty()),
            Err(RecordingError::BadRecord { index: 0, .. })
        ));
        assert!(matches!(
            RecordingReader::new(&bytes[..10], &Limits::default()),
            Err(RecordingError::BadMagic)
        ));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// Damaged recordings: an error or frames of the right size, never a panic.
    #[test]
    fn reader_survives_garbage() {
        let info = StreamInfo {
            frame: FrameInfo::packed(PixelFormat::Yuyv, 8, 4).unwrap(),
            fps: 30.0,
        };
        let mut good = Vec::new();
        write_header(&mut good, &info).unwrap();
        for seq in 0..4 {
            let f = Frame {
                info: info.frame,
                seq,
                capture_us: seq,
                data: vec![seq as u8; 64],
            };
            write_record(&mut good, &f).unwrap();
        }
        let mut rng = fastrand::Rng::with_seed(3);
        let mut frame = Frame::empty();
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(..b.len());
                b[i] = rng.u8(..);
            }
            b.truncate(rng.usize(..=b.len()));
            if let Ok(mut r) = RecordingReader::new(&b[..], &Limits::default()) {
                while let Ok(true) = r.read(&mut frame) {
                    assert_eq!(frame.data.len(), r.stream_info().frame.byte_len());
                }
            }
        }
    }
}
