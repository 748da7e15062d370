//! The `publish` thread (`serve --publish rtsp://HOST:PORT/PATH`): pushes the
//! stream to a media server (MediaMTX, go2rtc, ffmpeg's RTSP listener) for
//! audiences one machine cannot serve. RTSP as a client: ANNOUNCE with the
//! SDP, SETUP (RTP over TCP, interleaved, `mode=record`), RECORD, then RTP
//! through the same send loop and keyframe chain as a viewer, while
//! `publish-rx` reads what the server sends back. When the server goes away
//! it connects again, after 1 s, then 2, 4... up to 30 s; the wait starts
//! over after a session that lasted.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rtsp_types::{Message, ParseError, Url};

use crate::media::frame::PixelFormat;
use crate::media::slot::Taken;
use crate::net::io::DeadlineReader;
use crate::net::rtp::{RtpStream, H264_PAYLOAD_TYPE};
use crate::net::rtsp::{self, authorization, describe, Description, Media, MAX_REQUEST};

use super::hub::{Hub, Subscriber, SubscriberKind};
use super::rtsp::{Control, RtpFraming};
use super::send::{log_departure, send_loop, SendEnd, WRITE_TIMEOUT};

/// How long connecting, and each answer of the server, may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// A session this long resets the wait between attempts.
const LASTED: Duration = Duration::from_secs(10);
/// A response body (the server's error text) is read up to this size.
const MAX_BODY: usize = 16 << 10;

/// Why one attempt to publish ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("{0} is not an rtsp:// URL with a host")]
    Url(String),
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server refused {method}: {status} {reason}")]
    Refused {
        method: &'static str,
        status: u16,
        reason: String,
    },
    #[error("the server's answer to {0} is not RTSP")]
    Malformed(&'static str),
    #[error("no keyframe came from the encoder in {} s", ANSWER_TIMEOUT.as_secs())]
    NoKeyframe,
    #[error("the stream is not H.264 (codec {0}): RTSP publishing carries H.264")]
    NotH264(String),
    #[error("{0}")]
    Ended(String),
}

/// Where to publish: the URL without its credentials, and those.
pub(crate) struct Target {
    url: Url,
    user: String,
    password: String,
}

impl Target {
    /// Reads `rtsp://[user:password@]host[:port]/path` (port 554 by default).
    pub(crate) fn parse(text: &str) -> Result<Target, PublishError> {
        let bad = || PublishError::Url(text.to_string());
        let mut url = Url::parse(text).map_err(|_| bad())?;
        if url.scheme() != "rtsp" || url.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        let user = percent_decode(url.username());
        let password = percent_decode(url.password().unwrap_or(""));
        url.set_username("").map_err(|_| bad())?;
        url.set_password(None).map_err(|_| bad())?;
        Ok(Target {
            url,
            user,
            password,
        })
    }

    fn addr(&self) -> String {
        format!(
            "{}:{}",
            self.url.host_str().unwrap_or(""),
            self.url.port().unwrap_or(554)
        )
    }
}

/// `%XX` escapes of a URL's user or password, decoded (a password may hold
/// `@` or `:`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The thread's body: publishes until `stop`, reconnecting with backoff.
pub(crate) fn publish_loop(target: Target, hub: &Hub, stop: &AtomicBool) {
    let mut wait = FIRST_RETRY;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match session(&target, hub, stop) {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() >= LASTED {
                    wait = FIRST_RETRY;
                }
                log::warn!(
                    "publishing to {}: {e}; trying again in {} s",
                    target.url,
                    wait.as_secs()
                );
            }
        }
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        wait = (wait * 2).min(MAX_RETRY);
    }
}

/// One RTSP conversation with the server.
struct Client {
    stream: TcpStream,
    cseq: u32,
    /// The `Authorization` header once the server asked for one.
    authorization: Option<String>,
    /// The last challenge, to answer again for each method (digest covers
    /// the method).
    challenge: Option<String>,
    session: Option<String>,
    inbuf: Vec<u8>,
}

/// A response: status, reason, headers as (lower-case name, value).
struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn request(
        &mut self,
        target: &Target,
        method: &'static str,
        uri: &str,
        extra: &str,
        body: &[u8],
    ) -> Result<Answer, PublishError> {
        for attempt in 0..2 {
            self.cseq += 1;
            if let Some(challenge) = &self.challenge {
                let cnonce = format!("{:016x}", fastrand::u64(..));
                self.authorization = authorization(
                    challenge,
                    &target.user,
                    &target.password,
                    method,
                    uri,
                    &cnonce,
                );
            }
            let mut head = format!(
                "{method} {uri} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: livestream\r\n",
                self.cseq
            );
            if let Some(a) = &self.authorization {
                head.push_str(&format!("Authorization: {a}\r\n"));
            }
            if let Some(s) = &self.session {
                head.push_str(&format!("Session: {s}\r\n"));
            }
            head.push_str(extra);
            if !body.is_empty() {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let mut w = &self.stream;
            w.write_all(head.as_bytes())?;
            w.write_all(body)?;
            let answer = self.answer(method)?;
            if answer.status == 401 && attempt == 0 && !target.user.is_empty() {
                if let Some(c) = answer.header("www-authenticate") {
                    self.challenge = Some(c.to_string());
                    continue;
                }
            }
            if answer.status != 200 {
                return Err(PublishError::Refused {
                    method,
                    status: answer.status,
                    reason: answer.reason,
                });
            }
            return Ok(answer);
        }
        unreachable!("the second attempt returns")
    }

    /// Reads the next response, skipping interleaved data (RTCP).
    fn answer(&mut self, method: &'static str) -> Result<Answer, PublishError> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut chunk = [0u8; 2048];
        loop {
            let limit = self.inbuf.len().min(MAX_REQUEST + MAX_BODY);
            match Message::<&[u8]>::parse(&self.inbuf[..limit]) {
                Ok((Message::Response(r), used)) => {
                    let answer = Answer {
                        status: u16::from(r.status()),
                        reason: r.reason_phrase().chars().take(200).collect(),
                        headers: r
                            .headers()
                            .map(|(n, v)| (n.as_str().to_ascii_lowercase(), v.as_str().to_string()))
                            .collect(),
                    };
                    self.inbuf.drain(..used);
                    return Ok(answer);
                }
                Ok((Message::Data(_), used)) => {
                    self.inbuf.drain(..used);
                    continue;
                }
                Ok((Message::Request(_), _)) | Err(ParseError::Error) => {
                    return Err(PublishError::Malformed(method))
                }
                Err(ParseError::Incomplete(_)) if limit >= MAX_REQUEST + MAX_BODY => {
                    return Err(PublishError::Malformed(method))
                }
                Err(ParseError::Incomplete(_)) => {}
            }
            let mut reader = DeadlineReader {
                stream: &self.stream,
                deadline,
            };
            let n = std::io::Read::read(&mut reader, &mut chunk)?;
            if n == 0 {
                return Err(PublishError::Ended(format!(
                    "the server closed the connection after {method}"
                )));
            }
            self.inbuf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Connects, announces, records, and sends until the server goes or the
/// server stops (`Ok`).
fn session(target: &Target, hub: &Hub, stop: &AtomicBool) -> Result<(), PublishError> {
    if hub.payload_format != Some(PixelFormat::H264) {
        return Err(PublishError::NotH264(hub.codec.clone()));
    }
    let addr = target.addr();
    let peer = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| PublishError::Connect {
            addr: addr.clone(),
            source: std::io::Error::other("no address for that host"),
        })?;
    let stream = TcpStream::connect_timeout(&peer, ANSWER_TIMEOUT).map_err(|source| {
        PublishError::Connect {
            addr: addr.clone(),
            source,
        }
    })?;
    stream.set_nodelay(true)?;
    // Subscribed first: the SDP needs the parameter sets of a keyframe.
    let viewer = Subscriber::new(peer, SubscriberKind::Rtsp);
    let admission = hub
        .admit(&hub.main, &viewer)
        .map_err(|r| PublishError::Ended(r.why))?;
    let viewer = admission.subscriber();
    let sets = first_parameter_sets(viewer, hub, stop)?;
    let url = target.url.to_string();
    let sdp = describe(&Description {
        origin: stream.local_addr()?.ip(),
        session_id: u64::from(fastrand::u32(..)),
        name: &hub.name,
        media: Media::H264(Some((&sets.0, &sets.1))),
        width: hub.stream.frame.width,
        height: hub.stream.frame.height,
        fps: hub.stream.fps,
    });
    let mut client = Client {
        stream,
        cseq: 0,
        authorization: None,
        challenge: None,
        session: None,
        inbuf: Vec::with_capacity(4096),
    };
    client.request(
        target,
        "ANNOUNCE",
        &url,
        "Content-Type: application/sdp\r\n",
        sdp.as_bytes(),
    )?;
    let track = format!("{}/trackID=0", url.trim_end_matches('/'));
    let setup = client.request(
        target,
        "SETUP",
        &track,
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n",
        b"",
    )?;
    client.session = setup
        .header("session")
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 256);
    client.request(target, "RECORD", &url, "Range: npt=0.000-\r\n", b"")?;
    log::info!("publishing to {}", target.url);

    let control = Control::new(peer);
    let rtp = RtpStream::new(H264_PAYLOAD_TYPE, fastrand::u64(..));
    let stream = &client.stream;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let why = std::thread::scope(|scope| {
        let rx = std::thread::Builder::new()
            .name("publish-rx".into())
            .spawn_scoped(scope, || receive(stream, &control));
        if let Err(e) = rx {
            control.end(format!("no thread to read the server: {e}"));
        }
        let cname = format!("livestream@{}", hub.name);
        let mut framing = RtpFraming::publishing(&control, viewer, 0, rtp, cname);
        let why = send_loop(stream, stream, viewer, hub, stop, &mut framing);
        if stop.load(Ordering::Relaxed) {
            // Polite at the end; the server drops the session either way.
            let teardown = format!(
                "TEARDOWN {url} RTSP/1.0\r\nCSeq: {}\r\n{}\r\n",
                client.cseq + 1,
                client
                    .session
                    .as_ref()
                    .map_or(String::new(), |s| format!("Session: {s}\r\n"))
            );
            let _ = (&*stream).write_all(teardown.as_bytes());
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        match control.ended() {
            Some(ended) => SendEnd::Ended(ended),
            None => why,
        }
    });
    log_departure(viewer, &why);
    if stop.load(Ordering::Relaxed) {
        Ok(())
    } else {
        Err(PublishError::Ended(why.to_string()))
    }
}

/// Waits for a keyframe on the subscription (asking for one) and returns its
/// SPS and PPS.
fn first_parameter_sets(
    viewer: &Subscriber,
    hub: &Hub,
    stop: &AtomicBool,
) -> Result<(Vec<u8>, Vec<u8>), PublishError> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    hub.keyframes.ask();
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if let Taken::Value(frame) = viewer.slot.take(Duration::from_millis(100)) {
            if frame.keyframe {
                if let Some((sps, pps)) = rtsp::parameter_sets(frame.payload()) {
                    return Ok((sps.to_vec(), pps.to_vec()));
                }
            }
        }
    }
    Err(PublishError::NoKeyframe)
}

/// The `publish-rx` thread: reads what the server sends (RTCP receiver
/// reports, answers) until it closes the connection.
fn receive(stream: &TcpStream, control: &Control) {
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 2048];
    let _ = stream.set_read_timeout(None);
    loop {
        loop {
            let limit = inbuf.len().min(MAX_REQUEST + MAX_BODY);
            match Message::<&[u8]>::parse(&inbuf[..limit]) {
                Ok((Message::Data(d), used)) => {
                    if d.channel_id() == 1 {
                        control.rtcp(d.as_slice());
                    }
                    inbuf.drain(..used);
                }
                Ok((_, used)) => {
                    inbuf.drain(..used);
                }
                Err(ParseError::Incomplete(_)) if limit < MAX_REQUEST + MAX_BODY => break,
                Err(_) => {
                    control.end("the server sent what is not RTSP");
                    return;
                }
            }
        }
        match std::io::Read::read(&mut &*stream, &mut chunk) {
            Ok(0) | Err(_) => {
                control.end("the server closed the connection");
                return;
            }
            Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_their_credentials_apart() {
        let t = Target::parse("rtsp://cam:p%40ss@media.lan:8554/live/garden").unwrap();
        assert_eq!((t.user.as_str(), t.password.as_str()), ("cam", "p@ss"));
        assert_eq!(t.url.as_str(), "rtsp://media.lan:8554/live/garden");
        assert_eq!(t.addr(), "media.lan:8554");
        assert_eq!(Target::parse("rtsp://h/x").unwrap().addr(), "h:554");
        for bad in ["http://h/x", "rtsp:///x", "not a url", ""] {
            assert!(
                matches!(Target::parse(bad), Err(PublishError::Url(_))),
                "{bad}"
            );
        }
    }
}
