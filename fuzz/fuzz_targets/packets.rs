//! The native wire protocol as both ends read it: the server's hello and its
//! packets (`read_packet`: frames, end, timing, pong, link, rendition, unknown
//! types) on
//! the viewer's side, the client hello and the viewer's packets
//! (`read_upstream`) on the server's. Never a panic, never a buffer past the
//! limits the caller gave; whatever parses is within them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::media::frame::{FrameInfo, Limits, PixelFormat};
use livestream::net::protocol::{
    read_packet, read_upstream, ClientHello, Packet, ServerHello, MAX_CODEC_NAME, MAX_MESSAGE,
};

/// The frame bound the viewer passes: small, so oversized lengths are common.
const MAX_PAYLOAD: usize = 1 << 16;
/// The stream a rendition packet is checked against.
const STREAM: FrameInfo = FrameInfo {
    format: PixelFormat::I420,
    width: 1280,
    height: 720,
    stride: 1280,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(h) = ServerHello::read(&mut &data[..], &limits) {
        assert!(h.frame.validate(&limits).is_ok());
        assert!(h.codec.len() <= MAX_CODEC_NAME && h.message.len() <= MAX_MESSAGE);
    }
    let _ = ClientHello::read(&mut &data[..]);
    let mut payload = Vec::new();
    let mut r = data;
    for _ in 0..64 {
        match read_packet(&mut r, MAX_PAYLOAD, &mut payload) {
            Ok(Packet::Frame(h)) => {
                assert!(h.len as usize <= MAX_PAYLOAD && payload.len() == h.len as usize);
                assert!(payload.capacity() <= MAX_PAYLOAD.max(1));
            }
            Ok(Packet::End { message, .. }) => assert!(message.len() <= MAX_MESSAGE * 3),
            Ok(Packet::Rendition(r)) => {
                // What the viewer checks before it decodes at that size.
                if r.check(&STREAM).is_ok() {
                    assert!(r.width <= STREAM.width && r.height <= STREAM.height);
                    assert!(r.width % 2 == 0 && r.height % 2 == 0 && r.index < r.count);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let mut r = data;
    for _ in 0..64 {
        if read_upstream(&mut r).is_err() {
            break;
        }
    }
});
