//! A connection's own thread, `viewer-ADDR`: waits for its first bytes, tells
//! HTTP, RTSP and the native protocol apart (`net/sniff.rs`) and hands the
//! connection to `http.rs`, `rtsp.rs` or `native.rs`. Every failure ends this connection only.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::net::sniff::{sniff, Speaks, SNIFF_LEN};
use crate::net::socket::{self, Ready};

use super::hub::Handshaking;

/// The thread's body. `handshaking` is the connection's place among those in
/// their handshake, given back as soon as the handshake (or request head) is
/// done.
pub(crate) fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    handshaking: Handshaking,
    stop: &AtomicBool,
    deadline: Instant,
) {
    let hub = handshaking.hub().clone();
    match first_bytes(&stream, deadline) {
        Speaks::Http if hub.http => {
            super::http::serve(&stream, peer, &hub, stop, deadline, handshaking)
        }
        Speaks::Rtsp if hub.rtsp.is_some() => {
            super::rtsp::serve(&stream, peer, &hub, stop, deadline, handshaking)
        }
        speaks => super::native::serve(&stream, peer, speaks, handshaking, stop, deadline),
    }
    // The accept thread holds a second handle to this socket (to cut it off at
    // shutdown): dropping ours would not close it, so close it explicitly.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Waits (until `deadline`) for enough first bytes to decide, without reading
/// them: the protocol's own reader reads them again. Each wait is a `poll`
/// with the socket's low-water mark one past what was seen, so it wakes on new
/// bytes (or the peer's hang-up) only. A connection that sends nothing in
/// time, or hangs up, goes to the native handshake, which says why it failed.
fn first_bytes(stream: &TcpStream, deadline: Instant) -> Speaks {
    let mut first = [0u8; SNIFF_LEN];
    let mut seen = 0;
    let speaks = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match socket::wait(stream, Ready::Read, left) {
            Ok(true) => {}
            Ok(false) if !left.is_zero() => continue,
            Ok(false) | Err(_) => break Speaks::Native,
        }
        let n = match stream.peek(&mut first) {
            Ok(n) if n > seen => n,
            // Readable with nothing new: the peer hung up.
            Ok(_) | Err(_) => break Speaks::Native,
        };
        match sniff(&first[..n]) {
            Speaks::NeedMore => {
                seen = n;
                if socket::set_rcvlowat(stream, n + 1).is_err() {
                    break Speaks::Native;
                }
            }
            decided => break decided,
        }
    };
    if seen > 0 {
        // Back to the default: later blocking reads must not wait for a mark.
        let _ = socket::set_rcvlowat(stream, 1);
    }
    speaks
}
