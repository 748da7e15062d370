//! The `capture` thread and its `encode-N` helpers: source → codec → a pooled,
//! shared frame → the main fan-out.
//!
//! With one codec the capture thread encodes inline. With several (CPU-heavy
//! codecs such as JPEG) it hands the newest frame to whichever `encode-N`
//! thread is free, through a newest-wins slot: a frame no encoder was free for
//! is dropped, never queued, and the fan-out publishes in order, dropping one
//! that an encoder finished after a newer one went out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codecs::{FrameCodec, Payload};
use crate::error::SourceError;
use crate::media::clock;
use crate::media::frame::PixelFormat;
use crate::media::slot::{Slot, Taken};
use crate::sources::FrameSource;

use super::hub::{EncodedFrame, FramePool, Hub};
use super::ServeLimits;

/// Consecutive capture failures after which the source counts as failed.
const MAX_FAILURES: u32 = 10;

/// One encoder and how many frames it has made (each frame's `index`).
struct Encoder {
    codec: Box<dyn FrameCodec>,
    made: u64,
}

impl Encoder {
    fn new(codec: Box<dyn FrameCodec>) -> Encoder {
        Encoder { codec, made: 0 }
    }

    /// Encodes a captured frame (which nobody else holds yet), publishes it,
    /// and returns it to the pool. Makes it a keyframe when subscribers asked,
    /// and then returns true (a source that delivers H.264 itself is asked).
    fn encode_and_publish(
        &mut self,
        mut frame: Arc<EncodedFrame>,
        hub: &Hub,
        pool: &FramePool,
    ) -> bool {
        let mut asked = false;
        if let Some(p) = Arc::get_mut(&mut frame) {
            if hub.keyframes.due(clock::now_us()) {
                self.codec.request_keyframe();
                asked = true;
            }
            // CPU time, not wall time.
            let t0 = clock::thread_cpu_ns();
            let encoded = self.codec.encode(&p.frame, &mut p.encoded);
            hub.encode_ns
                .fetch_add(clock::thread_cpu_ns() - t0, Ordering::Relaxed);
            match encoded {
                Ok(e) if e.payload == Payload::Skipped => {
                    hub.encoder_skipped.fetch_add(1, Ordering::Relaxed);
                }
                Ok(e) => {
                    p.passthrough = e.payload == Payload::Passthrough;
                    p.keyframe = e.keyframe;
                    p.index = self.made;
                    self.made += 1;
                    p.encoded_us = clock::now_us();
                    if e.keyframe {
                        hub.keyframes.made();
                        // RTSP's DESCRIBE names the parameter sets, or
                        // says whether RTP/JPEG carries the JPEG.
                        if let Some(rtsp) = &hub.rtsp {
                            match hub.payload_format {
                                Some(PixelFormat::H264) => rtsp.keyframe(p.payload()),
                                Some(PixelFormat::Jpeg) => rtsp.jpeg(p.payload()),
                                _ => {}
                            }
                        }
                    }
                    hub.main.publish(&frame);
                    if e.keyframe {
                        hub.keyframes.published();
                    }
                }
                Err(e) => {
                    if self.codec.inter_frame() {
                        // What the encoder holds as its reference is unknown
                        // now, and frames after this one may depend on it (a
                        // camera's H.264 passed through): the numbering skips
                        // it, so every subscriber sees the gap and waits for
                        // a keyframe, which it asks for.
                        self.codec.request_keyframe();
                        self.made += 1;
                    }
                    log::error!("encoding frame {} failed: {e}", p.frame.seq)
                }
            }
        }
        pool.give(frame);
        asked
    }
}

/// What became of one call to the source.
enum Captured {
    Frame(Arc<EncodedFrame>),
    /// Nothing this time (a timeout, or a failure short of the limit).
    Nothing,
    /// The stream is over: `Ok` when the source ended, `Err` when it failed.
    Over(Result<(), SourceError>),
}

/// The capture thread's state between frames.
struct Capture<'a> {
    source: Box<dyn FrameSource>,
    hub: &'a Hub,
    pool: &'a FramePool,
    failures: u32,
    /// When the rate was last measured, and the frame count then.
    meter: (Instant, u64),
    /// The source said once that it cannot make a keyframe on request.
    told_no_keyframes: bool,
}

impl Capture<'_> {
    /// Asks the source for one frame, into a pooled frame.
    fn next(&mut self) -> Captured {
        let mut frame = self.pool.take();
        let Some(p) = Arc::get_mut(&mut frame) else {
            unreachable!("the pool hands out unshared frames")
        };
        // CPU time, not wall time: pacing sleeps are not work.
        let t0 = clock::thread_cpu_ns();
        let result = self.source.next_frame(&mut p.frame);
        self.hub
            .source_ns
            .fetch_add(clock::thread_cpu_ns() - t0, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.failures = 0;
                self.count();
                return Captured::Frame(frame);
            }
            Err(SourceError::EndOfStream) => {
                self.hub.finish("the source has ended", true);
                return Captured::Over(Ok(()));
            }
            Err(SourceError::Timeout(_)) => {}
            Err(e) => {
                self.failures += 1;
                log::error!("capture failed: {e}");
                if self.failures >= MAX_FAILURES {
                    self.hub.finish("the source failed", true);
                    return Captured::Over(Err(e));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.pool.give(frame);
        Captured::Nothing
    }

    /// Viewers wait for a keyframe of an H.264 source: asks it for one.
    fn keyframe_from_source(&mut self) {
        if !self.source.request_keyframe() && !self.told_no_keyframes {
            self.told_no_keyframes = true;
            log::info!(
                "the source cannot make a keyframe on request: viewers that join or \
                 lose a frame wait for its next one"
            );
        }
    }

    /// Counts a captured frame, and once a second the capture rate.
    fn count(&mut self) {
        let captured = self.hub.captured.fetch_add(1, Ordering::Relaxed) + 1;
        let elapsed = self.meter.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let fps = (captured - self.meter.1) as f64 / elapsed.as_secs_f64();
            self.hub.capture_fps.store(fps.to_bits(), Ordering::Relaxed);
            self.meter = (Instant::now(), captured);
        }
    }
}

/// The `encode-N` thread: encodes the newest frame handed over, until the
/// hand-over closes.
fn encoder_loop(mut encoder: Encoder, work: &Slot<Arc<EncodedFrame>>, hub: &Hub, pool: &FramePool) {
    loop {
        match work.take(Duration::from_millis(500)) {
            Taken::Value(frame) => {
                encoder.encode_and_publish(frame, hub, pool);
            }
            Taken::Timeout => {}
            Taken::Closed => break,
        }
    }
}

/// For a source that does not pace itself: waits until a frame read now would
/// be taken, by an encoder (when they run on threads of their own) and then by
/// some subscriber, instead of reading frames only to replace them unseen.
/// Polls: subscribers take frames on threads of their own, from slots that
/// know nothing of each other, and a quarter of a millisecond is far below a
/// frame's cost. False when no one took anything for 100 ms.
fn wait_for_demand(work: &Slot<Arc<EncodedFrame>>, hub: &Hub) -> bool {
    let started = Instant::now();
    while !(work.is_empty() && hub.main.someone_ready()) {
        if started.elapsed() >= Duration::from_millis(100) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(250));
    }
    true
}

/// The capture thread: source → (encoders) → subscribers, until `stop`, the
/// limits, or the end of the source.
pub(crate) fn capture_loop(
    source: Box<dyn FrameSource>,
    mut codecs: Vec<Box<dyn FrameCodec>>,
    hub: &Hub,
    stop: &AtomicBool,
    limits: ServeLimits,
) -> Result<(), SourceError> {
    let started = Instant::now();
    let pool = FramePool::default();
    let work: Slot<Arc<EncodedFrame>> = Slot::default();
    let mut inline = if codecs.len() == 1 {
        codecs.pop().map(Encoder::new)
    } else {
        None
    };
    std::thread::scope(|scope| {
        for (i, codec) in codecs.into_iter().enumerate() {
            let (work, pool) = (&work, &pool);
            let spawned = std::thread::Builder::new()
                .name(format!("encode-{i}"))
                .spawn_scoped(scope, move || {
                    encoder_loop(Encoder::new(codec), work, hub, pool)
                });
            if let Err(e) = spawned {
                log::error!("cannot start encoder thread {i}: {e}");
            }
        }
        // H.264 from the source goes out as it came: keyframes come from it.
        let passthrough = source.stream_info().frame.format == PixelFormat::H264;
        let mut capture = Capture {
            source,
            hub,
            pool: &pool,
            failures: 0,
            meter: (Instant::now(), 0),
            told_no_keyframes: false,
        };
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            let captured = hub.captured.load(Ordering::Relaxed);
            if limits.frames.is_some_and(|n| captured >= n)
                || limits.duration.is_some_and(|d| started.elapsed() >= d)
            {
                hub.finish("the stream has ended (frame or time limit)", true);
                break Ok(());
            }
            if !capture.source.paces_itself() && !wait_for_demand(&work, hub) {
                continue; // checks `stop` and the limits, then waits again
            }
            let frame = match capture.next() {
                Captured::Frame(frame) => frame,
                Captured::Nothing => continue,
                Captured::Over(result) => break result,
            };
            match inline.as_mut() {
                Some(encoder) => {
                    if encoder.encode_and_publish(frame, hub, &pool) && passthrough {
                        capture.keyframe_from_source();
                    }
                }
                None => {
                    if let Some(stale) = work.put(frame) {
                        hub.encoder_dropped.fetch_add(1, Ordering::Relaxed);
                        pool.give(stale);
                    }
                }
            }
        };
        // Ends the encoders, which the scope then joins.
        work.close();
        result
    })
}
