//! RTSP viewers (VLC, ffmpeg, GStreamer, Home Assistant, NVRs, media
//! servers): RTSP 1.0 on the server's port, told from HTTP by its first bytes
//! (`net/sniff.rs`). The connection's thread (`viewer-ADDR`) answers OPTIONS,
//! DESCRIBE, SETUP and PLAY; from PLAY on it sends the H.264 stream as RTP
//! (`net/rtp.rs`), over the RTSP connection (interleaved) or over UDP, through
//! the same send loop, newest-wins slot and keyframe chain as a native viewer
//! (`send.rs`), while `rtsp-rx` reads the client's further requests
//! (GET_PARAMETER keep-alives, TEARDOWN) and receiver reports, answering
//! through the sender. Over UDP, RTP leaves from one shared socket and RTCP
//! from the next port, where the `rtsp-rtcp` thread reads what clients report.
//!
//! With pairing on, every request but OPTIONS needs the server's token as the
//! password of basic or digest auth (`rtsp://user:TOKEN@host:port/stream`).

use std::collections::HashMap;
use std::io::{IoSlice, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rtsp_types::{Method, Request};

use crate::media::clock;
use crate::media::frame::PixelFormat;
use crate::net::io::{write_all_vectored, DeadlineReader};
use crate::net::rtp::{
    ntp_time, reception_reports, write_sender_report, H264Packets, ReceptionReport, RtpPacket,
    RtpStream, H264_PAYLOAD_TYPE, MAX_PAYLOAD,
};
use crate::net::rtp_jpeg::{rtp_jpeg, JpegPackets, RtpJpegError, JPEG_PAYLOAD_TYPE};
use crate::net::rtsp::{
    self, authorized, challenges, choose_transport, describe, method_name, read_message,
    transport_reply, Delivery, Description, Incoming, Media, RtspError, MAX_INTERLEAVED,
    MAX_REQUEST,
};

use super::hub::{Admission, EncodedFrame, Handshaking, Hub, Subscriber, SubscriberKind};
use super::send::{log_departure, send_loop, Framing, SendEnd, WRITE_TIMEOUT};

/// Sender reports go out this often (RFC 3550 suggests 5 s at least for a
/// small session; clients map RTP time to wall time with the first one).
const SENDER_REPORT_EVERY: Duration = Duration::from_secs(2);
/// Answers waiting for the sender to write, at most.
const MAX_OUTBOX: usize = 64 << 10;
/// The paths of the stream: `rtsp://host:port/stream` (and `/`).
const PATHS: [&str; 2] = ["/stream", "/"];

/// What every RTSP connection shares: the UDP sockets, the stream's latest
/// parameter sets (for DESCRIBE), a session id for the SDP.
pub(crate) struct RtspShared {
    pub(crate) udp: Option<RtspUdp>,
    /// A session with no request and no receiver report for this long ends
    /// (announced in each `Session` header, so clients keep it alive); so
    /// does a connection that sends no next request in this time.
    pub(crate) timeout: Duration,
    parameter_sets: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
    /// Whether the latest JPEG fits RTP/JPEG, for a JPEG stream.
    jpeg: Mutex<Option<Result<(), RtpJpegError>>>,
    sdp_session: u64,
}

impl RtspShared {
    pub(crate) fn new(udp: Option<RtspUdp>, timeout: Duration) -> RtspShared {
        RtspShared {
            udp,
            timeout,
            parameter_sets: Mutex::new(None),
            jpeg: Mutex::new(None),
            sdp_session: u64::from(fastrand::u32(..)),
        }
    }

    /// Notes whether a JPEG of the stream fits RTP/JPEG (called by the
    /// capture thread for each; a walk of its markers, no allocation).
    pub(crate) fn jpeg(&self, jpeg: &[u8]) {
        let fits = rtp_jpeg(jpeg).map(|_| ());
        let mut kept = self.jpeg.lock().unwrap_or_else(|e| e.into_inner());
        if kept.as_ref() != Some(&fits) {
            if let Err(e) = &fits {
                log::warn!("RTSP clients cannot get this stream's JPEG: {e}");
            }
            *kept = Some(fits);
        }
    }

    /// Keeps the SPS and PPS of a keyframe's access unit when they are new
    /// (called by the capture thread; allocates only when they change).
    pub(crate) fn keyframe(&self, au: &[u8]) {
        let Some((sps, pps)) = rtsp::parameter_sets(au) else {
            return;
        };
        let mut kept = self
            .parameter_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if kept
            .as_ref()
            .is_none_or(|(s, p)| s.as_slice() != sps || p.as_slice() != pps)
        {
            *kept = Some((sps.to_vec(), pps.to_vec()));
        }
    }
}

/// The two UDP sockets (RTP on an even port, RTCP on the next) that every
/// UDP session shares, and which session each client's RTCP belongs to.
pub(crate) struct RtspUdp {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    ports: (u16, u16),
    /// Client RTCP address → its session's state.
    sessions: Mutex<HashMap<SocketAddr, Weak<Control>>>,
}

impl RtspUdp {
    /// Binds the pair on `ip`: at `port` and `port + 1` when given, else the
    /// first free even pair the system gives.
    pub(crate) fn bind(ip: IpAddr, port: u16) -> std::io::Result<RtspUdp> {
        let pair = |p: u16| -> std::io::Result<(UdpSocket, UdpSocket)> {
            let rtp = UdpSocket::bind((ip, p))?;
            let p = rtp.local_addr()?.port();
            if p % 2 != 0 || p == u16::MAX {
                return Err(std::io::Error::other(format!("odd RTP port {p}")));
            }
            let rtcp = UdpSocket::bind((ip, p + 1))?;
            Ok((rtp, rtcp))
        };
        let (rtp, rtcp) = if port != 0 {
            pair(port)?
        } else {
            let mut tries = 0;
            loop {
                match pair(0) {
                    Ok(p) => break p,
                    Err(e) if tries >= 20 => return Err(e),
                    Err(_) => tries += 1,
                }
            }
        };
        rtp.set_nonblocking(true)?;
        rtcp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let ports = (rtp.local_addr()?.port(), rtcp.local_addr()?.port());
        Ok(RtspUdp {
            rtp,
            rtcp,
            ports,
            sessions: Mutex::default(),
        })
    }

    pub(crate) fn ports(&self) -> (u16, u16) {
        self.ports
    }
}

/// The `rtsp-rtcp` thread: reads receiver reports sent to the RTCP port and
/// gives each to the session whose client sent it, until `stop`.
pub(crate) fn rtcp_loop(udp: &RtspUdp, stop: &AtomicBool) {
    let mut buf = [0u8; MAX_INTERLEAVED];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match udp.rtcp.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // ICMP port unreachable from a client gone, reported on a later
            // read: not this socket's failure.
            Err(e) => {
                log::debug!("RTSP RTCP socket: {e}");
                continue;
            }
        };
        let control = {
            let mut sessions = udp.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.retain(|_, s| s.strong_count() > 0);
            sessions.get(&from).and_then(Weak::upgrade)
        };
        // Reports from an address with no session are ignored.
        if let Some(control) = control {
            control.rtcp(&buf[..n]);
        }
    }
}

/// A session's state that its threads share: what the client asked for and
/// said back, and answers waiting for the sender to write.
pub(crate) struct Control {
    peer: SocketAddr,
    /// Responses to requests read while playing, for the sender to write.
    outbox: Mutex<Vec<u8>>,
    /// Why the session ends, once it does.
    ended: Mutex<Option<String>>,
    /// When the client was last heard (a request, a report), server clock µs.
    heard_us: AtomicU64,
    /// Its latest reception report.
    report: Mutex<Option<ReceptionReport>>,
    /// Packets it had lost at its last report.
    lost: AtomicU64,
    /// Its decoder will show damage: the next frame it gets must be a keyframe.
    wants_keyframe: AtomicBool,
}

impl Control {
    pub(crate) fn new(peer: SocketAddr) -> Control {
        Control {
            peer,
            outbox: Mutex::default(),
            ended: Mutex::default(),
            heard_us: AtomicU64::new(clock::now_us()),
            report: Mutex::default(),
            lost: AtomicU64::new(0),
            wants_keyframe: AtomicBool::new(false),
        }
    }

    pub(crate) fn end(&self, why: impl Into<String>) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.is_none() {
            *ended = Some(why.into());
        }
    }

    pub(crate) fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A compound RTCP packet from the client: its reception reports. Packets
    /// it lost (over UDP) mean a damaged picture until the next keyframe: ask
    /// for one.
    pub(crate) fn rtcp(&self, packet: &[u8]) {
        self.heard_us.store(clock::now_us(), Ordering::Relaxed);
        let result = reception_reports(packet, |r| {
            let lost = r.cumulative_lost.max(0) as u64;
            if lost > self.lost.swap(lost, Ordering::Relaxed) {
                self.wants_keyframe.store(true, Ordering::Relaxed);
            }
            *self.report.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        });
        if let Err(e) = result {
            log::debug!("RTSP client {}: RTCP: {e}", self.peer);
        }
    }
}

/// Where a connection is (RFC 2326 appendix A, server side).
enum State {
    Init,
    /// SETUP done: the session, how to deliver, the track's URL.
    Ready {
        session: String,
        delivery: Delivery,
        track_url: String,
        stream: RtpStream,
    },
}

/// One RTSP connection's request handling, on its thread until PLAY, then
/// on `rtsp-rx`.
struct Connection<'h> {
    hub: &'h Hub,
    peer: SocketAddr,
    /// Our own address as the client reached it (for the SDP).
    local: IpAddr,
    /// The digest nonce of this connection.
    nonce: String,
    state: State,
    control: Arc<Control>,
}

/// An answer to one request.
struct Answer {
    status: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// After writing it: start playing, or end the connection.
    then: Then,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Then {
    Continue,
    Play,
    Close,
}

impl Answer {
    fn new(status: u16, reason: &'static str) -> Answer {
        Answer {
            status,
            reason,
            headers: Vec::new(),
            body: Vec::new(),
            then: Then::Continue,
        }
    }

    fn text(status: u16, reason: &'static str, why: impl Into<String>) -> Answer {
        let mut a = Answer::new(status, reason);
        let mut body = why.into().into_bytes();
        body.push(b'\n');
        a.body = body;
        a.headers.push(("Content-Type", "text/plain".into()));
        a
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    /// The response's bytes, with `cseq` echoed.
    fn write_into(&self, cseq: Option<u32>, out: &mut Vec<u8>) {
        use std::fmt::Write as _;
        let mut head = String::with_capacity(256);
        let _ = write!(head, "RTSP/1.0 {} {}\r\n", self.status, self.reason);
        if let Some(cseq) = cseq {
            let _ = write!(head, "CSeq: {cseq}\r\n");
        }
        head.push_str("Server: livestream\r\n");
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if !self.body.is_empty() {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// The request's `CSeq`: digits only, else none.
fn cseq<B: AsRef<[u8]>>(request: &Request<B>) -> Option<u32> {
    request
        .header(&rtsp_types::headers::CSEQ)
        .and_then(|v| v.as_str().trim().parse().ok())
}

/// The path of a request's URL, `/` for `*` or none.
fn path_of<B: AsRef<[u8]>>(request: &Request<B>) -> &str {
    request.request_uri().map_or("/", |u| u.path())
}

impl Connection<'_> {
    fn timeout(&self) -> Duration {
        self.hub
            .rtsp
            .as_ref()
            .map_or(Duration::from_secs(60), |r| r.timeout)
    }

    /// Answers one request.
    fn answer<B: AsRef<[u8]>>(&mut self, request: &Request<B>) -> Answer {
        let method = request.method();
        if let Some(auth) = &self.hub.auth {
            let given = request
                .header(&rtsp_types::headers::AUTHORIZATION)
                .map(|v| v.as_str());
            let name = method_name(method);
            if *method != Method::Options
                && !authorized(given, name, &self.nonce, &auth.http_token())
            {
                if given.is_some() {
                    log::warn!("RTSP client {} refused: wrong token for {name}", self.peer);
                }
                let [digest, basic] = challenges(&self.nonce);
                return Answer::text(
                    401,
                    "Unauthorized",
                    "this stream needs the token `livestream serve` printed, as the password: \
                     rtsp://user:TOKEN@host:port/stream",
                )
                .header("WWW-Authenticate", digest)
                .header("WWW-Authenticate", basic);
            }
        }
        match method {
            Method::Options => Answer::new(200, "OK").header(
                "Public",
                "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
            ),
            Method::Describe => self.describe(request),
            Method::Setup => self.setup(request),
            Method::Play => self.play(request),
            Method::GetParameter | Method::SetParameter => self.keep_alive(request),
            Method::Teardown => {
                let mut a = Answer::new(200, "OK");
                a.then = Then::Close;
                a
            }
            Method::Pause => Answer::text(
                501,
                "Not Implemented",
                "a live stream cannot pause: TEARDOWN and PLAY again",
            ),
            Method::Announce | Method::Record => Answer::text(
                405,
                "Method Not Allowed",
                "this server sends its camera; it takes no stream",
            )
            .header(
                "Allow",
                "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER",
            ),
            other => Answer::text(
                501,
                "Not Implemented",
                format!("method {}", method_name(other)),
            ),
        }
    }

    fn describe<B: AsRef<[u8]>>(&self, request: &Request<B>) -> Answer {
        let path = path_of(request);
        if !PATHS.contains(&path.trim_end_matches('/')) && path != "/" {
            return Answer::text(404, "Not Found", "the stream is at /stream");
        }
        if let Err(why) = carried(self.hub) {
            return Answer::text(415, "Unsupported Media Type", why);
        }
        let Some(shared) = &self.hub.rtsp else {
            return Answer::new(503, "Service Unavailable");
        };
        // No keyframe yet (just started): ask for one and give it a moment,
        // so the SDP can carry the parameter sets (clients take them in band
        // too), or the first JPEG can say whether RTP/JPEG carries it.
        let deadline = Instant::now() + Duration::from_secs(1);
        let (sets, jpeg) = loop {
            let sets = shared
                .parameter_sets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let jpeg = shared
                .jpeg
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if sets.is_some() || jpeg.is_some() || Instant::now() >= deadline {
                break (sets, jpeg);
            }
            self.hub.keyframes.ask();
            std::thread::sleep(Duration::from_millis(20));
        };
        let media = if self.hub.payload_format == Some(PixelFormat::Jpeg) {
            if let Some(Err(e)) = jpeg {
                return Answer::text(
                    415,
                    "Unsupported Media Type",
                    format!("this stream's JPEG does not fit RTP/JPEG (RFC 2435): {e}"),
                );
            }
            Media::Jpeg
        } else {
            Media::H264(sets.as_ref().map(|(s, p)| (s.as_slice(), p.as_slice())))
        };
        let sdp = describe(&Description {
            origin: self.local,
            session_id: shared.sdp_session,
            name: &self.hub.name,
            media,
            width: self.hub.stream.frame.width,
            height: self.hub.stream.frame.height,
            fps: self.hub.stream.fps,
        });
        let base = request.request_uri().map_or_else(
            || "rtsp://livestream/stream/".to_string(),
            |u| {
                let mut u = u.clone();
                let _ = u.set_password(None);
                let _ = u.set_username("");
                let s = u.to_string();
                if s.ends_with('/') {
                    s
                } else {
                    s + "/"
                }
            },
        );
        let mut a = Answer::new(200, "OK")
            .header("Content-Type", "application/sdp")
            .header("Content-Base", base);
        a.body = sdp.into_bytes();
        a
    }

    fn setup<B: AsRef<[u8]>>(&mut self, request: &Request<B>) -> Answer {
        if matches!(self.state, State::Ready { .. }) {
            return Answer::text(
                459,
                "Aggregate Operation Not Allowed",
                "one track per session, set up already",
            );
        }
        if let Err(why) = carried(self.hub) {
            return Answer::text(415, "Unsupported Media Type", why);
        }
        let path = path_of(request);
        let last = path.rsplit('/').next().unwrap_or("");
        let base = path.trim_end_matches(last).trim_end_matches('/');
        let known = PATHS.iter().any(|p| p.trim_end_matches('/') == base);
        if !(last == "trackID=0" && (known || base.is_empty()))
            && !PATHS.contains(&path.trim_end_matches('/'))
        {
            return Answer::text(404, "Not Found", "the track is trackID=0 of /stream");
        }
        let delivery = match choose_transport(request) {
            Ok(d) => d,
            Err(e) => {
                return Answer::text(461, "Unsupported Transport", e.to_string()).header(
                    "Transport",
                    "RTP/AVP/TCP;unicast;interleaved=0-1,RTP/AVP;unicast",
                )
            }
        };
        let server_ports = match (&delivery, &self.hub.rtsp) {
            (Delivery::Udp { .. }, Some(RtspShared { udp: Some(u), .. })) => u.ports,
            (Delivery::Udp { .. }, _) => {
                return Answer::text(
                    461,
                    "Unsupported Transport",
                    "no UDP here: use RTP over TCP (ffmpeg: -rtsp_transport tcp)",
                )
                .header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")
            }
            _ => (0, 0),
        };
        let payload_type = if self.hub.payload_format == Some(PixelFormat::Jpeg) {
            JPEG_PAYLOAD_TYPE
        } else {
            H264_PAYLOAD_TYPE
        };
        let stream = RtpStream::new(payload_type, fastrand::u64(..));
        let session = format!("{:016X}", fastrand::u64(..));
        let a = Answer::new(200, "OK")
            .header(
                "Transport",
                transport_reply(delivery, server_ports, stream.ssrc),
            )
            .header(
                "Session",
                format!("{session};timeout={}", self.timeout().as_secs()),
            );
        let track_url = request.request_uri().map_or_else(String::new, |u| {
            let mut u = u.clone();
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string().chars().take(1024).collect()
        });
        self.state = State::Ready {
            session,
            delivery,
            track_url,
            stream,
        };
        a
    }

    /// The session named by the request is ours; `Err` is the answer if not.
    fn check_session<B: AsRef<[u8]>>(&self, request: &Request<B>) -> Result<&String, Answer> {
        let State::Ready { session, .. } = &self.state else {
            return Err(Answer::text(
                455,
                "Method Not Valid in This State",
                "SETUP first",
            ));
        };
        let given = request
            .header(&rtsp_types::headers::SESSION)
            .map(|v| v.as_str().split(';').next().unwrap_or("").trim());
        if given != Some(session.as_str()) {
            return Err(Answer::text(454, "Session Not Found", "no such session"));
        }
        Ok(session)
    }

    fn play<B: AsRef<[u8]>>(&mut self, request: &Request<B>) -> Answer {
        let session = match self.check_session(request) {
            Ok(s) => s.clone(),
            Err(a) => return a,
        };
        let State::Ready {
            track_url, stream, ..
        } = &self.state
        else {
            unreachable!("checked by check_session")
        };
        let rtptime = rtp_time(clock::now_us(), stream.ssrc);
        let mut a = Answer::new(200, "OK")
            .header("Session", session)
            .header("Range", "npt=0.000-")
            .header(
                "RTP-Info",
                format!("url={track_url};seq={};rtptime={rtptime}", stream.next_seq),
            );
        a.then = Then::Play;
        a
    }

    fn keep_alive<B: AsRef<[u8]>>(&self, request: &Request<B>) -> Answer {
        // Without a session header: an OPTIONS-like ping, also fine.
        if request.header(&rtsp_types::headers::SESSION).is_some() {
            if let Err(a) = self.check_session(request) {
                return a;
            }
        }
        self.control
            .heard_us
            .store(clock::now_us(), Ordering::Relaxed);
        Answer::new(200, "OK")
    }
}

/// Whether RTSP carries this server's stream: H.264, or JPEG; else why not.
fn carried(hub: &Hub) -> Result<(), String> {
    match hub.payload_format {
        Some(PixelFormat::H264 | PixelFormat::Jpeg) => Ok(()),
        _ => Err(format!(
            "RTSP here carries H.264 or JPEG, and this server's codec is {}: \
             set codec = \"h264\" (or \"auto\")",
            hub.codec
        )),
    }
}

/// The RTP time (90 kHz) of a moment on the server's clock: its own offset
/// for each stream (`ssrc` stands in for a random one), as RFC 3550 asks.
fn rtp_time(us: u64, ssrc: u32) -> u32 {
    ((us as u128 * 9 / 100) as u32).wrapping_add(ssrc.rotate_left(16))
}

/// A random digest nonce for one connection.
fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    let rng = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&rng, &mut bytes).is_err() {
        // Never seen; unique still, if guessable.
        bytes = (u128::from(fastrand::u64(..)) << 64 | u128::from(clock::now_us())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The connection's thread, after its first bytes said RTSP.
pub(crate) fn serve(
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    stop: &AtomicBool,
    deadline: Instant,
    handshaking: Handshaking,
) {
    let local = stream
        .local_addr()
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let mut conn = Connection {
        hub,
        peer,
        local,
        nonce: new_nonce(),
        state: State::Init,
        control: Arc::new(Control::new(peer)),
    };
    let mut inbuf = Vec::with_capacity(MAX_REQUEST);
    let mut out = Vec::with_capacity(1024);
    // Requests until PLAY: the first within the handshake's deadline, the
    // others each within the session timeout.
    let mut deadline = deadline;
    loop {
        let request = match next_request(stream, &mut inbuf, deadline, stop) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(why) => {
                log::debug!("RTSP client {peer}: {why}");
                return;
            }
        };
        deadline = Instant::now() + conn.timeout();
        out.clear();
        let mut admission = None;
        let then = match &request {
            Ok((request, used)) => {
                let mut answer = conn.answer(request);
                if answer.then == Then::Play {
                    // Admitted like any viewer before the answer says yes.
                    let viewer = Subscriber::new(peer, SubscriberKind::Rtsp);
                    match hub.admit(&hub.main, &viewer) {
                        Ok(a) => admission = Some(a),
                        Err(refused) => {
                            log::warn!("RTSP client {peer} refused: {}", refused.why);
                            answer = Answer::text(453, "Not Enough Bandwidth", refused.why);
                            answer.then = Then::Close;
                        }
                    }
                }
                answer.write_into(cseq(request), &mut out);
                let then = answer.then;
                let used = *used;
                inbuf.drain(..used);
                then
            }
            Err(e) => {
                Answer::text(400, "Bad Request", e.to_string()).write_into(None, &mut out);
                Then::Close
            }
        };
        if let Err(e) = (&*stream).write_all(&out) {
            log::debug!("RTSP client {peer}: {e}");
            return;
        }
        match (then, admission) {
            (Then::Play, Some(admission)) => {
                drop(handshaking);
                return play(stream, conn, admission, inbuf, stop);
            }
            (Then::Continue, _) => {}
            _ => return,
        }
    }
}

/// One parsed request with the bytes it took, or why the bytes are none.
type Parsed = Result<(Request<Vec<u8>>, usize), RtspError>;

/// Reads until `inbuf` holds a whole request (interleaved data before it is
/// read past). `Ok(None)`: the client left, or the server stops.
fn next_request(
    stream: &TcpStream,
    inbuf: &mut Vec<u8>,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Option<Parsed>, String> {
    let mut reader = DeadlineReader { stream, deadline };
    let mut chunk = [0u8; 2048];
    loop {
        match read_message(inbuf) {
            Ok(Some((Incoming::Request(r), used))) => {
                let owned = r.map_body(|b| b.to_vec());
                return Ok(Some(Ok((owned, used))));
            }
            Ok(Some((Incoming::Interleaved { .. }, used))) => {
                inbuf.drain(..used);
                continue;
            }
            Ok(None) => {}
            Err(e) => return Ok(Some(Err(e))),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = match std::io::Read::read(&mut reader, &mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) => return Err(format!("no complete request in time: {e}")),
        };
        inbuf.extend_from_slice(&chunk[..n]);
    }
}

/// PLAY: admitted like any viewer, the stream goes out on this thread while
/// `rtsp-rx` reads the rest of the conversation.
fn play(
    stream: &TcpStream,
    conn: Connection<'_>,
    admission: Admission<'_>,
    inbuf: Vec<u8>,
    stop: &AtomicBool,
) {
    let hub = conn.hub;
    let peer = conn.peer;
    let State::Ready {
        delivery,
        stream: rtp,
        ..
    } = conn.state
    else {
        return;
    };
    let control = conn.control.clone();
    let conn_timeout = conn.timeout();
    let udp = match delivery {
        Delivery::Udp {
            rtp: rtp_port,
            rtcp,
        } => {
            let Some(u) = hub.rtsp.as_ref().and_then(|r| r.udp.as_ref()) else {
                return;
            };
            let (rtp_to, rtcp_to) = (
                SocketAddr::new(peer.ip(), rtp_port),
                SocketAddr::new(peer.ip(), rtcp),
            );
            u.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(rtcp_to, Arc::downgrade(&control));
            Some((u, rtp_to, rtcp_to))
        }
        Delivery::Interleaved { .. } => None,
    };
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    log::info!(
        "RTSP client {peer} playing over {} ({} watching)",
        if udp.is_some() { "UDP" } else { "TCP" },
        hub.watchers()
    );
    let viewer = admission.subscriber();
    let why = std::thread::scope(|scope| {
        let rx = std::thread::Builder::new()
            .name("rtsp-rx".into())
            .spawn_scoped(scope, || receive(stream, conn, inbuf, delivery));
        if let Err(e) = rx {
            control.end(format!("no thread for its requests: {e}"));
        }
        let mut framing = RtpFraming {
            control: &control,
            silence_ends: true,
            timeout: conn_timeout,
            viewer,
            delivery,
            udp,
            rtp,
            cname: format!("livestream@{}", hub.name),
            report: Vec::with_capacity(128),
            last_report: None,
            datagram: Vec::with_capacity(MAX_PAYLOAD + 200),
            told: false,
            reported: None,
        };
        let why = send_loop(stream, stream, viewer, hub, stop, &mut framing);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        // What the client did (a TEARDOWN, a close) says more than the write
        // that failed after it.
        match control.ended() {
            Some(ended) => SendEnd::Ended(ended),
            None => why,
        }
    });
    if let Some((u, _, rtcp_to)) = udp {
        u.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rtcp_to);
    }
    log_departure(viewer, &why);
}

/// The `rtsp-rx` thread: reads the client's requests and interleaved RTCP
/// while it plays, answering through the sender, until the client leaves or
/// tears down.
fn receive(stream: &TcpStream, mut conn: Connection<'_>, mut inbuf: Vec<u8>, delivery: Delivery) {
    let control = conn.control.clone();
    let rtcp_channel = match delivery {
        Delivery::Interleaved { rtp } => Some(rtp.wrapping_add(1)),
        Delivery::Udp { .. } => None,
    };
    let mut chunk = [0u8; 2048];
    let mut out = Vec::new();
    let _ = stream.set_read_timeout(None);
    loop {
        loop {
            match read_message(&inbuf) {
                Ok(Some((Incoming::Interleaved { channel, data }, used))) => {
                    if Some(channel) == rtcp_channel {
                        control.rtcp(data);
                    }
                    inbuf.drain(..used);
                }
                Ok(Some((Incoming::Request(request), used))) => {
                    out.clear();
                    control.heard_us.store(clock::now_us(), Ordering::Relaxed);
                    let answer = if *request.method() == Method::Play {
                        // Playing already: a second PLAY changes nothing.
                        match conn.check_session(&request) {
                            Ok(_) => Answer::new(200, "OK"),
                            Err(a) => a,
                        }
                    } else {
                        conn.answer(&request)
                    };
                    answer.write_into(cseq(&request), &mut out);
                    {
                        let mut outbox = control.outbox.lock().unwrap_or_else(|e| e.into_inner());
                        // Answers pile up only when the client sends requests
                        // and reads nothing: bounded, like every buffer here.
                        if outbox.len() + out.len() > MAX_OUTBOX {
                            drop(outbox);
                            control.end("it sends requests and does not read the answers");
                            // The sender may be blocked writing to it: now.
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        outbox.extend_from_slice(&out);
                    }
                    inbuf.drain(..used);
                    if answer.then == Then::Close {
                        control.end("the client tore the session down");
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    control.end(format!("it sent what is not RTSP: {e}"));
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
        let n = match std::io::Read::read(&mut &*stream, &mut chunk) {
            Ok(0) => {
                control.end("the client closed the connection");
                return;
            }
            // (ETIMEDOUT: it vanished without a FIN, `accept.rs` DEAD_PEER.)
            Err(e) => {
                control.end(format!("its connection failed: {e}"));
                return;
            }
            Ok(n) => n,
        };
        inbuf.extend_from_slice(&chunk[..n]);
    }
}

/// RTP as one RTSP client gets it: interleaved in the RTSP connection
/// (`$`, channel, length, packet) or in UDP datagrams; sender reports every
/// few seconds; the answers `rtsp-rx` left, written between frames.
pub(crate) struct RtpFraming<'a> {
    control: &'a Control,
    /// A client silent for the session timeout is gone (not so for a media
    /// server we publish to, which need not talk back).
    silence_ends: bool,
    /// The session timeout.
    timeout: Duration,
    viewer: &'a Subscriber,
    delivery: Delivery,
    /// The shared sockets, and where RTP and RTCP go.
    udp: Option<(&'a RtspUdp, SocketAddr, SocketAddr)>,
    rtp: RtpStream,
    cname: String,
    report: Vec<u8>,
    last_report: Option<Instant>,
    /// One UDP datagram being put together.
    datagram: Vec<u8>,
    /// It was told once that frames are skipped.
    told: bool,
    /// At the last receiver report (over UDP): its highest sequence number,
    /// when it came, and the bytes sent by then.
    reported: Option<(u32, Instant, u64)>,
}

/// Receiver reports closer together than this do not make a link estimate.
const LINK_REPORT_SPAN: Duration = Duration::from_millis(500);

/// Packets of one access unit written in one vectored write over TCP.
const BATCH: usize = 32;

impl<'a> RtpFraming<'a> {
    /// RTP interleaved on `channel` (RTCP on the next) of a connection we
    /// opened to publish: no silence limit.
    pub(crate) fn publishing(
        control: &'a Control,
        viewer: &'a Subscriber,
        channel: u8,
        rtp: RtpStream,
        cname: String,
    ) -> RtpFraming<'a> {
        RtpFraming {
            control,
            silence_ends: false,
            timeout: Duration::MAX,
            viewer,
            delivery: Delivery::Interleaved { rtp: channel },
            udp: None,
            rtp,
            cname,
            report: Vec::with_capacity(128),
            last_report: None,
            datagram: Vec::new(),
            told: false,
            reported: None,
        }
    }
}

impl RtpFraming<'_> {
    /// Writes the answers waiting, and says whether the session is over.
    fn housekeeping(&mut self, w: &mut &TcpStream) -> std::io::Result<()> {
        let pending = std::mem::take(
            &mut *self
                .control
                .outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if !pending.is_empty() {
            w.write_all(&pending)?;
        }
        if let Some(why) = self.control.ended() {
            return Err(std::io::Error::other(why));
        }
        let heard = self.control.heard_us.load(Ordering::Relaxed);
        if self.silence_ends
            && clock::now_us().saturating_sub(heard) > self.timeout.as_micros() as u64
        {
            return Err(std::io::Error::other(format!(
                "nothing heard from it for {} s (session timeout)",
                self.timeout.as_secs()
            )));
        }
        let report = *self
            .control
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(r) = report {
            *self
                .viewer
                .feedback
                .rtcp
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = report;
            if matches!(self.delivery, Delivery::Udp { .. }) {
                self.link_from_report(&r);
            }
        }
        if self.control.wants_keyframe.swap(false, Ordering::Relaxed) {
            self.viewer
                .feedback
                .wants_keyframe
                .store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Over UDP, what the client's link carries, from its receiver
    /// reports: the bytes sent between two reports, less the share it says
    /// it lost, over the time between them. Measured when it lost some (the
    /// link was the limit), else at least that. Shown like a TCP viewer's
    /// estimate (`/stats` `link`).
    fn link_from_report(&mut self, r: &ReceptionReport) {
        let bytes = self.viewer.counters.bytes.load(Ordering::Relaxed);
        let now = Instant::now();
        let Some((seq, then, sent)) = self.reported else {
            self.reported = Some((r.highest_seq, now, bytes));
            return;
        };
        let elapsed = now.duration_since(then);
        if r.highest_seq == seq || elapsed < LINK_REPORT_SPAN {
            return;
        }
        let kept = 1.0 - f64::from(r.fraction_lost) / 256.0;
        let bits = bytes.saturating_sub(sent) as f64 * 8.0 * kept;
        let c = &self.viewer.counters;
        c.link_bps
            .store((bits / elapsed.as_secs_f64()) as u64, Ordering::Relaxed);
        c.link_measured
            .store(r.fraction_lost > 0, Ordering::Relaxed);
        self.reported = Some((r.highest_seq, now, bytes));
    }

    fn sender_report(&mut self, w: &mut &TcpStream) -> std::io::Result<()> {
        if self
            .last_report
            .is_some_and(|t| t.elapsed() < SENDER_REPORT_EVERY)
        {
            return Ok(());
        }
        self.last_report = Some(Instant::now());
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now = rtp_time(clock::now_us(), self.rtp.ssrc);
        write_sender_report(
            &mut self.report,
            &self.rtp,
            ntp_time(wall),
            now,
            &self.cname,
        );
        match (self.delivery, &self.udp) {
            (Delivery::Interleaved { rtp }, _) => {
                let head = interleave_head(rtp.wrapping_add(1), self.report.len());
                write_all_vectored(w, &mut [IoSlice::new(&head), IoSlice::new(&self.report)])
            }
            (Delivery::Udp { .. }, Some((udp, _, rtcp_to))) => {
                if let Err(e) = udp.rtcp.send_to(&self.report, rtcp_to) {
                    log::debug!("RTSP client {}: sender report: {e}", self.control.peer);
                }
                Ok(())
            }
            (Delivery::Udp { .. }, None) => Ok(()),
        }
    }
}

/// The packets of one frame in the stream's payload format.
enum Packets<'a, 's> {
    H264(H264Packets<'a, 's>),
    Jpeg(JpegPackets<'a, 's>),
}

impl<'a, 's> Packets<'a, 's> {
    /// `Err`: a JPEG that RTP/JPEG cannot carry, and why.
    fn new(
        payload: &'a [u8],
        timestamp: u32,
        stream: &'s mut RtpStream,
    ) -> Result<Packets<'a, 's>, RtpJpegError> {
        Ok(if stream.payload_type == JPEG_PAYLOAD_TYPE {
            Packets::Jpeg(JpegPackets::new(
                rtp_jpeg(payload)?,
                timestamp,
                stream,
                MAX_PAYLOAD,
            ))
        } else {
            Packets::H264(H264Packets::new(payload, timestamp, stream, MAX_PAYLOAD))
        })
    }

    fn failed(&self) -> bool {
        matches!(self, Packets::H264(p) if p.failed())
    }
}

impl<'a> Iterator for Packets<'a, '_> {
    type Item = RtpPacket<'a>;

    fn next(&mut self) -> Option<RtpPacket<'a>> {
        match self {
            Packets::H264(p) => p.next(),
            Packets::Jpeg(p) => p.next(),
        }
    }
}

/// Over TCP: batches of packets, each `$`, channel, length, head, payload,
/// one vectored write a batch.
fn send_interleaved(
    w: &mut &TcpStream,
    packets: &mut Packets<'_, '_>,
    channel: u8,
) -> std::io::Result<usize> {
    let mut written = 0;
    loop {
        let mut batch = [None; BATCH];
        let mut n = 0;
        for p in packets.by_ref().take(BATCH) {
            batch[n] = Some((interleave_head(channel, p.len()), p));
            n += 1;
        }
        if n == 0 {
            return Ok(written);
        }
        let mut slices = [IoSlice::new(&[]); BATCH * 3];
        for (i, (head, p)) in batch[..n].iter().flatten().enumerate() {
            slices[3 * i] = IoSlice::new(head);
            slices[3 * i + 1] = IoSlice::new(p.head());
            slices[3 * i + 2] = IoSlice::new(p.payload);
            written += 4 + p.len();
        }
        write_all_vectored(w, &mut slices[..3 * n])?;
    }
}

/// Over UDP: one datagram per packet, put together in `datagram`. The
/// socket does not block: a packet it cannot take now is lost, like one lost
/// on the way, and the client gets a keyframe next.
fn send_datagrams(
    udp: &RtspUdp,
    to: SocketAddr,
    datagram: &mut Vec<u8>,
    viewer: &Subscriber,
    packets: &mut Packets<'_, '_>,
) -> std::io::Result<usize> {
    let mut written = 0;
    for p in packets {
        datagram.clear();
        datagram.extend_from_slice(p.head());
        datagram.extend_from_slice(p.payload);
        match udp.rtp.send_to(datagram, to) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                viewer.dropped();
                viewer
                    .feedback
                    .wants_keyframe
                    .store(true, Ordering::Relaxed);
                break;
            }
            // ICMP unreachable from an earlier datagram: the client's port
            // is closed. Its session ends when it stops talking.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

fn interleave_head(channel: u8, len: usize) -> [u8; 4] {
    let len = (len.min(usize::from(u16::MAX)) as u16).to_be_bytes();
    [b'$', channel, len[0], len[1]]
}

impl Framing<&TcpStream> for RtpFraming<'_> {
    fn frame(
        &mut self,
        w: &mut &TcpStream,
        frame: &EncodedFrame,
        _gap: bool,
    ) -> std::io::Result<usize> {
        self.housekeeping(w)?;
        self.sender_report(w)?;
        let ts = rtp_time(frame.frame.capture_us, self.rtp.ssrc);
        let mut packets = match Packets::new(frame.payload(), ts, &mut self.rtp) {
            Ok(p) => p,
            Err(e) => {
                // Said once a session (and by the capture thread once).
                if !std::mem::replace(&mut self.told, true) {
                    log::warn!("RTSP client {}: frames skipped: {e}", self.control.peer);
                }
                self.viewer.dropped();
                return Ok(0);
            }
        };
        let written = match (self.delivery, self.udp) {
            (Delivery::Interleaved { rtp }, _) => send_interleaved(w, &mut packets, rtp)?,
            (Delivery::Udp { .. }, Some((udp, to, _))) => {
                send_datagrams(udp, to, &mut self.datagram, self.viewer, &mut packets)?
            }
            (Delivery::Udp { .. }, None) => 0,
        };
        if packets.failed() {
            log::error!("RTSP: an access unit did not packetise (a bug: it was checked)");
        }
        Ok(written)
    }

    fn idle(&mut self, w: &mut &TcpStream) -> std::io::Result<()> {
        self.housekeeping(w)
    }

    fn over_this_connection(&self) -> bool {
        !matches!(self.delivery, Delivery::Udp { .. })
    }

    fn end(&mut self, w: &mut &TcpStream, _why: &str, _final: bool) {
        // RTSP 1.0 has no way for a server to say why; the answers still
        // waiting go out, then the connection closes.
        let _ = self.housekeeping(w);
    }
}
