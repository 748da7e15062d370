//! The yuvutils-rs calls behind `convert`'s frame-sized conversions.
//!
//! yuvutils-rs (0.8.3) picks SSE4.1, AVX2 or NEON at run time, checks every plane's
//! size before it reads or writes, and allocates nothing on the paths used here
//! (its 4-to-4 channel shuffles allocate a table per call, so RGBA → BGRX is a
//! loop here). Its ways shape this file:
//! - packed 4:2:2 must be exactly `2 * width` bytes a row and NV12's chroma plane
//!   exactly `width`, whatever stride is passed: frames with padded rows go one row
//!   (NV12: two rows) per call;
//! - its row loops use `chunks_exact(stride)`, which would skip a last row shorter
//!   than the stride: every plane passed here is made of whole rows;
//! - it converts RGB to YUYV only through planar 4:2:2, so that goes through a
//!   scratch on the stack, a strip of rows at a time;
//! - two of its conversions are wrong on AVX2 and are not used (the
//!   `every_width_matches_the_reference` test finds both): RGB → grey
//!   (`rgb_to_yuv400`) gets up to 16 pixels near the end of a row wrong, mostly
//!   zero, whenever the width modulo 32 is 0 or above 8 (1920 included; upstream
//!   issue #97, fixed only under the crate's new name, `yuv`), and YUYV/UYVY →
//!   planar 4:2:2 (`yuyv422_to_yuv422`) garbles the end of most rows. `convert`
//!   runs the reference for those two.
//! - on aarch64 its NEON RGB → BGRA/RGBA shuffle (`rgb_to_bgra`, `rgb_to_rgba`)
//!   writes alpha 0 instead of 255 for the last `width % 16` pixels of every row
//!   (its 8-pixel loader, `neon_vld_h_rgb`, fills alpha with 0 where the 16-pixel
//!   one fills 255; found by the same test, the first time it ran on ARM, under
//!   qemu-aarch64). `convert` runs the reference for RGB → xrgb32/rgba32 there.
//!   On 32-bit ARM yuvutils-rs has no NEON code and runs its plain loops.

use std::ops::Range;

use bytemuck::Pod;
use yuvutils_rs::{
    self as yuv, BufferStoreMut, YuvBiPlanarImage, YuvBiPlanarImageMut, YuvConversionMode,
    YuvError, YuvGrayImage, YuvPackedImage, YuvPackedImageMut, YuvPlanarImage, YuvPlanarImageMut,
    YuvRange, YuvStandardMatrix,
};

use crate::media::frame::{Frame, FrameInfo, PixelFormat};

const RANGE: YuvRange = YuvRange::Full;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;
/// 13 fractional bits (decoding packed 4:2:2: 6). The other modes, `Fast` (7 bits,
/// libyuv's) and `Professional` (15), need yuvutils-rs cargo features.
const MODE: YuvConversionMode = YuvConversionMode::Balanced;

/// Output written per call: small enough that a strip is still in the L2 cache
/// when the window path clears its alpha bytes.
const STRIP_BYTES: usize = 64 << 10;

/// Planar 4:2:2 scratch for RGB → YUYV/UYVY: rows up to 16384 pixels wide.
const SCRATCH_422: usize = 32 << 10;

/// Why the fast path did not convert a frame; the caller then runs the reference.
#[derive(Debug)]
pub(super) enum Declined {
    /// RGB → YUYV/UYVY rows wider than [`SCRATCH_422`] holds.
    TooWide,
    /// yuvutils-rs refused the planes it was given: a bug in this file.
    Refused(YuvError),
}

impl From<YuvError> for Declined {
    fn from(e: YuvError) -> Declined {
        Declined::Refused(e)
    }
}

/// Packed pixels a frame is decoded to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Packed {
    /// R, G, B.
    Rgb24,
    /// B, G, R, A: the little-endian word 0xAARRGGBB, where A is 255 or the
    /// source's X or alpha byte (the window path clears it).
    Bgra,
}

impl Packed {
    fn bytes(self) -> usize {
        match self {
            Packed::Rgb24 => 3,
            Packed::Bgra => 4,
        }
    }
}

/// Decodes the whole of a validated uncompressed `frame` into `out` (exactly
/// `width * height` pixels of `to`, as `T`s), a strip of rows per call, and hands
/// each finished strip to `finish`.
pub(super) fn decode<T: Pod>(
    frame: &Frame,
    out: &mut [T],
    to: Packed,
    mut finish: impl FnMut(&mut [T]),
) -> Result<(), Declined> {
    let info = frame.info;
    let (w, s) = (info.width as usize, info.stride as usize);
    let row_bytes = w * to.bytes();
    let fit = (STRIP_BYTES / row_bytes).max(1);
    let rows = match info.format {
        PixelFormat::Yuyv | PixelFormat::Uyvy if s != 2 * w => 1,
        PixelFormat::Nv12 if s != w => 2,
        PixelFormat::Nv12 | PixelFormat::I420 => (fit + 1) & !1,
        _ => fit,
    };
    let row = row_bytes / std::mem::size_of::<T>();
    for (i, strip) in out.chunks_mut(rows * row).enumerate() {
        let y0 = i * rows;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(strip);
        decode_rows(frame, y0..y0 + bytes.len() / row_bytes, bytes, to)?;
        finish(strip);
    }
    Ok(())
}

/// Some whole rows of a frame and the packed rows they decode to.
struct Strip<'a> {
    /// The source rows, `stride` bytes apart (the luma plane's, for YUV).
    lines: &'a [u8],
    stride: usize,
    /// Exactly `height` rows of `width` pixels of `to`.
    out: &'a mut [u8],
    to: Packed,
    width: u32,
    height: u32,
}

impl Strip<'_> {
    fn out_stride(&self) -> u32 {
        (self.width as usize * self.to.bytes()) as u32
    }

    fn rgb(&self) -> bool {
        self.to == Packed::Rgb24
    }
}

/// Decodes rows `rows` (even bounds for 4:2:0) of `frame` into `out`, which holds
/// exactly those rows, packed.
fn decode_rows(
    frame: &Frame,
    rows: Range<usize>,
    out: &mut [u8],
    to: Packed,
) -> Result<(), YuvError> {
    let info = frame.info;
    let s = info.stride as usize;
    let strip = Strip {
        lines: &frame.data[rows.start * s..rows.end * s],
        stride: s,
        out,
        to,
        width: info.width,
        height: rows.len() as u32,
    };
    match info.format {
        PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Xrgb32 | PixelFormat::Rgba32 => {
            rgb_rows(info.format, strip)
        }
        PixelFormat::Grey => grey_rows(strip),
        PixelFormat::Yuyv | PixelFormat::Uyvy => packed_422_rows(info.format, strip),
        PixelFormat::I420 => i420_rows(frame, rows, strip),
        PixelFormat::Nv12 => nv12_rows(frame, rows, strip),
        PixelFormat::Jpeg | PixelFormat::H264 => {
            unreachable!("{} frames are decoded by a codec", info.format)
        }
    }
}

/// RGB-family rows: copied, mapped as words, or shuffled by yuvutils-rs.
fn rgb_rows(format: PixelFormat, st: Strip) -> Result<(), YuvError> {
    let (s, out_stride) = (st.stride, st.out_stride());
    let shuffle = match (format, st.rgb()) {
        (PixelFormat::Rgb24, true) => {
            let n = out_stride as usize;
            for (o, l) in st.out.chunks_exact_mut(n).zip(st.lines.chunks_exact(s)) {
                o.copy_from_slice(&l[..n]);
            }
            return Ok(());
        }
        (PixelFormat::Xrgb32, false) => {
            map_words(st.lines, s, st.out, |v| v);
            return Ok(());
        }
        // yuvutils-rs's 4-to-4 shuffles allocate a table per call.
        (PixelFormat::Rgba32, false) => {
            map_words(st.lines, s, st.out, |v| {
                (v & 0xFF00_FF00) | (v & 0xFF) << 16 | (v >> 16) & 0xFF
            });
            return Ok(());
        }
        (PixelFormat::Rgb24, false) => yuv::rgb_to_bgra,
        (PixelFormat::Bgr24, true) => yuv::bgr_to_rgb,
        (PixelFormat::Bgr24, false) => yuv::bgr_to_bgra,
        (PixelFormat::Xrgb32, true) => yuv::bgra_to_rgb,
        _ => yuv::rgba_to_rgb,
    };
    shuffle(st.lines, s as u32, st.out, out_stride, st.width, st.height)
}

fn grey_rows(st: Strip) -> Result<(), YuvError> {
    let grey = YuvGrayImage {
        y_plane: st.lines,
        y_stride: st.stride as u32,
        width: st.width,
        height: st.height,
    };
    let f = if st.rgb() {
        yuv::yuv400_to_rgb
    } else {
        yuv::yuv400_to_bgra
    };
    f(&grey, st.out, st.out_stride(), RANGE, MATRIX)
}

fn packed_422_rows(format: PixelFormat, st: Strip) -> Result<(), YuvError> {
    let f = match (format, st.rgb()) {
        (PixelFormat::Yuyv, true) => yuv::yuyv422_to_rgb,
        (PixelFormat::Yuyv, false) => yuv::yuyv422_to_bgra,
        (_, true) => yuv::uyvy422_to_rgb,
        (_, false) => yuv::uyvy422_to_bgra,
    };
    // Padded rows come one at a time (see the module doc).
    let packed = YuvPackedImage {
        yuy: &st.lines[..2 * st.width as usize * st.height as usize],
        yuy_stride: 2 * st.width,
        width: st.width,
        height: st.height,
    };
    f(&packed, st.out, st.out_stride(), RANGE, MATRIX)
}

fn i420_rows(frame: &Frame, rows: Range<usize>, st: Strip) -> Result<(), YuvError> {
    let (s, h) = (st.stride, frame.info.height as usize);
    let (cs, ch) = (s / 2, h / 2);
    let (u, v) = frame.data[s * h..s * h + 2 * cs * ch].split_at(cs * ch);
    let c = rows.start / 2 * cs..rows.end / 2 * cs;
    let planar = YuvPlanarImage {
        y_plane: st.lines,
        y_stride: s as u32,
        u_plane: &u[c.clone()],
        u_stride: cs as u32,
        v_plane: &v[c],
        v_stride: cs as u32,
        width: st.width,
        height: st.height,
    };
    let f = if st.rgb() {
        yuv::yuv420_to_rgb
    } else {
        yuv::yuv420_to_bgra
    };
    f(&planar, st.out, st.out_stride(), RANGE, MATRIX)
}

fn nv12_rows(frame: &Frame, rows: Range<usize>, st: Strip) -> Result<(), YuvError> {
    let (s, h) = (st.stride, frame.info.height as usize);
    // Padded rows come two at a time, with one row of chroma: only its first
    // `width` bytes (see the module doc).
    let chroma = &frame.data[s * h + rows.start / 2 * s..];
    let nv12 = YuvBiPlanarImage {
        y_plane: st.lines,
        y_stride: s as u32,
        uv_plane: &chroma[..st.width as usize * rows.len() / 2],
        uv_stride: st.width,
        width: st.width,
        height: st.height,
    };
    let f = if st.rgb() {
        yuv::yuv_nv12_to_rgb
    } else {
        yuv::yuv_nv12_to_bgra
    };
    f(&nv12, st.out, st.out_stride(), RANGE, MATRIX, MODE)
}

/// Maps the 32-bit little-endian pixels of `lines` (rows `stride` bytes apart)
/// through `f` into the packed rows of `out`: as words, which the compiler
/// vectorises, when both sides are 4-byte aligned (as `Vec<u32>` outputs and
/// allocator-made frame buffers with a stride of whole pixels are), else a byte
/// loop.
fn map_words(lines: &[u8], stride: usize, out: &mut [u8], f: impl Fn(u32) -> u32) {
    let n = out.len() / (lines.len() / stride);
    for (o, l) in out.chunks_exact_mut(n).zip(lines.chunks_exact(stride)) {
        let l = &l[..n];
        match (
            bytemuck::try_cast_slice::<u8, u32>(l),
            bytemuck::try_cast_slice_mut::<u8, u32>(o),
        ) {
            (Ok(l), Ok(o)) => o.iter_mut().zip(l).for_each(|(o, &v)| *o = f(v)),
            _ => {
                for (o, p) in o.chunks_exact_mut(4).zip(l.chunks_exact(4)) {
                    let v = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                    o.copy_from_slice(&f(v).to_le_bytes());
                }
            }
        }
    }
}

/// Converts packed RGB24 `src` (exactly the image) into `out`, a tightly packed
/// `info` frame's bytes.
pub(super) fn from_rgb24(src: &[u8], info: FrameInfo, out: &mut [u8]) -> Result<(), Declined> {
    let (w, h) = (info.width as usize, info.height as usize);
    let (width, height) = (info.width, info.height);
    let src_stride = width * 3;
    match info.format {
        PixelFormat::Rgb24 => out.copy_from_slice(src),
        PixelFormat::Bgr24 => yuv::rgb_to_bgr(src, src_stride, out, width * 3, width, height)?,
        PixelFormat::Xrgb32 => yuv::rgb_to_bgra(src, src_stride, out, width * 4, width, height)?,
        PixelFormat::Rgba32 => yuv::rgb_to_rgba(src, src_stride, out, width * 4, width, height)?,
        PixelFormat::I420 => {
            let (y, chroma) = out.split_at_mut(w * h);
            let (u, v) = chroma.split_at_mut(w * h / 4);
            let mut planar = planar_mut(y, u, v, width, height);
            yuv::rgb_to_yuv420(&mut planar, src, src_stride, RANGE, MATRIX, MODE)?;
        }
        PixelFormat::Nv12 => {
            let (y, uv) = out.split_at_mut(w * h);
            let mut nv12 = YuvBiPlanarImageMut {
                y_plane: BufferStoreMut::Borrowed(y),
                y_stride: width,
                uv_plane: BufferStoreMut::Borrowed(uv),
                uv_stride: width,
                width,
                height,
            };
            yuv::rgb_to_yuv_nv12(&mut nv12, src, src_stride, RANGE, MATRIX, MODE)?;
        }
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            let rows = SCRATCH_422 / (2 * w);
            if rows == 0 {
                return Err(Declined::TooWide);
            }
            let pack = if info.format == PixelFormat::Yuyv {
                yuv::yuv422_to_yuyv422
            } else {
                yuv::yuv422_to_uyvy422
            };
            let mut scratch = [0u8; SCRATCH_422];
            for (src, out) in src.chunks(rows * w * 3).zip(out.chunks_mut(rows * w * 2)) {
                let n = src.len() / (w * 3);
                let (y, chroma) = scratch[..2 * w * n].split_at_mut(w * n);
                let (u, v) = chroma.split_at_mut(w * n / 2);
                let mut planar = planar_mut(y, u, v, width, n as u32);
                yuv::rgb_to_yuv422(&mut planar, src, src_stride, RANGE, MATRIX, MODE)?;
                let mut packed = YuvPackedImageMut {
                    yuy: BufferStoreMut::Borrowed(out),
                    yuy_stride: 2 * width,
                    width,
                    height: n as u32,
                };
                pack(&mut packed, &planar.to_fixed())?;
            }
        }
        PixelFormat::Grey | PixelFormat::Jpeg | PixelFormat::H264 => {
            unreachable!("{} is not converted here (see the module doc)", info.format)
        }
    }
    Ok(())
}

/// Planar Y, U, V of a `width`-wide image made of tightly packed planes (chroma at
/// half width; its height follows from the planes' lengths).
fn planar_mut<'a>(
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
    width: u32,
    height: u32,
) -> YuvPlanarImageMut<'a, u8> {
    YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: width,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: width / 2,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: width / 2,
        width,
        height,
    }
}

/// Writes a validated RGB-family frame as planar 4:4:4 into `out` (exactly the
/// planes' size). Other formats are copies that [`crate::media::convert::to_planar`] does
/// itself (see the module doc for YUYV and UYVY).
pub(super) fn to_planar(frame: &Frame, out: &mut [u8]) -> Result<(), Declined> {
    let info = frame.info;
    let (w, h, s) = (
        info.width as usize,
        info.height as usize,
        info.stride as usize,
    );
    let (width, height) = (info.width, info.height);
    let f = match info.format {
        PixelFormat::Rgb24 => yuv::rgb_to_yuv444,
        PixelFormat::Bgr24 => yuv::bgr_to_yuv444,
        PixelFormat::Xrgb32 => yuv::bgra_to_yuv444,
        PixelFormat::Rgba32 => yuv::rgba_to_yuv444,
        _ => unreachable!("{} is copied, not converted", info.format),
    };
    let (y, chroma) = out.split_at_mut(w * h);
    let (u, v) = chroma.split_at_mut(w * h);
    let mut planar = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: width,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: width,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: width,
        width,
        height,
    };
    f(
        &mut planar,
        &frame.data[..s * h],
        s as u32,
        RANGE,
        MATRIX,
        MODE,
    )?;
    Ok(())
}
