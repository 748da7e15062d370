//! `net::sniff::sniff`, on a connection's first bytes: never panics, and a
//! decision on a prefix is never contradicted by more bytes (the connection
//! acts on the first decision it gets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::net::sniff::{sniff, Speaks, SNIFF_LEN};

fuzz_target!(|data: &[u8]| {
    let full = sniff(data);
    if data.len() >= SNIFF_LEN {
        assert_ne!(full, Speaks::NeedMore, "{SNIFF_LEN} bytes always decide");
    }
    for n in 0..data.len().min(SNIFF_LEN) {
        let part = sniff(&data[..n]);
        assert!(
            part == Speaks::NeedMore || part == full,
            "{:?} decided {part:?}, {:?} {full:?}",
            &data[..n],
            data
        );
    }
});
