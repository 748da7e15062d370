//! `test-pattern`: moving colour bars of any size and rate, with the frame number and
//! capture time written into the picture as black and white cells, so a test can
//! check order and freshness from the image alone (see [`read_stamp`]).
//!
//! Layout, top to bottom: three stamp rows of 64 cells each (sequence number,
//! capture time in µs, and a check word), each cell `width / 64` pixels wide and
//! `max(2, height / 48)` high; then eight colour bars scrolling left by `speed`
//! pixels per frame; the bottom quarter is a fixed grey ramp.

use serde::Deserialize;

use super::{FrameSource, Pacer, SourceBackend};
use crate::backend::always;
use crate::backend::table::{BackendConfig, CaptureConfig};
use crate::error::{BackendError, SourceError};
use crate::media::convert;
use crate::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};

inventory::submit! {
    SourceBackend {
        name: "test-pattern",
        summary: "moving colour bars stamped with frame number and capture time",
        probe: always,
        devices: None,
        open,
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// Pixels the bars move per frame.
    speed: u32,
    /// Draw the capture time (server clock, seconds) in large digits.
    timecode: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            speed: 4,
            timecode: false,
        }
    }
}

/// The eight 75% bars of SMPTE/EBU colour bars, RGB, left to right.
pub const BARS: [[u8; 3]; 8] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
    [16, 16, 16],
];

/// XORed into the check row: an all-black or all-white band never reads as valid.
const CHECK: u64 = 0xA5A5_5A5A_C3C3_3C3C;

/// Smallest frame that has room for the stamp.
pub const MIN_WIDTH: u32 = 64;
pub const MIN_HEIGHT: u32 = 16;

pub struct TestPatternSource {
    info: StreamInfo,
    speed: usize,
    pacer: Pacer,
    seq: u64,
    /// Two periods of one bar row, RGB, so any scroll offset is one slice.
    bar_row: Vec<u8>,
    /// One row of the grey ramp, RGB.
    ramp_row: Vec<u8>,
    /// The rendered RGB picture when the output format is not RGB24.
    rgb: Vec<u8>,
    timecode: bool,
}

fn open(
    capture: &CaptureConfig,
    table: &BackendConfig,
) -> Result<Box<dyn FrameSource>, BackendError> {
    let opts: Options = table.parse()?;
    Ok(Box::new(
        TestPatternSource::new(capture, opts.speed)?.with_timecode(opts.timecode),
    ))
}

impl TestPatternSource {
    pub fn new(capture: &CaptureConfig, speed: u32) -> Result<TestPatternSource, BackendError> {
        if capture.format.is_compressed() {
            return Err(BackendError::Unsupported {
                backend: "test-pattern",
                what: "jpeg output (use format = \"rgb24\" or a YUV format, and a JPEG codec)"
                    .into(),
            });
        }
        if capture.width < MIN_WIDTH || capture.height < MIN_HEIGHT {
            return Err(BackendError::Invalid {
                what: format!("test-pattern size {}x{}", capture.width, capture.height),
                why: format!("the smallest is {MIN_WIDTH}x{MIN_HEIGHT}"),
            });
        }
        let frame = FrameInfo::packed(capture.format, capture.width, capture.height)?;
        let w = capture.width as usize;
        let mut bar_row = Vec::with_capacity(w * 6);
        for x in 0..w * 2 {
            bar_row.extend_from_slice(&BARS[(x % w) * BARS.len() / w]);
        }
        let ramp_row = (0..w)
            .flat_map(|x| [(x * 255 / (w - 1).max(1)) as u8; 3])
            .collect();
        Ok(TestPatternSource {
            info: StreamInfo {
                frame,
                fps: capture.fps,
            },
            speed: speed as usize,
            pacer: Pacer::new(capture.fps),
            seq: 0,
            bar_row,
            ramp_row,
            rgb: Vec::new(),
            timecode: false,
        })
    }

    /// Also draws each frame's capture time, the server's clock in seconds with
    /// milliseconds, in digits a phone photo of the screen can read (a tenth of
    /// the picture's height), white on black, in the middle of the bars. With a
    /// window overlay showing the server's clock now (`h`), the photo shows the
    /// latency (`docs/latency.md`).
    pub fn with_timecode(mut self, on: bool) -> TestPatternSource {
        self.timecode = on;
        self
    }

    fn render(&self, seq: u64, capture_us: u64, rgb: &mut [u8]) {
        let (w, h) = (
            self.info.frame.width as usize,
            self.info.frame.height as usize,
        );
        let (_, cell_h) = cell_size(w as u32, h as u32);
        let stamp_h = cell_h * 3;
        let ramp_start = h - h / 4;
        let offset = (seq as usize * self.speed) % w;
        stamp_rgb(rgb, w, h, Stamp { seq, capture_us });
        for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
            if y < stamp_h {
                continue;
            } else if y < ramp_start {
                row.copy_from_slice(&self.bar_row[offset * 3..(offset + w) * 3]);
            } else {
                row.copy_from_slice(&self.ramp_row);
            }
        }
        if self.timecode {
            let text = format!("{:.3}", capture_us as f64 / 1e6);
            let scale = (h / 80).max(1);
            let (tw, th) = crate::media::text::size(&text, scale);
            let at = (
                w.saturating_sub(tw) / 2,
                (stamp_h + ramp_start).saturating_sub(th) / 2,
            );
            let margin = scale * 2;
            crate::media::text::fill_rgb(
                rgb,
                w,
                (at.0.saturating_sub(margin), at.1.saturating_sub(margin)),
                (tw + 2 * margin, th + 2 * margin),
                [0; 3],
            );
            crate::media::text::draw_rgb(rgb, w, at, scale, [255; 3], &text);
        }
    }
}

/// Writes `stamp` into the top rows of `rgb`, a `w`x`h` RGB24 picture (at
/// least [`MIN_WIDTH`]x[`MIN_HEIGHT`]), where [`read_stamp`] finds it: three
/// rows of 64 black or white cells (the sequence number, the capture time,
/// and a check word).
pub fn stamp_rgb(rgb: &mut [u8], w: usize, h: usize, stamp: Stamp) {
    let (cell_w, cell_h) = cell_size(w as u32, h as u32);
    let Stamp { seq, capture_us } = stamp;
    let words = [seq, capture_us, seq ^ capture_us ^ CHECK];
    for (y, row) in rgb.chunks_exact_mut(w * 3).take(cell_h * 3).enumerate() {
        let word = words[y / cell_h];
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let cell = x / cell_w;
            let on = cell < 64 && (word >> (63 - cell)) & 1 == 1;
            px.fill(if on { 255 } else { 0 });
        }
    }
}

/// Stamp cell size for a frame size.
fn cell_size(width: u32, height: u32) -> (usize, usize) {
    ((width / 64) as usize, (height / 48).max(2) as usize)
}

impl FrameSource for TestPatternSource {
    fn stream_info(&self) -> StreamInfo {
        self.info
    }

    fn paces_itself(&self) -> bool {
        self.info.fps > 0.0
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        let capture_us = self.pacer.wait();
        self.frame_at(self.seq, capture_us, frame);
        self.seq += 1;
        Ok(())
    }
}

impl TestPatternSource {
    /// Draws frame number `seq` stamped with `capture_us` into `frame`. The picture
    /// depends on nothing else, so a test can redraw any frame it received and
    /// compare the two byte for byte.
    pub fn frame_at(&mut self, seq: u64, capture_us: u64, frame: &mut Frame) {
        let info = self.info.frame;
        if info.format == PixelFormat::Rgb24 {
            frame.reset(info);
            self.render(seq, capture_us, &mut frame.data);
        } else {
            let mut rgb = std::mem::take(&mut self.rgb);
            rgb.resize(info.width as usize * info.height as usize * 3, 0);
            self.render(seq, capture_us, &mut rgb);
            convert::from_rgb24(&rgb, info.width, info.height, info.format, frame);
            self.rgb = rgb;
        }
        frame.seq = seq;
        frame.capture_us = capture_us;
    }
}

/// What a test-pattern frame says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub capture_us: u64,
}

/// Reads the stamp back from a frame in any uncompressed format, or `None` when the
/// frame carries no valid stamp (wrong check word, or not a test pattern).
pub fn read_stamp(frame: &Frame) -> Option<Stamp> {
    let FrameInfo { width, height, .. } = frame.info;
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return None;
    }
    let (cell_w, cell_h) = cell_size(width, height);
    let mut words = [0u64; 3];
    for (row, word) in words.iter_mut().enumerate() {
        let y = (row * cell_h + cell_h / 2) as u32;
        for cell in 0..64 {
            let x = (cell * cell_w + cell_w / 2) as u32;
            let bit = convert::luma_at(frame, x, y)? >= 128;
            *word = (*word << 1) | bit as u64;
        }
    }
    (words[2] == words[0] ^ words[1] ^ CHECK).then_some(Stamp {
        seq: words[0],
        capture_us: words[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(format: PixelFormat, width: u32, height: u32) -> CaptureConfig {
        CaptureConfig {
            width,
            height,
            fps: 0.0,
            format,
        }
    }

    #[test]
    fn stamp_reads_back_in_every_format() {
        for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed()) {
            for (w, h) in [(64, 16), (640, 480), (1280, 720)] {
                let mut src = TestPatternSource::new(&capture(format, w, h), 4).unwrap();
                let mut frame = Frame::empty();
                for expected in 0..3 {
                    src.next_frame(&mut frame).unwrap();
                    assert_eq!(frame.data.len(), frame.info.byte_len());
                    let stamp =
                        read_stamp(&frame).unwrap_or_else(|| panic!("{format} {w}x{h}: no stamp"));
                    assert_eq!(stamp.seq, expected, "{format} {w}x{h}");
                    assert_eq!(stamp.capture_us, frame.capture_us, "{format} {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn pattern_moves_and_corruption_is_detected() {
        let mut src = TestPatternSource::new(&capture(PixelFormat::Rgb24, 320, 240), 4).unwrap();
        let (mut a, mut b) = (Frame::empty(), Frame::empty());
        src.next_frame(&mut a).unwrap();
        src.next_frame(&mut b).unwrap();
        // The bar area differs between consecutive frames.
        let bars = 320 * 3 * 100..320 * 3 * 101;
        assert_ne!(a.data[bars.clone()], b.data[bars]);
        // Flip one stamp cell (5x5 pixels at 320x240): the check word no longer matches.
        for row in a.data.chunks_exact_mut(320 * 3).take(5) {
            for px in row[..3 * 5].iter_mut() {
                *px = 255 - *px;
            }
        }
        assert_eq!(read_stamp(&a), None);
    }

    #[test]
    fn rejects_tiny_and_jpeg() {
        assert!(TestPatternSource::new(&capture(PixelFormat::Rgb24, 32, 32), 4).is_err());
        assert!(TestPatternSource::new(&capture(PixelFormat::Jpeg, 640, 480), 4).is_err());
    }
}
