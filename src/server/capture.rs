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
use crate::media::frame::{PixelFormat, StreamInfo};
use crate::media::slot::{Slot, Taken};
use crate::sources::FrameSource;

use super::adapt::TOP_MIN_SHARE;
use super::hub::{EncodedFrame, FramePool, Hub};
use super::ServeLimits;

/// Consecutive capture failures after which the source counts as failed.
const MAX_FAILURES: u32 = 10;

/// One encoder and how many frames it has made (each frame's `index`).
struct Encoder {
    codec: Box<dyn FrameCodec>,
    made: u64,
    /// The bitrate it aims at now (0 until it first looked), and when it
    /// last looked at what its viewers' links carry.
    aimed: u32,
    looked_us: u64,
}

/// How often the stream's encoder looks at what its viewers' links carry.
const AIM_EVERY_US: u64 = 1_000_000;

impl Encoder {
    fn new(codec: Box<dyn FrameCodec>) -> Encoder {
        Encoder {
            codec,
            made: 0,
            aimed: 0,
            looked_us: 0,
        }
    }

    /// Once a second, with a ladder of H.264 renditions: aims the encoder at
    /// the lowest bitrate its viewers' links carry (`adapt.rs`), within
    /// [`TOP_MIN_SHARE`] of its own, or back at its own. Changes under a
    /// tenth are not made.
    fn follow_viewers(&mut self, hub: &Hub) {
        let now = clock::now_us();
        if hub.ladder.len() < 2 || now.saturating_sub(self.looked_us) < AIM_EVERY_US {
            return;
        }
        self.looked_us = now;
        let nominal = hub.ladder[0].bits_per_second;
        if self.codec.target_bitrate().is_none() {
            return;
        }
        if self.aimed == 0 {
            self.aimed = nominal;
            hub.encoder_bps.store(nominal, Ordering::Relaxed);
        }
        let floor = (f64::from(nominal) * TOP_MIN_SHARE) as u32;
        let want = hub
            .main
            .lowest_top_cap()
            .map_or(nominal, |cap| cap.clamp(floor, nominal));
        let back = want == nominal && self.aimed != nominal;
        if want.abs_diff(self.aimed) <= self.aimed / 10 && !back {
            return;
        }
        if !self.codec.set_bitrate(want) {
            // Its engine cannot (v4l2m2m): viewers move down instead.
            log::info!(
                "the stream's encoder cannot change its rate while it runs: \
                 viewers whose links carry less get a smaller rendition"
            );
            hub.top_follows.store(false, Ordering::Relaxed);
            // (Never looks again.)
            self.looked_us = u64::MAX;
            return;
        }
        if back {
            log::info!(
                "the stream's encoder is back at {:.1} Mbit/s",
                f64::from(want) / 1e6
            );
        } else {
            log::info!(
                "the stream's encoder aims at {:.1} Mbit/s of its {:.1}: a viewer's link carries no more",
                f64::from(want) / 1e6,
                f64::from(nominal) / 1e6
            );
        }
        self.aimed = want;
        hub.encoder_bps.store(want, Ordering::Relaxed);
    }

    /// Whether this frame goes out unencoded: an inter-frame encoder (not a
    /// camera's H.264 passed through) whose output no one takes, while the
    /// main feed's only subscribers are transcoders (every native viewer on
    /// a smaller rendition, whose transcoder takes the captured pixels). Each
    /// rendition, the stream's too, is encoded only while used. The frame
    /// carries no payload and is no keyframe, so a subscriber that comes
    /// meanwhile waits for a keyframe, which it asks for (`send::Chain`).
    fn idle(&self, p: &mut EncodedFrame, hub: &Hub) -> bool {
        if !self.codec.inter_frame()
            || p.frame.info.format == PixelFormat::H264
            || !hub.main.only_transcoders()
        {
            return false;
        }
        p.encoded.clear();
        p.passthrough = false;
        p.keyframe = false;
        p.index = u64::MAX;
        p.rendition = 0;
        true
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
            if self.idle(p, hub) {
                hub.main.publish(&frame);
                pool.give(frame);
                return false;
            }
            if hub.keyframes.due(clock::now_us()) {
                self.codec.request_keyframe();
                asked = true;
            }
            self.follow_viewers(hub);
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
    /// `None` while closed for want of viewers (capture on demand).
    source: Option<Box<dyn FrameSource>>,
    hub: &'a Hub,
    pool: &'a FramePool,
    failures: u32,
    /// When the rate was last measured, and the frame count then.
    meter: (Instant, u64),
    /// The source said once that it cannot make a keyframe on request.
    told_no_keyframes: bool,
    /// Added to the source's sequence numbers: a source opened again
    /// numbers its frames from 0, and the stream's numbers must run on.
    seq_offset: u64,
    /// One past the last frame's number.
    next_seq: u64,
}

impl Capture<'_> {
    /// Asks the source for one frame, into a pooled frame.
    fn next(&mut self) -> Captured {
        let mut frame = self.pool.take();
        let Some(p) = Arc::get_mut(&mut frame) else {
            unreachable!("the pool hands out unshared frames")
        };
        let Some(source) = self.source.as_mut() else {
            self.pool.give(frame);
            return Captured::Nothing;
        };
        // CPU time, not wall time: pacing sleeps are not work.
        let t0 = clock::thread_cpu_ns();
        let result = source.next_frame(&mut p.frame);
        self.hub
            .source_ns
            .fetch_add(clock::thread_cpu_ns() - t0, Ordering::Relaxed);
        match result {
            Ok(()) => {
                p.frame.seq = p.frame.seq.saturating_add(self.seq_offset);
                self.next_seq = p.frame.seq.saturating_add(1);
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
        let asked = self.source.as_mut().is_some_and(|s| s.request_keyframe());
        if !asked && !self.told_no_keyframes {
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

/// Opens the source again, as it was opened first.
pub(crate) type Reopen = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, String> + Send>;

/// With no viewer and no local sink for this long, a source captured on
/// demand is closed.
pub(crate) const CLOSE_AFTER: Duration = Duration::from_secs(5);
/// How often a closed source looks for a viewer, and retries an open that
/// failed.
const DEMAND_POLL: Duration = Duration::from_millis(5);
const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// Capture on demand (`[serve] capture`): the source is closed when no one
/// has watched for [`CLOSE_AFTER`], and opened again for the next viewer,
/// who waits for the driver (the time is logged).
pub(crate) struct OnDemand {
    pub(crate) reopen: Reopen,
    /// The stream the codecs were begun for: a source that opens with
    /// another is refused.
    pub(crate) stream: StreamInfo,
    /// Whether the source paces itself (it may start closed).
    pub(crate) paces_itself: bool,
    /// Since when no one has watched.
    unwatched_since: Option<Instant>,
    /// When an open last failed.
    failed_at: Option<Instant>,
}

impl OnDemand {
    pub(crate) fn new(reopen: Reopen, source: &dyn FrameSource) -> OnDemand {
        OnDemand {
            reopen,
            stream: source.stream_info(),
            paces_itself: source.paces_itself(),
            unwatched_since: None,
            failed_at: None,
        }
    }

    fn watched(hub: &Hub) -> bool {
        hub.watchers() > 0
            || !hub
                .locals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// Closes or opens the source as its watchers say; `false` while it is
    /// closed (nothing to capture: the caller waits and asks again).
    fn tend(&mut self, capture: &mut Capture<'_>) -> bool {
        let hub = capture.hub;
        let watched = OnDemand::watched(hub);
        if capture.source.is_some() {
            if watched {
                self.unwatched_since = None;
            } else if self
                .unwatched_since
                .get_or_insert_with(Instant::now)
                .elapsed()
                >= CLOSE_AFTER
            {
                capture.source = None;
                hub.source_open.store(false, Ordering::Relaxed);
                log::info!(
                    "no one has watched for {} s: the source is closed until the next viewer",
                    CLOSE_AFTER.as_secs()
                );
            }
            return true;
        }
        if !watched || self.failed_at.is_some_and(|t| t.elapsed() < REOPEN_RETRY) {
            std::thread::sleep(DEMAND_POLL);
            return false;
        }
        let t0 = Instant::now();
        match (self.reopen)() {
            Ok(source) if source.stream_info() == self.stream => {
                log::info!(
                    "a viewer: the source opened in {:.0} ms",
                    t0.elapsed().as_secs_f64() * 1e3
                );
                capture.source = Some(source);
                capture.seq_offset = capture.next_seq;
                hub.source_open.store(true, Ordering::Relaxed);
                self.unwatched_since = None;
                self.failed_at = None;
                true
            }
            Ok(source) => {
                log::error!(
                    "the source opened with {:?}, not the stream's {:?}: closed again",
                    source.stream_info(),
                    self.stream
                );
                self.failed_at = Some(Instant::now());
                false
            }
            Err(e) => {
                log::error!("the source did not open again: {e}; retrying");
                self.failed_at = Some(Instant::now());
                false
            }
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
/// limits, or the end of the source. With `on_demand`, `source` may start
/// closed (`None`) and is closed and opened again as viewers come and go.
pub(crate) fn capture_loop(
    source: Option<Box<dyn FrameSource>>,
    mut on_demand: Option<OnDemand>,
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
        let passthrough = hub.stream.frame.format == PixelFormat::H264;
        let paces_itself = match (&source, &on_demand) {
            (Some(s), _) => s.paces_itself(),
            (None, Some(d)) => d.paces_itself,
            (None, None) => true,
        };
        let mut capture = Capture {
            source,
            hub,
            pool: &pool,
            failures: 0,
            meter: (Instant::now(), 0),
            told_no_keyframes: false,
            seq_offset: 0,
            next_seq: 0,
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
            if let Some(d) = on_demand.as_mut() {
                if !d.tend(&mut capture) {
                    continue; // closed: checks `stop`, then looks again
                }
            }
            if !paces_itself && !wait_for_demand(&work, hub) {
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

#[cfg(all(test, feature = "h264"))]
mod tests {
    use super::*;
    use crate::backend::Kind;
    use crate::config::{Config, ConfigText, Overrides};
    use crate::media::frame::{FrameInfo, StreamInfo};
    use crate::server::hub::{HubSetup, Subscriber, SubscriberKind};

    fn h264() -> Box<dyn FrameCodec> {
        let cfg = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
        (crate::registry::codec("h264").unwrap().open)(&cfg.backend(Kind::Codec, "h264")).unwrap()
    }

    fn taken(s: &Subscriber) -> Arc<EncodedFrame> {
        match s.slot.take(Duration::ZERO) {
            Taken::Value(f) => f,
            _ => panic!("no frame"),
        }
    }

    /// With only transcoders on the main feed (every viewer on a smaller
    /// rendition) the stream's encoder rests: they get the pixels without a
    /// payload; a viewer that comes back gets an encoded keyframe first.
    #[test]
    fn the_streams_encoder_rests_while_only_transcoders_take_its_feed() {
        let frame = FrameInfo::packed(PixelFormat::Rgb24, 64, 48).unwrap();
        let hub = Hub::new(HubSetup {
            payload_format: Some(PixelFormat::H264),
            max_viewers: 4,
            http: false,
            stream: StreamInfo { frame, fps: 30.0 },
            codec: "h264".into(),
            codec_settings: String::new(),
            max_payload: 1 << 20,
            name: "t".into(),
            source_name: "test".into(),
            auth: None,
            rtsp: None,
            ladder: Vec::new(),
            jpeg_ladder: Vec::new(),
        });
        let pool = FramePool::default();
        let mut encoder = Encoder::new(h264());
        let mut capture = |seq: u64| {
            let mut f = pool.take();
            let p = Arc::get_mut(&mut f).unwrap();
            p.frame.reset(frame);
            p.frame.data.fill(seq as u8 * 40);
            p.frame.seq = seq;
            encoder.encode_and_publish(f, &hub, &pool);
        };
        let transcoder = Subscriber::internal(SubscriberKind::Transcoder);
        let _t = hub.main.subscribe(&transcoder);
        let viewer = Subscriber::new("10.0.0.1:1".parse().unwrap(), SubscriberKind::Native);
        let v = hub.main.subscribe(&viewer);
        capture(1);
        assert!(!taken(&viewer).encoded.is_empty());
        drop(taken(&transcoder));
        drop(v);
        capture(2);
        let f = taken(&transcoder);
        assert!(f.encoded.is_empty() && !f.keyframe, "not encoded");
        assert_eq!(f.frame.data.len(), 64 * 48 * 3, "the pixels are there");
        drop(f);
        // A viewer comes back and asks for a keyframe (as `send::Chain` does).
        let _v = hub.main.subscribe(&viewer);
        hub.keyframes.ask();
        capture(3);
        let f = taken(&viewer);
        assert!(!f.encoded.is_empty(), "encoded again for a viewer");
        assert!(f.keyframe, "the keyframe it asked for");
    }
}
