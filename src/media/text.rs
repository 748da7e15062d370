//! Text drawn into RGB24 pictures with 8x8 bitmap glyphs (`font8x8`): the camera's
//! "no signal" picture and the test pattern's timecode. (Window overlays draw into
//! 32-bit pixels: `sinks/overlay.rs`.)

use font8x8::{UnicodeFonts, BASIC_FONTS};

/// Size in pixels of `text` drawn at `scale` (each glyph 8x8 pixels, times `scale`).
pub fn size(text: &str, scale: usize) -> (usize, usize) {
    (text.chars().count() * 8 * scale, 8 * scale)
}

/// Draws `text` into a packed RGB24 picture `width` pixels wide, top-left corner at
/// (`x0`, `y0`), each glyph pixel a `scale` x `scale` square of `ink`. Characters
/// without a glyph are left blank; what falls outside the picture is clipped.
pub fn draw_rgb(
    rgb: &mut [u8],
    width: usize,
    (x0, y0): (usize, usize),
    scale: usize,
    ink: [u8; 3],
    text: &str,
) {
    let height = (rgb.len() / 3).checked_div(width).unwrap_or(0);
    for (ci, c) in text.chars().enumerate() {
        let glyph = BASIC_FONTS.get(c).unwrap_or([0; 8]);
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if bits >> gx & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    let y = y0 + gy * scale + dy;
                    if y >= height {
                        break;
                    }
                    for dx in 0..scale {
                        let x = x0 + (ci * 8 + gx) * scale + dx;
                        if x < width {
                            rgb[(y * width + x) * 3..][..3].copy_from_slice(&ink);
                        }
                    }
                }
            }
        }
    }
}

/// Fills a rectangle of a packed RGB24 picture (clipped).
pub fn fill_rgb(
    rgb: &mut [u8],
    width: usize,
    (x0, y0): (usize, usize),
    (w, h): (usize, usize),
    colour: [u8; 3],
) {
    let height = (rgb.len() / 3).checked_div(width).unwrap_or(0);
    for y in y0..(y0 + h).min(height) {
        for x in x0..(x0 + w).min(width) {
            rgb[(y * width + x) * 3..][..3].copy_from_slice(&colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_clipped_glyphs() {
        let (w, h) = (40, 10);
        let mut rgb = vec![0u8; w * h * 3];
        draw_rgb(&mut rgb, w, (0, 0), 1, [255, 255, 255], "1");
        // '1' has ink in its first rows.
        assert!(rgb[..w * 3 * 8].contains(&255));
        // Far outside: nothing drawn, no panic.
        let before = rgb.clone();
        draw_rgb(&mut rgb, w, (100, 100), 3, [255, 0, 0], "88");
        assert_eq!(rgb, before);
        fill_rgb(&mut rgb, w, (38, 8), (10, 10), [1, 2, 3]);
        assert_eq!(&rgb[(9 * w + 39) * 3..][..3], &[1, 2, 3]);
        assert_eq!(size("ab", 2), (32, 16));
    }
}
