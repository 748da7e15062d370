//! The `http-jpeg` thread: while browsers watch a stream whose payload is not
//! JPEG, it takes the newest captured frame and encodes it as JPEG for them
//! (the captured pixels, not the payload: no decode), feeding the hub's JPEG
//! fan-out. With no browser watching it is not subscribed and costs nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::codecs::{FrameCodec, Payload};
use crate::media::slot::Taken;

use super::hub::{EncodedFrame, FramePool, Hub, Subscriber, SubscriberKind};

pub(crate) fn transcode_loop(mut codec: Box<dyn FrameCodec>, hub: &Hub, stop: &AtomicBool) {
    let me = Subscriber::internal(SubscriberKind::Transcoder);
    let pool = FramePool::default();
    let mut failures = 0u64;
    let mut subscription = None;
    while !stop.load(Ordering::Relaxed) {
        let wanted = !hub.jpeg.has_no_viewers();
        if wanted != subscription.is_some() {
            subscription = wanted.then(|| hub.main.subscribe(&me));
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
        let out = pool.take();
        transcode(codec.as_mut(), &source, out, hub, &pool, &mut failures);
    }
}

/// Encodes `source`'s captured frame into `out` (unshared, from the pool),
/// publishes it to the JPEG fan-out and gives it back to the pool.
fn transcode(
    codec: &mut dyn FrameCodec,
    source: &EncodedFrame,
    mut out: Arc<EncodedFrame>,
    hub: &Hub,
    pool: &FramePool,
    failures: &mut u64,
) {
    let Some(o) = Arc::get_mut(&mut out) else {
        unreachable!("the pool hands out unshared frames")
    };
    o.frame.info = source.frame.info;
    o.frame.seq = source.frame.seq;
    o.frame.capture_us = source.frame.capture_us;
    o.passthrough = false;
    o.keyframe = true;
    // A JPEG frame (MJPEG camera) comes back as it is, with tables added if
    // missing.
    match codec.encode(&source.frame, &mut o.encoded) {
        Ok(encoded) if encoded.payload == Payload::Skipped => {}
        Ok(encoded) => {
            if encoded.payload == Payload::Passthrough {
                o.encoded.clear();
                o.encoded.extend_from_slice(&source.frame.data);
            }
            hub.jpeg.publish(&out);
        }
        // Logged at the 1st, 2nd, 4th, 8th... failure: a source the JPEG
        // encoder cannot take (an H.264 camera) fails every frame.
        Err(e) => {
            *failures += 1;
            if failures.is_power_of_two() {
                log::error!(
                    "JPEG for browsers: frame {} ({} failed so far): {e}",
                    source.frame.seq,
                    failures
                );
            }
        }
    }
    pool.give(out);
}
