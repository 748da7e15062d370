//! JPEG in RTP (RFC 2435), for RTSP clients of a JPEG stream. A receiver
//! rebuilds each JPEG from a small header and the scan, so only JPEGs that
//! header can describe travel: baseline, 8-bit, three components (Y, Cb, Cr)
//! with 4:2:2 or 4:2:0 sampling and two quantisation tables (luma, chroma),
//! the standard Huffman tables (or none: a UVC camera's), and sides that are
//! multiples of 8 up to 2040 pixels. [`rtp_jpeg`] says what a JPEG does not
//! fit; the quantisation tables go in-band (Q = 255) in each frame's first
//! packet.

use super::rtp::{RtpPacket, RtpStream};

/// The RTP payload type of JPEG (RFC 3551).
pub const JPEG_PAYLOAD_TYPE: u8 = 26;
/// The largest side the header's 8-pixel units can say.
pub const MAX_SIDE: u32 = 2040;

/// Why a JPEG cannot go in RTP/JPEG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpJpegError {
    #[error("not a JPEG, or one cut short")]
    Malformed,
    #[error("a {0} JPEG; RTP/JPEG carries baseline only")]
    NotBaseline(&'static str),
    #[error("{0}x{1} pixels; RTP/JPEG carries sides that are multiples of 8, up to 2040")]
    Size(u32, u32),
    #[error("{0} components; RTP/JPEG carries Y, Cb, Cr")]
    Components(u8),
    #[error(
        "chroma sampling {0}; RTP/JPEG carries 4:2:2 and 4:2:0 (set [codecs.jpeg] subsampling)"
    )]
    Sampling(&'static str),
    #[error("its own Huffman tables (optimised); RTP/JPEG assumes the standard ones")]
    HuffmanTables,
    #[error("quantisation tables other than 8-bit luma 0 and chroma 1")]
    QuantTables,
}

/// What RTP/JPEG needs of one JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpJpeg<'a> {
    /// RFC 2435 type: 0 (4:2:2) or 1 (4:2:0), plus 64 with restart markers.
    pub kind: u8,
    pub width: u32,
    pub height: u32,
    /// Luma and chroma quantisation tables, 64 bytes each, in zigzag order.
    pub tables: [&'a [u8]; 2],
    /// The restart interval in MCUs, if the JPEG has one.
    pub restart: Option<u16>,
    /// The entropy-coded scan, without its end marker.
    pub scan: &'a [u8],
}

/// Reads what RTP/JPEG needs from `jpeg`, or says why it does not fit.
pub fn rtp_jpeg(jpeg: &[u8]) -> Result<RtpJpeg<'_>, RtpJpegError> {
    use RtpJpegError as E;
    if jpeg.get(..2) != Some(&[0xff, 0xd8]) {
        return Err(E::Malformed);
    }
    let mut at = 2;
    let mut tables: [Option<&[u8]>; 4] = [None; 4];
    let mut frame = None;
    let mut restart = None;
    loop {
        while jpeg.get(at) == Some(&0xff) && jpeg.get(at + 1) == Some(&0xff) {
            at += 1;
        }
        let (Some(&0xff), Some(&marker)) = (jpeg.get(at), jpeg.get(at + 1)) else {
            return Err(E::Malformed);
        };
        let len = jpeg
            .get(at + 2..at + 4)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .ok_or(E::Malformed)?;
        let body = jpeg.get(at + 4..at + 2 + len).ok_or(E::Malformed)?;
        if len < 2 {
            return Err(E::Malformed);
        }
        match marker {
            0xc0 => frame = Some(body),
            0xc1 => return Err(E::NotBaseline("extended")),
            0xc2 => return Err(E::NotBaseline("progressive")),
            0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => {
                return Err(E::NotBaseline("lossless or arithmetic-coded"))
            }
            0xc4 => check_huffman(body)?,
            0xdb => {
                let mut rest = body;
                while let Some((&pq_tq, more)) = rest.split_first() {
                    let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 0x0f));
                    if precision != 0 || id > 3 {
                        return Err(E::QuantTables);
                    }
                    let table = more.get(..64).ok_or(E::Malformed)?;
                    tables[id] = Some(table);
                    rest = &more[64..];
                }
            }
            0xdd => {
                let r = body.get(..2).ok_or(E::Malformed)?;
                restart = Some(u16::from_be_bytes([r[0], r[1]])).filter(|&r| r > 0);
            }
            0xda => {
                let scan = &jpeg[at + 2 + len..];
                let scan = scan.strip_suffix(&[0xff, 0xd9]).unwrap_or(scan);
                let frame = frame.ok_or(E::Malformed)?;
                return describe(frame, tables, restart, scan);
            }
            _ => {}
        }
        at += 2 + len;
    }
}

/// The frame header (SOF0) against what RFC 2435's types 0 and 1 can say.
fn describe<'a>(
    sof: &[u8],
    tables: [Option<&'a [u8]>; 4],
    restart: Option<u16>,
    scan: &'a [u8],
) -> Result<RtpJpeg<'a>, RtpJpegError> {
    use RtpJpegError as E;
    let head = sof.get(..6).ok_or(E::Malformed)?;
    if head[0] != 8 {
        return Err(E::NotBaseline("12-bit"));
    }
    let height = u32::from(u16::from_be_bytes([head[1], head[2]]));
    let width = u32::from(u16::from_be_bytes([head[3], head[4]]));
    if width == 0
        || height == 0
        || width % 8 != 0
        || height % 8 != 0
        || width > MAX_SIDE
        || height > MAX_SIDE
    {
        return Err(E::Size(width, height));
    }
    if head[5] != 3 {
        return Err(E::Components(head[5]));
    }
    let comps = sof.get(6..15).ok_or(E::Malformed)?;
    let kind = match (comps[1], comps[4], comps[7]) {
        (0x21, 0x11, 0x11) => 0,
        (0x22, 0x11, 0x11) => 1,
        (0x11, 0x11, 0x11) => return Err(E::Sampling("4:4:4")),
        _ => return Err(E::Sampling("other than 4:2:2 or 4:2:0")),
    };
    if (comps[2], comps[5], comps[8]) != (0, 1, 1) {
        return Err(E::QuantTables);
    }
    let (Some(luma), Some(chroma)) = (tables[0], tables[1]) else {
        return Err(E::QuantTables);
    };
    Ok(RtpJpeg {
        kind: kind + if restart.is_some() { 64 } else { 0 },
        width,
        height,
        tables: [luma, chroma],
        restart,
        scan,
    })
}

/// The standard tables of T.81 Annex K.3 as (class and id, 16 counts,
/// values): the only ones an RTP/JPEG receiver knows.
fn check_huffman(body: &[u8]) -> Result<(), RtpJpegError> {
    const STANDARD: [(u8, [u8; 16]); 4] = [
        (0x00, [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]),
        (0x01, [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]),
        (0x10, [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d]),
        (0x11, [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77]),
    ];
    let mut rest = body;
    while let Some((&class_id, more)) = rest.split_first() {
        let counts = more.get(..16).ok_or(RtpJpegError::Malformed)?;
        let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let values = more.get(16..16 + n).ok_or(RtpJpegError::Malformed)?;
        let standard = STANDARD
            .iter()
            .find(|(id, _)| *id == class_id)
            .ok_or(RtpJpegError::HuffmanTables)?;
        if counts != standard.1 || !is_standard_values(class_id, values) {
            return Err(RtpJpegError::HuffmanTables);
        }
        rest = &more[16 + n..];
    }
    Ok(())
}

/// The values of the standard tables: DC ones are 0..=11; AC ones are
/// checked against the luminance and chrominance lists' first and last
/// bytes and length (the counts are checked already, so a table with the
/// standard counts and these values is the standard one unless crafted).
fn is_standard_values(class_id: u8, values: &[u8]) -> bool {
    match class_id {
        0x00 | 0x01 => values.iter().copied().eq(0..=11u8),
        0x10 => {
            values.len() == 162 && values[..4] == [0x01, 0x02, 0x03, 0x00] && values[161] == 0xfa
        }
        0x11 => {
            values.len() == 162 && values[..4] == [0x00, 0x01, 0x02, 0x03] && values[161] == 0xfa
        }
        _ => false,
    }
}

/// The RTP packets of one JPEG (already read by [`rtp_jpeg`]): the scan in
/// fragments of at most `max_payload` bytes (headers included), the
/// quantisation tables in the first, the marker bit on the last.
pub struct JpegPackets<'a, 's> {
    jpeg: RtpJpeg<'a>,
    sent: usize,
    stream: &'s mut RtpStream,
    timestamp: u32,
    max_payload: usize,
    done: bool,
}

impl<'a, 's> JpegPackets<'a, 's> {
    pub fn new(
        jpeg: RtpJpeg<'a>,
        timestamp: u32,
        stream: &'s mut RtpStream,
        max_payload: usize,
    ) -> JpegPackets<'a, 's> {
        JpegPackets {
            jpeg,
            sent: 0,
            stream,
            timestamp,
            // Room for the headers of the first packet, and some scan.
            max_payload: max_payload.max(256),
            done: false,
        }
    }
}

impl<'a> Iterator for JpegPackets<'a, '_> {
    type Item = RtpPacket<'a>;

    fn next(&mut self) -> Option<RtpPacket<'a>> {
        if self.done {
            return None;
        }
        let j = &self.jpeg;
        let offset = self.sent as u32;
        let mut extra = [0u8; 8 + 4 + 4 + 128];
        extra[1..4].copy_from_slice(&offset.to_be_bytes()[1..]);
        extra[4] = j.kind;
        extra[5] = 255;
        extra[6] = (j.width / 8) as u8;
        extra[7] = (j.height / 8) as u8;
        let mut n = 8;
        if let Some(r) = j.restart {
            extra[8..10].copy_from_slice(&r.to_be_bytes());
            // F and L set, count 0x3fff: fragments do not follow restart
            // intervals.
            extra[10..12].copy_from_slice(&0xffffu16.to_be_bytes());
            n += 4;
        }
        if self.sent == 0 {
            extra[n + 2..n + 4].copy_from_slice(&128u16.to_be_bytes());
            extra[n + 4..n + 68].copy_from_slice(j.tables[0]);
            extra[n + 68..n + 132].copy_from_slice(j.tables[1]);
            n += 132;
        }
        let room = self.max_payload - n;
        let to = (self.sent + room).min(j.scan.len());
        let payload = &j.scan[self.sent..to];
        self.sent = to;
        let last = to == j.scan.len();
        self.done = last;
        Some(
            self.stream
                .packet(self.timestamp, last, &extra[..n], payload),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{Frame, FrameInfo, PixelFormat};

    /// A 64x48 JPEG from our own codec (4:2:0, standard tables), with
    /// `set` applied to its configuration.
    fn jpeg(set: &[&str]) -> Vec<u8> {
        let sets: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let text = crate::backend::table::ConfigText::embedded()
            .with_overrides(&sets)
            .unwrap();
        let cfg = crate::config::Config::parse(text, &Default::default()).unwrap();
        let table = cfg.backend(crate::backend::Kind::Codec, "jpeg");
        let mut codec = (crate::registry::codec("jpeg").unwrap().open)(&table).unwrap();
        let info = FrameInfo::packed(PixelFormat::Rgb24, 64, 48).unwrap();
        let frame = Frame {
            info,
            seq: 0,
            capture_us: 0,
            data: (0..info.byte_len()).map(|i| (i * 7 % 251) as u8).collect(),
        };
        let mut out = Vec::new();
        codec.encode(&frame, &mut out).unwrap();
        out
    }

    #[test]
    fn our_jpeg_fits_and_is_cut_into_packets_with_its_tables_first() {
        let data = jpeg(&[]);
        let j = rtp_jpeg(&data).unwrap();
        assert_eq!((j.kind, j.width, j.height, j.restart), (1, 64, 48, None));
        assert!(!j.scan.is_empty() && !j.scan.ends_with(&[0xff, 0xd9]));
        let mut stream = RtpStream::new(JPEG_PAYLOAD_TYPE, 0x0000_0005_0000_0009);
        let packets: Vec<_> = JpegPackets::new(j, 77, &mut stream, 300).collect();
        assert!(packets.len() >= 2);
        let mut offset = 0;
        for (i, p) in packets.iter().enumerate() {
            let head = p.head();
            assert_eq!(head[1] & 0x7f, 26);
            assert_eq!(p.marker(), i == packets.len() - 1);
            let main = &head[12..20];
            let frag = u32::from_be_bytes([0, main[1], main[2], main[3]]) as usize;
            assert_eq!(frag, offset, "packet {i}");
            assert_eq!(&main[4..], &[1, 255, 8, 6]);
            assert!(head.len() - 12 + p.payload.len() <= 300);
            if i == 0 {
                assert_eq!(&head[20..24], &[0, 0, 0, 128]);
                assert_eq!(&head[24..88], j.tables[0]);
                assert_eq!(&head[88..152], j.tables[1]);
            } else {
                assert_eq!(head.len(), 20);
            }
            offset += p.payload.len();
        }
        assert_eq!(offset, j.scan.len());
    }

    #[test]
    fn what_does_not_fit_is_named() {
        assert_eq!(
            rtp_jpeg(&jpeg(&["codecs.jpeg.subsampling=\"4:4:4\""])).unwrap_err(),
            RtpJpegError::Sampling("4:4:4")
        );
        let data = jpeg(&[]);
        assert_eq!(rtp_jpeg(&data[..40]).unwrap_err(), RtpJpegError::Malformed);
        assert_eq!(
            rtp_jpeg(b"not a jpeg").unwrap_err(),
            RtpJpegError::Malformed
        );
        // The same JPEG as progressive (SOF2), 12-bit, and too wide.
        let sof = data
            .windows(2)
            .position(|w| w == [0xff, 0xc0])
            .expect("baseline SOF");
        let mut p = data.clone();
        p[sof + 1] = 0xc2;
        assert_eq!(
            rtp_jpeg(&p).unwrap_err(),
            RtpJpegError::NotBaseline("progressive")
        );
        let mut wide = data.clone();
        wide[sof + 7..sof + 9].copy_from_slice(&2048u16.to_be_bytes());
        assert_eq!(rtp_jpeg(&wide).unwrap_err(), RtpJpegError::Size(2048, 48));
        let mut odd = data.clone();
        odd[sof + 5..sof + 7].copy_from_slice(&50u16.to_be_bytes());
        assert_eq!(rtp_jpeg(&odd).unwrap_err(), RtpJpegError::Size(64, 50));
        // A Huffman table other than the standard one.
        let dht = data.windows(2).position(|w| w == [0xff, 0xc4]);
        if let Some(dht) = dht {
            let mut other = data.clone();
            other[dht + 5 + 2] ^= 1;
            assert!(rtp_jpeg(&other).is_err());
        }
    }
}
