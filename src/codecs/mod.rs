//! Frame codecs: how a frame travels over the wire.

use crate::backend::table::BackendConfig;
use crate::backend::Availability;
use crate::error::{BackendError, CodecError};
use crate::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};

pub mod bincode;
#[cfg(feature = "h264")]
pub mod h264;
pub mod jpeg;
pub mod lz4;
pub mod raw;
pub mod to_pixels;

/// What `encode` produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub payload: Payload,
    /// The payload decodes without any earlier frame: every frame of an
    /// intra-only codec, an IDR access unit of H.264.
    pub keyframe: bool,
}

/// Where an encoded payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// In `out`.
    Written,
    /// The frame's own bytes are the payload, unchanged: send `frame.data` (no copy).
    Passthrough,
    /// Nothing to send: the encoder's rate control skipped this frame (the
    /// next one follows on from the one before).
    Skipped,
}

impl Encoded {
    /// A keyframe written into `out`: what intra-only codecs produce.
    pub const WRITTEN: Encoded = Encoded {
        payload: Payload::Written,
        keyframe: true,
    };
    /// The frame's own bytes, a keyframe.
    pub const PASSTHROUGH: Encoded = Encoded {
        payload: Payload::Passthrough,
        keyframe: true,
    };
}

/// Turns frames into payloads and back. One instance per stream and direction.
///
/// The caller owns every buffer: `encode` writes into a `Vec` the caller reuses,
/// `decode` writes into a frame the caller reuses. Neither allocates once the
/// buffers have grown to the stream's size.
pub trait FrameCodec: Send {
    /// Encodes `frame` into `out` (cleared first), or says the frame's bytes are the
    /// payload as they are.
    ///
    /// Errors: [`CodecError::Unsupported`] for a pixel format the codec cannot carry.
    fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<Encoded, CodecError>;

    /// The largest payload this codec can produce for a frame of `info`, which must be
    /// valid. Decoders reject anything larger before reading it.
    fn max_payload(&self, info: &FrameInfo) -> usize;

    /// The format of the payload for frames of `info` when each is a whole
    /// picture in a standard format that others can send or store as it is:
    /// `Jpeg` (browsers get it over MJPEG as it is), `H264` (one access unit in
    /// Annex-B form). `None` for payloads only our own decoder reads.
    fn payload_format(&self, info: &FrameInfo) -> Option<PixelFormat> {
        let _ = info;
        None
    }

    /// Whether the payload for frames of `info` is a complete JPEG image.
    fn payload_is_jpeg(&self, info: &FrameInfo) -> bool {
        self.payload_format(info) == Some(PixelFormat::Jpeg)
    }

    /// What `decode` turns a frame of `info` into: the same geometry for lossless
    /// codecs, RGB24 for JPEG.
    fn decoded_info(&self, info: &FrameInfo) -> FrameInfo {
        *info
    }

    /// Decodes `payload` into `frame`. The caller has already set `frame.info` from the
    /// validated stream header, and `frame.seq` / `frame.capture_us` from the packet;
    /// the decoder fills `frame.data` with exactly `frame.info.byte_len()` bytes (for
    /// JPEG-in-JPEG-out, the whole image). It may swap `payload`'s buffer into the
    /// frame instead of copying, leaving the frame's old buffer in `payload`.
    ///
    /// Errors: `WrongSize`, `Corrupt` (the codec's own checks) or `Decode` (its
    /// library refused the payload; the library's error is the source) for a
    /// payload that does not decode to exactly the announced frame. The input is
    /// untrusted: never a panic.
    fn decode(&mut self, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError>;

    /// Whether a payload may depend on earlier ones (H.264's P-frames). Then
    /// every stage keeps the chain whole: after a dropped frame it waits for the
    /// next keyframe (and asks for one) instead of decoding a corrupt picture.
    fn inter_frame(&self) -> bool {
        false
    }

    /// Makes the next [`encode`](Self::encode) produce a keyframe (an
    /// intra-only codec makes nothing else).
    fn request_keyframe(&mut self) {}

    /// What the encoder was set up to do, for a person ("2.8 Mbit/s, a
    /// keyframe every 2 s and on request"); empty when there is nothing to say.
    fn settings(&self) -> String {
        String::new()
    }

    /// The bitrate the encoder aims at, bit/s, once it has begun; `None` for
    /// codecs without rate control (and a stream passed through).
    fn target_bitrate(&self) -> Option<u32> {
        None
    }

    /// Aims the encoder at `bits_per_second` instead of what its options say:
    /// before [`begin`](Self::begin) (a smaller rendition's encoder), or
    /// while it runs (the stream's encoder following its viewers' links,
    /// `server/adapt.rs`) where its engine can. False when it cannot.
    fn set_bitrate(&mut self, bits_per_second: u32) -> bool {
        let _ = bits_per_second;
        false
    }

    /// Called once before the first `encode` with the stream it will carry, so
    /// an encoder can set its rate and refuse a geometry it cannot take.
    fn begin(&mut self, stream: &StreamInfo) -> Result<(), CodecError> {
        let _ = stream;
        Ok(())
    }
}

/// A codec backend's registration.
pub struct CodecBackend {
    pub name: &'static str,
    pub summary: &'static str,
    pub probe: fn() -> Availability,
    /// Encoding is CPU-heavy: the server runs several encoders when cores allow.
    pub parallel: bool,
    pub open: fn(&BackendConfig) -> Result<Box<dyn FrameCodec>, BackendError>,
}

inventory::collect!(CodecBackend);

#[cfg(not(feature = "h264"))]
inventory::submit! {
    crate::backend::CompiledOut {
        kind: crate::backend::Kind::Codec,
        name: "h264",
        feature: "h264",
        package: "no package (a C++ compiler)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::PixelFormat;
    use crate::registry;

    fn codec(name: &str) -> Box<dyn FrameCodec> {
        let cfg = crate::config::Config::parse(
            crate::backend::table::ConfigText::embedded(),
            &crate::config::Overrides::default(),
        )
        .unwrap();
        (registry::codec(name).unwrap().open)(&cfg.backend(crate::backend::Kind::Codec, name))
            .unwrap()
    }

    fn frame(format: PixelFormat, w: u32, h: u32, seed: u64) -> Frame {
        let mut f = Frame::empty();
        f.reset(FrameInfo::packed(format, w, h).unwrap());
        let mut rng = fastrand::Rng::with_seed(seed);
        // Half noise, half flat: both compressible and incompressible runs.
        let half = f.data.len() / 2;
        f.data[..half].iter_mut().for_each(|b| *b = rng.u8(..));
        f.seq = seed;
        f.capture_us = seed * 1000;
        f
    }

    /// Encodes, then decodes into a fresh frame set up from the "header", as the
    /// viewer does.
    fn round_trip(c: &mut dyn FrameCodec, f: &Frame) -> Result<(Frame, usize), CodecError> {
        let mut out = Vec::new();
        let mut payload = match c.encode(f, &mut out)?.payload {
            Payload::Written => out,
            Payload::Passthrough => f.data.clone(),
            Payload::Skipped => unreachable!("these codecs skip nothing"),
        };
        let len = payload.len();
        assert!(
            len <= c.max_payload(&f.info),
            "payload {len} over max_payload"
        );
        let mut back = Frame::empty();
        back.info = f.info;
        back.seq = f.seq;
        back.capture_us = f.capture_us;
        c.decode(&mut payload, &mut back)?;
        Ok((back, len))
    }

    #[test]
    fn every_codec_round_trips_every_format() {
        for name in ["raw", "lz4", "bincode"] {
            let mut c = codec(name);
            for (i, format) in PixelFormat::ALL
                .into_iter()
                .filter(|f| !f.is_compressed())
                .enumerate()
            {
                for (w, h) in [(2, 2), (64, 48), (640, 480)] {
                    let f = frame(format, w, h, i as u64);
                    let (back, _) = round_trip(c.as_mut(), &f).unwrap();
                    assert!(back.data == f.data, "{name} {format} {w}x{h}");
                    assert_eq!((back.seq, back.capture_us), (f.seq, f.capture_us));
                }
            }
        }
    }

    #[test]
    fn bincode_overhead_is_as_documented() {
        let f = frame(PixelFormat::Grey, 64, 48, 1);
        let (_, len) = round_trip(codec("bincode").as_mut(), &f).unwrap();
        assert_eq!(len, 64 * 48 + 40, "docs/protocol.md says frame size + 40");
    }

    #[test]
    fn lz4_shrinks_flat_content() {
        let mut f = frame(PixelFormat::Rgb24, 640, 480, 2);
        f.data.fill(7);
        let (_, len) = round_trip(codec("lz4").as_mut(), &f).unwrap();
        assert!(len < f.data.len() / 100, "{len}");
    }

    /// Random, truncated and mutated payloads: an error or a correct-size frame,
    /// never a panic, never a frame of the wrong size.
    #[test]
    fn hostile_payloads_never_panic() {
        let mut rng = fastrand::Rng::with_seed(99);
        for name in ["raw", "lz4", "bincode", "jpeg"] {
            let mut c = codec(name);
            let f = frame(PixelFormat::Rgb24, 32, 16, 5);
            let mut good = Vec::new();
            let good = match c.encode(&f, &mut good).unwrap().payload {
                Payload::Written => good,
                Payload::Passthrough => f.data.clone(),
                Payload::Skipped => unreachable!("these codecs skip nothing"),
            };
            for round in 0..3000 {
                let mut payload = match round % 3 {
                    0 => (0..rng.usize(..4000)).map(|_| rng.u8(..)).collect(),
                    1 => good[..rng.usize(..good.len())].to_vec(),
                    _ => {
                        let mut p = good.clone();
                        for _ in 0..rng.usize(1..8) {
                            let i = rng.usize(..p.len());
                            p[i] = rng.u8(..);
                        }
                        p
                    }
                };
                let mut out = Frame::empty();
                out.info = f.info;
                if c.decode(&mut payload, &mut out).is_ok() {
                    assert_eq!(
                        out.data.len(),
                        f.info.byte_len(),
                        "{name}: wrong size accepted"
                    );
                }
            }
        }
    }

    /// A library's refusal reaches the caller as the source of the codec's error,
    /// with its own type, not as words.
    #[test]
    fn decode_errors_keep_the_library_error() {
        let f = frame(PixelFormat::Rgb24, 32, 16, 5);
        let decode = |name: &str, payload: &[u8]| {
            let mut out = Frame::empty();
            out.info = f.info;
            codec(name)
                .decode(&mut payload.to_vec(), &mut out)
                .unwrap_err()
        };
        // A match offset pointing before the start of the output.
        let e = decode("lz4", &[0x0f, 0xff, 0xff]);
        assert!(
            matches!(e, CodecError::Decode { codec: "lz4", .. }),
            "{e:?}"
        );
        let cause = std::error::Error::source(&e).unwrap();
        assert!(cause.is::<lz4_flex::block::DecompressError>(), "{cause:?}");
        assert!(e.to_string().starts_with("lz4: corrupt payload: "), "{e}");
        let e = decode("bincode", &[1, 2, 3]);
        let cause = std::error::Error::source(&e).unwrap();
        assert!(cause.is::<::bincode::error::DecodeError>(), "{cause:?}");
        // The codec's own checks say what is wrong, with no library below them.
        let e = decode("raw", &[0; 7]);
        assert!(matches!(e, CodecError::WrongSize { got: 7, .. }), "{e:?}");
        assert!(std::error::Error::source(&e).is_none());
    }
}
