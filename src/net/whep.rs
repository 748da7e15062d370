//! WHEP (WebRTC-HTTP Egress Protocol, RFC 9725) requests as they arrive on the
//! server's HTTP port, checked before one byte of them reaches the WebRTC
//! stack: which path they name, how long the offer says it is, its content
//! type and that it is text that looks like an SDP offer. Pure functions over
//! the parsed request head and the body's bytes; no sockets, no threads
//! (`server/whep.rs` answers, `server/webrtc/` runs the sessions).
//!
//! | request | answer |
//! |---------|--------|
//! | `POST /whep` with an SDP offer (`application/sdp`) | `201 Created`, the SDP answer, `Location: /whep/SESSION` |
//! | `DELETE /whep/SESSION` | `200 OK`, the session ends; `404` when there is no such session |
//! | `POST /whep/SESSION/latency?last=MS&p50=MS&p95=MS&frames=N` | `204 No Content`: the page's own latency figures, capture to displayed, for `/stats` |
//!
//! Limits: an offer has a `Content-Length` (no chunked bodies) of at most
//! [`MAX_OFFER`] bytes, checked before the body is read or allocated.

use std::fmt;

use crate::net::protocol::Report;

/// The WHEP endpoint's path.
pub const ENDPOINT: &str = "/whep";

/// The largest offer accepted. A browser's offer for one video track with every
/// codec it knows is 5 to 10 KB (Chromium 156 lists ~20 payload types).
pub const MAX_OFFER: usize = 64 << 10;

/// A WHEP session's name in its URL: 128 random bits, as 32 lower-case hex
/// digits. Unguessable, so one browser cannot end another's session even with
/// the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A new random id (from the operating system's generator).
    pub fn random() -> Result<SessionId, ring::error::Unspecified> {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)?;
        Ok(SessionId(bytes))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> SessionId {
        SessionId(bytes)
    }

    /// Exactly 32 hex digits (either case), else `None`.
    pub fn parse(text: &str) -> Option<SessionId> {
        let text = text.as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *byte = (hi << 4 | lo) as u8;
        }
        Some(SessionId(bytes))
    }

    /// Its path: `/whep/` and the id.
    pub fn location(&self) -> String {
        format!("{ENDPOINT}/{self}")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// What a request path names, when it is under [`ENDPOINT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/whep`: where offers are posted.
    Endpoint,
    /// `/whep/SESSION`: one session, to end with `DELETE`.
    Session(SessionId),
    /// `/whep/SESSION/latency`: where its page posts the latency it measured.
    Latency(SessionId),
    /// `/whep/...` that is no session's name.
    NoSuchSession,
}

/// Which WHEP resource `path` (without its query) names; `None` when it is not
/// under `/whep` at all.
pub fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix(ENDPOINT)?;
    if rest.is_empty() {
        return Some(Target::Endpoint);
    }
    let id = rest.strip_prefix('/')?;
    let (id, latency) = match id.strip_suffix(LATENCY) {
        Some(id) => (id, true),
        None => (id, false),
    };
    Some(match (SessionId::parse(id), latency) {
        (Some(id), false) => Target::Session(id),
        (Some(id), true) => Target::Latency(id),
        (None, _) => Target::NoSuchSession,
    })
}

/// The path after a session's where its page posts its latency.
pub const LATENCY: &str = "/latency";

/// The longest latency a page may report, ms: more is not a live picture, and
/// keeps the figures far from any overflow.
pub const MAX_REPORTED_MS: f64 = 600_000.0;

/// The latency a page measured over its last seconds, capture to displayed,
/// as its query says: `last`, `p50` and `p95` in milliseconds (decimals
/// allowed), `frames` the pictures measured. Each exactly once; nothing else.
pub fn latency_report(query: &str) -> Result<Report, WhepError> {
    let mut values: [Option<f64>; 4] = [None; 4];
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').ok_or(WhepError::BadReport)?;
        let slot = match name {
            "last" => 0,
            "p50" => 1,
            "p95" => 2,
            "frames" => 3,
            _ => return Err(WhepError::BadReport),
        };
        // Plain decimals only: no signs, exponents, `inf` or `NaN`.
        let plain = !value.is_empty()
            && value.len() <= 16
            && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let v: f64 = value
            .parse()
            .ok()
            .filter(|_| plain)
            .ok_or(WhepError::BadReport)?;
        if values[slot].replace(v).is_some() {
            return Err(WhepError::BadReport);
        }
    }
    let [Some(last), Some(p50), Some(p95), Some(frames)] = values else {
        return Err(WhepError::BadReport);
    };
    if [last, p50, p95].iter().any(|&ms| ms > MAX_REPORTED_MS) || frames > 1e9 {
        return Err(WhepError::BadReport);
    }
    let us = |ms: f64| (ms * 1000.0).round() as u64;
    Ok(Report {
        last_us: us(last),
        p50_us: us(p50),
        p95_us: us(p95),
        frames: frames as u64,
    })
}

/// Why a WHEP request was refused, before the WebRTC stack saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WhepError {
    #[error("an offer needs a Content-Length (chunked bodies are not accepted)")]
    LengthRequired,
    #[error("Content-Length is not one decimal number")]
    BadLength,
    #[error("the offer is {0} bytes; at most {MAX_OFFER} are accepted")]
    TooLarge(u64),
    #[error("an offer is sent as Content-Type: application/sdp")]
    NotSdp,
    #[error("the offer is not UTF-8 text")]
    NotText,
    #[error("the offer is not an SDP description (it must start with v=0)")]
    NotOffer,
    #[error(
        "a latency report is ?last=MS&p50=MS&p95=MS&frames=N, each once, \
         plain decimals up to 600000 ms"
    )]
    BadReport,
}

impl WhepError {
    /// The HTTP status and reason phrase that answer it.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            WhepError::LengthRequired => (411, "Length Required"),
            WhepError::TooLarge(_) => (413, "Content Too Large"),
            WhepError::NotSdp => (415, "Unsupported Media Type"),
            WhepError::BadLength
            | WhepError::NotText
            | WhepError::NotOffer
            | WhepError::BadReport => (400, "Bad Request"),
        }
    }
}

/// The length of the body a request head announces: exactly one
/// `Content-Length` of decimal digits, no `Transfer-Encoding`, at most
/// [`MAX_OFFER`]. Nothing is allocated from it before this says yes.
pub fn offer_length(headers: &[httparse::Header<'_>]) -> Result<usize, WhepError> {
    let mut length: Option<&[u8]> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(WhepError::LengthRequired);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(WhepError::BadLength);
            }
            length = Some(h.value);
        }
    }
    let value = trim(length.ok_or(WhepError::LengthRequired)?);
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return Err(WhepError::BadLength);
    }
    let n = value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let n = n.ok_or(WhepError::BadLength)?;
    if n > MAX_OFFER as u64 {
        return Err(WhepError::TooLarge(n));
    }
    Ok(n as usize)
}

/// The request's `Content-Type` is `application/sdp` (any case, parameters
/// allowed).
pub fn check_content_type(headers: &[httparse::Header<'_>]) -> Result<(), WhepError> {
    let value = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value)
        .ok_or(WhepError::NotSdp)?;
    let media_type = value.split(|&b| b == b';').next().unwrap_or(&[]);
    if trim(media_type).eq_ignore_ascii_case(b"application/sdp") {
        Ok(())
    } else {
        Err(WhepError::NotSdp)
    }
}

/// The offer's text: UTF-8, no NUL, starting with the SDP version line.
pub fn offer_text(body: &[u8]) -> Result<&str, WhepError> {
    let text = std::str::from_utf8(body).map_err(|_| WhepError::NotText)?;
    if text.contains('\0') {
        return Err(WhepError::NotText);
    }
    if !text.starts_with("v=0\r\n") && !text.starts_with("v=0\n") {
        return Err(WhepError::NotOffer);
    }
    Ok(text)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(list: &'a [(&'a str, &'a str)]) -> Vec<httparse::Header<'a>> {
        list.iter()
            .map(|(name, value)| httparse::Header {
                name,
                value: value.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn session_ids_round_trip_and_nothing_else_parses() {
        let id = SessionId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(SessionId::parse(&text), Some(id));
        assert_eq!(SessionId::parse(&text.to_uppercase()), Some(id));
        assert_ne!(SessionId::random().unwrap(), id, "random");
        assert_eq!(id.location(), format!("/whep/{text}"));
        for bad in [
            "",
            "abc",
            &text[1..],
            &format!("{text}0"),
            &text.replace(&text[..1], "g"),
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad}");
        }
        // 32 bytes that are not 32 ASCII hex digits (a multi-byte character).
        assert_eq!(SessionId::parse(&format!("é{}", &text[2..])), None);
    }

    #[test]
    fn targets() {
        let id = SessionId::from_bytes([0xab; 16]);
        assert_eq!(target("/whep"), Some(Target::Endpoint));
        assert_eq!(target(&id.location()), Some(Target::Session(id)));
        assert_eq!(target("/whep/"), Some(Target::NoSuchSession));
        assert_eq!(target("/whep/12"), Some(Target::NoSuchSession));
        assert_eq!(
            target(&format!("{}/latency", id.location())),
            Some(Target::Latency(id))
        );
        assert_eq!(target("/whep/12/latency"), Some(Target::NoSuchSession));
        assert_eq!(target("/whepx"), None);
        assert_eq!(target("/stats"), None);
    }

    #[test]
    fn offer_length_rules() {
        let ok = |v: &str| offer_length(&headers(&[("Content-Length", v)]));
        assert_eq!(ok("0"), Ok(0));
        assert_eq!(ok(" 123 "), Ok(123));
        assert_eq!(ok(&MAX_OFFER.to_string()), Ok(MAX_OFFER));
        assert_eq!(
            ok(&(MAX_OFFER + 1).to_string()),
            Err(WhepError::TooLarge(MAX_OFFER as u64 + 1))
        );
        assert_eq!(
            ok("99999999999999999999"),
            Err(WhepError::BadLength),
            "overflows u64"
        );
        assert_eq!(
            ok("18446744073709551615"),
            Err(WhepError::TooLarge(u64::MAX))
        );
        for bad in ["", "-1", "+1", "1e3", "0x10", "1 2", "１"] {
            assert_eq!(ok(bad), Err(WhepError::BadLength), "{bad:?}");
        }
        assert_eq!(offer_length(&[]), Err(WhepError::LengthRequired));
        assert_eq!(
            offer_length(&headers(&[
                ("content-length", "5"),
                ("Content-Length", "5")
            ])),
            Err(WhepError::BadLength),
            "two lengths"
        );
        assert_eq!(
            offer_length(&headers(&[
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "5")
            ])),
            Err(WhepError::LengthRequired)
        );
        assert_eq!(WhepError::TooLarge(1).status().0, 413);
        assert_eq!(WhepError::LengthRequired.status().0, 411);
    }

    #[test]
    fn content_type_rules() {
        let ct = |v: &str| check_content_type(&headers(&[("Content-Type", v)]));
        assert_eq!(ct("application/sdp"), Ok(()));
        assert_eq!(ct("Application/SDP; charset=utf-8"), Ok(()));
        assert_eq!(ct(" application/sdp "), Ok(()));
        assert_eq!(ct("application/json"), Err(WhepError::NotSdp));
        assert_eq!(ct("application/sdpx"), Err(WhepError::NotSdp));
        assert_eq!(ct(""), Err(WhepError::NotSdp));
        assert_eq!(check_content_type(&[]), Err(WhepError::NotSdp));
        assert_eq!(WhepError::NotSdp.status().0, 415);
    }

    #[test]
    fn offer_text_rules() {
        assert_eq!(
            offer_text(b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"),
            Ok("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n")
        );
        assert_eq!(offer_text(b"v=0\nx"), Ok("v=0\nx"));
        assert_eq!(offer_text(b"v=0\r\n\xff"), Err(WhepError::NotText));
        assert_eq!(offer_text(b"v=0\r\n\0"), Err(WhepError::NotText));
        assert_eq!(offer_text(b""), Err(WhepError::NotOffer));
        assert_eq!(offer_text(b"{\"sdp\": \"v=0\"}"), Err(WhepError::NotOffer));
        assert_eq!(offer_text(b"v=1\r\n"), Err(WhepError::NotOffer));
        assert_eq!(WhepError::NotOffer.status().0, 400);
    }

    #[test]
    fn latency_report_rules() {
        assert_eq!(
            latency_report("last=12.5&p50=10&p95=20.25&frames=90"),
            Ok(Report {
                last_us: 12_500,
                p50_us: 10_000,
                p95_us: 20_250,
                frames: 90
            })
        );
        // Any order.
        assert!(latency_report("frames=1&p95=3&p50=2&last=1").is_ok());
        for bad in [
            "",
            "last=1&p50=2&p95=3",
            "last=1&p50=2&p95=3&frames=4&x=5",
            "last=1&last=1&p50=2&p95=3&frames=4",
            "last=-1&p50=2&p95=3&frames=4",
            "last=1e3&p50=2&p95=3&frames=4",
            "last=inf&p50=2&p95=3&frames=4",
            "last=NaN&p50=2&p95=3&frames=4",
            "last=&p50=2&p95=3&frames=4",
            "last=1.2.3&p50=2&p95=3&frames=4",
            "last=600001&p50=2&p95=3&frames=4",
            "last=1&p50=2&p95=3&frames=99999999999",
            "last&p50=2&p95=3&frames=4",
        ] {
            assert_eq!(latency_report(bad), Err(WhepError::BadReport), "{bad}");
        }
        assert_eq!(WhepError::BadReport.status().0, 400);
    }
}
