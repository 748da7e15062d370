//! WHEP on the HTTP port (`docs/protocol.md`, "WebRTC"): what to answer a
//! browser's offer or its `DELETE`, once `http.rs` has read the request
//! (token checked, body bounded). The offer goes to the WebRTC side through
//! the hub's [`WhepEndpoint`]; without one, the answer says why. Runs on the
//! connection's own thread; no I/O here.

use std::net::SocketAddr;

use crate::net::whep::{latency_report, offer_text, SessionId, WhepError};

use super::hub::{Hub, Whep, WhepRefusal};

/// One HTTP answer, for `http.rs` to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
    pub(crate) content_type: &'static str,
    /// More header lines, each ending in CRLF.
    pub(crate) headers: String,
    pub(crate) body: Vec<u8>,
}

fn text(status: u16, reason: &'static str, detail: &str, headers: String) -> Reply {
    Reply {
        status,
        reason,
        content_type: "text/plain; charset=utf-8",
        headers,
        body: format!("{status} {reason}: {detail}\n").into_bytes(),
    }
}

impl From<WhepRefusal> for Reply {
    fn from(r: WhepRefusal) -> Reply {
        text(r.status, r.reason, &r.detail, String::new())
    }
}

/// The answer to a request refused on its head or body alone.
pub(crate) fn refused(e: WhepError) -> Reply {
    let (status, reason) = e.status();
    text(status, reason, &e.to_string(), String::new())
}

/// `405`, saying which method the resource takes.
pub(crate) fn method_not_allowed(method: &str, allow: &'static str) -> Reply {
    text(
        405,
        "Method Not Allowed",
        &format!("{method} is not answered here; {allow} is"),
        format!("Allow: {allow}\r\n"),
    )
}

/// `POST /whep`: the offer in `body` answered with a new session, or why not.
pub(crate) fn post(hub: &Hub, peer: SocketAddr, body: &[u8]) -> Reply {
    let sdp = match offer_text(body) {
        Ok(sdp) => sdp,
        Err(e) => return refused(e),
    };
    let endpoint = match hub.whep.get() {
        Some(Whep::Ready(endpoint)) => endpoint,
        Some(Whep::Off(why)) => return text(501, "Not Implemented", why, String::new()),
        None => {
            return text(
                503,
                "Service Unavailable",
                "WebRTC is not running",
                String::new(),
            )
        }
    };
    match endpoint.offer(sdp, peer) {
        Ok((id, answer)) => {
            log::info!("WebRTC offer from {peer} answered: session {}", short(&id));
            Reply {
                status: 201,
                reason: "Created",
                content_type: "application/sdp",
                headers: format!("Location: {}\r\n", id.location()),
                body: answer.into_bytes(),
            }
        }
        Err(r) => {
            log::warn!(
                "WebRTC offer from {peer} refused: {} {}: {}",
                r.status,
                r.reason,
                r.detail
            );
            r.into()
        }
    }
}

/// `DELETE /whep/SESSION`: ends that session.
pub(crate) fn delete(hub: &Hub, id: SessionId) -> Reply {
    let Some(Whep::Ready(endpoint)) = hub.whep.get() else {
        return no_such_session();
    };
    match endpoint.delete(id) {
        Ok(()) => text(200, "OK", "session ended", String::new()),
        Err(r) => r.into(),
    }
}

/// `POST /whep/SESSION/latency?...`: the latency the session's page measured.
pub(crate) fn latency(hub: &Hub, id: SessionId, query: &str) -> Reply {
    let report = match latency_report(query) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let Some(Whep::Ready(endpoint)) = hub.whep.get() else {
        return no_such_session();
    };
    match endpoint.latency(id, report) {
        Ok(()) => Reply {
            status: 204,
            reason: "No Content",
            content_type: "text/plain; charset=utf-8",
            headers: String::new(),
            body: Vec::new(),
        },
        Err(r) => r.into(),
    }
}

pub(crate) fn no_such_session() -> Reply {
    text(404, "Not Found", "no such WebRTC session", String::new())
}

/// A session id's first 8 digits, for the log: enough to follow one session,
/// not enough to end it.
pub(crate) fn short(id: &SessionId) -> String {
    let mut s = id.to_string();
    s.truncate(8);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{FrameInfo, PixelFormat, StreamInfo};
    use crate::net::protocol::Report;
    use crate::server::hub::{HubSetup, WhepEndpoint};
    use std::sync::Mutex;

    /// Remembers what it was asked and answers as told.
    struct Fake {
        offers: Mutex<Vec<String>>,
        known: SessionId,
    }

    impl WhepEndpoint for Fake {
        fn offer(&self, sdp: &str, _peer: SocketAddr) -> Result<(SessionId, String), WhepRefusal> {
            self.offers.lock().unwrap().push(sdp.into());
            if sdp.contains("m=audio") {
                return Err(WhepRefusal {
                    status: 422,
                    reason: "Unprocessable Content",
                    detail: "no video".into(),
                });
            }
            Ok((self.known, "v=0\r\nanswer".into()))
        }
        fn latency(&self, id: SessionId, _report: Report) -> Result<(), WhepRefusal> {
            self.delete(id)
        }
        fn delete(&self, id: SessionId) -> Result<(), WhepRefusal> {
            if id == self.known {
                Ok(())
            } else {
                Err(WhepRefusal {
                    status: 404,
                    reason: "Not Found",
                    detail: "no such WebRTC session".into(),
                })
            }
        }
    }

    fn hub() -> Hub {
        Hub::new(HubSetup {
            payload_format: Some(PixelFormat::H264),
            max_viewers: 2,
            http: true,
            stream: StreamInfo {
                frame: FrameInfo::packed(PixelFormat::Rgb24, 4, 4).unwrap(),
                fps: 30.0,
            },
            codec: "h264".into(),
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

    #[test]
    fn offers_and_deletes_reach_the_endpoint_and_come_back_as_http() {
        let hub = hub();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(post(&hub, peer, b"v=0\r\n").status, 503, "not started");
        let known = SessionId::from_bytes([7; 16]);
        let _ = hub.whep.set(Whep::Ready(Box::new(Fake {
            offers: Mutex::default(),
            known,
        })));
        let r = post(&hub, peer, b"v=0\r\nm=video");
        assert_eq!((r.status, r.content_type), (201, "application/sdp"));
        assert_eq!(r.headers, format!("Location: /whep/{known}\r\n"));
        assert_eq!(r.body, b"v=0\r\nanswer");
        let r = post(&hub, peer, b"v=0\r\nm=audio");
        assert_eq!(r.status, 422);
        assert!(String::from_utf8(r.body).unwrap().contains("no video"));
        assert_eq!(post(&hub, peer, b"\xff\xfe").status, 400, "not text");
        assert_eq!(post(&hub, peer, b"hello").status, 400, "not SDP");
        let Some(Whep::Ready(_)) = hub.whep.get() else {
            panic!()
        };
        let report = "last=12&p50=10.5&p95=20&frames=90";
        assert_eq!(latency(&hub, known, report).status, 204);
        let r = latency(&hub, known, "last=12");
        assert_eq!(r.status, 400);
        assert!(String::from_utf8(r.body).unwrap().contains("p95=MS"));
        let unknown = SessionId::from_bytes([8; 16]);
        assert_eq!(latency(&hub, unknown, report).status, 404);
        assert_eq!(delete(&hub, known).status, 200);
        assert_eq!(delete(&hub, unknown).status, 404);
    }

    #[test]
    fn without_webrtc_the_answer_says_why() {
        let hub = hub();
        let _ = hub.whep.set(Whep::Off("WebRTC needs codec h264".into()));
        let r = post(&hub, "127.0.0.1:9".parse().unwrap(), b"v=0\r\n");
        assert_eq!(r.status, 501);
        assert!(String::from_utf8(r.body)
            .unwrap()
            .contains("WebRTC needs codec h264"));
        assert_eq!(delete(&hub, SessionId::from_bytes([1; 16])).status, 404);
        let r = method_not_allowed("GET", "POST");
        assert_eq!((r.status, r.headers.as_str()), (405, "Allow: POST\r\n"));
    }
}
