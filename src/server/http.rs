//! HTTP on the server's port, for browsers, media players and monitoring:
//!
//! | path | what |
//! |------|------|
//! | `/` | a page with the live picture and the stats, usable on a phone |
//! | `/stream.mjpg` | the stream as `multipart/x-mixed-replace` MJPEG |
//! | `/snapshot.jpg` | the newest frame |
//! | `/stats` | JSON: the stream, capture rate, every viewer's counters |
//! | `/metrics` | the same in Prometheus text format |
//! | `/whep` | WebRTC: `POST` an SDP offer, `DELETE` the session it made (`whep.rs`); the page posts its latency to `/whep/SESSION/latency` |
//! | `/clock` | JSON `{"now_us": N}`: the server's frame clock, for the page's NTP-style offset |
//!
//! With pairing (`auth = "pair"`, the default) every path needs the server's
//! token: `?token=TOKEN` in the URL (the page then sets a cookie for its own
//! requests), `Authorization: Bearer TOKEN`, or basic auth with the token as the
//! password. Without it: 401, and not one frame byte.
//!
//! The request head is parsed by `httparse`, bounded in size (8 KiB) and time (the
//! handshake timeout, for the whole head); a WHEP offer's body by its checked
//! `Content-Length` (at most 64 KiB) and [`BODY_TIMEOUT`]. One request per
//! connection. MJPEG viewers get the same newest-frame-wins slot as native
//! viewers.

use std::io::{IoSlice, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::media::clock;
use crate::media::slot::Taken;
use crate::net::http::{parse_head, refusal, Method, Refusal, Request, COOKIE, MAX_HEAD};
use crate::net::io::{write_all_vectored, DeadlineReader};
use crate::net::whep::{self as whep_rules, Target, WhepError};

use super::hub::{EncodedFrame, Handshaking, Hub, Subscriber, SubscriberKind};
use super::metrics::metrics;
use super::send::{log_departure, send_loop, Framing, WRITE_TIMEOUT};
use super::whep::{self, Reply};

const BOUNDARY: &str = "livestreamframe";
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// Time a WHEP offer's body has to arrive once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

const INDEX: &str = include_str!("index.html");

/// Whether `given` is the server's token, in constant time.
fn token_matches(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// Reads and parses the request head within `deadline`.
fn read_request(stream: &TcpStream, deadline: Instant) -> Result<Request, Refusal> {
    let mut buf = [0u8; MAX_HEAD];
    let mut filled = 0;
    let mut reader = DeadlineReader { stream, deadline };
    loop {
        let n =
            std::io::Read::read(&mut reader, &mut buf[filled..]).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    refusal(408, "Request Timeout", "request head not complete in time")
                }
                _ => refusal(400, "Bad Request", e.to_string()),
            })?;
        if n == 0 {
            return Err(refusal(
                400,
                "Bad Request",
                "connection closed before the request was complete",
            ));
        }
        filled += n;
        if let Some(request) = parse_head(&buf[..filled])? {
            return Ok(request);
        }
    }
}

fn respond(
    w: &TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    respond_with(w, status, reason, content_type, "", body, head_only)
}

/// [`respond`] with more header lines (each ending in CRLF).
fn respond_with(
    mut w: &TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    let body = if head_only { &[][..] } else { body };
    write_all_vectored(
        &mut w,
        &mut [IoSlice::new(head.as_bytes()), IoSlice::new(body)],
    )?;
    w.flush()
}

/// Serves one HTTP connection. Its handshake place is given back once the
/// request head is read.
pub(crate) fn serve(
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    stop: &AtomicBool,
    deadline: Instant,
    handshaking: Handshaking,
) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let request = read_request(stream, deadline);
    drop(handshaking);
    let request = match request {
        Ok(r) => r,
        Err(r) => {
            log::warn!(
                "HTTP client {peer} rejected: {} {}: {}",
                r.status,
                r.reason,
                r.detail
            );
            let body = format!("{}\n", r.reason);
            let _ = respond(
                stream,
                r.status,
                r.reason,
                "text/plain",
                body.as_bytes(),
                false,
            );
            return;
        }
    };
    let Some(cookie) = authorize(stream, peer, hub, &request) else {
        return;
    };
    let head_only = request.head_only;
    if let Some(target) = whep_rules::target(&request.path) {
        let reply = serve_whep(stream, peer, hub, &request, target);
        if let Err(e) = respond_with(
            stream,
            reply.status,
            reply.reason,
            reply.content_type,
            &reply.headers,
            &reply.body,
            head_only,
        ) {
            log::debug!("HTTP client {peer}: {e}");
        }
        return;
    }
    if matches!(request.method, Method::Post | Method::Delete) {
        let reply = whep::method_not_allowed(request.method.name(), "GET, HEAD");
        let _ = respond_with(
            stream,
            reply.status,
            reply.reason,
            reply.content_type,
            &reply.headers,
            &reply.body,
            false,
        );
        return;
    }
    let result = match request.path.as_str() {
        "/" | "/index.html" => respond_with(
            stream,
            200,
            "OK",
            "text/html; charset=utf-8",
            &cookie,
            INDEX.as_bytes(),
            head_only,
        ),
        "/stats" => {
            let body = serde_json::to_vec_pretty(&hub.stats()).unwrap_or_default();
            respond(stream, 200, "OK", "application/json", &body, head_only)
        }
        "/metrics" => respond(
            stream,
            200,
            "OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(&hub.stats()).as_bytes(),
            head_only,
        ),
        "/clock" => {
            // The server's frame clock, for the page's NTP-style offset.
            let body = format!("{{\"now_us\":{}}}", clock::now_us());
            respond(
                stream,
                200,
                "OK",
                "application/json",
                body.as_bytes(),
                head_only,
            )
        }
        "/snapshot.jpg" => snapshot(stream, peer, hub, head_only),
        "/stream.mjpg" => {
            mjpeg(stream, peer, hub, stop, head_only);
            return;
        }
        other => {
            log::debug!("HTTP client {peer}: no such path {other}");
            let body = b"Not Found\n";
            respond(stream, 404, "Not Found", "text/plain", body, head_only)
        }
    };
    if let Err(e) = result {
        log::debug!("HTTP client {peer}: {e}");
    }
}

/// A request under `/whep`: an offer (its body read here, bounded), or the end
/// of a session.
fn serve_whep(
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    request: &Request,
    target: Target,
) -> Reply {
    match (target, request.method) {
        (Target::Endpoint, Method::Post) => {
            let length = match request.body {
                Some(Ok(n)) => n,
                Some(Err(e)) => return whep::refused(e),
                None => return whep::refused(WhepError::LengthRequired),
            };
            match read_body(stream, &request.rest, length) {
                Ok(body) => whep::post(hub, peer, &body),
                Err(r) => whep::Reply {
                    status: r.status,
                    reason: r.reason,
                    content_type: "text/plain; charset=utf-8",
                    headers: String::new(),
                    body: format!("{} {}: {}\n", r.status, r.reason, r.detail).into_bytes(),
                },
            }
        }
        (Target::Endpoint, m) => whep::method_not_allowed(m.name(), "POST"),
        (Target::Session(id), Method::Delete) => whep::delete(hub, id),
        (Target::Session(_), m) => whep::method_not_allowed(m.name(), "DELETE"),
        (Target::Latency(id), Method::Post) => whep::latency(hub, id, &request.query),
        (Target::Latency(_), m) => whep::method_not_allowed(m.name(), "POST"),
        (Target::NoSuchSession, _) => whep::no_such_session(),
    }
}

/// Reads a body of `length` bytes (already checked against its limit), of
/// which `rest` came with the head, within [`BODY_TIMEOUT`]. Bytes past it are
/// ignored: one request per connection.
fn read_body(stream: &TcpStream, rest: &[u8], length: usize) -> Result<Vec<u8>, Refusal> {
    let mut body = vec![0u8; length];
    let have = rest.len().min(length);
    body[..have].copy_from_slice(&rest[..have]);
    let mut reader = DeadlineReader {
        stream,
        deadline: Instant::now() + BODY_TIMEOUT,
    };
    std::io::Read::read_exact(&mut reader, &mut body[have..]).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            refusal(408, "Request Timeout", "the offer did not arrive in time")
        }
        std::io::ErrorKind::UnexpectedEof => refusal(
            400,
            "Bad Request",
            "connection closed before the whole offer came",
        ),
        _ => refusal(400, "Bad Request", e.to_string()),
    })?;
    Ok(body)
}

/// Checks the request's token when the server has pairing. `Some`: go on,
/// with the header lines that set the page's cookie (empty unless the token
/// came in the URL); `None`: refused with 401, and not one frame byte sent.
fn authorize(stream: &TcpStream, peer: SocketAddr, hub: &Hub, request: &Request) -> Option<String> {
    let Some(auth) = &hub.auth else {
        return Some(String::new());
    };
    let token = auth.http_token();
    match &request.token {
        // The page's own requests (the picture, the stats) carry the cookie.
        Some((given, true)) if token_matches(given, &token) => Some(format!(
            "Set-Cookie: {COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict\r\n"
        )),
        Some((given, false)) if token_matches(given, &token) => Some(String::new()),
        given => {
            log::warn!(
                "HTTP client {peer} refused: {} token for {}",
                if given.is_some() { "wrong" } else { "no" },
                request.path
            );
            let _ = respond_with(
                stream,
                401,
                "Unauthorized",
                "text/plain; charset=utf-8",
                "WWW-Authenticate: Basic realm=\"livestream\", charset=\"UTF-8\"\r\n",
                b"401 Unauthorized: this stream needs the token that `livestream serve` printed.\n\
                  Open the URL it printed (it ends in ?token=...), or give the token as the\n\
                  password (any user name), or as `Authorization: Bearer TOKEN`.\n",
                request.head_only,
            );
            None
        }
    }
}

fn busy(stream: &TcpStream, why: &str, head_only: bool) -> std::io::Result<()> {
    respond(
        stream,
        503,
        "Service Unavailable",
        "text/plain",
        format!("{why}\n").as_bytes(),
        head_only,
    )
}

fn snapshot(
    stream: &TcpStream,
    peer: SocketAddr,
    hub: &Hub,
    head_only: bool,
) -> std::io::Result<()> {
    let viewer = Subscriber::new(peer, SubscriberKind::Http);
    let admission = match hub.admit(hub.http_feed(), &viewer) {
        Ok(a) => a,
        Err(refused) => return busy(stream, &refused.why, head_only),
    };
    let frame = viewer.slot.take(SNAPSHOT_WAIT);
    drop(admission);
    match frame {
        Taken::Value(p) => respond(stream, 200, "OK", "image/jpeg", p.payload(), head_only),
        _ => busy(stream, "no frame came in time", head_only),
    }
}

fn mjpeg(stream: &TcpStream, peer: SocketAddr, hub: &Hub, stop: &AtomicBool, head_only: bool) {
    let viewer = Subscriber::new(peer, SubscriberKind::Http);
    // A browser shows a JPEG of any size in the same box: it can be moved
    // to a smaller rendition its link carries (`adapt.rs`).
    viewer.takes_renditions.store(true, Ordering::Relaxed);
    let admission = match hub.admit(hub.http_feed(), &viewer) {
        Ok(a) => a,
        Err(refused) => {
            log::warn!("HTTP viewer {peer} refused: {}", refused.why);
            let _ = busy(stream, &refused.why, head_only);
            return;
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
    );
    let mut w = stream;
    // HEAD: the stream's head, and no part.
    if w.write_all(head.as_bytes()).is_err() || head_only {
        return;
    }
    log::info!("HTTP viewer {peer} connected ({} watching)", hub.watchers());
    let why = send_loop(stream, stream, &viewer, hub, stop, &mut MjpegFraming);
    drop(admission);
    log_departure(&viewer, &why);
}

/// `multipart/x-mixed-replace`: each frame is one part.
struct MjpegFraming;

impl Framing<&TcpStream> for MjpegFraming {
    /// One part: headers, the JPEG, and a line end. Written with one vectored
    /// write and no allocation.
    fn frame(
        &mut self,
        w: &mut &TcpStream,
        frame: &EncodedFrame,
        _gap: bool,
    ) -> std::io::Result<usize> {
        let jpeg = frame.payload();
        let mut head = [0u8; 160];
        let mut cursor = std::io::Cursor::new(&mut head[..]);
        write!(
            cursor,
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Sequence: {}\r\n\r\n",
            jpeg.len(),
            frame.frame.seq
        )?;
        let n = cursor.position() as usize;
        write_all_vectored(
            w,
            &mut [
                IoSlice::new(&head[..n]),
                IoSlice::new(jpeg),
                IoSlice::new(b"\r\n"),
            ],
        )?;
        Ok(n + jpeg.len() + 2)
    }

    fn end(&mut self, w: &mut &TcpStream, _why: &str, _final: bool) {
        let _ = w.write_all(format!("--{BOUNDARY}--\r\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_compared_whole() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", "abc"));
    }
}
