//! Sessions driven against a second str0m playing the browser: datagrams
//! handed across in memory, time advanced by hand (5 ms a step), no sockets
//! and no sleeps.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::*;
use crate::media::frame::{FrameInfo, PixelFormat, StreamInfo};
use crate::server::hub::{FramePool, HubSetup};

const BROWSER: &str = "10.0.0.2:50000";
const SERVER: &str = "10.0.0.1:7878";
const HTTP_PEER: &str = "10.0.0.2:40000";
const STEP: Duration = Duration::from_millis(5);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn hub() -> Hub {
    Hub::new(HubSetup {
        payload_format: Some(PixelFormat::H264),
        max_viewers: 4,
        http: true,
        stream: StreamInfo {
            frame: FrameInfo::packed(PixelFormat::Rgb24, 16, 16).unwrap(),
            fps: 30.0,
        },
        codec: "h264".into(),
        codec_settings: String::new(),
        max_payload: 1 << 20,
        name: "t".into(),
        source_name: "test-pattern".into(),
        auth: None,
        rtsp: None,
        ladder: Vec::new(),
        jpeg_ladder: Vec::new(),
    })
}

/// A browser that wants to receive one video track; its offer.
fn browser(config: RtcConfig, now: Instant) -> (Rtc, String, SdpPendingOffer, Mid) {
    let mut rtc = config.build(now);
    rtc.add_local_candidate(Candidate::host(addr(BROWSER), "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    (rtc, offer.to_sdp_string(), pending, mid)
}

/// An access unit as the h264 codec writes it (Annex-B), with made-up
/// contents: SPS, PPS and an IDR slice big enough to be cut in pieces, or one
/// non-IDR slice.
fn access_unit(keyframe: bool, fill: u8) -> Vec<u8> {
    let mut au = Vec::new();
    if keyframe {
        au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0x8d]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        au.extend(std::iter::repeat_n(fill, 4000));
    } else {
        au.extend_from_slice(&[0, 0, 0, 1, 0x41]);
        au.extend(std::iter::repeat_n(fill, 600));
    }
    au
}

/// The browser and the server's sessions, joined in memory.
struct Net<'h> {
    now: Instant,
    browser: Rtc,
    sessions: Sessions<'h>,
    /// What the browser saw: connected, and each frame's bytes.
    connected: bool,
    closed: bool,
    frames: Vec<Vec<u8>>,
    /// The browser's datagrams not yet handed to the server.
    to_server: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
}

impl Net<'_> {
    fn drain_browser(&mut self) {
        loop {
            match self.browser.poll_output().unwrap() {
                Output::Timeout(_) => return,
                Output::Transmit(t) => {
                    self.to_server
                        .push((t.source, t.destination, t.contents.to_vec()))
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::Closed) => self.closed = true,
                Output::Event(Event::MediaData(m)) => self.frames.push(m.data.to_vec()),
                Output::Event(_) => {}
            }
        }
    }

    /// One step: the browser's datagrams to the server, the server's work
    /// (frames, timers), its datagrams to the browser, then time passes.
    fn step(&mut self) {
        let mut to_browser: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        self.drain_browser();
        let to_server = std::mem::take(&mut self.to_server);
        let now = self.now;
        {
            let mut out = |t: &Transmit| {
                to_browser.push((t.source, t.destination, t.contents.to_vec()));
            };
            for (source, destination, data) in to_server {
                assert_eq!(
                    destination,
                    addr(SERVER),
                    "the browser sends to our candidate"
                );
                self.sessions
                    .receive(now, source, destination, &data, &mut out);
            }
            self.sessions.frames(now, &mut out);
            self.sessions.timeouts(now, &mut out);
            self.sessions.reap();
        }
        for (source, destination, data) in to_browser {
            self.deliver(source, destination, &data);
        }
        self.now += STEP;
        self.browser.handle_input(Input::Timeout(self.now)).unwrap();
        self.drain_browser();
    }

    /// A datagram from the server to the browser.
    fn deliver(&mut self, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        assert_eq!(destination, addr(BROWSER));
        let input = Input::Receive(
            self.now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents: data.try_into().unwrap(),
            },
        );
        self.browser.handle_input(input).unwrap();
        self.drain_browser();
    }

    /// Steps until `done`, at most `steps` times; whether it happened.
    fn run_until(&mut self, steps: usize, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..steps {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }
}

fn publish(hub: &Hub, pool: &FramePool, index: u64, keyframe: bool) {
    let mut shared = pool.take();
    let f = Arc::get_mut(&mut shared).unwrap();
    f.encoded = access_unit(keyframe, 0x10 + index as u8);
    f.keyframe = keyframe;
    f.index = index;
    f.passthrough = false;
    f.frame.seq = index;
    f.frame.capture_us = clock::now_us();
    hub.main.publish(&shared);
    pool.give(shared);
}

fn counting_notify() -> (Notify, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let m = n.clone();
    (
        Arc::new(move || {
            m.fetch_add(1, Ordering::Relaxed);
        }),
        n,
    )
}

#[test]
fn a_session_connects_sends_the_chain_answers_a_pli_and_ends_on_delete() {
    let hub = hub();
    let pool = FramePool::default();
    let (notify, notified) = counting_notify();
    let now = Instant::now();
    let (mut rtc, offer, pending, mid) = browser(RtcConfig::new(), now);
    let answered = answer_offer(&offer, &[addr(SERVER)], now, None).expect("answered");
    assert!(
        answered.answer.contains("a=ice-lite"),
        "{}",
        answered.answer
    );
    assert!(answered.answer.contains("H264"), "{}", answered.answer);
    assert!(answered
        .answer
        .contains(&format!("{} typ host", addr(SERVER).port())));
    // An extra candidate (`webrtc-candidates`) is offered as given.
    let nat = answer_offer(&offer, &[addr(SERVER), addr("203.0.113.7:8555")], now, None).unwrap();
    assert!(
        nat.answer.contains("203.0.113.7 8555 typ host"),
        "{}",
        nat.answer
    );
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answered.answer).unwrap(),
        )
        .unwrap();
    let mut sessions = Sessions::new(&hub, notify);
    let id = sessions.add(answered, addr(HTTP_PEER), now).unwrap();
    assert_eq!((sessions.len(), sessions.connecting()), (1, 1));
    assert_eq!(hub.watchers(), 0, "a viewer only once connected");
    let mut net = Net {
        now,
        browser: rtc,
        sessions,
        connected: false,
        closed: false,
        frames: Vec::new(),
        to_server: Vec::new(),
    };
    assert!(
        net.run_until(400, |n| n.connected && hub.watchers() == 1),
        "ICE and DTLS connect within 2 s (simulated)"
    );
    assert_eq!(net.sessions.connecting(), 0);
    let stats = hub.stats();
    assert_eq!(stats.viewers.len(), 1);
    assert_eq!(stats.viewers[0].protocol, SubscriberKind::Webrtc);
    assert_eq!(stats.viewers[0].peer, addr(BROWSER), "the peer ICE found");

    // A keyframe and two frames that follow it; then frame 3 is lost, so 4
    // is not sent (it would not decode) and a keyframe is asked for; 5 is one.
    let asked = hub.keyframes.asked.load(Ordering::Relaxed);
    for (index, keyframe) in [(0, true), (1, false), (2, false), (4, false), (5, true)] {
        publish(&hub, &pool, index, keyframe);
        net.run_until(40, |_| false);
    }
    assert!(
        notified.load(Ordering::Relaxed) >= 5,
        "every frame woke the thread"
    );
    assert!(
        hub.keyframes.asked.load(Ordering::Relaxed) > asked,
        "the gap asked for a keyframe"
    );
    let got: Vec<(usize, bool)> = net
        .frames
        .iter()
        .map(|f| {
            (
                f.len(),
                f.windows(5)
                    .any(|w| w == [0, 0, 0, 1, 0x65] || w[1..] == [0, 0, 1, 0x65]),
            )
        })
        .collect();
    assert_eq!(got.len(), 4, "frames 0, 1, 2 and 5, not 4: {got:?}");
    assert!(got[0].1 && got[3].1 && !got[1].1 && !got[2].1, "{got:?}");
    for (frame, fill) in net.frames.iter().zip([0x10u8, 0x11, 0x12, 0x15]) {
        assert!(
            frame.ends_with(&[fill; 64]),
            "frame bytes arrive whole and in order"
        );
    }
    let viewer = hub.stats().viewers[0].clone();
    assert_eq!((viewer.sent, viewer.dropped), (4, 1), "{viewer:?}");

    // The browser lost a picture: its PLI asks the encoder for a keyframe.
    let asked = hub.keyframes.asked.load(Ordering::Relaxed);
    net.browser
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("the browser receives")
        .request_keyframe(KeyframeRequestKind::Pli);
    net.run_until(40, |_| false);
    assert!(
        hub.keyframes.asked.load(Ordering::Relaxed) > asked,
        "the PLI arrived"
    );
    publish(&hub, &pool, 6, false);
    net.run_until(40, |_| false);
    assert_eq!(net.frames.len(), 4, "after a PLI, nothing until a keyframe");

    // Frames until str0m's reports (one a second) reach /stats with an RTT
    // from the browser's receiver reports in them: at least three seconds,
    // at most ten (0.2 s a frame; RTCP intervals are randomised, RFC 3550 6.3.1, so a fixed
    // three seconds held an RTT in most runs, not all).
    let mut index = 7;
    while index < 22
        || (index < 57
            && hub.stats().viewers[0]
                .webrtc
                .is_none_or(|f| f.rtt_ms.is_none()))
    {
        publish(&hub, &pool, index, index == 7);
        net.run_until(40, |_| false);
        index += 1;
    }
    let figures = hub.stats().viewers[0].webrtc.expect("WebRTC figures");
    assert!(figures.plis >= 1, "the PLI is counted: {figures:?}");
    assert!(figures.bitrate_kbit > 0.0, "{figures:?}");
    let rtt = figures.rtt_ms.expect("an RTT from a receiver report");
    assert!((0.0..100.0).contains(&rtt), "{figures:?}");
    assert_eq!(figures.packets_lost, Some(0), "{figures:?}");
    let metrics = crate::server::metrics::metrics(&hub.stats());
    assert!(
        metrics.contains(&format!(
            "livestream_webrtc_viewer_plis_total{{peer=\"{BROWSER}\"}} {}",
            figures.plis
        )),
        "{metrics}"
    );

    // DELETE: the viewer's places are given back, the browser told.
    let mut out = |_: &Transmit| {};
    assert!(!net
        .sessions
        .delete(SessionId::from_bytes([0; 16]), net.now, &mut out));
    let mut goodbye = Vec::new();
    assert!(net.sessions.delete(id, net.now, &mut |t: &Transmit| {
        goodbye.push((t.source, t.destination, t.contents.to_vec()))
    }));
    assert!(!goodbye.is_empty(), "a goodbye went out");
    for (source, destination, data) in goodbye {
        net.deliver(source, destination, &data);
    }
    assert!(net.closed, "the browser heard it");
    assert_eq!(net.sessions.len(), 0);
    assert_eq!(hub.watchers(), 0);
    assert_eq!(hub.main.lock().len(), 0, "off the fan-out");
    assert!(hub.stats().viewers.is_empty());
    assert!(!net.sessions.delete(id, net.now, &mut out), "only once");
}

#[test]
fn cumulative_lost_is_signed_24_bits() {
    assert_eq!(cumulative_lost(0), 0);
    assert_eq!(cumulative_lost(5), 5);
    assert_eq!(cumulative_lost(0x7f_ffff), 0x7f_ffff);
    assert_eq!(cumulative_lost(0xff_ffff), -1, "one duplicate too many");
    assert_eq!(cumulative_lost(0x80_0000), -0x80_0000);
}

#[test]
fn a_session_that_never_connects_ends_after_the_timeout() {
    let hub = hub();
    let (notify, _) = counting_notify();
    let now = Instant::now();
    let mut sessions = Sessions::new(&hub, notify);
    let (_rtc, offer, _, _) = browser(RtcConfig::new(), now);
    let answered = answer_offer(&offer, &[addr(SERVER)], now, None).unwrap();
    sessions.add(answered, addr(HTTP_PEER), now).unwrap();
    let mut out = |_: &Transmit| {};
    let next = sessions.timeouts(now, &mut out);
    assert!(next <= now + CONNECT_TIMEOUT, "it wakes for the deadline");
    sessions.timeouts(now + CONNECT_TIMEOUT - STEP, &mut out);
    sessions.reap();
    assert_eq!(sessions.len(), 1, "not before the deadline");
    sessions.timeouts(now + CONNECT_TIMEOUT, &mut out);
    sessions.reap();
    assert_eq!(sessions.len(), 0);
    assert_eq!(hub.watchers(), 0);
}

#[test]
fn sessions_are_bounded_and_refused_when_the_server_is_full_or_over() {
    let hub = hub();
    let (notify, _) = counting_notify();
    let now = Instant::now();
    let mut sessions = Sessions::new(&hub, notify);
    let offer = browser(RtcConfig::new(), now).1;
    for _ in 0..MAX_CONNECTING {
        let answered = answer_offer(&offer, &[addr(SERVER)], now, None).unwrap();
        sessions.add(answered, addr(HTTP_PEER), now).unwrap();
    }
    let answered = answer_offer(&offer, &[addr(SERVER)], now, None).unwrap();
    let refused = sessions.add(answered, addr(HTTP_PEER), now).unwrap_err();
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.detail.contains("still connecting"), "{refused:?}");
    let mut out = |_: &Transmit| {};
    sessions.close_all("stop", now, &mut out);
    assert_eq!(sessions.len(), 0);
    hub.finish("the source ended", true);
    let answered = answer_offer(&offer, &[addr(SERVER)], now, None).unwrap();
    let refused = sessions.add(answered, addr(HTTP_PEER), now).unwrap_err();
    assert_eq!(
        (refused.status, refused.detail.as_str()),
        (503, "the source ended")
    );
}

#[test]
fn offers_without_usable_video_are_refused_with_the_reason() {
    let now = Instant::now();
    let candidates = [addr(SERVER)];
    let status = |sdp: &str| {
        answer_offer(sdp, &candidates, now, None)
            .map(|_| ())
            .unwrap_err()
    };
    let r = status("v=0\r\nthis is not SDP\r\n");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.detail.starts_with("not an SDP offer"), "{r:?}");

    // Video, but only VP8.
    let (_, vp8, _, _) = browser(RtcConfig::new().clear_codecs().enable_vp8(true), now);
    let r = status(&vp8);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.detail.contains("H.264"), "{r:?}");

    // Audio only.
    let mut rtc = RtcConfig::new().build(now);
    rtc.add_local_candidate(Candidate::host(addr(BROWSER), "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (audio, _) = api.apply().unwrap();
    let r = status(&audio.to_sdp_string());
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.detail.contains("no video"), "{r:?}");

    // Video the browser would send, not receive.
    let mut rtc = RtcConfig::new().build(now);
    rtc.add_local_candidate(Candidate::host(addr(BROWSER), "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (send_only, _) = api.apply().unwrap();
    assert_eq!(status(&send_only.to_sdp_string()).status, 422);
}
