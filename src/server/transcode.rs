//! The transcoders: a stream for browsers in a format the main payload is
//! not, made only while some browser watches it, once for all of them.
//!
//! - `http-jpeg`: while browsers watch MJPEG and the payload is not JPEG, JPEG
//!   of the newest captured frame (the captured pixels, not the payload: no
//!   decode), fed to the hub's JPEG fan-out.
//! - `webrtc-h264`: while WebRTC viewers watch and the payload is not H.264
//!   (codec `jpeg`, `raw`, `lz4`...), H.264 of the captured frames (an MJPEG
//!   camera's decoded first), fed to the hub's H.264 fan-out with keyframes on
//!   its viewers' requests ([`Hub::webrtc_feed`]). A frame that comes while
//!   the encoder is busy replaces the one waiting: a slow encoder lowers the
//!   frame rate, and the chain it makes stays whole.
//!
//! With no one watching, a transcoder is not subscribed and costs nothing.
//!
//! An H.264 camera's frames are access units, not pixels: then `http-jpeg`
//! decodes every one of them in order (following the chain as a viewer does:
//! after a frame it missed, nothing until a keyframe, which it asks for) and
//! encodes the newest decoded picture, skipping the JPEG of a picture when a
//! newer frame is already waiting. A slow JPEG encoder thus drops pictures,
//! not access units, as long as one JPEG takes less than about two frame
//! intervals (a frame arriving while another waits replaces it, which breaks
//! the chain until the next keyframe, asked for at most every 500 ms).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codecs::to_pixels;
use crate::codecs::{FrameCodec, Payload};
use crate::media::clock;
use crate::media::convert;
use crate::media::frame::{Frame, FrameInfo, PixelFormat};
use crate::media::scale::Scaler;
use crate::media::slot::Taken;

use super::adapt::Rung;
use super::hub::{
    EncodedFrame, Fanout, FramePool, Hub, Keyframes, Rendition, Subscriber, SubscriberKind,
};
use super::send::Chain;

/// What a transcoder makes, and for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// JPEG for MJPEG browsers (`hub.jpeg`).
    Jpeg,
    /// H.264 for WebRTC viewers (`hub.h264`).
    H264,
    /// A smaller rendition of an H.264 stream for native viewers whose link
    /// cannot carry the stream's (`hub.renditions`, `adapt.rs`): the
    /// pictures scaled to its rung's size, then encoded.
    Rendition(u8),
    /// A smaller, lower-quality JPEG rendition for MJPEG browsers whose link
    /// cannot carry the stream's JPEG (`hub.jpeg_renditions`).
    JpegRendition(u8),
}

impl Output {
    fn fanout(self, hub: &Hub) -> &Fanout {
        match self {
            Output::Jpeg => &hub.jpeg,
            Output::H264 => &hub.h264,
            Output::Rendition(i) => match hub.rendition_feed(i.into()) {
                Some((fanout, _)) => fanout,
                None => unreachable!("rendition transcoders are started for the ladder's rungs"),
            },
            Output::JpegRendition(i) => match hub.feed_for(SubscriberKind::Http, i.into()) {
                Some((fanout, _)) => fanout,
                None => unreachable!("rendition transcoders are started for the ladder's rungs"),
            },
        }
    }

    /// Its rung of the ladder and its figures, for a rendition.
    fn rendition(self, hub: &Hub) -> Option<(&Rung, &Rendition)> {
        let (ladder, renditions, i) = match self {
            Output::Rendition(i) => (&hub.ladder, &hub.renditions, i),
            Output::JpegRendition(i) => (&hub.jpeg_ladder, &hub.jpeg_renditions, i),
            _ => return None,
        };
        let i = usize::from(i);
        Some((ladder.get(i)?, renditions.get(i.checked_sub(1)?)?))
    }

    fn keyframes(self, hub: &Hub) -> Option<&Keyframes> {
        match self {
            Output::Jpeg | Output::JpegRendition(_) => None,
            Output::H264 => Some(&hub.h264_keyframes),
            Output::Rendition(i) => hub.rendition_feed(i.into()).map(|(_, k)| k),
        }
    }

    fn name(self) -> String {
        match self {
            Output::Jpeg => "JPEG for browsers".into(),
            Output::H264 => "H.264 for WebRTC".into(),
            Output::Rendition(i) => format!("rendition {i}"),
            Output::JpegRendition(i) => format!("JPEG rendition {i}"),
        }
    }

    /// Whether captured frames of `format` are decoded before this encoder
    /// takes them: compressed frames, except JPEG for the JPEG encoder (an
    /// MJPEG camera's frames go out as they came).
    fn decodes(self, format: PixelFormat) -> bool {
        format.is_compressed() && !(self == Output::Jpeg && format == PixelFormat::Jpeg)
    }
}

/// What the encoder of an inter-frame output keeps: its frame count (the
/// index subscribers check) and its viewers' keyframe requests.
struct Made<'h> {
    index: u64,
    keyframes: &'h Keyframes,
}

pub(crate) fn transcode_loop(
    mut codec: Box<dyn FrameCodec>,
    output: Output,
    hub: &Hub,
    stop: &AtomicBool,
) {
    let me = Subscriber::internal(SubscriberKind::Transcoder);
    let pool = FramePool::default();
    let mut failures = 0u64;
    let mut subscription = None;
    let format = hub.stream.frame.format;
    let mut decoder = if output.decodes(format) {
        match to_pixels::for_format(format) {
            Ok(d) => d,
            Err(e) => {
                log::error!("{}: cannot decode the {format} source: {e}", output.name());
                return;
            }
        }
    } else {
        None
    };
    let mut made = output.keyframes(hub).map(|keyframes| Made {
        index: 0,
        keyframes,
    });
    let mut scale = output
        .rendition(hub)
        .map(|(r, _)| Scale::new((r.width, r.height)));
    let inter_frame = decoder.as_ref().is_some_and(|d| d.inter_frame());
    me.chained.store(inter_frame, Ordering::Relaxed);
    let mut chain = None;
    let mut pixels = Frame::empty();
    while !stop.load(Ordering::Relaxed) {
        let wanted = !output.fanout(hub).has_no_viewers();
        if wanted != subscription.is_some() {
            subscription = wanted.then(|| hub.main.subscribe(&me));
            if wanted && made.is_some() {
                // Its viewers start from a keyframe.
                codec.request_keyframe();
            }
            // Joining an inter-frame stream: from its next keyframe.
            chain = (wanted && inter_frame).then(Chain::new);
            if !wanted {
                // What came in while leaving is for no one.
                while let Taken::Value(_) = me.slot.take(Duration::ZERO) {}
            }
        }
        let source = match me.slot.take(Duration::from_millis(100)) {
            Taken::Value(p) => p,
            Taken::Timeout => continue,
            Taken::Closed => break,
        };
        if let Some(c) = chain.as_mut() {
            if !c.admits(&source, &hub.keyframes, Instant::now()) {
                me.dropped();
                continue;
            }
        }
        let picture = match decoder.as_deref_mut() {
            None => &source.frame,
            Some(d) => {
                if let Err(e) = d.decode_into(&source.frame, &mut pixels) {
                    if let Some(c) = chain.as_mut() {
                        c.lost(&hub.keyframes, Instant::now());
                    }
                    failed(output, &mut failures, source.frame.seq, &e);
                    continue;
                }
                if let Some(c) = chain.as_mut() {
                    c.sent(&source);
                }
                if !me.slot.is_empty() {
                    // A newer frame waits, to be decoded next: its picture is
                    // the one to encode.
                    continue;
                }
                &pixels
            }
        };
        // CPU time, for a rendition's figures in `/stats`.
        let t0 = clock::thread_cpu_ns();
        let picture = match scale.as_mut() {
            None => picture,
            Some(s) => match s.scale(picture) {
                Ok(scaled) => scaled,
                Err(e) => {
                    failed(output, &mut failures, picture.seq, &e);
                    continue;
                }
            },
        };
        let out = pool.take();
        let encoded = Encode {
            output,
            made: made.as_mut(),
            failures: &mut failures,
        };
        encoded.run(codec.as_mut(), picture, out, hub, &pool);
        if let Some((_, r)) = output.rendition(hub) {
            r.made.fetch_add(1, Ordering::Relaxed);
            r.encode_ns
                .fetch_add(clock::thread_cpu_ns() - t0, Ordering::Relaxed);
        }
    }
}

/// A rendition's pictures: the captured (or decoded) picture as I420, scaled
/// to the rendition's size. Buffers kept from frame to frame.
struct Scale {
    to: (u32, u32),
    scaler: Scaler,
    rgb: Vec<u8>,
    i420: Vec<u8>,
    out: Frame,
}

impl Scale {
    fn new(to: (u32, u32)) -> Scale {
        Scale {
            to,
            scaler: Scaler::default(),
            rgb: Vec::new(),
            i420: Vec::new(),
            out: Frame::empty(),
        }
    }

    fn scale(&mut self, picture: &Frame) -> Result<&Frame, String> {
        let info = picture.info;
        let from = (info.width, info.height);
        let packed_i420 = info.format == PixelFormat::I420 && info.stride == info.width;
        let src: &[u8] = if packed_i420 {
            &picture.data
        } else {
            if !convert::to_i420(picture, &mut self.rgb, &mut self.i420) {
                return Err(format!("{} pictures cannot be scaled", info.format));
            }
            &self.i420
        };
        self.scaler
            .i420(src, from, &mut self.out.data, self.to)
            .map_err(|e| e.to_string())?;
        self.out.info = FrameInfo::packed(PixelFormat::I420, self.to.0, self.to.1)
            .map_err(|e| e.to_string())?;
        self.out.seq = picture.seq;
        self.out.capture_us = picture.capture_us;
        Ok(&self.out)
    }
}

/// Logged at the 1st, 2nd, 4th, 8th... failure: a source that breaks every
/// frame does not flood the log.
fn failed(output: Output, failures: &mut u64, seq: u64, e: &dyn std::fmt::Display) {
    // Only the 1st, 2nd, 4th... are logged.
    *failures += 1;
    if failures.is_power_of_two() {
        log::error!(
            "{}: frame {seq} ({failures} failed so far): {e}",
            output.name()
        );
    }
}

/// One picture through the encoder and out to its fan-out.
struct Encode<'a, 'h> {
    output: Output,
    made: Option<&'a mut Made<'h>>,
    failures: &'a mut u64,
}

impl Encode<'_, '_> {
    /// Encodes `picture` (the captured frame, or a camera's decoded) into
    /// `out` (unshared, from the pool), publishes it to the output's fan-out
    /// and gives it back to the pool.
    fn run(
        mut self,
        codec: &mut dyn FrameCodec,
        picture: &Frame,
        mut out: Arc<EncodedFrame>,
        hub: &Hub,
        pool: &FramePool,
    ) {
        let Some(o) = Arc::get_mut(&mut out) else {
            unreachable!("the pool hands out unshared frames")
        };
        o.frame.info = picture.info;
        o.frame.seq = picture.seq;
        o.frame.capture_us = picture.capture_us;
        o.passthrough = false;
        o.keyframe = true;
        o.rendition = match self.output {
            Output::Rendition(i) | Output::JpegRendition(i) => i,
            _ => 0,
        };
        if let Some(m) = &self.made {
            if m.keyframes.due(clock::now_us()) {
                codec.request_keyframe();
            }
        }
        // A JPEG frame (MJPEG camera) comes back as it is, with tables added
        // if missing.
        let publish = match codec.encode(picture, &mut o.encoded) {
            Ok(encoded) if encoded.payload == Payload::Skipped => false,
            Ok(encoded) => {
                if encoded.payload == Payload::Passthrough {
                    o.encoded.clear();
                    o.encoded.extend_from_slice(&picture.data);
                }
                o.encoded_us = clock::now_us();
                if let Some(m) = self.made.as_deref_mut() {
                    o.keyframe = encoded.keyframe;
                    o.index = m.index;
                    m.index += 1;
                    if encoded.keyframe {
                        m.keyframes.made();
                    }
                }
                true
            }
            Err(e) => {
                failed(self.output, self.failures, picture.seq, &e);
                false
            }
        };
        if publish {
            self.output.fanout(hub).publish(&out);
            if let Some(m) = &self.made {
                if out.keyframe {
                    m.keyframes.published();
                }
            }
        }
        pool.give(out);
    }
}
