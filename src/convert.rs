//! Pixel conversion: the one module every stage uses to change formats.
//!
//! Colour maths is BT.601 full range (JFIF), the convention of JPEG and of most USB
//! cameras. Integer fixed point with 16 fractional bits, rounded.
//! These are plain loops; the camera issue measures them against a SIMD library.

use crate::frame::{Frame, FrameInfo, PixelFormat};

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
    let info = FrameInfo::packed(format, width, height).expect("validated geometry");
    dst.reset(info);
    let (w, h) = (width as usize, height as usize);
    let src = &src[..w * h * 3];
    let out = &mut dst.data[..];
    match format {
        PixelFormat::Rgb24 => out.copy_from_slice(src),
        PixelFormat::Bgr24 => {
            for (o, p) in out.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                o.copy_from_slice(&[p[2], p[1], p[0]]);
            }
        }
        PixelFormat::Xrgb32 => {
            for (o, p) in out.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                o.copy_from_slice(&[p[2], p[1], p[0], 255]);
            }
        }
        PixelFormat::Rgba32 => {
            for (o, p) in out.chunks_exact_mut(4).zip(src.chunks_exact(3)) {
                o.copy_from_slice(&[p[0], p[1], p[2], 255]);
            }
        }
        PixelFormat::Grey => {
            for (o, p) in out.iter_mut().zip(src.chunks_exact(3)) {
                *o = rgb_to_yuv(p[0], p[1], p[2]).0;
            }
        }
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            let uyvy = format == PixelFormat::Uyvy;
            for (o, p) in out.chunks_exact_mut(4).zip(src.chunks_exact(6)) {
                let (y0, u0, v0) = rgb_to_yuv(p[0], p[1], p[2]);
                let (y1, u1, v1) = rgb_to_yuv(p[3], p[4], p[5]);
                let u = (u0 as u16 + u1 as u16).div_ceil(2) as u8;
                let v = (v0 as u16 + v1 as u16).div_ceil(2) as u8;
                if uyvy {
                    o.copy_from_slice(&[u, y0, v, y1]);
                } else {
                    o.copy_from_slice(&[y0, u, y1, v]);
                }
            }
        }
        PixelFormat::Nv12 | PixelFormat::I420 => {
            let (luma, chroma) = out.split_at_mut(w * h);
            for (o, p) in luma.iter_mut().zip(src.chunks_exact(3)) {
                *o = rgb_to_yuv(p[0], p[1], p[2]).0;
            }
            let (cw, ch) = (w / 2, h / 2);
            for cy in 0..ch {
                for cx in 0..cw {
                    let (mut su, mut sv) = (0u32, 0u32);
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let i = ((cy * 2 + dy) * w + cx * 2 + dx) * 3;
                        let (_, u, v) = rgb_to_yuv(src[i], src[i + 1], src[i + 2]);
                        su += u as u32;
                        sv += v as u32;
                    }
                    let (u, v) = (((su + 2) / 4) as u8, ((sv + 2) / 4) as u8);
                    if format == PixelFormat::Nv12 {
                        chroma[(cy * cw + cx) * 2] = u;
                        chroma[(cy * cw + cx) * 2 + 1] = v;
                    } else {
                        chroma[cy * cw + cx] = u;
                        chroma[cw * ch + cy * cw + cx] = v;
                    }
                }
            }
        }
        PixelFormat::Jpeg => unreachable!("JPEG is encoded by a codec, not converted"),
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
/// stride as `usize`), or `None` for JPEG or a buffer shorter than its geometry.
fn uncompressed(frame: &Frame) -> Option<(FrameInfo, usize, usize, usize)> {
    let info = frame.info;
    (info.format != PixelFormat::Jpeg && frame.data.len() >= info.byte_len()).then_some((
        info,
        info.width as usize,
        info.height as usize,
        info.stride as usize,
    ))
}

/// Converts an uncompressed frame of any format into packed RGB24 (`width * 3`
/// bytes per row) in `out`, which is resized (no allocation once it has grown).
/// Returns `false` for JPEG, which must be decoded instead.
pub fn to_rgb24(frame: &Frame, out: &mut Vec<u8>) -> bool {
    let Some((info, w, h, s)) = uncompressed(frame) else {
        return false;
    };
    out.resize(w * h * 3, 0);
    let d = &frame.data;
    let rows = out.chunks_exact_mut(w * 3).enumerate();
    match info.format {
        PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Xrgb32 | PixelFormat::Rgba32 => {
            let (bpp, ri, bi) = rgb_layout(info.format);
            for (y, o) in rows {
                let row = &d[y * s..y * s + w * bpp];
                if info.format == PixelFormat::Rgb24 {
                    o.copy_from_slice(row);
                    continue;
                }
                for (o, p) in o.chunks_exact_mut(3).zip(row.chunks_exact(bpp)) {
                    o.copy_from_slice(&[p[ri], p[1], p[bi]]);
                }
            }
        }
        PixelFormat::Grey => {
            for (y, o) in rows {
                for (o, &g) in o.chunks_exact_mut(3).zip(&d[y * s..y * s + w]) {
                    o.fill(g);
                }
            }
        }
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            let (y0, u, y1, v) = if info.format == PixelFormat::Yuyv {
                (0, 1, 2, 3)
            } else {
                (1, 0, 3, 2)
            };
            for (y, o) in rows {
                let row = &d[y * s..y * s + w * 2];
                for (o, p) in o.chunks_exact_mut(6).zip(row.chunks_exact(4)) {
                    let (r0, g0, b0) = yuv_to_rgb(p[y0], p[u], p[v]);
                    let (r1, g1, b1) = yuv_to_rgb(p[y1], p[u], p[v]);
                    o.copy_from_slice(&[r0, g0, b0, r1, g1, b1]);
                }
            }
        }
        PixelFormat::Nv12 | PixelFormat::I420 => {
            let chroma = &d[s * h..];
            let cs = if info.format == PixelFormat::I420 {
                s / 2
            } else {
                s
            };
            let v_plane = cs * (h / 2);
            for (y, o) in rows {
                let luma = &d[y * s..y * s + w];
                let crow = (y / 2) * cs;
                for (x, o) in o.chunks_exact_mut(3).enumerate() {
                    let (u, v) = if info.format == PixelFormat::Nv12 {
                        (chroma[crow + (x / 2) * 2], chroma[crow + (x / 2) * 2 + 1])
                    } else {
                        (chroma[crow + x / 2], chroma[v_plane + crow + x / 2])
                    };
                    let (r, g, b) = yuv_to_rgb(luma[x], u, v);
                    o.copy_from_slice(&[r, g, b]);
                }
            }
        }
        PixelFormat::Jpeg => return false,
    }
    true
}

/// Converts an uncompressed frame into 32-bit pixels 0x00RRGGBB (what minifb and
/// X11 windows take) in `out`; `rgb` is scratch for formats that go through RGB24.
/// Both are reused: no allocation once they have grown. `false` for JPEG.
pub fn to_xrgb_u32(frame: &Frame, rgb: &mut Vec<u8>, out: &mut Vec<u32>) -> bool {
    let Some((info, w, h, s)) = uncompressed(frame) else {
        return false;
    };
    out.resize(w * h, 0);
    match info.format {
        PixelFormat::Xrgb32 => {
            for (y, o) in out.chunks_exact_mut(w).enumerate() {
                for (o, p) in o
                    .iter_mut()
                    .zip(frame.data[y * s..y * s + w * 4].chunks_exact(4))
                {
                    *o = u32::from_le_bytes([p[0], p[1], p[2], 0]);
                }
            }
        }
        PixelFormat::Rgb24 => {
            for (y, o) in out.chunks_exact_mut(w).enumerate() {
                for (o, p) in o
                    .iter_mut()
                    .zip(frame.data[y * s..y * s + w * 3].chunks_exact(3))
                {
                    *o = (p[0] as u32) << 16 | (p[1] as u32) << 8 | p[2] as u32;
                }
            }
        }
        _ => {
            to_rgb24(frame, rgb);
            for (o, p) in out.iter_mut().zip(rgb.chunks_exact(3)) {
                *o = (p[0] as u32) << 16 | (p[1] as u32) << 8 | p[2] as u32;
            }
        }
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
        PixelFormat::Jpeg => None,
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
            PixelFormat::Jpeg => None,
        }
    }
}

/// Writes `frame` as planar YUV (Y plane, then U, then V, tightly packed) into `out`
/// (cleared first), in the layout [`Planar::for_format`] gives. Respects the stride.
pub fn to_planar(frame: &Frame, out: &mut Vec<u8>) -> Option<Planar> {
    let info = frame.info;
    let layout = Planar::for_format(info.format)?;
    let (w, h, s) = (
        info.width as usize,
        info.height as usize,
        info.stride as usize,
    );
    let d = &frame.data;
    out.clear();
    match info.format {
        PixelFormat::Grey => {
            for row in d.chunks_exact(s).take(h) {
                out.extend_from_slice(&row[..w]);
            }
        }
        PixelFormat::I420 => {
            for row in d.chunks_exact(s).take(h) {
                out.extend_from_slice(&row[..w]);
            }
            let (cs, cw, ch) = (s / 2, w / 2, h / 2);
            let chroma = &d[s * h..];
            for plane in 0..2 {
                let base = plane * cs * ch;
                for row in chroma[base..base + cs * ch].chunks_exact(cs) {
                    out.extend_from_slice(&row[..cw]);
                }
            }
        }
        PixelFormat::Nv12 => {
            for row in d.chunks_exact(s).take(h) {
                out.extend_from_slice(&row[..w]);
            }
            let chroma = &d[s * h..s * h + s * (h / 2)];
            for pick in 0..2 {
                for row in chroma.chunks_exact(s) {
                    out.extend(row[..w].iter().skip(pick).step_by(2));
                }
            }
        }
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            let (yo, uo, vo) = if info.format == PixelFormat::Yuyv {
                (0, 1, 3)
            } else {
                (1, 0, 2)
            };
            for row in d.chunks_exact(s).take(h) {
                out.extend(row[..w * 2].iter().skip(yo).step_by(2));
            }
            for off in [uo, vo] {
                for row in d.chunks_exact(s).take(h) {
                    out.extend(row[..w * 2].iter().skip(off).step_by(4));
                }
            }
        }
        PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Xrgb32 | PixelFormat::Rgba32 => {
            let (bpp, ri, bi) = rgb_layout(info.format);
            let n = w * h;
            out.resize(n * 3, 0);
            let (ys, uv) = out.split_at_mut(n);
            let (us, vs) = uv.split_at_mut(n);
            for (y, row) in d.chunks_exact(s).take(h).enumerate() {
                for (x, p) in row[..w * bpp].chunks_exact(bpp).enumerate() {
                    let (yy, u, v) = rgb_to_yuv(p[ri], p[1], p[bi]);
                    ys[y * w + x] = yy;
                    us[y * w + x] = u;
                    vs[y * w + x] = v;
                }
            }
        }
        PixelFormat::Jpeg => return None,
    }
    Some(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values computed independently with floating point from the JFIF
    /// equations (ITU-T T.871).
    fn reference_yuv(r: f64, g: f64, b: f64) -> (f64, f64, f64) {
        (
            0.299 * r + 0.587 * g + 0.114 * b,
            -0.168_735_891_6 * r - 0.331_264_108_4 * g + 0.5 * b + 128.0,
            0.5 * r - 0.418_687_589_2 * g - 0.081_312_410_8 * b + 128.0,
        )
    }

    #[test]
    fn rgb_yuv_matches_reference_within_rounding() {
        for r in (0..=255).step_by(15) {
            for g in (0..=255).step_by(17) {
                for b in (0..=255).step_by(51) {
                    let (y, u, v) = rgb_to_yuv(r, g, b);
                    let (ry, ru, rv) = reference_yuv(r as f64, g as f64, b as f64);
                    for (got, want) in [(y, ry), (u, ru), (v, rv)] {
                        let want = want.round().clamp(0.0, 255.0);
                        assert!(
                            (got as f64 - want).abs() <= 1.0,
                            "rgb {r},{g},{b}: {got} vs {want}"
                        );
                    }
                }
            }
        }
        assert_eq!(rgb_to_yuv(255, 255, 255), (255, 128, 128));
        assert_eq!(rgb_to_yuv(0, 0, 0), (0, 128, 128));
        assert_eq!(rgb_to_yuv(255, 0, 0), (76, 85, 255));
    }

    #[test]
    fn yuv_rgb_round_trip_is_close() {
        for r in (0..=255).step_by(5) {
            for g in (0..=255).step_by(7) {
                for b in [0u8, 60, 128, 200, 255] {
                    let (y, u, v) = rgb_to_yuv(r, g, b);
                    let (r2, g2, b2) = yuv_to_rgb(y, u, v);
                    for (a, c) in [(r, r2), (g, g2), (b, b2)] {
                        assert!(
                            (a as i32 - c as i32).abs() <= 2,
                            "{r},{g},{b} -> {r2},{g2},{b2}"
                        );
                    }
                }
            }
        }
    }

    fn two_by_two() -> Vec<u8> {
        // red, green / blue, white
        vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]
    }

    #[test]
    fn from_rgb_every_format() {
        let src = two_by_two();
        let mut f = Frame::empty();
        from_rgb24(&src, 2, 2, PixelFormat::Bgr24, &mut f);
        assert_eq!(&f.data[..6], &[0, 0, 255, 0, 255, 0]);
        from_rgb24(&src, 2, 2, PixelFormat::Xrgb32, &mut f);
        assert_eq!(&f.data[..4], &[0, 0, 255, 255]);
        from_rgb24(&src, 2, 2, PixelFormat::Rgba32, &mut f);
        assert_eq!(&f.data[4..8], &[0, 255, 0, 255]);
        from_rgb24(&src, 2, 2, PixelFormat::Grey, &mut f);
        assert_eq!(f.data, vec![76, 150, 29, 255]);
        from_rgb24(&src, 2, 2, PixelFormat::Yuyv, &mut f);
        // Row 0: red (76,85,255) and green (150,44,21): chroma averaged.
        assert_eq!(&f.data[..4], &[76, 65, 150, 138]);
        from_rgb24(&src, 2, 2, PixelFormat::Uyvy, &mut f);
        assert_eq!(&f.data[..4], &[65, 76, 138, 150]);
        from_rgb24(&src, 2, 2, PixelFormat::I420, &mut f);
        assert_eq!(&f.data[..4], &[76, 150, 29, 255]);
        // U = mean(85, 44, 255, 128) = 128, V = mean(255, 21, 107, 128) = 128.
        assert_eq!(&f.data[4..], &[128, 128]);
        from_rgb24(&src, 2, 2, PixelFormat::Nv12, &mut f);
        assert_eq!(&f.data[4..], &[128, 128]);
    }

    /// Every format converted from RGB and back stays within the error of its
    /// chroma subsampling (none for the RGB family).
    #[test]
    fn to_rgb_inverts_from_rgb() {
        let (w, h) = (16, 8);
        // Smooth content: 4:2:x subsampling loses little.
        let src: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 12) as u8, (y * 25) as u8, 128 + (x * 3) as u8]
            })
            .collect();
        let mut f = Frame::empty();
        let mut back = Vec::new();
        for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed()) {
            from_rgb24(&src, w as u32, h as u32, format, &mut f);
            assert!(to_rgb24(&f, &mut back), "{format}");
            assert_eq!(back.len(), src.len());
            let max = src
                .iter()
                .zip(&back)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap();
            let bound = match format {
                PixelFormat::Rgb24
                | PixelFormat::Bgr24
                | PixelFormat::Xrgb32
                | PixelFormat::Rgba32 => 0,
                PixelFormat::Grey => 255, // colour is gone; checked below
                _ => 24,
            };
            assert!(max <= bound, "{format}: max error {max}");
        }
        // Grey: every channel equals the luma.
        from_rgb24(&src, w as u32, h as u32, PixelFormat::Grey, &mut f);
        to_rgb24(&f, &mut back);
        assert!(back
            .chunks_exact(3)
            .zip(&f.data)
            .all(|(p, &g)| p == [g, g, g]));
        // Exact values for one YUYV pair: Y 76 (red) and 150 (green) share U 65, V 138.
        f.reset(FrameInfo::packed(PixelFormat::Yuyv, 2, 1).unwrap());
        f.data.copy_from_slice(&[76, 128, 150, 128]);
        to_rgb24(&f, &mut back);
        assert_eq!(back, vec![76, 76, 76, 150, 150, 150]);
    }

    #[test]
    fn xrgb_u32_from_every_format() {
        let src = two_by_two();
        let (mut f, mut rgb, mut out) = (Frame::empty(), Vec::new(), Vec::new());
        for format in [
            PixelFormat::Rgb24,
            PixelFormat::Bgr24,
            PixelFormat::Xrgb32,
            PixelFormat::Rgba32,
        ] {
            from_rgb24(&src, 2, 2, format, &mut f);
            assert!(to_xrgb_u32(&f, &mut rgb, &mut out));
            assert_eq!(
                out,
                vec![0xFF0000, 0x00FF00, 0x0000FF, 0xFFFFFF],
                "{format}"
            );
        }
        from_rgb24(&src, 2, 2, PixelFormat::Grey, &mut f);
        to_xrgb_u32(&f, &mut rgb, &mut out);
        assert_eq!(out, vec![0x4C4C4C, 0x969696, 0x1D1D1D, 0xFFFFFF]);
    }

    #[test]
    fn planar_layouts_deinterleave() {
        let mut f = Frame::empty();
        f.reset(FrameInfo::packed(PixelFormat::Yuyv, 2, 1).unwrap());
        f.data.copy_from_slice(&[10, 20, 30, 40]);
        let mut out = Vec::new();
        assert_eq!(to_planar(&f, &mut out), Some(Planar::Yuv422));
        assert_eq!(out, vec![10, 30, 20, 40]);
        f.reset(FrameInfo::packed(PixelFormat::Nv12, 2, 2).unwrap());
        f.data.copy_from_slice(&[1, 2, 3, 4, 50, 60]);
        assert_eq!(to_planar(&f, &mut out), Some(Planar::Yuv420));
        assert_eq!(out, vec![1, 2, 3, 4, 50, 60]);
        // Padded stride: only the visible bytes are written.
        f.reset(FrameInfo {
            format: PixelFormat::Grey,
            width: 2,
            height: 2,
            stride: 4,
        });
        f.data.copy_from_slice(&[1, 2, 0, 0, 3, 4, 0, 0]);
        assert_eq!(to_planar(&f, &mut out), Some(Planar::Mono));
        assert_eq!(out, vec![1, 2, 3, 4]);
        f.reset(FrameInfo::packed(PixelFormat::Rgb24, 1, 1).unwrap());
        f.data.copy_from_slice(&[255, 0, 0]);
        assert_eq!(to_planar(&f, &mut out), Some(Planar::Yuv444));
        assert_eq!(out, vec![76, 85, 255]);
    }

    #[test]
    fn luma_reads_every_format() {
        let src = two_by_two();
        let mut f = Frame::empty();
        for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed()) {
            from_rgb24(&src, 2, 2, format, &mut f);
            let white = luma_at(&f, 1, 1).unwrap();
            assert!(white >= 254, "{format}: {white}");
            assert_eq!(luma_at(&f, 2, 0), None);
        }
    }
}
