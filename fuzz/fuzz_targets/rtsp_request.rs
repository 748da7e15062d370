//! `net::rtsp`, on what an RTSP client sends (and a media server's
//! `WWW-Authenticate` challenge, for publishing): reading a message never panics
//! and never takes more than it was given; a request's Transport and
//! Authorization headers are read without panicking; waiting for more bytes
//! happens only under the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::net::rtsp::{
    authorization, authorized, choose_transport, read_message, Incoming, MAX_INTERLEAVED,
    MAX_REQUEST,
};

fuzz_target!(|data: &[u8]| {
    match read_message(data) {
        Ok(Some((Incoming::Request(r), used))) => {
            assert!(used <= data.len().min(MAX_REQUEST));
            let _ = choose_transport(&r);
            let given = r
                .header(&rtsp_types::headers::AUTHORIZATION)
                .map(|v| v.as_str());
            assert!(!authorized(given, "DESCRIBE", "nonce", "token") || given.is_some());
        }
        Ok(Some((Incoming::Interleaved { data: d, .. }, used))) => {
            assert!(d.len() <= MAX_INTERLEAVED && used == d.len() + 4);
        }
        Ok(None) => assert!(data.first() == Some(&b'$') || data.len() < MAX_REQUEST),
        Err(_) => {}
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = authorized(Some(text), "PLAY", "abc", "0123456789abcdef");
        // A media server's challenge, as `--publish` answers it: whatever it
        // says, the answer is one header line the server can check.
        if let Some(header) = authorization(text, "me", "pw", "ANNOUNCE", "rtsp://h/x", "c0") {
            assert!(!header.contains(['\r', '\n']), "{header:?}");
        }
    }
});
