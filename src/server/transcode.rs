//! The `http-jpeg` thread: while browsers watch a stream whose payload is not
//! JPEG, it takes the newest captured frame and encodes it as JPEG for them
//! (the captured pixels, not the payload: no decode), feeding the hub's JPEG
//! fan-out. With no browser watching it is not subscribed and costs nothing.
//!
//! An H.264 camera's frames are access units, not pixels: then the thread
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
use crate::media::frame::{Frame, PixelFormat};
use crate::media::slot::Taken;

use super::hub::{EncodedFrame, FramePool, Hub, Subscriber, SubscriberKind};
use super::send::Chain;

pub(crate) fn transcode_loop(mut codec: Box<dyn FrameCodec>, hub: &Hub, stop: &AtomicBool) {
    let me = Subscriber::internal(SubscriberKind::Transcoder);
    let pool = FramePool::default();
    let mut failures = 0u64;
    let mut subscription = None;
    // JPEG frames (an MJPEG camera) go to the encoder as they are: it keeps
    // them. Only an H.264 source is decoded first.
    let mut decoder = match hub.stream.frame.format {
        PixelFormat::H264 => match to_pixels::for_format(PixelFormat::H264) {
            Ok(d) => d,
            Err(e) => {
                log::error!("JPEG for browsers: cannot decode the H.264 source: {e}");
                return;
            }
        },
        _ => None,
    };
    let inter_frame = decoder.as_ref().is_some_and(|d| d.inter_frame());
    me.chained.store(inter_frame, Ordering::Relaxed);
    let mut chain = None;
    let mut pixels = Frame::empty();
    while !stop.load(Ordering::Relaxed) {
        let wanted = !hub.jpeg.has_no_viewers();
        if wanted != subscription.is_some() {
            subscription = wanted.then(|| hub.main.subscribe(&me));
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
            if !c.admits(&source, hub, Instant::now()) {
                me.dropped();
                continue;
            }
        }
        let picture = match decoder.as_deref_mut() {
            None => &source.frame,
            Some(d) => {
                if let Err(e) = d.decode_into(&source.frame, &mut pixels) {
                    if let Some(c) = chain.as_mut() {
                        c.lost(hub, Instant::now());
                    }
                    failed(&mut failures, source.frame.seq, &e);
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
        let out = pool.take();
        transcode(codec.as_mut(), picture, out, hub, &pool, &mut failures);
    }
}

/// Logged at the 1st, 2nd, 4th, 8th... failure: a source that breaks every
/// frame does not flood the log.
fn failed(failures: &mut u64, seq: u64, e: &dyn std::fmt::Display) {
    *failures += 1;
    if failures.is_power_of_two() {
        log::error!("JPEG for browsers: frame {seq} ({failures} failed so far): {e}");
    }
}

/// Encodes `picture` (the captured frame, or an H.264 camera's decoded) into
/// `out` (unshared, from the pool), publishes it to the JPEG fan-out and gives
/// it back to the pool.
fn transcode(
    codec: &mut dyn FrameCodec,
    picture: &Frame,
    mut out: Arc<EncodedFrame>,
    hub: &Hub,
    pool: &FramePool,
    failures: &mut u64,
) {
    let Some(o) = Arc::get_mut(&mut out) else {
        unreachable!("the pool hands out unshared frames")
    };
    o.frame.info = picture.info;
    o.frame.seq = picture.seq;
    o.frame.capture_us = picture.capture_us;
    o.passthrough = false;
    o.keyframe = true;
    // A JPEG frame (MJPEG camera) comes back as it is, with tables added if
    // missing.
    match codec.encode(picture, &mut o.encoded) {
        Ok(encoded) if encoded.payload == Payload::Skipped => {}
        Ok(encoded) => {
            if encoded.payload == Payload::Passthrough {
                o.encoded.clear();
                o.encoded.extend_from_slice(&picture.data);
            }
            hub.jpeg.publish(&out);
        }
        Err(e) => failed(failures, picture.seq, &e),
    }
    pool.give(out);
}
