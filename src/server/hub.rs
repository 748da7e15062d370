//! What the server's threads share: the encoded frames, the fan-outs that hand
//! each frame to every subscriber's newest-wins slot, and the hub that counts
//! viewers and knows when the stream is over. No threads of its own; every
//! thread of `serve` touches it (capture and the encoders publish, connection
//! threads and local sinks subscribe, `/stats` reads).
//!
//! Bookkeeping is by guard: a [`Subscription`] leaves its fan-out when dropped,
//! an [`Admission`] also gives back its viewer place, and a [`Handshaking`]
//! gives back its handshake place. A forgotten decrement cannot happen.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::media::frame::{Frame, PixelFormat, StreamInfo};
use crate::media::slot::Slot;
use crate::net::protocol::{Report, Status};
use crate::net::whep::SessionId;
use crate::secure::ServerAuth;

/// Connections still in their handshake beyond which new ones are closed at once:
/// a flood of idle connections cannot pile up threads.
pub(crate) const MAX_HANDSHAKING: usize = 64;

/// One encoded frame, shared by every subscriber that sends it. Recycled through
/// a [`FramePool`]: no allocation per frame once the pool has grown.
pub(crate) struct EncodedFrame {
    /// The captured frame (its pixels are the payload when `passthrough`).
    pub(crate) frame: Frame,
    pub(crate) encoded: Vec<u8>,
    pub(crate) passthrough: bool,
    /// The payload decodes without any earlier frame's.
    pub(crate) keyframe: bool,
    /// Its place in its encoder's output: consecutive, so a subscriber of an
    /// inter-frame stream sees when it missed one.
    pub(crate) index: u64,
    /// When the encoder finished with it (server clock, µs).
    pub(crate) encoded_us: u64,
    /// The rendition it belongs to (`adapt.rs`; 0: the stream's own).
    pub(crate) rendition: u8,
}

impl EncodedFrame {
    pub(crate) fn payload(&self) -> &[u8] {
        if self.passthrough {
            &self.frame.data
        } else {
            &self.encoded
        }
    }
}

/// Recycled frames, shared by capture and the encoders (or by the JPEG
/// transcoder). A frame goes back here after it is published; it is reused once
/// no subscriber holds it any more, so the pool stops growing at
/// (subscribers × 2 + encoders + 1) frames.
#[derive(Default)]
pub(crate) struct FramePool(Mutex<Vec<Arc<EncodedFrame>>>);

impl FramePool {
    /// A frame nobody else holds (`Arc::get_mut` succeeds on it).
    pub(crate) fn take(&self) -> Arc<EncodedFrame> {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match pool.iter_mut().position(|p| Arc::get_mut(p).is_some()) {
            Some(i) => pool.swap_remove(i),
            None => Arc::new(EncodedFrame {
                frame: Frame::empty(),
                encoded: Vec::new(),
                passthrough: false,
                keyframe: true,
                index: 0,
                encoded_us: 0,
                rendition: 0,
            }),
        }
    }

    pub(crate) fn give(&self, frame: Arc<EncodedFrame>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(frame);
    }
}

/// Who a subscriber of a fan-out is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberKind {
    /// `livestream view`, the wire protocol.
    Native,
    /// A browser or media player: MJPEG over HTTP.
    Http,
    /// An RTSP client (VLC, ffmpeg, an NVR): H.264 in RTP.
    Rtsp,
    /// A browser over WebRTC (WHEP), sent by the `webrtc` thread.
    Webrtc,
    /// The server's own JPEG transcoder (not a viewer; not in the stats).
    Transcoder,
    /// A sink on the server itself (in the stats as a local sink).
    Local,
}

/// Counters of one subscriber.
#[derive(Debug, Default)]
pub struct SubscriberCounters {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub bytes: AtomicU64,
    /// Capture to sent (the write returned), smoothed, µs.
    pub latency_us: AtomicU64,
    /// What its link carries, bit/s (0: not known yet), and whether that was
    /// measured or is a lower bound (`server/link.rs`); TCP viewers.
    pub link_bps: AtomicU64,
    pub link_measured: AtomicBool,
    /// Its connection's smoothed round trip, µs (0: not known).
    pub rtt_us: AtomicU64,
    /// Times it moved to another rendition.
    pub switches: AtomicU64,
}

/// What a native viewer sent back: pings waiting for their pong, its last
/// latency report, and whether it asked for a keyframe.
#[derive(Debug, Default)]
pub(crate) struct Feedback {
    /// (id, t1, t2): ping `id` sent at `t1` (viewer clock), read here at `t2`.
    pub(crate) pings: Mutex<std::collections::VecDeque<(u64, u64, u64)>>,
    pub(crate) report: Mutex<Option<Report>>,
    /// An RTSP client's latest RTCP reception report.
    pub(crate) rtcp: Mutex<Option<crate::net::rtp::ReceptionReport>>,
    /// A WebRTC viewer's latest figures from str0m (once a second, by the
    /// `webrtc` thread).
    pub(crate) webrtc: Mutex<Option<crate::server::stats::WebrtcStats>>,
    /// Its decoder lost the chain: send it nothing until a keyframe.
    pub(crate) wants_keyframe: AtomicBool,
}

/// One subscriber of a fan-out: a viewer, a local sink or the transcoder.
pub(crate) struct Subscriber {
    pub(crate) peer: SocketAddr,
    pub(crate) kind: SubscriberKind,
    pub(crate) slot: Slot<Arc<EncodedFrame>>,
    pub(crate) counters: SubscriberCounters,
    pub(crate) feedback: Feedback,
    pub(crate) connected: Instant,
    /// It takes the payload of an inter-frame stream (a native viewer, a
    /// local recording of H.264): a keyframe waiting in its slot is not
    /// replaced by a delta that depends on it.
    pub(crate) chained: AtomicBool,
    /// Called after each frame offered to its slot, for a taker that waits on
    /// more than the slot (the `webrtc` thread also polls its socket).
    notify: Option<Notify>,
    /// The rendition whose frames it takes (`adapt.rs`; 0: the stream's
    /// own). Set by the fan-out that moves it over at a keyframe.
    pub(crate) rendition: AtomicU8,
    /// It said it takes smaller renditions (a native viewer's hello).
    pub(crate) takes_renditions: AtomicBool,
    /// While it takes the stream: the bitrate its link carries when that is
    /// less than the stream's, bit/s (0: no less). The stream's encoder
    /// aims at the lowest of its viewers' (`adapt.rs`, `capture.rs`).
    pub(crate) top_cap_bps: AtomicU32,
}

/// What [`Fanout::publish`] calls to wake a subscriber's taker: cheap, never
/// blocking (it runs under the fan-out's lock).
pub(crate) type Notify = Arc<dyn Fn() + Send + Sync>;

impl Subscriber {
    pub(crate) fn new(peer: SocketAddr, kind: SubscriberKind) -> Arc<Subscriber> {
        Subscriber::build(peer, kind, None)
    }

    /// A subscriber whose taker is woken by `notify` after each frame offered.
    // Only the `webrtc` thread takes frames that way.
    #[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
    pub(crate) fn notified(
        peer: SocketAddr,
        kind: SubscriberKind,
        notify: Notify,
    ) -> Arc<Subscriber> {
        Subscriber::build(peer, kind, Some(notify))
    }

    fn build(peer: SocketAddr, kind: SubscriberKind, notify: Option<Notify>) -> Arc<Subscriber> {
        Arc::new(Subscriber {
            peer,
            kind,
            slot: Slot::default(),
            counters: SubscriberCounters::default(),
            feedback: Feedback::default(),
            connected: Instant::now(),
            chained: AtomicBool::new(matches!(
                kind,
                SubscriberKind::Native | SubscriberKind::Rtsp | SubscriberKind::Webrtc
            )),
            notify,
            rendition: AtomicU8::new(0),
            takes_renditions: AtomicBool::new(false),
            top_cap_bps: AtomicU32::new(0),
        })
    }

    /// A subscriber inside the server (the transcoder, a local sink).
    pub(crate) fn internal(kind: SubscriberKind) -> Arc<Subscriber> {
        Subscriber::new(SocketAddr::from(([0, 0, 0, 0], 0)), kind)
    }

    /// Counts one frame written, and how late it was.
    pub(crate) fn sent(&self, frame: &EncodedFrame, bytes: usize) {
        let c = &self.counters;
        c.sent.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let late = crate::media::clock::now_us().saturating_sub(frame.frame.capture_us);
        let old = c.latency_us.load(Ordering::Relaxed);
        let smoothed = if old == 0 { late } else { (old * 7 + late) / 8 };
        c.latency_us.store(smoothed, Ordering::Relaxed);
    }

    /// Counts one frame this subscriber missed.
    pub(crate) fn dropped(&self) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// A subscriber's place in a fan-out.
pub(crate) struct Tap {
    pub(crate) subscriber: Arc<Subscriber>,
    /// It is moving to this fan-out's rendition: it takes nothing from here
    /// until a keyframe, which moves it over (and then it takes every frame).
    pub(crate) pending: bool,
}

/// A set of subscribers fed the same frames.
#[derive(Default)]
pub(crate) struct Fanout {
    subscribers: Mutex<Vec<Tap>>,
    /// The rendition whose frames it carries (0: the stream's own, and every
    /// fan-out that is not a rendition's).
    rendition: u8,
    /// One past the newest published sequence number (under the subscribers lock).
    next_seq: AtomicU64,
    /// Frames not published because a newer one went out first.
    pub(crate) late: AtomicU64,
}

/// A place in a fan-out; dropping it leaves.
pub(crate) struct Subscription<'a> {
    fanout: &'a Fanout,
    subscriber: Arc<Subscriber>,
}

impl Subscription<'_> {
    pub(crate) fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.fanout.leave(&self.subscriber);
    }
}

impl Fanout {
    /// The fan-out of rendition `index` of the ladder.
    pub(crate) fn for_rendition(index: u8) -> Fanout {
        Fanout {
            rendition: index,
            ..Fanout::default()
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Tap>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one way onto a fan-out, for every kind of subscriber: from now on
    /// every published frame goes into its slot, until the guard is dropped.
    pub(crate) fn subscribe(&self, subscriber: &Arc<Subscriber>) -> Subscription<'_> {
        self.lock().push(Tap {
            subscriber: subscriber.clone(),
            pending: false,
        });
        Subscription {
            fanout: self,
            subscriber: subscriber.clone(),
        }
    }

    /// Starts moving `subscriber` to this fan-out's rendition: its next
    /// keyframe moves it over (see [`Fanout::publish`]). Until then the
    /// subscriber takes its current rendition's frames.
    pub(crate) fn subscribe_pending(&self, subscriber: &Arc<Subscriber>) {
        let mut taps = self.lock();
        // A place it left (moved away from, not yet dropped) goes first.
        taps.retain(|t| !Arc::ptr_eq(&t.subscriber, subscriber));
        taps.push(Tap {
            subscriber: subscriber.clone(),
            pending: true,
        });
    }

    /// Gives up a move to this fan-out that has not happened yet.
    pub(crate) fn cancel_pending(&self, subscriber: &Arc<Subscriber>) {
        self.lock()
            .retain(|t| !(t.pending && Arc::ptr_eq(&t.subscriber, subscriber)));
    }

    /// Takes `subscriber` off this fan-out, pending or not.
    pub(crate) fn leave(&self, subscriber: &Arc<Subscriber>) {
        self.lock()
            .retain(|t| !Arc::ptr_eq(&t.subscriber, subscriber));
    }

    /// Hands `frame` to every subscriber, unless a newer frame went out already
    /// (parallel encoders can finish out of order). A keyframe still waiting in
    /// a native viewer's slot stays there, and a newer frame that depends on it
    /// is the one dropped: the viewer needs that keyframe to go on.
    ///
    /// A subscriber moving here (pending) takes nothing until a keyframe,
    /// which moves it over: from that frame on it takes this rendition's
    /// frames, and the fan-out of its old one drops it at its next frame. A
    /// frame of another rendition still waiting in its slot is replaced by
    /// the keyframe; a frame of the old rendition never replaces one of the
    /// new.
    pub(crate) fn publish(&self, frame: &Arc<EncodedFrame>) {
        let mut taps = self.lock();
        let seq = frame.frame.seq;
        if self.next_seq.load(Ordering::Relaxed) > seq {
            self.late.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.next_seq.store(seq + 1, Ordering::Relaxed);
        let here = self.rendition;
        taps.retain_mut(|tap| {
            let s = &tap.subscriber;
            if tap.pending {
                if !frame.keyframe {
                    return true;
                }
                tap.pending = false;
                s.rendition.store(here, Ordering::SeqCst);
                s.counters.switches.fetch_add(1, Ordering::Relaxed);
                let _ = s.slot.put(frame.clone());
            } else {
                if s.rendition.load(Ordering::SeqCst) != here {
                    // It moved to another rendition's fan-out.
                    return false;
                }
                // A viewer decodes the payload, a local recording may keep
                // it; the transcoder and other local sinks take the captured
                // pixels, any frame of which will do.
                let chained = s.chained.load(Ordering::Relaxed);
                let keep = |waiting: &Arc<EncodedFrame>| {
                    waiting.rendition != here || (chained && waiting.keyframe && !frame.keyframe)
                };
                if s.slot.offer(frame.clone(), keep).is_some() {
                    s.dropped();
                }
            }
            if let Some(notify) = &s.notify {
                notify();
            }
            true
        });
    }

    /// Some subscriber has taken the last frame it was given: a new one would
    /// not just replace one nobody took.
    pub(crate) fn someone_ready(&self) -> bool {
        self.lock().iter().any(|t| t.subscriber.slot.is_empty())
    }

    /// No one but the transcoder is subscribed (a viewer moving here counts:
    /// it waits for this fan-out's keyframe).
    pub(crate) fn has_no_viewers(&self) -> bool {
        self.lock()
            .iter()
            .all(|t| t.subscriber.kind == SubscriberKind::Transcoder)
    }

    /// Someone takes this fan-out's frames, and every one of them is a
    /// transcoder (which takes the captured pixels, not the payload).
    pub(crate) fn only_transcoders(&self) -> bool {
        let taps = self.lock();
        !taps.is_empty()
            && taps
                .iter()
                .all(|t| t.subscriber.kind == SubscriberKind::Transcoder)
    }

    /// The subscribers that take this fan-out's frames now (not those still
    /// moving here, nor those that moved away).
    pub(crate) fn takers(&self) -> Vec<Arc<Subscriber>> {
        self.lock()
            .iter()
            .filter(|t| {
                !t.pending && t.subscriber.rendition.load(Ordering::Relaxed) == self.rendition
            })
            .map(|t| t.subscriber.clone())
            .collect()
    }

    /// The lowest bitrate a taker's link carries, of those whose links carry
    /// less than the stream's (`Subscriber::top_cap_bps`); no allocation.
    pub(crate) fn lowest_top_cap(&self) -> Option<u32> {
        self.lock()
            .iter()
            .filter(|t| {
                !t.pending && t.subscriber.rendition.load(Ordering::Relaxed) == self.rendition
            })
            .map(|t| t.subscriber.top_cap_bps.load(Ordering::Relaxed))
            .filter(|&bps| bps > 0)
            .min()
    }

    pub(crate) fn close_all(&self) {
        for t in self.lock().iter() {
            t.subscriber.slot.close();
        }
    }
}

/// No keyframe is made on request sooner than this after the last one: 20
/// viewers joining or losing a frame within this time cost at most two.
pub(crate) const MIN_FORCED_KEYFRAME_GAP_US: u64 = 100_000;

/// Requests for a keyframe from subscribers of an inter-frame stream that
/// joined or lost a frame, coalesced: however many ask, the encoder makes one
/// keyframe, and makes them on request at most every
/// [`MIN_FORCED_KEYFRAME_GAP_US`]. Any thread asks; the encoding thread answers.
#[derive(Debug, Default)]
pub(crate) struct Keyframes {
    wanted: AtomicBool,
    /// When the encoder last made one on request (server clock, µs).
    last_forced_us: Mutex<Option<u64>>,
    /// Requests, and keyframes made for them.
    pub(crate) asked: AtomicU64,
    pub(crate) forced: AtomicU64,
    /// Keyframes made, periodic ones included.
    made: AtomicU64,
}

impl Keyframes {
    /// Asks for a keyframe soon.
    pub(crate) fn ask(&self) {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.wanted.store(true, Ordering::SeqCst);
    }

    /// For the encoding thread before each frame, at `now_us`: whether to make
    /// this frame a keyframe. Every request made before this call is answered
    /// by it.
    pub(crate) fn due(&self, now_us: u64) -> bool {
        if !self.wanted.load(Ordering::SeqCst) {
            return false;
        }
        let mut last = self
            .last_forced_us
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| now_us < t.saturating_add(MIN_FORCED_KEYFRAME_GAP_US)) {
            return false;
        }
        if !self.wanted.swap(false, Ordering::SeqCst) {
            return false;
        }
        *last = Some(now_us);
        self.forced.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// For the encoding thread: it made a keyframe (on request or by its
    /// period), which is about to be published; requests so far are answered.
    pub(crate) fn made(&self) {
        self.wanted.store(false, Ordering::SeqCst);
    }

    /// For the encoding thread: the keyframe it made is in the subscribers' slots.
    pub(crate) fn published(&self) {
        self.made.fetch_add(1, Ordering::SeqCst);
    }

    /// Keyframes published so far: a subscriber still waiting after this grew
    /// missed one.
    pub(crate) fn made_count(&self) -> u64 {
        self.made.load(Ordering::SeqCst)
    }
}

/// A smaller rendition of the stream: its fan-out, and its encoder's
/// keyframe requests.
pub(crate) struct Rendition {
    pub(crate) fanout: Fanout,
    pub(crate) keyframes: Keyframes,
    /// Pictures its transcoder made, and the CPU time it spent scaling and
    /// encoding them, ns.
    pub(crate) made: AtomicU64,
    pub(crate) encode_ns: AtomicU64,
}

impl Rendition {
    /// One for each rung of `ladder` below the first.
    fn below(ladder: &[super::adapt::Rung]) -> Vec<Rendition> {
        (1..ladder.len())
            .map(|i| Rendition {
                fanout: Fanout::for_rendition(i as u8),
                keyframes: Keyframes::default(),
                made: AtomicU64::new(0),
                encode_ns: AtomicU64::new(0),
            })
            .collect()
    }
}

/// One sink on the server itself (`local_sinks.rs`), as the stats see it.
pub(crate) struct LocalSink {
    pub(crate) name: String,
    pub(crate) viewer: Arc<Subscriber>,
    pub(crate) presented: AtomicU64,
    /// Why it stopped, when it failed.
    pub(crate) failed: Mutex<Option<String>>,
    pub(crate) running: AtomicBool,
}

/// Where WHEP requests go (`server/whep.rs` asks, the `webrtc` thread's side
/// answers): the one way into WebRTC sessions from HTTP.
pub(crate) trait WhepEndpoint: Send + Sync {
    /// Answers a browser's SDP offer (already checked to be text that starts
    /// like SDP): the new session's id and the SDP answer.
    fn offer(&self, sdp: &str, peer: SocketAddr) -> Result<(SessionId, String), WhepRefusal>;
    /// Ends a session (a 404 refusal when there is no such session).
    fn delete(&self, id: SessionId) -> Result<(), WhepRefusal>;
    /// Keeps the latency its page measured, for `/stats` (a 404 refusal when
    /// there is no such session).
    fn latency(&self, id: SessionId, report: Report) -> Result<(), WhepRefusal>;
}

/// Why an offer got no session, as an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WhepRefusal {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
    pub(crate) detail: String,
}

/// Whether this server answers WHEP, and if not, why (said with 501).
pub(crate) enum Whep {
    // Made only by `webrtc/` (and tests).
    #[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
    Ready(Box<dyn WhepEndpoint>),
    Off(String),
}

/// How the stream ended: the message viewers get, and whether it is final (the
/// source is done: viewers should not reconnect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamEnd {
    pub(crate) why: String,
    pub(crate) final_: bool,
}

/// Why a viewer was not admitted, in the status the wire protocol gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) status: Status,
    pub(crate) why: String,
}

/// What capture, the encoders and the connections share.
pub(crate) struct Hub {
    /// Subscribers of the encoded stream: native viewers, local sinks, the
    /// transcoder, and HTTP viewers when the payload is JPEG already.
    pub(crate) main: Fanout,
    /// HTTP viewers fed by the JPEG transcoder, when the payload is not JPEG.
    pub(crate) jpeg: Fanout,
    /// WebRTC viewers fed by the `webrtc-h264` transcoder, when the payload is
    /// not H.264, and the keyframe requests for that encoder.
    pub(crate) h264: Fanout,
    pub(crate) h264_keyframes: Keyframes,
    /// The ladder (`adapt.rs`): rung 0 is the main feed; the others are the
    /// `rendition-N` transcoders', each with its fan-out and keyframe
    /// requests. One rung when the stream does not adapt.
    pub(crate) ladder: Vec<super::adapt::Rung>,
    pub(crate) renditions: Vec<Rendition>,
    /// The same for MJPEG browsers: rung 0 is [`Hub::http_feed`]; the others
    /// are the `mjpeg-N` transcoders' (smaller pictures, lower quality).
    pub(crate) jpeg_ladder: Vec<super::adapt::Rung>,
    pub(crate) jpeg_renditions: Vec<Rendition>,
    /// The encoded payload's format when each is a whole picture in a
    /// standard format: JPEG a browser can show as it is, or H.264.
    pub(crate) payload_format: Option<PixelFormat>,
    /// Requests for a keyframe of the main feed.
    pub(crate) keyframes: Keyframes,
    /// What the stream's encoder aims at now, bit/s (0: not known, or no
    /// rate control): below its own bitrate while a viewer's link carries
    /// less (`adapt.rs`).
    pub(crate) encoder_bps: AtomicU32,
    /// The stream's encoder can be aimed lower at run time (rate control
    /// that changes while it runs; a camera's own H.264 cannot).
    pub(crate) top_follows: AtomicBool,
    pub(crate) max_viewers: usize,
    /// HTTP is answered on this port.
    pub(crate) http: bool,
    /// Viewers admitted and not yet gone, of every kind.
    watching: AtomicUsize,
    handshaking: AtomicUsize,
    pub(crate) stream: StreamInfo,
    pub(crate) codec: String,
    /// What the encoder was set up to do, for people (may be empty).
    pub(crate) codec_settings: String,
    pub(crate) max_payload: u32,
    pub(crate) name: String,
    pub(crate) source_name: String,
    pub(crate) started: Instant,
    pub(crate) captured: AtomicU64,
    pub(crate) served: AtomicU64,
    /// CPU time spent in the source and in the encoder, summed, ns.
    pub(crate) source_ns: AtomicU64,
    pub(crate) encode_ns: AtomicU64,
    /// Frames no encoder was free for.
    pub(crate) encoder_dropped: AtomicU64,
    /// Frames the encoder's rate control skipped (H.264 over its bitrate).
    pub(crate) encoder_skipped: AtomicU64,
    /// Capture rate over the last second, f64 bits.
    pub(crate) capture_fps: AtomicU64,
    /// The source is open (false while closed for want of viewers).
    pub(crate) source_open: AtomicBool,
    /// Set when the stream is over.
    end: Mutex<Option<StreamEnd>>,
    /// Sinks on the server itself.
    pub(crate) locals: Mutex<Vec<Arc<LocalSink>>>,
    /// Pairing and encryption; `None` with `auth = "none"`.
    pub(crate) auth: Option<Arc<ServerAuth>>,
    /// RTSP is answered on this port (`[serve] rtsp`).
    pub(crate) rtsp: Option<super::rtsp::RtspShared>,
    /// WebRTC for browsers (WHEP), set once at start.
    pub(crate) whep: OnceLock<Whep>,
}

/// What a hub is made from; the counters start at zero.
pub(crate) struct HubSetup {
    pub(crate) payload_format: Option<PixelFormat>,
    pub(crate) max_viewers: usize,
    pub(crate) http: bool,
    pub(crate) stream: StreamInfo,
    pub(crate) codec: String,
    pub(crate) codec_settings: String,
    pub(crate) max_payload: u32,
    pub(crate) name: String,
    pub(crate) source_name: String,
    pub(crate) auth: Option<Arc<ServerAuth>>,
    pub(crate) rtsp: Option<super::rtsp::RtspShared>,
    /// The renditions viewers may be moved between (`[serve] adapt`); one
    /// rung (the stream's) when it does not adapt. The same for MJPEG.
    pub(crate) ladder: Vec<super::adapt::Rung>,
    pub(crate) jpeg_ladder: Vec<super::adapt::Rung>,
}

/// A viewer's place among those watching; dropping it leaves the fan-out and
/// gives the place back.
pub(crate) struct Admission<'a> {
    hub: &'a Hub,
    subscription: Subscription<'a>,
}

impl Admission<'_> {
    pub(crate) fn subscriber(&self) -> &Arc<Subscriber> {
        self.subscription.subscriber()
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.hub.watching.fetch_sub(1, Ordering::SeqCst);
        // The subscription leaves its fan-out as it drops, after this.
    }
}

/// A connection's place among those still in their handshake; dropping it
/// gives the place back. It owns a handle to the hub, so the accept thread can
/// take the place and the connection's thread give it back.
pub(crate) struct Handshaking(Arc<Hub>);

impl Handshaking {
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.0
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.handshaking.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hub {
    pub(crate) fn new(setup: HubSetup) -> Hub {
        Hub {
            main: Fanout::default(),
            jpeg: Fanout::default(),
            h264: Fanout::default(),
            h264_keyframes: Keyframes::default(),
            renditions: Rendition::below(&setup.ladder),
            ladder: setup.ladder,
            jpeg_renditions: Rendition::below(&setup.jpeg_ladder),
            jpeg_ladder: setup.jpeg_ladder,
            payload_format: setup.payload_format,
            keyframes: Keyframes::default(),
            encoder_bps: AtomicU32::new(0),
            top_follows: AtomicBool::new(false),
            max_viewers: setup.max_viewers,
            http: setup.http,
            watching: AtomicUsize::new(0),
            handshaking: AtomicUsize::new(0),
            stream: setup.stream,
            codec: setup.codec,
            codec_settings: setup.codec_settings,
            max_payload: setup.max_payload,
            name: setup.name,
            source_name: setup.source_name,
            started: Instant::now(),
            captured: AtomicU64::new(0),
            served: AtomicU64::new(0),
            source_ns: AtomicU64::new(0),
            encode_ns: AtomicU64::new(0),
            encoder_dropped: AtomicU64::new(0),
            encoder_skipped: AtomicU64::new(0),
            capture_fps: AtomicU64::new(0),
            source_open: AtomicBool::new(true),
            end: Mutex::new(None),
            locals: Mutex::default(),
            auth: setup.auth,
            rtsp: setup.rtsp,
            whep: OnceLock::new(),
        }
    }

    /// Where HTTP viewers get their JPEG frames.
    pub(crate) fn http_feed(&self) -> &Fanout {
        if self.payload_format == Some(PixelFormat::Jpeg) {
            &self.main
        } else {
            &self.jpeg
        }
    }

    /// Where WebRTC viewers get H.264, and whose encoder makes its keyframes:
    /// the main feed when the payload is H.264, else the `webrtc-h264`
    /// transcoder's.
    pub(crate) fn webrtc_feed(&self) -> (&Fanout, &Keyframes) {
        if self.payload_format == Some(PixelFormat::H264) {
            (&self.main, &self.keyframes)
        } else {
            (&self.h264, &self.h264_keyframes)
        }
    }

    /// The fan-out and the keyframe requests of rendition `index` of the
    /// ladder (0: the main feed).
    pub(crate) fn rendition_feed(&self, index: usize) -> Option<(&Fanout, &Keyframes)> {
        match index {
            0 => Some((&self.main, &self.keyframes)),
            i => self
                .renditions
                .get(i - 1)
                .map(|r| (&r.fanout, &r.keyframes)),
        }
    }

    /// The ladder a viewer of `kind` moves on, and its renditions below the
    /// first: JPEG for MJPEG browsers, H.264 for the others.
    pub(crate) fn ladder_for(&self, kind: SubscriberKind) -> (&[super::adapt::Rung], &[Rendition]) {
        match kind {
            SubscriberKind::Http => (&self.jpeg_ladder, &self.jpeg_renditions),
            _ => (&self.ladder, &self.renditions),
        }
    }

    /// The fan-out and keyframe requests of rendition `index` of the ladder
    /// a viewer of `kind` moves on (every JPEG frame is a keyframe: its
    /// requests are never asked).
    pub(crate) fn feed_for(
        &self,
        kind: SubscriberKind,
        index: usize,
    ) -> Option<(&Fanout, &Keyframes)> {
        match (kind, index) {
            (SubscriberKind::Http, 0) => Some((self.http_feed(), &self.keyframes)),
            // (The `webrtc-h264` transcoder's when the payload is not H.264.)
            (SubscriberKind::Webrtc, 0) => Some(self.webrtc_feed()),
            (SubscriberKind::Http, i) => self
                .jpeg_renditions
                .get(i - 1)
                .map(|r| (&r.fanout, &r.keyframes)),
            (_, i) => self.rendition_feed(i),
        }
    }

    /// Viewers watching now, of every kind.
    pub(crate) fn watchers(&self) -> usize {
        self.watching.load(Ordering::Relaxed)
    }

    /// A place among the connections in their handshake, unless
    /// [`MAX_HANDSHAKING`] are already.
    pub(crate) fn begin_handshake(hub: &Arc<Hub>) -> Option<Handshaking> {
        hub.handshaking
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_HANDSHAKING).then_some(n + 1)
            })
            .ok()
            .map(|_| Handshaking(hub.clone()))
    }

    /// Subscribes a viewer to `feed` unless the server is full or the stream is
    /// over.
    pub(crate) fn admit<'a>(
        &'a self,
        feed: &'a Fanout,
        viewer: &Arc<Subscriber>,
    ) -> Result<Admission<'a>, Refused> {
        if let Some(end) = self.end() {
            let status = if end.final_ {
                Status::Ended
            } else {
                Status::Busy
            };
            return Err(Refused {
                status,
                why: end.why,
            });
        }
        self.watching
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_viewers).then_some(n + 1)
            })
            .map_err(|_| Refused {
                status: Status::Busy,
                why: format!(
                    "the server is busy: {} viewers already watching",
                    self.max_viewers
                ),
            })?;
        self.served.fetch_add(1, Ordering::Relaxed);
        Ok(Admission {
            hub: self,
            subscription: feed.subscribe(viewer),
        })
    }

    /// Ends the stream for every subscriber (now and later). `final_`: the
    /// source is done, viewers should not reconnect.
    pub(crate) fn finish(&self, why: &str, final_: bool) {
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        end.get_or_insert_with(|| StreamEnd {
            why: why.to_string(),
            final_,
        });
        drop(end);
        self.main.close_all();
        self.jpeg.close_all();
        self.h264.close_all();
        for r in self.renditions.iter().chain(&self.jpeg_renditions) {
            r.fanout.close_all();
        }
    }

    pub(crate) fn end(&self) -> Option<StreamEnd> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::FrameInfo;

    fn hub(max_viewers: usize) -> Hub {
        Hub::new(HubSetup {
            payload_format: None,
            max_viewers,
            http: true,
            stream: StreamInfo {
                frame: FrameInfo::packed(crate::media::frame::PixelFormat::Rgb24, 4, 4).unwrap(),
                fps: 30.0,
            },
            codec: "raw".into(),
            codec_settings: String::new(),
            max_payload: 48,
            name: "t".into(),
            source_name: "test-pattern".into(),
            auth: None,
            rtsp: None,
            ladder: Vec::new(),
            jpeg_ladder: Vec::new(),
        })
    }

    fn frame(pool: &FramePool, seq: u64) -> Arc<EncodedFrame> {
        let mut f = pool.take();
        Arc::get_mut(&mut f).unwrap().frame.seq = seq;
        f
    }

    #[test]
    fn each_kind_of_viewer_starts_on_its_own_feed_and_asks_its_encoder() {
        let mut jpeg = hub(1);
        jpeg.payload_format = Some(crate::media::frame::PixelFormat::Jpeg);
        let same = |a: Option<(&Fanout, &Keyframes)>, b: (&Fanout, &Keyframes)| {
            a.is_some_and(|a| std::ptr::eq(a.0, b.0) && std::ptr::eq(a.1, b.1))
        };
        // A JPEG payload: WebRTC gets the `webrtc-h264` transcoder's H.264,
        // and its keyframes are asked of that encoder, not of the JPEG one.
        let webrtc = jpeg.feed_for(SubscriberKind::Webrtc, 0);
        assert!(same(webrtc, (&jpeg.h264, &jpeg.h264_keyframes)));
        assert!(same(
            jpeg.feed_for(SubscriberKind::Native, 0),
            (&jpeg.main, &jpeg.keyframes)
        ));
        assert!(std::ptr::eq(
            jpeg.feed_for(SubscriberKind::Http, 0).unwrap().0,
            &jpeg.main
        ));
        // No renditions below the first here.
        assert!(jpeg.feed_for(SubscriberKind::Http, 1).is_none());
        assert!(jpeg.feed_for(SubscriberKind::Webrtc, 1).is_none());
    }

    #[test]
    fn admissions_are_counted_and_given_back_by_their_guards() {
        let hub = hub(2);
        let v = || Subscriber::new("10.0.0.1:1".parse().unwrap(), SubscriberKind::Native);
        let a = hub.admit(&hub.main, &v()).unwrap();
        let b = hub.admit(&hub.main, &v()).unwrap();
        assert_eq!(hub.watchers(), 2);
        let refused = hub.admit(&hub.main, &v()).err().unwrap();
        assert_eq!(refused.status, Status::Busy);
        assert_eq!(
            hub.main.lock().len(),
            2,
            "a refused viewer is not subscribed"
        );
        drop(a);
        assert_eq!((hub.watchers(), hub.main.lock().len()), (1, 1));
        drop(b);
        assert_eq!((hub.watchers(), hub.main.lock().len()), (0, 0));
        hub.finish("done", true);
        let ended = hub.admit(&hub.main, &v()).err().unwrap();
        assert_eq!((ended.status, ended.why.as_str()), (Status::Ended, "done"));
    }

    #[test]
    fn keyframe_requests_are_coalesced_and_rate_limited() {
        let k = Keyframes::default();
        assert!(!k.due(0), "nobody asked");
        for _ in 0..20 {
            k.ask();
        }
        assert!(k.due(1_000), "twenty requests, one keyframe");
        assert!(!k.due(1_001));
        k.ask();
        assert!(!k.due(50_000), "too soon after the last");
        assert!(k.due(101_000), "the request waited, it was not lost");
        k.ask();
        k.made();
        assert!(!k.due(500_000), "a periodic keyframe answered it");
        assert_eq!(
            (
                k.asked.load(Ordering::Relaxed),
                k.forced.load(Ordering::Relaxed)
            ),
            (22, 2)
        );
    }

    #[test]
    fn a_waiting_keyframe_is_not_replaced_by_a_delta() {
        let fanout = Fanout::default();
        let pool = FramePool::default();
        let slow = Subscriber::new("10.0.0.1:1".parse().unwrap(), SubscriberKind::Native);
        let _s = fanout.subscribe(&slow);
        let local = Subscriber::internal(SubscriberKind::Local);
        let _l = fanout.subscribe(&local);
        let mut key = frame(&pool, 1);
        Arc::get_mut(&mut key).unwrap().keyframe = true;
        fanout.publish(&key);
        let mut delta = frame(&pool, 2);
        Arc::get_mut(&mut delta).unwrap().keyframe = false;
        fanout.publish(&delta);
        let crate::media::slot::Taken::Value(got) = slow.slot.take(std::time::Duration::ZERO)
        else {
            panic!("a frame waits")
        };
        assert_eq!(got.frame.seq, 1, "the keyframe stayed");
        assert_eq!(slow.counters.dropped.load(Ordering::Relaxed), 1);
        let crate::media::slot::Taken::Value(got) = local.slot.take(std::time::Duration::ZERO)
        else {
            panic!("a frame waits")
        };
        assert_eq!(got.frame.seq, 2, "a local sink takes pixels: the newest");
    }

    fn made(pool: &FramePool, seq: u64, rendition: u8, keyframe: bool) -> Arc<EncodedFrame> {
        let mut f = frame(pool, seq);
        let p = Arc::get_mut(&mut f).unwrap();
        (p.rendition, p.keyframe) = (rendition, keyframe);
        f
    }

    fn waiting(s: &Subscriber) -> Option<(u64, u8)> {
        match s.slot.take(std::time::Duration::ZERO) {
            crate::media::slot::Taken::Value(f) => Some((f.frame.seq, f.rendition)),
            _ => None,
        }
    }

    /// A viewer moving to another rendition takes its old one's frames
    /// until the new one's keyframe, which moves it over; from then on the
    /// old fan-out lets it go and its frames never reach it.
    #[test]
    fn a_viewer_moves_to_another_rendition_at_its_keyframe() {
        let (main, lower) = (Fanout::default(), Fanout::for_rendition(1));
        let pool = FramePool::default();
        let viewer = Subscriber::new("10.0.0.1:1".parse().unwrap(), SubscriberKind::Native);
        let _s = main.subscribe(&viewer);
        lower.subscribe_pending(&viewer);
        assert!(
            !lower.has_no_viewers(),
            "a viewer on its way counts: the encoder starts"
        );
        assert!(lower.takers().is_empty());
        main.publish(&made(&pool, 1, 0, false));
        lower.publish(&made(&pool, 1, 1, false));
        assert_eq!(
            waiting(&viewer),
            Some((1, 0)),
            "a delta of the new one: not yet"
        );
        main.publish(&made(&pool, 2, 0, false));
        lower.publish(&made(&pool, 3, 1, true));
        assert_eq!(viewer.rendition.load(Ordering::SeqCst), 1);
        assert_eq!(
            waiting(&viewer),
            Some((3, 1)),
            "the keyframe replaced the old frame"
        );
        assert_eq!(viewer.counters.switches.load(Ordering::Relaxed), 1);
        main.publish(&made(&pool, 4, 0, false));
        assert_eq!(
            waiting(&viewer),
            None,
            "the old rendition's frames do not reach it"
        );
        assert_eq!(main.lock().len(), 0, "and the old fan-out let it go");
        lower.publish(&made(&pool, 4, 1, false));
        assert_eq!(waiting(&viewer), Some((4, 1)));
        assert_eq!(lower.takers().len(), 1);
        // A move given up before its keyframe leaves nothing behind.
        main.subscribe_pending(&viewer);
        main.cancel_pending(&viewer);
        main.publish(&made(&pool, 5, 0, true));
        assert_eq!(viewer.rendition.load(Ordering::SeqCst), 1);
        assert_eq!(main.lock().len(), 0);
    }

    #[test]
    fn handshake_places_are_bounded_and_given_back() {
        let hub = Arc::new(hub(1));
        let held: Vec<_> = (0..MAX_HANDSHAKING)
            .map(|_| Hub::begin_handshake(&hub).expect("a place"))
            .collect();
        assert!(Hub::begin_handshake(&hub).is_none(), "one past the limit");
        drop(held);
        assert!(Hub::begin_handshake(&hub).is_some());
    }

    #[test]
    fn publish_drops_for_the_slow_subscriber_only_and_never_goes_back() {
        let fanout = Fanout::default();
        let pool = FramePool::default();
        let (slow, fast) = (
            Subscriber::internal(SubscriberKind::Local),
            Subscriber::internal(SubscriberKind::Local),
        );
        let _s = fanout.subscribe(&slow);
        let _f = fanout.subscribe(&fast);
        fanout.publish(&frame(&pool, 1));
        let crate::media::slot::Taken::Value(_) = fast.slot.take(std::time::Duration::ZERO) else {
            panic!("fast got frame 1")
        };
        fanout.publish(&frame(&pool, 2));
        assert_eq!(slow.counters.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(fast.counters.dropped.load(Ordering::Relaxed), 0);
        fanout.publish(&frame(&pool, 1));
        assert_eq!(
            fanout.late.load(Ordering::Relaxed),
            1,
            "older than one sent"
        );
        drop(_s);
        assert_eq!(fanout.lock().len(), 1, "the guard left the fan-out");
    }
}
