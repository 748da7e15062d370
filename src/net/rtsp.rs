//! RTSP 1.0 (RFC 2326) as the server reads and answers it, with no sockets:
//! reading one message from the bytes received so far (bounded), the
//! transport a client asks for, the SDP that describes the stream, and the
//! token checked as the password of basic and digest auth (RFC 7617, RFC
//! 2617). Parsing is `rtsp-types`'; what is built on it here checks every
//! number before it is used.

use std::fmt::Write as _;

use base64::Engine as _;
use md5::{Digest, Md5};
use rtsp_types::headers::{RtpLowerTransport, RtpProfile, Transport, Transports};
use rtsp_types::{Message, Method, ParseError, Request};
use subtle::ConstantTimeEq;

use crate::media::annexb::{nal_units, NAL_PPS, NAL_SPS};

/// A request (head and body) may be this large at most.
pub const MAX_REQUEST: usize = 8 << 10;
/// An interleaved packet from a client (RTCP receiver reports) at most.
pub const MAX_INTERLEAVED: usize = 2048;

/// Why the bytes from a client are not an RTSP message we take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspError {
    #[error("a request over {MAX_REQUEST} bytes")]
    TooLarge,
    #[error("not an RTSP request (it does not parse)")]
    Malformed,
    #[error("an RTSP response where a request belongs")]
    Response,
    #[error("RTSP version {0}; this server speaks 1.0")]
    Version(String),
}

/// What a client sent.
#[derive(Debug)]
pub enum Incoming<'a> {
    Request(Request<&'a [u8]>),
    /// `$`, a channel, a length, and that many bytes (RTP or RTCP over the
    /// RTSP connection).
    Interleaved {
        channel: u8,
        data: &'a [u8],
    },
}

/// Reads one message from the start of `buf`: `Ok(None)` while it is
/// incomplete; otherwise the message and how many bytes it took.
pub fn read_message(buf: &[u8]) -> Result<Option<(Incoming<'_>, usize)>, RtspError> {
    // Interleaved data is framed by us, not by the parser: a length the
    // client chose must not decide how much we wait for beyond the bound.
    if buf.first() == Some(&b'$') {
        let Some(head) = buf.get(..4) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len > MAX_INTERLEAVED {
            return Err(RtspError::TooLarge);
        }
        return Ok(buf.get(4..4 + len).map(|data| {
            (
                Incoming::Interleaved {
                    channel: head[1],
                    data,
                },
                4 + len,
            )
        }));
    }
    let bounded = &buf[..buf.len().min(MAX_REQUEST)];
    match Message::<&[u8]>::parse(bounded) {
        Ok((Message::Request(r), used)) => {
            if r.version() != rtsp_types::Version::V1_0 {
                return Err(RtspError::Version(format!("{:?}", r.version())));
            }
            Ok(Some((Incoming::Request(r), used)))
        }
        Ok((Message::Response(_), _)) => Err(RtspError::Response),
        // A `$` was handled above; anything else the parser calls data is
        // not a request.
        Ok((Message::Data(_), _)) => Err(RtspError::Malformed),
        Err(ParseError::Incomplete(_)) if bounded.len() < MAX_REQUEST => Ok(None),
        Err(ParseError::Incomplete(_)) => Err(RtspError::TooLarge),
        Err(ParseError::Error) => Err(RtspError::Malformed),
    }
}

/// How a client asked to get the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Over the RTSP connection, RTP on `rtp` and RTCP on `rtp + 1`.
    Interleaved { rtp: u8 },
    /// Over UDP to the client's address, RTP and RTCP to these ports.
    Udp { rtp: u16, rtcp: u16 },
}

/// Why a SETUP's `Transport` cannot be served (`461 Unsupported Transport`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("no Transport header")]
    Missing,
    #[error("the Transport header does not parse")]
    Malformed,
    #[error("none of the transports offered is RTP/AVP over unicast UDP or TCP interleaved")]
    NoneUsable,
}

/// The first transport in the client's list that we serve: RTP/AVP over TCP
/// (interleaved, on the channels it names or 0-1) or unicast UDP (with its
/// client ports; odd or zero ports are refused).
pub fn choose_transport<B: AsRef<[u8]>>(request: &Request<B>) -> Result<Delivery, TransportError> {
    let transports = match request.typed_header::<Transports>() {
        Ok(Some(t)) => t,
        Ok(None) => return Err(TransportError::Missing),
        Err(_) => return Err(TransportError::Malformed),
    };
    for t in transports.iter() {
        let Transport::Rtp(rtp) = t else { continue };
        if rtp.profile != RtpProfile::Avp || rtp.params.multicast {
            continue;
        }
        match rtp.lower_transport {
            Some(RtpLowerTransport::Tcp) => {
                let rtp_channel = rtp.params.interleaved.map_or(0, |(first, _)| first);
                if rtp_channel < 255 {
                    return Ok(Delivery::Interleaved { rtp: rtp_channel });
                }
            }
            None | Some(RtpLowerTransport::Udp) => {
                if let Some((first, second)) = rtp.params.client_port {
                    let rtcp = second.unwrap_or(first.wrapping_add(1));
                    if first != 0 && rtcp != 0 && first != rtcp {
                        return Ok(Delivery::Udp { rtp: first, rtcp });
                    }
                }
            }
            Some(_) => {}
        }
    }
    Err(TransportError::NoneUsable)
}

/// The `Transport` header of a SETUP's answer.
pub fn transport_reply(delivery: Delivery, server_ports: (u16, u16), ssrc: u32) -> String {
    match delivery {
        Delivery::Interleaved { rtp } => format!(
            "RTP/AVP/TCP;unicast;interleaved={rtp}-{};ssrc={ssrc:08X}",
            u16::from(rtp) + 1
        ),
        Delivery::Udp { rtp, rtcp } => format!(
            "RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port={}-{};ssrc={ssrc:08X}",
            server_ports.0, server_ports.1
        ),
    }
}

/// The stream's parameter sets (SPS, PPS), from a keyframe's access unit.
pub fn parameter_sets(au: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut sps, mut pps) = (None, None);
    for nal in nal_units(au) {
        let Ok(nal) = nal else { break };
        match nal.kind() {
            NAL_SPS if sps.is_none() => sps = Some(nal.bytes),
            NAL_PPS if pps.is_none() => pps = Some(nal.bytes),
            _ => {}
        }
    }
    Some((sps?, pps?))
}

/// The track's payload.
#[derive(Debug, Clone, Copy)]
pub enum Media<'a> {
    /// H.264 (RFC 6184 mode 1, payload type 96), with the SPS and PPS when a
    /// keyframe has been made.
    H264(Option<(&'a [u8], &'a [u8])>),
    /// JPEG (RFC 2435, static payload type 26).
    Jpeg,
}

/// What the SDP of the stream says.
#[derive(Debug, Clone)]
pub struct Description<'a> {
    /// The server's address as the client reached it (`o=`).
    pub origin: std::net::IpAddr,
    /// A number fixed for the server's run (`o=` session id).
    pub session_id: u64,
    pub name: &'a str,
    /// What the track carries.
    pub media: Media<'a>,
    pub width: u32,
    pub height: u32,
    /// Frames per second; 0 when unpaced.
    pub fps: f64,
}

/// The SDP (RFC 4566) of a live H.264 stream (RFC 6184 mode 1) with one
/// track, `trackID=0`.
pub fn describe(d: &Description<'_>) -> String {
    let ip = match d.origin {
        std::net::IpAddr::V4(_) => "IP4",
        std::net::IpAddr::V6(_) => "IP6",
    };
    // No line breaks or control characters from a name into the SDP.
    let name: String = d
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let mut sdp = String::with_capacity(512);
    let _ = write!(
        sdp,
        "v=0\r\no=- {id} 1 IN {ip} {addr}\r\ns={name}\r\nc=IN {ip} {any}\r\nt=0 0\r\n\
         a=tool:livestream\r\na=type:broadcast\r\na=control:*\r\na=range:npt=now-\r\n",
        id = d.session_id,
        addr = d.origin,
        name = if name.is_empty() { "livestream" } else { &name },
        any = if ip == "IP4" { "0.0.0.0" } else { "::" },
    );
    let sets = match d.media {
        Media::Jpeg => {
            sdp.push_str("m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\n");
            None
        }
        Media::H264(sets) => {
            sdp.push_str(
                "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1",
            );
            Some(sets)
        }
    };
    if let Some(Some((sps, pps))) = sets {
        let b64 = base64::engine::general_purpose::STANDARD;
        if sps.len() >= 4 {
            let _ = write!(
                sdp,
                ";profile-level-id={:02X}{:02X}{:02X}",
                sps[1], sps[2], sps[3]
            );
        }
        let _ = write!(
            sdp,
            ";sprop-parameter-sets={},{}",
            b64.encode(sps),
            b64.encode(pps)
        );
    }
    if sets.is_some() {
        sdp.push_str("\r\n");
    }
    if d.fps > 0.0 {
        let _ = write!(sdp, "a=framerate:{}\r\n", d.fps);
    }
    let _ = write!(
        sdp,
        "a=x-dimensions:{},{}\r\na=control:trackID=0\r\n",
        d.width, d.height
    );
    sdp
}

/// The realm our `WWW-Authenticate` challenges name.
pub const REALM: &str = "livestream";

/// Whether `authorization` (the request's header) carries `token`: as the
/// password of basic auth, or in a digest response for `method` and `nonce`
/// (any user name; the URI as the client gave it). In constant time over the
/// secret parts.
pub fn authorized(authorization: Option<&str>, method: &str, nonce: &str, token: &str) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("Basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        let password = decoded
            .iter()
            .position(|&b| b == b':')
            .map_or(&[][..], |i| &decoded[i + 1..]);
        return bool::from(password.ct_eq(token.as_bytes()));
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return false;
    }
    let params = digest_params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let (Some(user), Some(realm), Some(their_nonce), Some(uri), Some(response)) = (
        get("username"),
        get("realm"),
        get("nonce"),
        get("uri"),
        get("response"),
    ) else {
        return false;
    };
    if their_nonce != nonce || realm != REALM {
        return false;
    }
    let hex = md5_hex;
    let ha1 = hex(&[user, realm, token]);
    let ha2 = hex(&[method, uri]);
    // RFC 2617 with qop=auth, or RFC 2069 without.
    let expected = match (get("qop"), get("nc"), get("cnonce")) {
        (Some(qop), Some(nc), Some(cnonce)) if qop.eq_ignore_ascii_case("auth") => {
            hex(&[&ha1, nonce, nc, cnonce, "auth", &ha2])
        }
        (None, _, _) => hex(&[&ha1, nonce, &ha2]),
        _ => return false,
    };
    bool::from(
        expected
            .as_bytes()
            .ct_eq(response.to_ascii_lowercase().as_bytes()),
    )
}

/// `name=value` or `name="value"` pairs, comma-separated (quoted values may
/// hold commas). At most 16 pairs; values over 512 bytes are cut short.
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() && out.len() < 16 {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            value = &quoted[..end];
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim();
            rest = &rest[end..];
        }
        out.push((name, value.chars().take(512).collect()));
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The two `WWW-Authenticate` challenges of a 401: digest (preferred by
/// clients that can) and basic.
pub fn challenges(nonce: &str) -> [String; 2] {
    [
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\""),
        format!("Basic realm=\"{REALM}\""),
    ]
}

/// The `Authorization` header a client sends after a `401` whose
/// `WWW-Authenticate` is `challenge`: digest when offered (with `qop=auth`
/// when the server asks for it; `cnonce` is the caller's), else basic.
/// `None` when neither is offered.
pub fn authorization(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    if let Some(at) = find_ignore_case(challenge, "Digest ") {
        let params = digest_params(&challenge[at + 7..]);
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (realm, nonce) = (get("realm")?, get("nonce")?);
        let ha1 = md5_hex(&[user, realm, password]);
        let ha2 = md5_hex(&[method, uri]);
        let quote = |s: &str| s.replace(['"', '\\', '\r', '\n'], "");
        let mut header = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\"",
            quote(user),
            quote(realm),
            quote(nonce),
            quote(uri)
        );
        if get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth")) {
            let response = md5_hex(&[&ha1, nonce, "00000001", cnonce, "auth", &ha2]);
            let _ = write!(
                header,
                ", qop=auth, nc=00000001, cnonce=\"{cnonce}\", response=\"{response}\""
            );
        } else {
            let response = md5_hex(&[&ha1, nonce, &ha2]);
            let _ = write!(header, ", response=\"{response}\"");
        }
        return Some(header);
    }
    find_ignore_case(challenge, "Basic").map(|_| {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("Basic {}", b64.encode(format!("{user}:{password}")))
    })
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_lowercase()
        .find(&needle.to_ascii_lowercase())
}

/// MD5 of the parts joined by `:`, in lower-case hex (RFC 2617's H()).
fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The method's name as it appears on the request line.
pub fn method_name(method: &Method) -> &str {
    match method {
        Method::Describe => "DESCRIBE",
        Method::GetParameter => "GET_PARAMETER",
        Method::Options => "OPTIONS",
        Method::Pause => "PAUSE",
        Method::Play => "PLAY",
        Method::PlayNotify => "PLAY_NOTIFY",
        Method::Redirect => "REDIRECT",
        Method::Setup => "SETUP",
        Method::SetParameter => "SET_PARAMETER",
        Method::Announce => "ANNOUNCE",
        Method::Record => "RECORD",
        Method::Teardown => "TEARDOWN",
        Method::Extension(name) => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request<Vec<u8>> {
        match read_message(text.as_bytes()).unwrap().unwrap().0 {
            Incoming::Request(r) => r.map_body(|b| b.to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_are_read_whole_and_bounded() {
        let text = "OPTIONS rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\n\r\nDESCRIBE";
        let (msg, used) = read_message(text.as_bytes()).unwrap().unwrap();
        assert!(matches!(msg, Incoming::Request(ref r) if *r.method() == Method::Options));
        assert_eq!(used, text.len() - "DESCRIBE".len());
        assert!(read_message(&text.as_bytes()[..20]).unwrap().is_none());
        assert_eq!(
            read_message(&[b'$', 1, 0, 4, 9, 9, 9, 9, b'O'])
                .unwrap()
                .map(|(m, n)| {
                    match m {
                        Incoming::Interleaved { channel, data } => (channel, data.to_vec(), n),
                        _ => panic!(),
                    }
                }),
            Some((1, vec![9, 9, 9, 9], 8))
        );
        assert!(read_message(&[b'$', 1, 0, 4, 9]).unwrap().is_none());
        assert_eq!(
            read_message(&[b'$', 1, 0xff, 0xff]).unwrap_err(),
            RtspError::TooLarge
        );
        // A head that never ends, and a body larger than the bound.
        let long = format!(
            "OPTIONS rtsp://h/ RTSP/1.0\r\nX: {}",
            "a".repeat(MAX_REQUEST)
        );
        assert_eq!(
            read_message(long.as_bytes()).unwrap_err(),
            RtspError::TooLarge
        );
        let body = "ANNOUNCE rtsp://h/ RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 999999\r\n\r\n";
        assert!(read_message(body.as_bytes()).unwrap().is_none());
        let mut padded = body.as_bytes().to_vec();
        padded.resize(MAX_REQUEST + 10, b'x');
        assert_eq!(read_message(&padded).unwrap_err(), RtspError::TooLarge);
        assert_eq!(
            read_message(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n").unwrap_err(),
            RtspError::Response
        );
        assert_eq!(
            read_message(b"\x16\x03\x01 hello\r\n\r\n").unwrap_err(),
            RtspError::Malformed
        );
        assert!(matches!(
            read_message(b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n"),
            Err(RtspError::Version(_))
        ));
    }

    #[test]
    fn the_first_usable_transport_is_chosen() {
        let setup = |t: &str| {
            request(&format!(
                "SETUP rtsp://h/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: {t}\r\n\r\n"
            ))
        };
        let choose = |t: &str| choose_transport(&setup(t));
        assert_eq!(
            choose("RTP/AVP/TCP;unicast;interleaved=0-1"),
            Ok(Delivery::Interleaved { rtp: 0 })
        );
        assert_eq!(
            choose("RTP/AVP;unicast;client_port=5000-5001"),
            Ok(Delivery::Udp {
                rtp: 5000,
                rtcp: 5001
            })
        );
        assert_eq!(
            choose("RTP/SAVP;unicast;client_port=5000-5001,RTP/AVP/TCP;interleaved=4-5"),
            Ok(Delivery::Interleaved { rtp: 4 })
        );
        assert_eq!(
            choose("RTP/AVP;multicast;port=5000-5001"),
            Err(TransportError::NoneUsable)
        );
        assert_eq!(
            choose("RTP/AVP;unicast;client_port=0-0"),
            Err(TransportError::NoneUsable)
        );
        assert_eq!(
            choose("RTP/AVP;unicast;client_port=99999"),
            Err(TransportError::Malformed)
        );
        let none = request("SETUP rtsp://h/ RTSP/1.0\r\nCSeq: 3\r\n\r\n");
        assert_eq!(choose_transport(&none), Err(TransportError::Missing));
        assert_eq!(
            transport_reply(
                Delivery::Udp {
                    rtp: 5000,
                    rtcp: 5001
                },
                (6970, 6971),
                0xab
            ),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=000000AB"
        );
    }

    #[test]
    fn the_sdp_carries_the_parameter_sets() {
        let au = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        let sets = parameter_sets(&au).unwrap();
        assert_eq!(sets, (&au[4..9], &au[13..]));
        let sdp = describe(&Description {
            origin: "192.168.1.5".parse().unwrap(),
            session_id: 42,
            name: "cam\r\na=evil",
            media: Media::H264(Some(sets)),
            width: 1280,
            height: 720,
            fps: 30.0,
        });
        assert!(sdp.starts_with("v=0\r\no=- 42 1 IN IP4 192.168.1.5\r\ns=cama=evil\r\n"));
        assert!(sdp.contains(
            "a=fmtp:96 packetization-mode=1;profile-level-id=42C01F;\
             sprop-parameter-sets=Z0LAH9o=,aM48gA==\r\n"
        ));
        assert!(sdp.contains("a=control:trackID=0\r\n"));
        assert!(sdp.lines().all(|l| l.len() < 200));
        assert!(parameter_sets(&au[..9]).is_none());
    }

    #[test]
    fn the_token_is_the_password_of_basic_and_digest() {
        let token = "0123456789abcdef";
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(
            Some(&basic("anyone:0123456789abcdef")),
            "DESCRIBE",
            "n",
            token
        ));
        assert!(!authorized(
            Some(&basic("anyone:0123456789abcdeX")),
            "DESCRIBE",
            "n",
            token
        ));
        assert!(!authorized(
            Some(&basic("0123456789abcdef")),
            "DESCRIBE",
            "n",
            token
        ));
        assert!(!authorized(None, "DESCRIBE", "n", token));
        assert!(!authorized(Some("Bearer x"), "DESCRIBE", "n", token));
        assert!(!authorized(Some("Basic %%%"), "DESCRIBE", "n", token));

        // RFC 2617's own example, with our realm and the token as password.
        let md5hex = |s: &str| -> String {
            Md5::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let ha1 = md5hex(&format!("admin:{REALM}:{token}"));
        let ha2 = md5hex("DESCRIBE:rtsp://h:8554/stream");
        let plain = md5hex(&format!("{ha1}:abc:{ha2}"));
        let header = format!(
            "Digest username=\"admin\", realm=\"{REALM}\", nonce=\"abc\", \
             uri=\"rtsp://h:8554/stream\", response=\"{plain}\""
        );
        assert!(authorized(Some(&header), "DESCRIBE", "abc", token));
        assert!(
            !authorized(Some(&header), "PLAY", "abc", token),
            "another method"
        );
        assert!(
            !authorized(Some(&header), "DESCRIBE", "abd", token),
            "an old nonce"
        );
        let with_qop = md5hex(&format!("{ha1}:abc:00000001:xyz:auth:{ha2}"));
        let header = format!(
            "Digest username=\"admin\", realm=\"{REALM}\", nonce=\"abc\", \
             uri=\"rtsp://h:8554/stream\", qop=auth, nc=00000001, cnonce=\"xyz\", \
             response=\"{}\"",
            with_qop.to_uppercase()
        );
        assert!(authorized(Some(&header), "DESCRIBE", "abc", token));
        assert!(!authorized(
            Some("Digest username=\"a\", realm=\"livestream\""),
            "DESCRIBE",
            "abc",
            token
        ));
        assert_eq!(
            challenges("n1")[0],
            "Digest realm=\"livestream\", nonce=\"n1\""
        );
    }

    #[test]
    fn a_client_answers_each_challenge_as_the_server_checks_it() {
        let token = "secret";
        let uri = "rtsp://h/stream";
        for challenge in [
            "Digest realm=\"livestream\", nonce=\"n1\"".to_string(),
            "Digest realm=\"livestream\", nonce=\"n1\", qop=\"auth,auth-int\"".to_string(),
            challenges("n1").join(", "),
            "Basic realm=\"livestream\"".to_string(),
        ] {
            let header = authorization(&challenge, "me", token, "ANNOUNCE", uri, "c0ffee").unwrap();
            assert!(
                authorized(Some(&header), "ANNOUNCE", "n1", token),
                "{challenge}: {header}"
            );
            assert!(
                !authorized(Some(&header), "ANNOUNCE", "n1", "other"),
                "{challenge}"
            );
        }
        assert_eq!(
            authorization("Bearer x", "me", token, "ANNOUNCE", uri, "c"),
            None
        );
        assert_eq!(
            authorization("Digest realm=\"x\"", "me", token, "ANNOUNCE", uri, "c"),
            None
        );
    }
}
