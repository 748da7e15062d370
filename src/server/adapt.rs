//! Each viewer (native, WebRTC) gets the rendition its own link carries: the ladder of
//! renditions a stream offers, and the choice, per viewer, of which one it is
//! sent (`[serve] adapt`).
//!
//! **The ladder.** Rendition 0 is the stream as the codec makes it; below it,
//! the same pictures scaled to 720, 480 and 240 lines (those under four fifths
//! of the stream's height), each encoded by an `h264` encoder of its own at a
//! bitrate in proportion to its pixels (`rendition-N` threads,
//! `transcode.rs`), and only while some viewer takes it.
//!
//! **The policy: resolution first, frame rate kept.** A viewer whose link
//! cannot carry its rendition is moved to a smaller picture at the full frame
//! rate, not sent fewer frames of the large one: motion stays smooth, and the
//! latency stays that of one frame. (The server's newest-wins slots still drop
//! frames for a link that falls faster than the choice follows.) Frame rate
//! is given up only below the smallest rendition.
//!
//! **The choice** ([`Chooser`]), every time the viewer's link is sampled
//! (`server/link.rs`, every 0.2 s):
//! - down when the viewer lost more than a sixth of its frames in the last
//!   second (the server dropped them: its link did not take them), to the
//!   largest rendition that what the link delivered over that second carries
//!   with [`HEADROOM`] to spare. Delivered bytes, not the kernel's rate
//!   samples, decide: a shaper's burst allowance (tbf) or a WiFi aggregate
//!   lets single bursts through far faster than the link's rate;
//! - up by probing: what a link carries beyond what it is sent does not show
//!   (a smaller rendition does not fill it), so the viewer tries one step up
//!   after clean delivery for [`PROBE_AFTER_DOWN_US`] after a move down (the
//!   link just failed to carry it), or [`PROBE_AFTER_US`] after a probe that
//!   held. A probe is on trial for [`PROBE_TRIAL_US`]: lost frames take it
//!   back down at once, and double the wait for the next (up to
//!   [`PROBE_MAX_US`]).
//!
//! A switch happens at a keyframe of the new rendition (`hub.rs`: a viewer
//! switching has a pending place in the new rendition's fan-out, and the
//! fan-out moves it over with that keyframe), so no picture is ever decoded
//! from another rendition's frames.
//!
//! **The stream's own bitrate follows its viewers' links, within bounds.**
//! A viewer of the stream (H.264) whose link nearly carries it (delivered
//! bytes while it loses frames, or WebRTC's estimate) is not moved a whole
//! rendition down while what it carries is at least [`TOP_MIN_SHARE`] of the
//! stream's bitrate: the stream's encoder is aimed at that instead, lower by
//! at least a step each time loss goes on, raised by a step after clean
//! delivery (as a probe up). The encoder aims at the lowest such figure of its
//! viewers (`capture.rs`, once a second, at run time through openh264), so the
//! others get that bitrate too, at the same size: the bound keeps that cost
//! small.
//!
//! MJPEG browsers move on a ladder of their own ([`jpeg_ladder`]): the
//! stream's JPEG, then the same sizes at [`JPEG_RENDITION_QUALITY`]
//! (`mjpeg-N` transcoders), chosen as a native viewer's is.
//!
//! A WebRTC session's transport estimates its link (str0m's send-side
//! estimate from the browser's transport-wide feedback, which probes with
//! padding up to what the session asks): the choice then follows that
//! estimate both ways ([`Chooser::follow_estimate`]).
//!
//! The choice is pure (times and counts are inputs, no socket); the
//! viewer's send loop (a WebRTC session's, `webrtc/session.rs`) drives it
//! through [`ViewerAdapt`], after each sample of its link. No allocation.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::media::frame::FrameInfo;

use super::hub::{Hub, Keyframes, Subscriber, SubscriberKind};

/// One rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rung {
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Its encoder's target, bit/s.
    pub(crate) bits_per_second: u32,
}

/// Picture heights of the renditions below the stream's.
const HEIGHTS: [u32; 3] = [720, 480, 240];
/// A rendition is offered only this much smaller than the one above it.
const STEP: f64 = 0.8;
/// The lowest bitrate of a rendition, bit/s.
const MIN_BPS: f64 = 150_000.0;

/// What a stream whose bitrate is not known (a camera's own H.264) takes,
/// for the ladder: as the `h264` codec's automatic choice, 0.1 bit per pixel
/// per frame.
pub(crate) fn assumed_bitrate(stream: &crate::media::frame::StreamInfo) -> u32 {
    let fps = if stream.fps > 0.0 { stream.fps } else { 30.0 };
    (stream.frame.width as f64 * stream.frame.height as f64 * fps * 0.1).clamp(150e3, 16e6) as u32
}

/// The ladder of a `stream` whose own encoder runs at `top_bps`: the stream
/// itself, then each smaller rendition. Only the stream when it is already
/// small.
pub(crate) fn ladder(stream: &FrameInfo, top_bps: u32) -> Vec<Rung> {
    let top = Rung {
        width: stream.width,
        height: stream.height,
        bits_per_second: top_bps,
    };
    let mut rungs = vec![top];
    if stream.width == 0 || stream.height == 0 {
        return rungs;
    }
    let pixels = stream.width as f64 * stream.height as f64;
    for h in HEIGHTS {
        let above = rungs[rungs.len() - 1].height;
        if h as f64 > above as f64 * STEP {
            continue;
        }
        // The stream's shape, in even numbers.
        let w = ((stream.width as f64 * h as f64 / stream.height as f64 / 2.0).round() as u32) * 2;
        if w < 2 {
            continue;
        }
        let share = w as f64 * h as f64 / pixels;
        rungs.push(Rung {
            width: w,
            height: h,
            bits_per_second: (top_bps as f64 * share).max(MIN_BPS) as u32,
        });
    }
    rungs
}

/// The JPEG quality of the smaller renditions for MJPEG browsers: a smaller
/// picture and fewer bits per pixel.
pub(crate) const JPEG_RENDITION_QUALITY: u8 = 60;

/// What a JPEG of a photograph takes at `quality`, bits per pixel (4:2:0):
/// about 0.9 at 80 (a 720p30 camera's MJPEG is ~25 Mbit/s), less below. An
/// estimate: JPEG has no bitrate target, and a simple picture takes less.
fn jpeg_bits_per_pixel(quality: u8) -> f64 {
    0.9 * (f64::from(quality.clamp(1, 100)) / 80.0).powf(1.5)
}

/// The ladder for MJPEG browsers: the stream's JPEG (taken to be quality
/// `top_quality`), then the same sizes as [`ladder`]'s at
/// [`JPEG_RENDITION_QUALITY`], bitrates estimated from pixels, frame rate and
/// quality.
pub(crate) fn jpeg_ladder(stream: &FrameInfo, fps: f64, top_quality: u8) -> Vec<Rung> {
    let fps = if fps > 0.0 { fps } else { 30.0 };
    let bits = |w: u32, h: u32, q: u8| {
        (f64::from(w) * f64::from(h) * fps * jpeg_bits_per_pixel(q)).clamp(MIN_BPS, 1e9) as u32
    };
    let mut rungs = ladder(stream, 0);
    for (i, r) in rungs.iter_mut().enumerate() {
        let q = if i == 0 {
            top_quality
        } else {
            JPEG_RENDITION_QUALITY
        };
        r.bits_per_second = bits(r.width, r.height, q);
    }
    rungs
}

/// A link is enough for a rendition when it carries this much more than the
/// rendition's bitrate (keyframes are several times the average frame).
pub(crate) const HEADROOM: f64 = 1.25;
/// After a switch, how long before the next move down (its effect shows).
pub(crate) const SETTLE_US: u64 = 1_000_000;
/// Clean delivery for this long after a probe up that held tries the next
/// rendition up.
pub(crate) const PROBE_AFTER_US: u64 = 4_000_000;
/// After a move down, the link just failed to carry the rendition above: it
/// is tried again only after this long (and twice as long after each probe
/// that fails, up to [`PROBE_MAX_US`]).
pub(crate) const PROBE_AFTER_DOWN_US: u64 = 10_000_000;
pub(crate) const PROBE_MAX_US: u64 = 60_000_000;
/// A probe up that comes back down within this long failed; one that lasts
/// held.
pub(crate) const PROBE_TRIAL_US: u64 = 3_000_000;
/// The stream's own encoder may be aimed this far below its bitrate for a
/// viewer whose link nearly carries it (instead of moving that viewer a whole
/// rendition down); every viewer of the stream then gets that bitrate.
pub(crate) const TOP_MIN_SHARE: f64 = 0.5;
/// A lowered stream bitrate is raised by this factor after clean delivery
/// for [`PROBE_AFTER_US`].
const TOP_STEP_UP: f64 = 1.25;
/// A change of the stream's bitrate shows after this long (the encoder looks
/// once a second, its rate control follows over about one, and the loss
/// window is one): no further change before.
const TOP_SETTLE_US: u64 = 3_000_000;
/// A lowered stream bitrate that still loses frames is lowered at least by
/// this factor (until [`TOP_MIN_SHARE`], then the viewer moves down).
const TOP_STEP_DOWN: f64 = 0.85;
/// More than this share of a second's frames lost: the link is too slow.
const LOSS_DOWN: f64 = 1.0 / 6.0;
/// Loss counted over this long.
const LOSS_WINDOW_US: u64 = 1_000_000;
/// A viewer whose transport estimates its link (WebRTC: str0m's send-side
/// estimate from the browser's transport-wide feedback) moves up one step
/// once the estimate has carried the rendition above for this long; twice as
/// long after each such move that came back down within [`PROBE_TRIAL_US`]
/// (an estimate can overshoot for a while: a shaper's burst lets a probe
/// through faster than the link's rate), up to [`ESTIMATE_HOLD_MAX_US`].
pub(crate) const ESTIMATE_UP_HOLD_US: u64 = 2_000_000;
pub(crate) const ESTIMATE_HOLD_MAX_US: u64 = 16_000_000;

/// What the choice knows of a viewer at one sample: what its link
/// delivered over the last second, and its counters so far (frames sent
/// and lost for it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observation {
    pub(crate) now_us: u64,
    /// Bit/s acknowledged over the last second (`LinkEstimator::goodput`).
    pub(crate) goodput: Option<u64>,
    /// Bit/s the viewer's transport estimates its link carries (WebRTC's
    /// congestion control), when it has one: it decides both ways then.
    pub(crate) estimate: Option<u64>,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
}

/// The rendition choice of one viewer.
#[derive(Debug)]
pub(crate) struct Chooser {
    /// The rendition it is sent now (0: the stream's).
    current: usize,
    /// When it last moved.
    moved_at_us: u64,
    /// The last choice was a probe up; and when a probe up happened, while
    /// it is on trial.
    probe_wanted: bool,
    probe_up_at_us: Option<u64>,
    /// How long clean delivery must last before the next probe up.
    probe_after_us: u64,
    /// The counters at the start of the loss window.
    window: (u64, u64, u64),
    /// Since when nothing was lost.
    clean_since_us: u64,
    /// Since when the transport's estimate has carried a larger rendition,
    /// and how long it must before a move up.
    carried_since_us: Option<u64>,
    estimate_hold_us: u64,
    /// The stream's encoder may be aimed lower for it (an H.264 ladder).
    follows_top: bool,
    /// While it takes the stream: the bitrate its link carries, when that is
    /// below the stream's (between [`TOP_MIN_SHARE`] and all of it).
    top_cap: Option<u32>,
    /// When the aim last changed.
    capped_at_us: Option<u64>,
    /// A raise on trial: the aim before it, and when; and how long clean
    /// delivery must last before the next raise (doubled after one failed).
    raise: Option<(u32, u64)>,
    raise_after_us: u64,
}

impl Chooser {
    pub(crate) fn new(now_us: u64) -> Chooser {
        Chooser {
            current: 0,
            moved_at_us: now_us,
            probe_wanted: false,
            probe_up_at_us: None,
            probe_after_us: PROBE_AFTER_US,
            window: (now_us, 0, 0),
            clean_since_us: now_us,
            carried_since_us: None,
            estimate_hold_us: ESTIMATE_UP_HOLD_US,
            follows_top: false,
            top_cap: None,
            capped_at_us: None,
            raise: None,
            raise_after_us: PROBE_AFTER_US,
        }
    }

    /// One whose link may aim the stream's encoder lower, within
    /// [`TOP_MIN_SHARE`], while it takes the stream.
    #[cfg(test)]
    fn following_top(mut self) -> Chooser {
        self.follows_top = true;
        self
    }

    /// Whether the stream's encoder can follow this viewer's link (it can
    /// stop: an engine that cannot change its rate while it runs).
    pub(crate) fn set_following_top(&mut self, follows: bool) {
        self.follows_top = follows;
        if !follows {
            self.top_cap = None;
        }
    }

    /// The bitrate the stream's encoder should not exceed for this viewer,
    /// bit/s, while it takes the stream and its link carries less.
    pub(crate) fn top_cap(&self) -> Option<u32> {
        self.top_cap.filter(|_| self.current == 0)
    }

    /// What the top rung needs at the least when the stream's bitrate may
    /// follow the link.
    fn top_floor(&self, ladder: &[Rung]) -> f64 {
        let nominal = f64::from(ladder[0].bits_per_second);
        if self.follows_top {
            nominal * TOP_MIN_SHARE
        } else {
            nominal
        }
    }
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// The viewer now takes rendition `index` (its switch happened).
    pub(crate) fn moved(&mut self, index: usize, now_us: u64) {
        if index < self.current {
            self.probe_up_at_us = self.probe_wanted.then_some(now_us);
        } else if index > self.current {
            let failed_probe = self
                .probe_up_at_us
                .is_some_and(|t| now_us.saturating_sub(t) < PROBE_TRIAL_US);
            if failed_probe {
                self.estimate_hold_us = (self.estimate_hold_us * 2).min(ESTIMATE_HOLD_MAX_US);
            }
            self.probe_after_us = if failed_probe {
                (self.probe_after_us * 2).clamp(PROBE_AFTER_DOWN_US, PROBE_MAX_US)
            } else {
                self.probe_after_us.max(PROBE_AFTER_DOWN_US)
            };
            self.probe_up_at_us = None;
        }
        self.probe_wanted = false;
        self.current = index;
        self.moved_at_us = now_us;
        self.clean_since_us = now_us;
        self.carried_since_us = None;
        self.top_cap = None;
    }

    /// The rendition this viewer should be sent, given what it showed at
    /// `o`: its current one, or another to switch to.
    pub(crate) fn choose(&mut self, o: Observation, ladder: &[Rung]) -> usize {
        let last = ladder.len().saturating_sub(1);
        let current = self.current.min(last);
        // Frames lost over the last window.
        let (since, sent0, dropped0) = self.window;
        let sent = o.sent.saturating_sub(sent0);
        let dropped = o.dropped.saturating_sub(dropped0);
        let lossy = dropped >= 3 && dropped as f64 > (sent + dropped) as f64 * LOSS_DOWN;
        if dropped > 0 {
            self.clean_since_us = o.now_us;
        }
        if o.now_us.saturating_sub(since) >= LOSS_WINDOW_US {
            self.window = (o.now_us, o.sent, o.dropped);
        }
        // A probe that lasted its trial held: the next step up may come soon.
        if self
            .probe_up_at_us
            .is_some_and(|t| o.now_us.saturating_sub(t) >= PROBE_TRIAL_US)
        {
            self.probe_up_at_us = None;
            self.probe_after_us = PROBE_AFTER_US;
            self.estimate_hold_us = ESTIMATE_UP_HOLD_US;
        }
        if self
            .raise
            .is_some_and(|(_, at)| o.now_us.saturating_sub(at) >= PROBE_TRIAL_US)
        {
            self.raise = None;
            self.raise_after_us = PROBE_AFTER_US;
        }
        self.probe_wanted = false;
        // A probe on trial goes back at the first sign; other moves settle.
        let settled =
            self.probe_up_at_us.is_some() || o.now_us.saturating_sub(self.moved_at_us) >= SETTLE_US;
        if lossy {
            if !settled || current == last {
                return current;
            }
            // At the stream: aim its encoder at what the link delivered,
            // when that is within bounds, rather than moving down.
            if current == 0 && self.follows_top {
                if let Some((before, _)) = self.raise.take() {
                    // A raise on trial failed: back at once, as a probe up
                    // goes back, and the next waits longer.
                    self.top_cap = Some(before);
                    self.capped_at_us = Some(o.now_us);
                    self.raise_after_us = (self.raise_after_us * 2).min(PROBE_MAX_US);
                    self.clean_since_us = o.now_us;
                    self.window = (o.now_us, o.sent, o.dropped);
                    return 0;
                }
                if self
                    .capped_at_us
                    .is_some_and(|t| o.now_us.saturating_sub(t) < TOP_SETTLE_US)
                {
                    // The last aim has not shown yet.
                    return 0;
                }
                let floor = self.top_floor(ladder);
                let at_floor = self.top_cap.is_some_and(|c| f64::from(c) <= floor + 1.0);
                let delivered = o.goodput.map(|bps| bps as f64 / HEADROOM);
                if delivered.is_some_and(|d| d >= floor) && !at_floor {
                    // What it delivered, and at least a step below the last
                    // aim when that did not stop the loss; not below the
                    // floor (there, the next loss moves it down).
                    let stepped = self
                        .top_cap
                        .map_or(f64::MAX, |c| f64::from(c) * TOP_STEP_DOWN);
                    let aim = delivered.unwrap_or(floor).min(stepped).max(floor);
                    self.top_cap = Some(aim as u32);
                    self.capped_at_us = Some(o.now_us);
                    self.clean_since_us = o.now_us;
                    // Loss before the change is not the new aim's.
                    self.window = (o.now_us, o.sent, o.dropped);
                    return 0;
                }
            }
            // Frames were dropped for it: the sender had more than the link
            // took, so what the link delivered is what it carries.
            let carries = |r: &Rung| {
                o.goodput
                    .is_some_and(|bps| bps as f64 >= r.bits_per_second as f64 * HEADROOM)
            };
            return match o.goodput {
                Some(_) => (current + 1..=last)
                    .find(|&i| carries(&ladder[i]))
                    .unwrap_or(last),
                None => current + 1,
            };
        }
        if let Some(bps) = o.estimate {
            return self.follow_estimate(bps, o.now_us, current, settled, ladder);
        }
        // A lowered stream bitrate is raised after clean delivery, as a probe
        // up would be.
        if let Some(cap) = self.top_cap.filter(|_| current == 0) {
            if o.now_us.saturating_sub(self.clean_since_us) >= self.raise_after_us
                && o.now_us.saturating_sub(self.capped_at_us.unwrap_or(0)) >= self.raise_after_us
            {
                let raised = f64::from(cap) * TOP_STEP_UP;
                self.top_cap =
                    (raised < f64::from(ladder[0].bits_per_second)).then_some(raised as u32);
                self.capped_at_us = Some(o.now_us);
                self.raise = Some((cap, o.now_us));
            }
            return 0;
        }
        // Up: what a link carries beyond what it is sent does not show (a
        // smaller rendition does not fill it), so one step up is tried after
        // clean delivery.
        if current > 0
            && o.now_us.saturating_sub(self.clean_since_us) >= self.probe_after_us
            && o.now_us.saturating_sub(self.moved_at_us) >= self.probe_after_us
        {
            self.probe_wanted = true;
            return current - 1;
        }
        current
    }
}

impl Chooser {
    /// The choice of a viewer whose transport estimates its link (and probes
    /// it with padding up to [`ViewerAdapt::desired_bps`]): down to what the
    /// estimate carries as soon as the last move settled, up one step once
    /// the estimate has carried it for [`ESTIMATE_UP_HOLD_US`] (or longer,
    /// after such moves failed).
    fn follow_estimate(
        &mut self,
        bps: u64,
        now_us: u64,
        current: usize,
        settled: bool,
        ladder: &[Rung],
    ) -> usize {
        let last = ladder.len() - 1;
        let floor = self.top_floor(ladder);
        let needs = |i: usize| match i {
            0 => floor,
            i => f64::from(ladder[i].bits_per_second),
        };
        let best = (0..=last)
            .find(|&i| bps as f64 >= needs(i) * HEADROOM)
            .unwrap_or(last);
        // At the stream, its encoder follows the estimate within bounds.
        let nominal = f64::from(ladder[0].bits_per_second);
        let carries = bps as f64 / HEADROOM;
        self.top_cap =
            (self.follows_top && best == 0 && carries < nominal).then_some(carries as u32);
        if best > current {
            self.carried_since_us = None;
            return if settled { best } else { current };
        }
        if best == current {
            self.carried_since_us = None;
            // The estimate shows no room, and cannot show much: it grows to
            // at most about 1.5 times what is sent, and str0m probes beyond
            // only while far less is sent than estimated (its docs call this
            // the recovery deadlock). So, as a native viewer's link is, the
            // link is probed with the rendition above after clean delivery.
            if current > 0
                && now_us.saturating_sub(self.clean_since_us) >= self.probe_after_us
                && now_us.saturating_sub(self.moved_at_us) >= self.probe_after_us
            {
                self.probe_wanted = true;
                return current - 1;
            }
            return current;
        }
        let since = *self.carried_since_us.get_or_insert(now_us);
        if now_us.saturating_sub(since) >= self.estimate_hold_us
            && now_us.saturating_sub(self.moved_at_us) >= SETTLE_US
        {
            // On trial as a probe is: back down soon, and the next waits longer.
            self.probe_wanted = true;
            return current - 1;
        }
        current
    }
}

/// A move asked for is asked again (a keyframe of the new rendition) when
/// it has not happened after this long.
const REASK_US: u64 = 500_000;

/// One native viewer's adaptation, driven by its send loop: the choice, and
/// the move it asked for (a pending place in the new rendition's fan-out).
pub(crate) struct ViewerAdapt<'h> {
    hub: &'h Hub,
    viewer: Arc<Subscriber>,
    chooser: Chooser,
    /// The rendition it is moving to, and when its keyframe was last asked.
    pending: Option<(usize, u64)>,
}

impl<'h> ViewerAdapt<'h> {
    /// For a viewer that takes renditions (a native viewer that said so, a
    /// WebRTC session) of a stream that has them.
    pub(crate) fn new(hub: &'h Hub, viewer: &Arc<Subscriber>, now_us: u64) -> Option<Self> {
        let adapts = hub.ladder_for(viewer.kind).0.len() > 1
            && viewer.takes_renditions.load(Ordering::Relaxed);
        let chooser = Chooser::new(now_us);
        adapts.then(|| ViewerAdapt {
            hub,
            viewer: viewer.clone(),
            chooser,
            pending: None,
        })
    }

    /// The ladder it moves on.
    fn ladder(&self) -> &'h [Rung] {
        self.hub.ladder_for(self.viewer.kind).0
    }

    fn feed(&self, index: usize) -> Option<(&'h super::hub::Fanout, &'h Keyframes)> {
        self.hub.feed_for(self.viewer.kind, index)
    }

    /// The bitrate its transport's estimator should probe for, bit/s: what
    /// the rendition above the current one needs (the current one's at the
    /// top).
    pub(crate) fn desired_bps(&self) -> u64 {
        let above = self.chooser.current().saturating_sub(1);
        let ladder = self.ladder();
        let rung = &ladder[above.min(ladder.len() - 1)];
        (rung.bits_per_second as f64 * HEADROOM * 1.2) as u64
    }

    /// After a sample of the viewer's link at `now_us` (what it delivered
    /// over the last second, or what its transport estimates): follows a
    /// move that happened, and asks for one the choice wants.
    pub(crate) fn sampled(&mut self, now_us: u64, goodput: Option<u64>, estimate: Option<u64>) {
        let current = usize::from(self.viewer.rendition.load(Ordering::SeqCst));
        if current != self.chooser.current() {
            let ladder = self.ladder();
            let (from, to) = (&ladder[self.chooser.current()], &ladder[current]);
            let mbit = |bps: u64| format!("{:.1} Mbit/s", bps as f64 / 1e6);
            let why = match (estimate, goodput) {
                (Some(e), _) => format!("its link is estimated at {}", mbit(e)),
                (None, Some(g)) => format!("its link delivered {} over the last second", mbit(g)),
                (None, None) => "its link's rate is not known".into(),
            };
            log::info!(
                "viewer {}: {}x{} -> {}x{} ({:.1} Mbit/s; {why})",
                self.viewer.peer,
                from.width,
                from.height,
                to.width,
                to.height,
                to.bits_per_second as f64 / 1e6,
            );
            self.chooser.moved(current, now_us);
            if self.pending.is_some_and(|(to, _)| to == current) {
                self.pending = None;
            }
        }
        // A JPEG ladder's top is a quality, not a bitrate to aim at.
        self.chooser.set_following_top(
            self.viewer.kind != SubscriberKind::Http
                && self.hub.top_follows.load(Ordering::Relaxed),
        );
        let c = &self.viewer.counters;
        let want = self.chooser.choose(
            Observation {
                now_us,
                goodput,
                estimate,
                sent: c.sent.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
            },
            self.ladder(),
        );
        let cap = self.chooser.top_cap().unwrap_or(0);
        if self.viewer.top_cap_bps.swap(cap, Ordering::Relaxed) != cap && cap > 0 {
            log::debug!(
                "viewer {}: its link carries {:.1} Mbit/s of the stream's {:.1}",
                self.viewer.peer,
                f64::from(cap) / 1e6,
                f64::from(self.ladder()[0].bits_per_second) / 1e6
            );
        }
        match self.pending {
            Some((to, asked)) if to == want => {
                if now_us.saturating_sub(asked) >= REASK_US {
                    if let Some((_, keyframes)) = self.feed(to) {
                        keyframes.ask();
                    }
                    self.pending = Some((to, now_us));
                }
                return;
            }
            Some((to, _)) => {
                if let Some((fanout, _)) = self.feed(to) {
                    fanout.cancel_pending(&self.viewer);
                }
                self.pending = None;
            }
            None => {}
        }
        if want != current {
            if let Some((fanout, keyframes)) = self.feed(want) {
                fanout.subscribe_pending(&self.viewer);
                keyframes.ask();
                self.pending = Some((want, now_us));
            }
        }
    }
}

impl Drop for ViewerAdapt<'_> {
    /// Off every rendition's fan-out (the main one is the admission's).
    fn drop(&mut self) {
        self.viewer.top_cap_bps.store(0, Ordering::Relaxed);
        for r in self.hub.ladder_for(self.viewer.kind).1 {
            r.fanout.leave(&self.viewer);
        }
    }
}

/// The keyframe requests of the encoder that made the frames of rendition
/// `index` that `viewer` takes.
pub(crate) fn keyframes_of<'h>(hub: &'h Hub, viewer: &Subscriber, index: u8) -> &'h Keyframes {
    hub.feed_for(viewer.kind, index.into())
        .map_or(&hub.keyframes, |(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::PixelFormat;

    fn stream(w: u32, h: u32) -> FrameInfo {
        FrameInfo::packed(PixelFormat::Rgb24, w, h).unwrap()
    }

    fn sizes(l: &[Rung]) -> Vec<(u32, u32, u32)> {
        l.iter()
            .map(|r| (r.width, r.height, r.bits_per_second / 1000))
            .collect()
    }

    #[test]
    fn the_ladder_keeps_the_shape_in_even_sizes_and_shares_the_bitrate_by_pixels() {
        assert_eq!(
            sizes(&ladder(&stream(1280, 720), 2_800_000)),
            [(1280, 720, 2800), (854, 480, 1245), (426, 240, 310)]
        );
        assert_eq!(
            sizes(&ladder(&stream(1920, 1080), 6_000_000)),
            [
                (1920, 1080, 6000),
                (1280, 720, 2666),
                (854, 480, 1186),
                (426, 240, 295)
            ]
        );
        // 4:3, and a stream too small for any rendition below it.
        assert_eq!(
            sizes(&ladder(&stream(640, 480), 1_000_000)),
            [(640, 480, 1000), (320, 240, 250)]
        );
        assert_eq!(
            sizes(&ladder(&stream(320, 240), 500_000)),
            [(320, 240, 500)]
        );
        // The floor.
        assert_eq!(
            sizes(&ladder(&stream(1280, 720), 400_000))[2],
            (426, 240, 150)
        );
    }

    #[test]
    fn the_jpeg_ladder_has_the_same_sizes_at_a_lower_quality() {
        let l = jpeg_ladder(&stream(1280, 720), 30.0, 80);
        assert_eq!(
            sizes(&l),
            [(1280, 720, 24883), (854, 480, 7188), (426, 240, 1792)]
        );
        assert_eq!(jpeg_ladder(&stream(320, 240), 30.0, 80).len(), 1);
    }

    fn kbit(k: u64) -> Option<u64> {
        Some(k * 1000)
    }

    /// Samples every 0.2 s from `t` for `secs`, 30 frames a second sent and
    /// `lost` of them a second dropped, with `goodput`; returns the first
    /// choice that is not the current rendition, and when.
    fn run(
        c: &mut Chooser,
        l: &[Rung],
        t: &mut u64,
        counts: &mut (u64, u64),
        secs: f64,
        goodput: Option<u64>,
        lost: u64,
    ) -> Option<(usize, u64)> {
        until_moved(c, l, t, secs, |now| {
            counts.0 += 6 - lost / 5;
            counts.1 += lost / 5;
            Observation {
                now_us: now,
                goodput,
                estimate: None,
                sent: counts.0,
                dropped: counts.1,
            }
        })
    }

    /// Samples every 0.2 s from `t` for `secs`, each as `observe` says; the
    /// first choice that is not the current rendition, and when.
    fn until_moved(
        c: &mut Chooser,
        l: &[Rung],
        t: &mut u64,
        secs: f64,
        mut observe: impl FnMut(u64) -> Observation,
    ) -> Option<(usize, u64)> {
        let end = *t + (secs * 1e6) as u64;
        while *t < end {
            *t += 200_000;
            let want = c.choose(observe(*t), l);
            if want != c.current() {
                return Some((want, *t));
            }
        }
        None
    }

    #[test]
    fn lost_frames_move_down_to_what_the_link_delivered() {
        let l = ladder(&stream(1280, 720), 2_800_000);
        let mut c = Chooser::new(0);
        let (mut t, mut n) = (0, (0, 0));
        // Clean delivery at the top: nothing to do.
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 3.0, kbit(2500), 0), None);
        // The link falls to 1 Mbit/s: frames are dropped; 480p (1.25 Mbit/s)
        // does not fit what it delivers, 240p does.
        let (to, at) = run(&mut c, &l, &mut t, &mut n, 2.0, kbit(1000), 10).unwrap();
        assert_eq!(to, 2);
        assert!(at <= 3_400_000, "within a few samples: {at}");
        // 2 Mbit/s delivered: one step, to 480p.
        let mut c = Chooser::new(0);
        let (to, _) = run(&mut c, &l, &mut t, &mut n, 2.0, kbit(2000), 10).unwrap();
        assert_eq!(to, 1);
        // Nothing known: one step.
        let mut c = Chooser::new(0);
        let (to, _) = run(&mut c, &l, &mut t, &mut n, 2.0, None, 10).unwrap();
        assert_eq!(to, 1);
        // A frame lost now and then is not a reason.
        let mut c = Chooser::new(0);
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 5.0, kbit(2500), 2), None);
    }

    #[test]
    fn a_move_settles_before_the_next_move_down() {
        let l = ladder(&stream(1280, 720), 2_800_000);
        let mut c = Chooser::new(0);
        let (mut t, mut n) = (0, (0, 0));
        c.moved(1, 0);
        let (to, at) = run(&mut c, &l, &mut t, &mut n, 3.0, kbit(500), 10).unwrap();
        assert_eq!((to, at), (2, SETTLE_US));
    }

    #[test]
    fn a_link_is_probed_upwards_and_a_failed_probe_waits_longer() {
        let l = ladder(&stream(1280, 720), 2_800_000);
        let mut c = Chooser::new(0);
        let (mut t, mut n) = (0, (0, 0));
        c.moved(2, 0);
        // What a link carries beyond what it is sent does not show. It just
        // failed to carry more, so the first try waits the longer time.
        let (to, at) = run(&mut c, &l, &mut t, &mut n, 20.0, kbit(300), 0).unwrap();
        assert_eq!((to, at), (1, PROBE_AFTER_DOWN_US));
        c.moved(1, t);
        // The try fails at once (no settling on trial): back down, and the
        // next try waits twice as long.
        let (to, at) = run(&mut c, &l, &mut t, &mut n, 2.0, kbit(900), 10).unwrap();
        assert_eq!((to, at - PROBE_AFTER_DOWN_US), (2, 400_000), "two samples");
        let failed_at = t;
        c.moved(2, t);
        let (to, at) = run(&mut c, &l, &mut t, &mut n, 30.0, kbit(300), 0).unwrap();
        // (Counted from the last lost frame, which the loss window still
        // held for a moment after the move.)
        assert_eq!((to, (at - failed_at) / 1_000_000), (1, 20));
        // This one holds: after its trial, the next step up comes sooner.
        let held_from = t;
        c.moved(1, t);
        let (to, at) = run(&mut c, &l, &mut t, &mut n, 10.0, kbit(1200), 0).unwrap();
        assert_eq!((to, at - held_from), (0, PROBE_AFTER_US));
        c.moved(0, t);
        // At the top there is nothing to probe.
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 30.0, kbit(2800), 0), None);
    }

    /// Samples every 0.2 s from `t` for `secs` of clean delivery with the
    /// transport estimating `kbit`; the first choice that is not the current
    /// rendition, and when.
    fn run_estimated(
        c: &mut Chooser,
        l: &[Rung],
        t: &mut u64,
        secs: f64,
        kbit: u64,
    ) -> Option<(usize, u64)> {
        until_moved(c, l, t, secs, |now| Observation {
            now_us: now,
            goodput: None,
            estimate: Some(kbit * 1000),
            sent: now / 33_333,
            dropped: 0,
        })
    }

    #[test]
    fn an_estimate_moves_down_at_once_and_up_once_it_held() {
        // 2.8 / 1.2 / 0.3 Mbit/s.
        let l = ladder(&stream(1280, 720), 2_800_000);
        let mut c = Chooser::new(0);
        let mut t = 0;
        // Settling after the start, then straight to what 0.9 Mbit/s carries.
        let (to, at) = run_estimated(&mut c, &l, &mut t, 3.0, 900).unwrap();
        assert_eq!((to, at), (2, SETTLE_US));
        c.moved(2, t);
        // 1.4 Mbit/s does not carry 480p with headroom: stay, until the
        // link is probed (10 s after the move down).
        assert_eq!(run_estimated(&mut c, &l, &mut t, 9.0, 1400), None);
        // 2 Mbit/s does, once it held; one step at a time.
        let from = t;
        let (to, at) = run_estimated(&mut c, &l, &mut t, 5.0, 2000).unwrap();
        // (The first sample that sees it starts the hold.)
        let sample = 200_000;
        assert_eq!((to, at - from), (1, sample + ESTIMATE_UP_HOLD_US));
        c.moved(1, t);
        // The estimate overshot: back down at once (a move on trial), and the
        // next move up waits twice as long.
        let (to, _) = run_estimated(&mut c, &l, &mut t, 1.0, 800).unwrap();
        assert_eq!(to, 2);
        c.moved(2, t);
        let from = t;
        let (to, at) = run_estimated(&mut c, &l, &mut t, 10.0, 2000).unwrap();
        assert_eq!((to, at - from), (1, sample + 2 * ESTIMATE_UP_HOLD_US));
        c.moved(1, t);
        // This one held its trial: the next step up waits the short time.
        assert_eq!(
            run_estimated(&mut c, &l, &mut t, PROBE_TRIAL_US as f64 / 1e6, 2000),
            None
        );
        let from = t;
        let (to, at) = run_estimated(&mut c, &l, &mut t, 10.0, 4000).unwrap();
        assert_eq!((to, at - from), (0, sample + ESTIMATE_UP_HOLD_US));
        // An estimate stuck at what 240p sends (it cannot show more): the
        // link is probed after clean delivery, as a native viewer's is.
        let mut c = Chooser::new(0);
        c.moved(2, 0);
        let mut t = 0;
        let (to, at) = run_estimated(&mut c, &l, &mut t, 12.0, 400).unwrap();
        assert_eq!((to, at), (1, PROBE_AFTER_DOWN_US));
    }

    #[test]
    fn a_link_that_nearly_carries_the_stream_lowers_its_bitrate_within_bounds() {
        // 2.8 / 1.2 / 0.3 Mbit/s; the stream may go down to 1.4.
        let l = ladder(&stream(1280, 720), 2_800_000);
        let mut c = Chooser::new(0).following_top();
        let (mut t, mut n) = (0, (0, 0));
        // Loss at the stream, 2.5 Mbit/s delivered: it stays, the stream
        // aimed at what that carries.
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 1.2, kbit(2500), 10), None);
        assert_eq!(c.top_cap(), Some(2_000_000));
        // Still losing once the change had time to show (3 s): lower, by a
        // step at least.
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 2.6, kbit(2500), 10), None);
        assert_eq!(c.top_cap(), Some(2_000_000), "the change shows first");
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 0.6, kbit(2500), 10), None);
        assert_eq!(c.top_cap(), Some(1_700_000));
        // Below the bound: a rendition down, where the stream's bitrate is
        // no longer this viewer's to say.
        let (to, _) = run(&mut c, &l, &mut t, &mut n, 3.0, kbit(1600), 10).unwrap();
        assert_eq!(to, 1);
        c.moved(1, t);
        assert_eq!(c.top_cap(), None);

        // Clean delivery raises a lowered bitrate step by step, back to all.
        let mut c = Chooser::new(0).following_top();
        let (mut t, mut n) = (0, (0, 0));
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 1.2, kbit(2200), 10), None);
        assert_eq!(c.top_cap(), Some(1_760_000));
        let mut caps = Vec::new();
        for _ in 0..4 {
            assert_eq!(run(&mut c, &l, &mut t, &mut n, 4.4, kbit(3000), 0), None);
            caps.push(c.top_cap());
        }
        // (The first raise waits for the loss to leave the window.)
        assert_eq!(caps, [Some(1_760_000), Some(2_750_000), None, None]);

        // A raise that brings loss back goes back at once.
        let mut c = Chooser::new(0).following_top();
        let (mut t, mut n) = (0, (0, 0));
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 1.2, kbit(2200), 10), None);
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 5.0, kbit(2200), 0), None);
        assert_eq!(c.top_cap(), Some(2_200_000), "raised");
        assert_eq!(run(&mut c, &l, &mut t, &mut n, 0.6, kbit(2200), 10), None);
        assert_eq!(c.top_cap(), Some(1_760_000), "back");

        // An estimate: at the stream while it carries the bound, aimed at it.
        let mut c = Chooser::new(0).following_top();
        let mut t = 0;
        assert_eq!(run_estimated(&mut c, &l, &mut t, 2.0, 3000), None);
        assert_eq!(c.top_cap(), Some(2_400_000));
        assert_eq!(run_estimated(&mut c, &l, &mut t, 2.0, 4000), None);
        assert_eq!(c.top_cap(), None, "carries all of it");
        let (to, _) = run_estimated(&mut c, &l, &mut t, 2.0, 1600).unwrap();
        assert_eq!(to, 1, "1.6 Mbit/s does not carry 1.4 with headroom");

        // Without following (a JPEG ladder): straight down.
        let mut c = Chooser::new(0);
        let (mut t, mut n) = (0, (0, 0));
        let (to, _) = run(&mut c, &l, &mut t, &mut n, 3.0, kbit(2500), 10).unwrap();
        assert_eq!((to, c.top_cap()), (1, None));
    }
}
