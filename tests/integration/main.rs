//! One integration-test crate that runs the real `livestream` binary over real
//! TCP on 127.0.0.1.

mod cli;
mod discovery;
mod http;
mod latency;
mod record;
mod robustness;
mod secure;
mod stream;
mod util;
#[cfg(feature = "v4l2")]
mod vivid;
mod window;
