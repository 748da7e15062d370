//! One integration-test crate that runs the real `livestream` binary over real
//! TCP on 127.0.0.1.
//!
//! Helpers first: `util` (running the binary, the common servers and viewers),
//! `wait` (deadlines), `http_client`; then one module per area.

mod adapt;
mod adapt_bench;
mod cli;
mod discovery;
#[cfg(all(feature = "webrtc", feature = "h264"))]
mod faults;
#[cfg(feature = "h264")]
mod h264;
mod http;
mod http_client;
mod latency;
#[cfg(feature = "v4l2")]
mod m2m;
mod record;
mod robustness;
#[cfg(feature = "h264")]
mod rtsp;
mod secure;
#[cfg(all(feature = "v4l2", feature = "h264", feature = "webrtc"))]
mod soak;
mod stream;
mod util;
#[cfg(feature = "v4l2")]
mod vivid;
mod wait;
#[cfg(all(feature = "webrtc", feature = "h264"))]
mod webrtc;
mod window;
