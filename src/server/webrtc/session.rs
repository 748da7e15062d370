//! WebRTC sessions without sockets or clocks, as str0m itself is: an offer
//! is answered into an [`Answered`] session (on the HTTP connection's thread),
//! and [`Sessions`] runs them all: datagrams, time and the hub's frames go
//! in, datagrams to send come out through a callback. Owned by the `webrtc`
//! thread (`mod.rs`), which does the socket; the tests drive it with a second
//! str0m playing the browser, faster than real time.
//!
//! A session's life: answered (ICE-lite, a host candidate for each address
//! given) → connected (ICE and DTLS done: admitted as a viewer and subscribed
//! to [`Hub::webrtc_feed`]: the main fan-out when the payload is H.264, else
//! the `webrtc-h264` transcoder's) → ended, by `DELETE`, by the browser (DTLS close, or no
//! ICE checks for 15 s), by [`CONNECT_TIMEOUT`], or at server stop. At most
//! [`MAX_CONNECTING`] wait to connect; connected ones count against
//! `max-viewers` like every other viewer.
//!
//! Media: each connected session follows the encoder's chain as a native
//! viewer does ([`Chain`]: after a frame it missed, nothing until a keyframe,
//! which it asks for); a PLI or FIR from the browser asks for one through the
//! same coalescing path. str0m packetises each access unit (RFC 6184) and
//! answers NACKs from its own send history.
//!
//! On a stream with renditions (`server/adapt.rs`), str0m also estimates each
//! session's link from the browser's transport-wide congestion feedback (and
//! paces what it sends to that estimate); every 0.2 s the session's rendition
//! choice sees the estimate and moves it, at a keyframe, to the rendition the
//! link carries, and str0m probes for the one above.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::stats::MediaEgressStats;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::media::clock;
use crate::media::slot::Taken;
use crate::net::protocol::Report;
use crate::net::whep::SessionId;
use crate::server::adapt::{keyframes_of, ViewerAdapt};
use crate::server::hub::{
    Admission, EncodedFrame, Hub, Notify, Subscriber, SubscriberKind, WhepRefusal,
};
use crate::server::send::Chain;
use crate::server::stats::WebrtcStats;
use crate::server::whep::short;

/// A session whose browser has not finished ICE and DTLS by then is ended.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Sessions waiting to connect at once; more offers get 503.
pub(crate) const MAX_CONNECTING: usize = 16;

/// The H.264 formats answered, best first: constrained baseline (what the
/// h264 codec makes), then baseline (which decodes it too); packetization
/// mode 1 (FU-A, so a slice may be bigger than a datagram). (payload type,
/// its retransmission payload type, profile-level-id.)
const H264_FORMATS: [(u8, u8, u32); 2] = [(108, 109, 0x42e01f), (127, 121, 0x42001f)];

fn refusal(status: u16, reason: &'static str, detail: impl Into<String>) -> WhepRefusal {
    WhepRefusal {
        status,
        reason,
        detail: detail.into(),
    }
}

/// A browser's offer, answered: the session to run and the answer to send.
pub(crate) struct Answered {
    pub(crate) rtc: Rtc,
    /// The video it receives, and the payload type its H.264 goes in.
    pub(crate) mid: Mid,
    pub(crate) pt: Pt,
    pub(crate) answer: String,
    /// str0m estimates the link (its send-side bandwidth estimate, from the
    /// browser's transport-wide feedback), so the session can be moved
    /// between renditions.
    pub(crate) estimates: bool,
}

impl std::fmt::Debug for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answered")
            .field("mid", &self.mid)
            .field("pt", &self.pt)
            .finish_non_exhaustive()
    }
}

/// Answers `offer` (SDP text) as an ICE-lite peer with a host candidate for
/// each of `candidates`, sending H.264 only; with `estimate_from` (bit/s),
/// str0m estimates the link from there (and paces what it sends to it).
/// Refused (4xx) when str0m cannot read or accept the offer, or it asks for
/// no video this server can send.
pub(crate) fn answer_offer(
    offer: &str,
    candidates: &[SocketAddr],
    now: Instant,
    estimate_from: Option<u64>,
) -> Result<Answered, WhepRefusal> {
    let offer = SdpOffer::from_sdp_string(offer)
        .map_err(|e| refusal(400, "Bad Request", format!("not an SDP offer: {e}")))?;
    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .set_stats_interval(Some(STATS_INTERVAL))
        .clear_codecs();
    if let Some(bps) = estimate_from {
        config = config.enable_bwe(Some(Bitrate::bps(bps)));
    }
    for (pt, rtx, profile) in H264_FORMATS {
        config
            .codec_config()
            .add_h264(pt.into(), Some(rtx.into()), true, profile);
    }
    let mut rtc = config.build(now);
    for addr in candidates {
        match Candidate::host(*addr, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => log::debug!("no WebRTC candidate for {addr}: {e}"),
        }
    }
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| refusal(400, "Bad Request", format!("offer not accepted: {e}")))?;
    // The video it receives: an m-line of the answer (str0m wrote it, so each
    // has its mid) that this side sends on. (str0m's MediaAdded events come
    // only once DTLS is up.)
    let video = answer.media_lines.iter().map(|m| m.mid()).find(|&mid| {
        rtc.media(mid).is_some_and(|m| {
            m.kind() == MediaKind::Video
                && matches!(m.direction(), Direction::SendOnly | Direction::SendRecv)
        })
    });
    let unprocessable = |why: &str| refusal(422, "Unprocessable Content", why);
    let mid = video.ok_or_else(|| {
        unprocessable("the offer asks to receive no video (a recvonly or sendrecv video m-line)")
    })?;
    let pt = rtc
        .writer(mid)
        .and_then(|w| {
            w.payload_params()
                .find(|p| {
                    let spec = p.spec();
                    spec.codec == Codec::H264 && spec.format.packetization_mode == Some(1)
                })
                .map(|p| p.pt())
        })
        .ok_or_else(|| {
            unprocessable(
                "the offer's video has no H.264 with packetization-mode 1, which this server sends",
            )
        })?;
    Ok(Answered {
        rtc,
        mid,
        pt,
        answer: answer.to_sdp_string(),
        estimates: estimate_from.is_some(),
    })
}

/// How often str0m reports a session's figures (`/stats`, `/metrics`).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// A session's [`WebrtcStats`], from str0m's reports of the video it sends.
/// str0m counts and averages; the bitrate is the bytes it counted over the
/// interval between two reports.
#[derive(Debug, Default)]
struct Figures {
    latest: WebrtcStats,
    /// Bytes sent and when, at the previous report.
    previous: Option<(u64, Instant)>,
}

impl Figures {
    fn update(&mut self, s: &MediaEgressStats) {
        let f = &mut self.latest;
        f.nacks = s.nacks;
        f.plis = s.plis;
        f.firs = s.firs;
        // A report without a figure keeps the last one (str0m has none when no
        // receiver report came in the interval).
        if let Some(rtt) = s.rtt {
            f.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
        }
        if let Some(loss) = s.loss {
            f.fraction_lost = Some(f64::from(loss));
        }
        if let Some(r) = &s.remote {
            f.packets_lost = Some(cumulative_lost(r.packets_lost));
            // RTP time of H.264, 90 kHz.
            f.jitter_ms = Some(f64::from(r.jitter) / 90.0);
        }
        if let Some((bytes, at)) = self.previous {
            let secs = s.timestamp.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                f.bitrate_kbit = s.bytes.saturating_sub(bytes) as f64 * 8.0 / secs / 1000.0;
            }
        }
        self.previous = Some((s.bytes, s.timestamp));
    }
}

/// The receiver report's cumulative number of packets lost, a signed 24-bit
/// field (RFC 3550 section 6.4.1: duplicates can make it negative), which
/// str0m hands over as it reads it, unsigned.
fn cumulative_lost(field: u64) -> i64 {
    let bits = (field & 0xff_ffff) as i64;
    if bits >= 0x80_0000 {
        bits - 0x100_0000
    } else {
        bits
    }
}

/// One browser's session.
struct Session<'h> {
    id: SessionId,
    rtc: Rtc,
    mid: Mid,
    pt: Pt,
    /// Who posted the offer.
    http_peer: SocketAddr,
    /// Where its last datagram came from (its media goes back there).
    udp_peer: Option<SocketAddr>,
    /// Once connected: its place among the viewers, on the main fan-out.
    viewer: Option<Admission<'h>>,
    chain: Chain,
    created: Instant,
    /// When str0m wants time to pass next.
    next: Instant,
    /// Why it ended, once it did.
    ended: Option<String>,
    /// Wakes the `webrtc` thread when a frame comes into its slot.
    notify: Notify,
    /// What str0m reported last (the viewer's copy is what `/stats` reads).
    figures: Figures,
    /// str0m estimates its link; once connected, the rendition choice that
    /// follows the estimate, and when it was last given one.
    estimates: bool,
    adapt: Option<ViewerAdapt<'h>>,
    adapted_at: Instant,
    /// str0m's latest estimate of its link, and what it was told to probe
    /// for, bit/s.
    estimate: Option<u64>,
    desired: u64,
}

/// How often a session's rendition choice looks at its link's estimate.
const ADAPT_EVERY: Duration = Duration::from_millis(200);

/// Where datagrams go out: the socket (or, in tests, the other peer).
pub(crate) type Out<'a> = dyn FnMut(&Transmit) + 'a;

impl<'h> Session<'h> {
    fn end(&mut self, why: impl Into<String>) {
        if self.ended.is_none() {
            self.ended = Some(why.into());
        }
    }

    /// `now` as the rendition choice counts time: µs since it was created.
    fn micros(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.created).as_micros() as u64
    }

    /// Every [`ADAPT_EVERY`]: the rendition choice sees str0m's latest
    /// estimate of the link, and str0m is told what to probe for (the
    /// rendition above's needs).
    fn adapt(&mut self, now: Instant) {
        if now.saturating_duration_since(self.adapted_at) < ADAPT_EVERY {
            return;
        }
        self.adapted_at = now;
        let now_us = self.micros(now);
        let Some(adapt) = self.adapt.as_mut() else {
            return;
        };
        adapt.sampled(now_us, None, self.estimate);
        let desired = adapt.desired_bps();
        if desired != self.desired {
            // (Told only on a change: str0m reconsiders probing at each call.)
            self.desired = desired;
            self.rtc.bwe().set_desired_bitrate(Bitrate::bps(desired));
        }
    }

    /// Ends it with a goodbye (RTCP BYE, DTLS close_notify) to the browser.
    fn close(&mut self, why: impl Into<String>, hub: &'h Hub, now: Instant, out: &mut Out<'_>) {
        self.end(why);
        if self.rtc.close().is_ok() {
            self.drain(hub, now, out);
        }
        self.rtc.disconnect();
    }

    /// Polls str0m until it only waits for time: datagrams out, events handled.
    fn drain(&mut self, hub: &'h Hub, now: Instant, out: &mut Out<'_>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next = t;
                    return;
                }
                Ok(Output::Transmit(t)) => out(&t),
                Ok(Output::Event(e)) => self.event(e, hub, now),
                Err(e) => {
                    self.end(format!("WebRTC failed: {e}"));
                    self.rtc.disconnect();
                    self.next = now + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    fn event(&mut self, e: Event, hub: &'h Hub, now: Instant) {
        match e {
            Event::Connected => self.connected(hub, now),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end("ICE disconnected (no checks from the browser)");
            }
            Event::KeyframeRequest(_) => {
                if let Some(a) = &self.viewer {
                    let v = a.subscriber();
                    let rendition = v.rendition.load(Ordering::SeqCst);
                    self.chain.lost(keyframes_of(hub, v, rendition), now)
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc(bps)) => {
                let bps = bps.as_u64();
                log::debug!(
                    "WebRTC session {}: link estimated at {bps} bit/s",
                    short(&self.id)
                );
                self.estimate = Some(bps);
                self.figures.latest.estimate_kbit = Some(bps as f64 / 1000.0);
                if let Some(a) = &self.viewer {
                    let c = &a.subscriber().counters;
                    c.link_bps.store(bps, Ordering::Relaxed);
                    c.link_measured.store(true, Ordering::Relaxed);
                }
            }
            Event::MediaEgressStats(s) if s.mid == self.mid => {
                self.figures.update(&s);
                if let Some(a) = &self.viewer {
                    // Once a second: the only lock the figures take.
                    *a.subscriber()
                        .feedback
                        .webrtc
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(self.figures.latest);
                }
            }
            Event::Closed => self.end("the browser closed the connection"),
            _ => {}
        }
    }

    fn connected(&mut self, hub: &'h Hub, now: Instant) {
        if self.viewer.is_some() || self.ended.is_some() {
            return;
        }
        let peer = self.udp_peer.unwrap_or(self.http_peer);
        let subscriber = Subscriber::notified(peer, SubscriberKind::Webrtc, self.notify.clone());
        subscriber
            .takes_renditions
            .store(self.estimates, Ordering::Relaxed);
        match hub.admit(hub.webrtc_feed().0, &subscriber) {
            Ok(admission) => {
                log::info!(
                    "WebRTC viewer {peer} connected (session {}, {} watching)",
                    short(&self.id),
                    hub.watchers()
                );
                self.viewer = Some(admission);
                self.adapt = ViewerAdapt::new(hub, &subscriber, self.micros(now));
                self.adapted_at = now;
            }
            Err(refused) => self.end(format!("refused: {}", refused.why)),
        }
    }

    /// Sends `frame` if the chain admits it (else it is dropped, and a
    /// keyframe asked for).
    fn send(
        &mut self,
        frame: &EncodedFrame,
        shared: &mut Shared,
        hub: &'h Hub,
        now: Instant,
        out: &mut Out<'_>,
    ) {
        let Some(viewer) = self.viewer.as_ref().map(|a| a.subscriber().clone()) else {
            return;
        };
        if frame.rendition != viewer.rendition.load(Ordering::SeqCst) {
            // Of the rendition it just moved away from.
            return;
        }
        if !self
            .chain
            .admits(frame, keyframes_of(hub, &viewer, frame.rendition), now)
        {
            viewer.dropped();
            return;
        }
        let data = shared.payload(frame);
        // RTP time from the capture time, so the browser paces frames as
        // they were captured; wallclock for the sender reports.
        let rtp_time = MediaTime::from_90khz(frame.frame.capture_us.saturating_mul(9) / 100);
        let age = Duration::from_micros(clock::now_us().saturating_sub(frame.frame.capture_us));
        let wallclock = now.checked_sub(age).unwrap_or(now);
        let Some(writer) = self.rtc.writer(self.mid) else {
            self.end("its video stopped");
            return;
        };
        if let Err(e) = writer.write(self.pt, wallclock, rtp_time, data) {
            self.end(format!("cannot send a frame: {e}"));
            return;
        }
        viewer.sent(frame, frame.payload().len());
        self.chain.sent(frame);
        self.drain(hub, now, out);
    }

    /// The log line when it ends.
    fn departure(&self) {
        let why = self.ended.as_deref().unwrap_or("ended");
        match &self.viewer {
            Some(a) => {
                let v = a.subscriber();
                let c = &v.counters;
                log::info!(
                    "WebRTC viewer {} left: {why}; sent {} frames ({:.1} MB), dropped {} (session {})",
                    v.peer,
                    c.sent.load(Ordering::Relaxed),
                    c.bytes.load(Ordering::Relaxed) as f64 / 1e6,
                    c.dropped.load(Ordering::Relaxed),
                    short(&self.id)
                );
            }
            None => log::info!(
                "WebRTC session {} from {} ended before it connected: {why}",
                short(&self.id),
                self.http_peer
            ),
        }
    }
}

/// The frame being sent as str0m takes it, made once and shared by every
/// session that sends it: one copy of each frame, not one per viewer.
#[derive(Default)]
/// (Renditions share frame numbers: keyed by both.)
struct Shared(Option<(u64, u8, Arc<[u8]>)>);

impl Shared {
    fn payload(&mut self, frame: &EncodedFrame) -> Arc<[u8]> {
        match &self.0 {
            Some((seq, rendition, data))
                if *seq == frame.frame.seq && *rendition == frame.rendition =>
            {
                data.clone()
            }
            _ => {
                let data: Arc<[u8]> = Arc::from(frame.payload());
                self.0 = Some((frame.frame.seq, frame.rendition, data.clone()));
                data
            }
        }
    }
}

/// Every session of the server; see the module's doc.
pub(crate) struct Sessions<'h> {
    hub: &'h Hub,
    /// Wakes the thread that runs them when a frame comes for one.
    notify: Notify,
    list: Vec<Session<'h>>,
    shared: Shared,
}

impl<'h> Sessions<'h> {
    pub(crate) fn new(hub: &'h Hub, notify: Notify) -> Sessions<'h> {
        Sessions {
            hub,
            notify,
            list: Vec::new(),
            shared: Shared::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Sessions not connected yet.
    pub(crate) fn connecting(&self) -> usize {
        self.list.iter().filter(|s| s.viewer.is_none()).count()
    }

    /// Takes an answered offer into the running sessions, unless too many wait
    /// to connect, the server is full or the stream is over (then 503).
    pub(crate) fn add(
        &mut self,
        answered: Answered,
        http_peer: SocketAddr,
        now: Instant,
    ) -> Result<SessionId, WhepRefusal> {
        let busy = |why: String| refusal(503, "Service Unavailable", why);
        if let Some(end) = self.hub.end() {
            return Err(busy(end.why));
        }
        if self.connecting() >= MAX_CONNECTING {
            return Err(busy(format!(
                "{MAX_CONNECTING} WebRTC sessions are still connecting; try again soon"
            )));
        }
        if self.hub.watchers() >= self.hub.max_viewers {
            return Err(busy(format!(
                "the server is busy: {} viewers already watching",
                self.hub.max_viewers
            )));
        }
        let id = SessionId::random()
            .map_err(|_| refusal(500, "Internal Server Error", "no random session id"))?;
        self.list.push(Session {
            id,
            rtc: answered.rtc,
            mid: answered.mid,
            pt: answered.pt,
            http_peer,
            udp_peer: None,
            viewer: None,
            chain: Chain::new(),
            created: now,
            next: now,
            ended: None,
            notify: self.notify.clone(),
            figures: Figures::default(),
            estimates: answered.estimates,
            adapt: None,
            adapted_at: now,
            estimate: None,
            desired: 0,
        });
        Ok(id)
    }

    /// `DELETE`: ends session `id` with a goodbye to its browser; false when
    /// there is none.
    pub(crate) fn delete(&mut self, id: SessionId, now: Instant, out: &mut Out<'_>) -> bool {
        let Some(i) = self.list.iter().position(|s| s.id == id) else {
            return false;
        };
        let mut s = self.list.swap_remove(i);
        s.close("ended by the browser (DELETE)", self.hub, now, out);
        s.departure();
        true
    }

    /// Keeps the latency a session's page measured (for `/stats`). False when
    /// there is no such session.
    pub(crate) fn latency(&mut self, id: SessionId, report: Report) -> bool {
        let Some(s) = self.list.iter().find(|s| s.id == id) else {
            return false;
        };
        if let Some(viewer) = &s.viewer {
            *viewer
                .subscriber()
                .feedback
                .report
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(report);
        }
        true
    }

    /// A datagram that came to `destination` from `source`: to the session
    /// it belongs to (by its ICE credentials or its address). False when no
    /// session takes it.
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
        out: &mut Out<'_>,
    ) -> bool {
        let Ok(contents) = datagram.try_into() else {
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let hub = self.hub;
        let Some(s) = self
            .list
            .iter_mut()
            .find(|s| s.ended.is_none() && s.rtc.accepts(&input))
        else {
            return false;
        };
        s.udp_peer = Some(source);
        if let Err(e) = s.rtc.handle_input(input) {
            s.end(format!("WebRTC failed: {e}"));
        }
        s.drain(hub, now, out);
        true
    }

    /// Sends each connected session the frame waiting in its slot, if any.
    pub(crate) fn frames(&mut self, now: Instant, out: &mut Out<'_>) {
        let hub = self.hub;
        for s in &mut self.list {
            if s.ended.is_some() {
                continue;
            }
            let Some(viewer) = s.viewer.as_ref().map(|a| a.subscriber().clone()) else {
                continue;
            };
            if let Taken::Value(frame) = viewer.slot.take(Duration::ZERO) {
                s.send(&frame, &mut self.shared, hub, now, out);
            }
        }
    }

    /// Lets time pass for the sessions that asked; ends those that waited too
    /// long to connect. Returns when the next one wants time to pass.
    pub(crate) fn timeouts(&mut self, now: Instant, out: &mut Out<'_>) -> Instant {
        let hub = self.hub;
        let mut next = now + Duration::from_secs(3600);
        for s in &mut self.list {
            if s.ended.is_some() {
                continue;
            }
            if s.next <= now {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    s.end(format!("WebRTC failed: {e}"));
                }
                s.drain(hub, now, out);
            }
            if s.viewer.is_none() {
                let deadline = s.created + CONNECT_TIMEOUT;
                if now >= deadline {
                    s.close(
                        format!("ICE did not connect within {} s", CONNECT_TIMEOUT.as_secs()),
                        hub,
                        now,
                        out,
                    );
                    continue;
                }
                next = next.min(deadline);
            }
            if !s.rtc.is_alive() {
                s.end("the connection closed");
            }
            s.adapt(now);
            next = next.min(s.next);
        }
        next
    }

    /// Forgets the sessions that ended (their viewer places and fan-out
    /// places are given back as they drop), saying why.
    pub(crate) fn reap(&mut self) {
        self.list.retain(|s| {
            if s.ended.is_some() {
                s.departure();
            }
            s.ended.is_none()
        });
    }

    /// Server stop: every session ends with a goodbye.
    pub(crate) fn close_all(&mut self, why: &str, now: Instant, out: &mut Out<'_>) {
        let hub = self.hub;
        for mut s in self.list.drain(..) {
            s.close(why, hub, now, out);
            s.departure();
        }
    }
}

#[cfg(test)]
mod tests;
