//! The plain per-pixel loops that `convert` ran before it used yuvutils-rs: the
//! reference its tests and `livestream bench --convert` hold the fast paths to.
//! Not used by the pipeline.
//!
//! Same contracts as the functions of the same names in [`crate::media::convert`]; the
//! maths is [`rgb_to_yuv`] and [`yuv_to_rgb`], 16-bit fixed point, rounded; 4:2:x
//! chroma is the rounded mean of the pixels' U and V.

use super::{rgb_layout, rgb_to_yuv, uncompressed, yuv_to_rgb, Planar};
use crate::media::frame::{Frame, FrameInfo, PixelFormat};

/// [`crate::media::convert::from_rgb24`] in plain loops.
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
        PixelFormat::Jpeg | PixelFormat::H264 => {
            unreachable!("{format} is encoded by a codec, not converted")
        }
    }
}

/// [`crate::media::convert::to_rgb24`] in plain loops.
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
        PixelFormat::Jpeg | PixelFormat::H264 => return false,
    }
    true
}

/// [`crate::media::convert::to_xrgb_u32`] in plain loops: formats other than RGB24 and
/// XRGB32 go through RGB24 in `rgb`.
pub fn to_xrgb_u32(frame: &Frame, rgb: &mut Vec<u8>, out: &mut Vec<u32>) -> bool {
    let Some((_, w, h, _)) = uncompressed(frame) else {
        return false;
    };
    out.resize(w * h, 0);
    to_xrgb_u32_into(frame, rgb, out)
}

/// [`crate::media::convert::to_xrgb_u32_into`] in plain loops: `out` holds exactly
/// `width * height` words.
pub fn to_xrgb_u32_into(frame: &Frame, rgb: &mut Vec<u8>, out: &mut [u32]) -> bool {
    let Some((info, w, h, s)) = uncompressed(frame) else {
        return false;
    };
    if out.len() != w * h {
        return false;
    }
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

/// [`crate::media::convert::to_planar`] in plain loops.
pub fn to_planar(frame: &Frame, out: &mut Vec<u8>) -> Option<Planar> {
    out.clear();
    let (info, w, h, s) = uncompressed(frame)?;
    let layout = Planar::for_format(info.format)?;
    let d = &frame.data;
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
        PixelFormat::Jpeg | PixelFormat::H264 => return None,
    }
    Some(layout)
}
