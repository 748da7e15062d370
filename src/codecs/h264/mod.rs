//! `h264`: H.264 constrained baseline with Cisco's openh264, built from source
//! by the `openh264` crate (a C++ compiler is all it needs). About a tenth of
//! JPEG's bitrate for a camera's picture, and what browsers (WebRTC), RTSP
//! clients and media servers take.
//!
//! Low-latency settings: baseline profile (no B-frames, CAVLC: every decoder
//! takes it), one access unit per frame with the parameter sets before every
//! IDR, rate control to `bitrate`, an IDR every `keyframe-interval` seconds and
//! whenever a viewer asks ([`FrameCodec::request_keyframe`]), and the colours
//! signalled as BT.601 full range, the convention of the rest of livestream.
//!
//! Two engines encode (`engine`): openh264 in software, and `v4l2m2m`, a
//! kernel memory-to-memory encoder such as the Raspberry Pi 0-4's hardware
//! one (`m2m.rs`); `auto`, the default, takes the hardware one when the
//! machine has it and it takes the stream, else software. Decoding is
//! openh264's.
//!
//! Each payload depends on the ones before it ([`FrameCodec::inter_frame`]):
//! the server and viewer keep the chain whole (`server/send.rs`,
//! `viewer/reader.rs`). Payloads from the network are walked by
//! [`annexb::check_access_unit`] before openh264's decoder sees them.

use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVSource;
use openh264::OpenH264API;
use serde::Deserialize;

use super::to_pixels::ToPixels;
use super::{CodecBackend, Encoded, FrameCodec, Payload};
use crate::backend::always;
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, CodecError};
use crate::media::annexb;
use crate::media::convert;
use crate::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};

const NAME: &str = "h264";

/// openh264 encodes up to this size (either orientation).
const MAX_LONG_SIDE: u32 = 3840;
const MAX_SHORT_SIDE: u32 = 2160;

/// Bits per pixel per frame of the automatic bitrate: 2.8 Mbit/s for 720p30.
const AUTO_BITS_PER_PIXEL: f64 = 0.1;
/// Bounds of the automatic bitrate, bit/s.
const AUTO_MIN_BPS: f64 = 150e3;
const AUTO_MAX_BPS: f64 = 16e6;
/// The frame rate rate control assumes for an unpaced source.
const UNPACED_FPS: f64 = 30.0;

inventory::submit! {
    CodecBackend {
        name: NAME,
        summary: "H.264 constrained baseline (openh264): a tenth of JPEG's bitrate; keyframes on request",
        probe: always,
        parallel: false,
        open,
    }
}

/// Which encoder makes the stream.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum EngineChoice {
    /// The hardware encoder when there is one that takes the stream, else openh264.
    Auto,
    /// openh264.
    Software,
    /// A V4L2 memory-to-memory encoder (`device`, or the first offering H.264).
    V4l2m2m,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// Target bitrate in kbit/s; 0 picks one from the resolution and rate.
    bitrate: u32,
    /// Seconds between periodic keyframes; 0: only when a viewer asks.
    keyframe_interval: f64,
    /// Encoder threads, one slice each; 0: one per core up to 4 (see `slice_count`).
    threads: u16,
    engine: EngineChoice,
    /// The v4l2m2m encoder's node; default: the first that offers H.264.
    device: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bitrate: 0,
            keyframe_interval: 2.0,
            threads: 0,
            engine: EngineChoice::Auto,
            device: None,
        }
    }
}

fn open(table: &BackendConfig) -> Result<Box<dyn FrameCodec>, BackendError> {
    let opts: Options = table.parse()?;
    if !(0.0..=3600.0).contains(&opts.keyframe_interval) {
        return Err(BackendError::Invalid {
            what: "h264 keyframe-interval".into(),
            why: format!("{} s is not between 0 and 3600", opts.keyframe_interval),
        });
    }
    if opts.bitrate > 200_000 {
        return Err(BackendError::Invalid {
            what: "h264 bitrate".into(),
            why: format!("{} kbit/s is over 200000", opts.bitrate),
        });
    }
    if opts.threads > 16 {
        return Err(BackendError::Invalid {
            what: "h264 threads".into(),
            why: format!("{} is over 16", opts.threads),
        });
    }
    #[cfg(not(feature = "v4l2"))]
    if opts.engine == EngineChoice::V4l2m2m {
        return Err(BackendError::Invalid {
            what: "h264 engine".into(),
            why: "\"v4l2m2m\" needs a build with the `v4l2` feature".into(),
        });
    }
    Ok(Box::new(H264Codec::new(opts)))
}

/// The encoder and decoder halves; each is made when first used (a viewer
/// never encodes, a server never decodes).
pub struct H264Codec {
    opts: Options,
    encoder: Option<Encoding>,
    decoder: Option<Decoder>,
    want_keyframe: bool,
    /// The picture size of a stream of H.264 frames passed through.
    passthrough: Option<(u32, u32)>,
    /// Scratch for frames that are not I420 already.
    i420: Vec<u8>,
    rgb: Vec<u8>,
}

/// An encoder set up for one stream.
struct Encoding {
    engine: Box<dyn Engine>,
    width: u32,
    height: u32,
    bitrate: u32,
}

/// One way of encoding a stream's pictures.
trait Engine: Send {
    /// Encodes `picture` into `out` (cleared first), an IDR when `keyframe`.
    /// `Ok(None)`: the encoder skipped the frame; else whether it is an IDR.
    fn encode(
        &mut self,
        picture: &Planes<'_>,
        keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<bool>, CodecError>;

    /// Which engine, for a person ("openh264", a device's name and node).
    fn describe(&self) -> String;

    /// Aims the running encoder at `bits_per_second`; false when it cannot
    /// change its rate while it runs.
    fn set_bitrate(&mut self, bits_per_second: u32) -> bool {
        let _ = bits_per_second;
        false
    }
}

/// openh264's encoder.
struct Software(Encoder);

impl Engine for Software {
    fn encode(
        &mut self,
        picture: &Planes<'_>,
        keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<bool>, CodecError> {
        if keyframe {
            self.0.force_intra_frame();
        }
        let bits = self.0.encode(picture).map_err(library)?;
        out.clear();
        bits.write_vec(out);
        let kind = bits.frame_type();
        if kind == FrameType::Skip || out.is_empty() {
            return Ok(None);
        }
        Ok(Some(kind == FrameType::IDR))
    }

    fn describe(&self) -> String {
        "openh264".into()
    }

    fn set_bitrate(&mut self, bits_per_second: u32) -> bool {
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: bits_per_second.min(i32::MAX as u32) as i32,
        };
        // SAFETY: the encoder is initialised (it was made with its config);
        // ENCODER_OPTION_BITRATE takes a pointer to an SBitrateInfo, which
        // lives for the call. openh264's wrapper keeps no copy of the
        // bitrate it would set again (only on a change of picture size,
        // which this stream never has).
        let status = unsafe {
            self.0.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                std::ptr::addr_of_mut!(info).cast(),
            )
        };
        status == 0
    }
}

/// The target bitrate for `stream`, bit/s.
fn bitrate(opts: &Options, stream: &StreamInfo) -> u32 {
    if opts.bitrate > 0 {
        return opts.bitrate * 1000;
    }
    let fps = if stream.fps > 0.0 {
        stream.fps
    } else {
        UNPACED_FPS
    };
    let pixels = stream.frame.width as f64 * stream.frame.height as f64;
    (pixels * fps * AUTO_BITS_PER_PIXEL).clamp(AUTO_MIN_BPS, AUTO_MAX_BPS) as u32
}

fn library(e: openh264::Error) -> CodecError {
    CodecError::Encode {
        codec: NAME,
        source: Box::new(e),
    }
}

impl Encoding {
    fn new(opts: &Options, stream: &StreamInfo) -> Result<Encoding, CodecError> {
        let (w, h) = (stream.frame.width, stream.frame.height);
        if w % 2 != 0 || h % 2 != 0 {
            return Err(CodecError::Stream {
                codec: NAME,
                what: format!("{w}x{h}: H.264's 4:2:0 needs an even width and height"),
            });
        }
        let fps = if stream.fps > 0.0 {
            stream.fps
        } else {
            UNPACED_FPS
        };
        let bitrate = bitrate(opts, stream);
        let period = (opts.keyframe_interval * fps).round() as u32;
        let engine: Box<dyn Engine> = match opts.engine {
            EngineChoice::Software => Box::new(software(opts, w, h, fps, bitrate, period)?),
            EngineChoice::V4l2m2m => hardware(opts, w, h, fps, bitrate, period)?,
            EngineChoice::Auto => match hardware(opts, w, h, fps, bitrate, period) {
                Ok(engine) => engine,
                Err(e) => {
                    log::debug!("h264: no hardware encoder ({e}); openh264 encodes");
                    Box::new(software(opts, w, h, fps, bitrate, period)?)
                }
            },
        };
        Ok(Encoding {
            engine,
            width: w,
            height: h,
            bitrate,
        })
    }
}

/// The v4l2m2m engine for a `w`x`h` stream.
#[cfg(feature = "v4l2")]
fn hardware(
    opts: &Options,
    w: u32,
    h: u32,
    fps: f64,
    bitrate: u32,
    period: u32,
) -> Result<Box<dyn Engine>, CodecError> {
    let settings = crate::v4l2::m2m::EncoderSettings {
        fourcc: crate::v4l2::m2m::Fourcc::H264,
        width: w,
        height: h,
        fps,
        bitrate,
        keyframe_period: period,
    };
    Ok(Box::new(m2m::Hardware::open(
        opts.device.as_deref(),
        &settings,
    )?))
}

#[cfg(not(feature = "v4l2"))]
fn hardware(
    opts: &Options,
    _w: u32,
    _h: u32,
    _fps: f64,
    _bitrate: u32,
    _period: u32,
) -> Result<Box<dyn Engine>, CodecError> {
    let _ = opts.device;
    Err(CodecError::Stream {
        codec: NAME,
        what: "a v4l2m2m encoder: this build lacks the `v4l2` feature".into(),
    })
}

/// openh264 set up for a `w`x`h` stream.
fn software(
    opts: &Options,
    w: u32,
    h: u32,
    fps: f64,
    bitrate: u32,
    period: u32,
) -> Result<Software, CodecError> {
    if w.max(h) > MAX_LONG_SIDE || w.min(h) > MAX_SHORT_SIDE {
        return Err(CodecError::Stream {
            codec: NAME,
            what: format!("{w}x{h}: openh264 encodes up to 3840x2160"),
        });
    }
    let config = EncoderConfig::new()
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .complexity(Complexity::Low)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(bitrate))
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        // Over its budget, the rate control raises the quantiser rather
        // than skipping frames: skipping held 0.46 Mbit/s, but froze the
        // picture for several frames after every IDR. (openh264 warns
        // at start that it cannot guarantee the rate this way, silenced
        // by `quiet_start`; it held it within a few percent in our
        // measurements.)
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(period))
        .num_threads(opts.threads)
        .scene_change_detect(false)
        .background_detection(false)
        .vui(VuiConfig::bt601().full_range(true));
    let mut encoder =
        Encoder::with_api_config(OpenH264API::from_source(), config).map_err(library)?;
    quiet_start(&mut encoder);
    let slices = slice_count(opts.threads, w, h);
    if slices > 1 {
        into_slices(&mut encoder, w, h, slices)?;
    }
    Ok(Software(encoder))
}

/// openh264 prints its warnings to stderr while it sets an encoder up (with
/// our settings, always one about rate control without frame skipping); the
/// crate quiets it only once that is done. Errors still print.
fn quiet_start(encoder: &mut Encoder) {
    use openh264_sys2::{ENCODER_OPTION_TRACE_LEVEL, WELS_LOG_ERROR};
    let mut level = WELS_LOG_ERROR;
    // SAFETY: the trace level is the one option openh264 takes before it is
    // initialised; it reads one int, which `level` is.
    unsafe {
        encoder
            .raw_api()
            .set_option(ENCODER_OPTION_TRACE_LEVEL, (&raw mut level).cast());
    }
}

/// How many slices (and so threads) a frame of `w`x`h` is encoded in:
/// `threads` when set, else one per core up to 4, and one for pictures under
/// 640x360, where a thread's hand-over costs more than its share of the work.
fn slice_count(threads: u16, w: u32, h: u32) -> u16 {
    if threads > 0 {
        return threads;
    }
    if w * h < 640 * 360 {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u16)
}

/// Switches an encoder to `slices` slices a frame, one thread each.
///
/// openh264 threads a frame by its slices, and the crate sets up one slice
/// (or size-limited ones) only. The crate sets the encoder up at its first
/// frame: a black frame is encoded (and thrown away) for that, then the
/// parameters are read back, given a fixed slice count and thread count, and
/// set again, which makes openh264 start over with them (its next frame is an
/// IDR). Each slice is coded independently, so a frame costs a little more
/// (measured in docs/benchmarks.md).
fn into_slices(encoder: &mut Encoder, w: u32, h: u32, slices: u16) -> Result<(), CodecError> {
    use openh264_sys2::{SEncParamExt, ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, SM_FIXEDSLCNUM_SLICE};
    let (w, h) = (w as usize, h as usize);
    let mut black = vec![128u8; w * h * 3 / 2];
    black[..w * h].fill(0);
    encoder
        .encode(&Planes::i420(&black, w, h, w))
        .map_err(library)?;
    let failed = |what: &str, code: i32| CodecError::Stream {
        codec: NAME,
        what: format!("openh264 refused {what} (code {code})"),
    };
    let mut params = SEncParamExt::default();
    // SAFETY: the encoder is initialised (it has encoded a frame); the option
    // reads and writes exactly one SEncParamExt, which `params` is.
    unsafe {
        let raw = encoder.raw_api();
        let got = raw.get_option(
            ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
            (&raw mut params).cast(),
        );
        if got != 0 {
            return Err(failed("to give its parameters", got));
        }
        params.iMultipleThreadIdc = slices;
        let slice = &mut params.sSpatialLayers[0].sSliceArgument;
        slice.uiSliceMode = SM_FIXEDSLCNUM_SLICE;
        slice.uiSliceNum = u32::from(slices);
        let set = raw.set_option(
            ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
            (&raw mut params).cast(),
        );
        if set != 0 {
            return Err(failed(&format!("{slices} slices"), set));
        }
    }
    encoder.force_intra_frame();
    Ok(())
}

/// Borrowed I420 planes, as openh264 reads them.
struct Planes<'a> {
    y: &'a [u8],
    u: &'a [u8],
    v: &'a [u8],
    width: usize,
    height: usize,
    y_stride: usize,
    c_stride: usize,
}

impl YUVSource for Planes<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    fn strides(&self) -> (usize, usize, usize) {
        (self.y_stride, self.c_stride, self.c_stride)
    }
    fn y(&self) -> &[u8] {
        self.y
    }
    fn u(&self) -> &[u8] {
        self.u
    }
    fn v(&self) -> &[u8] {
        self.v
    }
}

impl<'a> Planes<'a> {
    /// The planes of an I420 buffer of `stride` (chroma `stride / 2`).
    fn i420(data: &'a [u8], width: usize, height: usize, stride: usize) -> Planes<'a> {
        let (y, chroma) = data.split_at(stride * height);
        let (u, v) = chroma.split_at(stride / 2 * height / 2);
        Planes {
            y,
            u,
            v: &v[..stride / 2 * height / 2],
            width,
            height,
            y_stride: stride,
            c_stride: stride / 2,
        }
    }
}

impl H264Codec {
    fn new(opts: Options) -> H264Codec {
        H264Codec {
            opts,
            encoder: None,
            decoder: None,
            want_keyframe: false,
            passthrough: None,
            i420: Vec::new(),
            rgb: Vec::new(),
        }
    }

    /// The target bitrate the encoder runs at, bit/s (once it has begun).
    pub fn bitrate(&self) -> Option<u32> {
        self.encoder.as_ref().map(|e| e.bitrate)
    }

    /// Writes the decoder's picture into `frame` as packed I420.
    fn take_picture(picture: &impl YUVSource, frame: &mut Frame) -> Result<(), CodecError> {
        let (w, h) = picture.dimensions();
        let (want_w, want_h) = (frame.info.width as usize, frame.info.height as usize);
        if (w, h) != (want_w, want_h) {
            return Err(CodecError::Corrupt {
                codec: NAME,
                why: format!("a {w}x{h} picture in a {want_w}x{want_h} stream"),
            });
        }
        let info = FrameInfo::packed(PixelFormat::I420, frame.info.width, frame.info.height)
            .map_err(|e| CodecError::Corrupt {
                codec: NAME,
                why: e.to_string(),
            })?;
        frame.reset(info);
        let (ys, us, vs) = picture.strides();
        let (y, chroma) = frame.data.split_at_mut(w * h);
        let (u, v) = chroma.split_at_mut(w * h / 4);
        let planes = [
            (y, picture.y(), ys, w, h),
            (u, picture.u(), us, w / 2, h / 2),
            (v, picture.v(), vs, w / 2, h / 2),
        ];
        for (dst, src, stride, pw, ph) in planes {
            for row in 0..ph {
                let line = src.get(row * stride..row * stride + pw).ok_or_else(|| {
                    CodecError::Corrupt {
                        codec: NAME,
                        why: "the decoder's picture is shorter than its size".into(),
                    }
                })?;
                dst[row * pw..row * pw + pw].copy_from_slice(line);
            }
        }
        Ok(())
    }
}

/// Decodes the access unit `au` (untrusted: checked first) into `frame`,
/// whose `info` gives the stream's picture size, as I420. The decoder is made
/// on first use.
fn decode_access_unit(
    decoder: &mut Option<Decoder>,
    au: &[u8],
    frame: &mut Frame,
) -> Result<(), CodecError> {
    let stream = (frame.info.width, frame.info.height);
    annexb::check_stream_access_unit(au, stream).map_err(|e| CodecError::Decode {
        codec: NAME,
        source: Box::new(e),
    })?;
    if decoder.is_none() {
        let made = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| CodecError::Decode {
                codec: NAME,
                source: Box::new(e),
            })?;
        *decoder = Some(made);
    }
    let Some(decoder) = decoder.as_mut() else {
        unreachable!("made above")
    };
    match decoder.decode(au) {
        Ok(Some(picture)) => H264Codec::take_picture(&picture, frame),
        Ok(None) => Err(CodecError::Corrupt {
            codec: NAME,
            why: "the access unit gave no picture (a parameter set or reference missing)".into(),
        }),
        Err(e) => Err(CodecError::Decode {
            codec: NAME,
            source: Box::new(e),
        }),
    }
}

/// Turns the frames of an H.264 source (a camera's or a recording's access
/// units) into I420 for a consumer on the server that needs pixels: a preview
/// window, JPEG for browsers. Every access unit of the chain must come
/// through, in order; after a gap, a keyframe first (`send::Chain` does that).
#[derive(Default)]
pub struct H264ToPixels {
    decoder: Option<Decoder>,
    scratch: Vec<u8>,
}

impl ToPixels for H264ToPixels {
    fn decoded_info(&self, info: &FrameInfo) -> FrameInfo {
        FrameInfo::packed(PixelFormat::I420, info.width, info.height).unwrap_or(*info)
    }

    fn decode_into(&mut self, h264: &Frame, out: &mut Frame) -> Result<(), CodecError> {
        out.info = h264.info;
        out.seq = h264.seq;
        out.capture_us = h264.capture_us;
        decode_access_unit(&mut self.decoder, &h264.data, out)
    }

    fn decode(&mut self, frame: &mut Frame) -> Result<(), CodecError> {
        std::mem::swap(&mut self.scratch, &mut frame.data);
        decode_access_unit(&mut self.decoder, &self.scratch, frame)
    }

    fn inter_frame(&self) -> bool {
        true
    }
}

impl H264Codec {
    /// An access unit the source delivered as H.264: checked (NAL units, a
    /// picture, its parameter set's size against the stream's, the size bound
    /// viewers enforce) and sent as it came.
    fn pass_through(&mut self, frame: &Frame) -> Result<Encoded, CodecError> {
        let info = frame.info;
        let (w, h) = *self.passthrough.get_or_insert((info.width, info.height));
        let corrupt = |why: String| CodecError::Corrupt { codec: NAME, why };
        if frame.data.len() > self.max_payload(&info) {
            return Err(corrupt(format!(
                "an access unit of {} bytes, more than a {w}x{h} stream allows",
                frame.data.len()
            )));
        }
        let au = annexb::check_stream_access_unit(&frame.data, (w, h)).map_err(|e| {
            CodecError::Decode {
                codec: NAME,
                source: Box::new(e),
            }
        })?;
        Ok(Encoded {
            payload: Payload::Passthrough,
            keyframe: au.keyframe,
        })
    }
}

impl FrameCodec for H264Codec {
    fn begin(&mut self, stream: &StreamInfo) -> Result<(), CodecError> {
        if stream.frame.format == PixelFormat::H264 {
            // A camera or a recording that delivers H.264 already: its access
            // units go out as they came, checked, and nothing is encoded.
            self.passthrough = Some((stream.frame.width, stream.frame.height));
            return Ok(());
        }
        self.encoder = Some(Encoding::new(&self.opts, stream)?);
        Ok(())
    }

    fn settings(&self) -> String {
        if self.passthrough.is_some() {
            return "the source's own H.264, passed through".into();
        }
        let Some(e) = &self.encoder else {
            return String::new();
        };
        let keyframes = if self.opts.keyframe_interval > 0.0 {
            format!(
                "a keyframe every {} s and on request",
                self.opts.keyframe_interval
            )
        } else {
            "keyframes on request".into()
        };
        format!(
            "{}, {:.1} Mbit/s, {keyframes}",
            e.engine.describe(),
            e.bitrate as f64 / 1e6
        )
    }

    fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<Encoded, CodecError> {
        let info = frame.info;
        if info.format == PixelFormat::H264 {
            return self.pass_through(frame);
        }
        if info.format.is_compressed() {
            return Err(CodecError::Unsupported {
                codec: NAME,
                format: info.format,
            });
        }
        if self.encoder.is_none() {
            // A caller that did not begin (a tool, a test): the stream is this frame's.
            let stream = StreamInfo {
                frame: info,
                fps: UNPACED_FPS,
            };
            self.encoder = Some(Encoding::new(&self.opts, &stream)?);
        }
        let Some(enc) = self.encoder.as_mut() else {
            unreachable!("made above")
        };
        if (info.width, info.height) != (enc.width, enc.height) {
            return Err(CodecError::Stream {
                codec: NAME,
                what: format!(
                    "a {}x{} frame in a {}x{} stream",
                    info.width, info.height, enc.width, enc.height
                ),
            });
        }
        let (w, h) = (info.width as usize, info.height as usize);
        let planes = if info.format == PixelFormat::I420 {
            Planes::i420(&frame.data, w, h, info.stride as usize)
        } else {
            if !convert::to_i420(frame, &mut self.rgb, &mut self.i420) {
                return Err(CodecError::Unsupported {
                    codec: NAME,
                    format: info.format,
                });
            }
            Planes::i420(&self.i420, w, h, w)
        };
        let keyframe = std::mem::take(&mut self.want_keyframe);
        match enc.engine.encode(&planes, keyframe, out)? {
            None => Ok(Encoded {
                payload: Payload::Skipped,
                keyframe: false,
            }),
            Some(keyframe) => Ok(Encoded {
                payload: Payload::Written,
                keyframe,
            }),
        }
    }

    fn max_payload(&self, info: &FrameInfo) -> usize {
        // An IDR of noise at the lowest quantiser stays under 2 bytes a pixel
        // (PCM macroblocks take 384 bytes per 256 pixels, plus headers).
        (info.width as usize * info.height as usize)
            .saturating_mul(2)
            .saturating_add(1 << 16)
    }

    fn payload_format(&self, _info: &FrameInfo) -> Option<PixelFormat> {
        Some(PixelFormat::H264)
    }

    fn decoded_info(&self, info: &FrameInfo) -> FrameInfo {
        FrameInfo::packed(PixelFormat::I420, info.width, info.height).unwrap_or(*info)
    }

    fn decode(&mut self, payload: &mut Vec<u8>, frame: &mut Frame) -> Result<(), CodecError> {
        decode_access_unit(&mut self.decoder, payload, frame)
    }

    fn inter_frame(&self) -> bool {
        true
    }

    fn request_keyframe(&mut self) {
        self.want_keyframe = true;
    }

    fn target_bitrate(&self) -> Option<u32> {
        self.bitrate()
    }

    fn set_bitrate(&mut self, bits_per_second: u32) -> bool {
        match self.encoder.as_mut() {
            None => {
                // Options are in kbit/s; at least 1.
                self.opts.bitrate = (bits_per_second / 1000).max(1);
                true
            }
            Some(e) => {
                let set = e.engine.set_bitrate(bits_per_second);
                if set {
                    e.bitrate = bits_per_second;
                }
                set
            }
        }
    }
}

#[cfg(feature = "v4l2")]
mod m2m;
#[cfg(test)]
mod tests;
