//! H.264 access units in Annex-B form (ITU-T H.264 Annex B): NAL units behind
//! start codes (`00 00 01`, or `00 00 00 01`). One access unit is one frame's
//! payload on the wire.
//!
//! [`check_access_unit`] walks an access unit from a peer or a file before the
//! decoder sees a byte: every NAL unit's header, whether it holds a picture and
//! an IDR (a keyframe), and, when it carries a sequence parameter set, the
//! picture size that set declares, so that a stream cannot make the decoder size
//! its buffers for a picture other than the one the stream's header announced.
//! Pure functions over byte slices: no threads, no allocation.

use std::fmt;

/// NAL unit types (H.264 table 7-1) that matter here.
pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

/// The most NAL units one access unit may hold (a frame cut into many slices
/// stays far below).
pub const MAX_NAL_UNITS: usize = 1024;

/// What is wrong with an access unit, and where (a byte offset into it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnexBError {
    #[error("the access unit is empty")]
    Empty,
    #[error("no start code (00 00 01) at the start of the access unit")]
    NoStartCode,
    #[error("empty NAL unit at byte {offset}")]
    EmptyNal { offset: usize },
    #[error("NAL unit at byte {offset} has its forbidden bit set")]
    ForbiddenBit { offset: usize },
    #[error("NAL unit at byte {offset} has type {kind}, which a constrained baseline stream never holds")]
    UnsupportedNal { offset: usize, kind: u8 },
    #[error("more than {MAX_NAL_UNITS} NAL units in one access unit")]
    TooManyNals,
    #[error("the access unit holds no picture (no slice)")]
    NoPicture,
    #[error("the access unit mixes IDR and non-IDR slices")]
    MixedSlices,
    #[error("the sequence parameter set at byte {offset} is cut short")]
    ShortSps { offset: usize },
    #[error("the sequence parameter set at byte {offset} is invalid: {why}")]
    BadSps { offset: usize, why: &'static str },
    #[error("its parameter set says {}x{}, the stream {}x{}", sps.0, sps.1, stream.0, stream.1)]
    OtherPictureSize { sps: (u32, u32), stream: (u32, u32) },
}

/// One NAL unit: its header byte and payload, without the start code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nal<'a> {
    /// Where its header byte is in the access unit.
    pub offset: usize,
    pub bytes: &'a [u8],
}

impl Nal<'_> {
    /// `nal_unit_type`, the low five bits of the header.
    pub fn kind(&self) -> u8 {
        self.bytes[0] & 0x1f
    }
}

impl fmt::Debug for Nal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Nal(type {} at {}, {} bytes)",
            self.kind(),
            self.offset,
            self.bytes.len()
        )
    }
}

/// The NAL units of an Annex-B buffer, in order. Bytes before the first start
/// code are an error; zero bytes before a start code (a four-byte start code,
/// or `trailing_zero_8bits`) belong to no NAL unit.
pub struct NalUnits<'a> {
    data: &'a [u8],
    /// Where the next NAL unit's header is; `None` once done.
    next: Option<usize>,
    failed: bool,
}

/// Where the start code at or after `from` ends (the index after its `01`).
fn start_code_end(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 2 < data.len() {
        // A start code's third byte is 01; its first two are zero.
        match data[i + 2] {
            1 if data[i] == 0 && data[i + 1] == 0 => return Some(i + 3),
            // 01 after a non-zero, or a byte over 1: no start code can end
            // within the next two positions.
            b if b > 1 => i += 3,
            _ => i += 1,
        }
    }
    None
}

pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    NalUnits {
        data,
        next: None,
        failed: false,
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<Nal<'a>, AnnexBError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let start = match self.next {
            Some(start) => start,
            None => {
                // The first call: the buffer must open with zeros and a start code.
                let lead = self.data.iter().take_while(|&&b| b == 0).count();
                if lead < 2 || self.data.get(lead) != Some(&1) {
                    self.failed = true;
                    return Some(Err(if self.data.is_empty() {
                        AnnexBError::Empty
                    } else {
                        AnnexBError::NoStartCode
                    }));
                }
                lead + 1
            }
        };
        if start >= self.data.len() && self.next.is_some() {
            return None;
        }
        let (end, next) = match start_code_end(self.data, start) {
            Some(after) => (after - 3, Some(after)),
            None => (self.data.len(), None),
        };
        // Zero bytes before the next start code are not part of this unit.
        let mut stop = end;
        while stop > start && self.data[stop - 1] == 0 {
            stop -= 1;
        }
        self.next = Some(next.unwrap_or(self.data.len()));
        if stop == start {
            self.failed = true;
            return Some(Err(AnnexBError::EmptyNal { offset: start }));
        }
        let nal = Nal {
            offset: start,
            bytes: &self.data[start..stop],
        };
        if nal.bytes[0] & 0x80 != 0 {
            self.failed = true;
            return Some(Err(AnnexBError::ForbiddenBit { offset: start }));
        }
        Some(Ok(nal))
    }
}

/// What an access unit holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessUnit {
    /// Its slices are IDR slices: it decodes without any earlier frame (given
    /// the parameter sets, which our encoder sends before every IDR).
    pub keyframe: bool,
    pub slices: usize,
    pub nal_units: usize,
    /// The picture size of its sequence parameter set, when it carries one.
    pub sps_size: Option<(u32, u32)>,
    pub has_pps: bool,
}

/// [`check_access_unit`] for an access unit of a stream of pictures of
/// `stream` size (width, height): a sequence parameter set in it must declare
/// that size, so the decoder never sizes its buffers for another picture.
pub fn check_stream_access_unit(au: &[u8], stream: (u32, u32)) -> Result<AccessUnit, AnnexBError> {
    let found = check_access_unit(au)?;
    match found.sps_size {
        Some(sps) if sps != stream => Err(AnnexBError::OtherPictureSize { sps, stream }),
        _ => Ok(found),
    }
}

/// Walks an access unit: every NAL unit has a sound header and a type a
/// constrained baseline stream may hold (slices, IDR slices, SEI, parameter
/// sets, delimiters, end of sequence or stream, filler); there is a picture;
/// IDR and non-IDR slices do not mix; a sequence parameter set parses.
pub fn check_access_unit(au: &[u8]) -> Result<AccessUnit, AnnexBError> {
    let mut found = AccessUnit::default();
    let mut plain_slices = 0;
    for nal in nal_units(au) {
        let nal = nal?;
        found.nal_units += 1;
        if found.nal_units > MAX_NAL_UNITS {
            return Err(AnnexBError::TooManyNals);
        }
        match nal.kind() {
            NAL_SLICE => plain_slices += 1,
            NAL_IDR => found.keyframe = true,
            NAL_SPS => found.sps_size = Some(sps_size(&nal)?),
            NAL_PPS => found.has_pps = true,
            NAL_SEI | NAL_AUD | 10..=12 => {}
            kind => {
                return Err(AnnexBError::UnsupportedNal {
                    offset: nal.offset,
                    kind,
                })
            }
        }
        if nal.kind() == NAL_IDR || nal.kind() == NAL_SLICE {
            found.slices += 1;
        }
    }
    if found.slices == 0 {
        return Err(AnnexBError::NoPicture);
    }
    if found.keyframe && plain_slices > 0 {
        return Err(AnnexBError::MixedSlices);
    }
    Ok(found)
}

/// Reads the bits of a NAL unit's payload, with emulation prevention bytes
/// (`00 00 03`) taken out as it goes.
struct Bits<'a> {
    data: &'a [u8],
    /// Next byte to load.
    pos: usize,
    /// Zero bytes just loaded (for emulation prevention).
    zeros: usize,
    cache: u64,
    cached: u32,
    offset: usize,
}

impl<'a> Bits<'a> {
    fn new(nal: &Nal<'a>) -> Bits<'a> {
        Bits {
            data: &nal.bytes[1..],
            pos: 0,
            zeros: 0,
            cache: 0,
            cached: 0,
            offset: nal.offset,
        }
    }

    fn short(&self) -> AnnexBError {
        AnnexBError::ShortSps {
            offset: self.offset,
        }
    }

    fn bit(&mut self) -> Result<u32, AnnexBError> {
        if self.cached == 0 {
            let mut byte = *self.data.get(self.pos).ok_or_else(|| self.short())?;
            self.pos += 1;
            if self.zeros >= 2 && byte == 3 {
                byte = *self.data.get(self.pos).ok_or_else(|| self.short())?;
                self.pos += 1;
                self.zeros = 0;
            }
            self.zeros = if byte == 0 { self.zeros + 1 } else { 0 };
            self.cache = byte as u64;
            self.cached = 8;
        }
        self.cached -= 1;
        Ok(((self.cache >> self.cached) & 1) as u32)
    }

    fn bits(&mut self, n: u32) -> Result<u32, AnnexBError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    /// `ue(v)`: Exp-Golomb, at most 32 leading zeros (values up to 2^32 - 2).
    fn ue(&mut self) -> Result<u32, AnnexBError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(AnnexBError::BadSps {
                    offset: self.offset,
                    why: "an Exp-Golomb code longer than 32 bits",
                });
            }
        }
        Ok(((1u64 << zeros) - 1 + self.bits(zeros)? as u64) as u32)
    }

    fn se(&mut self) -> Result<i64, AnnexBError> {
        let k = self.ue()? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// The largest picture side a sequence parameter set may declare, in pixels
/// (level 6.2's limit is 8192 x 4320; openh264 decodes up to 3840 x 2160).
const MAX_SIDE: u32 = 8192;

/// The cropped picture size a sequence parameter set declares (H.264 7.3.2.1.1).
pub fn sps_size(nal: &Nal<'_>) -> Result<(u32, u32), AnnexBError> {
    let bad = |why| AnnexBError::BadSps {
        offset: nal.offset,
        why,
    };
    let mut b = Bits::new(nal);
    let profile = b.bits(8)?;
    b.bits(16)?; // constraint flags, reserved bits, level
    if b.ue()? > 31 {
        return Err(bad("seq_parameter_set_id over 31"));
    }
    let chroma_format = chroma_fields(&mut b, profile)?;
    if b.ue()? > 12 {
        return Err(bad("log2_max_frame_num_minus4 over 12"));
    }
    picture_order_fields(&mut b)?;
    b.ue()?; // max_num_ref_frames
    b.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = b.ue()? as u64 + 1;
    let height_units = b.ue()? as u64 + 1;
    let frame_mbs_only = b.bit()?;
    if frame_mbs_only == 0 {
        b.bit()?; // mb_adaptive_frame_field_flag
    }
    b.bit()?; // direct_8x8_inference_flag
    let height_mbs = height_units * (2 - frame_mbs_only as u64);
    let (mut width, mut height) = (width_mbs * 16, height_mbs * 16);
    if width > MAX_SIDE as u64 || height > MAX_SIDE as u64 {
        return Err(bad("a picture over 8192 pixels a side"));
    }
    if b.bit()? == 1 {
        // Cropping, in chroma units (H.264 table 6-1, equations 7-19 to 7-22).
        let (unit_x, unit_y) = match chroma_format {
            0 | 3 => (1, 2 - frame_mbs_only as u64),
            2 => (2, 2 - frame_mbs_only as u64),
            _ => (2, 2 * (2 - frame_mbs_only as u64)),
        };
        let crop_x = (b.ue()? as u64 + b.ue()? as u64) * unit_x;
        let crop_y = (b.ue()? as u64 + b.ue()? as u64) * unit_y;
        if crop_x >= width || crop_y >= height {
            return Err(bad("cropping removes the whole picture"));
        }
        width -= crop_x;
        height -= crop_y;
    }
    Ok((width as u32, height as u32))
}

/// The fields only the high profiles have (chroma format, bit depths, scaling
/// lists); returns `chroma_format_idc` (1, 4:2:0, for the other profiles).
fn chroma_fields(b: &mut Bits<'_>, profile: u32) -> Result<u32, AnnexBError> {
    if !matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        return Ok(1);
    }
    let chroma_format = b.ue()?;
    if chroma_format > 3 {
        return Err(AnnexBError::BadSps {
            offset: b.offset,
            why: "chroma_format_idc over 3",
        });
    }
    if chroma_format == 3 {
        b.bit()?; // separate_colour_plane_flag
    }
    b.ue()?; // bit_depth_luma_minus8
    b.ue()?; // bit_depth_chroma_minus8
    b.bit()?; // qpprime_y_zero_transform_bypass_flag
    if b.bit()? == 1 {
        let lists = if chroma_format == 3 { 12 } else { 8 };
        for i in 0..lists {
            if b.bit()? == 1 {
                skip_scaling_list(b, if i < 6 { 16 } else { 64 })?;
            }
        }
    }
    Ok(chroma_format)
}

/// Reads past the picture order count fields.
fn picture_order_fields(b: &mut Bits<'_>) -> Result<(), AnnexBError> {
    let offset = b.offset;
    let bad = |why| AnnexBError::BadSps { offset, why };
    match b.ue()? {
        0 => {
            if b.ue()? > 12 {
                return Err(bad("log2_max_pic_order_cnt_lsb_minus4 over 12"));
            }
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let cycle = b.ue()?;
            if cycle > 255 {
                return Err(bad("num_ref_frames_in_pic_order_cnt_cycle over 255"));
            }
            for _ in 0..cycle {
                b.se()?;
            }
        }
        2 => {}
        _ => return Err(bad("pic_order_cnt_type over 2")),
    }
    Ok(())
}

/// Reads past one scaling list (H.264 7.3.2.1.1.1).
fn skip_scaling_list(b: &mut Bits<'_>, size: usize) -> Result<(), AnnexBError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = b.se()?;
            if !(-128..=127).contains(&delta) {
                return Err(AnnexBError::BadSps {
                    offset: b.offset,
                    why: "delta_scale outside -128..127",
                });
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SPS for 1280x720 baseline (as openh264 writes one: 16x16 macroblocks,
    /// 80 x 45 of them, no cropping).
    fn sps_720p() -> Vec<u8> {
        // profile 66, constraints c0, level 31; then ue fields, bit-packed.
        let mut w = BitWriter::default();
        w.bits(66, 8);
        w.bits(0xc0, 8);
        w.bits(31, 8);
        w.ue(0); // sps id
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(2); // poc type 2
        w.ue(1); // max_num_ref_frames
        w.bits(0, 1);
        w.ue(79); // width in mbs - 1
        w.ue(44); // height in map units - 1
        w.bits(1, 1); // frame_mbs_only
        w.bits(1, 1); // direct_8x8
        w.bits(0, 1); // no cropping
        w.bits(0, 1); // no vui
        w.bits(1, 1); // rbsp stop bit
        let mut nal = vec![0x67];
        nal.extend(w.finish());
        nal
    }

    #[derive(Default)]
    struct BitWriter {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }

    impl BitWriter {
        fn bits(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.acc = (self.acc << 1) | ((v >> i) & 1);
                self.n += 1;
                if self.n == 8 {
                    self.out.push(self.acc as u8);
                    self.acc = 0;
                    self.n = 0;
                }
            }
        }
        fn ue(&mut self, v: u64) {
            let v = v + 1;
            let len = 64 - v.leading_zeros();
            self.bits(0, len - 1);
            self.bits(v, len);
        }
        fn finish(mut self) -> Vec<u8> {
            while self.n != 0 {
                self.bits(0, 1);
            }
            self.out
        }
    }

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            out.extend_from_slice(if i == 0 { &[0, 0, 0, 1] } else { &[0, 0, 1] });
            out.extend_from_slice(n);
        }
        out
    }

    #[test]
    fn a_keyframe_with_its_parameter_sets() {
        let sps = sps_720p();
        let unit = au(&[
            &sps,
            &[0x68, 0xce, 0x3c, 0x80],
            &[0x65, 0x88, 0x84, 0x00, 0x00],
        ]);
        let found = check_access_unit(&unit).unwrap();
        assert_eq!(
            found,
            AccessUnit {
                keyframe: true,
                slices: 1,
                nal_units: 3,
                sps_size: Some((1280, 720)),
                has_pps: true,
            }
        );
        // The IDR's own trailing zero belongs to no unit: stripped, like the
        // zero before a four-byte start code.
        let kinds: Vec<_> = nal_units(&unit).map(|n| n.unwrap().bytes.len()).collect();
        assert_eq!(kinds, vec![sps.len(), 4, 3]);
    }

    #[test]
    fn a_parameter_set_must_declare_the_streams_size() {
        let unit = au(&[
            &sps_720p(),
            &[0x68, 0xce, 0x3c, 0x80],
            &[0x65, 0x88, 0x84, 0x00, 0x00],
        ]);
        assert!(check_stream_access_unit(&unit, (1280, 720)).is_ok());
        let err = check_stream_access_unit(&unit, (640, 360)).unwrap_err();
        assert_eq!(
            err,
            AnnexBError::OtherPictureSize {
                sps: (1280, 720),
                stream: (640, 360)
            }
        );
        assert_eq!(
            err.to_string(),
            "its parameter set says 1280x720, the stream 640x360"
        );
        // A delta carries no parameter set: nothing to compare.
        let delta = au(&[&[0x41, 0x9a, 0x02]]);
        assert!(check_stream_access_unit(&delta, (640, 360)).is_ok());
    }

    #[test]
    fn a_delta_frame() {
        let found = check_access_unit(&au(&[&[0x41, 0x9a, 0x02]])).unwrap();
        assert!(!found.keyframe);
        assert_eq!((found.slices, found.sps_size), (1, None));
    }

    #[test]
    fn cropping_gives_1080p() {
        // 120 x 68 macroblocks (1920 x 1088) cropped by 4 chroma rows (8 lines).
        let mut w = BitWriter::default();
        w.bits(66, 8);
        w.bits(0xc0, 8);
        w.bits(40, 8);
        for v in [0, 0, 2, 1] {
            w.ue(v);
        }
        w.bits(0, 1);
        w.ue(119);
        w.ue(67);
        w.bits(0b11, 2);
        w.bits(1, 1); // cropping
        for v in [0, 0, 0, 4] {
            w.ue(v);
        }
        w.bits(0b01, 2);
        let mut nal = vec![0x67];
        nal.extend(w.finish());
        let n = Nal {
            offset: 0,
            bytes: &nal,
        };
        assert_eq!(sps_size(&n).unwrap(), (1920, 1080));
    }

    #[test]
    fn emulation_prevention_is_taken_out() {
        // Width 0 + 1 ... encoded as bytes holding 00 00 03: the reader must
        // skip the 03. A profile byte of 0, then 00 03 01: constraint byte 0,
        // level 1 after the escape.
        let nal = [0x67, 0x00, 0x00, 0x03, 0x01, 0xff];
        let n = Nal {
            offset: 0,
            bytes: &nal,
        };
        let mut b = Bits::new(&n);
        assert_eq!(b.bits(8).unwrap(), 0);
        assert_eq!(b.bits(8).unwrap(), 0);
        assert_eq!(b.bits(8).unwrap(), 1, "the 03 is skipped");
    }

    #[test]
    fn bad_units_say_what_and_where() {
        let cases: Vec<(Vec<u8>, AnnexBError)> = vec![
            (vec![], AnnexBError::Empty),
            (vec![0x65, 1, 2], AnnexBError::NoStartCode),
            (vec![0, 0, 1], AnnexBError::EmptyNal { offset: 3 }),
            (
                vec![0, 0, 1, 0x41, 0, 0, 1, 0xc1],
                AnnexBError::ForbiddenBit { offset: 7 },
            ),
            (
                au(&[&[0x41, 1], &[0x6e, 1]]),
                AnnexBError::UnsupportedNal {
                    offset: 9,
                    kind: 14,
                },
            ),
            (au(&[&[0x67, 66]]), AnnexBError::ShortSps { offset: 4 }),
            (au(&[&[0x68, 0xce]]), AnnexBError::NoPicture),
            (
                au(&[&[0x65, 0x88], &[0x41, 0x9a]]),
                AnnexBError::MixedSlices,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(check_access_unit(&bytes), Err(want.clone()), "{bytes:02x?}");
            assert!(!want.to_string().is_empty());
        }
        let huge = {
            let mut w = BitWriter::default();
            w.bits(66, 8);
            w.bits(0, 16);
            for v in [0, 0, 2, 1] {
                w.ue(v);
            }
            w.bits(0, 1);
            w.ue(1000);
            w.ue(10);
            w.bits(0b11, 2);
            let mut nal = vec![0x67];
            nal.extend(w.finish());
            nal
        };
        assert!(matches!(
            check_access_unit(&au(&[&huge, &[0x65, 0x88]])),
            Err(AnnexBError::BadSps { .. })
        ));
    }

    /// Random and mutated units: an answer, never a panic (the fuzz target
    /// `annexb` does this with coverage guidance).
    #[test]
    fn hostile_units_never_panic() {
        let sps = sps_720p();
        let good = au(&[&sps, &[0x68, 0xce, 0x3c, 0x80], &[0x65, 0x88, 0x84, 0x21]]);
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                (0..rng.usize(..64)).map(|_| rng.u8(..4)).collect()
            } else {
                let mut b = good.clone();
                for _ in 0..rng.usize(1..4) {
                    let i = rng.usize(..b.len());
                    b[i] = rng.u8(..);
                }
                b.truncate(rng.usize(1..=b.len()));
                b
            };
            let _ = check_access_unit(&bytes);
        }
    }
}
