//! `jpeg`: baseline JPEG, the codec that fits a WiFi link. Two engines, one
//! chosen at build time: libjpeg-turbo 3 (feature `turbojpeg`, `turbo.rs`), or by
//! default pure Rust, `jpeg-encoder` and `zune-jpeg` (`pure.rs`). Decodes to
//! RGB24. Frames that already are JPEG (MJPEG cameras) pass through untouched,
//! with the standard Huffman tables added when the camera left them out.

use serde::Deserialize;

use super::to_pixels::ToPixels;
use super::{CodecBackend, Encoded, FrameCodec};
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, CodecError};
use crate::media::convert;
use crate::media::frame::{Frame, FrameInfo, PixelFormat};
pub mod markers;
use crate::backend::always;

// The one place that picks the engine.
#[cfg(not(feature = "turbojpeg"))]
#[path = "pure.rs"]
mod engine;
#[cfg(feature = "turbojpeg")]
#[path = "turbo.rs"]
mod engine;

/// What the engine of this build reports when it refuses an image, or cannot start.
pub use engine::EngineError;

/// Which library encodes and decodes in this build.
pub const ENGINE: &str = engine::NAME;

/// Pixel layouts the engines take as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    Rgb,
    Bgr,
    Rgba,
    /// B, G, R, X: livestream's `xrgb32`.
    Bgrx,
    Grey,
}

/// Chroma subsampling of the encoded image.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subsampling {
    #[serde(rename = "4:2:0")]
    S420,
    #[serde(rename = "4:2:2")]
    S422,
    #[serde(rename = "4:4:4")]
    S444,
}

inventory::submit! {
    CodecBackend {
        name: "jpeg",
        summary: engine::SUMMARY,
        probe: always,
        parallel: true,
        open,
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// 1 (smallest) to 100 (best).
    quality: u8,
    subsampling: Subsampling,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quality: 80,
            subsampling: Subsampling::S420,
        }
    }
}

fn open(table: &BackendConfig) -> Result<Box<dyn FrameCodec>, BackendError> {
    let opts: Options = table.parse()?;
    if !(1..=100).contains(&opts.quality) {
        return Err(BackendError::Invalid {
            what: "jpeg quality".into(),
            why: format!("{} is not between 1 and 100", opts.quality),
        });
    }
    JpegCodec::new(opts.quality, opts.subsampling)
        .map(|c| Box::new(c) as Box<dyn FrameCodec>)
        .map_err(engine_failed)
}

/// The quality a `[codecs.jpeg]` table sets (80 when it sets none, or
/// cannot be read: opening the codec says why).
pub fn configured_quality(table: &BackendConfig) -> u8 {
    table.parse::<Options>().map_or(80, |o| o.quality)
}

/// The engine's library could not start (libjpeg-turbo's handles).
fn engine_failed(e: EngineError) -> BackendError {
    BackendError::Library {
        what: format!("the {ENGINE} JPEG engine could not start"),
        source: Box::new(e),
    }
}

pub struct JpegCodec {
    encoder: engine::Encoder,
    decoder: engine::Decoder,
    /// RGB24 for formats the encoder does not take directly.
    rgb: Vec<u8>,
}

impl JpegCodec {
    fn new(quality: u8, subsampling: Subsampling) -> Result<JpegCodec, EngineError> {
        Ok(JpegCodec {
            encoder: engine::Encoder::new(quality, subsampling)?,
            decoder: engine::Decoder::new()?,
            rgb: Vec::new(),
        })
    }

    /// A 4:2:0 codec of the given quality (1-100), for tests and tools.
    pub fn with_quality(quality: u8) -> Result<JpegCodec, EngineError> {
        JpegCodec::new(quality.clamp(1, 100), Subsampling::S420)
    }
}

/// The payload's own header is wrong, or the engine refused it.
fn corrupt(e: impl std::error::Error + Send + Sync + 'static) -> CodecError {
    CodecError::Decode {
        codec: "jpeg",
        source: Box::new(e),
    }
}

impl FrameCodec for JpegCodec {
    fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<Encoded, CodecError> {
        let info = frame.info;
        if info.format == PixelFormat::Jpeg {
            // MJPEG from the camera: out as it is, unless it lacks its tables.
            return match markers::with_huffman_tables(&frame.data, out) {
                Ok(true) => Ok(Encoded::WRITTEN),
                Ok(false) => Ok(Encoded::PASSTHROUGH),
                Err(e) => Err(CodecError::SourceFrame {
                    codec: "jpeg",
                    seq: frame.seq,
                    source: Box::new(e),
                }),
            };
        }
        let packed = info.stride == info.format.min_stride(info.width).unwrap_or(0);
        let (data, layout): (&[u8], _) = match info.format {
            PixelFormat::Rgb24 if packed => (&frame.data, Layout::Rgb),
            PixelFormat::Bgr24 if packed => (&frame.data, Layout::Bgr),
            PixelFormat::Rgba32 if packed => (&frame.data, Layout::Rgba),
            PixelFormat::Xrgb32 if packed => (&frame.data, Layout::Bgrx),
            PixelFormat::Grey if packed => (&frame.data, Layout::Grey),
            _ => {
                convert::to_rgb24(frame, &mut self.rgb);
                (&self.rgb, Layout::Rgb)
            }
        };
        self.encoder
            .encode(data, info.width, info.height, layout, out)
            .map_err(|e| CodecError::Encode {
                codec: "jpeg",
                source: Box::new(e),
            })?;
        Ok(Encoded::WRITTEN)
    }

    fn max_payload(&self, info: &FrameInfo) -> usize {
        // A JPEG of noise at quality 100 can exceed its raw size a little.
        (info.width as usize * info.height as usize)
            .saturating_mul(4)
            .saturating_add(1 << 16)
    }

    fn payload_format(&self, _info: &FrameInfo) -> Option<PixelFormat> {
        Some(PixelFormat::Jpeg)
    }

    fn decoded_info(&self, info: &FrameInfo) -> FrameInfo {
        rgb_info(info)
    }

    fn decode(&mut self, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError> {
        decode_checked(&mut self.decoder, payload, frame)
    }
}

/// What a JPEG of `info`'s size decodes to: RGB24 of the same size.
fn rgb_info(info: &FrameInfo) -> FrameInfo {
    FrameInfo::packed(PixelFormat::Rgb24, info.width, info.height).unwrap_or(*info)
}

/// Decodes `payload` into `frame` (RGB24), whose info gives the size to expect:
/// the JPEG's own header is checked against it before the engine sees a byte.
fn decode_checked(
    decoder: &mut engine::Decoder,
    payload: &[u8],
    frame: &mut Frame,
) -> Result<(), CodecError> {
    let (width, height) = (frame.info.width, frame.info.height);
    let header = markers::parse_header(payload).map_err(corrupt)?;
    if (header.width, header.height) != (width, height) {
        return Err(CodecError::Corrupt {
            codec: "jpeg",
            why: format!(
                "image is {}x{}, the stream header says {width}x{height}",
                header.width, header.height
            ),
        });
    }
    frame.reset(rgb_info(&frame.info));
    decoder
        .decode(payload, width, height, &mut frame.data)
        .map_err(corrupt)
}

/// Turns JPEG frames (from an MJPEG camera, carried by a codec that keeps them
/// as they are) into RGB24 for a sink that needs pixels: a window, a Y4M file.
/// Holds a decoder only.
pub struct JpegToPixels {
    decoder: engine::Decoder,
    scratch: Vec<u8>,
}

impl JpegToPixels {
    pub fn new() -> Result<JpegToPixels, BackendError> {
        Ok(JpegToPixels {
            decoder: engine::Decoder::new().map_err(engine_failed)?,
            scratch: Vec::new(),
        })
    }
}

impl ToPixels for JpegToPixels {
    fn decoded_info(&self, info: &FrameInfo) -> FrameInfo {
        rgb_info(info)
    }

    fn decode_into(&mut self, jpeg: &Frame, out: &mut Frame) -> Result<(), CodecError> {
        out.info = jpeg.info;
        out.seq = jpeg.seq;
        out.capture_us = jpeg.capture_us;
        decode_checked(&mut self.decoder, &jpeg.data, out)
    }

    fn decode(&mut self, frame: &mut Frame) -> Result<(), CodecError> {
        std::mem::swap(&mut self.scratch, &mut frame.data);
        decode_checked(&mut self.decoder, &self.scratch, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::synthetic_camera::decode_png;

    use crate::media::quality::psnr;

    fn photo(name: &str) -> Frame {
        let img = decode_png(&std::fs::read(format!("data/photos/{name}")).unwrap()).unwrap();
        // Even size for every format.
        let (w, h) = (img.width & !1, img.height & !1);
        let mut rgb = Vec::new();
        for row in img
            .data
            .chunks_exact(img.width as usize * 3)
            .take(h as usize)
        {
            rgb.extend_from_slice(&row[..w as usize * 3]);
        }
        let mut f = Frame::empty();
        convert::from_rgb24(&rgb, w, h, PixelFormat::Rgb24, &mut f);
        f
    }

    fn round_trip(codec: &mut JpegCodec, f: &Frame) -> (Frame, usize) {
        let mut out = Vec::new();
        let mut payload = match codec.encode(f, &mut out).unwrap().payload {
            crate::codecs::Payload::Written => out,
            crate::codecs::Payload::Passthrough => f.data.clone(),
            crate::codecs::Payload::Skipped => unreachable!("JPEG skips nothing"),
        };
        let len = payload.len();
        assert!(len <= codec.max_payload(&f.info));
        let mut back = Frame::empty();
        back.info = f.info;
        codec.decode(&mut payload, &mut back).unwrap();
        (back, len)
    }

    /// Quality 80, 4:2:0 on real photographs: close to the source (PSNR over
    /// 30 dB, where artefacts are hard to see) and 8x smaller than raw at least.
    #[test]
    fn photos_round_trip_close_and_small() {
        let mut codec = JpegCodec::with_quality(80).unwrap();
        for name in ["astronaut.png", "coffee.png"] {
            let src = photo(name);
            for format in [
                PixelFormat::Rgb24,
                PixelFormat::Nv12,
                PixelFormat::Yuyv,
                PixelFormat::Xrgb32,
            ] {
                let mut input = Frame::empty();
                let mut rgb = Vec::new();
                convert::to_rgb24(&src, &mut rgb);
                convert::from_rgb24(&rgb, src.info.width, src.info.height, format, &mut input);
                let (back, len) = round_trip(&mut codec, &input);
                assert_eq!(
                    back.info,
                    FrameInfo::packed(PixelFormat::Rgb24, src.info.width, src.info.height).unwrap()
                );
                // Compare with what the input looks like in RGB (subsampled formats
                // lose some colour before JPEG sees them).
                let mut want = Vec::new();
                convert::to_rgb24(&input, &mut want);
                let db = psnr(&want, &back.data);
                assert!(db > 30.0, "{name} {format}: PSNR {db:.1} dB");
                assert!(len * 8 < want.len(), "{name} {format}: {len} bytes");
            }
        }
    }

    #[test]
    fn jpeg_to_pixels_decodes_as_the_codec_does() {
        let mut codec = JpegCodec::with_quality(80).unwrap();
        let src = photo("coffee.png");
        let mut jpeg = Frame::empty();
        codec.encode(&src, &mut jpeg.data).unwrap();
        jpeg.info = FrameInfo {
            format: PixelFormat::Jpeg,
            width: src.info.width,
            height: src.info.height,
            stride: 0,
        };
        jpeg.seq = 9;
        let mut want = Frame::empty();
        want.info = src.info;
        codec.decode(&mut jpeg.data.clone(), &mut want).unwrap();

        let mut to_pixels = JpegToPixels::new().unwrap();
        assert_eq!(to_pixels.decoded_info(&jpeg.info), want.info);
        let mut out = Frame::empty();
        to_pixels.decode_into(&jpeg, &mut out).unwrap();
        assert_eq!((out.info, out.seq), (want.info, 9));
        assert!(out.data == want.data, "decode_into differs from the codec");
        to_pixels.decode(&mut jpeg).unwrap();
        assert!(
            jpeg.data == want.data,
            "decode in place differs from the codec"
        );
        // Not a JPEG: the header parser's error is the cause.
        let mut bad = Frame::empty();
        bad.info = out.info;
        bad.data = b"GIF89a".to_vec();
        let e = to_pixels.decode(&mut bad).unwrap_err();
        let cause = std::error::Error::source(&e).and_then(|c| c.downcast_ref());
        assert_eq!(cause, Some(&markers::JpegError::NotJpeg), "{e}");
    }

    #[test]
    fn mjpeg_passes_through_and_gets_tables_when_missing() {
        let mut codec = JpegCodec::with_quality(80).unwrap();
        let src = photo("coffee.png");
        let mut jpeg_bytes = Vec::new();
        codec.encode(&src, &mut jpeg_bytes).unwrap();
        let mut camera = Frame::empty();
        camera.info = FrameInfo {
            format: PixelFormat::Jpeg,
            width: src.info.width,
            height: src.info.height,
            stride: 0,
        };
        camera.data = jpeg_bytes.clone();
        camera.seq = 4;
        // With tables: the bytes go out untouched.
        let mut out = Vec::new();
        assert_eq!(
            codec.encode(&camera, &mut out).unwrap(),
            Encoded::PASSTHROUGH
        );
        // Without (as UVC cameras send them): tables inserted, and it decodes to the
        // same picture as the original.
        camera.data = markers::strip_huffman_tables(&jpeg_bytes).unwrap();
        assert!(!markers::parse_header(&camera.data).unwrap().has_dht);
        assert_eq!(codec.encode(&camera, &mut out).unwrap(), Encoded::WRITTEN);
        assert!(markers::parse_header(&out).unwrap().has_dht);
        let mut a = Frame::empty();
        a.info = camera.info;
        codec.decode(&mut out.clone(), &mut a).unwrap();
        let mut b = Frame::empty();
        b.info = camera.info;
        codec.decode(&mut jpeg_bytes.clone(), &mut b).unwrap();
        assert!(
            a.data == b.data,
            "inserted tables decode to the same picture"
        );
        // A broken camera frame says which frame, and keeps the parser's error.
        camera.data = b"GIF89a".to_vec();
        let e = codec.encode(&camera, &mut out).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("jpeg: corrupt payload: frame 4 from the source: "),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some_and(|c| c.is::<markers::JpegError>()));
    }

    #[test]
    fn hostile_payloads_are_errors() {
        let mut codec = JpegCodec::with_quality(80).unwrap();
        let src = photo("astronaut.png");
        let mut good = Vec::new();
        codec.encode(&src, &mut good).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut frame = Frame::empty();
        // Which part refused each bad payload: the header parser, or the engine.
        let (mut by_markers, mut by_engine) = (0, 0);
        for round in 0..300 {
            let mut p = good.clone();
            match round % 3 {
                0 => p.truncate(rng.usize(..p.len())),
                1 => (0..rng.usize(1..20)).for_each(|_| {
                    let i = rng.usize(..p.len());
                    p[i] = rng.u8(..);
                }),
                _ => p = (0..rng.usize(..5000)).map(|_| rng.u8(..)).collect(),
            }
            frame.info = src.info;
            match codec.decode(&mut p, &mut frame) {
                Ok(()) => assert_eq!(frame.data.len(), src.info.byte_len()),
                Err(e) => {
                    let cause = std::error::Error::source(&e);
                    if cause.is_some_and(|c| c.is::<markers::JpegError>()) {
                        by_markers += 1;
                    } else if cause.is_some_and(|c| c.is::<EngineError>()) {
                        by_engine += 1;
                        assert!(e.to_string().starts_with("jpeg: corrupt payload: "), "{e}");
                    }
                }
            }
        }
        assert!(
            by_markers > 0 && by_engine > 0,
            "errors keep their cause: {by_markers} from the header parser, {by_engine} from {ENGINE}"
        );
        // A valid JPEG of another size than announced is refused.
        frame.info = FrameInfo::packed(PixelFormat::Rgb24, 64, 64).unwrap();
        let err = codec.decode(&mut good.clone(), &mut frame).unwrap_err();
        assert!(
            err.to_string().contains("the stream header says 64x64"),
            "{err}"
        );
    }
}
