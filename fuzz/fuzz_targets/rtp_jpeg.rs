//! `net::rtp_jpeg`, on a JPEG from a camera or an encoder: reading what
//! RTP/JPEG needs never panics; a JPEG it accepts has sides that are
//! multiples of 8 up to 2040, two 64-byte tables and a scan inside the input,
//! and cuts into packets that stay within their size and carry the whole
//! scan in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::net::rtp::{RtpStream, RTP_HEADER};
use livestream::net::rtp_jpeg::{rtp_jpeg, JpegPackets, JPEG_PAYLOAD_TYPE, MAX_SIDE};

fuzz_target!(|data: &[u8]| {
    let Ok(j) = rtp_jpeg(data) else { return };
    assert!(j.width % 8 == 0 && j.height % 8 == 0);
    assert!((8..=MAX_SIDE).contains(&j.width) && (8..=MAX_SIDE).contains(&j.height));
    assert!(j.tables.iter().all(|t| t.len() == 64));
    assert!(j.scan.len() <= data.len());
    let mut stream = RtpStream::new(JPEG_PAYLOAD_TYPE, 7);
    let mut offset = 0;
    let mut last_marker = false;
    for p in JpegPackets::new(j, 0, &mut stream, 400) {
        assert!(p.head().len() - RTP_HEADER + p.payload.len() <= 400);
        assert_eq!(p.payload, &j.scan[offset..offset + p.payload.len()]);
        offset += p.payload.len();
        last_marker = p.marker();
    }
    assert_eq!(offset, j.scan.len());
    assert!(last_marker);
});
