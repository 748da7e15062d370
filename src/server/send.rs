//! The writing half of every network viewer, native or MJPEG: takes the newest
//! frame of the viewer's slot, waits for room in the socket, and writes it in
//! the viewer's framing, until the viewer goes or the stream ends. Runs on the
//! viewer's own connection thread.
//!
//! Unsent data in the kernel is latency: the socket may hold little
//! (`TCP_NOTSENT_LOWAT`), so when the link is slower than the stream, frames
//! wait in the newest-wins slot, and are dropped there, instead of queueing in
//! the socket.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::clock;
use crate::media::slot::Taken;
use crate::net::socket::{self, Ready};

use super::adapt::{keyframes_of, ViewerAdapt};
use super::hub::{EncodedFrame, Hub, Keyframes, StreamEnd, Subscriber, SubscriberKind};
use super::link::LinkEstimator;

/// A viewer that accepts no bytes for this long is disconnected.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A viewer is written its next frame only once less than its low-water mark
/// is left unsent in its socket, so what waits there is at most about two
/// frames: the mark is twice the stream's average frame, within these bounds.
/// Bytes stand for time here, so a fixed mark would not do: 128 KiB (the value
/// before) is one raw or LZ4 frame at 320x240 but seconds of a few hundred
/// kbit/s of H.264 on a weak link (the test
/// `a_viewer_behind_a_narrow_link_sees_fewer_frames_never_a_corrupt_one` holds
/// it). A mark that follows each viewer's measured rate is the adaptive-quality
/// issue's.
const MIN_NOTSENT_LOWAT: usize = 16 << 10;
const MAX_NOTSENT_LOWAT: usize = 128 << 10;

/// Sets a viewer's low-water mark from the sizes of the frames it is sent,
/// again only when it moves by more than a quarter.
struct LowWater {
    average: f64,
    set: usize,
}

impl LowWater {
    fn new(stream: &TcpStream) -> LowWater {
        let mut lw = LowWater {
            average: 0.0,
            set: 0,
        };
        lw.apply(stream, MAX_NOTSENT_LOWAT);
        lw
    }

    fn sent(&mut self, stream: &TcpStream, bytes: usize) {
        self.average = if self.average == 0.0 {
            bytes as f64
        } else {
            self.average * 0.9 + bytes as f64 * 0.1
        };
        let want = ((self.average * 2.0) as usize).clamp(MIN_NOTSENT_LOWAT, MAX_NOTSENT_LOWAT);
        if want.abs_diff(self.set) > self.set / 4 {
            self.apply(stream, want);
        }
    }

    fn apply(&mut self, stream: &TcpStream, bytes: usize) {
        match socket::set_notsent_lowat(stream, bytes) {
            Ok(()) => self.set = bytes,
            Err(e) => log::debug!("TCP_NOTSENT_LOWAT: {e}"),
        }
    }
}

/// How one kind of viewer frames what it is sent.
pub(crate) trait Framing<W> {
    /// Writes one frame; `gap`: frames were skipped before it. Returns the bytes.
    fn frame(&mut self, w: &mut W, frame: &EncodedFrame, gap: bool) -> std::io::Result<usize>;
    /// Called when no frame came for 0.1 s.
    fn idle(&mut self, _w: &mut W) -> std::io::Result<()> {
        Ok(())
    }
    /// The frames go over this TCP connection, so its `TCP_INFO` measures
    /// the viewer's link (not so for RTP over UDP, whose framing estimates
    /// the link from the client's receiver reports).
    fn over_this_connection(&self) -> bool {
        true
    }
    /// Says goodbye: `why` the stream ended, and whether for good.
    fn end(&mut self, w: &mut W, why: &str, final_: bool);
}

/// Why a viewer's sending stopped, for the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendEnd {
    #[error("{0}")]
    Ended(String),
    #[error("write failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("write timed out after {} s", WRITE_TIMEOUT.as_secs())]
    Stalled,
    #[error("poll failed: {0}")]
    Poll(#[source] std::io::Error),
    /// Its connection failed under the reader (`Connection timed out`: it
    /// stopped acknowledging, `accept.rs` DEAD_PEER), which the writer then
    /// only sees as a broken pipe.
    #[error("its connection failed: {0}")]
    Lost(#[source] std::io::Error),
}

/// A subscriber asks for a keyframe again at most this often while it waits.
const REASK: Duration = Duration::from_millis(500);

/// Where a viewer is in the chain of an inter-frame stream: the frame it was
/// sent last, and whether it waits for a keyframe (it just joined, or missed
/// a frame, or its decoder asked). Frames that depend on one it did not get
/// are not sent: they would decode to a corrupt picture. Every frame of an
/// intra-only stream is a keyframe, so this never holds one back.
pub(crate) struct Chain {
    last: Option<u64>,
    waiting: bool,
    /// When it last asked, and how many keyframes the encoder had made then.
    asked: Option<(Instant, u64)>,
}

impl Chain {
    pub(crate) fn new() -> Chain {
        Chain {
            last: None,
            waiting: true,
            asked: None,
        }
    }

    /// Whether `frame` can be sent now. A frame that cannot is dropped, and a
    /// keyframe asked for (not more often than every [`REASK`]).
    pub(crate) fn admits(
        &mut self,
        frame: &EncodedFrame,
        keyframes: &Keyframes,
        now: Instant,
    ) -> bool {
        if frame.keyframe {
            self.waiting = false;
            return true;
        }
        if !self.waiting && self.last.is_some_and(|last| frame.index != last + 1) {
            // A new break: ask now (the encoder coalesces requests); the
            // re-asking limit is for a wait that goes on.
            self.waiting = true;
            self.asked = None;
        }
        if !self.waiting {
            return true;
        }
        // Ask again when a keyframe made since the last request did not reach
        // it, or the request seems lost.
        let made = keyframes.made_count();
        if self
            .asked
            .is_none_or(|(t, then)| made != then || now.duration_since(t) >= REASK)
        {
            keyframes.ask();
            self.asked = Some((now, made));
        }
        false
    }

    /// The viewer's decoder lost the chain: wait for a keyframe, and ask.
    pub(crate) fn lost(&mut self, keyframes: &Keyframes, now: Instant) {
        self.waiting = true;
        self.asked = Some((now, keyframes.made_count()));
        keyframes.ask();
    }

    pub(crate) fn sent(&mut self, frame: &EncodedFrame) {
        self.last = Some(frame.index);
    }
}

/// Waits until the socket takes more (its unsent data is under the low-water
/// mark). Meanwhile a newer keyframe replaces `frame`, which counts as dropped
/// for this viewer; a newer frame that is not a keyframe is dropped instead
/// (after `frame` it would not decode, and in its place it would need the
/// chain that `frame` continues). Gives up after the write timeout.
fn wait_writable(
    stream: &TcpStream,
    viewer: &Subscriber,
    frame: &mut Arc<EncodedFrame>,
    stop: &AtomicBool,
    link: &mut Link<'_>,
) -> Result<(), SendEnd> {
    let started = Instant::now();
    loop {
        // Waiting here is when the link, not the stream, is the limit: the
        // samples that measure it.
        link.sample(stream, viewer);
        if socket::wait(stream, Ready::Write, Duration::from_millis(20)).map_err(SendEnd::Poll)? {
            return Ok(()); // writable, or an error the write will report
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if started.elapsed() >= WRITE_TIMEOUT {
            return Err(SendEnd::Stalled);
        }
        if let Taken::Value(newer) = viewer.slot.take(Duration::ZERO) {
            // A frame of the rendition it just left (published as it moved)
            // is not a newer picture of this one: passed over, as the send
            // loop does.
            if newer.rendition != viewer.rendition.load(Ordering::SeqCst) {
                continue;
            }
            viewer.dropped();
            if newer.keyframe {
                *frame = newer;
            }
        }
    }
}

/// What the send loop knows of the viewer's link, and the rendition choice
/// that follows it (native viewers of a stream with renditions).
struct Link<'h> {
    estimator: LinkEstimator,
    adapt: Option<ViewerAdapt<'h>>,
    /// The connection carries the frames (else nothing to sample here).
    sampled: bool,
}

impl Link<'_> {
    /// Samples the viewer's connection when due, publishes its link's
    /// estimate in its counters (`/stats`, `/metrics`), and lets the
    /// rendition choice see it.
    fn sample(&mut self, stream: &TcpStream, viewer: &Subscriber) {
        let now = clock::now_us();
        let link = &mut self.estimator;
        if !self.sampled || !link.due(now) {
            return;
        }
        let c = &viewer.counters;
        match socket::tcp_info(stream) {
            Ok(info) => {
                link.add(now, &info);
                c.rtt_us.store(info.rtt_us.into(), Ordering::Relaxed);
            }
            Err(e) => log::debug!("TCP_INFO for {}: {e}", viewer.peer),
        }
        let estimate = link.estimate(now);
        c.link_bps
            .store(estimate.map_or(0, |e| e.bits_per_second), Ordering::Relaxed);
        c.link_measured
            .store(estimate.is_some_and(|e| e.measured), Ordering::Relaxed);
        if let Some(adapt) = self.adapt.as_mut() {
            adapt.sampled(now, link.goodput(now), None);
        }
    }
}

/// Sends the newest frame of the viewer's slot until the viewer goes away or
/// the stream ends (then `framing` says goodbye); returns why it stopped.
pub(crate) fn send_loop<W>(
    stream: &TcpStream,
    mut w: W,
    viewer: &Arc<Subscriber>,
    hub: &Hub,
    stop: &AtomicBool,
    framing: &mut impl Framing<W>,
) -> SendEnd {
    let mut last_seq: Option<u64> = None;
    let mut chain = Chain::new();
    let mut low_water = LowWater::new(stream);
    let mut link = Link {
        estimator: LinkEstimator::new(),
        adapt: ViewerAdapt::new(hub, viewer, clock::now_us()),
        sampled: framing.over_this_connection(),
    };
    loop {
        // The encoder of the rendition it takes makes its keyframes.
        let keyframes = keyframes_of(hub, viewer, viewer.rendition.load(Ordering::SeqCst));
        if viewer
            .feedback
            .wants_keyframe
            .swap(false, Ordering::Relaxed)
        {
            chain.lost(keyframes, Instant::now());
        }
        match viewer.slot.take(Duration::from_millis(100)) {
            Taken::Value(mut frame) => {
                if frame.rendition != viewer.rendition.load(Ordering::SeqCst) {
                    // Of the rendition it just moved away from.
                    continue;
                }
                if !chain.admits(&frame, keyframes, Instant::now()) {
                    viewer.dropped();
                    continue;
                }
                if let Err(why) = wait_writable(stream, viewer, &mut frame, stop, &mut link) {
                    return why;
                }
                let gap = last_seq.is_some_and(|s| frame.frame.seq != s + 1);
                match framing.frame(&mut w, &frame, gap) {
                    Ok(bytes) => {
                        viewer.sent(&frame, bytes);
                        low_water.sent(stream, bytes);
                        link.sample(stream, viewer);
                    }
                    Err(e) => return SendEnd::Write(e),
                }
                chain.sent(&frame);
                last_seq = Some(frame.frame.seq);
            }
            Taken::Timeout if !stop.load(Ordering::Relaxed) => {
                link.sample(stream, viewer);
                if let Err(e) = framing.idle(&mut w) {
                    return SendEnd::Write(e);
                }
            }
            Taken::Timeout | Taken::Closed => {
                let end = hub.end().unwrap_or_else(|| StreamEnd {
                    why: "the server is shutting down".into(),
                    final_: false,
                });
                framing.end(&mut w, &end.why, end.final_);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return SendEnd::Ended(end.why);
            }
        }
    }
}

/// One line when a viewer leaves: why, and what it got.
pub(crate) fn log_departure(viewer: &Subscriber, why: &SendEnd) {
    let c = &viewer.counters;
    log::info!(
        "{} viewer {} left: {why}; sent {} frames ({:.1} MB), dropped {}",
        match viewer.kind {
            SubscriberKind::Http => "HTTP",
            SubscriberKind::Rtsp => "RTSP",
            _ => "native",
        },
        viewer.peer,
        c.sent.load(Ordering::Relaxed),
        c.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        c.dropped.load(Ordering::Relaxed)
    );
}

/// The send loop over real TCP with the real H.264 encoder and decoder: a
/// viewer whose slot loses one frame in three is never sent a frame that
/// depends on a lost one, so everything it gets decodes to the right picture.
#[cfg(all(test, feature = "h264"))]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::codecs::FrameCodec;
    use crate::config::CaptureConfig;
    use crate::media::frame::{Frame, PixelFormat, StreamInfo};
    use crate::net::protocol::{self, Packet, PacketHeader, FLAG_KEYFRAME};
    use crate::server::hub::{FramePool, HubSetup};
    use crate::sources::test_pattern::{read_stamp, TestPatternSource};
    use crate::sources::FrameSource;

    /// Frames as the native framing sends them, less the timing packets.
    struct Plain;

    impl<W: Write> Framing<W> for Plain {
        fn frame(&mut self, w: &mut W, frame: &EncodedFrame, _gap: bool) -> std::io::Result<usize> {
            let payload = frame.payload();
            let header = PacketHeader {
                kind: protocol::PACKET_FRAME,
                flags: if frame.keyframe { FLAG_KEYFRAME } else { 0 },
                len: payload.len() as u32,
                seq: frame.frame.seq,
                capture_us: frame.frame.capture_us,
            };
            protocol::write_packet(w, &header, payload)?;
            Ok(payload.len())
        }
        fn end(&mut self, w: &mut W, why: &str, final_: bool) {
            let _ = protocol::write_end(w, why, final_);
        }
    }

    fn codec() -> Box<dyn FrameCodec> {
        let cfg = crate::config::Config::parse(
            crate::backend::table::ConfigText::embedded(),
            &crate::config::Overrides::default(),
        )
        .unwrap();
        let table = cfg.backend(crate::backend::Kind::Codec, "h264");
        (crate::registry::codec("h264").unwrap().open)(&table).unwrap()
    }

    #[test]
    fn a_lossy_slot_never_breaks_the_chain() {
        let capture = CaptureConfig {
            width: 160,
            height: 120,
            fps: 100.0,
            format: PixelFormat::I420,
        };
        let mut pattern = TestPatternSource::new(&capture, 4).unwrap();
        let stream = StreamInfo {
            frame: pattern.stream_info().frame,
            fps: 100.0,
        };
        let hub = Hub::new(HubSetup {
            payload_format: None,
            max_viewers: 1,
            http: false,
            stream,
            codec: "h264".into(),
            codec_settings: String::new(),
            max_payload: 1 << 20,
            name: "t".into(),
            source_name: "test-pattern".into(),
            auth: None,
            rtsp: None,
            ladder: Vec::new(),
            jpeg_ladder: Vec::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let viewer = Subscriber::new(client.local_addr().unwrap(), SubscriberKind::Native);
        let subscription = hub.main.subscribe(&viewer);
        let stop = AtomicBool::new(false);
        let pool = FramePool::default();
        let mut encoder = codec();
        encoder.begin(&stream).unwrap();
        let received = std::thread::scope(|scope| {
            let sender = scope.spawn(|| {
                send_loop(&server, &server, &viewer, &hub, &stop, &mut Plain);
            });
            let reader = scope.spawn(|| {
                let mut decoder = codec();
                let (mut r, mut payload, mut got) = (&client, Vec::new(), Vec::new());
                while let Ok(Packet::Frame(h)) =
                    protocol::read_packet(&mut r, 1 << 20, &mut payload)
                {
                    let mut f = Frame::empty();
                    f.info = stream.frame;
                    decoder
                        .decode(&mut payload, &mut f)
                        .unwrap_or_else(|e| panic!("frame {} sent after a gap: {e}", h.seq));
                    let stamp = read_stamp(&f).expect("a clean picture");
                    assert_eq!(stamp.seq, h.seq);
                    got.push((h.seq, h.flags & FLAG_KEYFRAME != 0));
                }
                got
            });
            for i in 0..150u64 {
                let mut shared = pool.take();
                let p = Arc::get_mut(&mut shared).unwrap();
                pattern.frame_at(i, i * 10_000, &mut p.frame);
                if hub.keyframes.due(crate::media::clock::now_us()) {
                    encoder.request_keyframe();
                }
                let e = encoder.encode(&p.frame, &mut p.encoded).unwrap();
                if e.keyframe {
                    hub.keyframes.made();
                }
                p.keyframe = e.keyframe;
                p.index = i;
                p.passthrough = false;
                // The slot loses every third frame.
                if i % 3 != 2 {
                    hub.main.publish(&shared);
                }
                if e.keyframe {
                    hub.keyframes.published();
                }
                pool.give(shared);
                // A camera's pace: the sender takes each frame before the next.
                std::thread::sleep(Duration::from_millis(10));
            }
            hub.finish("done", true);
            sender.join().unwrap();
            reader.join().unwrap()
        });
        drop(subscription);
        let keys = received.iter().filter(|(_, k)| *k).count();
        // At most one keyframe on request per 100 ms, and every third frame
        // lost: about one picture in ten gets through, all of them clean.
        assert!(received.len() >= 8, "{received:?}");
        assert!(keys >= 5, "keyframes made on request: {received:?}");
        assert!(
            hub.keyframes
                .forced
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 5
        );
        for w in received.windows(2) {
            assert!(
                w[1].1 || w[1].0 == w[0].0 + 1,
                "a delta after a gap: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
}
