//! WHEP requests: `net::whep`'s checks on a request's head and body never
//! panic and never accept a length past the limit; then the same bytes as an
//! offer's body go through the checks, str0m's SDP parser and the server's
//! set-up of a session (`server::webrtc::answer_offer_bytes`), which must
//! answer or refuse, never panic. A request's query also goes through the
//! page's latency report parser, which must refuse or give figures within its
//! bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::net::whep::{
    check_content_type, latency_report, offer_length, offer_text, target, MAX_OFFER,
    MAX_REPORTED_MS,
};
use livestream::server::webrtc::answer_offer_bytes;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(head)) = req.parse(data) {
        if let Some(path) = req.path {
            let _ = target(path.split(['?', '#']).next().unwrap_or(""));
            if let Some((_, query)) = path.split_once('?') {
                if let Ok(r) = latency_report(query) {
                    let most = (MAX_REPORTED_MS * 1000.0) as u64;
                    assert!(r.last_us <= most && r.p50_us <= most && r.p95_us <= most);
                }
            }
        }
        if let Ok(n) = offer_length(req.headers) {
            assert!(n <= MAX_OFFER);
        }
        let _ = check_content_type(req.headers);
        if let Ok(text) = offer_text(&data[head..]) {
            assert!(text.starts_with("v=0"));
        }
    }
    let _ = answer_offer_bytes(data);
});
