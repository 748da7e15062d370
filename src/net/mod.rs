//! Bytes on the wire, and no threads: the native protocol's messages and
//! bounded readers, the checks of WHEP requests, the words of the WebRTC
//! candidate keys, and mDNS discovery (whose
//! daemon thread belongs to `mdns-sd`).

pub mod discovery;
pub mod http;
pub mod ice;
pub mod io;
pub mod protocol;
pub mod rtp;
pub mod rtp_jpeg;
pub mod rtsp;
pub mod sniff;
pub mod socket;
pub mod whep;
