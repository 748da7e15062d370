//! Scaling packed I420 pictures, plane by plane (fast_image_resize, SIMD):
//! down for a smaller rendition of the stream on the server, back up to the
//! stream's size on a viewer that was sent one. Buffers are the caller's and
//! grow only with the geometry.

use fast_image_resize as fir;

/// Why a picture could not be scaled.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("{what}: {w}x{h} is not an even, non-zero I420 size")]
    Size { what: &'static str, w: u32, h: u32 },
    #[error("the source picture has {got} bytes, {w}x{h} I420 needs {need}")]
    Short {
        got: usize,
        need: usize,
        w: u32,
        h: u32,
    },
    #[error("scaling a plane: {0}")]
    Resize(String),
}

/// Bytes of a packed `w`x`h` I420 picture (both even).
pub fn i420_len(w: u32, h: u32) -> usize {
    let (w, h) = (w as usize, h as usize);
    w * h + 2 * (w / 2) * (h / 2)
}

/// Scales packed I420 pictures; keeps the resizer's buffers between calls.
pub struct Scaler {
    resizer: fir::Resizer,
    options: fir::ResizeOptions,
}

impl Default for Scaler {
    fn default() -> Scaler {
        Scaler {
            resizer: fir::Resizer::new(),
            // The kernel widens when shrinking (no aliasing of fine detail,
            // which an encoder would spend bits on); two taps when growing.
            options: fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear)),
        }
    }
}

fn check(what: &'static str, w: u32, h: u32) -> Result<(), ScaleError> {
    if w == 0 || h == 0 || w % 2 != 0 || h % 2 != 0 {
        return Err(ScaleError::Size { what, w, h });
    }
    Ok(())
}

impl Scaler {
    /// Scales `src`, packed I420 of `from` (width, height), into `dst` as
    /// packed I420 of `to` (resized to fit, reusing its capacity).
    pub fn i420(
        &mut self,
        src: &[u8],
        from: (u32, u32),
        dst: &mut Vec<u8>,
        to: (u32, u32),
    ) -> Result<(), ScaleError> {
        check("source", from.0, from.1)?;
        check("target", to.0, to.1)?;
        let need = i420_len(from.0, from.1);
        if src.len() < need {
            return Err(ScaleError::Short {
                got: src.len(),
                need,
                w: from.0,
                h: from.1,
            });
        }
        dst.resize(i420_len(to.0, to.1), 0);
        let (sy, sc) = src[..need].split_at((from.0 * from.1) as usize);
        let (su, sv) = sc.split_at(sc.len() / 2);
        let (dy, dc) = dst.split_at_mut((to.0 * to.1) as usize);
        let half = dc.len() / 2;
        let (du, dv) = dc.split_at_mut(half);
        self.plane(sy, from, dy, to)?;
        let (fc, tc) = ((from.0 / 2, from.1 / 2), (to.0 / 2, to.1 / 2));
        self.plane(su, fc, du, tc)?;
        self.plane(sv, fc, dv, tc)
    }

    fn plane(
        &mut self,
        src: &[u8],
        from: (u32, u32),
        dst: &mut [u8],
        to: (u32, u32),
    ) -> Result<(), ScaleError> {
        let err = |e: &dyn std::fmt::Display| ScaleError::Resize(e.to_string());
        let src = fir::images::ImageRef::new(from.0, from.1, src, fir::PixelType::U8)
            .map_err(|e| err(&e))?;
        let mut dst = fir::images::Image::from_slice_u8(to.0, to.1, dst, fir::PixelType::U8)
            .map_err(|e| err(&e))?;
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A horizontal luma ramp and flat chroma, `w`x`h`.
    fn ramp(w: u32, h: u32) -> Vec<u8> {
        let mut p = vec![0u8; i420_len(w, h)];
        for y in 0..h as usize {
            for x in 0..w as usize {
                p[y * w as usize + x] = (x * 255 / (w as usize - 1)) as u8;
            }
        }
        let luma = (w * h) as usize;
        p[luma..luma + luma / 4].fill(90);
        p[luma + luma / 4..].fill(200);
        p
    }

    #[test]
    fn a_ramp_scales_down_and_back_up_close_to_itself() {
        let mut s = Scaler::default();
        let src = ramp(1280, 720);
        let mut small = Vec::new();
        s.i420(&src, (1280, 720), &mut small, (426, 240)).unwrap();
        assert_eq!(small.len(), i420_len(426, 240));
        // Left edge dark, right edge bright, middle grey; chroma kept per plane.
        assert!(
            small[0] < 5 && small[425] > 250,
            "{} {}",
            small[0],
            small[425]
        );
        assert!((small[213] as i32 - 128).abs() < 4, "{}", small[213]);
        let luma = 426 * 240;
        assert_eq!(small[luma], 90);
        assert_eq!(small[luma + luma / 4], 200);
        let mut back = Vec::new();
        s.i420(&small, (426, 240), &mut back, (1280, 720)).unwrap();
        let worst = src
            .iter()
            .zip(&back)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(worst <= 3, "a ramp comes back within 3 levels, not {worst}");
    }

    #[test]
    fn odd_sizes_and_short_sources_are_refused() {
        let mut s = Scaler::default();
        let mut out = Vec::new();
        let e = s.i420(&ramp(64, 48), (64, 48), &mut out, (33, 24));
        assert!(
            matches!(e, Err(ScaleError::Size { what: "target", .. })),
            "{e:?}"
        );
        let e = s.i420(&[0; 100], (64, 48), &mut out, (32, 24));
        assert!(
            matches!(e, Err(ScaleError::Short { need: 4608, .. })),
            "{e:?}"
        );
        let e = s.i420(&[], (0, 48), &mut out, (32, 24));
        assert!(
            matches!(e, Err(ScaleError::Size { what: "source", .. })),
            "{e:?}"
        );
    }
}
