//! `net::rtp`: H.264 in RTP. The first byte picks the packet size; the rest
//! is an access unit. Every well-formed access unit packetised and
//! depacketised comes back with the same NAL units (start codes normalised to
//! four bytes), each packet within the size; and the depacketiser and the
//! RTCP reader, fed the bytes as packets of their own, never panic nor grow
//! past their bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::media::annexb::nal_units;
use livestream::net::rtp::{
    reception_reports, H264Depacketizer, H264Packets, RtpStream, RTP_HEADER,
};

const MAX_AU: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&size, au)) = data.split_first() else {
        return;
    };
    let max_payload = 64 + usize::from(size) * 8;
    let mut stream = RtpStream::new(96, u64::from(size) * 0x1_0000_0001);
    let mut depack = H264Depacketizer::new(MAX_AU);
    let well_formed = nal_units(au).all(|n| n.is_ok_and(|n| (1..=23).contains(&n.kind())));
    let mut packets = H264Packets::new(au, 90_000, &mut stream, max_payload);
    let mut whole = None;
    let mut count = 0;
    for p in packets.by_ref() {
        assert!(p.payload.len() + p.head().len() - RTP_HEADER <= max_payload.max(64));
        let datagram = [p.head(), p.payload].concat();
        count += 1;
        match depack.push(&datagram) {
            Ok(Some(back)) => whole = Some(back.to_vec()),
            Ok(None) => {}
            Err(e) => panic!("our own packet {count} refused: {e}"),
        }
    }
    assert_eq!(packets.failed(), !well_formed);
    if well_formed && au.len() < MAX_AU / 2 {
        let back = whole.expect("a whole access unit comes back");
        let ours: Vec<&[u8]> = nal_units(au).map(|n| n.unwrap().bytes).collect();
        let theirs: Vec<&[u8]> = nal_units(&back).map(|n| n.unwrap().bytes).collect();
        assert_eq!(ours, theirs);
    }
    // The same bytes as hostile packets.
    let mut hostile = H264Depacketizer::new(1024);
    for chunk in au.chunks(max_payload) {
        if let Ok(Some(out)) = hostile.push(chunk) {
            assert!(out.len() <= 1024);
        }
    }
    let _ = reception_reports(au, |_| {});
});
