//! Text over the picture for window sinks (the `h` overlay): 8x8 bitmap glyphs
//! (`font8x8`), scaled with the frame so they stay readable when the window
//! scales the picture down.

use font8x8::{UnicodeFonts, BASIC_FONTS};

use super::Live;

/// One line of overlay text, formatted on the stack: the overlay is drawn on
/// every frame while shown, so it allocates nothing. Text past its capacity is
/// cut at a character boundary.
struct Line {
    buf: [u8; 96],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 96],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole characters are ever written (see `write_str`).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Draws the `h` overlay of a window sink: fps, latency, bitrate, drops, size and
/// codec, over a `width` x `height` picture.
pub fn draw_live(buf: &mut [u32], width: u32, height: u32, codec: &str, live: &Live) {
    use std::fmt::Write as _;
    let mut lines = [Line::new(), Line::new(), Line::new(), Line::new()];
    let _ = write!(lines[0], "{:.1} fps  {:.1} Mbit/s", live.fps, live.mbps);
    let _ = write!(
        lines[1],
        "latency {:.1} ms (p50 {:.1} p95 {:.1})",
        live.latency_ms, live.latency_p50_ms, live.latency_p95_ms
    );
    let _ = write!(
        lines[2],
        "dropped {}  {width}x{height} {codec}",
        live.dropped
    );
    let _ = write!(
        lines[3],
        "server clock {:.3} s",
        live.server_clock_us as f64 / 1e6
    );
    draw(buf, width as usize, &lines.each_ref().map(Line::as_str));
}

/// Draws `lines` at the top left of a `width`-wide 0x00RRGGBB buffer, white on a
/// dark box. Characters outside ASCII are drawn as `?`.
pub fn draw(buf: &mut [u32], width: usize, lines: &[&str]) {
    if width == 0 {
        return;
    }
    let height = buf.len() / width;
    // 16-pixel letters at 640 wide, growing with the frame.
    let scale = (width / 320).max(1);
    let (cw, ch) = (8 * scale, 10 * scale);
    let box_w = (lines.iter().map(|l| l.len()).max().unwrap_or(0) * cw + 2 * cw).min(width);
    let box_h = (lines.len() * ch + ch).min(height);
    for row in buf.chunks_exact_mut(width).take(box_h) {
        for px in &mut row[..box_w] {
            // Darken what is under the box to a quarter, every channel at once.
            *px = (*px >> 2) & 0x3F3F3F;
        }
    }
    for (li, line) in lines.iter().enumerate() {
        for (ci, c) in line.chars().enumerate() {
            let glyph = BASIC_FONTS
                .get(c)
                .or_else(|| BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            let (x0, y0) = (cw + ci * cw, ch / 2 + li * ch);
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits >> gx & 1 == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (x, y) = (x0 + gx * scale + dx, y0 + gy * scale + dy);
                            if x < width && y < height {
                                buf[y * width + x] = 0xFFFFFF;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_white_text_on_a_dark_box_and_stays_inside() {
        let mut buf = vec![0x909090; 64 * 24];
        super::draw(&mut buf, 64, &["HI", "\u{1F600}x"]);
        assert!(buf.contains(&0xFFFFFF), "some text");
        assert!(buf.contains(&0x242424), "a darkened box");
        assert_eq!(buf[63], 0x909090, "right of the box untouched");
        super::draw(
            &mut buf,
            64,
            &["a very long line that does not fit in 64 pixels at all"],
        );
        super::draw(&mut [], 0, &["x"]);
    }

    #[test]
    fn overlay_lines_are_cut_at_a_character_boundary() {
        use std::fmt::Write as _;
        let mut line = super::Line::new();
        write!(line, "{}", "é".repeat(60)).unwrap();
        assert_eq!(
            line.as_str(),
            "é".repeat(48),
            "96 bytes: 48 two-byte characters"
        );
        let mut line = super::Line::new();
        let (width, height, codec) = (1920, 1080, "jpeg");
        write!(line, "{width}x{height} {codec}").unwrap();
        assert_eq!(line.as_str(), "1920x1080 jpeg");
    }
}
