//! This build has no WebRTC (the `webrtc` feature is off): `/whep` answers
//! `501 Not Implemented` and says how to build it in.

use std::net::SocketAddr;

use crate::config::Config;

use super::hub::Whep;
use super::{ServeError, Threads};

pub(super) fn start(
    _cfg: &Config,
    _tcp: SocketAddr,
    threads: &mut Threads,
) -> Result<(), ServeError> {
    let _ = threads.hub.whep.set(Whep::Off(
        "WebRTC is not in this build: rebuild with --features webrtc".into(),
    ));
    Ok(())
}
