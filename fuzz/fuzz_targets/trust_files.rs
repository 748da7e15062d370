//! The trust files in `~/.config/livestream` (`server.key`, `viewer.key`,
//! `peers`), which a user may edit: parsing never panics; an error names a
//! line that exists; a key pair read is 64 hex digits each, as written; a
//! peer list written back and read again is the same list, and writing it
//! twice gives the same text (what `pair` appends never changes on the next
//! load).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use livestream::secure::trust::{KeyPair, PeerList, TrustError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/peers");
    let lines = text.lines().count();
    let line_ok = |e: &TrustError| {
        if let TrustError::Malformed { line, .. } = e {
            assert!(*line <= lines, "line {line} of {lines}");
        }
        let _ = e.to_string();
    };
    match KeyPair::parse(path, text) {
        Ok(k) => {
            for key in [&k.private, &k.public] {
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                assert!(
                    text.to_ascii_lowercase().contains(&hex),
                    "a key read that is not in the file as hex: {hex}"
                );
            }
        }
        Err(e) => line_ok(&e),
    }
    match PeerList::parse(path, text) {
        Ok(list) => {
            let written = list.text();
            let again = PeerList::parse(path, &written).expect("a peer list we wrote");
            assert_eq!(again.peers.len(), list.peers.len());
            for (a, b) in again.peers.iter().zip(&list.peers) {
                assert_eq!((a.key, &a.name), (b.key, &b.name));
            }
            assert_eq!(again.text(), written, "writing a list twice");
        }
        Err(e) => line_ok(&e),
    }
});
