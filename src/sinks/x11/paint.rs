//! Turning a frame into the window's picture: where it goes (the largest
//! rectangle of its aspect ratio, centred, black bars around it), converting it
//! to 0x00RRGGBB words, drawing the overlay, and scaling with SIMD
//! (fast_image_resize) when the window is not the frame's size.
//!
//! The per-frame path allocates nothing once the buffers have grown to the
//! geometry. Used on the thread that owns the sink.

use std::io;

use fast_image_resize as fir;
use x11rb::protocol::xproto::{self, ConnectionExt as _};

use super::display::{i16_of, u16_of, x_error, Display};
use crate::error::SinkError;
use crate::media::convert;
use crate::media::frame::Frame;
use crate::sinks::{overlay, Live};

/// Where the picture goes in the window: `w` x `h` at (`x`, `y`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rect {
    pub(super) x: i32,
    pub(super) y: i32,
    pub(super) w: u32,
    pub(super) h: u32,
}

/// The largest rectangle of the picture's aspect ratio inside the window,
/// centred (the rest is black bars). Exactly the window when the sizes are equal;
/// empty when either is.
pub(super) fn fit((pw, ph): (u32, u32), (ww, wh): (u32, u32)) -> Rect {
    if pw == 0 || ph == 0 || ww == 0 || wh == 0 {
        return Rect {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        };
    }
    let (pw64, ph64, ww64, wh64) = (pw as u64, ph as u64, ww as u64, wh as u64);
    // Full height when the window is wider than the picture, else full width;
    // the other side rounded to the nearest pixel, at least one.
    let (w, h) = if pw64 * wh64 <= ph64 * ww64 {
        (((pw64 * wh64 + ph64 / 2) / ph64).clamp(1, ww64), wh64)
    } else {
        (ww64, ((ph64 * ww64 + pw64 / 2) / pw64).clamp(1, wh64))
    };
    let (w, h) = (w as u32, h as u32);
    Rect {
        x: ((ww - w) / 2) as i32,
        y: ((wh - h) / 2) as i32,
        w,
        h,
    }
}

/// The parts of a `ww` x `wh` window around `rect` (which is inside it): above,
/// below, left and right, some of them empty. With `rect` they cover the window
/// once.
fn bars((ww, wh): (u32, u32), r: Rect) -> [Rect; 4] {
    let (x, y) = (r.x.max(0) as u32, r.y.max(0) as u32);
    let right = x + r.w;
    let bottom = y + r.h;
    [
        Rect {
            x: 0,
            y: 0,
            w: ww,
            h: y,
        },
        Rect {
            x: 0,
            y: bottom as i32,
            w: ww,
            h: wh.saturating_sub(bottom),
        },
        Rect {
            x: 0,
            y: y as i32,
            w: x,
            h: r.h,
        },
        Rect {
            x: right as i32,
            y: y as i32,
            w: ww.saturating_sub(right),
            h: r.h,
        },
    ]
}

/// Paints the window black around `rect` (its background: the window is made
/// with a black one).
pub(super) fn clear_bars(
    x: &Display,
    window: xproto::Window,
    size: (u32, u32),
    rect: Rect,
) -> Result<(), SinkError> {
    for b in bars(size, rect).into_iter().filter(|b| b.w > 0 && b.h > 0) {
        x.conn
            .clear_area(
                false,
                window,
                i16_of(b.x),
                i16_of(b.y),
                u16_of(b.w),
                u16_of(b.h),
            )
            .map_err(x_error("ClearArea"))?;
    }
    Ok(())
}

/// Turns frames into window pictures: conversion, overlay, scaling. Buffers are
/// kept from frame to frame and grow only with the geometry.
pub(super) struct Painter {
    /// The frame as 0x00RRGGBB, when it must be scaled.
    pixels: Vec<u32>,
    rgb: Vec<u8>,
    resizer: fir::Resizer,
    options: fir::ResizeOptions,
}

impl Default for Painter {
    fn default() -> Self {
        Painter {
            pixels: Vec::new(),
            rgb: Vec::new(),
            resizer: fir::Resizer::new(),
            // Two-tap bilinear (minifb's and OpenCV's linear): 1.3-1.5 ms from
            // 1080p to 720p here, where the convolution whose kernel widens when
            // shrinking took 1.8-2.0. The fourth byte is padding, not alpha.
            options: fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Interpolation(fir::FilterType::Bilinear))
                .use_alpha(false),
        }
    }
}

impl Painter {
    /// Draws `frame` (and the overlay when `overlay` is set) into `dst`, a `w` x
    /// `h` picture.
    pub(super) fn paint(
        &mut self,
        frame: &Frame,
        overlay: Option<(&str, &Live)>,
        (w, h): (u32, u32),
        dst: &mut [u32],
    ) -> Result<(), SinkError> {
        let (fw, fh) = (frame.info.width, frame.info.height);
        let unsupported = || SinkError::Unsupported {
            sink: "x11",
            what: format!("{} frames", frame.info.format),
        };
        if (w, h) == (fw, fh) {
            if !convert::to_xrgb_u32_into(frame, &mut self.rgb, dst) {
                return Err(unsupported());
            }
            if let Some((codec, live)) = overlay {
                overlay::draw_live(dst, fw, fh, codec, live);
            }
            return Ok(());
        }
        if !convert::to_xrgb_u32(frame, &mut self.rgb, &mut self.pixels) {
            return Err(unsupported());
        }
        if let Some((codec, live)) = overlay {
            overlay::draw_live(&mut self.pixels, fw, fh, codec, live);
        }
        let resize = |e: &dyn std::fmt::Display| SinkError::Io {
            what: format!("the x11 window: scaling {fw}x{fh} to {w}x{h}"),
            source: io::Error::other(e.to_string()),
        };
        let src = fir::images::ImageRef::new(
            fw,
            fh,
            bytemuck::cast_slice(&self.pixels),
            fir::PixelType::U8x4,
        )
        .map_err(|e| resize(&e))?;
        let mut dst = fir::images::Image::from_slice_u8(
            w,
            h,
            bytemuck::cast_slice_mut(dst),
            fir::PixelType::U8x4,
        )
        .map_err(|e| resize(&e))?;
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| resize(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_ratio_centred() {
        let r = |x, y, w, h| Rect { x, y, w, h };
        assert_eq!(
            fit((640, 480), (640, 480)),
            r(0, 0, 640, 480),
            "same size: 1:1"
        );
        assert_eq!(
            fit((640, 480), (1000, 400)),
            r(233, 0, 533, 400),
            "a wide window: pillarboxed, full height"
        );
        assert_eq!(
            fit((1920, 1080), (1280, 800)),
            r(0, 40, 1280, 720),
            "a tall window: letterboxed, full width"
        );
        assert_eq!(fit((1920, 1080), (1280, 720)), r(0, 0, 1280, 720));
        assert_eq!(
            fit((64, 16), (3, 1000)),
            r(0, 499, 3, 1),
            "never thinner than a pixel"
        );
        assert_eq!(fit((0, 480), (640, 480)).w, 0, "an empty picture");
        assert_eq!(fit((640, 480), (0, 480)).w, 0, "an empty window");
        // Large sizes do not overflow.
        let big = fit((u32::MAX, 1), (u32::MAX, u32::MAX));
        assert_eq!((big.w, big.h), (u32::MAX, 1));
    }

    #[test]
    fn fit_is_inside_the_window_for_every_size() {
        for (pw, ph) in [(640, 480), (1920, 1080), (7, 3), (1, 999)] {
            for ww in (1..300).step_by(7) {
                for wh in (1..300).step_by(11) {
                    let r = fit((pw, ph), (ww, wh));
                    assert!(r.w >= 1 && r.h >= 1, "{pw}x{ph} in {ww}x{wh}: {r:?}");
                    assert!(r.x >= 0 && r.y >= 0, "{pw}x{ph} in {ww}x{wh}: {r:?}");
                    assert!(r.x as u32 + r.w <= ww && r.y as u32 + r.h <= wh, "{r:?}");
                    assert!(r.w == ww || r.h == wh, "touches two sides: {r:?}");
                }
            }
        }
    }

    #[test]
    fn bars_and_picture_cover_the_window_once() {
        for (pic, win) in [
            ((640, 480), (1000, 400)),
            ((1920, 1080), (1280, 800)),
            ((640, 480), (640, 480)),
            ((7, 3), (50, 51)),
        ] {
            let r = fit(pic, win);
            let mut count = vec![0u8; (win.0 * win.1) as usize];
            for b in bars(win, r).into_iter().chain([r]) {
                for y in b.y as u32..b.y as u32 + b.h {
                    for x in b.x as u32..b.x as u32 + b.w {
                        count[(y * win.0 + x) as usize] += 1;
                    }
                }
            }
            assert!(count.iter().all(|&c| c == 1), "{pic:?} in {win:?}: {r:?}");
        }
    }
}
