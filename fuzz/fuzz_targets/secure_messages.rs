//! The secure handshake's messages as a peer could send them: each parser
//! never panics on any bytes, and what parses builds back to the same bytes
//! (the reserved byte and unknown flags aside, which parsing ignores).
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::secure::handshake::{
    build_hello, build_reply, build_verdict, frame_len, parse_hello, parse_reply, parse_verdict,
    reason_text, reply_spake, Reply, Verdict, MAX_HANDSHAKE_FRAME, MAX_HELLO, MAX_REASON,
};
use livestream::secure::HandshakeMessage;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(hello) = parse_hello(body) {
                let mut out = [0u8; MAX_HELLO];
                let n = build_hello(&mut out, &hello);
                assert_eq!(parse_hello(&out[..n]), Ok(hello));
                assert_eq!(out[..6], body[..6], "magic, version and mode");
            }
        }
        1 => {
            if let Ok(reply) = parse_reply(body) {
                if let Reply::Go { pairing, .. } = &reply {
                    let _ = reply_spake(pairing);
                }
                let mut out = [0u8; MAX_HANDSHAKE_FRAME];
                let n = build_reply(&mut out, &reply);
                let again = parse_reply(&out[..n]).expect("a built reply parses");
                if body.len() <= 8 + MAX_REASON {
                    assert_eq!(again, reply);
                }
            }
        }
        2 => {
            if let Ok(verdict) = parse_verdict(body) {
                let mut out = [0u8; MAX_HANDSHAKE_FRAME];
                let n = build_verdict(&mut out, &verdict);
                let again = parse_verdict(&out[..n]).expect("a built verdict parses");
                if let Verdict::NotPaired { reason } = verdict {
                    let _ = reason_text(reason);
                    if reason.len() <= MAX_REASON {
                        assert_eq!(again, verdict);
                    }
                }
            }
        }
        _ => {
            if let [a, b, ..] = *body {
                if let Ok(n) = frame_len([a, b], HandshakeMessage::Hello) {
                    assert!(n <= MAX_HANDSHAKE_FRAME);
                }
            }
        }
    }
});
