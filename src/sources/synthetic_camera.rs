//! `synthetic-camera`: camera-like content without a camera. Pans slowly across a
//! photograph, with sensor-like noise and a slight brightness flicker, at the asked
//! size and rate. Content that compresses like a real camera's, for tests and
//! benchmarks. The default image (a CC0 photo, `data/photos/coffee.png`) is built in.

use std::path::PathBuf;

use serde::Deserialize;

use super::{test_pattern, FrameSource, Pacer, SourceBackend};
use crate::backend::always;
use crate::backend::table::{BackendConfig, CaptureConfig};
use crate::error::{BackendError, SourceError};
use crate::media::convert;
use crate::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};

inventory::submit! {
    SourceBackend {
        name: "synthetic-camera",
        summary: "pans across a photo with sensor noise and flicker",
        probe: always,
        devices: None,
        open,
    }
}

const DEFAULT_IMAGE: &[u8] = include_bytes!("../../data/photos/coffee.png");
const NOISE_SEED: u64 = 0x11fe_57ea;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// A PNG file; the built-in photo when absent.
    image: Option<PathBuf>,
    /// Standard deviation of the added noise, in 8-bit levels (0 = none).
    noise: f32,
    /// Brightness flicker amplitude as a fraction (0.02 = ±2%).
    flicker: f32,
    /// Seconds for one pan from left to right.
    pan_seconds: f32,
    /// Write the test pattern's stamp (sequence number and capture time)
    /// into the top rows, so a test can tell each picture it gets back.
    stamp: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: None,
            noise: 3.0,
            flicker: 0.02,
            pan_seconds: 8.0,
            stamp: false,
        }
    }
}

fn open(
    capture: &CaptureConfig,
    table: &BackendConfig,
) -> Result<Box<dyn FrameSource>, BackendError> {
    let opts: Options = table.parse()?;
    let invalid = |what: &str, why: &str| BackendError::Invalid {
        what: format!("synthetic-camera {what}"),
        why: why.into(),
    };
    if !(0.0..=64.0).contains(&opts.noise) {
        return Err(invalid("noise", "must be between 0 and 64"));
    }
    if !(0.0..=0.5).contains(&opts.flicker) {
        return Err(invalid("flicker", "must be between 0 and 0.5"));
    }
    if !(0.1..=3600.0).contains(&opts.pan_seconds) {
        return Err(invalid("pan-seconds", "must be between 0.1 and 3600"));
    }
    let (bytes, name) = match &opts.image {
        Some(path) => (
            std::fs::read(path)
                .map_err(|e| BackendError::io(format!("cannot read {}", path.display()), e))?,
            path.display().to_string(),
        ),
        None => (DEFAULT_IMAGE.to_vec(), "built-in coffee.png".to_string()),
    };
    let image = decode_png(&bytes).map_err(|e| BackendError::Library {
        what: name,
        source: Box::new(e),
    })?;
    Ok(Box::new(SyntheticCameraSource::new(
        capture, &image, &opts,
    )?))
}

/// An RGB24 picture.
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Why a picture could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("not a PNG the decoder can read: {0}")]
    Decode(#[from] png::DecodingError),
    #[error("unsupported PNG colour type {0:?}")]
    ColourType(png::ColorType),
}

/// Decodes a PNG into RGB24, with the image's size checked before allocating.
pub fn decode_png(bytes: &[u8]) -> Result<RgbImage, PngError> {
    let mut decoder = png::Decoder::new(bytes);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    decoder.set_limits(png::Limits { bytes: 256 << 20 });
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width, info.height);
    let px = (w * h) as usize;
    let data = match info.color_type {
        png::ColorType::Rgb => {
            buf.truncate(px * 3);
            buf
        }
        png::ColorType::Rgba => buf[..px * 4]
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf[..px].iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf[..px * 2]
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        other => return Err(PngError::ColourType(other)),
    };
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

/// Bilinear resize of an RGB24 image.
fn resize(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = (src.width as f32, src.height as f32);
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let fy = ((y as f32 + 0.5) * sh / height as f32 - 0.5).clamp(0.0, sh - 1.0);
        let (y0, ty) = (fy as usize, fy.fract());
        let y1 = (y0 + 1).min(src.height as usize - 1);
        for x in 0..width {
            let fx = ((x as f32 + 0.5) * sw / width as f32 - 0.5).clamp(0.0, sw - 1.0);
            let (x0, tx) = (fx as usize, fx.fract());
            let x1 = (x0 + 1).min(src.width as usize - 1);
            for c in 0..3 {
                let at = |x: usize, y: usize| src.data[(y * src.width as usize + x) * 3 + c] as f32;
                let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
                let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
                data.push((top * (1.0 - ty) + bottom * ty).round() as u8);
            }
        }
    }
    RgbImage {
        width,
        height,
        data,
    }
}

pub struct SyntheticCameraSource {
    info: StreamInfo,
    pacer: Pacer,
    seq: u64,
    /// The photo scaled to cover the frame, wider than it so there is room to pan.
    scene: RgbImage,
    /// Noise values; each row starts at a random place in it.
    noise: Vec<i16>,
    flicker: f32,
    pan_frames: f32,
    rng: fastrand::Rng,
    rgb: Vec<u8>,
    stamp: bool,
}

impl SyntheticCameraSource {
    fn new(
        capture: &CaptureConfig,
        image: &RgbImage,
        opts: &Options,
    ) -> Result<SyntheticCameraSource, BackendError> {
        if capture.format.is_compressed() {
            return Err(BackendError::Unsupported {
                backend: "synthetic-camera",
                what: "jpeg output (use an uncompressed format and a JPEG codec)".into(),
            });
        }
        let frame = FrameInfo::packed(capture.format, capture.width, capture.height)?;
        // Cover the frame, with a quarter more width than the frame to pan across.
        let scale = (capture.width as f32 * 1.25 / image.width as f32)
            .max(capture.height as f32 / image.height as f32);
        let sw = ((image.width as f32 * scale).ceil() as u32).max(capture.width);
        let sh = ((image.height as f32 * scale).ceil() as u32).max(capture.height);
        let scene = resize(image, sw, sh);
        let mut rng = fastrand::Rng::with_seed(NOISE_SEED);
        // Sum of four uniforms: close enough to Gaussian for sensor noise.
        let noise = (0..(1 << 16) + capture.width as usize * 3)
            .map(|_| {
                let s: f32 = (0..4).map(|_| rng.f32() - 0.5).sum();
                (s * opts.noise * 3.46 / 2.0).round() as i16
            })
            .collect();
        let fps = if capture.fps > 0.0 { capture.fps } else { 30.0 };
        Ok(SyntheticCameraSource {
            info: StreamInfo {
                frame,
                fps: capture.fps,
            },
            pacer: Pacer::new(capture.fps),
            seq: 0,
            scene,
            noise,
            flicker: opts.flicker,
            pan_frames: opts.pan_seconds * fps as f32,
            rng,
            rgb: Vec::new(),
            stamp: opts.stamp
                && capture.width >= test_pattern::MIN_WIDTH
                && capture.height >= test_pattern::MIN_HEIGHT,
        })
    }

    /// Draws frame `seq` into `rgb`: the same picture for the same `seq`
    /// (the noise and flicker are drawn from a generator seeded by it).
    fn render(&mut self, seq: u64, rgb: &mut [u8]) {
        self.rng
            .seed(NOISE_SEED ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (w, h) = (
            self.info.frame.width as usize,
            self.info.frame.height as usize,
        );
        let spare = self.scene.width as usize - w;
        // Triangle wave: left to right and back.
        let phase = (seq as f32 / self.pan_frames) % 2.0;
        let x0 = ((if phase < 1.0 { phase } else { 2.0 - phase }) * spare as f32) as usize;
        let y0 = (self.scene.height as usize - h) / 2;
        let gain = 1.0
            + self.flicker * (seq as f32 * 0.37).sin()
            + self.flicker * 0.3 * (self.rng.f32() - 0.5);
        let lut: [i16; 256] = std::array::from_fn(|v| (v as f32 * gain).round() as i16);
        let sw = self.scene.width as usize;
        for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
            let start = ((y0 + y) * sw + x0) * 3;
            let src = &self.scene.data[start..start + w * 3];
            let n0 = self.rng.usize(..1 << 16);
            let noise = &self.noise[n0..n0 + w * 3];
            for ((o, &s), &n) in row.iter_mut().zip(src).zip(noise) {
                *o = (lut[s as usize] + n).clamp(0, 255) as u8;
            }
        }
    }
}

impl SyntheticCameraSource {
    /// The built-in photo, panned with the default noise and flicker,
    /// stamped: a source whose every picture a test can recreate
    /// ([`frame_at`](Self::frame_at)).
    pub fn stamped(capture: &CaptureConfig) -> Result<SyntheticCameraSource, BackendError> {
        let image = decode_png(DEFAULT_IMAGE).map_err(|e| BackendError::Library {
            what: "built-in coffee.png".into(),
            source: e.into(),
        })?;
        let opts = Options {
            stamp: true,
            ..Options::default()
        };
        SyntheticCameraSource::new(capture, &image, &opts)
    }

    /// The RGB24 picture `next_frame` made for frame `seq` stamped at
    /// `capture_us` (the stamp only when stamping).
    pub fn frame_at(&mut self, seq: u64, capture_us: u64, frame: &mut Frame) {
        let info = self.info.frame;
        let Ok(rgb) = FrameInfo::packed(PixelFormat::Rgb24, info.width, info.height) else {
            return;
        };
        frame.reset(rgb);
        self.render(seq, &mut frame.data);
        if self.stamp {
            let (w, h) = (info.width as usize, info.height as usize);
            test_pattern::stamp_rgb(
                &mut frame.data,
                w,
                h,
                test_pattern::Stamp { seq, capture_us },
            );
        }
        frame.seq = seq;
        frame.capture_us = capture_us;
    }
}

impl FrameSource for SyntheticCameraSource {
    fn stream_info(&self) -> StreamInfo {
        self.info
    }

    fn paces_itself(&self) -> bool {
        self.info.fps > 0.0
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        self.pacer.wait();
        let info = self.info.frame;
        // Stamped when the picture is complete, as a camera delivers it: the
        // simulated sensor's work is not part of the pipeline's latency.
        let mut capture_us = 0;
        let seq = self.seq;
        let mut render = |me: &mut Self, rgb: &mut [u8]| {
            me.render(seq, rgb);
            capture_us = crate::media::clock::now_us();
            if me.stamp {
                let (w, h) = (info.width as usize, info.height as usize);
                let stamp = test_pattern::Stamp {
                    seq: me.seq,
                    capture_us,
                };
                test_pattern::stamp_rgb(rgb, w, h, stamp);
            }
        };
        if info.format == PixelFormat::Rgb24 {
            frame.reset(info);
            render(self, &mut frame.data);
        } else {
            let mut rgb = std::mem::take(&mut self.rgb);
            rgb.resize(info.width as usize * info.height as usize * 3, 0);
            render(self, &mut rgb);
            convert::from_rgb24(&rgb, info.width, info.height, info.format, frame);
            self.rgb = rgb;
        }
        frame.seq = self.seq;
        frame.capture_us = capture_us;
        self.seq += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_photo_decodes() {
        let img = decode_png(DEFAULT_IMAGE).unwrap();
        assert_eq!((img.width, img.height), (600, 400));
        assert_eq!(img.data.len(), 600 * 400 * 3);
        assert!(decode_png(b"not a png").is_err());
    }

    /// With `stamp`, each frame says which it is, in every format, as the
    /// test pattern's do; without it, none does.
    #[test]
    fn stamped_frames_say_which_they_are() {
        let img = decode_png(DEFAULT_IMAGE).unwrap();
        for format in [PixelFormat::Rgb24, PixelFormat::I420, PixelFormat::Yuyv] {
            let capture = CaptureConfig {
                width: 640,
                height: 360,
                fps: 0.0,
                format,
            };
            let opts = Options {
                stamp: true,
                ..Options::default()
            };
            let mut src = SyntheticCameraSource::new(&capture, &img, &opts).unwrap();
            let mut f = Frame::empty();
            for seq in 0..3 {
                src.next_frame(&mut f).unwrap();
                let stamp = test_pattern::read_stamp(&f).expect("a stamp");
                assert_eq!(
                    (stamp.seq, stamp.capture_us),
                    (seq, f.capture_us),
                    "{format}"
                );
            }
            let mut plain =
                SyntheticCameraSource::new(&capture, &img, &Options::default()).unwrap();
            plain.next_frame(&mut f).unwrap();
            assert!(test_pattern::read_stamp(&f).is_none(), "{format}");
        }
    }

    /// A test can recreate every picture: the same noise for the same frame.
    #[test]
    fn every_picture_can_be_made_again() {
        let capture = CaptureConfig {
            width: 320,
            height: 240,
            fps: 0.0,
            format: PixelFormat::Rgb24,
        };
        let mut live = SyntheticCameraSource::stamped(&capture).unwrap();
        let mut again = SyntheticCameraSource::stamped(&capture).unwrap();
        let (mut f, mut g) = (Frame::empty(), Frame::empty());
        let mut frames = Vec::new();
        for _ in 0..4 {
            live.next_frame(&mut f).unwrap();
            frames.push(f.clone());
        }
        // Out of order, and twice: each is its own.
        for i in [3, 0, 2, 2] {
            let want = &frames[i];
            again.frame_at(want.seq, want.capture_us, &mut g);
            assert!(g.data == want.data, "frame {i} differs");
        }
        assert!(frames[0].data != frames[1].data);
    }

    #[test]
    fn frames_look_like_a_camera() {
        let capture = CaptureConfig {
            width: 320,
            height: 240,
            fps: 0.0,
            format: PixelFormat::Rgb24,
        };
        let img = decode_png(DEFAULT_IMAGE).unwrap();
        let mut src = SyntheticCameraSource::new(&capture, &img, &Options::default()).unwrap();
        let (mut a, mut b) = (Frame::empty(), Frame::empty());
        src.next_frame(&mut a).unwrap();
        src.next_frame(&mut b).unwrap();
        assert_eq!(a.data.len(), 320 * 240 * 3);
        assert_ne!(a.data, b.data, "noise makes every frame different");
        // Photographic: many distinct values, unlike a flat pattern.
        let mut seen = [false; 256];
        a.data.iter().for_each(|&v| seen[v as usize] = true);
        assert!(seen.iter().filter(|&&s| s).count() > 200);
        // Noise only: two frames stay close on average.
        let diff: u64 = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64)
            .sum();
        assert!(
            diff / (a.data.len() as u64) < 16,
            "mean abs diff {}",
            diff / a.data.len() as u64
        );
        let grey = CaptureConfig {
            format: PixelFormat::Nv12,
            ..capture
        };
        let mut src = SyntheticCameraSource::new(&grey, &img, &Options::default()).unwrap();
        src.next_frame(&mut a).unwrap();
        assert_eq!(a.data.len(), 320 * 240 * 3 / 2);
    }
}
