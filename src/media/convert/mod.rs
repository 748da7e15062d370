//! Pixel conversion: the one module every stage uses to change formats.
//!
//! Colour maths is BT.601 full range (JFIF), the convention of JPEG and of most USB
//! cameras. Whole frames are converted by yuvutils-rs, which picks SSE4.1, AVX2 or
//! NEON at run time: 0.2-1 ms a 1080p frame where the plain loops take 1-11 ms
//! (`livestream bench --convert`, docs/benchmarks.md). Its fixed point has 13
//! fractional bits (6 when decoding YUYV/UYVY), and it averages 4:2:x chroma in
//! RGB before converting, so its results differ from the
//! [`reference`](mod@reference)'s by up to [`TOLERANCE`] levels.
//!
//! The [`reference`](mod@reference) module keeps the plain loops (16 fractional
//! bits, rounded) that the tests and the benchmark hold the fast path to. They
//! still do the few conversions yuvutils-rs 0.8.3 gets wrong (RGB → grey,
//! YUYV/UYVY → planar; see `simd.rs`) and those that are copies; [`rgb_to_yuv`],
//! [`yuv_to_rgb`] and [`luma_at`] work on one pixel and stay plain.
//!
//! Every function takes buffers the caller owns and allocates nothing once they
//! have grown (`tests/allocations.rs` checks); frames may have padded rows
//! (`info.stride`).

use crate::media::frame::{Frame, FrameInfo, Limits, PixelFormat};

pub mod reference;
mod simd;
#[cfg(test)]
mod tests;

use simd::{Declined, Packed};

/// The most a fast-path result differs from the [`reference`](mod@reference)'s,
/// in levels of any channel: 2 decoding NV12 and I420, 1 for every other
/// conversion (the tests check a photo and every width from 1 to 130, padded and
/// not). Against the float formula, RGB → YUV is within 1 level and YUV → RGB
/// within 2.
pub const TOLERANCE: u8 = 2;

/// Full-range BT.601 RGB → YUV for one pixel.
#[inline]
pub fn rgb_to_yuv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let y = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16;
    let u = (-11059 * r - 21709 * g + 32768 * b + (128 << 16) + 32768) >> 16;
    let v = (32768 * r - 27439 * g - 5329 * b + (128 << 16) + 32768) >> 16;
    (
        y.clamp(0, 255) as u8,
        u.clamp(0, 255) as u8,
        v.clamp(0, 255) as u8,
    )
}

/// Full-range BT.601 YUV → RGB for one pixel.
#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> (u8, u8, u8) {
    let (y, u, v) = ((y as i32) << 16, u as i32 - 128, v as i32 - 128);
    let r = (y + 91881 * v + 32768) >> 16;
    let g = (y - 22554 * u - 46802 * v + 32768) >> 16;
    let b = (y + 116130 * u + 32768) >> 16;
    (
        r.clamp(0, 255) as u8,
        g.clamp(0, 255) as u8,
        b.clamp(0, 255) as u8,
    )
}

/// Converts a packed RGB24 image (`width * 3` bytes per row) into `dst`, which gets
/// `format` and a tightly packed geometry. `dst.seq`/`capture_us` are left alone.
///
/// Panics only on a programming error: `src` shorter than the image, or a format
/// with an odd size (callers validate geometry first). JPEG is not a target here.
pub fn from_rgb24(src: &[u8], width: u32, height: u32, format: PixelFormat, dst: &mut Frame) {
    assert!(
        !format.is_compressed(),
        "JPEG is encoded by a codec, not converted"
    );
    let info = FrameInfo::packed(format, width, height).expect("validated geometry");
    dst.reset(info);
    let src = &src[..width as usize * height as usize * 3];
    // yuvutils-rs gets RGB → grey wrong on AVX2, and RGB → 4-byte pixels wrong
    // on aarch64's NEON (see `simd`'s module doc).
    let rgb_to_4_bytes = matches!(format, PixelFormat::Xrgb32 | PixelFormat::Rgba32);
    if format == PixelFormat::Grey || (cfg!(target_arch = "aarch64") && rgb_to_4_bytes) {
        return reference::from_rgb24(src, width, height, format, dst);
    }
    if let Err(why) = simd::from_rgb24(src, info, &mut dst.data) {
        declined(info, why);
        reference::from_rgb24(src, width, height, format, dst);
    }
}

/// Bytes per pixel and the byte offsets of red and blue (green is always 1) for
/// the packed RGB formats.
fn rgb_layout(format: PixelFormat) -> (usize, usize, usize) {
    match format {
        PixelFormat::Rgb24 => (3, 0, 2),
        PixelFormat::Bgr24 => (3, 2, 0),
        PixelFormat::Xrgb32 => (4, 2, 0),
        _ => (4, 0, 2),
    }
}

/// The geometry of a frame whose bytes can be converted (`info`, width, height,
/// stride as `usize`), or `None` for JPEG, a geometry [`FrameInfo::validate`]
/// rejects, or a buffer shorter than its geometry.
fn uncompressed(frame: &Frame) -> Option<(FrameInfo, usize, usize, usize)> {
    let info = frame.info;
    let unbounded = Limits {
        max_width: u32::MAX,
        max_height: u32::MAX,
        max_frame_bytes: usize::MAX,
    };
    let len = info.validate(&unbounded).ok()?;
    (!info.format.is_compressed() && frame.data.len() >= len).then_some((
        info,
        info.width as usize,
        info.height as usize,
        info.stride as usize,
    ))
}

/// The fast path gave up on a frame that the reference then converts. `TooWide`
/// is expected for huge frames; a refusal by yuvutils-rs means this module passed
/// it wrong planes: loud in debug builds and tests, a warning (once) in release.
fn declined(info: FrameInfo, why: Declined) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Declined::Refused(e) = why {
        if cfg!(debug_assertions) {
            panic!("yuvutils-rs refused a {info} frame: {e}");
        }
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!("yuvutils-rs refused a {info} frame ({e}); converting with plain loops");
        }
    }
}

/// Converts an uncompressed frame of any format into packed RGB24 (`width * 3`
/// bytes per row) in `out`, which is resized (no allocation once it has grown).
/// Returns `false` for JPEG, which must be decoded instead, and for a frame whose
/// buffer is shorter than its geometry.
pub fn to_rgb24(frame: &Frame, out: &mut Vec<u8>) -> bool {
    let Some((info, w, h, _)) = uncompressed(frame) else {
        return false;
    };
    out.resize(w * h * 3, 0);
    if let Err(why) = simd::decode(frame, out, Packed::Rgb24, |_| {}) {
        declined(info, why);
        return reference::to_rgb24(frame, out);
    }
    true
}

/// Converts an uncompressed frame of even width and height into tightly packed
/// I420 (the Y plane, then U, then V, 4:2:0) in `out`, which is resized; what
/// video encoders take. RGB24 goes through yuvutils-rs's SIMD path; NV12 is a
/// copy and a deinterleave, YUYV and UYVY a deinterleave with each chroma pair
/// of rows averaged, grey gets neutral chroma; the other RGB formats go through
/// RGB24 in `rgb` (scratch). I420 itself needs no conversion (encoders take
/// its planes with their strides). `false` for JPEG, odd sizes and a buffer
/// shorter than its geometry. No allocation once the buffers have grown.
pub fn to_i420(frame: &Frame, rgb: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    let Some((info, w, h, stride)) = uncompressed(frame) else {
        return false;
    };
    if w % 2 != 0 || h % 2 != 0 {
        return false;
    }
    let target = FrameInfo::packed(PixelFormat::I420, info.width, info.height)
        .expect("even, validated geometry");
    out.resize(w * h * 3 / 2, 0);
    let d = &frame.data;
    let (y, chroma) = out.split_at_mut(w * h);
    let (u, v) = chroma.split_at_mut(w * h / 4);
    match info.format {
        PixelFormat::I420 => {
            let (cs, plane) = (stride / 2, stride * h / 4);
            let chroma = &d[stride * h..];
            for row in 0..h {
                y[row * w..][..w].copy_from_slice(&d[row * stride..][..w]);
            }
            for row in 0..h / 2 {
                u[row * w / 2..][..w / 2].copy_from_slice(&chroma[row * cs..][..w / 2]);
                v[row * w / 2..][..w / 2].copy_from_slice(&chroma[plane + row * cs..][..w / 2]);
            }
        }
        PixelFormat::Nv12 => {
            for (row, dst) in y.chunks_exact_mut(w).enumerate() {
                dst.copy_from_slice(&d[row * stride..row * stride + w]);
            }
            let uv = &d[stride * h..];
            for (row, (u, v)) in u
                .chunks_exact_mut(w / 2)
                .zip(v.chunks_exact_mut(w / 2))
                .enumerate()
            {
                let line = &uv[row * stride..row * stride + w];
                for ((pair, u), v) in line.chunks_exact(2).zip(u.iter_mut()).zip(v.iter_mut()) {
                    *u = pair[0];
                    *v = pair[1];
                }
            }
        }
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            let (yo, uo, vo) = if info.format == PixelFormat::Yuyv {
                (0, 1, 3)
            } else {
                (1, 0, 2)
            };
            for row in 0..h / 2 {
                let top = &d[2 * row * stride..2 * row * stride + 2 * w];
                let bottom = &d[(2 * row + 1) * stride..(2 * row + 1) * stride + 2 * w];
                for (dst, line) in [(2 * row, top), (2 * row + 1, bottom)] {
                    for (p, px) in y[dst * w..dst * w + w].iter_mut().zip(line.chunks_exact(2)) {
                        *p = px[yo];
                    }
                }
                let avg = |a: u8, b: u8| (a as u16 + b as u16).div_ceil(2) as u8;
                let (u, v) = (
                    &mut u[row * w / 2..][..w / 2],
                    &mut v[row * w / 2..][..w / 2],
                );
                for (((t, b), u), v) in top
                    .chunks_exact(4)
                    .zip(bottom.chunks_exact(4))
                    .zip(u)
                    .zip(v)
                {
                    *u = avg(t[uo], b[uo]);
                    *v = avg(t[vo], b[vo]);
                }
            }
        }
        PixelFormat::Grey => {
            for (row, dst) in y.chunks_exact_mut(w).enumerate() {
                dst.copy_from_slice(&d[row * stride..row * stride + w]);
            }
            u.fill(128);
            v.fill(128);
        }
        _ => {
            let src: &[u8] = if info.format == PixelFormat::Rgb24 && stride == w * 3 {
                &d[..w * h * 3]
            } else {
                if !to_rgb24(frame, rgb) {
                    return false;
                }
                rgb
            };
            if let Err(why) = simd::from_rgb24(src, target, out) {
                declined(info, why);
                let mut f = Frame::empty();
                reference::from_rgb24(src, info.width, info.height, PixelFormat::I420, &mut f);
                out.copy_from_slice(&f.data);
            }
        }
    }
    true
}

/// Converts an uncompressed frame into 32-bit pixels 0x00RRGGBB (what minifb and
/// X11 windows take) in `out`, directly (no RGB24 step); `rgb` is scratch for the
/// plain fallback (big-endian targets). Both are reused: no allocation once they
/// have grown. `false` for JPEG and for a buffer shorter than its geometry.
pub fn to_xrgb_u32(frame: &Frame, rgb: &mut Vec<u8>, out: &mut Vec<u32>) -> bool {
    let Some((_, w, h, _)) = uncompressed(frame) else {
        return false;
    };
    out.resize(w * h, 0);
    to_xrgb_u32_into(frame, rgb, out)
}

/// [`to_xrgb_u32`] into memory the caller sized: `out` holds exactly `width *
/// height` words, packed (a window's shared-memory image, say, so the picture is
/// converted where the display server reads it, without a copy). `false` for JPEG,
/// a buffer shorter than its geometry, and an `out` of another length.
pub fn to_xrgb_u32_into(frame: &Frame, rgb: &mut Vec<u8>, out: &mut [u32]) -> bool {
    let Some((info, w, h, _)) = uncompressed(frame) else {
        return false;
    };
    if out.len() != w * h {
        return false;
    }
    // B, G, R, A bytes are the word 0xAARRGGBB on little-endian targets only.
    if cfg!(target_endian = "big") {
        return reference::to_xrgb_u32_into(frame, rgb, out);
    }
    // yuvutils-rs writes alpha 255; clear it while the strip is still in cache.
    let clear_alpha = |strip: &mut [u32]| strip.iter_mut().for_each(|p| *p &= 0x00FF_FFFF);
    if let Err(why) = simd::decode(frame, out, Packed::Bgra, clear_alpha) {
        declined(info, why);
        return reference::to_xrgb_u32_into(frame, rgb, out);
    }
    true
}

/// The luma (0-255) of pixel (x, y) of an uncompressed frame, for reading test
/// stamps back from any format. `None` outside the frame or for JPEG.
pub fn luma_at(frame: &Frame, x: u32, y: u32) -> Option<u8> {
    let info = frame.info;
    if x >= info.width || y >= info.height {
        return None;
    }
    let (x, y, s) = (x as usize, y as usize, info.stride as usize);
    let d = &frame.data;
    let row = y * s;
    match info.format {
        PixelFormat::Rgb24 => {
            let i = row + x * 3;
            Some(rgb_to_yuv(*d.get(i)?, *d.get(i + 1)?, *d.get(i + 2)?).0)
        }
        PixelFormat::Bgr24 => {
            let i = row + x * 3;
            Some(rgb_to_yuv(*d.get(i + 2)?, *d.get(i + 1)?, *d.get(i)?).0)
        }
        PixelFormat::Xrgb32 => {
            let i = row + x * 4;
            Some(rgb_to_yuv(*d.get(i + 2)?, *d.get(i + 1)?, *d.get(i)?).0)
        }
        PixelFormat::Rgba32 => {
            let i = row + x * 4;
            Some(rgb_to_yuv(*d.get(i)?, *d.get(i + 1)?, *d.get(i + 2)?).0)
        }
        PixelFormat::Yuyv => d.get(row + x * 2).copied(),
        PixelFormat::Uyvy => d.get(row + x * 2 + 1).copied(),
        PixelFormat::Nv12 | PixelFormat::I420 | PixelFormat::Grey => d.get(row + x).copied(),
        PixelFormat::Jpeg | PixelFormat::H264 => None,
    }
}

/// Planar 8-bit YUV layouts that Y4M (and so ffmpeg) reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planar {
    /// 4:2:0, Y4M `C420jpeg`.
    Yuv420,
    /// 4:2:2, Y4M `C422`.
    Yuv422,
    /// 4:4:4, Y4M `C444`.
    Yuv444,
    /// Luma only, Y4M `Cmono`.
    Mono,
}

impl Planar {
    /// The planar layout an uncompressed format maps to without losing anything.
    pub fn for_format(format: PixelFormat) -> Option<Planar> {
        match format {
            PixelFormat::Nv12 | PixelFormat::I420 => Some(Planar::Yuv420),
            PixelFormat::Yuyv | PixelFormat::Uyvy => Some(Planar::Yuv422),
            PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Xrgb32 | PixelFormat::Rgba32 => {
                Some(Planar::Yuv444)
            }
            PixelFormat::Grey => Some(Planar::Mono),
            PixelFormat::Jpeg | PixelFormat::H264 => None,
        }
    }
}

/// Writes `frame` as planar YUV (Y plane, then U, then V, tightly packed) into `out`
/// (cleared first), in the layout [`Planar::for_format`] gives. Respects the stride.
/// `None` for JPEG and for a buffer shorter than its geometry.
pub fn to_planar(frame: &Frame, out: &mut Vec<u8>) -> Option<Planar> {
    out.clear();
    let (info, w, h, _) = uncompressed(frame)?;
    let layout = Planar::for_format(info.format)?;
    if layout != Planar::Yuv444 {
        // Copies, and YUYV/UYVY deinterleaving, which yuvutils-rs gets wrong (see
        // `simd`'s module doc).
        return reference::to_planar(frame, out);
    }
    out.resize(w * h * 3, 0);
    if let Err(why) = simd::to_planar(frame, out) {
        declined(info, why);
        return reference::to_planar(frame, out);
    }
    Some(layout)
}
